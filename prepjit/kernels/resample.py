"""Reference image resampling that reproduces torch's CPU ``F.interpolate`` bit for bit (pure NumPy).

This module is the *spec* for the image-resize ops the compiler will lower into native loops. Everything is
split into two stages, exactly like ATen does it:

1. a **weights table** per resized axis (:func:`resize_weights`): for every output index, the source taps
   (``index``), how many of them are live (``size``) and their weights — float weights for the float path,
   int16 fixed-point weights plus a shift (``precision``) for the uint8 path;
2. an **accumulation pass** per axis (:func:`apply_pass_uint8`, :func:`apply_pass_float`) that walks the taps in
   order and writes one output row/column.

A 2-D resize is two 1-D passes: **horizontal (width, the contiguous axis) first, then vertical (height)**. A pass
whose input and output sizes are equal is skipped (both sizes equal: plain copy).

What torch 2.13 (CPU build) does — read from ATen's UpSampleKernel.cpp / UpSampleKernelAVXAntialias.h and then
measured against torch 2.13.0+cpu on an AVX512 machine (these ops are registered without an AVX512 variant, so
the AVX2 build of the kernels runs; every statement below is checked by tests/test_resample.py)
--------------------------------------------------------------------------------------------------------------
``torch.nn.functional.interpolate(x, size=(oh, ow), mode=..., antialias=..., align_corners=False)`` with ``size=``
(so no user scale: ``scale = in / out`` computed in the weight type) dispatches as follows.

**uint8, bilinear/bicubic (antialias True or False)** — the Pillow-SIMD style separable kernel
(``upsample_avx_bilinear_bicubic_uint8`` for C <= 4, ``separable_upsample_generic_Nd_kernel_impl`` for C > 4;
both compute the same integers):

* pass order: **horizontal first, then vertical**; a pass is skipped when that size does not change;
* weights are computed in **double** (:func:`_aa_weights` when antialias, :func:`_noaa_uint8_weights` otherwise),
  then converted to int16 with ``precision`` bits: ``precision`` is the largest ``p <= 22`` such that
  ``int(0.5 + wmax * 2**p) < 2**15`` where ``wmax`` is the largest weight of the *whole axis* (the loop in
  ``_compute_index_ranges_int16_weights``), and ``w16 = trunc(w * 2**p + copysign(0.5, w))`` (round half away
  from zero); each axis has its own precision;
* each pass computes, in int32, ``acc = 2**(p-1) + sum_k src[start + k] * w16[k]`` and stores
  ``clamp(acc >> p, 0, 255)`` (arithmetic shift = floor) as **uint8** — so the intermediate image between the
  horizontal and the vertical pass is uint8, rounded half up and clamped;
* 3-channel channels-last input is processed in place as RGB by the AVX kernel (1/2 channels, or non
  channels-last input, are first unpacked to 4 channels with zeros) — channels never mix, so this changes no
  value, and channels-last vs contiguous input give identical uint8 results.

**float32/float64, antialias=True (bilinear/bicubic)** — ``separable_upsample_generic_Nd_kernel_impl``: the same
window/weight formulas as the uint8 path, evaluated in the *input's* float type (with the few double
sub-expressions the C++ mixes in, reproduced op by op in :func:`_aa_weights`), normalised by their float sum;
horizontal then vertical pass with a float intermediate; accumulation order in :func:`apply_pass_float`.

**float, antialias=False** — not the separable kernel:

* bilinear: ``upsample_generic_Nd_kernel_impl`` (2 taps per axis: numerically a horizontal float pass followed
  by a vertical one), *or*, when ``C > 3`` (channels-last input), when ``oh + ow <= 128``, or when torch runs
  with one thread and ``C == 3``, the fused channels-last kernel (:func:`_bilinear_fused`). For C = 4 this is
  the one place where channels-last and contiguous NCHW input differ (by an ulp);
* bicubic: ``upsample_generic_Nd_kernel_impl`` with 4 border-clamped taps (Keys cubic, ``A = -0.75``).

**FMA.** torch's AVX2 kernels are compiled with floating-point contraction, so many ``a * b + c`` are fused
multiply-adds (one rounding). Which ones was measured, not guessed: the source index ``scale*(i+0.5)-0.5``; the
Keys polynomials of the antialias filter (all steps) and of ``get_cubic_upsample_coefficients`` (only some
steps); the tap accumulation (generic kernels: ``fma(x0, w0, x1*w1)`` then FMAs; antialias kernels: GCC
vectorised the tap loop as an in-order reduction over 4 floats / 2 doubles — those taps are multiplied then
added, the remaining ``(n-1) % V`` taps are FMAs). :func:`fma` emulates a correctly rounded FMA with float64
NumPy arithmetic. For the uint8 path these only move double weights by an ulp, which never changed an int16
weight or an output in our sweeps.

**nearest / nearest-exact** (any dtype): pure gathers, ``src = min(floor(i * scale), in - 1)`` with a float32
``scale = float(in) / float(out)`` (nearest), and ``min(floor((i + 0.5) * scale), in - 1)`` (nearest-exact) — two
kernels with different rounding (the channels-last one: ``floorf((float)((i + 0.5) * (double)scale))``; the
generic one: ``floorf(max(fma(scale, i + 0.5, -0.5), 0) + 0.5)`` in the opmath type — float32, or float64 for
float64 input), picked with torch's own condition (:func:`_vectorized_kernel`).

**Cubic filters**: antialias=True uses Keys' ``a = -0.5`` (Pillow's BICUBIC support-2 filter, stretched by the
scale when downsampling) on every dtype; antialias=False uses ``a = -0.75`` (OpenCV's INTER_CUBIC) on every
dtype, with out-of-range taps clamped to the border pixel (float) or their weights folded into the border tap
(uint8 — the same sum).

**A torch bug, reproduced** (``torch_quirks=True``): in ``separable_upsample_generic_Nd_kernel_impl`` (float
antialias; uint8 only for C > 4) an output of width 1 makes every row of the vertical pass repeat its first row's
value (per channel and per parallel chunk) — see :func:`_width1_vertical_quirk`.

Also here: torchvision v2's ``Resize`` size rule (:func:`torchvision_resize_size`) and ``CenterCrop`` offsets and
padding (:func:`center_crop_offsets`, :func:`center_crop_padding`, :func:`center_crop_hwc`).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

__all__ = [
    "MODES", "ResizeWeights", "resize_weights", "apply_pass_uint8", "apply_pass_float", "fma",
    "resize_uint8_hwc", "resize_float_hwc", "torchvision_resize_size", "center_crop_offsets",
    "center_crop_padding", "center_crop_hwc",
]

MODES = ("nearest", "nearest-exact", "bilinear", "bicubic")

_f32 = np.float32
_f64 = np.float64


# ---------------------------------------------------------------------------------------------------------------
# fused multiply-add. torch's AVX2 kernels are compiled with FMA contraction enabled, so several ``a * b + c``
# expressions below are single-rounding FMAs in torch; these emulate ``fma`` exactly (correctly rounded) with
# plain float64 NumPy arithmetic, vectorised.
# ---------------------------------------------------------------------------------------------------------------

def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _round_to_odd_sum(a, b):
    """``a + b`` rounded to float64 with round-to-odd (exact sums untouched; inexact ones land on the neighbour
    whose last mantissa bit is 1). Rounding that result once more to a narrower format is then correct."""
    s, e = _two_sum(a, b)
    fix = (e != 0) & ((s.view(np.int64) & 1) == 0) & np.isfinite(s)
    return np.where(fix, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)


def _two_prod(a, b):
    """Dekker/Veltkamp exact product: ``a * b == p + e`` exactly."""
    def split(x):
        c = x * 134217729.0                                              # 2**27 + 1
        hi = c - (c - x)
        return hi, x - hi
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def fma(a, b, c, ft):
    """Correctly rounded ``a * b + c`` in ``ft`` (float32 or float64), elementwise.

    float32: the product is exact in float64 and the float64 sum is rounded to odd, then to float32.
    float64: Boldo & Melquiond's emulation (exact product and sums, one round-to-odd, one final rounding).
    """
    with np.errstate(all="ignore"):
        a = np.asarray(a, dtype=_f64)
        b = np.asarray(b, dtype=_f64)
        c = np.asarray(c, dtype=_f64)
        if ft is _f32:
            p = a * b
            return _round_to_odd_sum(p, np.broadcast_to(c, p.shape).astype(_f64)).astype(_f32)
        a, b, c = np.broadcast_arrays(a, b, c)
        uh, ul = _two_prod(a, b)
        th, tl = _two_sum(c, ul)
        vh, vl = _two_sum(uh, th)
        out = vh + _round_to_odd_sum(tl, vl)
        # non-finite values (inf/nan inputs, overflow in the splitting): fall back to the direct formula
        direct = a * b + c
        return np.where(np.isfinite(out), out, direct).astype(_f64)


class ResizeWeights(NamedTuple):
    """The per-axis table of one resize: output index ``i`` reads ``size[i]`` taps ``index[i, :size[i]]``.

    ``start[i]`` is the first source index of the tap window (``index[i, k] == start[i] + k`` for the separable
    kernels; the non-antialiased float kernels clamp their taps at the borders so ``index`` may repeat a pixel).
    Taps ``k >= size[i]`` carry weight 0 and a valid index; they are never accumulated. ``weights`` is float32 or
    float64 (the float path, in the type torch computes it in) or int16 (uint8 path, fixed point with
    ``precision`` fractional bits). ``kernel`` names the torch kernel family the table belongs to.
    """
    in_size: int
    out_size: int
    mode: str
    antialias: bool
    dtype_path: str
    start: np.ndarray
    size: np.ndarray
    index: np.ndarray
    weights: np.ndarray
    precision: Optional[int]
    kernel: str


# ---------------------------------------------------------------------------------------------------------------
# filters (ATen's aa_filter functions). ``ft`` is the type the C++ evaluates in: the arithmetic is done in NumPy
# arrays of that dtype so every operation rounds exactly like the C++ one.
# ---------------------------------------------------------------------------------------------------------------

def _linear_filter(x: np.ndarray, ft) -> np.ndarray:
    """HelperInterpLinear::aa_filter: ``1 - |x|`` for ``|x| < 1`` else 0 (``1.0 - x`` is a double op, rounded
    to ``ft`` on return — identical to the ``ft`` subtraction)."""
    x = np.abs(x.astype(ft))
    return np.where(x < 1.0, (ft(1.0) - x).astype(ft), ft(0.0)).astype(ft)


def _cubic_conv1(x, a, ft, fused=(True, True)):
    """cubic_convolution1 = ``((A + 2) * x - (A + 3)) * x * x + 1`` in ``ft``; ``fused`` says which of the two
    contractible steps torch's compiled code turned into an FMA (it differs between call sites)."""
    s = _mul_add((a + ft(2)), x, -(a + ft(3)), ft, fused[0])
    return _mul_add((s * x).astype(ft), x, ft(1), ft, fused[1])


