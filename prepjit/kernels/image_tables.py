"""Resize weight tables and the sizes derived from them, as the call prologue evaluates them (ints in, arrays or
ints out, cached by size). Kept apart from the lowering rules in ``prepjit.kernels.image`` so a warm process, whose
stored prologue calls these, imports no loop IR."""
from __future__ import annotations

import ctypes
import math
import os
import threading
from functools import lru_cache

import numpy as np

from prepjit.ir import dims as D
from prepjit.ir.image import NEAREST_MODES, RESAMPLE_MODES
from prepjit.runtime.executable import addr

PATHS = ("uint8", "float32", "float64")  # the dtype path of a table: index into this


# -- weight tables (evaluated by the prologue; ints in, arrays out) ----------------------------------------------
@lru_cache(maxsize=4096)
def _table(in_size, out_size, mode, antialias, path):
    """(size, index, weights, precision) of one resized axis, as ``resample.resize_weights`` computes it (int16
    weights widened to int32). ``mode``: index in RESAMPLE_MODES, plus len(RESAMPLE_MODES) when torch runs its
    channels-last kernel (its nearest indices differ: see ``resample._nearest_indices``).

    Built by a native kernel (``resample_tables``: the spec's arithmetic in loop IR, bit-identical), since a new
    size pair comes with nearly every sample of a real dataset; ``PREPJIT_NATIVE_TABLES=0`` runs the spec."""
    in_size, out_size = int(in_size), int(out_size)
    if in_size < 1 or out_size < 1 or not _NATIVE:
        return _spec_table(in_size, out_size, mode, antialias, path)
    return native_table(in_size, out_size, mode, antialias, path)


def native_table(in_size: int, out_size: int, mode: int, antialias, path: int) -> tuple:
    """``_table`` by its native kernel (sizes >= 1)."""
    var = variant(mode, antialias, path)
    K = table_width(in_size, out_size, var[0], var[1], var[3])
    n = out_size * K
    ints = np.empty(out_size + n + 1, np.int64)                    # size | index | precision
    weights = np.empty((out_size, K), np.int32 if path == 0 else (np.float32, np.float64)[path - 1])
    work = np.empty(2 * n + 2 * out_size + 1, np.float64)          # the kernel's scratch
    at, w = addr(ints), addr(work)
    args = _args(at, at + 8 * out_size, addr(weights), at + 8 * (out_size + n), w, w + 8 * n,
                 w + 8 * (n + out_size), w + 8 * (2 * n + out_size), w + 8 * (2 * n + 2 * out_size),
                 in_size, out_size, K)
    _builder(var)(args)
    return ints[:out_size], ints[out_size:out_size + n].reshape(out_size, K), weights, int(ints[-1])


BUILDER_SLOTS = ("size", "index", "weights", "precision", "work", "total", "normed", "cand", "wmax",
                 "in_size", "out_size", "K")  # the argument array of every table kernel's entry
_args = ctypes.c_int64 * len(BUILDER_SLOTS)


def variant(mode: int, antialias, path: int) -> tuple:
    """(mode name, antialias, torch's channels-last nearest kernel, dtype path name): which table kernel builds a
    table. Flags that do not change the table are dropped, so tables computed alike share one kernel."""
    n = len(RESAMPLE_MODES)
    name = RESAMPLE_MODES[mode % n]
    nearest = name in NEAREST_MODES
    return name, bool(antialias) and not nearest, mode >= n and nearest, PATHS[path]


def table_width(in_size: int, out_size: int, mode: str, antialias: bool, path: str) -> int:
    """The taps per output of the spec's table (``resample.resize_weights``): sizes the kernel's buffers."""
    if mode in NEAREST_MODES:
        return 1
    taps = 2 if mode == "bilinear" else 4
    if not antialias:
        return taps
    if path == "float32":
        ft = np.float32
        scale = ft(in_size) / ft(out_size)
        support = ft(taps * 0.5 * np.float64(scale)) if scale >= 1.0 else ft(taps * 0.5)
    else:  # float64: Python floats round the same, several times faster than NumPy scalars
        scale = in_size / out_size
        support = taps * 0.5 * scale if scale >= 1.0 else taps * 0.5
    return math.ceil(support) * 2 + 1


_NATIVE = os.environ.get("PREPJIT_NATIVE_TABLES", "1") != "0"
_BUILDER_VERSION = "1"
_builders: dict = {}
_builders_lock = threading.Lock()


