"""Tracing frontend: run the user's function on proxy arrays and record tensor-dialect ops.

Proxies implement Python's operators and NumPy's ``__array_ufunc__`` / ``__array_function__`` protocols, so
ordinary NumPy code traces unchanged. Sizes are symbolic (compiled code is shape-generic); Python control flow
on static values (ranks, dtypes, constants) is unrolled, and control flow on traced values or dynamic sizes
raises a ``TracingError`` that names the user's line.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

import prepjit.ir  # noqa: F401  (registers dialects)
from prepjit.errors import TracingError, UnsupportedError, at
from prepjit.ir import dims as D
from prepjit.ir.core import Block, Function, Loc, Operation, Value
from prepjit.ir.tensor import UFUNC_OPS
from prepjit.ir.types import BYTES, PyScalarType, TensorType, check_dtype

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUMPY_DIR = os.path.dirname(np.__file__)


def user_loc() -> Loc:
    """The innermost stack frame that is neither prepjit's nor NumPy's: the user's line."""
    f = sys._getframe(1)
    while f is not None:
        fname = f.f_code.co_filename
        if not (fname.startswith(_PKG_DIR) or fname.startswith(_NUMPY_DIR) or fname.startswith("<__array_function__")):
            return Loc(fname, f.f_lineno)
        f = f.f_back
    return Loc("unknown", 0)


class _Recorder:
    """Appends ops to the block being traced; one per trace (``Traced`` values point at it)."""

    def __init__(self):
        self.block = Block()
        self.const_cache: dict = {}
        self.n_syms = 0

    def fresh_sym(self) -> str:
        """A new size symbol (input sizes, and sizes only known at run time such as a decoded image's)."""
        name = f"s{self.n_syms}"
        self.n_syms += 1
        return name

    def emit(self, name: str, operands, attrs=None, loc=None) -> Value:
        from prepjit.ir.core import OPS

        loc = loc or user_loc()
        types = [v.type for v in operands]
        inferred = OPS[name].infer(types, attrs or {}, loc)
        op = Operation(name, operands, inferred.types, attrs, loc)
        self.block.ops.append(op)
        return op.result


_current: list[_Recorder] = []


def _recorder() -> _Recorder:
    if not _current:
        raise TracingError("a traced value was used outside of its trace (do not store traced values globally)")
    return _current[-1]


# -- operand conversion ---------------------------------------------------------------------------------------
def _as_value(x, what="operand") -> Value:
    """Traced → its value; NumPy array / scalar / list → captured constant; Python scalar → weak constant."""
    if isinstance(x, Traced):
        return x._value
    rec = _recorder()
    if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
        key = (type(x), repr(x))
        if key not in rec.const_cache:
            rec.const_cache[key] = rec.emit("tensor.pyconst", [], {"value": x})
        return rec.const_cache[key]
    if isinstance(x, (np.ndarray, np.generic, list, tuple)):
        arr = np.asarray(x)
        if arr.dtype == object:
            raise UnsupportedError(at(user_loc(), f"cannot capture {what} of type {type(x).__name__} as a constant"))
        try:
            check_dtype(arr.dtype)
        except TypeError as e:
            raise UnsupportedError(at(user_loc(), f"captured constant: {e}")) from None
        key = ("arr", arr.dtype.str, arr.shape, arr.tobytes())
        if key not in rec.const_cache:
            rec.const_cache[key] = rec.emit("tensor.constant", [], {"value": np.array(arr, order="C", copy=True)})
        return rec.const_cache[key]
    if isinstance(x, SymSize):
        raise UnsupportedError(at(user_loc(), "a dynamic size cannot be used as an array value"))
    raise UnsupportedError(at(user_loc(), f"cannot use a {type(x).__name__} as an array {what}"))


def _wrap(v: Value) -> "Traced":
    return Traced(v)


def _emit(name, operands, attrs=None) -> "Traced":
    return _wrap(_recorder().emit(name, [_as_value(o) for o in operands], attrs))


