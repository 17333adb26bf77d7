"""The resize weight tables of :mod:`prepjit.kernels.resample` as loop-IR kernels: the same arithmetic, op for op
(the same roundings, the same fused multiply-adds), so the native tables are bit-identical to the NumPy spec —
``tests/test_resample_tables.py`` compares them over hypothesis-drawn sizes for every mode and dtype path.

Why native: the spec builds a table with a few hundred small NumPy operations (100–650 µs), and a table is
needed for every new (input size, output size) pair, which on a real dataset (ragged photos, random crops) means
nearly every sample, on the caller's path of a batch. The kernel takes 1–40 µs (most of it for large downscales).

One kernel per variant (mode, antialias, dtype path); :mod:`prepjit.kernels.image_tables` compiles a variant the
first time it is needed (cached on disk like any kernel) and calls it. Buffers (flat, row-major ``out × K``):
``size[out]``, ``index[out*K]``, ``weights[out*K]`` (int32 holding int16 values on the uint8 path, else the float
type), ``precision[1]``, and scratch the caller allocates (``work``, ``cand``). Parameters: ``in_size``,
``out_size``, ``K`` (the table width, ``image_tables.table_width``).
"""
from __future__ import annotations

import numpy as np

from prepjit.lowering.loop_ir import (
    BOOL, I64, Buffer, For, Kernel, Load, Param, Reduce, Store, Var, cast, const, idx, prim, select,
)

F32, F64, I16, I32 = (np.dtype(t) for t in (np.float32, np.float64, np.int16, np.int32))

IN, OUT, K = Param("in_size"), Param("out_size"), Param("K")
ROW, TAP, FOLD = Var("i"), Var("j"), Var("k")  # output index, tap, and the variable of folds over a row's taps


# -- scalar helpers (each mirrors one NumPy expression of the spec) ------------------------------------------------
def c(v, dt):
    return const(v, dt)


def f(x, dt):
    return cast(x, dt)


def add(a, b):
    return prim("add", a, b)


def sub(a, b):
    return prim("sub", a, b)


def mul(a, b):
    return prim("mul", a, b)


def fma(a, b, d):
    return prim("fma", a, b, d)


def lt(a, b):
    return prim("lt", a, b, dtype=BOOL)


def mn(a, b):
    return prim("min", a, b)


def mx(a, b):
    return prim("max", a, b)


def flat(buf, dt, i, j=None):
    at = i if j is None else add(mul(i, K), j)
    return Load(buf, (at,), (idx(1),), dt)


def store(buf, value, i, j=None):
    at = i if j is None else add(mul(i, K), j)
    return Store(buf, (at,), (idx(1),), value)


def mul_add(a, b, d, fused: bool):
    """``resample._mul_add``: one rounding when torch's build contracted it, two otherwise."""
    return fma(a, b, d) if fused else add(mul(a, b), d)


def scale_of(ft):
    """``resample._scale``: ``(ft)in / out``."""
    return prim("fdiv", f(IN, ft), f(OUT, ft))


def source_index(scale, ft):
    """``resample._source_index``: ``fma(scale, i + 0.5, -0.5)`` rounded once to ``ft`` (exact in float64 for
    float32 operands, then rounded: the spec's round-to-odd emulation gives the same)."""
    r = fma(f(scale, F64), add(f(ROW, F64), c(0.5, F64)), c(-0.5, F64))
    return f(r, ft)


def floorf_index(real):
    """``np.floor(real.astype(float32)).astype(int64)``."""
    return f(prim("floor", f(real, F32)), I64)


def linear_filter(x, ft):
    x = prim("abs", x)
    return select(lt(x, c(1.0, ft)), sub(c(1.0, ft), x), c(0.0, ft))


def cubic_conv1(x, a: float, ft, fused=(True, True)):
    s = mul_add(c(ft.type(a) + ft.type(2), ft), x, c(-(ft.type(a) + ft.type(3)), ft), fused[0])
    return mul_add(mul(s, x), x, c(1.0, ft), fused[1])


def cubic_conv2(x, a: float, ft, fused=(True, True, True)):
    A = ft.type(a)
    s = mul_add(c(A, ft), x, c(-(ft.type(5) * A), ft), fused[0])
    s = mul_add(s, x, c(ft.type(8) * A, ft), fused[1])
    return mul_add(s, x, c(-(ft.type(4) * A), ft), fused[2])


