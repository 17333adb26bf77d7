"""Lowering rules for reductions: accumulator dtype, identity, combine step and final step.

Float sums, products and means accumulate in float64 (then round once to the result dtype): more accurate
than NumPy's pairwise float32 summation, and equal to it within float32 rounding. The combine step may be
reassociated so the loop vectorizes. Integer reductions wrap exactly like NumPy's (order does not matter).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from prepjit.lowering.loop_ir import BOOL, Expr, cast, const, prim

F64 = np.dtype(np.float64)


@dataclass(frozen=True)
class Reducer:
    combine: str                                  # loop-IR primitive
    identity: Callable[[np.dtype], object]        # initial accumulator value for the accumulator dtype
    accumulate_float_in_f64: bool = True
    mean: bool = False
    logical: bool = False

    def acc_dtype(self, out_dtype: np.dtype) -> np.dtype:
        if self.logical:
            return BOOL
        if self.accumulate_float_in_f64 and (out_dtype.kind == "f" or self.mean):
            return F64
        return out_dtype

    def prepare(self, x: Expr, acc_dtype) -> Expr:
        if self.logical:
            return x if x.dtype == BOOL else prim("ne", x, const(0, x.dtype), dtype=BOOL)
        return cast(x, acc_dtype)

    def step(self, acc: Expr, x: Expr) -> Expr:
        op = self.combine
        if op == "add" and acc.dtype.kind == "f":
            op = "add_reassoc"
        if acc.dtype == BOOL and op in ("add", "mul"):
            op = {"add": "or", "mul": "and"}[op]
        return prim(op, acc, x)

    def finish(self, acc: Expr, out_dtype, count: Expr | None) -> Expr:
        if self.mean:
            acc = prim("fdiv", acc, cast(count, acc.dtype))
        return cast(acc, out_dtype)


def _lowest(dt):
    return -np.inf if dt.kind == "f" else (False if dt == BOOL else np.iinfo(dt).min)


def _highest(dt):
    return np.inf if dt.kind == "f" else (True if dt == BOOL else np.iinfo(dt).max)


REDUCERS = {
    "tensor.sum": Reducer("add", lambda dt: 0),
    "tensor.prod": Reducer("mul", lambda dt: 1),
    "tensor.mean": Reducer("add", lambda dt: 0, mean=True),
    "tensor.max": Reducer("max", _lowest, accumulate_float_in_f64=False),
    "tensor.min": Reducer("min", _highest, accumulate_float_in_f64=False),
    "tensor.any": Reducer("or", lambda dt: False, logical=True),
    "tensor.all": Reducer("and", lambda dt: True, logical=True),
}