# -- sizes ----------------------------------------------------------------------------------------------------
class SymSize:
    """A dynamic size seen by user code (``x.shape[0]``): usable in arithmetic and as a shape, never in ``if``."""

    __slots__ = ("dim",)

    def __init__(self, dim):
        self.dim = dim

    def _err(self, *_):
        raise TracingError(at(user_loc(), "a dynamic array size was used in Python control flow or as a Python int; "
                                          "sizes are symbolic while tracing (compiled code works for every size). "
                                          "Branch on static values only (ndim, dtype, constants)"))

    __bool__ = __index__ = __int__ = __float__ = __lt__ = __le__ = __gt__ = __ge__ = _err

    def __eq__(self, other):
        self._err()

    def __ne__(self, other):
        self._err()

    __hash__ = None

    def _bin(self, other, fn):
        o = other.dim if isinstance(other, SymSize) else other
        if not isinstance(o, (int, D.Dim)) or isinstance(o, bool):
            return NotImplemented
        return size(fn(self.dim, o))

    def __add__(self, o): return self._bin(o, D.add)
    def __radd__(self, o): return self._bin(o, D.add)
    def __mul__(self, o): return self._bin(o, D.mul)
    def __rmul__(self, o): return self._bin(o, D.mul)
    def __sub__(self, o): return self._bin(o, lambda a, b: D.add(a, D.mul(b, -1)))
    def __rsub__(self, o): return self._bin(o, lambda a, b: D.add(b, D.mul(a, -1)))
    def __floordiv__(self, o): return self._bin(o, D.floordiv)

    def __repr__(self):
        return f"SymSize({D.to_str(self.dim)})"


def size(d):
    return d if isinstance(d, int) else SymSize(d)


def _unsize(d):
    if isinstance(d, SymSize):
        return d.dim
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
        return int(d)
    raise UnsupportedError(at(user_loc(), f"expected an int or array size, got {type(d).__name__}"))


def _norm_axis(axis, rank, what="axis"):
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise UnsupportedError(at(user_loc(), f"{what} must be a static int, got {axis!r}"))
    if not -rank <= axis < rank:
        raise np.exceptions.AxisError(at(user_loc(), f"{what} {axis} is out of bounds for array of dimension {rank}"))
    return int(axis) % rank


def _norm_axes(axis, rank):
    if axis is None:
        return list(range(rank))
    if isinstance(axis, (tuple, list)):
        axes = sorted({_norm_axis(a, rank) for a in axis})
        if len(axes) != len(axis):
            raise ValueError(at(user_loc(), "duplicate value in 'axis'"))
        return axes
    return [_norm_axis(axis, rank)]


