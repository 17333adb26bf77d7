"""The compile driver: trace → passes → lower → render → native code, with the on-disk cache in the middle.

The cache key is computed from the *traced* IR, so a warm process skips LLVM entirely. It also skips the passes
and lowering: :class:`Compiled` optimizes and lowers only when ``optimized``/``program`` are first read, and the
call path (``JitFunction._executable``) needs neither when the cache also holds the specialization's call
prologue (``runtime/executable.py``). This module imports the passes and lowering lazily for that reason.
"""
from __future__ import annotations

import os
import time
from functools import lru_cache

from prepjit import __version__
from prepjit.compiler.tracer import InputSpec, trace
from prepjit.ir.core import Function, clone_function
from prepjit.ir.printer import canonical_text, print_function


def optimization_pipeline(verify_each: bool = False):
    from prepjit.compiler.pass_manager import PassManager
    from prepjit.compiler.passes import canonicalize, constant_fold, cse, dce, fuse, fuse_text, plan_decode

    return PassManager([
        ("canonicalize", canonicalize),
        ("constant-fold", constant_fold),
        ("cse", cse),
        ("canonicalize", canonicalize),
        ("dce", dce),
        ("fuse-text", fuse_text),
        ("plan-decode", plan_decode),
        ("fuse", fuse),
        ("dce", dce),
    ], verify_each=verify_each)


def _source_files(root: str) -> list[str]:
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        out.extend(os.path.join(d, f) for f in files if f.endswith(".py"))
    return sorted(out, key=lambda p: os.path.relpath(p, root).replace(os.sep, "/"))


@lru_cache(maxsize=None)
def compiler_hash() -> str:
    """Hash of prepjit's own source: any change to the compiler invalidates cached code.

    The hash is of the files' contents; it is memoized in the cache directory under the files' sizes and
    modification times, so a warm process stats the sources instead of reading them."""
    from prepjit.runtime import native

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = _source_files(root)
    try:
        stats = [(p, st.st_size, st.st_mtime_ns, st.st_ino) for p in paths for st in (os.stat(p),)]
        fp = native.sha256(repr(stats).encode()).hexdigest()[:32]
    except OSError:
        fp = None
    memo = native.read_memo("compiler", fp)
    if isinstance(memo, str) and len(memo) == 16:
        return memo
    h = native.sha256()
    for p in paths:
        h.update(os.path.relpath(p, root).replace(os.sep, "/").encode())
        with open(p, "rb") as f:
            h.update(f.read())
    digest = h.hexdigest()[:16]
    native.write_memo("compiler", fp, digest)
    return digest


class Compiled:
    """One specialization: the traced IR and its cache key at once; the optimized IR and the lowered
    ``Program`` on first use (a warm call with a cached prologue never uses them)."""

    def __init__(self, traced: Function, target: str = "cpu", verify_each: bool = False):
        self.traced = traced
        self.traced_text = print_function(traced)
        self.target = target
        self.key = cache_key(traced, target)
        self._verify_each = verify_each
        self._optimized = self._program = None
        self.llvm_ir: str | None = None          # rendered (unoptimized) module, when compiled in this process
        self.optimized_llvm_ir: str | None = None
        self.object_code: bytes | None = None
        self.from_disk = False
        self.compile_seconds = 0.0
        self.cuda_source = None                  # prepjit.lowering.cuda.CudaSource, rendered on demand

    def _lower(self) -> None:
        from prepjit.compiler.passes import infer_types
        from prepjit.lowering.lower import lower_function

        optimized = clone_function(self.traced)
        optimization_pipeline(self._verify_each).run(optimized)
        constraints = infer_types(optimized)
        self._program = lower_function(optimized, constraints, self.target)
        self._optimized = optimized

    @property
    def optimized(self) -> Function:
        if self._optimized is None:
            self._lower()
        return self._optimized

    @property
    def program(self):
        if self._program is None:
            self._lower()
        return self._program

    @property
    def input_types(self) -> list:
        return [a.type for a in self.traced.inputs]

    def lowered_text(self) -> str:
        from prepjit.lowering.loop_ir import print_kernel

        header = f"// program @{self.program.name}: buffers " + ", ".join(
            f"%{b.name}:{b.kind}" for b in self.program.buffers.values())
        return header + "\n" + "\n\n".join(print_kernel(k) for k in self.program.kernels) + "\n"


def cache_key(traced: Function, target: str) -> str:
    from prepjit.runtime import native

    triple, cpu, features = native.host_cpu()
    parts = [canonical_text(traced), target, triple, cpu, features, native.llvm_version(), __version__,
             compiler_hash(), repr(sorted(native.CODEGEN_FLAGS.items()))]
    return native.sha256("\x00".join(parts).encode()).hexdigest()


def build(fn, specs: list[InputSpec], arg_names: list[str], name: str, target: str = "cpu",
          verify_each: bool = False) -> Compiled:
    """Trace and key; the passes and lowering run when the Program is first needed. No native code yet."""
    return build_traced(trace(fn, specs, arg_names, name), target, verify_each)


def build_traced(traced: Function, target: str = "cpu", verify_each: bool = False) -> Compiled:
    """An already-traced Function (from the tracer, or parsed from pickled/bundled IR text), keyed."""
    return Compiled(traced, target, verify_each)


def render_llvm(c: Compiled) -> str:
    from prepjit.lowering.llvm import render_program

    if c.llvm_ir is None:
        c.llvm_ir = render_program(c.program.kernels, c.program.slots(), c.program.name)
    return c.llvm_ir


def compile_native(c: Compiled) -> bytes:
    from prepjit.runtime import native

    t0 = time.perf_counter()
    obj, optimized_ir = native.compile_object(render_llvm(c))
    c.object_code, c.optimized_llvm_ir = obj, optimized_ir
    c.compile_seconds = time.perf_counter() - t0
    return obj
