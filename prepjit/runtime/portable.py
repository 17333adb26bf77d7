"""Moving jit functions between processes and machines: pickling, and functions rebuilt from IR text.

A ``JitFunction`` pickles **by reference** (module + qualified name) when the receiving process can import it:
the child gets its own module-level function, traces it itself and finds the compiled code in the disk cache.
A function defined dynamically (inside another function, by ``exec``, in an interactive ``__main__``) pickles
**by IR**: the traced IR text of every specialization it has (declared ``signature=`` entries and those already
called). The child parses the text back, runs the (deterministic) optimizer and lowering, and computes the
same cache key from the same traced IR, so with a warm cache it compiles nothing. An IR-backed function accepts
exactly those specializations: there is no Python source to trace anything else.

Functions in ``__main__`` carry both: by reference first (``spawn`` re-imports the main script), IR as the
fallback (``python -c``, notebooks).
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import pickle
import re
import sys
import threading
import warnings

import numpy as np

from prepjit.api import JitFunction, _live_functions, _spec_key

STATE_VERSION = 1


# -- host fingerprint ------------------------------------------------------------------------------------------
def host_meta() -> dict:
    """What cached/bundled object code depends on, recorded in cache entries and bundle manifests."""
    from prepjit import __version__
    from prepjit.compiler.driver import compiler_hash
    from prepjit.runtime import native

    triple, cpu, features = native.host_cpu()
    return {"host": {"triple": triple, "cpu": cpu,
                     "features_sha256": hashlib.sha256(features.encode()).hexdigest()[:16]},
            "llvm": native.llvm_version(), "prepjit": __version__, "compiler": compiler_hash()}


# -- specs as text ---------------------------------------------------------------------------------------------
def spec_to_text(s) -> str:
    """TensorSpec / BYTES → 'uint8[?,?,3]' / 'bytes'."""
    from prepjit.api import BYTES

    if s is BYTES:
        return "bytes"
    return f"{np.dtype(s.dtype).name}[{','.join('?' if d is None else str(d) for d in s.shape)}]"


def spec_from_text(text: str):
    from prepjit.api import BYTES, TensorSpec

    if text == "bytes":
        return BYTES
    m = re.fullmatch(r"(\w+)\[([^\]]*)\]", text)
    if m is None:
        raise ValueError(f"bad spec text {text!r}")
    dims = [d for d in m.group(2).split(",") if d]
    return TensorSpec(np.dtype(m.group(1)), tuple(None if d == "?" else int(d) for d in dims))


def _entry_for(input_specs) -> tuple:
    """InputSpec tuple (what ``_build`` is keyed by) → signature entry (TensorSpec / BYTES)."""
    from prepjit.api import BYTES, TensorSpec
    from prepjit.compiler.tracer import BYTES_SPEC

    return tuple(BYTES if s == BYTES_SPEC else TensorSpec(s.dtype, s.shape) for s in input_specs)


# -- IR state --------------------------------------------------------------------------------------------------
def specializations(fn) -> list[tuple]:
    """Signature entries for every specialization ``fn`` knows: declared ones first, then those it has built."""
    seen, out = set(), []
    for entry in list(fn.signature or []) + [_entry_for(k) for k in list(fn._compiled)]:
        t = tuple(spec_to_text(s) for s in entry)
        if t not in seen:
            seen.add(t)
            out.append(tuple(entry))
    return out


def ir_state(fn) -> dict:
    """Everything needed to rebuild ``fn`` without its source (raises PicklingError when there is nothing)."""
    from prepjit.api import _input_spec

    if isinstance(fn, IRFunction):
        return fn._state()
    entries = specializations(fn)
    if not entries:
        raise pickle.PicklingError(
            f"cannot pickle @jit_preprocess function {fn.__module__}.{fn.__qualname__}: it is not importable by "
            f"name in another process and has no specialization to send as IR. Define it at module level, "
            f"declare signature=, or call it once before pickling")
    last = fn._last
    try:
        specs = [[spec_to_text(s) for s in e] for e in entries]
        texts = [fn._build(tuple(_input_spec(s) for s in e)).traced_text for e in entries]
    finally:
        fn._last = last
    return {"version": STATE_VERSION, "name": fn.name, "module": fn.__module__, "qualname": fn.__qualname__,
            "arg_names": list(fn.arg_names), "target": fn.target, "cache": fn.cache,
            "specializations": [{"specs": s, "ir": t} for s, t in zip(specs, texts)]}


# -- pickling --------------------------------------------------------------------------------------------------
def _lookup(module: str, qualname: str):
    if "<locals>" in qualname or "<lambda>" in qualname:
        return None
    try:
        obj = sys.modules.get(module) or importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj


def reduce_function(fn):
    """``JitFunction.__reduce__``."""
    if isinstance(fn, IRFunction):
        return _restore_ir, (fn._state(),)
    module, qualname = fn.__module__, fn.__qualname__
    obj = _lookup(module, qualname)
    if obj is fn:
        state = None
        if module == "__main__" and specializations(fn):
            state = ir_state(fn)
        return _restore, (module, qualname, state)
    if obj is fn.fn and obj is not None:  # f = jit_preprocess(g) under another name: wrap g again over there
        sig = None if fn.signature is None else [[spec_to_text(s) for s in e] for e in fn.signature]
        return _rewrap, (module, qualname, fn.target, fn.cache, sig)
    return _restore_ir, (ir_state(fn),)


def _restore(module: str, qualname: str, state):
    obj = _lookup(module, qualname)
    if isinstance(obj, JitFunction):
        return obj
    if state is None:
        raise pickle.UnpicklingError(f"cannot find @jit_preprocess function {module}.{qualname} in this process "
                                     f"(is {module!r} importable here, with the same sys.path?)")
    return IRFunction(state)


def _rewrap(module, qualname, target, cache, sig):
    obj = _lookup(module, qualname)
    if obj is None:
        raise pickle.UnpicklingError(f"cannot find function {module}.{qualname} in this process")
    signature = None if sig is None else [tuple(spec_from_text(t) for t in e) for e in sig]
    return JitFunction(obj, target=target, cache=cache, signature=signature)


def _restore_ir(state):
    return IRFunction(state)


# -- the IR-backed function ------------------------------------------------------------------------------------
class BundleWarning(UserWarning):
    """A bundle's object code does not match this machine; prepjit recompiles from its IR."""


