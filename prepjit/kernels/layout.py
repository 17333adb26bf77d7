"""Lowering rules for layout ops: each maps an output index vector to operand index vectors (an index map),
so transposes, slices, reshapes, broadcasts and concatenations move no data of their own."""
from __future__ import annotations

from prepjit.ir import dims as D
from prepjit.ir.tensor import slice_plan
from prepjit.lowering.loop_ir import BOOL, Cond, idx, iadd, imul, isub, prim

INDEX_MAPS: dict = {}


def index_map(name):
    def deco(fn):
        INDEX_MAPS[name] = fn
        return fn

    return deco


@index_map("tensor.transpose")
def _transpose(ctx, op, out_idx):
    perm = op.attrs["perm"]
    src = [None] * len(perm)
    for k, p in enumerate(perm):
        src[p] = out_idx[k]
    return ctx.emit(op.operands[0], src)


@index_map("tensor.slice")
def _slice(ctx, op, out_idx):
    _, _, maps = slice_plan(op.operands[0].type.shape, op.attrs["items"], op.loc)
    src = []
    for m in maps:
        if m[0] == "index":
            src.append(ctx.dim(m[1]))
        else:
            _, first, step, axis = m
            src.append(iadd(ctx.dim(first), imul(out_idx[axis], idx(step))))
    return ctx.emit(op.operands[0], src)


@index_map("tensor.expand_dims")
def _expand_dims(ctx, op, out_idx):
    axes = set(op.attrs["axes"])
    return ctx.emit(op.operands[0], [i for k, i in enumerate(out_idx) if k not in axes])


@index_map("tensor.squeeze")
def _squeeze(ctx, op, out_idx):
    axes = set(op.attrs["axes"])
    it = iter(out_idx)
    return ctx.emit(op.operands[0], [idx(0) if k in axes else next(it) for k in range(op.operands[0].type.rank)])


@index_map("tensor.broadcast_to")
def _broadcast_to(ctx, op, out_idx):
    return ctx.emit(op.operands[0], ctx.broadcast_index(op.operands[0].type.shape, op.result.type.shape, out_idx))


@index_map("tensor.reshape")
def _reshape(ctx, op, out_idx):
    """Row-major linearize in the output shape, unravel in the input shape (div/mod by runtime sizes)."""
    in_shape = op.operands[0].type.shape
    out_shape = op.result.type.shape
    if tuple(in_shape) == tuple(out_shape):
        return ctx.emit(op.operands[0], out_idx)
    linear = idx(0)
    for k, i in enumerate(out_idx):
        linear = iadd(linear, imul(i, ctx.dim(D.product(out_shape[k + 1:]))))
    src = []
    for k in range(len(in_shape)):
        stride = D.product(in_shape[k + 1:])
        q = linear if stride == 1 else prim("idiv", linear, ctx.dim(D.maximum(stride, 1)))
        src.append(q if k == 0 else prim("irem", q, ctx.dim(D.maximum(in_shape[k], 1))))
    return ctx.emit(op.operands[0], src)


@index_map("tensor.concatenate")
def _concatenate(ctx, op, out_idx):
    """A chain of lazy selects: only the operand that owns the position is read."""
    axis = op.attrs["axis"]
    i = out_idx[axis]
    starts, offset = [], 0
    for v in op.operands:
        starts.append(offset)
        offset = D.add(offset, v.type.shape[axis])
    dt = op.result.type.dtype
    parts = []
    for v, start in zip(op.operands, starts):
        sub = list(out_idx)
        sub[axis] = isub(i, ctx.dim(start)) if start != 0 else i
        parts.append(ctx.convert(ctx.emit(v, sub), dt))
    expr = parts[-1]
    for k in range(len(parts) - 2, -1, -1):
        end = ctx.dim(starts[k + 1])
        expr = Cond(prim("lt", i, end, dtype=BOOL), parts[k], expr, dt)
    return expr


