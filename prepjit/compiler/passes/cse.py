"""Common subexpression elimination: ops with the same name, operands and attributes are computed once."""
from __future__ import annotations

from prepjit.ir.core import Function
from prepjit.ir.printer import format_attr


def cse(fn: Function) -> bool:
    seen: dict = {}
    replace: dict = {}
    changed = False
    kept = []
    for op in fn.body.ops:
        op.operands = [replace.get(v, v) for v in op.operands]
        if op.opdef.has("terminator") or op.regions:
            kept.append(op)
            continue
        key = (op.name, tuple(id(v) for v in op.operands),
               tuple((k, format_attr(v)) for k, v in sorted(op.attrs.items())))
        prev = seen.get(key)
        if prev is not None:
            for a, b in zip(op.results, prev.results):
                replace[a] = b
            changed = True
        else:
            seen[key] = op
            kept.append(op)
    fn.body.ops = kept
    return changed
