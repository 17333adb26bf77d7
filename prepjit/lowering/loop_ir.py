"""Kernel-level loop IR: the target-neutral form both renderers (LLVM, CUDA C) consume.

A ``Kernel`` has buffer parameters (typed pointers), int64 scalar parameters, and a body of ``For`` /
``If`` / ``Store`` statements over immutable, hash-consed expressions. Expressions use a fixed set of
primitive ops with precise semantics (below); all NumPy-level semantics (promotion, floor division, NaN
handling of maximum, ...) are expressed with these by the per-op rules in ``prepjit.kernels``, so a renderer
only has to implement the primitives.

Primitives (operands already of the result dtype unless noted):
  add sub mul           wrapping for ints, IEEE for floats; ``add_reassoc`` may be reassociated (reductions)
  fdiv                  float division
  idiv irem             integer truncating division/remainder; callers guarantee b != 0 and no overflow
  frem                  C fmod
  neg abs               ints wrap (abs(INT_MIN) == INT_MIN)
  min max               ints: plain; floats: NaN-propagating (NumPy's minimum/maximum)
  fminnum fmaxnum       floats: NaN-ignoring (NumPy's fmin/fmax)
  eq ne lt le gt ge     result bool; float compares are ordered except ``ne``
  and or xor not        bitwise on ints, logical on bool
  shl shr               integer shifts (shr is arithmetic for signed ints); the shift amount is in range
  select                eager choice select(c, a, b); both sides are always safe to evaluate
  cast                  to the node's dtype: to bool is ``!= 0``; float→int follows x86-64 C casts (what NumPy does)
  floor ceil trunc rint sqrt copysign
  fma                   fma(a, b, c) = a * b + c with one rounding (to match libraries compiled with FMA)
  exp expm1 log log1p log2 log10 tanh     float math (vectorizable implementations)
  isnan                 float → bool
``Cond`` is a *lazy* select: only the taken side is evaluated (used where the other side could read out of
bounds, e.g. concatenation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

I64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)


class Expr:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: object
    dtype: np.dtype
    _h: int = field(default=0, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Param(Expr):
    name: str
    dtype: np.dtype = I64
    _h: int = field(default=0, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Var(Expr):
    name: str
    dtype: np.dtype = I64
    _h: int = field(default=0, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Load(Expr):
    buf: str
    indices: tuple   # one index Expr per buffer dim
    strides: tuple   # one stride Expr (elements) per buffer dim
    dtype: np.dtype
    _h: int = field(default=0, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Prim(Expr):
    op: str
    args: tuple
    dtype: np.dtype
    _h: int = field(default=0, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Cond(Expr):
    cond: Expr
    then: Expr
    other: Expr
    dtype: np.dtype
    _h: int = field(default=0, init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Reduce(Expr):
    """A fold: ``acc = init; for var in [0, extent): acc = op(acc, body)``; the value is the final ``acc``.

    Used for variable-length tap sums (resampling filters). ``body`` may use ``var`` and any enclosing value.
    """
    var: str
    extent: Expr
    body: Expr
    init: Expr
    op: str
    dtype: np.dtype
    _h: int = field(default=0, init=False, repr=False, compare=False)


def _cached_hash(self) -> int:
    """Expressions are DAGs with heavy sharing: hash once per node, not once per path."""
    h = self._h
    if not h:
        h = hash((type(self).__name__,) + tuple(getattr(self, f) for f in self._key_fields)) or 1
        object.__setattr__(self, "_h", h)
    return h


def _fast_eq(self, other) -> bool:
    if self is other:
        return True
    if type(self) is not type(other) or hash(self) != hash(other):
        return False
    return _same_dag(self, other)


def _same_dag(a: Expr, b: Expr) -> bool:
    """Structural equality of two expressions in time linear in their nodes: a pair of nodes is compared once,
    however many paths reach it (two separately built copies of a DAG would otherwise be walked path by path)."""
    seen: set = set()
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y or (id(x), id(y)) in seen:
            continue
        if type(x) is not type(y) or hash(x) != hash(y):
            return False
        seen.add((id(x), id(y)))  # (a mismatch anywhere below answers False for the whole comparison)
        for f in x._key_fields:
            u, v = getattr(x, f), getattr(y, f)
            if isinstance(u, Expr):
                stack.append((u, v))
            elif isinstance(u, tuple) and isinstance(v, tuple) and len(u) == len(v) \
                    and any(isinstance(c, Expr) for c in u):
                for c, d in zip(u, v):
                    if isinstance(c, Expr):
                        stack.append((c, d))
                    elif c != d:
                        return False
            elif u != v:
                return False
    return True


for _cls in (Const, Param, Var, Load, Prim, Cond, Reduce):
    _cls._key_fields = tuple(f.name for f in _cls.__dataclass_fields__.values() if f.compare)
    _cls.__hash__ = _cached_hash
    _cls.__eq__ = _fast_eq


class Stmt:
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Store(Stmt):
    buf: str
    indices: tuple
    strides: tuple
    value: Expr


@dataclass(frozen=True, slots=True)
class For(Stmt):
    var: str
    extent: Expr
    body: tuple
    vectorize: bool = True   # False: a short loop (e.g. a filter's taps) the renderer should keep scalar
    # True: ``for r < TILE: for q < TILE: one byte Store`` copying a square tile between a layout contiguous in
    # ``q`` and one contiguous in ``r`` (see ``tile_transpose``); a renderer may do it with vector shuffles
    transpose: bool = False


@dataclass(frozen=True, slots=True)
class If(Stmt):
    cond: Expr
    then: tuple
    other: tuple = ()


@dataclass(frozen=True)
class Buffer:
    name: str
    dtype: np.dtype
    rank: int
    role: str  # "in" | "out" | "temp"


@dataclass
class Kernel:
    name: str
    buffers: list[Buffer]
    params: list[str]
    body: tuple
    meta: dict = field(default_factory=dict)


# -- construction helpers ---------------------------------------------------------------------------------
def const(v, dtype) -> Const:
    dt = np.dtype(dtype)
    return Const(np.array(v).astype(dt).item() if dt != BOOL else bool(v), dt)


def idx(v: int) -> Const:
    return Const(int(v), I64)


def prim(op: str, *args: Expr, dtype=None) -> Expr:
    dt = np.dtype(dtype) if dtype is not None else args[0].dtype
    return Prim(op, tuple(args), dt)


def cast(x: Expr, dtype) -> Expr:
    dt = np.dtype(dtype)
    if x.dtype == dt:
        return x
    if isinstance(x, Const):
        with np.errstate(all="ignore"):
            return Const(np.array(x.value, x.dtype).astype(dt).item(), dt)
    return Prim("cast", (x,), dt)


def select(c: Expr, a: Expr, b: Expr) -> Expr:
    if isinstance(c, Const):
        return a if c.value else b
    if a == b:
        return a
    return Prim("select", (c, a, b), a.dtype)


# Index arithmetic with light folding (keeps generated code and printed IR small).
def iadd(a: Expr, b: Expr) -> Expr:
    if isinstance(a, Const) and a.value == 0:
        return b
    if isinstance(b, Const) and b.value == 0:
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return idx(a.value + b.value)
    return Prim("add", (a, b), I64)


def imul(a: Expr, b: Expr) -> Expr:
    for x, y in ((a, b), (b, a)):
        if isinstance(x, Const):
            if x.value == 0:
                return idx(0)
            if x.value == 1:
                return y
    if isinstance(a, Const) and isinstance(b, Const):
        return idx(a.value * b.value)
    return Prim("mul", (a, b), I64)


def isub(a: Expr, b: Expr) -> Expr:
    if isinstance(b, Const):
        return iadd(a, idx(-b.value))
    return Prim("sub", (a, b), I64)


# -- traversal ------------------------------------------------------------------------------------------------
def children(e: Expr) -> tuple:
    if isinstance(e, Prim):
        return e.args
    if isinstance(e, Load):
        return e.indices + e.strides
    if isinstance(e, Cond):
        return (e.cond, e.then, e.other)
    if isinstance(e, Reduce):
        return (e.extent, e.body, e.init)
    return ()


def map_expr(e: Expr, fn, memo=None) -> Expr:
    """Rebuild ``e`` bottom-up, replacing each node by ``fn(node)`` (return the node to keep it). A node whose
    children are all kept is kept itself: parts a rewrite does not touch stay the same objects, so comparing
    two rewrites of one expression (hash-consing in the renderers) never walks the shared parts twice."""
    memo = {} if memo is None else memo
    hit = memo.get(id(e))  # by identity: (e, its image), e kept alive so its id stays its own
    if hit is not None:
        return hit[1]
    if isinstance(e, Prim):
        args = _mapped(e.args, fn, memo)
        new = e if args is e.args else Prim(e.op, args, e.dtype)
    elif isinstance(e, Load):
        indices, strides = _mapped(e.indices, fn, memo), _mapped(e.strides, fn, memo)
        new = e if indices is e.indices and strides is e.strides else Load(e.buf, indices, strides, e.dtype)
    elif isinstance(e, Cond):
        kids = (e.cond, e.then, e.other)
        parts = _mapped(kids, fn, memo)
        new = e if parts is kids else Cond(*parts, e.dtype)
    elif isinstance(e, Reduce):
        kids = (e.extent, e.body, e.init)
        parts = _mapped(kids, fn, memo)
        new = e if parts is kids else Reduce(e.var, *parts, e.op, e.dtype)
    else:
        new = e
    out = fn(new)
    memo[id(e)] = (e, out)
    return out


def _mapped(items: tuple, fn, memo) -> tuple:
    """``items`` mapped, or ``items`` itself when every one is kept."""
    out = tuple(map_expr(a, fn, memo) for a in items)
    return items if all(a is b for a, b in zip(out, items)) else out


def walk(e: Expr, seen=None):
    seen = set() if seen is None else seen
    if e in seen:
        return
    seen.add(e)
    yield e
    for c in children(e):
        yield from walk(c, seen)


def uses_var(e: Expr, var: str) -> bool:
    return any(isinstance(n, Var) and n.name == var for n in walk(e))


def linear_coeff(e: Expr, var: str):
    """The coefficient ``c`` (an expression free of ``var``) with ``e == c * var + (e at var = 0)``, or None when
    ``e`` is not affine in ``var`` (min/max clamps, loads indexed by it, ...)."""
    if not uses_var(e, var):
        return idx(0)
    if isinstance(e, Var):
        return idx(1)
    if isinstance(e, Prim) and e.dtype == I64 and e.op in ("add", "sub"):
        a, b = (linear_coeff(x, var) for x in e.args)
        if a is None or b is None:
            return None
        return iadd(a, b) if e.op == "add" else isub(a, b)
    if isinstance(e, Prim) and e.dtype == I64 and e.op == "mul":
        x, y = e.args
        if uses_var(x, var) and uses_var(y, var):
            return None
        k, v = (y, x) if uses_var(x, var) else (x, y)
        c = linear_coeff(v, var)
        return None if c is None else imul(k, c)
    return None


def offset_coeff(indices, strides, var: str):
    """``linear_coeff`` of the flat offset ``sum(indices * strides)``."""
    total = idx(0)
    for i, s in zip(indices, strides):
        if uses_var(s, var):
            return None
        c = linear_coeff(i, var)
        if c is None:
            return None
        total = iadd(total, imul(c, s))
    return total


TILE = 16  # the side of a transposed tile: 16 bytes = one SSE vector per row


def tile_transpose(r: str, q: str, store: Store, **for_args) -> For:
    """``for r < TILE: for q < TILE: store`` marked as a tile transposition (``For.transpose``)."""
    return For(r, idx(TILE), (For(q, idx(TILE), (store,)),), transpose=True, **for_args)


# -- printing (MLIR-like, for fn.ir("lowered")) ----------------------------------------------------------------
def _dt(dt) -> str:
    from prepjit.ir.types import dtype_name

    return dtype_name(dt) if dt != I64 else "index"


class _ExprPrinter:
    def __init__(self, lines: list, indent: str, counter: list):
        self.lines = lines
        self.indent = indent
        self.names: dict = {}
        self.counter = counter  # shared by the whole kernel so value names are unique

    def __call__(self, e: Expr) -> str:
        if isinstance(e, Const):
            v = e.value
            return ("true" if v else "false") if e.dtype == BOOL else repr(v)
        if isinstance(e, Param):
            return "%" + e.name
        if isinstance(e, Var):
            return "%" + e.name
        if e in self.names:
            return self.names[e]
        if isinstance(e, Load):
            off = " + ".join(f"{self(i)}*{self(s)}" for i, s in zip(e.indices, e.strides)) or "0"
            text = f"memref.load %{e.buf}[{off}] : {_dt(e.dtype)}"
        elif isinstance(e, Cond):
            text = f"scf.if {self(e.cond)} then {self(e.then)} else {self(e.other)} : {_dt(e.dtype)}"
        elif isinstance(e, Reduce):
            init, ext = self(e.init), self(e.extent)
            outer = self.lines
            inner: list = []
            self.lines = inner
            saved, self.indent = self.indent, self.indent + "  "
            body = self(e.body)
            self.lines, self.indent = outer, saved
            outer.append(f"{self.indent}// fold over %{e.var} in [0, {ext}) with prim.{e.op}, from {init}:")
            outer.extend(inner)
            text = f"scf.reduce prim.{e.op}({body}) : {_dt(e.dtype)}"
        else:
            text = f"prim.{e.op} " + ", ".join(self(a) for a in e.args) + f" : {_dt(e.dtype)}"
        name = f"%v{self.counter[0]}"
        self.counter[0] += 1
        self.names[e] = name
        self.lines.append(f"{self.indent}{name} = {text}")
        return name


def print_stmts(stmts, indent: str, lines: list, counter: list):
    p = _ExprPrinter(lines, indent, counter)  # values printed in this block are visible to its statements
    for s in stmts:
        if isinstance(s, For):
            ext = p(s.extent)
            hint = (" {transpose}" if s.transpose else "") + ("" if s.vectorize else " {scalar}")
            lines.append(f"{indent}scf.for %{s.var} = 0 to {ext}{hint} {{")
            print_stmts(s.body, indent + "  ", lines, counter)
            lines.append(f"{indent}}}")
        elif isinstance(s, If):
            c = p(s.cond)
            lines.append(f"{indent}scf.if {c} {{")
            print_stmts(s.then, indent + "  ", lines, counter)
            if s.other:
                lines.append(f"{indent}}} else {{")
                print_stmts(s.other, indent + "  ", lines, counter)
            lines.append(f"{indent}}}")
        elif isinstance(s, Store):
            v = p(s.value)
            off = " + ".join(f"{p(i)}*{p(st)}" for i, st in zip(s.indices, s.strides)) or "0"
            lines.append(f"{indent}memref.store {v}, %{s.buf}[{off}]")


def print_kernel(k: Kernel) -> str:
    args = ", ".join(f"%{b.name}: memref<{'?x' * b.rank}{_dt(b.dtype)}> ({b.role})" for b in k.buffers)
    params = ", ".join(f"%{p}: index" for p in k.params)
    lines = [f"kernel.func @{k.name}({args}{', ' if params else ''}{params}) {{"]
    print_stmts(k.body, "  ", lines, [0])
    lines.append("}")
    return "\n".join(lines)