# -- the proxy ------------------------------------------------------------------------------------------------
class Traced:
    """A traced array. Behaves like a NumPy array of symbolic shape inside ``@jit_preprocess`` functions."""

    __slots__ = ("_value",)
    __array_priority__ = 1000

    def __init__(self, value: Value):
        self._value = value

    # properties
    @property
    def dtype(self) -> np.dtype:
        return self._value.type.dtype

    @property
    def ndim(self) -> int:
        return self._value.type.rank

    @property
    def shape(self) -> tuple:
        return tuple(size(d) for d in self._value.type.shape)

    @property
    def size(self):
        return size(D.product(self._value.type.shape))

    @property
    def T(self):
        return self.transpose()

    def __repr__(self):
        return f"Traced({self._value.type})"

    def __len__(self):
        if not self.ndim:
            raise TypeError("len() of unsized object")
        d = self._value.type.shape[0]
        if isinstance(d, int):
            return d
        SymSize(d)._err()

    def __iter__(self):
        n = len(self)
        return (self[i] for i in range(n))

    def __bool__(self):
        raise TracingError(at(user_loc(), "the truth value of a traced array is not known while tracing: Python "
                                          "`if`/`while`/`and`/`or` on array values cannot be compiled. "
                                          "Use np.where(cond, a, b) for data-dependent choices"))

    def __int__(self):
        raise TracingError(at(user_loc(), "a traced array cannot be converted to a Python number while tracing"))

    __float__ = __index__ = __complex__ = __int__

    def __array__(self, *args, **kwargs):
        raise TracingError(at(user_loc(), "a traced array cannot be converted to a concrete NumPy array while "
                                          "tracing (np.asarray/np.array on traced values are not compilable)"))

    # numpy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = f"np.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        if method != "__call__":
            raise UnsupportedError(at(user_loc(), f"{name} is not supported by prepjit"))
        if kwargs:
            raise UnsupportedError(at(user_loc(), f"{name}: keyword arguments {sorted(kwargs)} are not supported"))
        if ufunc is np.power:
            return _power(*inputs)
        if ufunc not in UFUNC_OPS:
            raise UnsupportedError(at(user_loc(), f"{name} is not supported by prepjit"))
        return _emit(UFUNC_OPS[ufunc], inputs)

    def __array_function__(self, func, types, args, kwargs):
        impl = ARRAY_FUNCTIONS.get(func)
        if impl is None:
            raise UnsupportedError(at(user_loc(), f"np.{func.__name__} is not supported by prepjit"))
        return impl(*args, **kwargs)

    # operators
    def __add__(self, o): return np.add(self, o)
    def __radd__(self, o): return np.add(o, self)
    def __sub__(self, o): return np.subtract(self, o)
    def __rsub__(self, o): return np.subtract(o, self)
    def __mul__(self, o): return np.multiply(self, o)
    def __rmul__(self, o): return np.multiply(o, self)
    def __truediv__(self, o): return np.divide(self, o)
    def __rtruediv__(self, o): return np.divide(o, self)
    def __floordiv__(self, o): return np.floor_divide(self, o)
    def __rfloordiv__(self, o): return np.floor_divide(o, self)
    def __mod__(self, o): return np.remainder(self, o)
    def __rmod__(self, o): return np.remainder(o, self)
    def __pow__(self, o):
        if type(o) is int and o == 2 and self.dtype == np.bool_:  # ndarray.__pow__'s fast path: np.square (int8)
            return np.square(self)
        return np.power(self, o)

    def __rpow__(self, o): return np.power(o, self)
    def __neg__(self): return np.negative(self)
    def __pos__(self): return np.positive(self)
    def __abs__(self): return np.absolute(self)
    def __invert__(self): return np.invert(self)
    def __and__(self, o): return np.bitwise_and(self, o)
    def __rand__(self, o): return np.bitwise_and(o, self)
    def __or__(self, o): return np.bitwise_or(self, o)
    def __ror__(self, o): return np.bitwise_or(o, self)
    def __xor__(self, o): return np.bitwise_xor(self, o)
    def __rxor__(self, o): return np.bitwise_xor(o, self)
    def __lt__(self, o): return np.less(self, o)
    def __le__(self, o): return np.less_equal(self, o)
    def __gt__(self, o): return np.greater(self, o)
    def __ge__(self, o): return np.greater_equal(self, o)
    def __eq__(self, o): return np.equal(self, o)  # noqa: PLR0124
    def __ne__(self, o): return np.not_equal(self, o)
    __hash__ = None

    # methods
    def astype(self, dtype, copy=True):
        return _emit("tensor.astype", [self], {"dtype": _dtype_arg(dtype)})

    def copy(self):
        return self

    def reshape(self, *shape, order="C"):
        return _reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape, order)

    def transpose(self, *axes):
        return _transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    def ravel(self, order="C"):
        return _reshape(self, (-1,), order)

    flatten = ravel

    def squeeze(self, axis=None):
        return _squeeze(self, axis)

    def swapaxes(self, axis1, axis2):
        return _swapaxes(self, axis1, axis2)

    def clip(self, min=None, max=None):
        return _clip(self, min, max)

    def round(self, decimals=0):
        return _round(self, decimals)

    def __getitem__(self, key):
        return _getitem(self, key)

    def sum(self, axis=None, dtype=None, keepdims=False): return _reduce("sum", self, axis, dtype, keepdims)
    def mean(self, axis=None, dtype=None, keepdims=False): return _reduce("mean", self, axis, dtype, keepdims)
    def max(self, axis=None, keepdims=False): return _reduce("max", self, axis, None, keepdims)
    def min(self, axis=None, keepdims=False): return _reduce("min", self, axis, None, keepdims)
    def prod(self, axis=None, dtype=None, keepdims=False): return _reduce("prod", self, axis, dtype, keepdims)
    def any(self, axis=None, keepdims=False): return _reduce("any", self, axis, None, keepdims)
    def all(self, axis=None, keepdims=False): return _reduce("all", self, axis, None, keepdims)


