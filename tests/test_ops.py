"""Elementwise ops, constants, output structures, fused chains, specialization and errors — against NumPy 2.

Every test runs the same Python function under prepjit and under NumPy (the independent reference) and
compares dtypes and values; see ``_ops_helpers`` for the comparison rules. To keep the suite fast, the
ufunc tests compile one function computing every op valid for the drawn dtypes (returned as a dict, so a
failure names the op) instead of one function per op.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from _ops_helpers import (
    BOOL, DTYPES, FLOATS, INTS, TRANSCENDENTAL, UINTS, ULP, any_array, arrays, assert_same, builtin_error, check,
    dtypes, elements_for, examples, float_dtypes, jit, magnitude, numpy_outcome, random_values, reference, shapes,
    special_values,
)
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import prepjit as pj
from prepjit.ir.tensor import BINARY_UFUNCS, UNARY_UFUNCS

SETTINGS = examples(35)
NAMES = {uf: uf.__name__ for uf in UNARY_UFUNCS + BINARY_UFUNCS}
ARRAY_BINARY = [uf for uf in BINARY_UFUNCS if uf is not np.power]  # power needs a scalar exponent


def _zero(dt):
    return np.zeros((), dt)


def _modes(ops):
    """ULP comparison for transcendentals; fmin/fmax of -0.0 and +0.0 is either zero in NumPy (its 0-d, scalar
    and SIMD loops disagree), so only those two ignore the sign of a zero result."""
    modes = {NAMES[o]: {"ulp": ULP} for o in ops if NAMES[o] in TRANSCENDENTAL}
    modes.update({NAMES[o]: {"zero_sign": False} for o in ops if o in (np.fmin, np.fmax)})
    return modes


def _expect_same_error(fn, args, err):
    """NumPy raised ``err`` (or produced a dtype prepjit lacks, ``err == "unsupported"``): prepjit must raise too."""
    jf = jit(fn)
    want = pj.UnsupportedError if err == "unsupported" else builtin_error(err)
    with pytest.raises(want, match=r"test_ops\.py:\d+: "):  # names the line of the user's function
        jf(*args)


# -- unary ufuncs -------------------------------------------------------------------------------------------
def _unary_fn(ops):
    def unary(x):
        return {NAMES[o]: o(x) for o in ops}

    return jit(unary, ("unary", ops))


@given(x=any_array())
@SETTINGS
def test_unary_ufuncs(x):
    ops = tuple(o for o in UNARY_UFUNCS if numpy_outcome(o, _zero(x.dtype)) == "ok")
    check(_unary_fn(ops).fn, x, key=("unary", ops), modes=_modes(ops), what=f"unary {x.dtype}")


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_unary_special_values(dt):
    x = special_values(dt)
    ops = tuple(o for o in UNARY_UFUNCS if numpy_outcome(o, _zero(dt)) == "ok")
    f = _unary_fn(ops).fn
    check(f, x, key=("unary", ops), modes=_modes(ops), what=f"unary {dt}")
    check(f, x[::-2], key=("unary", ops), modes=_modes(ops), what=f"unary {dt} reversed")
    check(f, x[-1], key=("unary", ops), modes=_modes(ops), what=f"unary {dt} 0-d")


@pytest.mark.parametrize("op", UNARY_UFUNCS, ids=NAMES.get)
def test_unary_errors_match_numpy(op):
    """Where NumPy raises (np.negative(bool)) or yields float16 (np.sqrt(int8)), prepjit raises at trace time."""
    def f(x):
        return op(x)

    for dt in DTYPES:
        r = numpy_outcome(op, _zero(dt))
        if r != "ok":
            _expect_same_error(f, [np.zeros(3, dt)], r)


def test_transcendental_dense_sweep():
    """Every transcendental on a dense sweep of float32 and float64 values, within a few ULP of NumPy."""
    x = np.concatenate([np.linspace(-110, 110, 3001), np.geomspace(1e-38, 3e38, 3001),
                        -np.geomspace(1e-38, 1, 1001), np.linspace(-1, 1, 2001)]).astype(np.float32)
    ops = tuple(o for o in UNARY_UFUNCS if NAMES[o] in TRANSCENDENTAL)
    check(_unary_fn(ops).fn, x, key=("unary", ops), modes=_modes(ops))
    check(_unary_fn(ops).fn, x.astype(np.float64), key=("unary", ops), modes=_modes(ops))


# -- binary ufuncs ------------------------------------------------------------------------------------------
def _binary_ops(a, b):
    return tuple(o for o in ARRAY_BINARY if numpy_outcome(o, a, b) == "ok")


def _binary_fn(ops):
    def binary(x, y):
        return {NAMES[o]: o(x, y) for o in ops}

    return jit(binary, ("binary", ops))


@st.composite
def broadcast_pair(draw, dtype_a=dtypes, dtype_b=dtypes):
    shp = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=0, max_side=4))
    da, db = draw(dtype_a), draw(dtype_b)
    return draw(arrays(da, shp.input_shapes[0])), draw(arrays(db, shp.input_shapes[1]))


@given(xy=broadcast_pair())
@SETTINGS
def test_binary_ufuncs(xy):
    x, y = xy
    ops = _binary_ops(_zero(x.dtype), _zero(y.dtype))
    check(_binary_fn(ops).fn, x, y, key=("binary", ops), what=f"binary {x.dtype},{y.dtype}", modes=_modes(ops))


@given(xy=broadcast_pair(dtype_a=st.sampled_from(FLOATS + INTS + UINTS)))
@examples(20)
def test_binary_ufuncs_same_dtype(xy):
    x, y = xy
    with np.errstate(all="ignore"):
        y = y.astype(x.dtype)
    ops = _binary_ops(_zero(x.dtype), _zero(y.dtype))
    check(_binary_fn(ops).fn, x, y, key=("binary", ops), what=f"binary {x.dtype}", modes=_modes(ops))


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_binary_special_values(dt):
    """All pairs of edge values: division by zero, INT_MIN // -1, NaN/inf/signed zeros, wrap-around."""
    v = special_values(dt)
    x, y = v[:, None], v[None, :]
    ops = _binary_ops(_zero(dt), _zero(dt))
    check(_binary_fn(ops).fn, x, y, key=("binary", ops), what=f"binary {dt}", modes=_modes(ops))


