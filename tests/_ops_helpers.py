"""Shared machinery for the op tests: NumPy 2 running the same Python function is the reference.

``check(fn, *args)`` runs the ``@jit_preprocess`` version of ``fn`` and ``fn`` itself (NumPy) on the same
arrays and compares structure, dtypes, shapes and values. Values must be equal bit for bit (NaN equal to NaN,
signed zeros distinguished) unless a looser comparison is asked for:

* ``ulp=n``: floats within ``n`` units in the last place (transcendental functions); NaN must match NaN, infs
  and zeros (with their sign) exactly. ``ulp_dtype``: count the ULPs of this (narrower) dtype.
* ``sum_tol=(mag, c)``: float sums and means, which prepjit accumulates in float64 while NumPy uses pairwise
  summation in the result dtype: |got - want| <= c * eps * mag, ``mag`` the sum (for a mean, the mean) of
  |x| over the reduced axes (``magnitude()``).
* ``prod_tol=(n, c)``: float products of ``n`` factors: |got - want| <= c * eps * (n + 1) * |want|.
* ``zero_sign=False``: -0.0 == +0.0 (only where NumPy's own result sign is implementation-defined).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import prepjit as pj

BOOL = np.dtype(np.bool_)
INTS = [np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64)]
UINTS = [np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64)]
FLOATS = [np.dtype(np.float32), np.dtype(np.float64)]
DTYPES = [BOOL] + INTS + UINTS + FLOATS
TRANSCENDENTAL = {"exp", "expm1", "log", "log1p", "log2", "log10", "tanh"}
ULP = 3

# -- hypothesis budget: PREPJIT_OPS_EXAMPLES=10 runs ten times as many examples (a deeper, slower check) -------
EXAMPLES_SCALE = float(os.environ.get("PREPJIT_OPS_EXAMPLES", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=max(1, round(n * EXAMPLES_SCALE)), deadline=None)


# -- compiled functions are reused across examples ----------------------------------------------------------
_JITS: dict = {}


def jit(fn, key=None):
    """One JitFunction per Python function (or per ``key``), so examples reuse compiled specializations."""
    k = key if key is not None else fn
    j = _JITS.get(k)
    if j is None:
        j = _JITS[k] = pj.jit_preprocess(fn)
    return j


# -- strategies ---------------------------------------------------------------------------------------------
dtypes = st.sampled_from(DTYPES)
float_dtypes = st.sampled_from(FLOATS)
int_dtypes = st.sampled_from(INTS + UINTS)
SIDES = st.sampled_from([0, 1, 1, 2, 3, 4, 5, 7])


def shapes(min_dims=0, max_dims=3, min_side=0):
    side = SIDES.filter(lambda s: s >= min_side) if min_side else SIDES
    return st.lists(side, min_size=min_dims, max_size=max_dims).map(tuple)


def elements_for(dtype, finite=False, bound=None):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        if bound is not None:
            return st.floats(-bound, bound, width=dtype.itemsize * 8)
        return hnp.from_dtype(dtype, allow_nan=not finite, allow_infinity=not finite)
    return hnp.from_dtype(dtype)


@st.composite
def arrays(draw, dtype, shape, elements=None, layout=True):
    """An array of exactly ``shape``, sometimes a non-contiguous view: every-other slice, reversed axis
    (negative stride), transpose, or a zero-stride broadcast of a size-1 axis."""
    dtype, shape = np.dtype(dtype), tuple(shape)
    elements = elements if elements is not None else elements_for(dtype)

    def base(s):
        return draw(hnp.arrays(dtype, tuple(s), elements=elements))

    kind = draw(st.sampled_from(["c", "c", "step", "neg", "T", "bcast"])) if shape and layout else "c"
    if kind == "c":
        return base(shape)
    if kind == "T":
        return base(shape[::-1]).T
    ax = draw(st.integers(0, len(shape) - 1))
    index = [slice(None)] * len(shape)
    if kind == "step":
        s = list(shape)
        s[ax] = 2 * s[ax] + 1
        index[ax] = slice(1, None, 2)
        out = base(s)[tuple(index)]
    elif kind == "neg":
        index[ax] = slice(None, None, -1)
        out = base(shape)[tuple(index)]
    else:
        s = list(shape)
        s[ax] = 1
        out = np.broadcast_to(base(s), shape)
    assert out.shape == shape
    return out


def any_array(dtype=dtypes, shape=None, **kw):
    """Strategy: an array with a drawn dtype (strategy or dtype) and shape."""
    shape = shape if shape is not None else shapes()
    dt = dtype if isinstance(dtype, st.SearchStrategy) else st.just(np.dtype(dtype))
    return st.tuples(dt, shape).flatmap(lambda ds: arrays(ds[0], ds[1], **kw))


SPECIALS = {
    "f": [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1.0, -1.0, 1e-310, -1e-40, 5e-324,
          1e-8, -1e-8, 0.49999997, 88.7, 89.0, -103.9, 709.8, -745.2, 1e30, -1e30, 3.4e38, 1.7e308, 4.5e15, 2.0**52,
          np.pi, -20.0, 20.0, 9.5, -0.75, 0.1, -0.1],
    "i": [0, 1, -1, 2, -2, 7, -7, 100, -100, "min", "max", "min+1", "max-1"],
    "u": [0, 1, 2, 7, 100, "max", "max-1", "half"],
    "b": [False, True],
}


def special_values(dt) -> np.ndarray:
    dt = np.dtype(dt)
    out = []
    for v in SPECIALS[dt.kind]:
        if isinstance(v, str):
            info = np.iinfo(dt)
            v = {"min": info.min, "max": info.max, "min+1": info.min + 1, "max-1": info.max - 1,
                 "half": info.max // 2 + 1}[v]
        with np.errstate(all="ignore"):
            c = np.array(v).astype(dt) if dt.kind == "f" else np.array(v, dt)
        out.append(c)
    return np.array(out, dt)


def random_values(dt, shape, rng):
    """Edge values mixed with random ones of the dtype's whole range."""
    dt = np.dtype(dt)
    n = int(np.prod(shape))
    if dt.kind == "f":
        r = np.where(rng.random(n) < 0.5, rng.standard_normal(n) * 100, rng.standard_normal(n) * 1e30)
        with np.errstate(over="ignore"):
            r = r.astype(dt)
    elif dt == BOOL:
        r = rng.random(n) < 0.5
    else:
        info = np.iinfo(dt)
        r = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    return np.where(rng.random(n) < 0.2, rng.choice(special_values(dt), n), r).reshape(shape)