def _dtype_arg(dtype):
    try:
        return check_dtype(dtype)
    except TypeError as e:
        raise UnsupportedError(at(user_loc(), str(e))) from None


def _traced(x) -> Traced:
    return x if isinstance(x, Traced) else _wrap(_as_value(x))


# -- op implementations ---------------------------------------------------------------------------------------
def _power(base, exponent):
    """np.power: NumPy's own fast paths for scalar exponents (square, sqrt, reciprocal) and exact integer powers."""
    b = _traced(base)
    if isinstance(exponent, Traced) or not isinstance(exponent, (int, float, np.number)):
        raise UnsupportedError(at(user_loc(), "np.power / ** is supported with a scalar exponent only"))
    e = exponent.item() if isinstance(exponent, np.generic) else exponent
    dt = _emit("tensor.power", [b, exponent]).dtype  # NEP 50 result dtype (and its errors); the op itself is dead
    x = b.astype(dt) if dt != b.dtype else b
    if dt.kind == "f" and e in (2, 0.5, -1, 1, 0) and not isinstance(e, bool):
        if e == 2:
            return np.square(x)
        if e == 0.5:
            return np.sqrt(x)
        if e == -1:
            return np.reciprocal(x)
        if e == 1:
            return np.positive(x)
        return np.ones_like(x)
    if dt.kind in "iu" and isinstance(e, (int, np.integer)) and not isinstance(e, (bool, np.bool_)) and e >= 0:
        return _emit("tensor.power", [x, int(e)])  # integer power: exact repeated squaring, lowered
    raise UnsupportedError(at(user_loc(), f"np.power with exponent {e!r} on {b.dtype} is not supported "
                                          "(supported: float ** 2, 0.5, -1, 1, 0, and integer ** non-negative int)"))


def _reshape(x, shape, order="C"):
    if order != "C":
        raise UnsupportedError(at(user_loc(), "reshape: only order='C' is supported"))
    if isinstance(shape, (int, np.integer, SymSize)):
        shape = (shape,)
    return _emit("tensor.reshape", [x], {"shape": [_unsize(d) for d in shape]})


def _transpose(x, axes=None):
    x = _traced(x)
    rank = x.ndim
    perm = list(range(rank))[::-1] if axes is None else [_norm_axis(a, rank) for a in axes]
    if sorted(perm) != list(range(rank)):
        raise ValueError(at(user_loc(), f"axes {tuple(axes)} don't match array of dimension {rank}"))
    if perm == list(range(rank)):
        return x
    return _emit("tensor.transpose", [x], {"perm": perm})


def _swapaxes(x, a, b):
    x = _traced(x)
    perm = list(range(x.ndim))
    a, b = _norm_axis(a, x.ndim), _norm_axis(b, x.ndim)
    perm[a], perm[b] = perm[b], perm[a]
    return _transpose(x, perm)


def _moveaxis(x, source, destination):
    x = _traced(x)
    src = _norm_axis(source, x.ndim)
    dst = _norm_axis(destination, x.ndim)
    order = [k for k in range(x.ndim) if k != src]
    order.insert(dst, src)
    return _transpose(x, order)


