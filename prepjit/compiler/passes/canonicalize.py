"""Canonicalization: algebraic identities that hold bit-for-bit under NumPy semantics."""
from __future__ import annotations

from prepjit.compiler.rewrite import apply_rules
from prepjit.ir.core import Function, Operation
from prepjit.ir.types import PyScalarType


def _same_type_identity(op: Operation):
    x = op.operands[0]
    return x if x.type == op.result.type else None


def _astype_noop(op):
    return _same_type_identity(op)


def _involution(op):
    """-(-x) == x, ~~x == x, not(not(b)) == b (for the same dtype)."""
    (x,) = op.operands
    if x.owner is not None and x.owner.name == op.name and x.owner.operands[0].type == op.result.type:
        return x.owner.operands[0]
    return None


def _multiply_by_one(op):
    a, b = op.operands
    for x, c in ((a, b), (b, a)):
        if isinstance(c.type, PyScalarType) and c.type.value == 1 and not isinstance(c.type.value, bool) \
                and x.type == op.result.type:
            return x
    return None


def _transpose_of_transpose(op):
    (x,) = op.operands
    if x.owner is None or x.owner.name != "tensor.transpose":
        return None
    inner = x.owner.attrs["perm"]
    perm = [inner[p] for p in op.attrs["perm"]]
    src = x.owner.operands[0]
    if perm == list(range(len(perm))):
        return src
    new = Operation("tensor.transpose", [src], [op.result.type], {"perm": perm}, op.loc)
    return [new], new.result


def _reshape_of_reshape(op):
    (x,) = op.operands
    if x.owner is not None and x.owner.name == "tensor.reshape":
        new = Operation("tensor.reshape", [x.owner.operands[0]], [op.result.type], dict(op.attrs), op.loc)
        return [new], new.result
    if x.type.shape == op.result.type.shape:
        return x
    return None


def _crop_of_resample(op):
    """crop_pad(resample(x)) with the resample's full window → one resample computing only the crop window."""
    (x,) = op.operands
    r = x.owner
    if r is None or r.name != "image.resample" or op.attrs.get("fill", 0) != 0:
        return None
    a = r.attrs
    if not (a["top"] == 0 and a["left"] == 0 and a["win_h"] == a["out_h"] and a["win_w"] == a["out_w"]):
        return None
    attrs = dict(a, top=op.attrs["top"], left=op.attrs["left"], win_h=op.attrs["h"], win_w=op.attrs["w"])
    new = Operation("image.resample", [r.operands[0]], [op.result.type], attrs, op.loc)
    return [new], new.result


RULES = {
    "image.crop_pad": [_crop_of_resample],
    "tensor.astype": [_astype_noop],
    "tensor.positive": [_same_type_identity],
    "tensor.broadcast_to": [_same_type_identity],
    "tensor.negative": [_involution],
    "tensor.invert": [_involution],
    "tensor.logical_not": [_involution],
    "tensor.multiply": [_multiply_by_one],
    "tensor.transpose": [_transpose_of_transpose],
    "tensor.reshape": [_reshape_of_reshape],
}


def canonicalize(fn: Function) -> bool:
    return apply_rules(fn, RULES)