def test_binary_mixed_kind_special_values():
    for a, b in [(np.int64, np.float64), (np.uint64, np.int64), (np.uint8, np.int8), (np.int32, np.float32),
                 (np.uint64, np.float32), (np.bool_, np.int16), (np.float32, np.float64), (np.int16, np.uint32)]:
        x, y = special_values(a)[:, None], special_values(b)[None, :]
        ops = _binary_ops(_zero(a), _zero(b))
        check(_binary_fn(ops).fn, x, y, key=("binary", ops), what=f"binary {np.dtype(a)},{np.dtype(b)}",
              modes=_modes(ops))
        check(_binary_fn(ops).fn, y.T, x.T, key=("binary", ops), what=f"binary {np.dtype(b)},{np.dtype(a)}",
              modes=_modes(ops))


@pytest.mark.parametrize("op", ARRAY_BINARY, ids=NAMES.get)
def test_binary_errors_match_numpy(op):
    def f(x, y):
        return op(x, y)

    for da in DTYPES:
        for db in DTYPES:
            r = numpy_outcome(op, _zero(da), _zero(db))
            if r != "ok":
                _expect_same_error(f, [np.zeros(2, da), np.zeros(2, db)], r)


# -- Python scalars (NEP 50) --------------------------------------------------------------------------------
PY_SCALARS = [0, 1, -1, 2, 3, 7, -5, 100, 127, 128, 255, 256, 300, -129, 40000, 2**31, -2**31 - 1, 2**63 - 1,
              -2**63, 2**64 - 1, 0.0, -0.0, 0.5, 0.1, 3.0, -2.5, 1e10, 1e300, math.inf, -math.inf, math.nan, True,
              False]


def _scalar_fn(ops, s, left):
    if left:
        def scalar_left(x):
            return {NAMES[o]: o(s, x) for o in ops}
        f = scalar_left
    else:
        def scalar_right(x):
            return {NAMES[o]: o(x, s) for o in ops}
        f = scalar_right
    return jit(f, ("scalar", ops, type(s), repr(s), left))


@given(x=any_array(), s=st.sampled_from(PY_SCALARS), left=st.booleans())
@SETTINGS
def test_binary_python_scalar(x, s, left):
    z = _zero(x.dtype)
    outcomes = {o: numpy_outcome(o, *((s, z) if left else (z, s))) for o in ARRAY_BINARY}
    ops = tuple(o for o, r in outcomes.items() if r == "ok")
    check(_scalar_fn(ops, s, left).fn, x, key=("scalar", ops, type(s), repr(s), left),
          what=f"{'scalar op x' if left else 'x op scalar'} {x.dtype} {s!r}", modes=_modes(ops))
    for o, r in outcomes.items():
        if r != "ok":
            f = _scalar_fn((o,), s, left).fn
            _expect_same_error(f, [x], r)


@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_python_scalar_special_values(dt):
    x = special_values(dt)
    for s in [-1, 255, 300, 2**63 - 1, -0.0, 2.5, 0.1, math.inf, math.nan, True]:  # the rest: hypothesis
        for left in (False, True):
            z = _zero(dt)
            ops = tuple(o for o in ARRAY_BINARY if numpy_outcome(o, *((s, z) if left else (z, s))) == "ok")
            check(_scalar_fn(ops, s, left).fn, x, key=("scalar", ops, type(s), repr(s), left),
                  what=f"{dt} {s!r} left={left}", modes=_modes(ops))