def _squeeze(x, axis=None):
    x = _traced(x)
    shape = x._value.type.shape
    if axis is None:
        if not all(isinstance(d, int) for d in shape):
            raise UnsupportedError(at(user_loc(), "squeeze() without axis= depends on which sizes are 1 at run time, "
                                                  "but prepjit compiles one function for every size: pass "
                                                  "axis=, or declare static sizes with signature="))
        axes = [k for k, d in enumerate(shape) if d == 1]
    else:
        axes = _norm_axes(axis, x.ndim)
    if not axes:
        return x
    return _emit("tensor.squeeze", [x], {"axes": axes})


def _expand_dims(x, axis):
    x = _traced(x)
    n = x.ndim + (len(axis) if isinstance(axis, (tuple, list)) else 1)
    axes = _norm_axes(axis, n)
    return _emit("tensor.expand_dims", [x], {"axes": axes})


def _broadcast_to(x, shape):
    if isinstance(shape, (int, np.integer, SymSize)):
        shape = (shape,)
    return _emit("tensor.broadcast_to", [_traced(x)], {"shape": [_unsize(d) for d in shape]})


def _clip(x, a_min=None, a_max=None, **kwargs):
    if kwargs:
        kmin, kmax = kwargs.pop("min", None), kwargs.pop("max", None)
        a_min = kmin if a_min is None else a_min
        a_max = kmax if a_max is None else a_max
        if kwargs:
            raise UnsupportedError(at(user_loc(), f"np.clip: keyword arguments {sorted(kwargs)} are not supported"))
    if isinstance(x, Traced) and x.dtype.kind in "iu":  # as NumPy: Python int bounds beyond the dtype drop out
        info = np.iinfo(x.dtype)
        if type(a_min) is int and a_min <= info.min:
            a_min = None
        if type(a_max) is int and a_max >= info.max:
            a_max = None
    if a_min is None and a_max is None:
        return np.positive(x)
    if a_min is None:
        return np.minimum(x, a_max)
    if a_max is None:
        return np.maximum(x, a_min)
    return _emit("tensor.clip", [x, a_min, a_max])


def _where(cond, x=None, y=None):
    if x is None or y is None:
        raise UnsupportedError(at(user_loc(), "np.where with one argument (nonzero) has a data-dependent shape "
                                              "and is not supported"))
    return _emit("tensor.where", [cond, x, y])


def _round(x, decimals=0, out=None):
    if out is not None:
        raise UnsupportedError(at(user_loc(), "np.round: out= is not supported"))
    if not isinstance(decimals, (int, np.integer)):
        raise UnsupportedError(at(user_loc(), "np.round: decimals must be a static int"))
    return _emit("tensor.round", [x], {"decimals": int(decimals)})


def _reduce(name, x, axis=None, dtype=None, keepdims=False, out=None, **kwargs):
    if out is not None or kwargs.get("where") is not None or kwargs.get("initial") is not None:
        raise UnsupportedError(at(user_loc(), f"np.{name}: out=/where=/initial= are not supported"))
    x = _traced(x)
    attrs = {"axes": _norm_axes(axis, x.ndim), "keepdims": bool(keepdims)}
    if dtype is not None:
        attrs["dtype"] = _dtype_arg(dtype)
    return _emit(f"tensor.{name}", [x], attrs)


def _concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    if out is not None or dtype is not None:
        raise UnsupportedError(at(user_loc(), "np.concatenate: out=/dtype= are not supported"))
    xs = [_traced(a) for a in arrays]
    if not xs:
        raise ValueError(at(user_loc(), "need at least one array to concatenate"))
    if axis is None:
        xs, axis = [a.ravel() for a in xs], 0
    if xs[0].ndim == 0:
        raise ValueError(at(user_loc(), "zero-dimensional arrays cannot be concatenated"))
    if len(xs) == 1:
        return xs[0]
    return _emit("tensor.concatenate", xs, {"axis": _norm_axis(axis, xs[0].ndim)})


