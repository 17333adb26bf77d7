"""The ``func`` dialect: the function boundary."""
from prepjit.ir.core import Inferred, OpDef, define

# ``tree`` records the Python structure of the outputs: "single", "tuple", "list" or a list of dict keys.
define(OpDef("func.return", None, ("tree",), frozenset({"terminator"}),
             infer=lambda types, attrs, loc: Inferred([]), num_results=0))
