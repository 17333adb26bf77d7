"""Dead code elimination: drop ops whose results are never used (all ops are pure)."""
from __future__ import annotations

from prepjit.ir.core import Block, Function


def dce_block(block: Block) -> bool:
    live: set = set()
    kept = []
    changed = False
    for op in reversed(block.ops):
        if op.opdef.has("terminator") or any(r in live for r in op.results):
            kept.append(op)
            live.update(op.operands)
        else:
            changed = True
    block.ops = kept[::-1]
    return changed


def dce(fn: Function) -> bool:
    return dce_block(fn.body)
