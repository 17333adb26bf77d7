"""Columnar batch UDFs (Ray Data ``map_batches(..., batch_format="numpy")`` and similar engines).

    ds = ds.map_batches(eval_tf.udf(columns=["image"], output="pixels"), batch_format="numpy")
    ds = ds.map_batches(eval_tf, batch_format="numpy")    # single-argument function, column named like its argument

A batch is a dict of column name → array (ragged columns, such as images of different sizes, are object
arrays of arrays; ``bytes`` columns are object arrays of bytes). The UDF runs ``fn.batch`` over the function's
input columns (default: the columns named like its arguments) and returns the batch with the input columns
replaced by the outputs: dict outputs become columns under their keys, tuple outputs ``<output>_0, ...``, a
single output the column ``output`` (default: the first input column). Other columns (labels, ids) pass
through unchanged.
"""
from __future__ import annotations

import numpy as np


class BatchUDF:
    """Picklable: carries the jit function (by reference or IR, see portable.py) and the column mapping."""

    def __init__(self, fn, columns=None, output: str | None = None, threads: int | None = None):
        self.fn = fn
        self.columns = list(columns) if columns is not None else list(fn.arg_names)
        if len(self.columns) != fn._nargs:
            raise ValueError(f"{fn.name}.udf(): {fn.name} takes {fn._nargs} input(s) {fn.arg_names}, got columns "
                             f"{self.columns}")
        self.output = output if output is not None else self.columns[0]
        self.threads = threads

    def __repr__(self):
        return f"<prepjit batch UDF {self.fn.name}({', '.join(self.columns)}) → {self.output!r}>"

    def __call__(self, batch: dict) -> dict:
        if not isinstance(batch, dict):
            raise TypeError(f"{self.fn.name}.udf(): expected a dict of columns (batch_format='numpy'), got "
                            f"{type(batch).__name__}")
        missing = [c for c in self.columns if c not in batch]
        if missing:
            raise KeyError(f"{self.fn.name}.udf(): batch has no column(s) {missing} (columns: {sorted(batch)}); "
                           f"name them with {self.fn.name}.udf(columns=[...])")
        cols = [_column(batch[c]) for c in self.columns]
        out = self.fn.batch(*cols, threads=self.threads)
        result = {k: v for k, v in batch.items() if k not in self.columns}
        if isinstance(out, dict):
            result.update(out)
        elif isinstance(out, (tuple, list)):
            result.update({f"{self.output}_{i}": v for i, v in enumerate(out)})
        else:
            result[self.output] = out
        return result


def _column(c):
    if isinstance(c, np.ndarray):
        return list(c)  # rows of a stacked column, or the arrays/bytes of an object column
    if isinstance(c, (list, tuple)):
        return list(c)
    raise TypeError(f"batch columns must be arrays or lists, got {type(c).__name__}")
