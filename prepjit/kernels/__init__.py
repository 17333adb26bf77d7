"""Per-op semantics: NumPy references (see prepjit.kernels.reference) and lowering rules to the loop IR."""
