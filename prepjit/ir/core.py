"""The IR's data structures: values, operations, blocks and functions, plus declarative op definitions.

One mutable node type (``Operation``) whose meaning comes from a registered ``OpDef``: operand count,
attribute names, traits, a type-inference rule and an optional NumPy reference. Dialects (``tensor``,
``func``, ``kernel``) are files that only declare OpDefs; passes are rewrites over these nodes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from prepjit.ir.types import Type


@dataclass(frozen=True, slots=True)
class Loc:
    file: str
    line: int

    def __str__(self):
        return f'loc("{self.file}":{self.line})'


UNKNOWN_LOC = Loc("unknown", 0)


class Value:
    """An SSA value: a block argument (``owner is None``) or the result of an operation."""

    __slots__ = ("type", "owner", "index", "name", "__weakref__")

    def __init__(self, type: Type, owner: "Operation | None" = None, index: int = 0, name: str | None = None):
        self.type = type
        self.owner = owner
        self.index = index
        self.name = name

    def __repr__(self):
        return f"<Value {self.name or ''}: {self.type}>"


@dataclass(frozen=True)
class Constraint:
    """A runtime condition on sizes, checked in Python before native code runs."""

    kind: str          # "bcast" | "eq" | "ge" | "gt" | "divisible"
    args: tuple        # dims (int | Dim)
    message: str       # what went wrong, in the user's terms
    loc: Loc = UNKNOWN_LOC
    error: str = "ValueError"  # the exception NumPy raises for the same problem ("IndexError" for indices)


@dataclass
class Inferred:
    types: list
    constraints: list = field(default_factory=list)


@dataclass(frozen=True)
class OpDef:
    name: str
    num_operands: int | None            # None: variadic
    attrs: tuple = ()                    # required attribute names
    traits: frozenset = frozenset()      # "elementwise", "layout", "reduction", "constant", "terminator", ...
    infer: Callable[..., Inferred] | None = None   # (operand types, attrs, loc) -> Inferred
    reference: Callable[..., Any] | None = None    # NumPy semantics: (*operand values, **attrs) -> value(s)
    num_regions: int = 0
    num_results: int | None = 1          # None: given by the op (e.g. a fused kernel with several outputs)

    def has(self, trait: str) -> bool:
        return trait in self.traits


OPS: dict[str, OpDef] = {}


def define(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name} defined twice")
    OPS[opdef.name] = opdef
    return opdef


class Block:
    """A list of operations with typed arguments; the last op is a terminator."""

    __slots__ = ("args", "ops")

    def __init__(self, args: Sequence[Value] = (), ops: Iterable["Operation"] = ()):
        self.args = list(args)
        self.ops = list(ops)

    @property
    def terminator(self) -> "Operation":
        return self.ops[-1]


class Operation:
    __slots__ = ("opdef", "operands", "attrs", "results", "loc", "regions")

    def __init__(self, name: str, operands: Sequence[Value], result_types: Sequence[Type], attrs: dict | None = None,
                 loc: Loc = UNKNOWN_LOC, regions: Sequence[Block] = ()):
        self.opdef = OPS[name]
        self.operands = list(operands)
        self.attrs = dict(attrs or {})
        self.results = [Value(t, self, i) for i, t in enumerate(result_types)]
        self.loc = loc
        self.regions = list(regions)

    @property
    def name(self) -> str:
        return self.opdef.name

    @property
    def result(self) -> Value:
        (r,) = self.results
        return r

    def __repr__(self):
        return f"<Operation {self.name}>"


class Function:
    """A traced function: one block whose arguments are the inputs, ending in ``func.return``."""

    __slots__ = ("name", "body")

    def __init__(self, name: str, body: Block):
        self.name = name
        self.body = body

    @property
    def inputs(self) -> list[Value]:
        return self.body.args

    @property
    def outputs(self) -> list[Value]:
        return self.body.terminator.operands

    @property
    def ops(self) -> list[Operation]:
        return self.body.ops


def users(block: Block) -> dict[Value, list[Operation]]:
    """Map each value to the operations (in ``block``, including nested regions' parents) that use it."""
    out: dict[Value, list[Operation]] = {}
    for op in block.ops:
        for v in op.operands:
            out.setdefault(v, []).append(op)
    return out


def producers(values) -> list[Operation]:
    """The operations ``values`` are computed from, transitively (block arguments have no producer)."""
    out: list[Operation] = []
    seen: set = set()
    todo = list(values)
    while todo:
        op = todo.pop().owner
        if op is not None and op not in seen:
            seen.add(op)
            out.append(op)
            todo.extend(op.operands)
    return out


def replace_uses(block: Block, old: Value, new: Value) -> None:
    for op in block.ops:
        op.operands = [new if v is old else v for v in op.operands]


def infer(op_name: str, operand_types: list, attrs: dict, loc: Loc = UNKNOWN_LOC) -> Inferred:
    opdef = OPS[op_name]
    return opdef.infer(operand_types, attrs, loc)


def clone_block(block: Block, mapping: dict) -> Block:
    """Copy a block (and nested regions); ``mapping`` maps old values to new ones and is extended."""
    args = []
    for a in block.args:
        na = Value(a.type, name=a.name)
        mapping[a] = na
        args.append(na)
    new = Block(args)
    for op in block.ops:
        regions = [clone_block(r, mapping) for r in op.regions]
        c = Operation(op.name, [mapping.get(v, v) for v in op.operands], [r.type for r in op.results],
                      dict(op.attrs), op.loc, regions)
        mapping.update(zip(op.results, c.results))
        new.ops.append(c)
    return new


def clone_function(fn: Function) -> Function:
    return Function(fn.name, clone_block(fn.body, {}))
