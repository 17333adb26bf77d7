"""Structural and type checks over a Function. Passes run it in debug mode and tests run it after every pass."""
from __future__ import annotations

from prepjit.errors import VerificationError, at
from prepjit.ir.core import Block, Function, Operation


def _fail(op: Operation, msg: str):
    raise VerificationError(at(op.loc, f"{op.name}: {msg}"))


def _verify_block(block: Block, visible: set, isolated_terminator: str):
    defined = set(visible) | set(block.args)
    if not block.ops:
        raise VerificationError("empty block")
    for i, op in enumerate(block.ops):
        d = op.opdef
        last = i == len(block.ops) - 1
        if d.has("terminator") != last:
            _fail(op, "terminator must be the last op of its block" if not last else "block must end in a terminator")
        if last and op.name != isolated_terminator:
            _fail(op, f"expected {isolated_terminator} to end this block")
        if d.num_operands is not None and len(op.operands) != d.num_operands:
            _fail(op, f"expects {d.num_operands} operands, got {len(op.operands)}")
        for v in op.operands:
            if v not in defined:
                _fail(op, "operand used before its definition (or defined outside an isolated region)")
        missing = [a for a in d.attrs if a not in op.attrs]
        if missing:
            _fail(op, f"missing attribute(s) {missing}")
        if len(op.regions) != d.num_regions:
            _fail(op, f"expects {d.num_regions} regions, got {len(op.regions)}")
        if d.has("fused"):
            region = op.regions[0]
            _verify_block(region, set(), "kernel.yield")
            if [a.type for a in region.args] != [v.type for v in op.operands]:
                _fail(op, "region argument types differ from operand types")
            if [v.type for v in region.terminator.operands] != [r.type for r in op.results]:
                _fail(op, "result types differ from the region's yielded types")
        elif not d.has("terminator"):
            expected = d.infer([v.type for v in op.operands], op.attrs, op.loc).types
            got = [r.type for r in op.results]
            if expected != got:
                _fail(op, f"result types {[str(t) for t in got]} differ from inferred {[str(t) for t in expected]}")
        defined.update(op.results)


def verify(fn: Function) -> None:
    _verify_block(fn.body, set(), "func.return")