POWERS_OF_TWO = [1.0, -1.0, 0.5, 2.0, 1024.0, -0.25, 2.0 ** -30, 2.0 ** 90]


@given(bits=st.lists(st.integers(0, 2 ** 64 - 1), min_size=1, max_size=64), s=st.sampled_from(POWERS_OF_TWO),
       dt=float_dtypes)
@SETTINGS
def test_mod_by_power_of_two(bits, s, dt):
    """x % 2**k is computed without fmod (exact: the quotient truncates, huge x are multiples): every float bit
    pattern, with the dtype's edge values, against NumPy (zero signs included)."""
    x = np.array(bits, np.uint64).astype(np.dtype(f"u{np.dtype(dt).itemsize}")).view(dt)
    info = np.finfo(dt)
    edges = [info.max, -info.max, info.tiny, info.smallest_subnormal, 2.0 ** (info.nmant + 1), 2.0 ** info.nmant + 1,
             -(2.0 ** (info.nmant + 2)), 3 * 2.0 ** 88, 1 - info.epsneg]
    x = np.concatenate([x, special_values(dt), np.array(edges).astype(dt)])
    ops = (np.remainder, np.floor_divide)
    check(_scalar_fn(ops, s, False).fn, x, key=("scalar", ops, float, repr(s), False), what=f"{dt} % {s!r}",
          modes=_modes(ops))


def test_nep50_examples():
    u8 = np.array([0, 1, 200, 255], np.uint8)

    def add_float(x):
        return x + 3.0

    def add_300(x):
        return x + 300

    def less_neg(x):
        return x < -1, x >= -1, x == 300, x != 300, x > 256

    def f32_plus(x):
        return x.astype(np.float32) * 2.5 + 1e40

    r = check(add_float, u8)
    assert r.dtype == np.float64
    assert check(add_float, u8.astype(np.float32)).dtype == np.float32
    with pytest.raises(OverflowError):
        jit(add_300)(u8)
    with pytest.raises(OverflowError):
        add_300(u8)
    out = check(less_neg, u8)
    assert [o.tolist() for o in out] == [[False] * 4, [True] * 4, [False] * 4, [True] * 4, [False] * 4]
    lowered = jit(less_neg).ir("lowered")  # constants: the input is never even loaded
    assert "memref.store false" in lowered and "memref.store true" in lowered and "memref.load" not in lowered
    assert check(f32_plus, u8).dtype == np.float32  # 1e40 overflows to inf in float32, as in NumPy


# -- where / clip -------------------------------------------------------------------------------------------
@st.composite
def broadcast_triple(draw, max_dims=2):
    shp = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=max_dims, min_side=0, max_side=4))
    return tuple(draw(arrays(draw(dtypes), s)) for s in shp.input_shapes)


def where3(c, x, y):
    return np.where(c, x, y)


def where_scalar(c, x, y):
    return np.where(c > 0, x, 2.5), np.where(c, 7, y), np.where(x, -1, 300), np.where(c, True, False)


@given(cxy=broadcast_triple(max_dims=3))
@examples(25)
def test_where(cxy):
    check(where3, *cxy)


@given(cxy=broadcast_triple())
@examples(15)
def test_where_scalars(cxy):
    check(where_scalar, *cxy)


def clip3(x, lo, hi):
    return np.clip(x, lo, hi), x.clip(lo, hi)


def clip_nones(x, lo, hi):
    return np.clip(x, None, hi), np.clip(x, lo, None), x.clip(min=lo), x.clip(max=hi), np.clip(x, max=hi)


def clip_all(x, lo, hi):
    return clip3(x, lo, hi) + clip_nones(x, lo, hi)


CLIP_ALL_MODES = {0: {"zero_sign": False}, 1: {"zero_sign": False}}  # the clip_nones part is exact


def clip_scalars(x, lo, hi):
    return np.clip(x, -5, 5), np.clip(x, 0.5, 2.5), np.clip(x, lo, 3), np.clip(x, -np.inf, hi), np.clip(x, 1, 0)


# np.clip's result for x == bound with zeros of different sign depends on NumPy's loop (a stride-0 bound keeps
# x, an array bound returns the bound), so clip results ignore the sign of zeros; everything else is exact.
@given(xlh=broadcast_triple())
@examples(25)
def test_clip(xlh):
    check(clip_all, *xlh, modes=CLIP_ALL_MODES)


@given(xlh=broadcast_triple())
@examples(15)
def test_clip_scalars(xlh):
    check(clip_scalars, *xlh, zero_sign=False)