def cubic_filter(x, a: float, ft):
    x = prim("abs", x)
    return select(lt(x, c(1.0, ft)), cubic_conv1(x, a, ft),
                  select(lt(x, c(2.0, ft)), cubic_conv2(x, a, ft), c(0.0, ft)))


def filter_for(mode: str, antialias: bool):
    """``resample._filter_for``: (taps of the unscaled filter, filter(x, ft))."""
    if mode == "bilinear":
        return 2, linear_filter
    a = -0.5 if antialias else -0.75
    return 4, (lambda x, ft: cubic_filter(x, a, ft))


# -- the kernels ---------------------------------------------------------------------------------------------------
def _window_tables(start, size):
    """``table()`` of the spec: index = start + k for live taps, else start."""
    live = lt(TAP, size)
    return [store("size", size, ROW),
            For("j", K, (store("index", select(live, add(start, TAP), start), ROW, TAP),), vectorize=False)]


def precision_of(wmax):
    """The spec's precision loop: the largest p <= 22 with int(0.5 + wmax * 2**p) < 2**15. The test holds for a
    prefix of p (the scaled max grows with p), so the count of p in [1, 22] that pass is that p."""
    p = Var("p")
    scaled = mul(wmax, f(prim("shl", idx(1), add(p, idx(1))), F64))
    fits = lt(f(add(c(0.5, F64), scaled), I64), idx(1 << 15))
    return Reduce("p", idx(22), select(fits, idx(1), idx(0)), idx(0), "add", I64)


def _int16_stores(source: str, wmax):
    """``_int16_weights`` over the float64 table in ``source``: the precision from the axis-wide max weight,
    then every weight rounded half away from zero. One flat loop over the table (vectorizable): the spec's taps
    past a row's size are 0 there already, and stay 0."""
    t = Var("t")
    v = mul(Load(source, (t,), (idx(1),), F64),
            f(prim("shl", idx(1), Load("precision", (idx(0),), (idx(1),), I64)), F64))
    w16 = select(lt(v, c(0.0, F64)), prim("trunc", add(c(-0.5, F64), v)), prim("trunc", add(c(0.5, F64), v)))
    return [Store("wmax", (idx(0),), (idx(1),), wmax),
            Store("precision", (idx(0),), (idx(1),), precision_of(Load("wmax", (idx(0),), (idx(1),), F64))),
            For("t", mul(OUT, K), (Store("weights", (t,), (idx(1),), f(f(f(w16, I64), I16), I32)),))]


def _antialias_kernel(name, mode: str, path: str) -> Kernel:
    """``resample._aa_weights`` (+ ``_int16_weights`` on the uint8 path)."""
    ft = F32 if path == "float32" else F64
    interp_size, filt = filter_for(mode, True)
    scale = scale_of(ft)
    big = prim("ge", scale, c(1.0, ft), dtype=BOOL)
    support = select(big, f(mul(c(interp_size * 0.5, F64), f(scale, F64)), ft), c(interp_size * 0.5, ft))
    center = f(mul(f(scale, F64), add(f(ROW, F64), c(0.5, F64))), ft)
    invscale = select(big, f(prim("fdiv", c(1.0, F64), f(scale, F64)), ft), c(1.0, ft))
    xmin = mx(f(add(f(sub(center, support), F64), c(0.5, F64)), I64), idx(0))
    xmax = f(add(f(add(center, support), F64), c(0.5, F64)), I64)
    xsize = mn(mx(sub(mn(xmax, IN), xmin), idx(0)), K)
    arg = f(mul(add(f(sub(f(add(TAP, xmin), ft), center), F64), c(0.5, F64)), f(invscale, F64)), ft)
    total = Reduce("k", K, flat("work", ft, ROW, FOLD), c(0.0, ft), "add", ft)     # sequential, as the spec's loop
    raw = flat("work", ft, ROW, TAP)
    tot = flat("total", ft, ROW)
    normed = select(lt(TAP, xsize), select(prim("ne", tot, c(0.0, ft), dtype=BOOL), prim("fdiv", raw, tot), raw),
                    c(0.0, ft))
    table = "weights" if path != "uint8" else "normed"
    raw_value = select(lt(TAP, xsize), filt(arg, ft), c(0.0, ft))
    per_row = [For("j", K, (store("work", raw_value, ROW, TAP),), vectorize=False),
               store("total", total, ROW),
               For("j", K, (store(table, normed, ROW, TAP),), vectorize=False),
               *_window_tables(xmin, xsize)]
    buffers = [Buffer("size", I64, 1, "out"), Buffer("index", I64, 1, "out"),
               Buffer("weights", I32 if path == "uint8" else ft, 1, "out"), Buffer("precision", I64, 1, "out"),
               Buffer("work", ft, 1, "temp"), Buffer("total", ft, 1, "temp")]
    if path != "uint8":
        body = (For("i", OUT, tuple(per_row)), Store("precision", (idx(0),), (idx(1),), idx(0)))
        return Kernel(name, buffers, ["in_size", "out_size", "K"], body)
    # wmax: the largest live weight of the rows whose sum is not 0, per row (``cand``), then over the rows
    row_max = Reduce("k", K, select(lt(FOLD, xsize), flat("normed", F64, ROW, FOLD), c(0.0, F64)), c(0.0, F64), "max", F64)
    per_row.append(store("cand", select(prim("ne", tot, c(0.0, F64), dtype=BOOL), row_max, c(0.0, F64)), ROW))
    wmax = Reduce("r", OUT, flat("cand", F64, Var("r")), c(0.0, F64), "max", F64)
    body = (For("i", OUT, tuple(per_row)), *_int16_stores("normed", wmax))
    buffers += [Buffer("normed", F64, 1, "temp"), Buffer("cand", F64, 1, "temp"), Buffer("wmax", F64, 1, "temp")]
    return Kernel(name, buffers, ["in_size", "out_size", "K"], body)


