"""The ``kernel`` dialect: fused regions produced by the fusion pass.

``kernel.fused`` holds one region of tensor ops over its block arguments (the kernel's inputs) and ends in
``kernel.yield``; it becomes exactly one loop nest (one native kernel) when lowered.
"""
from prepjit.ir.core import Inferred, OpDef, define


def _fused_infer(types, attrs, loc):  # result types are those of the region's yield, fixed by the fusion pass
    raise AssertionError("kernel.fused result types come from its region")


define(OpDef("kernel.fused", None, ("kind",), frozenset({"fused"}), infer=_fused_infer, num_regions=1,
             num_results=None))
define(OpDef("kernel.yield", None, (), frozenset({"terminator"}), infer=lambda types, attrs, loc: Inferred([]),
             num_results=0))