def test_clip_special_values():
    """Every (x, lo, hi) triple of edge values, as three flat arrays."""
    for dt in FLOATS + [np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int64)]:
        v = special_values(dt)
        x, lo, hi = (a.ravel() for a in np.meshgrid(v, v, v, indexing="ij"))
        check(clip_all, x, lo, hi, modes=CLIP_ALL_MODES, what=str(dt))


def test_clip_without_bounds_and_python_int_bounds():
    def f(x):
        return np.clip(x, None, None), np.clip(x, -1000, 1000), np.clip(x, -5, 300), np.clip(x, 3, 2**70)

    def g(x):
        return np.clip(x, 2**70, None)

    for dt in [np.int8, np.uint8, np.int16, np.uint64, np.float32]:
        check(f, special_values(dt), zero_sign=False)
        check(g, special_values(dt), allow_error=True)  # OverflowError in both


# -- astype -------------------------------------------------------------------------------------------------
def _in_range_elements(src, dst):
    """Float values whose conversion to ``dst`` is defined (NumPy's out-of-range casts are platform-defined)."""
    src, dst = np.dtype(src), np.dtype(dst)
    if src.kind == "f" and dst.kind in "iu":
        info = np.iinfo(dst)
        lo = float(info.min) if dst.kind == "i" else -0.75
        # the largest value of src below info.max + 1 (2**63 for int64: float(info.max) rounds up to it)
        hi = float(np.nextafter(np.array(float(info.max + 1), src), np.array(0, src)))
        return st.floats(lo, hi, width=src.itemsize * 8)
    return elements_for(src)


@pytest.mark.parametrize("dst", DTYPES, ids=str)
@given(data=st.data())
@examples(25)
def test_astype(dst, data):
    src = data.draw(dtypes)
    x = data.draw(arrays(src, data.draw(shapes()), elements=_in_range_elements(src, dst)))

    def cast(x):
        return x.astype(dst)

    check(cast, x, key=("astype", dst), what=f"{src}->{dst}")


def test_astype_all_pairs_special_values():
    def cast_all(x):
        return {str(d): x.astype(d) for d in DTYPES}

    def cast_to_floats_and_bool(x):
        return {str(d): x.astype(d) for d in [BOOL] + FLOATS}

    for src in DTYPES:
        x = special_values(src)
        if src.kind == "f":  # NaN, inf, -0.0, subnormals, overflow to float32
            check(cast_to_floats_and_bool, x, what=f"{src}->floats")
            x = x[np.isfinite(x) & (np.abs(x) < 100) & (x > -1)]  # in range of every integer type
        check(cast_all, x, what=f"{src}->*")


def test_astype_out_of_range_matches_x86():
    """Out-of-range and NaN float->int casts are undefined in C; prepjit does what NumPy's C casts do on x86-64
    (cvttss2si/cvttsd2si: INT_MIN when out of range or NaN; narrower types convert through int32 and wrap;
    uint32 through int64; uint64 through the 2**63 split). NumPy's contiguous float->uint32 loop is compiled
    differently (1e10 -> 0 there, but 1410065408 in its strided and scalar loops), so uint32 is compared with
    NumPy's strided loop."""
    vals = np.array([-1.0, -2.5, 256.0, 300.7, -129.0, 1e10, -1e10, 2.0**31, -2.0**31 - 1, 2.0**32, 2.0**63, 2.0**64,
                     1e30, -1e30, np.inf, -np.inf, np.nan, 3e9, -3e9, 5e9], np.float64)
    targets = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)

    def cast_ints(x):
        return tuple(x.astype(d) for d in targets)

    for src in FLOATS:
        x = vals.astype(src)
        got = jit(cast_ints)(x)
        with np.errstate(all="ignore"):
            strided = cast_ints(np.repeat(x, 2)[::2])
            contiguous = cast_ints(x)
        for d, g, w, c in zip(targets, got, strided, contiguous):
            assert_same(g, w, f"{src}->{np.dtype(d)}")
            if d is not np.uint32:
                assert_same(g, c, f"{src}->{np.dtype(d)} (contiguous)")
        assert got[4][0] == 255  # -1.0 -> uint8
        assert got[2][16] == np.iinfo(np.int32).min  # NaN -> int32
        assert got[3][16] == np.iinfo(np.int64).min  # NaN -> int64
        assert got[2][14] == np.iinfo(np.int32).min  # inf -> int32
        assert got[0][14] == 0 and got[7][0] == 2**64 - 1  # inf -> int8; -1.0 -> uint64


def test_astype_unsupported_dtype():
    def f(x):
        return x.astype(np.float16)

    with pytest.raises(pj.UnsupportedError):
        jit(f)(np.zeros(3))


