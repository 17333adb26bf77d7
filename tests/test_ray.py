"""Columnar batch UDFs, and Ray Data map_batches in a local Ray instance (skipped when ray is not installed)."""
import os
import pickle

import numpy as np
import pytest

import prepjit as pj
from _worker_helpers import image, pair, small_tf


def _object_column(arrays):
    col = np.empty(len(arrays), dtype=object)
    col[:] = arrays
    return col


def test_udf_on_numpy_batches():
    imgs = [image(i) for i in range(5)]
    batch = {"img": _object_column(imgs), "label": np.arange(5)}
    out = small_tf(batch)  # a single-argument function is itself a UDF when the column is named like its argument
    assert set(out) == {"img", "label"} and out["img"].shape == (5, 3, 16, 16)
    np.testing.assert_array_equal(out["img"], small_tf.batch(imgs))
    np.testing.assert_array_equal(out["label"], np.arange(5))
    udf = small_tf.udf(columns=["image"], output="pixels")
    out = udf({"image": _object_column(imgs), "id": np.arange(5)})
    assert set(out) == {"pixels", "id"}
    stacked = np.stack([image(0)[:20, :24]] * 3)  # a stacked (N, H, W, C) column works too
    assert udf({"image": stacked})["pixels"].shape == (3, 3, 16, 16)
    with pytest.raises(KeyError, match=r"no column\(s\) \['image'\]"):
        udf({"img": stacked})
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 6), np.float32), rng.random((4, 6), np.float32)
    out = pair.udf()({"a": a, "b": b, "k": np.arange(4)})  # dict outputs become columns
    assert set(out) == {"s", "m", "k"}
    np.testing.assert_array_equal(out["s"], a + b)
    assert pickle.loads(pickle.dumps(udf)).fn is small_tf
    with pytest.raises(ValueError, match="takes 2 input"):
        pair.udf(columns=["a"])


def test_ray_data_map_batches_local():
    pytest.importorskip("ray")
    import ray
    import ray.data

    small_tf.compile()  # warm the shared cache first: the Ray workers load it
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(os.path.abspath(pj.__file__)))
    env = {"PREPJIT_CACHE_DIR": os.environ["PREPJIT_CACHE_DIR"],
           "PYTHONPATH": os.pathsep.join([here, root, os.environ.get("PYTHONPATH", "")])}
    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=False,
             configure_logging=False)
    try:
        from _worker_helpers import udf_with_stats

        items = [{"image": image(i), "label": i} for i in range(8)]
        ds = ray.data.from_items(items).map_batches(udf_with_stats, batch_format="numpy", batch_size=4)
        rows = sorted(ds.take_all(), key=lambda r: r["label"])
    finally:
        ray.shutdown()
    assert [r["label"] for r in rows] == list(range(8))
    expected = small_tf.batch([image(i) for i in range(8)])
    for r in rows:
        np.testing.assert_array_equal(r["image"], expected[r["label"]])
        assert r["compiles"] == 0 and r["pid"] != os.getpid()