def _stack(arrays, axis=0, out=None):
    xs = [_traced(a) for a in arrays]
    if not xs:
        raise ValueError(at(user_loc(), "need at least one array to stack"))
    ax = _norm_axis(axis, xs[0].ndim + 1)
    return _concatenate([_expand_dims(a, ax) for a in xs], axis=ax)


def _hstack(arrays):
    xs = [_traced(a) for a in arrays]
    return _concatenate(xs, axis=0 if xs and xs[0].ndim == 1 else 1)


def _vstack(arrays):
    xs = [_traced(a) for a in arrays]
    xs = [a.reshape(1, -1) if a.ndim == 1 else a for a in xs]
    return _concatenate(xs, axis=0)


def _flip(x, axis=None):
    x = _traced(x)
    axes = _norm_axes(axis, x.ndim)
    return x[tuple(slice(None, None, -1) if k in axes else slice(None) for k in range(x.ndim))]


def _full_like(x, fill_value, dtype=None):
    x = _traced(x)
    dt = _dtype_arg(dtype) if dtype is not None else x.dtype
    if isinstance(fill_value, (Traced, SymSize)):
        raise UnsupportedError(at(user_loc(), "full_like: the fill value must be a constant"))
    value = np.empty((), dt)
    with np.errstate(all="ignore"):
        np.copyto(value, fill_value, casting="unsafe")  # as np.full_like does (nan -> int is a C cast)
    return _broadcast_to(value, x.shape)


def _getitem(x: Traced, key):
    if not isinstance(key, tuple):
        key = (key,)
    if any(isinstance(k, (Traced, np.ndarray, list)) or (isinstance(k, (bool, np.bool_))) for k in key):
        raise UnsupportedError(at(user_loc(), "boolean and integer-array (fancy) indexing have data-dependent "
                                              "or gathered shapes and are not supported; use np.where"))
    n_real = sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(at(user_loc(), f"too many indices for array: array is {x.ndim}-dimensional, "
                                        f"but {n_real} were indexed"))
    if sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError(at(user_loc(), "an index can only have a single ellipsis ('...')"))
    items = []
    for k in key:
        if k is Ellipsis:
            items.extend([("s", None, None, 1)] * (x.ndim - n_real))
        elif k is None:
            items.append(("n",))
        elif isinstance(k, slice):
            parts = []
            for p in (k.start, k.stop, k.step):
                if p is not None and (isinstance(p, (SymSize, Traced)) or not isinstance(p, (int, np.integer))):
                    raise UnsupportedError(at(user_loc(), "slice bounds must be static ints or None"))
                parts.append(None if p is None else int(p))
            items.append(("s", parts[0], parts[1], 1 if parts[2] is None else parts[2]))
        elif isinstance(k, (int, np.integer)):
            items.append(("i", int(k)))
        elif isinstance(k, SymSize):
            raise UnsupportedError(at(user_loc(), "indexing with a dynamic size is not supported"))
        else:
            raise UnsupportedError(at(user_loc(), f"unsupported index {k!r}"))
    real = sum(1 for it in items if it[0] != "n")
    items.extend([("s", None, None, 1)] * (x.ndim - real))
    if all(it == ("s", None, None, 1) for it in items):
        return x
    return _emit("tensor.slice", [x], {"items": [list(it) for it in items]})


