"""Lowering rules for elementwise ops: NumPy semantics expressed with loop-IR primitives.

The NumPy reference of each op is the NumPy function named in its definition (``prepjit.ir.tensor``); the rule
here receives its operands already converted to the ufunc loop's input dtypes (as NumPy's type resolution
picks them) and returns one scalar expression of the result dtype.
"""
from __future__ import annotations

import inspect

import numpy as np

from prepjit.errors import UnsupportedError, at
from prepjit.ir.types import PyScalarType
from prepjit.lowering.loop_ir import BOOL, Const, Expr, cast, const, prim, select

RULES: dict = {}


def rule(*names):
    """Register ``fn(*operands, out_dtype[, name=op name])`` as the lowering of the named ops."""
    def deco(fn):
        wants_name = "name" in inspect.signature(fn).parameters
        for n in names:
            RULES[n] = (lambda *a, _fn=fn, _n=n: _fn(*a, name=_n)) if wants_name else fn
        return fn

    return deco


def _is_float(dt) -> bool:
    return np.dtype(dt).kind == "f"


def _is_signed(dt) -> bool:
    return np.dtype(dt).kind == "i"


def _nonzero(x: Expr) -> Expr:
    if x.dtype == BOOL:
        return x
    return prim("ne", x, const(0, x.dtype), dtype=BOOL)


# -- arithmetic -------------------------------------------------------------------------------------------------
@rule("tensor.add")
def _add(a, b, out):
    return prim("or" if out == BOOL else "add", a, b)


@rule("tensor.subtract")
def _sub(a, b, out):
    return prim("sub", a, b)


@rule("tensor.multiply")
def _mul(a, b, out):
    return prim("and" if out == BOOL else "mul", a, b)


@rule("tensor.divide")
def _div(a, b, out):
    return prim("fdiv", a, b)


def _int_floor_divide(a, b):
    dt = a.dtype
    zero, one = const(0, dt), const(1, dt)
    b_is_zero = prim("eq", b, zero, dtype=BOOL)
    if _is_signed(dt):
        overflow = prim("and", prim("eq", a, const(np.iinfo(dt).min, dt), dtype=BOOL),
                        prim("eq", b, const(-1, dt), dtype=BOOL))
        unsafe = prim("or", b_is_zero, overflow)
        safe_b = select(unsafe, one, b)
        q = prim("idiv", a, safe_b)
        r = prim("irem", a, safe_b)
        # round toward -inf: subtract one when the remainder is nonzero and the signs differ
        adjust = prim("and", prim("ne", r, zero, dtype=BOOL),
                      prim("ne", prim("lt", r, zero, dtype=BOOL), prim("lt", safe_b, zero, dtype=BOOL), dtype=BOOL))
        q = select(adjust, prim("sub", q, one), q)
        return select(b_is_zero, zero, select(overflow, a, q))
    safe_b = select(b_is_zero, one, b)
    return select(b_is_zero, zero, prim("idiv", a, safe_b))


def _int_remainder(a, b):
    dt = a.dtype
    zero, one = const(0, dt), const(1, dt)
    if _is_signed(dt):
        unsafe = prim("or", prim("eq", b, zero, dtype=BOOL), prim("eq", b, const(-1, dt), dtype=BOOL))
        safe_b = select(unsafe, one, b)
        r = prim("irem", a, safe_b)
        fix = prim("and", prim("ne", r, zero, dtype=BOOL),
                   prim("ne", prim("lt", r, zero, dtype=BOOL), prim("lt", safe_b, zero, dtype=BOOL), dtype=BOOL))
        return select(unsafe, zero, select(fix, prim("add", r, safe_b), r))
    b_is_zero = prim("eq", b, zero, dtype=BOOL)
    return select(b_is_zero, zero, prim("irem", a, select(b_is_zero, one, b)))


