"""Fusion: group tensor ops into ``kernel.fused`` regions, each of which lowers to one loop nest.

Roots are the values that must exist in memory: function outputs and reduction results. Every root's
producers — elementwise and layout ops — are pulled into its region and recomputed per element, so a chain of
elementwise/broadcast/layout ops becomes one loop with no intermediate arrays. A reduction fuses its producer
chain too. Elementwise outputs with the same shape share one kernel (one pass computes all of them).
A large subexpression needed by several kernels is materialized once instead of being recomputed, and so are
ops marked ``materialize`` (a per-call choice between whole pipelines, whose inputs are read several times).
"""
from __future__ import annotations

from prepjit.ir.core import Block, Function, Operation, Value

RECOMPUTE_LIMIT = 16  # ops in a shared subexpression above which it is stored once instead of recomputed


def _is_leaf(v: Value) -> bool:
    """Values a region reads from memory (or from an immediate) rather than computing."""
    return v.owner is None or v.owner.name == "tensor.constant" or v.owner.opdef.has("host")


def _region_ops(root: Value, roots: set) -> list[Operation]:
    """Ops computing ``root`` from leaves and other roots (unordered set, as a list)."""
    seen: dict[int, Operation] = {}
    stack = [root]
    while stack:
        v = stack.pop()
        op = v.owner
        if op is None or _is_leaf(v) or (v is not root and v in roots) or id(op) in seen:
            continue
        seen[id(op)] = op
        stack.extend(op.operands)
    return list(seen.values())


def _reads(values, roots) -> set:
    return {v for m in values for op in _region_ops(m, roots) for v in op.operands}


def fuse(fn: Function) -> bool:
    ops = fn.body.ops
    position = {id(op): i for i, op in enumerate(ops)}
    outputs = fn.outputs
    roots: set = {v for v in outputs if not _is_leaf(v)}
    roots |= {op.result for op in ops if op.opdef.has("reduction") or op.opdef.has("materialize")}

    # Materialize big subexpressions shared by several kernels (fixpoint: new roots change the regions).
    while True:
        owners: dict[int, set] = {}
        for r in roots:
            for op in _region_ops(r, roots):
                owners.setdefault(id(op), set()).add(r)
        shared = [op for op in ops if len(owners.get(id(op), ())) > 1 and op.results[0] not in roots
                  and not op.opdef.has("constant")]
        new = [op.result for op in shared if len(_region_ops(op.result, roots)) > RECOMPUTE_LIMIT]
        if not new:
            break
        roots.add(new[0])

    # Group same-shape elementwise roots that do not depend on each other, even through other roots.
    deps: dict = {}

    def depends(r) -> set:
        if r not in deps:
            direct = {v for v in _reads([r], roots) if v in roots and v is not r}
            deps[r] = direct.union(*(depends(v) for v in direct))
        return deps[r]

    groups: list[list[Value]] = []
    for r in sorted(roots, key=lambda v: position[id(v.owner)]):
        placed = False
        if not r.owner.opdef.has("reduction"):
            for g in groups:
                if g[0].owner.opdef.has("reduction") or g[0].type.shape != r.type.shape:
                    continue
                if not any(m in depends(r) or r in depends(m) for m in g):
                    g.append(r)
                    placed = True
                    break
        if not placed:
            groups.append([r])

    # Build one kernel.fused op per group.
    replaced: dict[Value, Value] = {}
    kernels: list[tuple[Operation, list[Value]]] = []
    for g in groups:
        region_ops = {id(op): op for m in g for op in _region_ops(m, roots)}
        body_ops = sorted(region_ops.values(), key=lambda op: position[id(op)])
        inputs: list[Value] = []
        for op in body_ops:
            for v in op.operands:
                if (v.owner is None or id(v.owner) not in region_ops) and v not in inputs \
                        and not (v.owner is not None and v.owner.name == "tensor.pyconst"):
                    inputs.append(v)
        mapping: dict[Value, Value] = {}
        block = Block([Value(v.type, name=f"in{k}") for k, v in enumerate(inputs)])
        mapping.update(zip(inputs, block.args))
        for op in body_ops:
            for v in op.operands:  # Python scalars are immediates: clone them into the region
                if v not in mapping and v.owner is not None and v.owner.name == "tensor.pyconst":
                    c = Operation("tensor.pyconst", [], [v.type], dict(v.owner.attrs), v.owner.loc)
                    block.ops.append(c)
                    mapping[v] = c.result
            clone = Operation(op.name, [mapping[v] for v in op.operands], [r.type for r in op.results],
                              dict(op.attrs), op.loc)
            block.ops.append(clone)
            mapping.update(zip(op.results, clone.results))
        block.ops.append(Operation("kernel.yield", [mapping[m] for m in g], []))
        kind = "reduction" if g[0].owner.opdef.has("reduction") else "elementwise"
        kop = Operation("kernel.fused", inputs, [m.type for m in g], {"kind": kind}, g[-1].owner.loc, [block])
        replaced.update(zip(g, kop.results))
        kernels.append((kop, g))

    # Topologically order kernels (a group may read roots produced by kernels that come later in source order).
    done: set = set()
    ordered: list[Operation] = []
    pending = list(kernels)
    while pending:
        for i, (kop, g) in enumerate(pending):
            if all(v not in roots or v in done for v in kop.operands):
                ordered.append(kop)
                done.update(g)
                pending.pop(i)
                break
        else:  # pragma: no cover - would mean a cycle, impossible for a DAG
            raise AssertionError("cyclic kernel dependencies")
    for kop in ordered:
        kop.operands = [replaced.get(v, v) for v in kop.operands]

    leaves = [op for op in ops if op.name == "tensor.constant" or op.opdef.has("host")]
    ret = fn.body.terminator
    ret.operands = [replaced.get(v, v) for v in ret.operands]
    fn.body.ops = leaves + ordered + [ret]
    return True