def _cubic_conv2(x, a, ft, fused=(True, True, True)):
    """cubic_convolution2 = ``((A * x - 5 * A) * x + 8 * A) * x - 4 * A`` in ``ft`` (see ``_cubic_conv1``)."""
    s = _mul_add(a, x, -(ft(5) * a), ft, fused[0])
    s = _mul_add(s, x, ft(8) * a, ft, fused[1])
    return _mul_add(s, x, -(ft(4) * a), ft, fused[2])


def _mul_add(a, b, c, ft, fused: bool):
    """``a * b + c`` in ``ft``: one rounding (FMA) when ``fused``, two otherwise."""
    if fused:
        return fma(a, b, c, ft)
    return ((np.asarray(a, ft) * np.asarray(b, ft)).astype(ft) + np.asarray(c, ft)).astype(ft)


def _cubic_filter(x: np.ndarray, a: float, ft) -> np.ndarray:
    """HelperInterpCubic::aa_filter (Keys cubic convolution with parameter ``a``); in torch's build every
    multiply-add of both polynomials is an FMA (measured)."""
    a = ft(a)
    x = np.abs(x.astype(ft))
    with np.errstate(all="ignore"):
        c1 = _cubic_conv1(x, a, ft)
        c2 = _cubic_conv2(x, a, ft)
    return np.where(x < 1.0, c1, np.where(x < 2.0, c2, ft(0.0))).astype(ft)