# -- round --------------------------------------------------------------------------------------------------
@given(x=any_array(), decimals=st.integers(-4, 4))
@SETTINGS
def test_round(x, decimals):
    def rnd(x):
        return np.round(x, decimals), x.round(decimals), np.around(x, decimals)

    if numpy_outcome(lambda z: np.round(z, decimals), _zero(x.dtype)) != "ok":
        return
    check(rnd, _round_input(x, decimals), key=("round3", decimals), what=f"round {x.dtype} {decimals}")


def _round_input(x, decimals):
    """NumPy rounds integers with decimals < 0 in float64 and casts back; uint32 values that round up past the
    dtype's max hit its platform-defined out-of-range cast (see test_astype_out_of_range_matches_x86)."""
    if x.dtype == np.uint32 and decimals < 0:
        return np.minimum(x, np.iinfo(np.uint32).max - 10 ** -decimals).astype(np.uint32)
    return x


@pytest.mark.parametrize("decimals", [-3, -1, 0, 1, 2, 5])
def test_round_special_values(decimals):
    def rnd(x):
        return np.round(x, decimals)

    for dt in DTYPES:
        if numpy_outcome(rnd, _zero(dt)) == "ok":
            check(rnd, _round_input(special_values(dt), decimals), key=("round", decimals), what=f"round {dt}")
    halves = [0.5, 1.5, 2.5, -0.5, -2.5, 0.125, 0.375, 1.005, 2.675, 12345.5, 0.05, 150.0, 250.0]
    check(rnd, np.array(halves + [1e300, 1e306]), key=("round", decimals))
    check(rnd, np.array(halves + [3e38, 1e36], np.float32), key=("round", decimals))


# -- power --------------------------------------------------------------------------------------------------
FLOAT_EXPONENTS = [2, 0.5, -1, 1, 0, 2.0, -1.0, 1.0, 0.0, np.float64(2), np.int64(0), np.float32(0.5)]
INT_EXPONENTS = [0, 1, 2, 3, 5, 7, 13, 64, np.int8(3), np.uint8(2)]


@given(x=any_array(float_dtypes), e=st.sampled_from(FLOAT_EXPONENTS))
@SETTINGS
def test_float_power(x, e):
    def pw(x):
        return x ** e, np.power(x, e)

    check(pw, x, key=("pow2", type(e), repr(e)), what=f"{x.dtype} ** {e!r}")


@given(x=any_array(st.sampled_from([BOOL] + INTS + UINTS)), e=st.sampled_from(INT_EXPONENTS))
@SETTINGS
def test_int_power(x, e):
    def pw(x):
        return x ** e

    if np.power(np.zeros((), x.dtype), e).dtype.kind == "f" and e not in (0, 1, 2):
        # uint64 ** np.int8(3) is a float64 power in NumPy, which prepjit does not implement
        with pytest.raises(pj.UnsupportedError, match="power"):
            jit(pw, ("pow", type(e), repr(e)))(x)
        return
    check(pw, x, key=("pow", type(e), repr(e)), what=f"{x.dtype} ** {e!r}")


def test_power_special_values():
    for dt in DTYPES:
        exps = tuple(e for e in (FLOAT_EXPONENTS if dt.kind == "f" else INT_EXPONENTS)
                     if dt.kind == "f" or np.power(np.zeros((), dt), e).dtype.kind != "f" or e in (0, 1, 2))

        def pw(x):
            return {f"x ** {e!r}": x ** e for e in exps}

        check(pw, special_values(dt), key=("pow-all", exps), what=str(dt))


def test_power_unsupported():
    def cube(x):
        return x ** 3.0

    def arr(x, y):
        return x ** y

    def neg(x):
        return x ** -1

    with pytest.raises(pj.UnsupportedError, match="power"):
        jit(cube)(np.ones(3))
    with pytest.raises(pj.UnsupportedError, match="power"):
        jit(arr)(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="negative integer powers"):
        jit(neg)(np.ones(3, np.int32))


# -- constants captured from closures -----------------------------------------------------------------------
W = np.array([[1.5, -2.0, 0.25]], np.float32)
IDX = np.arange(3, dtype=np.int16)
BOOLS = np.array([True, False, True])


def with_constants(x):
    return x * W + IDX, np.where(BOOLS, x, np.float64(7.5)), x + np.int8(3), x - np.uint16(1), x * [1, 2, 3]


@given(x=any_array(st.sampled_from([BOOL, np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int64)] + FLOATS),
                   shape=st.sampled_from([(3,), (2, 3), (0, 3), (4, 1), ()])))
@SETTINGS
def test_captured_constants(x):
    check(with_constants, x)


