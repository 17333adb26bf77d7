"""Reductions (sum, mean, max, min, prod, any, all) against NumPy 2: axis None/int/negative/tuple/(),
keepdims, dtype=, method and function spellings, empty and size-1 axes, non-contiguous inputs, and fused
producers/consumers.

Integer and boolean results, max/min, any/all must equal NumPy's exactly. Float sums and means are compared
within a few float eps of the sum of magnitudes (prepjit accumulates in float64, NumPy pairwise in the
result dtype) and float products within a few eps per factor; a non-finite NumPy result must be matched
exactly. max/min of -0.0 and +0.0 is either zero (NumPy's SIMD reduction order decides), so their zero sign
is not compared.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from _ops_helpers import (
    BOOL, DTYPES, FLOATS, INTS, UINTS, any_array, arrays, check, dtypes, elements_for, examples, jit, magnitude,
    random_values, shapes, special_values,
)
from hypothesis import example, given
from hypothesis import strategies as st

import prepjit as pj

SETTINGS = examples(30)
SPECIALS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0])


def sum_elements(dt):
    """Values whose float32/float64 sums cannot overflow (343 terms at most), with occasional NaN/inf/zeros."""
    dt = np.dtype(dt)
    if dt.kind != "f":
        return elements_for(dt)
    bound = 2.0**100 if dt == np.float32 else 2.0**996
    return st.one_of(*[st.floats(-bound, bound, width=dt.itemsize * 8)] * 9, SPECIALS)


def prod_elements(dt):
    """Factors of magnitude 0.875..1.125 (and 0): products of up to 343 of them stay normal in float32."""
    dt = np.dtype(dt)
    if dt.kind != "f":
        return elements_for(dt)
    w = dt.itemsize * 8
    return st.one_of(*[st.floats(0.875, 1.125, width=w), st.floats(-1.125, -0.875, width=w)] * 6, SPECIALS)


@st.composite
def axis_specs(draw, ndim):
    """None, an int (maybe negative), or a tuple of distinct axes (maybe empty, maybe negative)."""
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if ndim == 0:
        return ()
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(a - ndim if draw(st.booleans()) else a for a in axes)


def reduced_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim for a in axes)


def _reduce_fn(names, axis, keepdims, style, dtype=None):
    kw = {"keepdims": keepdims} if keepdims else {}
    if dtype is not None:
        kw["dtype"] = dtype
    if style == "method":
        def reduce(x):
            return {n: getattr(x, n)(axis=axis, **kw) for n in names}
    else:
        funcs = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod, "any": np.any,
                 "all": np.all, "amax": np.amax, "amin": np.amin}

        def reduce(x):
            return {n: funcs[n](x, axis=axis, **kw) for n in names}
    return jit(reduce, ("reduce", names, repr(axis), keepdims, style, None if dtype is None else str(dtype)))


def _modes(x, names, axis, results=None):
    axes = reduced_axes(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes])) if x.ndim else 1
    modes = {}
    for n in names:
        if n in ("sum", "mean"):
            # NumPy's pairwise summation (8 running sums per block of up to 128 terms, then a binary tree)
            # plus prepjit's float64 accumulation (in any order: up to count roundings of float64, which
            # matters for float64 results, e.g. the mean of int64 values near 2**53)
            c = 4 + min(count, 128) / 8 + math.log2(count + 1) + count
            modes[n] = {"sum_tol": (magnitude(x, axes, mean=n == "mean"), c)}
        elif n == "prod":
            modes[n] = {"prod_tol": (count, 2)}
        elif n in ("max", "min", "amax", "amin"):
            modes[n] = {"zero_sign": False}
    return modes


@st.composite
def reduction_case(draw, elements=sum_elements, dtype=dtypes):
    dt = draw(dtype)
    x = draw(arrays(dt, draw(shapes()), elements=elements(dt)))
    return x, draw(axis_specs(x.ndim)), draw(st.booleans()), draw(st.sampled_from(["method", "function"]))


@given(case=reduction_case())
@example(case=(np.array([2**53 - 21] + [1] * 62, np.int64).reshape(3, 7, 3), None, False, "method"))  # rounding
@SETTINGS
def test_sum_mean_any_all(case):
    x, axis, keepdims, style = case
    names = ("sum", "mean", "any", "all")
    f = _reduce_fn(names, axis, keepdims, style)
    check(f.fn, x, key=("reduce", names, repr(axis), keepdims, style, None), modes=_modes(x, names, axis),
          what=f"{x.dtype}{x.shape} axis={axis} keepdims={keepdims}")


@given(case=reduction_case(elements=elements_for))
@SETTINGS
def test_max_min(case):
    """Exact, NaN-propagating; an empty reduced axis raises ValueError in both (checked by ``check``)."""
    x, axis, keepdims, style = case
    names = ("max", "min") if style == "method" else ("max", "min", "amax", "amin")
    f = _reduce_fn(names, axis, keepdims, style)
    check(f.fn, x, key=("reduce", names, repr(axis), keepdims, style, None), modes=_modes(x, names, axis),
          what=f"{x.dtype}{x.shape} axis={axis} keepdims={keepdims}", allow_error=True)


@given(case=reduction_case(elements=prod_elements))
@SETTINGS
def test_prod(case):
    x, axis, keepdims, style = case
    names = ("prod",)
    f = _reduce_fn(names, axis, keepdims, style)
    check(f.fn, x, key=("reduce", names, repr(axis), keepdims, style, None), modes=_modes(x, names, axis),
          what=f"{x.dtype}{x.shape} axis={axis} keepdims={keepdims}")


def _dtype_ok(src, dt, name):
    """dtype= combinations whose NumPy result is defined: no float -> int casts of arbitrary values, and no
    int/bool mean into a non-float dtype (NumPy sums in that dtype, then divides)."""
    src, dt = np.dtype(src), np.dtype(dt)
    if src.kind == "f" and dt.kind != "f":
        return False
    if name == "mean" and dt.kind != "f":
        return False
    return True


@given(case=reduction_case(), dt=dtypes, name=st.sampled_from(["sum", "mean", "prod"]))
@SETTINGS
def test_dtype_argument(case, dt, name):
    x, axis, keepdims, style = case
    if not _dtype_ok(x.dtype, dt, name):
        return
    if name == "prod" and x.dtype.kind == "f":
        x = np.clip(np.nan_to_num(x), -1.25, 1.25)  # keep float products in range
    f = _reduce_fn((name,), axis, keepdims, style, dt)
    check(f.fn, x, key=("reduce", (name,), repr(axis), keepdims, style, str(dt)), modes=_modes(x, (name,), axis),
          what=f"{x.dtype}{x.shape} {name}(axis={axis}, dtype={dt})")


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_reductions_special_values(dt):
    """Edge values along each axis of a small 2-D array: wrap-around of integer sums/products, NaN/inf."""
    v = special_values(dt)
    x = np.stack([v, v[::-1], np.roll(v, 3)])
    # float products of these overflow float32/float64 midway (inf * 0 is NaN in NumPy, a float64 accumulator
    # may not overflow): prepjit's float64 accumulation is a documented difference, so no float prod here
    names = ("sum", "mean", "max", "min", "any", "all") + (("prod",) if dt.kind != "f" else ())

    def all_reductions(x):
        out = {}
        for axis in (None, 0, 1):
            for n in names:
                out[f"{n}/{axis}"] = getattr(x, n)(axis=axis)
        return out

    for x in (x, x[:, ::-2]):
        modes = {}
        for axis in (None, 0, 1):
            modes.update({f"{n}/{axis}": m for n, m in _modes(x, names, axis).items()})
        check(all_reductions, x, key=("all_reductions", names), modes=modes, what=f"{dt} {x.strides}")


def test_float_sums_of_0d_and_size_1_arrays():
    """Regression: the finish step of a reduction without loops (0-d input) read a stale accumulator."""
    def f(x):
        return x.sum(), x.mean(), x.prod(), x.astype(np.float32).sum(axis=()), x.max(), x.any()

    for dt in DTYPES:
        for x in (np.array(3, dt), np.array([3], dt)):
            check(f, x)


def test_integer_sum_and_prod_wrap_like_numpy():
    x = np.array([[127, 1, 100], [100, 100, 2]], np.int8)

    def f(x):
        return x.sum(axis=0), x.sum(), x.prod(axis=1), x.sum(dtype=np.int8), x.sum(axis=1, dtype=np.uint8), \
            np.prod(x, dtype=np.int16)

    check(f, x)
    assert jit(f)(x)[3] == np.int8(x.sum(dtype=np.int8))


def test_mean_of_empty_is_nan_and_sum_of_empty_is_zero():
    def f(x):
        return x.mean(), x.mean(axis=0), x.sum(axis=0), x.prod(axis=0), x.any(axis=0), x.all(axis=0)

    for dt in (np.float32, np.int16, np.bool_):
        check(f, np.zeros((0, 3), dt))


def test_axis_errors():
    def bad_axis(x):
        return x.sum(axis=2)

    def dup_axis(x):
        return x.sum(axis=(0, -2))

    with pytest.raises(np.exceptions.AxisError):
        jit(bad_axis)(np.ones((2, 2)))
    with pytest.raises(ValueError, match="duplicate"):
        jit(dup_axis)(np.ones((2, 2)))


def test_unsupported_reduction_arguments():
    def with_out(x):
        return np.sum(x, out=x)

    def with_where(x):
        return np.sum(x, where=x > 0)

    def with_initial(x):
        return np.max(x, initial=0)

    def max_dtype(x):
        return np.max(x, dtype=np.float64)

    for f in (with_out, with_where, with_initial):
        with pytest.raises(pj.UnsupportedError):
            jit(f)(np.ones(3))
    with pytest.raises(TypeError):  # NumPy's own signature has no dtype= for max
        jit(max_dtype)(np.ones(3))


# -- reductions mixed with elementwise ops (fused producers and consumers) ---------------------------------------
def standardize(x):
    mu = x.mean(axis=0, keepdims=True)
    return (x - mu) * (1 / (np.abs(x - mu).max(axis=0, keepdims=True) + 1))


def count_and_any(x):
    pos = x > 0
    return pos.sum(axis=-1), np.any(np.isnan(x), axis=0), (x * 2).max(axis=(0, 1)), np.all(pos | (x <= 0))


def integer_stats(x):
    return (x.astype(np.int64) * 3 - 1).sum(axis=0), (x % 7).max(axis=1, keepdims=True), (x > 3).mean()


@given(x=any_array(FLOATS[1], shape=shapes(min_dims=2, min_side=1), elements=elements_for(np.float64, bound=1e6)))
@SETTINGS
def test_fused_float_chains(x):
    # exact-input chain (mean/max of float64 data bounded by 1e6): compare with tolerance scaled to magnitudes
    got, want = jit(standardize)(x), standardize(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    check(count_and_any, x, modes={2: {"zero_sign": False}})


@given(x=any_array(st.sampled_from(INTS + UINTS + [BOOL]), shape=shapes(min_dims=2)))
@SETTINGS
def test_fused_integer_chains(x):
    # (x % 7).max(axis=1) of an empty axis raises ValueError in both
    check(integer_stats, x, modes={2: {"sum_tol": (magnitude(x > 3, mean=True), 4)}}, allow_error=True)


def test_centering_keeps_dtype_and_broadcasts():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::-1]

    def center(x):
        return x - x.mean(axis=0)

    got = check(center, x)
    assert got.dtype == np.float32


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_large_reductions(dt):
    """Arrays long enough for the vectorized (reassociated) accumulation loops, contiguous and strided."""
    rng = np.random.default_rng(int(dt.num))
    x = random_values(dt, (37, 211), rng)
    s, p = x, x
    if dt.kind == "f":  # sums that cannot overflow (see sum_elements), products of factors near 1 (prod_elements)
        s = np.where(np.isfinite(x), np.clip(x, -1e30, 1e30), x)
        p = rng.uniform(0.875, 1.125, x.shape).astype(dt) * np.where(rng.random(x.shape) < 0.5, -1, 1).astype(dt)
    groups = (("max", "min", "any", "all"), x), (("sum", "mean"), s), (("prod",), p)
    for axis, keepdims in ((None, False), (0, False), (1, True), ((0, 1), True)):
        for names, data in groups:
            f = _reduce_fn(names, axis, keepdims, "method")
            for v in (data, data[::-1, ::3], data.T):
                check(f.fn, v, key=("reduce", names, repr(axis), keepdims, "method", None),
                      modes=_modes(v, names, axis), what=f"{dt}{v.shape} axis={axis}")
