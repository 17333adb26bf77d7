"""Runs a pipeline of passes, re-verifying the IR after each when asked (tests do), and records timings."""
from __future__ import annotations

import time
from typing import Callable

from prepjit.ir.core import Function
from prepjit.ir.verifier import verify

Pass = Callable[[Function], object]


class PassManager:
    def __init__(self, passes: list[tuple[str, Pass]], verify_each: bool = False):
        self.passes = passes
        self.verify_each = verify_each
        self.timings: dict[str, float] = {}

    def run(self, fn: Function) -> Function:
        for name, p in self.passes:
            t0 = time.perf_counter()
            p(fn)
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0
            if self.verify_each:
                try:
                    verify(fn)
                except Exception as e:
                    raise type(e)(f"after pass {name!r}: {e}") from e
        return fn