# -- comparison ---------------------------------------------------------------------------------------------
def _ordered(a: np.ndarray) -> np.ndarray:
    """Float bit patterns mapped to integers that are ordered like the floats (-0.0 and +0.0 both map to 0)."""
    it = np.int32 if a.dtype == np.float32 else np.int64
    i = np.ascontiguousarray(a).view(it).astype(object)
    lim = 1 << (8 * a.dtype.itemsize - 1)
    return np.where(i < 0, -(i + lim), i)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(_ordered(a) - _ordered(b))


def _fmt(x):
    return np.array2string(np.asarray(x), threshold=40, floatmode="unique")


def assert_leaf(got, want, what="", ulp=None, ulp_dtype=None, sum_tol=None, prod_tol=None, zero_sign=True):
    want = np.asarray(want)
    assert isinstance(got, np.ndarray), f"{what}: prepjit returned {type(got).__name__}, not an ndarray"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != numpy's {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != numpy's {want.shape}"
    if want.dtype.kind != "f":
        if not np.array_equal(got, want):
            bad = got != want
            raise AssertionError(f"{what}: values differ at {np.argwhere(bad)[:5].tolist()}:\n"
                                 f"prepjit {_fmt(got[bad])}\nnumpy   {_fmt(want[bad])}")
        return
    if ulp is not None and ulp_dtype is not None:  # count ULPs of the precision the values were computed in
        got, want = got.astype(ulp_dtype), want.astype(ulp_dtype)
    gn, wn = np.isnan(got), np.isnan(want)
    bad = gn != wn
    fin = ~(gn | wn)
    if ulp is not None:
        special = fin & (~np.isfinite(want) | ~np.isfinite(got) | (want == 0) | (got == 0))
        bad |= special & ((got != want) | (np.signbit(got) != np.signbit(want)))
        regular = fin & ~special
        if regular.any():
            d = np.zeros(got.shape, dtype=object)
            d[regular] = ulp_distance(got[regular], want[regular])
            bad |= regular & (d > ulp).astype(bool)
    elif sum_tol is not None:
        mag, c = sum_tol
        eps = np.finfo(want.dtype).eps
        with np.errstate(all="ignore"):
            mag = np.asarray(mag, np.float64)
            mag = np.broadcast_to(mag, want.shape) if mag.size == 1 else mag.reshape(want.shape)
            tol = c * eps * mag + np.finfo(want.dtype).tiny
            nonfinite = ~np.isfinite(want) | ~np.isfinite(got)
            bad |= fin & nonfinite & (got != want)
            bad |= fin & ~nonfinite & ~(np.abs(got.astype(np.float64) - want.astype(np.float64)) <= tol)
    elif prod_tol is not None:
        n, c = prod_tol
        eps = np.finfo(want.dtype).eps
        with np.errstate(all="ignore"):
            tol = c * eps * (n + 1) * np.abs(want.astype(np.float64)) + np.finfo(want.dtype).tiny
            nonfinite = ~np.isfinite(want) | ~np.isfinite(got)
            bad |= fin & nonfinite & (got != want)
            bad |= fin & ~nonfinite & ~(np.abs(got.astype(np.float64) - want.astype(np.float64)) <= tol)
    else:
        bad |= fin & (got != want)
        if zero_sign:
            bad |= fin & (got == 0) & (np.signbit(got) != np.signbit(want))
    if bad.any():
        raise AssertionError(f"{what}: values differ at {np.argwhere(bad)[:5].tolist()}:\n"
                             f"prepjit {_fmt(got[bad])}\nnumpy   {_fmt(want[bad])}")