def _noaa_uint8_kernel(name, mode: str) -> Kernel:
    """``resample._noaa_uint8_weights`` + ``_int16_weights``: K is the filter's 2 or 4 taps, so the spec's
    per-tap loop (with its border folding) is unrolled here into expressions."""
    taps, filt = filter_for(mode, False)
    real = source_index(scale_of(F64), F64)
    if taps == 2:
        real = select(lt(real, c(0.0, F64)), c(0.0, F64), real)
    index = mn(floorf_index(real), sub(IN, idx(1)))
    lam = mn(mx(sub(real, f(index, F64)), c(0.0, F64)), c(1.0, F64))
    support = taps // 2
    umin = add(index, idx(1 - support))
    umax = add(index, idx(support + 1))
    imin = mx(umin, idx(0))
    isize = mn(mx(sub(mn(umax, IN), imin), idx(0)), idx(taps))
    acc = [c(0.0, F64)] * taps
    w_index = idx(0)
    written = []
    for j in range(taps):
        wj = filt(sub(c(float(j + 1 - support), F64), lam), F64)
        u = add(umin, idx(j))
        w_index = select(prim("le", u, idx(0), dtype=BOOL), idx(0),
                         select(prim("ge", u, sub(IN, idx(1)), dtype=BOOL), sub(isize, idx(1)), w_index))
        hit = [prim("eq", w_index, idx(t), dtype=BOOL) for t in range(taps)]
        acc = [select(hit[t], add(acc[t], wj), acc[t]) for t in range(taps)]
        value = acc[taps - 1]
        for t in range(taps - 2, -1, -1):
            value = select(hit[t], acc[t], value)
        written.append(value)
        w_index = add(w_index, idx(1))
    row_max = written[0]
    for v in written[1:]:
        row_max = mx(row_max, v)
    per_row = [*_window_tables(imin, isize), store("cand", row_max, ROW)]
    per_row += [store("work", acc[t], ROW, idx(t)) for t in range(taps)]
    wmax = Reduce("r", OUT, flat("cand", F64, Var("r")), c(0.0, F64), "max", F64)
    body = [For("i", OUT, tuple(per_row)), *_int16_stores("work", wmax)]
    buffers = [Buffer("size", I64, 1, "out"), Buffer("index", I64, 1, "out"), Buffer("weights", I32, 1, "out"),
               Buffer("precision", I64, 1, "out"), Buffer("work", F64, 1, "temp"), Buffer("cand", F64, 1, "temp"),
               Buffer("wmax", F64, 1, "temp")]
    return Kernel(name, buffers, ["in_size", "out_size", "K"], tuple(body))


