"""The ``tensor`` dialect: NumPy-semantics array ops on symbolic shapes.

Each op is declared once here with its type rule; its NumPy reference is the NumPy function itself, and its
lowering rule lives in ``prepjit.kernels``. Result dtypes are computed by asking NumPy (on 0-d dummies and the
actual Python scalar values), so promotion follows NEP 50 exactly, errors included.
"""
from __future__ import annotations

import numpy as np

from prepjit.errors import UnsupportedError, at
from prepjit.ir import dims as D
from prepjit.ir.core import Constraint, Inferred, OpDef, define
from prepjit.ir.types import DTYPE_NAMES, PyScalarType, TensorType, check_dtype


# -- helpers shared by the type rules and the lowering rules --------------------------------------------------
def dummy(t):
    """A stand-in value with the same NumPy typing behaviour as a value of type ``t``."""
    if isinstance(t, PyScalarType):
        return t.value
    return np.zeros((), t.dtype)


def numpy_error(e: Exception, message: str) -> Exception:
    """``e``'s kind of error with ``message``: NumPy's own classes when they can be rebuilt from a message,
    else the builtin they derive from (``_UFuncNoLoopError`` needs extra constructor arguments)."""
    for cls in type(e).__mro__:
        try:
            return cls(message)
        except TypeError:
            continue
    return TypeError(message)


def result_dtype(fn, types, loc, what: str, **kwargs) -> np.dtype:
    try:
        with np.errstate(all="ignore"):
            r = fn(*[dummy(t) for t in types], **kwargs)
    except (TypeError, ValueError, OverflowError) as e:
        raise numpy_error(e, at(loc, f"{what}: {e}")) from None
    dt = np.asarray(r).dtype
    if dt not in DTYPE_NAMES:
        raise UnsupportedError(at(loc, f"{what} produces dtype {dt}, which prepjit does not support "
                                       f"(cast the input with .astype(np.float32) first)"))
    return dt


def broadcast_shapes(shapes, loc, what="operands") -> tuple[tuple, list]:
    rank = max((len(s) for s in shapes), default=0)
    out: list = []
    cons: list = []
    for k in range(rank):
        ds = [s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0]
        acc = ds[0]
        for d in ds[1:]:
            if isinstance(acc, int) and isinstance(d, int):
                if acc != d and acc != 1 and d != 1:
                    shp = " ".join(str(tuple(D.to_str(x) for x in s)) for s in shapes)
                    raise ValueError(at(loc, f"{what} could not be broadcast together with shapes {shp}"))
            elif not (acc == d or acc == 1 or d == 1):
                cons.append(Constraint("bcast", (acc, d), f"{what} could not be broadcast together "
                                       f"(axis {k - rank}: {{0}} vs {{1}})", loc))
            acc = D.broadcast(acc, d)
        out.append(acc)
    return tuple(out), cons


def tensor_shapes(types):
    return [t.shape for t in types if isinstance(t, TensorType)]


def _elementwise_infer(fn, what):
    def infer(types, attrs, loc):
        shape, cons = broadcast_shapes(tensor_shapes(types), loc, f"{what}: operands")
        return Inferred([TensorType(result_dtype(fn, types, loc, what, **attrs), shape)], cons)

    return infer


# -- elementwise ops ------------------------------------------------------------------------------------------
UNARY_UFUNCS = [np.negative, np.positive, np.absolute, np.sign, np.exp, np.expm1, np.log, np.log1p, np.log2,
                np.log10, np.tanh, np.sqrt, np.square, np.reciprocal, np.floor, np.ceil, np.trunc, np.rint,
                np.logical_not, np.invert, np.isnan, np.isinf, np.isfinite]
BINARY_UFUNCS = [np.add, np.subtract, np.multiply, np.divide, np.floor_divide, np.remainder, np.power,
                 np.minimum, np.maximum, np.fmin, np.fmax, np.copysign, np.greater, np.greater_equal, np.less,
                 np.less_equal, np.equal, np.not_equal, np.logical_and, np.logical_or, np.logical_xor,
                 np.bitwise_and, np.bitwise_or, np.bitwise_xor]
