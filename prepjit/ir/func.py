"""The ``func`` dialect: the function boundary."""
from prepjit.ir.core import Inferred, OpDef, define

# ``tree`` records the Python structure of the outputs: "single", "tuple", "list" or a list of dict keys.
define(OpDef("func.return", None, ("tree",), frozenset({"terminator"}),
             infer=lambda types, attrs, loc: Inferred([]), num_results=0))


def output_structure(tree, leaves: list):
    """The outputs ``leaves`` in the Python structure ``tree`` records (a ``func.return`` attribute)."""
    if tree == "single":
        return leaves[0]
    if tree == "tuple":
        return tuple(leaves)
    if tree == "list":
        return list(leaves)
    return dict(zip(tree, leaves))