def _filter_for(mode: str, antialias: bool):
    if mode == "bilinear":
        return 2, _linear_filter
    # Pillow-compatible a=-0.5 with antialias, OpenCV-compatible a=-0.75 without (both dtypes)
    a = -0.5 if antialias else -0.75
    return 4, (lambda x, ft: _cubic_filter(x, a, ft))


# ---------------------------------------------------------------------------------------------------------------
# weights tables
# ---------------------------------------------------------------------------------------------------------------

def _scale(in_size: int, out_size: int, ft):
    """area_pixel_compute_scale(align_corners=False, no user scale): ``(ft)in / out`` in ``ft``."""
    return ft(in_size) / ft(out_size)


def _source_index(scale, i: np.ndarray, ft) -> np.ndarray:
    """area_pixel_compute_source_index(align_corners=False) *before* the clamp at 0: ``scale * (i + 0.5) - 0.5``,
    which torch's build contracts into ``fma(scale, i + 0.5, -0.5)`` (one rounding; measured on float64, and for
    float32 the same as evaluating the expression in double and rounding once)."""
    return fma(scale, i + 0.5, -0.5, ft)


def _aa_weights(in_size: int, out_size: int, interp_size: int, filt, ft):
    """HelperInterpBase::_compute_indices_min_size_weights_aa, vectorised over the output index.

    Returns (xmin, xsize, weights[out, K], wmax) with weights normalised by their sum, all in ``ft``.
    Mixed-precision details copied from the C++ (``scalar_t`` = ``ft``; ``0.5`` literals are doubles)::

        scale    = (ft)in / out
        support  = scale >= 1 ? (ft)((interp_size * 0.5) * scale) : interp_size * 0.5
        K        = ceil(support) * 2 + 1
        center   = (ft)(scale * (i + 0.5))                     # double product, rounded to ft
        invscale = scale >= 1 ? (ft)(1.0 / scale) : 1
        xmin     = max((int64)((center - support) + 0.5), 0)   # ft subtraction, double add, trunc
        xsize    = clamp(min((int64)((center + support) + 0.5), in) - xmin, 0, K)
        w[j]     = filter((ft)(((ft)(j + xmin) - center + 0.5) * invscale))   for j < xsize
        w[j]    /= sum(w)   (sequential ft sum; skipped when the sum is 0)
    """
    scale = _scale(in_size, out_size, ft)
    support = ft(interp_size * 0.5 * _f64(scale)) if scale >= 1.0 else ft(interp_size * 0.5)
    K = int(np.ceil(support)) * 2 + 1
    i = np.arange(out_size, dtype=np.int64)
    center = (_f64(scale) * (i + 0.5)).astype(ft)
    invscale = ft(1.0 / _f64(scale)) if scale >= 1.0 else ft(1.0)
    xmin = np.maximum(np.trunc((center - support).astype(_f64) + 0.5).astype(np.int64), 0)
    xmax = np.trunc((center + support).astype(_f64) + 0.5).astype(np.int64)
    xsize = np.clip(np.minimum(xmax, in_size) - xmin, 0, K)
    j = np.arange(K, dtype=np.int64)
    pos = (j[None, :] + xmin[:, None]).astype(ft)                        # int64 -> ft
    arg = (((pos - center[:, None]).astype(ft)).astype(_f64) + 0.5) * _f64(invscale)
    w = filt(arg.astype(ft), ft)
    live = j[None, :] < xsize[:, None]
    w = np.where(live, w, ft(0)).astype(ft)
    total = np.zeros(out_size, dtype=ft)
    for k in range(K):                                                   # sequential sum, like the C++ loop
        total = (total + w[:, k]).astype(ft)
    nz = total != 0
    with np.errstate(all="ignore"):
        wn = np.where(nz[:, None], (w / np.where(nz, total, ft(1))[:, None]).astype(ft), w).astype(ft)
    wn = np.where(live, wn, ft(0)).astype(ft)
    wmax = float(np.max(np.where(nz[:, None] & live, wn, ft(0)), initial=0.0))
    return xmin, xsize, wn, wmax


