"""prepjit: a JIT compiler for ML preprocessing.

Decorate NumPy-style preprocessing with ``@prepjit.jit_preprocess``; it is traced into a typed dataflow IR,
fused, compiled to native code with llvmlite and cached on disk.
"""
__version__ = "0.1.0"

from prepjit.api import BYTES, JitFunction, TensorSpec, jit_preprocess  # noqa: E402
from prepjit.errors import BundleError, CompileError, PrepjitError, TracingError, UnsupportedError  # noqa: E402


def load(path):
    """Load a bundle written by ``fn.save(path)``: a callable that runs without the original Python source."""
    from prepjit.runtime.bundle import load as _load

    return _load(path)


__all__ = ["jit_preprocess", "JitFunction", "TensorSpec", "BYTES", "PrepjitError", "TracingError", "UnsupportedError",
           "CompileError", "BundleError", "load", "__version__"]
