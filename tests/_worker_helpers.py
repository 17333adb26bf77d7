"""Module-level pipelines and datasets for the multi-process tests (importable by spawn/forkserver children)."""
import os

import numpy as np

import prepjit as pj
from prepjit import image as I


@pj.jit_preprocess(signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
def small_tf(img):
    x = I.resize(img, 20, antialias=True)
    x = I.center_crop(x, 16)
    x = I.to_dtype(x, np.float32, scale=True)
    return I.to_chw(I.normalize(x, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]))


@pj.jit_preprocess(signature=(pj.TensorSpec(np.float32, (None,)), pj.TensorSpec(np.float32, (None,))))
def pair(a, b):
    return {"s": a + b, "m": np.maximum(a, b).sum()}


def raw_scale(x):
    return x * 3 + 1


scale = pj.jit_preprocess(raw_scale)  # bound under another name: pickles by re-wrapping raw_scale


def image(i):
    rng = np.random.default_rng(i)
    return rng.integers(0, 256, (20 + i % 7, 24 + i % 5, 3), dtype=np.uint8)


class Images:
    """(image, label) samples of varying size."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return image(i), i


class StatsCollate:
    """fn.collate plus what happened inside the worker."""

    def __init__(self, fn):
        self.fn = fn
        self.collate = fn.collate

    def __call__(self, samples):
        imgs, labels = self.collate(samples)
        return imgs, labels, os.getpid(), self.fn.stats["compiles"], self.fn.stats["disk_hits"]


def call_pickled(blob, x):
    """Run in a child: unpickle a jit function, call it, report."""
    import pickle

    fn = pickle.loads(blob)
    return fn(x), dict(fn.stats), repr(fn)


def udf_with_stats(batch):
    """small_tf as a Ray Data UDF, plus the worker's compile counter and pid."""
    out = small_tf.udf(columns=["image"])(batch)
    n = len(out["label"])
    out["compiles"] = np.full(n, small_tf.stats["compiles"])
    out["pid"] = np.full(n, os.getpid())
    return out
