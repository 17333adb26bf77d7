"""``fn.collate``: a ready ``collate_fn`` for ``torch.utils.data.DataLoader``.

    loader = DataLoader(ds, batch_size=64, num_workers=4, collate_fn=eval_tf.collate, pin_memory=True)

Each sample is the function's input (one argument) or a tuple of its inputs (several arguments); fields after
the function's arguments (labels, ids, ...) are collated with torch's ``default_collate`` and returned after
the function's output: ``(out, labels)``. The inputs of a batch go through ``fn.batch`` (ragged images in, one
stacked tensor out) and every output comes back as a CPU ``torch.Tensor`` in the function's output structure,
which is what ``DataLoader(pin_memory=True)`` pins (in the main process, on its pinning thread).

Inside a DataLoader worker ``.batch`` runs on one thread (the workers are the parallelism, as torch sets
``torch.set_num_threads(1)`` there); in the main process (``num_workers=0``) it uses every CPU.
``fn.collate.options(threads=..., pin_memory=True)`` overrides both; ``pin_memory=True`` pins the outputs
directly, for ``num_workers=0`` loops that do not use the DataLoader's pinning.
"""
from __future__ import annotations

import warnings


class Collate:
    """Picklable collate function bound to a jit function (pickled by reference or IR, see portable.py)."""

    def __init__(self, fn, threads: int | None = None, pin_memory: bool = False):
        self.fn = fn
        self.threads = threads
        self.pin_memory = pin_memory

    def options(self, threads: int | None = None, pin_memory: bool = False) -> "Collate":
        return Collate(self.fn, threads=threads, pin_memory=pin_memory)

    def __repr__(self):
        return f"<prepjit collate for {self.fn.name} threads={self.threads} pin_memory={self.pin_memory}>"

    def __call__(self, samples):
        import torch
        from torch.utils.data import default_collate, get_worker_info

        samples = list(samples)
        if not samples:
            raise ValueError(f"{self.fn.name}.collate: empty batch")
        n = self.fn._nargs
        if all(isinstance(s, (tuple, list)) for s in samples):
            width = len(samples[0])
            if width < n or any(len(s) != width for s in samples):
                raise TypeError(f"{self.fn.name}.collate: samples must be tuples of the function's {n} input(s) "
                                f"{self.fn.arg_names} (plus optional extra fields such as labels), got lengths "
                                f"{sorted({len(s) for s in samples})}")
            columns = [[s[i] for s in samples] for i in range(n)]
            extras = [default_collate([s[i] for s in samples]) for i in range(n, width)]
        elif n == 1:
            columns, extras = [samples], []
        else:
            raise TypeError(f"{self.fn.name}.collate: {self.fn.name} takes {n} inputs, so each sample must be a "
                            f"tuple ({', '.join(self.fn.arg_names)}, ...), got {type(samples[0]).__name__}")
        threads = self.threads
        if threads is None and get_worker_info() is not None:
            threads = 1
        out = _tensors(self.fn.batch(*columns, threads=threads), torch)
        if self.pin_memory:
            out = _pin(out, torch)
        return (out, *extras) if extras else out


def _tensors(out, torch):
    import numpy as np

    def conv(x):
        return torch.from_numpy(x) if isinstance(x, np.ndarray) else x

    if isinstance(out, dict):
        return {k: conv(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(conv(v) for v in out)
    return conv(out)


_warned_pin = False


def _pin(out, torch):
    global _warned_pin
    if not torch.cuda.is_available():
        if not _warned_pin:
            _warned_pin = True
            warnings.warn("prepjit collate: pin_memory=True but no CUDA device is available; not pinning",
                          stacklevel=3)
        return out
    if isinstance(out, dict):
        return {k: v.pin_memory() for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(v.pin_memory() for v in out)
    return out.pin_memory()