def _noaa_uint8_weights(in_size: int, out_size: int, interp_size: int, filt):
    """HelperInterpBase::_compute_indices_min_size_weights (uint8, antialias=False), in double::

        real    = fma(scale, i + 0.5, -0.5), clamped at 0 for bilinear only
        idx     = min((int64)floorf((float)real), in - 1)          # note: floorf on a double
        lambda  = clamp(real - idx, 0, 1)
        window  = [idx - support + 1, idx + support + 1) clipped to [0, in), support = K / 2
        w[j]    = filter((j + 1 - support) - lambda), j < K; a tap outside the image is folded into the
                  nearest border tap (w_index logic), so the sum stays 1 and no pixel is read out of range.
        wmax    = max over every partial sum written (that is what the C++ takes).
    """
    K = interp_size
    scale = _scale(in_size, out_size, _f64)
    i = np.arange(out_size, dtype=np.int64)
    real = _source_index(scale, i, _f64)
    if K == 2:
        real = np.where(real < 0, 0.0, real)
    idx = np.minimum(np.floor(real.astype(_f32)).astype(np.int64), in_size - 1)
    lam = np.minimum(np.maximum(real - idx, 0.0), 1.0)
    support = int(K * 0.5)
    umin = idx - support + 1
    umax = idx + support + 1
    imin = np.maximum(umin, 0)
    isize = np.clip(np.minimum(umax, in_size) - imin, 0, K)
    w = np.zeros((out_size, K), dtype=_f64)
    rows = np.arange(out_size)
    w_index = np.zeros(out_size, dtype=np.int64)
    wmax = 0.0
    for j in range(K):
        wj = filt(_f64(j + 1 - support) - lam, _f64)
        u = umin + j
        w_index = np.where(u <= 0, 0, np.where(u >= in_size - 1, isize - 1, w_index))
        w[rows, w_index] += wj
        wmax = max(wmax, float(np.max(w[rows, w_index], initial=0.0)))
        w_index = w_index + 1
    return imin, isize, w, wmax


def _int16_weights(w: np.ndarray, wmax: float):
    """_compute_index_ranges_int16_weights: pick the fixed-point precision from the axis-wide max weight, then
    round every weight half away from zero."""
    precision = 0
    while precision < 22:
        if int(0.5 + wmax * (1 << (precision + 1))) >= (1 << 15):
            break
        precision += 1
    v = w * _f64(1 << precision)
    w16 = np.where(v < 0, np.trunc(-0.5 + v), np.trunc(0.5 + v)).astype(np.int64)
    return w16.astype(np.int16), precision


def _linear_noaa_float(in_size: int, out_size: int, ft):
    """compute_source_index_and_lambda (float bilinear, antialias=False), opmath = ``ft``::

        out == in : idx0 = idx1 = i, lambda1 = 0
        otherwise : real = max(fma(scale, i + 0.5, -0.5), 0)   (in ft)
                    idx0 = min((int64)floorf(real), in - 1); idx1 = idx0 + (idx0 < in - 1)
                    (guard_index_and_lambda: floorf rounds a double ``real`` to float first, so a float64
                    ``real`` just below an integer picks that integer, with lambda clamped to 0)
                    lambda1 = clamp(real - idx0, 0, 1); lambda0 = 1 - lambda1
    """
    i = np.arange(out_size, dtype=np.int64)
    if in_size == out_size:
        return np.stack([i, i], 1), np.stack([np.ones(out_size, ft), np.zeros(out_size, ft)], 1)
    scale = _scale(in_size, out_size, ft)
    real = _source_index(scale, i, ft)
    real = np.where(real < 0, ft(0), real).astype(ft)
    i0 = np.minimum(np.floor(real.astype(_f32)).astype(np.int64), in_size - 1)    # floorf() of the ft value
    i1 = i0 + (i0 < in_size - 1)
    l1 = np.minimum(np.maximum((real - i0.astype(ft)).astype(ft), ft(0)), ft(1)).astype(ft)
    l0 = (ft(1) - l1).astype(ft)
    return np.stack([i0, i1], 1), np.stack([l0, l1], 1)


def _cubic_noaa_float(in_size: int, out_size: int, ft):
    """HelperInterpCubic::compute_indices_weights (float bicubic, antialias=False), opmath = ``ft``::

        real   = fma(scale, i + 0.5, -0.5)                 (not clamped)
        idx    = min((int64)floorf(real), in - 1); t = clamp(real - idx, 0, 1)
        coeffs = [cc2(t + 1), cc1(t), cc1(u), cc2(u + 1)] with u = 1 - t, A = -0.75
                 (get_cubic_upsample_coefficients; its own FMA pattern, see below)
        taps   = clamp(idx - 1 + j, 0, in - 1)
    """
    i = np.arange(out_size, dtype=np.int64)
    scale = _scale(in_size, out_size, ft)
    real = _source_index(scale, i, ft)
    idx = np.minimum(np.floor(real.astype(_f32)).astype(np.int64), in_size - 1)
    t = np.minimum(np.maximum((real - idx.astype(ft)).astype(ft), ft(0)), ft(1)).astype(ft)
    A = ft(-0.75)
    x2 = (ft(1.0) - t).astype(ft)
    # measured contraction pattern of get_cubic_upsample_coefficients as inlined in torch's kernel:
    # cubic_convolution1 fuses only its first step, cubic_convolution2 its first two.
    c1 = dict(fused=(True, False))
    c2 = dict(fused=(True, True, False))
    coeffs = np.stack([
        _cubic_conv2((t + ft(1.0)).astype(ft), A, ft, **c2),
        _cubic_conv1(t, A, ft, **c1),
        _cubic_conv1(x2, A, ft, **c1),
        _cubic_conv2((x2 + ft(1.0)).astype(ft), A, ft, **c2),
    ], 1)
    taps = np.clip(idx[:, None] - 1 + np.arange(4)[None, :], 0, in_size - 1)
    return taps, coeffs


