"""Counter-based random numbers for augmentations: a pure function of (seed, sample index, stream, draw).

There is no generator state: the k-th draw of random op ``stream`` for sample ``index`` under ``seed`` is
``uniform(seed, index, stream, k)``, so a sample gets the same augmentation whatever the thread count, the
batch split or the worker that runs it, and any backend computing the same function reproduces it. Random
image ops use it for per-sample parameters (crop boxes, flip decisions), which the call prologue evaluates
on the host; kernels receive them as ordinary size parameters.

The mixing function is SplitMix64's finalizer (Steele, Lea & Flood 2014) applied to the packed counter;
draws are uniform doubles with 53 random bits in [0, 1).
"""
from __future__ import annotations

import struct
from functools import lru_cache

import numpy as np

_M64 = (1 << 64) - 1


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@lru_cache(maxsize=1024)
def _sample_key(seed: int, index: int) -> int:
    """The mixed (seed, index) every draw of a sample starts from (computed once for its several draws)."""
    return _mix(_mix(seed & _M64) ^ (index & _M64))


def random_bits(seed: int, index: int, stream: int, draw: int) -> int:
    """64 random bits for draw ``draw`` of stream ``stream`` of sample ``index`` under ``seed``."""
    return _mix(_sample_key(seed, index) ^ (((stream & 0xFFFFFFFF) << 32) | (draw & 0xFFFFFFFF)))


def uniform(seed: int, index: int, stream: int, draw: int) -> float:
    """A double uniformly distributed in [0, 1)."""
    return (random_bits(seed, index, stream, draw) >> 11) * (1.0 / (1 << 53))


def float_to_bits(x: float) -> int:
    """A float as the int64 of its IEEE bits: float parameters of random ops travel in (integer) dim calls."""
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


def bits_to_float(b: int) -> float:
    return struct.unpack("<d", struct.pack("<q", int(b)))[0]


def _mix_v(z):
    """:func:`_mix` over a uint64 array (NumPy's uint64 arithmetic wraps modulo 2**64, as the masks do)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


_last_keys: tuple = (None, None, None)  # (seed, index array, their keys): a batch's draws share the keys


def uniform_v(seed: int, index, stream: int, draw: int):
    """:func:`uniform` for an int64 array of sample indices: the same doubles, one a sample."""
    global _last_keys
    last_seed, last_index, key = _last_keys
    if last_index is not index or last_seed != seed:
        key = _mix_v(np.uint64(_mix(seed & _M64)) ^ np.asarray(index, np.int64).astype(np.uint64))
        _last_keys = (seed, index, key)
    bits = _mix_v(key ^ np.uint64(((stream & 0xFFFFFFFF) << 32) | (draw & 0xFFFFFFFF)))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
