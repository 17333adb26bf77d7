"""Shape/type inference: recompute every result type from the argument types (after parsing or rewriting).

Returns the runtime size constraints the ops imply (broadcast compatibility, reshape sizes, ...), which the
call prologue checks before native code runs.
"""
from __future__ import annotations

from prepjit.ir.core import Block, Function


def _infer_block(block: Block, constraints: list) -> None:
    for op in block.ops:
        if op.opdef.has("fused"):
            region = op.regions[0]
            for arg, v in zip(region.args, op.operands):
                arg.type = v.type
            _infer_block(region, constraints)
            for r, y in zip(op.results, region.terminator.operands):
                r.type = y.type
            continue
        if op.opdef.has("terminator"):
            continue
        inferred = op.opdef.infer([v.type for v in op.operands], op.attrs, op.loc)
        for r, t in zip(op.results, inferred.types):
            r.type = t
        constraints.extend(inferred.constraints)


def infer_types(fn: Function) -> list:
    constraints: list = []
    _infer_block(fn.body, constraints)
    # De-duplicate while keeping order (the same check can come from several ops).
    seen, out = set(), []
    for c in constraints:
        k = (c.kind, c.args)
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out
