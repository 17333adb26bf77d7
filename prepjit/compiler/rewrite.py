"""A greedy pattern-rewrite driver: passes are lists of (op name → rewrite function) rules.

A rule receives an op and returns a replacement Value for its (single) result, a list of new ops ending in
the replacement, or None when it does not apply. Rules run to a fixpoint.
"""
from __future__ import annotations

from typing import Callable

from prepjit.ir.core import Function, Operation, Value

Rule = Callable[[Operation], "Value | tuple[list[Operation], Value] | None"]


def apply_rules(fn: Function, rules: dict[str, list[Rule]], max_iterations: int = 20) -> bool:
    changed_any = False
    for _ in range(max_iterations):
        changed = False
        replace: dict[Value, Value] = {}
        new_ops: list[Operation] = []
        for op in fn.body.ops:
            op.operands = [replace.get(v, v) for v in op.operands]
            result = None
            for rule in (*rules.get(op.name, ()), *rules.get("*", ())):
                result = rule(op)
                if result is not None:
                    break
            if result is None:
                new_ops.append(op)
                continue
            if isinstance(result, tuple):
                extra, value = result
                new_ops.extend(extra)
            else:
                value = result
            replace[op.result] = value
            changed = True
        fn.body.ops = new_ops
        if not changed:
            break
        changed_any = True
    return changed_any
