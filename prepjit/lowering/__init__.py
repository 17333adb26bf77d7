"""Loop IR and its renderers (LLVM via llvmlite)."""