UFUNC_OPS = {}  # numpy ufunc -> op name
for _uf in UNARY_UFUNCS + BINARY_UFUNCS:
    UFUNC_OPS[_uf] = define(OpDef(f"tensor.{_uf.__name__}", _uf.nin, traits=frozenset({"elementwise", "ufunc"}),
                                  infer=_elementwise_infer(_uf, f"np.{_uf.__name__}"), reference=_uf)).name


def _where(c, a, b):
    return np.where(c, a, b)


def _astype(x, dtype):
    with np.errstate(all="ignore"):
        return np.asarray(x).astype(dtype)


def _round(x, decimals):
    return np.round(x, decimals)


define(OpDef("tensor.where", 3, traits=frozenset({"elementwise"}), infer=_elementwise_infer(_where, "np.where"),
             reference=_where))
define(OpDef("tensor.clip", 3, traits=frozenset({"elementwise"}), infer=_elementwise_infer(np.clip, "np.clip"),
             reference=np.clip))
define(OpDef("tensor.astype", 1, ("dtype",), frozenset({"elementwise"}),
             infer=lambda types, attrs, loc: Inferred([TensorType(check_dtype(attrs["dtype"]), types[0].shape)]),
             reference=_astype))
define(OpDef("tensor.round", 1, ("decimals",), frozenset({"elementwise"}),
             infer=_elementwise_infer(_round, "np.round"), reference=_round))


# -- constants ------------------------------------------------------------------------------------------------
define(OpDef("tensor.constant", 0, ("value",), frozenset({"constant"}),
             infer=lambda types, attrs, loc: Inferred([TensorType(attrs["value"].dtype, attrs["value"].shape)]),
             reference=lambda value: value))
define(OpDef("tensor.pyconst", 0, ("value",), frozenset({"constant"}),
             infer=lambda types, attrs, loc: Inferred([PyScalarType(type(attrs["value"]), attrs["value"])]),
             reference=lambda value: value))


# -- reductions -----------------------------------------------------------------------------------------------
REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod, "any": np.any,
              "all": np.all}


def reduced_shape(shape, axes, keepdims):
    return tuple((1 if keepdims else None) if k in axes else d for k, d in enumerate(shape) if keepdims or k not in axes)


def _reduction_infer(name, fn):
    def infer(types, attrs, loc):
        (t,) = types
        axes, keepdims = tuple(attrs["axes"]), attrs["keepdims"]
        kwargs = {"dtype": attrs["dtype"]} if attrs.get("dtype") is not None else {}
        try:
            with np.errstate(all="ignore"):
                r = fn(np.zeros((1,) * t.rank, t.dtype), axis=axes, **kwargs)
        except (TypeError, ValueError) as e:
            raise numpy_error(e, at(loc, f"np.{name}: {e}")) from None
        dt = np.asarray(r).dtype
        if dt not in DTYPE_NAMES:
            raise UnsupportedError(at(loc, f"np.{name} produces dtype {dt}, which prepjit does not support"))
        cons = []
        if name in ("max", "min"):
            cons.append(Constraint("gt", (D.product(t.shape[a] for a in axes), 0),
                                   f"zero-size array to reduction operation {'maximum' if name == 'max' else 'minimum'}"
                                   " which has no identity", loc))
        return Inferred([TensorType(dt, reduced_shape(t.shape, axes, keepdims))], cons)

    return infer


def _reduction_reference(fn):
    def ref(x, axes, keepdims, dtype=None):
        kwargs = {"dtype": dtype} if dtype is not None else {}
        return np.asarray(fn(x, axis=tuple(axes), keepdims=keepdims, **kwargs))

    return ref


for _name, _fn in REDUCTIONS.items():
    define(OpDef(f"tensor.{_name}", 1, ("axes", "keepdims"), frozenset({"reduction"}),
                 infer=_reduction_infer(_name, _fn), reference=_reduction_reference(_fn)))