def _fmod(a, b):
    """C ``fmod``. By a constant power of two (``np.mod(h, 1.0)`` in hue arithmetic) it is exact without a
    library call, so the loop vectorizes: the quotient ``a / |b|`` is exact below 2**mantissa bits and truncates
    to the integer part; at or above that ``a`` is a multiple of ``b`` (remainder ±0; an infinite ``a`` gives
    NaN through ``a * 0``); the sign of a zero remainder is ``a``'s, as fmod's is."""
    if isinstance(b, Const) and np.dtype(b.dtype) in (np.float32, np.float64):
        step = abs(float(b.value))
        mant, exp = np.frexp(step)
        if mant == 0.5 and -100 <= exp <= 100:
            dt = a.dtype
            limit = const(step * 2.0 ** (np.finfo(dt).nmant + 1), dt)
            whole = prim("mul", prim("trunc", prim("mul", a, const(1.0 / step, dt))), const(step, dt))
            big = prim("ge", prim("abs", a), limit, dtype=BOOL)
            r = select(big, prim("mul", a, const(0.0, dt)), prim("sub", a, whole))
            return prim("copysign", r, a)
    return prim("frem", a, b)


def _float_divmod(a, b):
    """NumPy's npy_divmod: (floor quotient, remainder with the sign of b)."""
    dt = a.dtype
    zero, one, half = const(0, dt), const(1, dt), const(0.5, dt)
    mod = _fmod(a, b)
    div = prim("fdiv", prim("sub", a, mod), b)
    mod_nz = prim("ne", mod, zero, dtype=BOOL)  # NaN counts as nonzero, as `if (mod)` in C
    mod_ne = prim("ne", mod, zero, dtype=BOOL)
    signs_differ = prim("ne", prim("lt", b, zero, dtype=BOOL), prim("lt", mod, zero, dtype=BOOL), dtype=BOOL)
    fix = prim("and", mod_ne, signs_differ)
    mod2 = select(fix, prim("add", mod, b), select(mod_nz, mod, prim("copysign", zero, b)))
    div = select(fix, prim("sub", div, one), div)
    fl = prim("floor", div)
    fl = select(prim("gt", prim("sub", div, fl), half, dtype=BOOL), prim("add", fl, one), fl)
    q = select(prim("ne", div, zero, dtype=BOOL), fl, prim("copysign", zero, prim("fdiv", a, b)))
    b_zero = prim("eq", b, zero, dtype=BOOL)
    return select(b_zero, prim("fdiv", a, b), q), select(b_zero, mod, mod2)


@rule("tensor.floor_divide")
def _floor_divide(a, b, out):
    if _is_float(out):
        return _float_divmod(a, b)[0]
    return _int_floor_divide(a, b)


@rule("tensor.remainder")
def _remainder(a, b, out):
    if _is_float(out):
        return _float_divmod(a, b)[1]
    return _int_remainder(a, b)


@rule("tensor.power")
def _power(a, b, out):
    """Integer power by repeated squaring (wrapping like NumPy); the tracer routes float powers elsewhere."""
    if not isinstance(b, Const) or int(b.value) < 0:
        raise UnsupportedError("np.power on integers needs a non-negative scalar exponent")
    e = int(b.value)
    result, base = const(1, out), a
    while e:
        if e & 1:
            result = base if isinstance(result, Const) and result.value == 1 else prim("mul", result, base)
        e >>= 1
        if e:
            base = prim("mul", base, base)
    return result


@rule("tensor.negative")
def _negative(a, out):
    return prim("neg", a)


@rule("tensor.positive")
def _positive(a, out):
    return a


@rule("tensor.absolute")
def _absolute(a, out):
    return a if (out == BOOL or np.dtype(out).kind == "u") else prim("abs", a)


@rule("tensor.sign")
def _sign(a, out):
    dt = a.dtype
    zero, one = const(0, dt), const(1, dt)
    pos = prim("gt", a, zero, dtype=BOOL)
    if np.dtype(dt).kind == "u":
        return cast(pos, dt)
    neg = prim("lt", a, zero, dtype=BOOL)
    r = select(pos, one, select(neg, const(-1, dt), zero))
    if _is_float(dt):  # NaN stays NaN
        r = select(prim("isnan", a, dtype=BOOL), a, r)
    return r


