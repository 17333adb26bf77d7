"""Constant folding: ops whose operands are all constants are evaluated with their NumPy reference."""
from __future__ import annotations

import numpy as np

from prepjit.compiler.rewrite import apply_rules
from prepjit.ir.core import Function, Operation
from prepjit.ir.types import TensorType

MAX_FOLDED_BYTES = 1 << 20  # don't materialize big broadcasts as constants


def _fold(op: Operation):
    d = op.opdef
    if d.has("constant") or d.has("terminator") or d.reference is None or not op.operands:
        return None
    if not all(v.owner is not None and v.owner.opdef.has("constant") for v in op.operands):
        return None
    t = op.result.type
    if not isinstance(t, TensorType) or not all(isinstance(s, int) for s in t.shape):
        return None
    if int(np.prod(t.shape, dtype=np.int64)) * t.dtype.itemsize > MAX_FOLDED_BYTES:
        return None
    vals = [v.owner.attrs["value"] for v in op.operands]
    with np.errstate(all="ignore"):
        out = np.asarray(d.reference(*vals, **op.attrs))
    assert out.dtype == t.dtype and out.shape == t.shape, (op.name, out.dtype, t)
    new = Operation("tensor.constant", [], [t], {"value": np.array(out, order="C", copy=True)}, op.loc)
    return [new], new.result


def constant_fold(fn: Function) -> bool:
    return apply_rules(fn, {"*": [_fold]})
