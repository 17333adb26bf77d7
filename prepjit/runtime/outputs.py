"""Recycled memory for ``.batch`` outputs.

A batch's stacked output is large (64 eval images: 38 MB). A new NumPy array that size is fresh memory from the
kernel, and the kernel zeroes every page of it on first write — ≈ 60 µs an image, and memory traffic that does not
scale across threads. Training loops drop each batch before (or soon after) asking for the next, so the memory of
a dropped output is kept and handed to the next batch of the same byte size, as PyTorch's caching allocators do.

Safety: an output's memory returns here only when nothing refers to it any more. Each output array's base is a
``_Block`` (an object exposing the memory through ``__array_interface__``); every view, slice or
``torch.from_numpy`` tensor keeps the array, hence the block, alive, and the block's ``__del__`` is what recycles
the memory — exactly when NumPy would otherwise have freed it.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from prepjit.runtime.executable import addr

MIN_BYTES = 1 << 20           # smaller outputs: malloc reuses freed memory by itself
KEEP_PER_SIZE = 2             # free blocks kept per byte size (a batch in use + the next one) ...
KEEP_SIZE_BYTES = 64 << 20    # ... or more while they fit in this: a text batch's id, type-id and mask arrays
KEEP_MAX_PER_SIZE = 8         # are three outputs of one size (6 blocks for two batches)
KEEP_BYTES = 512 << 20        # and at most this much memory kept in all
_ALIGN = 64

_free: dict[int, deque] = {}


class _Block:
    __slots__ = ("__array_interface__", "raw", "__weakref__")

    def __del__(self):
        _release(self.raw)


def empty(shape: tuple, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)``, on recycled memory when the output is large (64-byte aligned)."""
    dt = np.dtype(dtype)
    shape = tuple(map(int, shape))
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes < MIN_BYTES or dt.hasobject:
        return np.empty(shape, dt)
    raw = None
    q = _free.get(nbytes)
    if q:
        try:
            raw = q.pop()  # deque operations are atomic: threads and __del__ may race here
        except IndexError:
            raw = None
    if raw is None:
        raw = np.empty(nbytes + _ALIGN, np.uint8)
    at = addr(raw)
    block = _Block()
    block.raw = raw
    block.__array_interface__ = {"shape": shape, "typestr": dt.str, "version": 3,
                                 "data": (at + (-at) % _ALIGN, False)}
    return np.asarray(block)


def _release(raw: np.ndarray) -> None:
    nbytes = raw.nbytes - _ALIGN
    q = _free.setdefault(nbytes, deque())
    if len(q) < keep_per_size(nbytes) and kept_bytes() + nbytes <= KEEP_BYTES:
        q.append(raw)


def keep_per_size(nbytes: int) -> int:
    """How many free blocks of ``nbytes`` are kept."""
    return max(KEEP_PER_SIZE, min(KEEP_MAX_PER_SIZE, KEEP_SIZE_BYTES // max(nbytes, 1)))


def kept_bytes() -> int:
    """Memory held for reuse now."""
    return sum(size * len(q) for size, q in list(_free.items()))


def release() -> None:
    """Give all kept memory back (e.g. before a phase that needs it elsewhere)."""
    _free.clear()