def test_captured_non_contiguous_and_large_constants():
    table = np.arange(24, dtype=np.int16).reshape(4, 6)[::-1, ::2]  # a reversed, strided view
    big = np.linspace(-1, 1, 1000)

    def f(x):
        return x + table, x * table[:, :1], x - table.T[:1, :3], np.concatenate([x.ravel(), big.astype(x.dtype)])

    for dt in (np.float32, np.int64, np.uint8):
        check(f, np.arange(12).reshape(4, 3).astype(dt))


def test_constant_only_and_scalar_outputs():
    def consts(x):
        return W * 2, np.float32(3.5), 4, 2.5, True, x

    x = np.arange(5, dtype=np.int32)
    got = check(consts, x)
    assert got[-1] is x or np.shares_memory(got[-1], x) or np.array_equal(got[-1], x)
    # constant outputs are fresh arrays, not views of prepjit's stored constants
    got[0][...] = 0
    assert jit(consts)(x)[0][0, 0] == 3.0


# -- output structures --------------------------------------------------------------------------------------
def out_tuple(x, y):
    return x + y, x * y, x


def out_list(x, y):
    return [x - y, np.abs(x)]


def out_dict(x, y):
    return {"sum": x + y, "max": np.maximum(x, y), "first": x[..., :1], "mean": x.mean()}


def out_single_tuple(x, y):
    return (x * 2,)


@given(xy=broadcast_pair(dtype_a=st.sampled_from(INTS + FLOATS), dtype_b=st.sampled_from(INTS + FLOATS)))
@examples(5)
def test_output_structures(xy):
    x, y = xy
    check(out_tuple, x, y)
    check(out_list, x, y)
    check(out_single_tuple, x, y)
    if x.ndim:
        check(out_dict, x, y, modes={"mean": {"sum_tol": (magnitude(x, mean=True), 8)}})


# -- fused chains -------------------------------------------------------------------------------------------
def feat(x):
    y = np.clip((x - 3.0) / 2.0, -5.0, 5.0)
    return np.log1p(np.abs(y)) * np.sign(y) + np.where(x > 0, 1.0, 0.0)


def center(x):
    return x - x.mean(axis=0)


def scale(x):
    m = x.max(axis=-1, keepdims=True)
    return x / np.where(m == 0, 1, m), (x > x.min()).sum(axis=0)


def chain(x, y):
    a = np.sqrt(np.abs(x)) * 2 - y
    b = np.floor_divide(a, 3.0) + np.remainder(a, -1.5)
    c = np.maximum(b, y).astype(np.float32)
    return np.tanh(c) + np.isnan(a), (a > 0) & (y < 1) | np.isinf(b)


@given(x=any_array(st.sampled_from(FLOATS + INTS + [BOOL])))
@example(x=np.array(-0.25, np.float32))  # log1p(1.625) is 1 float32 ULP from NumPy's
@SETTINGS
def test_feat(x):
    # the float64 result of a float32 input is a float32 log1p(...) * sign(...) plus exactly 0 or 1: count its
    # ULPs in float32
    check(feat, x, ulp=ULP + 1, ulp_dtype=np.float32 if x.dtype == np.float32 else None)


@given(x=any_array(FLOATS[0], shape=shapes(min_dims=1), elements=elements_for(np.float32, bound=1e6)))
@SETTINGS
def test_center_and_scale(x):
    got, want = jit(center)(x), reference(center, x)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    # prepjit's mean accumulates in float64, NumPy's pairwise in float32: the means differ by a few float32
    # roundings of the column's mean magnitude; the subtraction then rounds once more
    eps = np.finfo(np.float32).eps
    mean_mag = np.abs(x.astype(np.float64)).sum(axis=0) / max(x.shape[0], 1)
    tol = 8 * eps * mean_mag + 2 * eps * np.abs(want.astype(np.float64))
    assert np.all(np.abs(got.astype(np.float64) - want) <= tol)
    if x.shape[-1]:
        check(scale, x, allow_error=True)  # x.min() of an empty x raises ValueError in both


@given(xy=broadcast_pair(dtype_a=float_dtypes, dtype_b=st.sampled_from(FLOATS + INTS)))
@examples(12)
def test_chain(xy):
    check(chain, *xy, modes={0: {"ulp": ULP}})


