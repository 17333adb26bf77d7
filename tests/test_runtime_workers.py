"""Jit functions across processes: pickling, DataLoader workers (fork/spawn/forkserver), fn.collate, fork safety."""
import multiprocessing as mp
import os
import pickle
import threading
import warnings

import numpy as np
import pytest

import prepjit as pj
import prepjit.runtime.portable  # noqa: F401
from _worker_helpers import Images, StatsCollate, call_pickled, image, pair, raw_scale, scale, small_tf

START_METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp.get_all_start_methods()]


# -- pickling -----------------------------------------------------------------------------------------------------
def test_module_level_function_pickles_by_reference():
    assert pickle.loads(pickle.dumps(small_tf)) is small_tf
    assert len(pickle.dumps(small_tf)) < 200
    assert pickle.loads(pickle.dumps(pj.BYTES)) is pj.BYTES


def test_copy_returns_the_function_itself():
    import copy

    @pj.jit_preprocess
    def local(x):
        return x + 1

    assert copy.copy(local) is local and copy.deepcopy({"f": local})["f"] is local


def test_function_bound_under_another_name_is_rewrapped():
    g = pickle.loads(pickle.dumps(scale))
    assert isinstance(g, pj.JitFunction) and g.fn is raw_scale
    x = np.arange(5.0)
    np.testing.assert_array_equal(g(x), x * 3 + 1)


def test_dynamic_function_pickles_by_ir():
    @pj.jit_preprocess
    def local(x):
        return np.sqrt(np.abs(x)) - 1

    with pytest.raises(pickle.PicklingError, match="call it once"):
        pickle.dumps(local)
    x = np.linspace(-4, 4, 9)
    expected = local(x)
    g = pickle.loads(pickle.dumps(local))
    assert "from pickled IR" in repr(g)
    np.testing.assert_array_equal(g(x), expected)
    assert g.stats["compiles"] == 0 and g.stats["disk_hits"] == 1  # same traced IR → same cache key
    with pytest.raises(TypeError, match="cannot trace new ones"):
        g(x.astype(np.float32))
    g2 = pickle.loads(pickle.dumps(g))  # an IR-backed function pickles again
    np.testing.assert_array_equal(g2(x), expected)
    assert g.ir("traced") == local.ir("traced", example=(x,))


def test_dynamic_function_with_signature_pickles_every_declared_specialization():
    @pj.jit_preprocess(signature=[(pj.TensorSpec(np.float32, (None, 3)),), (pj.TensorSpec(np.uint8, (None,)),)])
    def local(x):
        return x * 2

    g = pickle.loads(pickle.dumps(local))  # never called: the declared signatures are traced for the IR
    assert [[pj.runtime.portable.spec_to_text(s) for s in e] for e in g.signature] == [["float32[?,3]"], ["uint8[?]"]]
    np.testing.assert_array_equal(g(np.ones((2, 3), np.float32)), np.full((2, 3), 2, np.float32))
    np.testing.assert_array_equal(g(np.arange(3, dtype=np.uint8)), np.arange(3, dtype=np.uint8) * 2)
    with pytest.raises(TypeError, match="3"):  # static sizes are still checked
        g(np.ones((2, 4), np.float32))


def test_dynamic_function_in_spawned_process():
    @pj.jit_preprocess
    def local(x):
        return np.tanh(x) * 2

    x = np.linspace(-2, 2, 17).astype(np.float32)
    expected = local(x)
    with mp.get_context("spawn").Pool(1) as p:
        out, stats, r = p.apply(call_pickled, (pickle.dumps(local), x))
    np.testing.assert_array_equal(out, expected)
    assert stats["compiles"] == 0 and stats["disk_hits"] == 1 and "pickled IR" in r


# -- collate ------------------------------------------------------------------------------------------------------
def test_collate_single_input_with_labels_and_plain_samples():
    torch = pytest.importorskip("torch")
    imgs = [image(i) for i in range(5)]
    out, labels = small_tf.collate([(im, i) for i, im in enumerate(imgs)])
    assert isinstance(out, torch.Tensor) and out.shape == (5, 3, 16, 16) and out.dtype == torch.float32
    assert torch.equal(labels, torch.arange(5))
    np.testing.assert_array_equal(out.numpy(), small_tf.batch(imgs))
    plain = small_tf.collate(imgs)  # samples that are just the input
    assert torch.equal(plain, out)


def test_collate_multi_input_dict_output():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    samples = [(rng.random(4, np.float32), rng.random(4, np.float32), f"id{i}") for i in range(3)]
    out, ids = pair.collate(samples)
    assert set(out) == {"s", "m"} and all(isinstance(v, torch.Tensor) for v in out.values())
    np.testing.assert_array_equal(out["s"].numpy(), np.stack([a + b for a, b, _ in samples]))
    assert ids == ["id0", "id1", "id2"]
    with pytest.raises(TypeError, match="tuple"):
        pair.collate([np.zeros(4, np.float32)])
    with pytest.raises(TypeError, match="2 input"):
        pair.collate([(np.zeros(4, np.float32),)])