# -- layout ops (become index maps; no data movement of their own) --------------------------------------------
def _same_dtype(types, shape, cons=()):
    return Inferred([TensorType(types[0].dtype, tuple(shape))], list(cons))


def _transpose_infer(types, attrs, loc):
    perm = attrs["perm"]
    return _same_dtype(types, [types[0].shape[p] for p in perm])


def reshape_shape(in_shape, shape, loc):
    """Resolve a reshape target (which may hold one -1) against ``in_shape``; returns (shape, constraints)."""
    size = D.product(in_shape)
    if sum(1 for d in shape if isinstance(d, int) and d == -1) > 1:
        raise ValueError(at(loc, "reshape: can only specify one unknown dimension"))
    known = D.product(d for d in shape if not (isinstance(d, int) and d == -1))
    out = tuple(D.floordiv(size, known) if isinstance(d, int) and d == -1 else d for d in shape)
    total = D.product(out)
    cons = []
    if isinstance(total, int) and isinstance(size, int):
        if total != size or (isinstance(known, int) and known == 0 and -1 in shape):
            raise ValueError(at(loc, f"cannot reshape array of size {size} into shape "
                                     f"{tuple(D.to_str(d) for d in shape)}"))
    elif total != size:
        cons.append(Constraint("eq", (total, size), "cannot reshape array of size {1} into shape of size {0}", loc))
    return out, cons


def _reshape_infer(types, attrs, loc):
    shape, cons = reshape_shape(types[0].shape, attrs["shape"], loc)
    return _same_dtype(types, shape, cons)


def _slice_bounds(d, start, stop, step):
    """Python slice semantics on a (possibly symbolic) size: returns (first index, length)."""
    if isinstance(d, int):
        s0, s1, st = slice(start, stop, step).indices(d)
        return s0, len(range(s0, s1, st))
    if step > 0:
        def norm(v, default):
            if v is None:
                return default
            return D.maximum(D.add(d, v), 0) if v < 0 else D.minimum(v, d)

        lo, hi = norm(start, 0), norm(stop, d)
        return lo, D.maximum(D.floordiv(D.add(D.add(hi, D.mul(lo, -1)), step - 1), step), 0)

    def norm_neg(v, default):
        if v is None:
            return default
        return D.maximum(D.add(d, v), -1) if v < 0 else D.minimum(v, D.add(d, -1))

    hi, lo = norm_neg(start, D.add(d, -1)), norm_neg(stop, -1)
    return hi, D.maximum(D.floordiv(D.add(D.add(hi, D.mul(lo, -1)), -step - 1), -step), 0)


def slice_plan(shape, items, loc):
    """Basic indexing. ``items``: list of ("s", start, stop, step) | ("i", k) | ("n",) covering every input dim.

    Returns (out_shape, constraints, maps) where maps[k] for input dim k is ("range", first, step, out_axis)
    or ("index", position).
    """
    out, cons, maps = [], [], []
    k = 0
    for it in items:
        if it[0] == "n":
            out.append(1)
            continue
        d = shape[k]
        if it[0] == "i":
            idx = it[1]
            if isinstance(d, int):
                if not -d <= idx < d:
                    raise IndexError(at(loc, f"index {idx} is out of bounds for axis {k} with size {d}"))
                maps.append(("index", idx % d))
            else:
                cons.append(Constraint("gt" if idx >= 0 else "ge", (d, idx if idx >= 0 else -idx),
                                       f"index {idx} is out of bounds for axis {k} with size {{0}}", loc,
                                       "IndexError"))
                maps.append(("index", idx if idx >= 0 else D.add(d, idx)))
        else:
            _, start, stop, step = it
            if step == 0:
                raise ValueError(at(loc, "slice step cannot be zero"))
            first, length = _slice_bounds(d, start, stop, step)
            maps.append(("range", first, step, len(out)))
            out.append(length)
        k += 1
    return tuple(out), cons, maps