# -- specialization -----------------------------------------------------------------------------------------
def test_no_recompile_for_new_sizes():
    @pj.jit_preprocess(cache=False)  # no disk cache: every specialization is a compile
    def f(x, y):
        return np.where(x > y, x * 2, y) + x.sum(axis=0)

    f(np.ones((3, 4), np.float32), np.zeros(4, np.int32))
    assert f.stats["compiles"] == 1
    for shape in [(5, 7), (1, 1), (0, 3), (100, 2)]:
        x = np.random.default_rng(0).integers(-50, 50, shape).astype(np.float32)  # exact sums
        y = np.arange(shape[1], dtype=np.int32)
        assert_same(f(x, y), f.fn(x, y))
        xv = x[::-1, ::2]  # new strides are not a new specialization either
        yv = np.arange(2 * xv.shape[1], dtype=np.int32)[::-2]
        assert_same(f(xv, yv), f.fn(xv, yv))
    assert f.stats["compiles"] == 1
    f(np.ones((3, 4), np.float64), np.zeros(4, np.int32))  # new dtype: a new specialization
    assert f.stats["compiles"] == 2
    f(np.ones((3, 4), np.float32), np.zeros((1, 4), np.int32))  # new rank too
    assert f.stats["compiles"] == 3
    f(np.ones((2, 2), np.float64), np.zeros(2, np.int32))  # seen before
    f(np.ones((7, 1), np.float32), np.zeros(1, np.int32))
    assert f.stats["compiles"] == 3


# -- errors -------------------------------------------------------------------------------------------------
def test_error_wrong_container():
    @pj.jit_preprocess
    def f(x, weights):
        return x * weights

    with pytest.raises(TypeError, match="weights"):
        f(np.ones(3), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("dt", [np.float16, np.complex64, np.complex128, np.longdouble, "U3", object, "M8[s]"],
                         ids=str)
def test_error_unsupported_dtype(dt):
    @pj.jit_preprocess
    def f(x):
        return x + 1

    with pytest.raises(TypeError, match="dtype"):
        f(np.zeros(3, dt))


def test_error_python_control_flow():
    @pj.jit_preprocess
    def f(x):
        if x > 0:  # the line the error must name
            return x
        return -x

    line = f.fn.__code__.co_firstlineno + 2
    with pytest.raises(pj.TracingError) as e:
        f(np.ones(3))
    assert f"{__file__}:{line}" in str(e.value)
    assert "np.where" in str(e.value)


def test_error_python_control_flow_on_size():
    @pj.jit_preprocess
    def f(x):
        return x[: 2] if x.shape[0] > 2 else x

    with pytest.raises(pj.TracingError, match=r"test_ops\.py:\d+"):
        f(np.ones(3))


@pytest.mark.parametrize("fn, name", [
    (lambda x: np.sort(x), "np.sort"),
    (lambda x: np.cumsum(x), "np.cumsum"),
    (lambda x: np.add.reduce(x), "np.add.reduce"),
    (lambda x: np.arctan2(x, x), "np.arctan2"),
    (lambda x: np.sin(x), "np.sin"),
    (lambda x: x[x > 0], "indexing"),
    (lambda x: np.where(x > 0), "np.where"),
])
def test_error_unsupported_numpy_function(fn, name):
    f = pj.jit_preprocess(fn)
    with pytest.raises(pj.UnsupportedError, match=name.replace(".", r"\.")) as e:
        f(np.ones(3))
    assert "test_ops.py" in str(e.value)


def test_error_broadcast_mismatch_at_call_time():
    @pj.jit_preprocess
    def f(x, y):
        return x + y

    f(np.ones(3), np.ones(3))  # compiled for (?,) + (?,)
    with pytest.raises(ValueError, match="broadcast") as e:
        f(np.ones(3), np.ones(4))
    # raised by the generated Python prologue, i.e. before the native call
    assert e.traceback[-1].frame.code.path.startswith("<prepjit prologue")
    assert f"{__file__}:" in str(e.value)  # names the user's line of the failing operation
    with pytest.raises(ValueError):
        f.fn(np.ones(3), np.ones(4))
    assert_same(f(np.ones(1), np.ones(4)), np.ones(4) * 2)


def test_error_max_of_empty():
    @pj.jit_preprocess
    def f(x):
        return x.max(), np.min(x, axis=0)

    f(np.ones((2, 2)))
    with pytest.raises(ValueError, match="zero-size"):
        f(np.ones((0, 2)))
    with pytest.raises(ValueError, match="zero-size"):
        f.fn(np.ones((0, 2)))


# -- random programs: fusion and lowering of arbitrary op mixes -----------------------------------------------
@st.composite
def programs(draw):
    """Source of a random function of x (a, b), y (b,), z (a, 1) mixing elementwise ops, broadcasting,
    reductions and layout ops. Values stay dyadic rationals of bounded magnitude, so every sum is exact in
    float64 and NumPy's and prepjit's summation orders agree bit for bit."""
    vals = [("x", ("a", "b")), ("y", ("b",)), ("z", ("a", "1"))]
    fresh = iter(range(1000))

    def bcast(d1, d2):
        if len(d1) < len(d2):
            d1, d2 = d2, d1
        d2 = ("1",) * (len(d1) - len(d2)) + d2
        if not all(p == q or "1" in (p, q) for p, q in zip(d1, d2)):
            return None
        return tuple(q if p == "1" else p for p, q in zip(d1, d2))

    lines = []
    for i in range(draw(st.integers(2, 7))):
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "layout", "where"]))
        a, da = draw(st.sampled_from(vals))
        if kind == "unary":
            expr = draw(st.sampled_from(["np.abs({})", "-{}", "np.floor({} / 4)", "np.sign({})", "np.rint({} / 2)",
                                         "np.clip({}, -20.0, 30.0)", "{}.astype(np.float32).astype(np.float64)"]))
            expr, dims = expr.format(a), da
        elif kind in ("binary", "where"):
            partners = [(n, d) for n, d in vals if bcast(da, d) is not None]
            b, db = draw(st.sampled_from(partners))
            dims = bcast(da, db)
            if kind == "binary":
                op = draw(st.sampled_from(["{} + {}", "{} - {}", "np.clip({} * {}, -1e6, 1e6)", "np.maximum({}, {})",
                                           "np.minimum({}, {})", "np.fmax({}, {})"]))
                expr = op.format(a, b)
            else:
                c, dc = draw(st.sampled_from([(n, d) for n, d in vals if bcast(dims, d) is not None]))
                dims = bcast(dims, dc)
                expr = f"np.where({a} > {b}, {a}, {c})"
        elif kind == "reduce" and da:
            axis = draw(st.integers(0, len(da) - 1))
            keep = draw(st.booleans())
            red = draw(st.sampled_from(["sum", "max", "min"]))
            expr = f"{a}.{red}(axis={axis}, keepdims={keep})"
            dims = tuple("1" if k == axis else d for k, d in enumerate(da) if keep or k != axis)
        elif da:
            layout = draw(st.sampled_from(["T", "rev", "step", "expand", "ravel", "concat"]))
            if layout == "T":
                expr, dims = f"{a}.T", da[::-1]
            elif layout == "rev":
                expr, dims = f"{a}[::-1]", da
            elif layout == "step":
                expr, dims = f"{a}[..., ::2]", da[:-1] + (f"n{next(fresh)}",)
            elif layout == "expand":
                expr, dims = f"np.expand_dims({a}, 0)", ("1",) + da
            elif layout == "ravel":
                expr, dims = f"{a}.reshape(-1)", (f"n{next(fresh)}",)
            else:
                expr, dims = f"np.concatenate([{a}, {a}[::-1]], axis=-1)", da[:-1] + (f"n{next(fresh)}",)
        else:
            expr, dims = f"{a} * 2", da
        lines.append(f"    v{i} = {expr}")
        vals.append((f"v{i}", dims))
    outs = draw(st.lists(st.sampled_from([n for n, _ in vals[3:]]), min_size=1, max_size=3))
    return "def prog(x, y, z):\n" + "\n".join(lines) + f"\n    return ({', '.join(outs)},)\n"