class IRFunction(JitFunction):
    """A jit function rebuilt from traced IR text (unpickled dynamic functions, loaded bundles).

    It behaves like the original for the specializations it carries; other inputs raise TypeError.
    """

    def __init__(self, state: dict, objects: dict | None = None, origin: str = "pickled IR",
                 mismatch: str | None = None):
        from prepjit.api import TARGETS

        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported prepjit IR state (version {state.get('version') if isinstance(state, dict) else '?'}; "
                             f"this prepjit reads version {STATE_VERSION})")
        if state["target"] not in TARGETS:
            raise ValueError(f"{state['name']}: target {state['target']!r} is not available in this prepjit "
                             f"(supported: {', '.join(TARGETS)})")
        self.fn = None
        self.target = state["target"]
        self.cache = state.get("cache", True)
        self.name = self.__name__ = state["name"]
        self.__qualname__ = state.get("qualname", self.name)
        self.__module__ = state.get("module", "<ir>")
        self.__doc__ = None
        self.arg_names = list(state["arg_names"])
        self._nargs = len(self.arg_names)
        self._sig = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for n in self.arg_names])
        self._ir = {}
        self.signature = []
        for sp in state["specializations"]:
            entry = tuple(spec_from_text(t) for t in sp["specs"])
            if len(entry) != self._nargs:
                raise ValueError(f"{self.name}: specialization {sp['specs']} does not match arguments "
                                 f"{self.arg_names}")
            self.signature.append(entry)
            self._ir[tuple(spec_to_text(s) for s in entry)] = sp["ir"]
        self._state_dict = state
        self._objects = dict(objects or {})
        self._origin = origin
        self._mismatch = mismatch
        self._warned = False
        self._execs = {}
        self._compiled = {}
        self._compiled_elsewhere = {}
        self._last = None
        self._lock = threading.RLock()
        self.stats = {"compiles": 0, "disk_hits": 0, "specializations": 0, "compile_seconds": 0.0}
        _live_functions.add(self)

    def __repr__(self):
        return f"<prepjit.JitFunction {self.name} target={self.target} (from {self._origin})>"

    def _state(self) -> dict:
        return self._state_dict

    def _specialize_locked(self, arrays, key):
        if not any(all(_spec_key(s) == k for s, k in zip(e, key)) for e in self.signature):
            from prepjit.api import _describe

            got = ", ".join(f"{n}: {_describe(a)}" for n, a in zip(self.arg_names, arrays))
            have = " | ".join("(" + ", ".join(spec_to_text(s) for s in e) + ")" for e in self.signature)
            raise TypeError(f"{self.name}(): arguments ({got}) match none of the specializations this function "
                            f"was rebuilt with from {self._origin} ({have}); without its Python source it "
                            f"cannot trace new ones")
        return super()._specialize_locked(arrays, key)

    def _build_new(self, specs, target):
        from prepjit.compiler.driver import build_traced
        from prepjit.ir.parser import parse_function

        return build_traced(parse_function(self._ir[tuple(spec_to_text(s) for s in _entry_for(specs))]), target)

    def _bundled_object(self, c):
        obj = self._objects.get(c.key)
        if obj is None and self._mismatch and not self._warned:
            self._warned = True
            warnings.warn(f"prepjit: {self.name}: {self._mismatch}; recompiling from the bundled IR",
                          BundleWarning, stacklevel=5)
        return obj