def _slice_infer(types, attrs, loc):
    shape, cons, _ = slice_plan(types[0].shape, attrs["items"], loc)
    return _same_dtype(types, shape, cons)


def _expand_dims_infer(types, attrs, loc):
    shape = list(types[0].shape)
    for a in sorted(attrs["axes"]):
        shape.insert(a, 1)
    return _same_dtype(types, shape)


def _squeeze_infer(types, attrs, loc):
    shape = types[0].shape
    cons = []
    for a in attrs["axes"]:
        d = shape[a]
        if isinstance(d, int) and d != 1:
            raise ValueError(at(loc, f"cannot select an axis to squeeze out which has size not equal to one (axis {a})"))
        if not isinstance(d, int):
            cons.append(Constraint("eq", (d, 1), f"cannot squeeze axis {a} of size {{0}} (must be 1)", loc))
    return _same_dtype(types, [d for k, d in enumerate(shape) if k not in attrs["axes"]], cons)


def _broadcast_to_infer(types, attrs, loc):
    target = tuple(attrs["shape"])
    src = types[0].shape
    if len(src) > len(target):
        raise ValueError(at(loc, "broadcast_to: input has more dimensions than the requested shape"))
    cons = []
    for k, d in enumerate(src):
        t = target[len(target) - len(src) + k]
        if isinstance(d, int) and isinstance(t, int):
            if d != t and d != 1:
                raise ValueError(at(loc, f"operands could not be broadcast to shape {target}"))
        elif not (d == t or d == 1):
            cons.append(Constraint("bcast_to", (d, t), "broadcast_to: size {0} cannot be broadcast to {1}", loc))
    return _same_dtype(types, target, cons)


def _concatenate_infer(types, attrs, loc):
    axis = attrs["axis"]
    rank = types[0].rank
    if any(t.rank != rank for t in types):
        raise ValueError(at(loc, "concatenate: all the input arrays must have the same number of dimensions"))
    dt = np.result_type(*[t.dtype for t in types])
    cons = []
    shape = list(types[0].shape)
    for t in types[1:]:
        for k in range(rank):
            if k == axis:
                continue
            a, b = shape[k], t.shape[k]
            if isinstance(a, int) and isinstance(b, int):
                if a != b:
                    raise ValueError(at(loc, f"concatenate: input sizes along axis {k} differ ({a} vs {b})"))
            elif a != b:
                cons.append(Constraint("eq", (a, b), f"concatenate: input sizes along axis {k} differ ({{0}} vs {{1}})",
                                       loc))
        shape[axis] = D.add(shape[axis], t.shape[axis])
    return Inferred([TensorType(dt, tuple(shape))], cons)


def _slice_reference(x, items):
    key = []
    for it in items:
        key.append(None if it[0] == "n" else it[1] if it[0] == "i" else slice(it[1], it[2], it[3]))
    return x[tuple(key)]


LAYOUT = frozenset({"layout"})
define(OpDef("tensor.transpose", 1, ("perm",), LAYOUT, _transpose_infer,
             lambda x, perm: np.transpose(x, perm)))
define(OpDef("tensor.reshape", 1, ("shape",), LAYOUT, _reshape_infer,
             lambda x, shape: np.reshape(x, shape)))
define(OpDef("tensor.slice", 1, ("items",), LAYOUT, _slice_infer, _slice_reference))
define(OpDef("tensor.expand_dims", 1, ("axes",), LAYOUT, _expand_dims_infer,
             lambda x, axes: np.expand_dims(x, tuple(axes))))
define(OpDef("tensor.squeeze", 1, ("axes",), LAYOUT, _squeeze_infer,
             lambda x, axes: np.squeeze(x, tuple(axes))))
define(OpDef("tensor.broadcast_to", 1, ("shape",), LAYOUT, _broadcast_to_infer,
             lambda x, shape: np.broadcast_to(x, shape)))
define(OpDef("tensor.concatenate", None, ("axis",), LAYOUT, _concatenate_infer,
             lambda *xs, axis: np.concatenate(xs, axis=axis)))