@given(src=programs(), data=st.data())
@examples(40)
def test_random_programs(src, data):
    env = {"np": np}
    exec(compile(src, "<random program>", "exec"), env)  # noqa: S102 - generated above
    prog = env["prog"]
    ints = st.integers(-50, 50).map(float)
    for _ in range(2):  # one compile, two sets of sizes
        a, b = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
        x = data.draw(arrays(np.float64, (a, b), elements=ints))
        y = data.draw(arrays(np.float64, (b,), elements=ints))
        z = data.draw(arrays(np.float64, (a, 1), elements=ints))
        check(prog, x, y, z, key=("prog", src), what=src, zero_sign=False)


# -- arrays long enough for the vectorized loops (the hypothesis arrays above are mostly tiny) ------------------
@pytest.mark.parametrize("dt", DTYPES, ids=str)
def test_large_arrays(dt):
    rng = np.random.default_rng(int(dt.num))
    x = random_values(dt, (6, 203), rng)
    ops = tuple(o for o in UNARY_UFUNCS if numpy_outcome(o, _zero(dt)) == "ok")
    for v in (x, x[:, ::-1], x[::2, 3:200:2], x.T):
        check(_unary_fn(ops).fn, v, key=("unary", ops), modes=_modes(ops), what=f"unary {dt} {v.strides}")
    for other in (np.dtype(dt), np.dtype(np.int64 if dt.kind == "f" else np.float32)):
        ops = _binary_ops(_zero(dt), _zero(other))
        y = random_values(other, (203,), rng)
        yt = random_values(other, (3, 203), rng).T
        for a, b in ((x, y), (x[:, ::-1], y[::-1]), (x[::-1], y[:1]), (x.T[:, :3], yt)):
            check(_binary_fn(ops).fn, a, b, key=("binary", ops), modes=_modes(ops), what=f"{dt},{other} {a.shape}")
    check(where3, x > 0, x, random_values(np.float32, (6, 1), rng))
    check(clip_all, x, x[::-1], x[:1], modes=CLIP_ALL_MODES)
