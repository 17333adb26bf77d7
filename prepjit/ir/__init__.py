"""The IR: types, values, ops (one file per dialect), printer, parser, verifier."""
from prepjit.ir import func, image, kernel, tensor, text  # noqa: F401  (registers the dialects' ops)
from prepjit.ir.core import OPS, Block, Constraint, Function, Loc, Operation, Value
from prepjit.ir.types import PyScalarType, TensorType

__all__ = ["OPS", "Block", "Constraint", "Function", "Loc", "Operation", "Value", "PyScalarType", "TensorType"]