def _nearest_indices(in_size: int, out_size: int, exact: bool, vectorized: bool, opmath) -> np.ndarray:
    """Source index of each output for nearest / nearest-exact.

    ``vectorized`` selects the channels-last kernel (``nearest_idx`` / ``nearest_exact_idx``: float32 scale,
    ``floorf(i * scale)`` / ``floorf((float)((i + 0.5) * (double)scale))``), otherwise the generic TensorIterator
    kernel, whose ``opmath`` is float32 for uint8/float32 and float64 for float64 input
    (``floorf(scale * i)`` / ``floorf(max(fma(scale, i + 0.5, -0.5), 0) + 0.5)``, the ``+ 0.5`` in double).
    """
    i = np.arange(out_size, dtype=np.int64)
    if vectorized or opmath is _f32:
        scale = _scale(in_size, out_size, _f32)
        if not exact:
            src = np.floor((i.astype(_f32) * scale).astype(_f32))
        elif vectorized:
            src = np.floor(((i + 0.5) * _f64(scale)).astype(_f32))
        else:
            real = _source_index(scale, i, _f32)
            real = np.where(real < 0, _f32(0), real)
            src = np.floor((real.astype(_f64) + 0.5).astype(_f32))
    else:
        scale = _scale(in_size, out_size, _f64)
        if not exact:
            src = np.floor((scale * i).astype(_f32))
        else:
            real = _source_index(scale, i, _f64)
            real = np.where(real < 0, 0.0, real)
            src = np.floor((real + 0.5).astype(_f32))
    return np.minimum(src.astype(np.int64), in_size - 1)