def _noaa_float_kernel(name, mode: str, ft) -> Kernel:
    """``resample._linear_noaa_float`` / ``_cubic_noaa_float``: border-clamped taps, K = 2 or 4."""
    scale = scale_of(ft)
    real = source_index(scale, ft)
    last = sub(IN, idx(1))
    if mode == "bilinear":
        real = select(lt(real, c(0.0, ft)), c(0.0, ft), real)
        i0 = mn(floorf_index(real), last)
        i1 = add(i0, f(lt(i0, last), I64))
        l1 = mn(mx(sub(real, f(i0, ft)), c(0.0, ft)), c(1.0, ft))
        same = prim("eq", IN, OUT, dtype=BOOL)
        taps = [select(same, ROW, i0), select(same, ROW, i1)]
        weights = [select(same, c(1.0, ft), sub(c(1.0, ft), l1)), select(same, c(0.0, ft), l1)]
    else:
        index = mn(floorf_index(real), last)
        t = mn(mx(sub(real, f(index, ft)), c(0.0, ft)), c(1.0, ft))
        x2 = sub(c(1.0, ft), t)
        c1, c2 = dict(fused=(True, False)), dict(fused=(True, True, False))
        weights = [cubic_conv2(add(t, c(1.0, ft)), -0.75, ft, **c2), cubic_conv1(t, -0.75, ft, **c1),
                   cubic_conv1(x2, -0.75, ft, **c1), cubic_conv2(add(x2, c(1.0, ft)), -0.75, ft, **c2)]
        taps = [mn(mx(add(index, idx(j - 1)), idx(0)), last) for j in range(4)]
    per_row = [store("size", idx(len(taps)), ROW)]
    per_row += [store("index", taps[j], ROW, idx(j)) for j in range(len(taps))]
    per_row += [store("weights", weights[j], ROW, idx(j)) for j in range(len(taps))]
    buffers = [Buffer("size", I64, 1, "out"), Buffer("index", I64, 1, "out"), Buffer("weights", ft, 1, "out"),
               Buffer("precision", I64, 1, "out")]
    body = (For("i", OUT, tuple(per_row)), Store("precision", (idx(0),), (idx(1),), idx(0)))
    return Kernel(name, buffers, ["in_size", "out_size", "K"], body)


def _nearest_kernel(name, exact: bool, vectorized: bool, path: str) -> Kernel:
    """``resample._nearest_indices``; weights are ones (int16 on the uint8 path)."""
    if vectorized or path != "float64":
        scale = scale_of(F32)
        if not exact:
            src = prim("floor", mul(f(ROW, F32), scale))
        elif vectorized:
            src = prim("floor", f(mul(add(f(ROW, F64), c(0.5, F64)), f(scale, F64)), F32))
        else:
            real = source_index(scale, F32)
            real = select(lt(real, c(0.0, F32)), c(0.0, F32), real)
            src = prim("floor", f(add(f(real, F64), c(0.5, F64)), F32))
    else:
        scale = scale_of(F64)
        if not exact:
            src = prim("floor", f(mul(scale, f(ROW, F64)), F32))
        else:
            real = source_index(scale, F64)
            real = select(lt(real, c(0.0, F64)), c(0.0, F64), real)
            src = prim("floor", f(add(real, c(0.5, F64)), F32))
    src = mn(f(src, I64), sub(IN, idx(1)))
    wdt = I32 if path == "uint8" else (F32 if path == "float32" else F64)
    per_row = (store("size", idx(1), ROW), store("index", src, ROW), store("weights", c(1, wdt), ROW))
    buffers = [Buffer("size", I64, 1, "out"), Buffer("index", I64, 1, "out"), Buffer("weights", wdt, 1, "out"),
               Buffer("precision", I64, 1, "out")]
    body = (For("i", OUT, per_row), Store("precision", (idx(0),), (idx(1),), idx(0)))
    return Kernel(name, buffers, ["in_size", "out_size", "K"], body)


def kernel_for(var: tuple) -> Kernel:
    """The loop-IR kernel of an ``image_tables.variant``."""
    mode, antialias, vectorized, path = var
    name = f"resize_table_{mode.replace('-', '_')}_{int(antialias)}{int(vectorized)}_{path}"
    if mode in ("nearest", "nearest-exact"):
        return _nearest_kernel(name, mode == "nearest-exact", vectorized, path)
    if antialias:
        return _antialias_kernel(name, mode, path)
    if path == "uint8":
        return _noaa_uint8_kernel(name, mode)
    return _noaa_float_kernel(name, mode, F32 if path == "float32" else F64)