def assert_same(got, want, what="result", modes=None, **kw):
    """Compare output structures (tuple/list/dict/single); ``modes`` maps a dict key to assert_leaf kwargs."""
    modes = modes or {}
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{what}: expected a dict, got {type(got).__name__}"
        assert list(got) == list(want), f"{what}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_leaf(got[k], want[k], f"{what}[{k!r}]", **{**kw, **modes.get(k, {})})
    elif isinstance(want, (tuple, list)):
        assert type(got) is type(want), f"{what}: expected a {type(want).__name__}, got {type(got).__name__}"
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_leaf(g, w, f"{what}[{i}]", **{**kw, **modes.get(i, {})})
    else:
        assert_leaf(got, want, what, **kw)


def reference(fn, *args):
    """NumPy's result; its RuntimeWarnings (divide by zero, mean of empty slice) are expected and ignored."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args)


def check(fn, *args, key=None, what=None, allow_error=False, **kw):
    """Run ``fn`` compiled and under NumPy; compare. With ``allow_error``, NumPy may raise, and prepjit must
    then raise the same type (else a NumPy error is a mistake in the test)."""
    jf = jit(fn, key)
    inputs = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    try:
        want = reference(fn, *args)
    except Exception as e:  # noqa: BLE001
        if not allow_error:
            raise
        try:
            jf(*args)
        except (type(e), builtin_error(e)):
            return None
        raise AssertionError(f"numpy raised {type(e).__name__}: {e}; prepjit did not raise it") from None
    got = jf(*args)
    for a, b in zip(inputs, args):  # inputs are never written
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    assert_same(got, want, what or getattr(fn, "__name__", "fn"), **kw)
    return got


def builtin_error(e: Exception) -> type:
    """The builtin class a NumPy error derives from (its private classes, e.g. _UFuncNoLoopError, cannot be
    raised by others with just a message)."""
    return next(c for c in type(e).__mro__ if c.__module__ == "builtins")


def numpy_outcome(fn, *dummies):
    """What NumPy does with these (0-d) operands: "ok", "unsupported" (a dtype prepjit lacks) or an exception."""
    try:
        r = reference(fn, *dummies)
    except Exception as e:  # noqa: BLE001
        return e
    return "ok" if np.asarray(r).dtype in DTYPES else "unsupported"


def magnitude(x, axis=None, mean=False):
    """sum(|x|) (or mean(|x|)) over ``axis`` in float64: the scale of a sum's rounding errors."""
    with np.errstate(all="ignore"):
        a = np.abs(np.asarray(x).astype(np.float64))
        m = np.sum(a, axis=axis)
        if mean:
            m = m / max(1, a.size // max(1, np.size(m)))
    return m