@rule("tensor.square")
def _square(a, out):
    return prim("and" if out == BOOL else "mul", a, a)


@rule("tensor.reciprocal")
def _reciprocal(a, out):
    if not _is_float(out):  # NumPy's integer loop: ``out = 1.0 / in`` in double, then a C cast (1/0 -> INT_MIN)
        return cast(prim("fdiv", const(1, np.float64), cast(a, np.float64)), out)
    return prim("fdiv", const(1, out), a)


@rule("tensor.minimum", "tensor.maximum", "tensor.fmin", "tensor.fmax")
def _minmax(a, b, out, name):
    is_min = name in ("tensor.minimum", "tensor.fmin")
    if out == BOOL:
        return prim("and" if is_min else "or", a, b)
    if name in ("tensor.fmin", "tensor.fmax") and _is_float(out):
        return prim("fminnum" if is_min else "fmaxnum", a, b)
    if _is_float(out):
        # NumPy's loops: NaN in either operand propagates, and b is returned when a == b (min(-0.0, 0.0) is 0.0)
        first = prim("or", prim("isnan", a, dtype=BOOL), prim("lt" if is_min else "gt", a, b, dtype=BOOL))
        return select(first, a, b)
    return prim("min" if is_min else "max", a, b)


@rule("tensor.copysign")
def _copysign(a, b, out):
    return prim("copysign", a, b)


# -- float functions --------------------------------------------------------------------------------------------
def _float_fn(primitive):
    def r(a, out):
        return prim(primitive, a)

    return r


for _name in ("exp", "expm1", "log", "log1p", "log2", "log10", "tanh", "sqrt"):
    rule(f"tensor.{_name}")(_float_fn(_name))


@rule("tensor.floor", "tensor.ceil", "tensor.trunc", "tensor.rint")
def _rounding(a, out, name):
    if not _is_float(out):
        return a  # NumPy 2 returns integers unchanged
    return prim(name.split(".")[1], a)


@rule("tensor.isnan", "tensor.isinf", "tensor.isfinite")
def _classify(a, out, name):
    if not _is_float(a.dtype):
        return const(name == "tensor.isfinite", BOOL)
    if name == "tensor.isnan":
        return prim("isnan", a, dtype=BOOL)
    inf = const(np.inf, a.dtype)
    is_inf = prim("eq", prim("abs", a), inf, dtype=BOOL)
    if name == "tensor.isinf":
        return is_inf
    return prim("lt", prim("abs", a), inf, dtype=BOOL)  # NaN compares false


# -- comparisons and logic ----------------------------------------------------------------------------------------
_CMP = {"tensor.greater": "gt", "tensor.greater_equal": "ge", "tensor.less": "lt", "tensor.less_equal": "le",
        "tensor.equal": "eq", "tensor.not_equal": "ne"}


@rule(*_CMP)
def _compare(a, b, out, name):
    if a.dtype != b.dtype:  # NumPy's exact uint64-vs-int64 loops ('Qq->?', 'qQ->?')
        signed = a if _is_signed(a.dtype) else b
        negative = prim("lt", signed, const(0, signed.dtype), dtype=BOOL)
        # a negative signed operand is below every unsigned value
        when_negative = name in (("tensor.less", "tensor.less_equal") if signed is a else
                                 ("tensor.greater", "tensor.greater_equal")) or name == "tensor.not_equal"
        u = np.dtype(np.uint64)
        exact = prim(_CMP[name], cast(a, u), cast(b, u), dtype=BOOL)
        return select(negative, const(when_negative, BOOL), exact)
    return prim(_CMP[name], a, b, dtype=BOOL)


