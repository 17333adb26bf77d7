"""MLIR-like textual form of the IR. ``prepjit.ir.parser`` reads it back, so IR can be diffed and round-tripped."""
from __future__ import annotations

import json
import re

import numpy as np

from prepjit.ir import dims as D
from prepjit.ir.core import Block, Function, Operation, Value
from prepjit.ir.types import DTYPE_NAMES, TensorType, dtype_name, format_scalar


def format_type(t) -> str:
    return str(t)


def format_attr(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format_scalar(float(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, D.Dim):
        return f'#dim<"{D.to_attr(v)}">'
    if isinstance(v, np.dtype):
        return dtype_name(v)
    if isinstance(v, type) and np.dtype(v) in DTYPE_NAMES:
        return dtype_name(v)
    if isinstance(v, np.ndarray):
        data = np.ascontiguousarray(v).tobytes().hex()
        return f'dense<"0x{data}"> : {TensorType(v.dtype, v.shape)}'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"cannot print attribute {v!r}")


class _Namer:
    def __init__(self):
        self.names: dict[Value, str] = {}
        self.taken: set[str] = set()
        self.counter = 0

    def define(self, v: Value, hint: str | None = None) -> str:
        if hint:
            base = re.sub(r"\W", "_", hint) or "arg"
            name, k = base, 0
            while name in self.taken:
                k += 1
                name = f"{base}_{k}"
        else:
            while str(self.counter) in self.taken:
                self.counter += 1
            name = str(self.counter)
            self.counter += 1
        self.taken.add(name)
        self.names[v] = "%" + name
        return self.names[v]

    def __getitem__(self, v: Value) -> str:
        return self.names.get(v, "%<undefined>")


def _types(ts) -> str:
    return "(" + ", ".join(format_type(t) for t in ts) + ")"


def _print_op(op: Operation, namer: _Namer, indent: str, lines: list[str], with_locs: bool):
    head = ""
    if op.results:
        head = ", ".join(namer.define(r) for r in op.results) + " = "
    text = indent + head + op.name
    if op.operands:
        text += " " + ", ".join(namer[v] for v in op.operands)
    if op.attrs:
        text += " {" + ", ".join(f"{k} = {format_attr(v)}" for k, v in sorted(op.attrs.items())) + "}"
    if op.regions:
        lines.append(text + " ({")
        for region in op.regions:
            _print_block(region, namer, indent + "  ", lines, with_locs, label=True)
        text = indent + "})"
    res = op.results
    text += f" : {_types(v.type for v in op.operands)} -> "
    text += format_type(res[0].type) if len(res) == 1 else _types(v.type for v in res)
    if with_locs and op.loc.line:
        text += f" {op.loc}"
    lines.append(text)


def _print_block(block: Block, namer: _Namer, indent: str, lines: list[str], with_locs: bool, label: bool):
    if label:
        args = ", ".join(f"{namer.define(a, a.name or 'a')}: {format_type(a.type)}" for a in block.args)
        lines.append(indent[:-2] + f"^bb({args}):")
    for op in block.ops:
        _print_op(op, namer, indent, lines, with_locs)


def print_function(fn: Function, with_locs: bool = True) -> str:
    namer = _Namer()
    args = ", ".join(f"{namer.define(a, a.name or 'arg')}: {format_type(a.type)}" for a in fn.inputs)
    outs = _types(v.type for v in fn.outputs)
    name = re.sub(r"\W", "_", fn.name) or "fn"
    lines = [f"func.func @{name}({args}) -> {outs} {{"]
    _print_block(fn.body, namer, "  ", lines, with_locs, label=False)
    lines.append("}")
    return "\n".join(lines) + "\n"


def canonical_text(fn: Function) -> str:
    """Location-free text: the part of the cache key that identifies the computation."""
    return print_function(fn, with_locs=False)
