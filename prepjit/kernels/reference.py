"""Reference semantics for free: an interpreter that runs a Function op by op with each op's NumPy reference.

It evaluates traced *and* optimized IR (fused regions are interpreted recursively), so tests can check that
passes preserve meaning and that native code agrees with the spec.
"""
from __future__ import annotations

import numpy as np

from prepjit.ir.core import Block, Function
from prepjit.ir.func import output_structure
from prepjit.ir.types import TextType


def _run_block(block: Block, args: list) -> list:
    env = dict(zip(block.args, args))
    for op in block.ops:
        if op.opdef.has("terminator"):
            return [env[v] for v in op.operands]
        if op.opdef.has("fused"):
            outs = _run_block(op.regions[0], [env[v] for v in op.operands])
        else:
            with np.errstate(all="ignore"):
                outs = [op.opdef.reference(*[env[v] for v in op.operands], **op.attrs)]
        for r, v in zip(op.results, outs):
            keep = isinstance(v, (bool, int, float)) or isinstance(r.type, TextType)  # text values: Python objects
            env[r] = v if keep else np.asarray(v)
    raise AssertionError("block without terminator")


def interpret(fn: Function, *args):
    """Evaluate ``fn`` on NumPy arrays; returns outputs in the function's structure."""
    outs = _run_block(fn.body, [a if isinstance(a, (bytes, str)) else np.asarray(a) for a in args])
    tree = fn.body.terminator.attrs["tree"]
    return output_structure(tree, outs)