@rule("tensor.logical_and", "tensor.logical_or", "tensor.logical_xor")
def _logical(a, b, out, name):
    return prim(name.split("_")[1], _nonzero(a), _nonzero(b))


@rule("tensor.logical_not")
def _logical_not(a, out):
    return prim("not", _nonzero(a))


@rule("tensor.bitwise_and", "tensor.bitwise_or", "tensor.bitwise_xor")
def _bitwise(a, b, out, name):
    return prim(name.split("_")[1], a, b)


@rule("tensor.invert")
def _invert(a, out):
    return prim("not", a)


# -- non-ufunc elementwise ops ------------------------------------------------------------------------------------
@rule("tensor.where")
def _where(c, a, b, out):
    return select(_nonzero(c), cast(a, out), cast(b, out))


@rule("tensor.clip")
def _clip(x, lo, hi, out):
    return prim("min", prim("max", cast(x, out), cast(lo, out)), cast(hi, out))


@rule("tensor.astype")
def _astype(x, out):
    return cast(x, out)


def round_half_even(x: Expr, decimals: int, out) -> Expr:
    """np.round: multiply (or divide) by 10**|decimals|, rint, undo — exactly NumPy's sequence of roundings."""
    if not _is_float(x.dtype):
        if decimals >= 0:
            return cast(x, out)
        f = const(10.0 ** -decimals, np.float64)
        y = prim("rint", prim("fdiv", cast(x, np.float64), f))
        return cast(prim("mul", y, f), out)
    if decimals == 0:
        return prim("rint", x)
    f = const(10.0 ** abs(decimals), x.dtype)
    if decimals > 0:
        return prim("fdiv", prim("rint", prim("mul", x, f)), f)
    return prim("mul", prim("rint", prim("fdiv", x, f)), f)


# -- driver -------------------------------------------------------------------------------------------------------
def loop_dtypes(op, types) -> list:
    """The input dtypes of the NumPy loop that computes ``op`` (NumPy's own type resolution)."""
    uf = op.opdef.reference
    if "ufunc" in op.opdef.traits:
        keys = tuple(((BOOL if t.kind is bool else t.kind) if isinstance(t, PyScalarType) else t.dtype)
                     for t in types) + (None,)
        return list(uf.resolve_dtypes(keys)[:uf.nin])
    out = op.results[0].type.dtype
    if op.name == "tensor.where":
        return [BOOL, out, out]
    if op.name == "tensor.clip":
        return [out, out, out]
    return [t.dtype if not isinstance(t, PyScalarType) else out for t in types]


def lower_elementwise(op, operands: list) -> Expr:
    """``operands``: loop-IR expressions for tensor operands, or PyScalarType for Python scalars."""
    out = op.results[0].type.dtype
    name = op.name
    in_types = [o if isinstance(o, PyScalarType) else _TypeOf(o.dtype) for o in operands]
    dts = loop_dtypes(op, in_types)
    args = []
    for o, dt in zip(operands, dts):
        if isinstance(o, PyScalarType):
            try:
                with np.errstate(all="ignore"):
                    args.append(const(np.array(o.value, dtype=dt), dt))
            except OverflowError:
                # NEP 50: comparing with a Python int outside the dtype's range has a constant answer.
                if name in _CMP:  # every array value compares like the dtype's max (the operand order matters)
                    info = np.iinfo(dt)
                    vals = [o.value if v is o else np.array(info.max, dt) for v in operands]
                    return const(bool(op.opdef.reference(*vals)), BOOL)
                raise
        else:
            args.append(cast(o, dt))
    fn = RULES.get(name)
    if fn is None and name != "tensor.round":
        raise UnsupportedError(at(op.loc, f"{name} has no lowering rule"))
    if name == "tensor.round":
        return round_half_even(args[0], op.attrs["decimals"], out)
    return cast(fn(*args, out), out)


class _TypeOf:
    __slots__ = ("dtype",)

    def __init__(self, dtype):
        self.dtype = dtype
