"""Symbolic dimensions.

Compiled code is shape-generic: input sizes are symbols (``s0``, ``s1``, ...) and every other size is a small
expression over them. Expressions are immutable, hash-consed by structure and simplified on construction, so
``s0 + 0`` *is* ``s0`` and equal shapes compare equal. They evaluate in Python (the call prologue computes
output shapes and checks constraints before native code runs) and render to Python source for that prologue.
"""
from __future__ import annotations

from typing import Union

DimLike = Union[int, "Dim"]


class Dim:
    """An integer expression over input size symbols. Never 'truthy': comparing dims at trace time is an error
    unless both sides are constants (then plain ints are used instead of Dim objects)."""

    __slots__ = ("op", "args", "_hash")

    def __init__(self, op: str, args: tuple):
        self.op = op
        self.args = args
        self._hash = hash((op, args))

    # -- structure ----------------------------------------------------------------------------------------
    def __eq__(self, other):  # structural equality (used for hashing / simplification, not symbolic truth)
        return isinstance(other, Dim) and self._hash == other._hash and self.op == other.op and self.args == other.args

    def __hash__(self):
        return self._hash

    def __bool__(self):
        from prepjit.errors import TracingError

        raise TracingError("a dynamic dimension was used in Python control flow; sizes are symbolic while "
                           "tracing (compiled code is shape-generic), so branch on static values only")

    def __index__(self):
        from prepjit.errors import TracingError

        raise TracingError(f"dynamic dimension {self} used where a static int is required")

    def symbols(self) -> set[str]:
        if self.op == "sym":
            return {self.args[0]}
        out: set[str] = set()
        for a in self.args:
            if isinstance(a, Dim):
                out |= a.symbols()
        return out

    # -- arithmetic ---------------------------------------------------------------------------------------
    def __add__(self, o): return add(self, o)
    def __radd__(self, o): return add(o, self)
    def __sub__(self, o): return add(self, mul(o, -1))
    def __rsub__(self, o): return add(o, mul(self, -1))
    def __mul__(self, o): return mul(self, o)
    def __rmul__(self, o): return mul(o, self)
    def __floordiv__(self, o): return floordiv(self, o)
    def __rfloordiv__(self, o): return floordiv(o, self)
    def __mod__(self, o): return mod(self, o)
    def __neg__(self): return mul(self, -1)

    def __repr__(self):
        return to_str(self)


def sym(name: str) -> Dim:
    return Dim("sym", (name,))


def is_static(d: DimLike) -> bool:
    return isinstance(d, int)


def _key(d):
    return (0, d, "") if isinstance(d, int) else (1, 0, to_str(d))


def add(a: DimLike, b: DimLike) -> DimLike:
    terms: list = []
    const = 0
    for x in (a, b):
        if isinstance(x, int):
            const += x
        elif x.op == "add":
            for t in x.args:
                if isinstance(t, int):
                    const += t
                else:
                    terms.append(t)
        else:
            terms.append(x)
    # combine like terms c*x
    coeff: dict = {}
    for t in terms:
        c, base = (t.args[0], t.args[1]) if t.op == "mul" and isinstance(t.args[0], int) and len(t.args) == 2 else (1, t)
        coeff[base] = coeff.get(base, 0) + c
    terms = [mul(c, base) if c != 1 else base for base, c in coeff.items() if c != 0]
    if not terms:
        return const
    if const != 0:
        terms.append(const)
    if len(terms) == 1:
        return terms[0]
    return Dim("add", tuple(sorted(terms, key=_key)))