def resize_weights(in_size: int, out_size: int, mode: str = "bilinear", antialias: bool = True,
                   dtype_path: str = "uint8", *, vectorized: bool = False) -> ResizeWeights:
    """The weights table torch builds for one axis.

    ``dtype_path``: ``"uint8"`` (double weights -> int16 + precision), ``"float32"`` or ``"float64"`` (weights in
    that type, as torch computes them for an input of that dtype). ``vectorized`` only matters for
    ``nearest-exact`` (which of torch's two kernels; see :func:`_nearest_indices`).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if dtype_path not in ("uint8", "float32", "float64"):
        raise ValueError(f"dtype_path must be 'uint8', 'float32' or 'float64', got {dtype_path!r}")
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be >= 1, got in={in_size}, out={out_size}")
    ft = _f64 if dtype_path in ("uint8", "float64") else _f32

    def table(start, size, weights, precision, kernel):
        K = weights.shape[1]
        k = np.arange(K)
        live = k[None, :] < size[:, None]
        index = np.where(live, start[:, None] + k[None, :], start[:, None])
        weights = np.where(live, weights, 0).astype(weights.dtype)
        return ResizeWeights(in_size, out_size, mode, antialias, dtype_path, start.astype(np.int64),
                             size.astype(np.int64), index.astype(np.int64), weights, precision, kernel)

    if mode in ("nearest", "nearest-exact"):
        src = _nearest_indices(in_size, out_size, mode == "nearest-exact", vectorized,
                               _f64 if dtype_path == "float64" else _f32)
        w = np.ones((out_size, 1), dtype=np.int16 if dtype_path == "uint8" else ft)
        return ResizeWeights(in_size, out_size, mode, antialias, dtype_path, src, np.ones(out_size, np.int64),
                             src[:, None], w, None, "nearest")

    interp_size, filt = _filter_for(mode, antialias)
    if antialias:
        xmin, xsize, w, wmax = _aa_weights(in_size, out_size, interp_size, filt, ft)
        if dtype_path == "uint8":
            w16, prec = _int16_weights(w, wmax)
            return table(xmin, xsize, w16, prec, "separable-int16")
        return table(xmin, xsize, w, None, "separable-float")
    if dtype_path == "uint8":
        imin, isize, w, wmax = _noaa_uint8_weights(in_size, out_size, interp_size, filt)
        w16, prec = _int16_weights(w, wmax)
        return table(imin, isize, w16, prec, "separable-int16")
    taps, w = (_linear_noaa_float if mode == "bilinear" else _cubic_noaa_float)(in_size, out_size, ft)
    return ResizeWeights(in_size, out_size, mode, antialias, dtype_path, taps[:, 0].copy(),
                         np.full(out_size, taps.shape[1], np.int64), taps, w.astype(ft), None, "generic-float")


# ---------------------------------------------------------------------------------------------------------------
# accumulation passes (one axis at a time)
# ---------------------------------------------------------------------------------------------------------------

def apply_pass_uint8(src: np.ndarray, table: ResizeWeights, axis: int) -> np.ndarray:
    """One fixed-point pass along ``axis`` (basic_loop_aa_horizontal/vertical<uint8_t>, ImagingResample*8u)::

        acc = 1 << (precision - 1)                      # the +0.5 of round-half-up
        for k < size[i]: acc += src[index[i, k]] * w16[i, k]    # int32, exact
        out[i] = clamp(acc >> precision, 0, 255)        # arithmetic shift (floor), saturate to uint8
    """
    x = np.moveaxis(np.asarray(src), axis, 0).astype(np.int64)
    p = table.precision
    acc = np.full((table.out_size,) + x.shape[1:], 1 << (p - 1), dtype=np.int64)
    bshape = (table.out_size,) + (1,) * (x.ndim - 1)
    for k in range(int(table.size.max())):          # dead taps (k >= size[i]) have weight 0: adding them is a no-op
        acc += x[table.index[:, k]] * table.weights[:, k].astype(np.int64).reshape(bshape)
    out = np.clip(acc >> p, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


# Vector width (elements) GCC used when it vectorised the antialias tap loop of torch's AVX2 kernel: 128-bit
# vectors, i.e. 4 floats / 2 doubles (measured; see ``apply_pass_float``).
_AA_INORDER_WIDTH = {np.dtype(np.float32): 4, np.dtype(np.float64): 2}


def apply_pass_float(src: np.ndarray, table: ResizeWeights, axis: int) -> np.ndarray:
    """One float pass along ``axis`` in ``src``'s dtype. The rounding sequence depends on the kernel family
    (``table.kernel``), reproducing what torch's compiled AVX2 code does (FMA contraction + GCC's in-order
    vectorisation of the tap loop, all measured against torch 2.13):

    * ``separable-float`` (antialias, interpolate_aa_single_dim, horizontal and vertical passes alike),
      with ``n = size[i]`` taps and ``V`` = 4 (float32) / 2 (float64)::

          acc = x[0] * w[0]
          for k in 1 .. n-1:
              if k <= V * ((n - 1) // V):  acc = acc + (x[k] * w[k])     # vectorised part: product rounded
              else:                        acc = fma(x[k], w[k], acc)     # scalar epilogue: fused

    * ``generic-float`` (antialias=False bilinear/bicubic, Interpolate<...>; 2 or 4 taps, all live)::

          acc = fma(x[0], w[0], x[1] * w[1])
          for k in 2 .. K-1: acc = fma(x[k], w[k], acc)

    * ``nearest``: a gather.
    """
    x = np.moveaxis(np.asarray(src), axis, 0)
    ft = x.dtype.type
    w = table.weights.astype(ft)
    bshape = (table.out_size,) + (1,) * (x.ndim - 1)

    def tap(k):
        return x[table.index[:, k]], w[:, k].reshape(bshape)

    if table.kernel == "nearest":
        return np.moveaxis(x[table.index[:, 0]], 0, axis)
    with np.errstate(all="ignore"):
        if table.kernel == "generic-float":
            x0, w0 = tap(0)
            x1, w1 = tap(1)
            acc = fma(x0, w0, (x1 * w1).astype(ft), ft)
            for k in range(2, w.shape[1]):
                xk, wk = tap(k)
                acc = fma(xk, wk, acc, ft)
        elif table.kernel == "separable-float":
            V = _AA_INORDER_WIDTH[np.dtype(ft)]
            n = table.size.reshape(bshape)
            vec_end = V * ((n - 1) // V)
            x0, w0 = tap(0)
            acc = (x0 * w0).astype(ft)
            for k in range(1, w.shape[1]):
                live = k < n
                if not live.any():
                    break
                xk, wk = tap(k)
                step = (acc + (xk * wk).astype(ft)).astype(ft)
                needs_fma = live & (k > vec_end)
                if needs_fma.any():
                    step = np.where(needs_fma, fma(xk, wk, acc, ft), step)
                acc = np.where(live, step, acc).astype(ft)
        else:
            raise ValueError(f"not a float weights table: kernel={table.kernel!r}")
    return np.moveaxis(acc, 0, axis)


# ---------------------------------------------------------------------------------------------------------------
# 2-D drivers on HWC images
# ---------------------------------------------------------------------------------------------------------------

def _as_hwc(img: np.ndarray):
    img = np.asarray(img)
    if img.ndim == 2:
        return img[:, :, None], True
    if img.ndim != 3:
        raise ValueError(f"expected an HW or HWC image, got shape {img.shape}")
    return img, False


def _vectorized_kernel(channels: int, out_h: int, out_w: int) -> bool:
    """_use_vectorized_kernel_cond_2d for a channels-last input: torch switches to its channels-last kernels
    (nearest, nearest-exact, float bilinear) when C > 3 or when the output is small (oh + ow <= 128)."""
    return channels > 3 or (out_h + out_w) <= 128


def _check_out(out_h: int, out_w: int):
    if int(out_h) < 1 or int(out_w) < 1:
        raise ValueError(f"output size must be >= 1, got ({out_h}, {out_w})")


_GRAIN_SIZE = 32768          # at::internal::GRAIN_SIZE


def _width1_vertical_quirk(out: np.ndarray, num_threads: int) -> np.ndarray:
    """Reproduce a torch bug of ``separable_upsample_generic_Nd_kernel_impl`` (float antialias, and uint8 with
    C > 4): when the output width is 1 the output tensor is NCHW-contiguous, so TensorIterator's inner loop of
    the *vertical* pass runs along H, while ``basic_loop_aa_vertical`` reads the row's window/weights only once,
    at the start of each inner-loop call. Every run of rows processed by one call therefore repeats the value of
    its first row. Calls are per channel and per ``at::parallel_for`` chunk over the ``C * out_h`` elements
    (OpenMP split: no split below GRAIN_SIZE, else ``min(threads, ceil(n / GRAIN_SIZE))`` equal chunks).

    ``out`` is the correct (H, 1, C) result of the vertical pass; returns what torch returns.
    """
    oh, _, c = out.shape
    numel = oh * c
    if numel < _GRAIN_SIZE or num_threads <= 1:
        bounds = [0, numel]
    else:
        tasks = min(num_threads, -(-numel // _GRAIN_SIZE))
        chunk = -(-numel // tasks)
        bounds = list(range(0, numel, chunk)) + [numel]
    res = np.empty_like(out)
    for ch in range(c):
        lo, hi = ch * oh, (ch + 1) * oh
        starts = sorted({lo} | {b for b in bounds if lo < b < hi}) + [hi]
        for a, b in zip(starts[:-1], starts[1:]):
            res[a - lo:b - lo, 0, ch] = out[a - lo, 0, ch]
    return res


def resize_uint8_hwc(img: np.ndarray, out_h: int, out_w: int, mode: str = "bilinear",
                     antialias: bool = True, *, num_threads: int = 2, torch_quirks: bool = True,
                     avx2: bool = True) -> np.ndarray:
    """Resize a uint8 HWC (or HW) image exactly like ``F.interpolate`` on the channels-last uint8 NCHW tensor.

    bilinear/bicubic: horizontal int16 pass (uint8 result), then vertical int16 pass; passes whose size does not
    change are skipped. nearest/nearest-exact: a gather. ``antialias`` is ignored for the nearest modes (torch
    rejects it there). ``torch_quirks`` reproduces :func:`_width1_vertical_quirk`, reachable when torch uses its
    generic separable kernel: C > 4, or any C when torch runs without its AVX2 kernels (``avx2=False``, e.g.
    ``ATEN_CPU_CAPABILITY=default``; the integers are otherwise identical). ``num_threads`` is torch's thread
    count, used by that quirk only.
    """
    x, squeeze = _as_hwc(img)
    if x.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {x.dtype}")
    _check_out(out_h, out_w)
    h, w, c = x.shape
    if mode in ("nearest", "nearest-exact"):
        vec = _vectorized_kernel(c, out_h, out_w)
        ry = resize_weights(h, out_h, mode, False, "uint8", vectorized=vec).index[:, 0]
        rx = resize_weights(w, out_w, mode, False, "uint8", vectorized=vec).index[:, 0]
        out = x[ry][:, rx]
    elif mode in ("bilinear", "bicubic"):
        out = x
        if w != out_w:
            out = apply_pass_uint8(out, resize_weights(w, out_w, mode, antialias, "uint8"), axis=1)
        if h != out_h:
            out = apply_pass_uint8(out, resize_weights(h, out_h, mode, antialias, "uint8"), axis=0)
            if torch_quirks and (c > 4 or not avx2) and out_w == 1:
                out = _width1_vertical_quirk(out, num_threads)
        out = out.copy() if out is x else out
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return out[:, :, 0] if squeeze else out


def resize_float_hwc(img: np.ndarray, out_h: int, out_w: int, mode: str = "bilinear", antialias: bool = False,
                     *, num_threads: int = 2, torch_quirks: bool = True) -> np.ndarray:
    """Resize a float32/float64 HWC (or HW) image like ``F.interpolate`` on the channels-last NCHW tensor.

    ``num_threads`` is ``torch.get_num_threads()`` of the run being reproduced: with exactly one thread and C == 3,
    torch picks its fused channels-last bilinear kernel (otherwise only for C > 3 or oh + ow <= 128); it also
    shapes :func:`_width1_vertical_quirk`, which ``torch_quirks`` reproduces (antialias with ``out_w == 1``).
    """
    x, squeeze = _as_hwc(img)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"expected a float32 or float64 image, got {x.dtype}")
    _check_out(out_h, out_w)
    path = "float32" if x.dtype == np.float32 else "float64"
    h, w, c = x.shape
    if mode in ("nearest", "nearest-exact"):
        vec = _vectorized_kernel(c, out_h, out_w)
        ry = resize_weights(h, out_h, mode, False, path, vectorized=vec).index[:, 0]
        rx = resize_weights(w, out_w, mode, False, path, vectorized=vec).index[:, 0]
        out = x[ry][:, rx]
    elif mode in ("bilinear", "bicubic") and antialias:
        out = x
        if w != out_w:
            out = apply_pass_float(out, resize_weights(w, out_w, mode, True, path), axis=1)
        if h != out_h:
            out = apply_pass_float(out, resize_weights(h, out_h, mode, True, path), axis=0)
            if torch_quirks and out_w == 1:
                out = _width1_vertical_quirk(out, num_threads)
        out = out.copy() if out is x else out
    elif mode == "bilinear":
        tx = resize_weights(w, out_w, mode, False, path)
        ty = resize_weights(h, out_h, mode, False, path)
        if _vectorized_kernel(c, out_h, out_w) or (num_threads == 1 and c == 3):
            out = _bilinear_fused(x, ty, tx)
        else:
            out = apply_pass_float(apply_pass_float(x, tx, axis=1), ty, axis=0)
    elif mode == "bicubic":
        tx = resize_weights(w, out_w, mode, False, path)
        ty = resize_weights(h, out_h, mode, False, path)
        out = apply_pass_float(apply_pass_float(x, tx, axis=1), ty, axis=0)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return out[:, :, 0] if squeeze else out


# Vectorized<float>/<double>::size() of the AVX2 build: channels are processed this many at a time by the fused
# channels-last bilinear kernel, the remaining C % width channels by its scalar tail.
_VEC_WIDTH = {np.dtype(np.float32): 8, np.dtype(np.float64): 4}


def _bilinear_fused(x: np.ndarray, ty: ResizeWeights, tx: ResizeWeights) -> np.ndarray:
    """cpu_upsample_linear_channels_last: both axes at once, four corner weights multiplied first::

        w00 = h0*w0, w01 = h0*w1, w10 = h1*w0, w11 = h1*w1                       (ft, rounded)
        scalar tail (channels c >= C - C % width):
            acc = fma(x00, w00, x01*w01); acc = fma(x10, w10, acc); acc = fma(x11, w11, acc)
        vectorised channels (Vectorized ops, contracted by the compiler):
            acc = fma(x00, w00, fma(x01, w01, fma(x11, w11, x10*w10)))
    """
    ft = x.dtype.type
    h0, h1 = ty.weights[:, 0].astype(ft), ty.weights[:, 1].astype(ft)
    w0, w1 = tx.weights[:, 0].astype(ft), tx.weights[:, 1].astype(ft)
    iy0, iy1 = ty.index[:, 0], ty.index[:, 1]
    ix0, ix1 = tx.index[:, 0], tx.index[:, 1]

    def wgt(a, b):
        return (a[:, None] * b[None, :]).astype(ft)[:, :, None]

    def px(iy, ix):
        return x[iy][:, ix]

    x00, x01, x10, x11 = px(iy0, ix0), px(iy0, ix1), px(iy1, ix0), px(iy1, ix1)
    w00, w01, w10, w11 = wgt(h0, w0), wgt(h0, w1), wgt(h1, w0), wgt(h1, w1)
    with np.errstate(all="ignore"):
        tail = fma(x00, w00, (x01 * w01).astype(ft), ft)
        tail = fma(x10, w10, tail, ft)
        tail = fma(x11, w11, tail, ft)
        c = x.shape[2]
        nvec = c - c % _VEC_WIDTH[np.dtype(ft)]
        if nvec:
            vec = fma(x11, w11, (x10 * w10).astype(ft), ft)
            vec = fma(x01, w01, vec, ft)
            vec = fma(x00, w00, vec, ft)
            tail[:, :, :nvec] = vec[:, :, :nvec]
    return tail


# ---------------------------------------------------------------------------------------------------------------
# torchvision v2 geometry rules
# ---------------------------------------------------------------------------------------------------------------

def torchvision_resize_size(h: int, w: int, size, max_size: Optional[int] = None) -> tuple[int, int]:
    """``torchvision.transforms.v2.Resize`` output size (``_compute_resized_output_size``), as ``(new_h, new_w)``.

    * ``size`` an int or a 1-sequence: the *shorter* side becomes ``size`` and the longer one
      ``int(size * long / short)`` (true division then truncation); with ``max_size``, if the long side would
      exceed it, it becomes ``max_size`` and the short one ``int(max_size * new_short / new_long)``
      (``max_size <= size`` is a ValueError). Ties (``h == w``) count width as the short side.
    * ``size`` a 2-sequence ``(h, w)``: used as is (``max_size`` must then be None).
    * ``size`` None (v2 only): the *longer* side becomes ``max_size``, the shorter ``int(max_size * short / long)``.
    """
    h, w = int(h), int(w)
    short, long = (w, h) if w <= h else (h, w)
    if size is None:
        if not isinstance(max_size, int):
            raise ValueError(f"max_size must be an integer when size is None, but got {max_size} instead.")
        new_short, new_long = int(max_size * short / long), max_size
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return new_h, new_w
    if isinstance(size, (int, np.integer)):
        size = [int(size)]
    size = list(size)
    if len(size) == 1:
        requested = int(size[0])
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None:
            if max_size <= requested:
                raise ValueError(f"max_size = {max_size} must be strictly greater than the requested "
                                 f"size for the smaller edge size = {size}")
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return new_h, new_w
    if len(size) != 2:
        raise ValueError(f"size must be an int or a sequence of 1 or 2 ints, got {size}")
    if max_size is not None:
        raise ValueError("max_size should only be passed if size is None or specifies the length of the "
                         "smaller edge, i.e. size should be an int or a sequence of length 1")
    return int(size[0]), int(size[1])


def center_crop_padding(h: int, w: int, ch: int, cw: int) -> tuple[int, int, int, int]:
    """torchvision's ``_center_crop_compute_padding`` as (left, top, right, bottom): when the crop is larger than
    the image it is first zero-padded, the smaller half of the excess on the left/top, the larger half
    (``(excess + 1) // 2``) on the right/bottom."""
    return ((cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0,
            (cw - w + 1) // 2 if cw > w else 0, (ch - h + 1) // 2 if ch > h else 0)


def center_crop_offsets(h: int, w: int, ch: int, cw: int) -> tuple[int, int]:
    """``(top, left)`` of torchvision's center crop: ``int(round((h - ch) / 2.0))`` (Python's round, i.e.
    half to even: an excess of 1 gives 0, 3 gives 2, 5 gives 2). When the crop is larger than the image in a
    dimension, the offset is taken *after* padding (:func:`center_crop_padding`) and is then 0 there."""
    l, t, r, b = center_crop_padding(h, w, ch, cw)
    h, w = h + t + b, w + l + r
    return int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))


def center_crop_hwc(img: np.ndarray, ch: int, cw: int, fill=0) -> np.ndarray:
    """torchvision v2 ``center_crop`` on an HWC array (pad with ``fill`` first if the crop is larger)."""
    x = np.asarray(img)
    h, w = x.shape[:2]
    if ch > h or cw > w:
        l, t, r, b = center_crop_padding(h, w, ch, cw)
        pad = [(t, b), (l, r)] + [(0, 0)] * (x.ndim - 2)
        x = np.pad(x, pad, mode="constant", constant_values=fill)
        h, w = x.shape[:2]
        if (h, w) == (ch, cw):
            return x
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return x[top:top + ch, left:left + cw].copy()