def test_collate_with_dataloader_pin_memory():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that pin_memory has no effect without an accelerator
        batches = list(DataLoader(Images(6), batch_size=3, collate_fn=small_tf.collate, pin_memory=True))
    assert len(batches) == 2
    imgs, labels = batches[0]
    assert imgs.is_pinned() == torch.cuda.is_available()
    np.testing.assert_array_equal(imgs.numpy(), small_tf.batch([image(i) for i in range(3)]))
    assert pickle.loads(pickle.dumps(small_tf.collate)).fn is small_tf


# -- DataLoader workers -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", START_METHODS)
def test_dataloader_workers_with_warm_cache_compile_nothing(method):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    small_tf.compile()  # the parent warms the cache (and, for fork, has the code loaded)
    ds = Images(8)
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=StatsCollate(small_tf),
                        multiprocessing_context=method, timeout=120)
    seen_pids = set()
    for b, (imgs, labels, pid, compiles, disk_hits) in enumerate(loader):
        idx = list(range(4 * b, 4 * b + 4))
        assert torch.equal(labels, torch.tensor(idx))
        np.testing.assert_array_equal(imgs.numpy(), small_tf.batch([image(i) for i in idx]))
        assert compiles == 0, f"worker {pid} compiled"
        if method != "fork":
            assert disk_hits >= 1  # a fresh interpreter loads the object code from disk
        seen_pids.add(pid)
    assert os.getpid() not in seen_pids and len(seen_pids) >= 1


# -- fork safety --------------------------------------------------------------------------------------------------
def _child_uses_functions(q):
    try:
        x = np.linspace(-3, 3, 11)
        a = scale(x)                                       # loaded in the parent before the fork
        b = small_tf.batch([image(i) for i in range(4)], threads=2)   # thread pool re-created in the child
        c = scale(x.astype(np.int32))                      # a new specialization: compile + link in the child
        q.put(("ok", a.tolist(), b.shape, c.tolist(), scale.stats["compiles"]))
    except BaseException as e:  # pragma: no cover - reported to the parent
        q.put(("error", repr(e)))


@pytest.mark.skipif("fork" not in START_METHODS, reason="no fork on this platform")
def test_function_used_before_fork_works_in_child_even_with_locks_held():
    from prepjit.runtime import native, threads

    x = np.linspace(-3, 3, 11)
    scale(x)
    small_tf.batch([image(i) for i in range(4)], threads=2)  # parent has a live thread pool
    # Another thread holds the compiler lock and the pool lock while we fork: without the at-fork handlers the
    # child would wait on them forever.
    held, release = threading.Event(), threading.Event()

    def holder():
        with native._lock, threads._lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    try:
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_child_uses_functions, args=(q,))
        p.start()
    finally:
        release.set()
        t.join()
    result = q.get(timeout=120)
    p.join(30)
    assert result[0] == "ok", result
    assert result[1] == (x * 3 + 1).tolist() and result[2] == (4, 3, 16, 16)
    assert result[3] == (x.astype(np.int32) * 3 + 1).tolist()
    assert result[4] <= 1  # the child's own counter: at most the new int32 specialization


MAIN_SCRIPT = '''
import multiprocessing as mp, pickle, sys
import numpy as np
import prepjit as pj
sys.path.insert(0, {tests!r})
from _worker_helpers import call_pickled

@pj.jit_preprocess
def tf(x):
    return x * 2 + 1

if __name__ == "__main__":
    x = np.arange(4.0)
    tf(x)
    with mp.get_context("spawn").Pool(1) as p:
        out, stats, r = p.apply(call_pickled, (pickle.dumps(tf), x))
    print(out.tolist(), stats["compiles"], r, sep="|")
'''


@pytest.mark.parametrize("how", ["script", "-c"])
def test_main_module_functions_in_spawned_workers(tmp_path, how):
    import subprocess
    import sys

    src = MAIN_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    if how == "script":  # spawn re-imports the script as __mp_main__: pickled by reference
        (tmp_path / "train.py").write_text(src)
        cmd = [sys.executable, "train.py"]
    else:  # no file to re-import: the traced IR travels with the pickle
        cmd = [sys.executable, "-c", src]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    values, compiles, r = out.stdout.strip().splitlines()[-1].split("|")
    assert values == "[1.0, 3.0, 5.0, 7.0]" and compiles == "0"  # the cache is warm: the child compiles nothing
    assert ("pickled IR" in r) == (how == "-c"), r