def mul(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    const = 1
    factors: list = []
    for x in (a, b):
        if isinstance(x, int):
            const *= x
        elif x.op == "mul":
            for f in x.args:
                if isinstance(f, int):
                    const *= f
                else:
                    factors.append(f)
        else:
            factors.append(x)
    if const == 0:
        return 0
    if len(factors) == 1 and factors[0].op == "add" and const != 1:  # distribute constants over sums
        return _fold(add, [mul(const, t) for t in factors[0].args])
    factors.sort(key=_key)
    if const != 1:
        factors.insert(0, const)
    if len(factors) == 1:
        return factors[0]
    return Dim("mul", tuple(factors))


def _fold(fn, xs):
    acc = xs[0]
    for x in xs[1:]:
        acc = fn(acc, x)
    return acc


def floordiv(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b != 0 else 0
    if b == 1:
        return a
    return Dim("floordiv", (a, b))


def mod(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return a % b if b != 0 else 0
    if b == 1:
        return 0
    return Dim("mod", (a, b))


def maximum(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    if a == b:
        return a
    return Dim("max", tuple(sorted((a, b), key=_key)))


def minimum(a: DimLike, b: DimLike) -> DimLike:
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    if a == b:
        return a
    return Dim("min", tuple(sorted((a, b), key=_key)))


def select_eq1(c: DimLike, if_one: DimLike, otherwise: DimLike) -> DimLike:
    """``if_one if c == 1 else otherwise`` (the broadcasting rule)."""
    if isinstance(c, int):
        return if_one if c == 1 else otherwise
    if if_one == otherwise:
        return if_one
    return Dim("ifone", (c, if_one, otherwise))


def broadcast(a: DimLike, b: DimLike) -> DimLike:
    """Result size of broadcasting two sizes (validity is checked separately, see ``broadcast_ok``)."""
    if a == b or b == 1:
        return a
    if a == 1:
        return b
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return select_eq1(a, b, a)


# -- evaluation and rendering -------------------------------------------------------------------------------
def evaluate(d: DimLike, env: dict) -> int:
    if isinstance(d, int):
        return d
    op, args = d.op, d.args
    if op == "sym":
        return env[args[0]]
    vals = [evaluate(a, env) for a in args] if op not in ("ifone", "call") else None
    if op == "add":
        return sum(vals)
    if op == "mul":
        r = 1
        for v in vals:
            r *= v
        return r
    if op == "floordiv":
        return vals[0] // vals[1] if vals[1] else 0
    if op == "mod":
        return vals[0] % vals[1] if vals[1] else 0
    if op == "max":
        return max(vals)
    if op == "min":
        return min(vals)
    if op == "ifone":
        return evaluate(args[1], env) if evaluate(args[0], env) == 1 else evaluate(args[2], env)
    if op == "call":
        return CALLS[args[0]](*[evaluate(a, env) for a in args[1:]])
    raise AssertionError(op)


def _render(d: DimLike, names: dict, sub=None) -> str:
    if isinstance(d, int):
        return repr(d)
    if sub is not None:
        text = sub(d)
        if text is not None:
            return text
    op, a = d.op, d.args
    if op == "sym":
        return a[0]
    if op == "call":
        return f"{a[0]}(" + ", ".join(_render(x, names, sub) for x in a[1:]) + ")"
    if op in ("add", "mul"):
        return "(" + (" + " if op == "add" else " * ").join(_render(x, names, sub) for x in a) + ")"
    return f"{names.get(op, op)}(" + ", ".join(_render(x, names, sub) for x in a) + ")"


_PY_NAMES = {"floordiv": "_fdiv", "mod": "_fmod", "ifone": "_ifone"}


def to_py(d: DimLike, sub=None) -> str:
    """Python source for the expression (symbols are local variables of the generated prologue, which also
    defines ``_fdiv``, ``_fmod`` and ``_ifone``). ``sub(dim)`` may name a sub-expression instead (or None)."""
    return _render(d, _PY_NAMES, sub)


class PyNames:
    """Renders the sizes of one generated prologue, evaluating each size-rule call (``call`` dims, e.g.
    torchvision's resize rule) once: the first use appends ``_sN = call(...)`` to ``lines`` (before the line
    that uses it, which the caller appends next, at the function's top level) and later uses read ``_sN``."""

    def __init__(self, lines: list):
        self.lines = lines
        self.names: dict = {}

    def bind(self, d: DimLike, name: str) -> None:
        """``name`` (a prologue variable) already holds ``d``."""
        if not isinstance(d, int):
            self.names.setdefault(d, name)

    def __call__(self, d: DimLike) -> str:
        return to_py(d, self._sub)

    def _sub(self, d):
        name = self.names.get(d)
        if name is None and d.op == "call":
            text = f"{d.args[0]}(" + ", ".join(self(x) for x in d.args[1:]) + ")"
            name = self.names[d] = f"_s{len(self.names)}"
            self.lines.append(f"    {name} = {text}")
        return name


def to_attr(d: DimLike) -> str:
    """Function-call form used in textual IR attributes and messages; ``parser.parse_dim`` reads it back."""
    return _render(d, {})


to_str = to_attr

PARSE_ENV = {"floordiv": floordiv, "mod": mod, "max": maximum, "min": minimum, "ifone": select_eq1}

# Size rules that are not arithmetic (e.g. torchvision's Resize rule) are named Python functions of ints,
# registered once; expressions call them by name, and the call prologue evaluates them.
CALLS: dict = {}
# The same functions over a NumPy array of sample indices (one value a sample, exactly the scalar function's),
# for a batch's per-sample draws computed at once (prepjit.runtime.batch.uniform_rows); a call without one
# here makes such a batch prepare its rows one by one.
VECTOR_CALLS: dict = {}


def register_call(name: str, fn, vector=None) -> None:
    if not name.isidentifier() or name in PARSE_ENV or name.startswith("_"):
        raise ValueError(f"bad dim function name {name!r}")
    CALLS[name] = fn
    if vector is not None:
        VECTOR_CALLS[name] = vector
    PARSE_ENV[name] = lambda *args, _n=name: call(_n, *args)


def call(name: str, *args: DimLike) -> DimLike:
    if all(isinstance(a, int) for a in args):
        return int(CALLS[name](*args))
    return Dim("call", (name, *args))


def product(dims) -> DimLike:
    r: DimLike = 1
    for d in dims:
        r = mul(r, d)
    return r