def _kernel_key(var: tuple) -> tuple[str, str]:
    """(name, cache key) of the table kernel of ``var``: keyed by prepjit's source hash (memoized), so a warm
    process finds it without building its IR."""
    from prepjit.compiler.driver import compiler_hash
    from prepjit.runtime import native

    name = "resize_table_" + "_".join(map(str, var))
    return name, native.fixed_kernel_key(name, _BUILDER_VERSION, compiler_hash())


def _builder(var: tuple):
    """The entry (ctypes function) of the table kernel of ``var``, compiled once per host and cached on disk like
    any kernel."""
    fn = _builders.get(var)
    if fn is None:
        with _builders_lock:
            fn = _builders.get(var)
            if fn is None:
                from prepjit.runtime import native

                name, key = _kernel_key(var)

                def build_ir():
                    from prepjit.kernels.resample_tables import kernel_for
                    from prepjit.lowering.llvm import render_program

                    return render_program([kernel_for(var)], list(BUILDER_SLOTS), name)

                fn = _builders[var] = native.load_fixed_kernel(key, build_ir, "prepjit_entry", {
                    "function": f"prepjit {name}", "target": "cpu", "specialization": []})
    return fn.cfunc  # the NativeFunction stays in ``_builders``: it keeps the code mapped


def prebuild(program) -> dict:
    """Compile (or load) the table kernels ``program``'s prologue calls, so a process that compiled a function (e.g.
    ``prepjit warm``) leaves them in the cache too, and a warm process never compiles; {cache key: name} of them
    (a bundle carries their objects). A mode that depends on the sizes (torch's channels-last nearest kernel or
    not) builds both kernels."""
    built: dict = {}
    if not _NATIVE:
        return built
    for b in program.buffers.values():
        if b.kind == "table" and b.maker in (rs_size, rs_index, rs_start, rs_weights):
            _, _, mode, antialias, path = b.maker_args
            n = len(RESAMPLE_MODES)
            modes = [mode] if isinstance(mode, int) else [m + k * n for m in range(n) for k in (0, 1)
                                                          if RESAMPLE_MODES[m] in NEAREST_MODES]
            for m in modes:
                var = variant(m, antialias, path)
                _builder(var)
                name, key = _kernel_key(var)
                built[key] = name
    return built


def _spec_table(in_size, out_size, mode, antialias, path):
    from prepjit.kernels.resample import resize_weights

    n = len(RESAMPLE_MODES)
    t = resize_weights(int(in_size), int(out_size), RESAMPLE_MODES[mode % n], bool(antialias), PATHS[path],
                       vectorized=mode >= n)
    weights = t.weights.astype(np.int32) if path == 0 else t.weights
    return (np.ascontiguousarray(t.size, np.int64), np.ascontiguousarray(t.index, np.int64),
            np.ascontiguousarray(weights), int(t.precision or 0))


def rs_size(*a):
    return _table(*a)[0]


def rs_index(*a):
    return _table(*a)[1]


@lru_cache(maxsize=4096)
def rs_start(*a):
    return np.ascontiguousarray(_table(*a)[1][:, 0])


def rs_weights(*a):
    return _table(*a)[2]


def rs_taps(*a):
    return int(_table(*a)[1].shape[1])


def rs_precision(*a):
    return _table(*a)[3]


@lru_cache(maxsize=4096)
def _span(in_size, out_size, mode, antialias, path, start, count):
    """[lo, hi): the input rows (or columns) that outputs [start, start + count) read (clamped like the passes)."""
    if count <= 0:
        return 0, 0
    _, index, _, _ = _table(in_size, out_size, mode, antialias, path)
    rows = index[max(0, min(start, out_size - 1)):max(0, min(start + count, out_size))]
    if rows.size == 0:  # the window lies entirely in the padding: every output row reads the clamped edge row
        edge = index[0 if start < 0 else out_size - 1]
        return int(edge.min()), int(edge.max()) + 1
    lo, hi = int(rows.min()), int(rows.max()) + 1
    if start < 0:
        lo = min(lo, int(index[0].min()))
    if start + count > out_size:
        hi = max(hi, int(index[out_size - 1].max()) + 1)
    return lo, hi


def rs_span_lo(*a):
    return _span(*a)[0]


def rs_span_len(*a):
    lo, hi = _span(*a)
    return hi - lo


def rs_vectorized(channels, out_h, out_w):
    from prepjit.kernels.resample import _vectorized_kernel

    return int(_vectorized_kernel(channels, out_h, out_w))


D.register_call("rs_taps", rs_taps)
D.register_call("rs_precision", rs_precision)
D.register_call("rs_vectorized", rs_vectorized)
D.register_call("rs_span_lo", rs_span_lo)
D.register_call("rs_span_len", rs_span_len)