def _reduce_fn(name):
    def impl(a, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        if name in ("max", "min", "any", "all"):
            if dtype is not None:
                raise UnsupportedError(at(user_loc(), f"np.{name}: dtype= is not supported"))
        return _reduce(name, a, axis, dtype, keepdims, out, **kwargs)

    return impl


ARRAY_FUNCTIONS = {
    np.where: _where,
    np.clip: _clip,
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.hstack: _hstack,
    np.vstack: _vstack,
    np.reshape: lambda a, shape=None, order="C", **kw: _reshape(_traced(a), kw.get("newshape", shape), order),
    np.transpose: lambda a, axes=None: _transpose(a, axes),
    np.swapaxes: _swapaxes,
    np.moveaxis: _moveaxis,
    np.squeeze: _squeeze,
    np.expand_dims: _expand_dims,
    np.broadcast_to: lambda array, shape, subok=False: _broadcast_to(array, shape),
    np.ravel: lambda a, order="C": _reshape(_traced(a), (-1,), order),
    np.flip: _flip,
    np.round: _round,
    np.around: _round,
    np.copy: lambda a, order="K", subok=False: _traced(a),
    np.zeros_like: lambda a, dtype=None, **kw: _full_like(a, 0, dtype),
    np.ones_like: lambda a, dtype=None, **kw: _full_like(a, 1, dtype),
    np.full_like: lambda a, fill_value, dtype=None, **kw: _full_like(a, fill_value, dtype),
    np.sum: _reduce_fn("sum"),
    np.mean: _reduce_fn("mean"),
    np.max: _reduce_fn("max"),
    np.amax: _reduce_fn("max"),
    np.min: _reduce_fn("min"),
    np.amin: _reduce_fn("min"),
    np.prod: _reduce_fn("prod"),
    np.any: _reduce_fn("any"),
    np.all: _reduce_fn("all"),
    np.ndim: lambda a: _traced(a).ndim,
    np.shape: lambda a: _traced(a).shape,
    np.size: lambda a, axis=None: _traced(a).size if axis is None else _traced(a).shape[axis],
}


# -- entry point ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    dtype: np.dtype | None   # None: encoded bytes (decoded by image.decode)
    shape: tuple | None      # of int | None


BYTES_SPEC = InputSpec(None, None)


class TracedBytes:
    """A bytes argument while tracing: only ``prepjit.image.decode`` consumes it."""

    __slots__ = ("_value",)

    def __init__(self, value: Value):
        self._value = value

    def __repr__(self):
        return "TracedBytes()"

    def __getattr__(self, name):
        raise UnsupportedError(at(user_loc(), f"a bytes argument supports no .{name}; decode it with "
                                              "prepjit.image.decode(data)"))


def trace(fn, specs: list[InputSpec], arg_names: list[str], name: str | None = None) -> Function:
    """Trace ``fn`` on inputs of the given dtypes and (partially static) shapes into a Function."""
    rec = _Recorder()
    args = []
    for spec, an in zip(specs, arg_names):
        if spec.dtype is None:
            args.append(Value(BYTES, name=an))
            continue
        shape = tuple(D.sym(rec.fresh_sym()) if d is None else int(d) for d in spec.shape)
        args.append(Value(TensorType(np.dtype(spec.dtype), shape), name=an))
    rec.block.args = args
    _current.append(rec)
    try:
        out = fn(*[TracedBytes(a) if a.type == BYTES else Traced(a) for a in args])
        if isinstance(out, dict):
            keys = list(out)
            if not all(isinstance(k, str) for k in keys):
                raise UnsupportedError("dict outputs must have str keys")
            tree, leaves = keys, [out[k] for k in keys]
        elif isinstance(out, (tuple, list)):
            tree, leaves = ("tuple" if isinstance(out, tuple) else "list"), list(out)
        else:
            tree, leaves = "single", [out]
        values = []
        for leaf in leaves:
            if leaf is None or isinstance(leaf, (str, bytes, dict, SymSize)):
                raise UnsupportedError(f"the function must return arrays (or a tuple/list/dict of arrays), "
                                       f"got {type(leaf).__name__}")
            if isinstance(leaf, (tuple, list)) and any(isinstance(v, Traced) for v in leaf):
                raise UnsupportedError("nested output containers are not supported; return a flat tuple or dict")
            v = _as_value(leaf, "output")
            if isinstance(v.type, PyScalarType):  # a bare Python number: return it as NumPy would type it
                v = _as_value(np.asarray(v.type.value), "output")
            values.append(v)
        rec.block.ops.append(Operation("func.return", values, [], {"tree": tree}))
    finally:
        _current.pop()
    return Function(name or getattr(fn, "__name__", "fn"), rec.block)
