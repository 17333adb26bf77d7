"""Resize weight tables and the sizes derived from them, as the call prologue evaluates them (ints in, arrays or
ints out, cached by size). Kept apart from the lowering rules in ``prepjit.kernels.image`` so a warm process, whose
stored prologue calls these, imports no loop IR."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from prepjit.ir import dims as D
from prepjit.ir.image import RESAMPLE_MODES

PATHS = ("uint8", "float32", "float64")  # the dtype path of a table: index into this


# -- weight tables (evaluated by the prologue; ints in, arrays out) ----------------------------------------------
@lru_cache(maxsize=4096)
def _table(in_size, out_size, mode, antialias, path):
    """``mode``: index in RESAMPLE_MODES, plus len(RESAMPLE_MODES) when torch runs its channels-last kernel (its
    nearest indices differ: see ``resample._nearest_indices``)."""
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
