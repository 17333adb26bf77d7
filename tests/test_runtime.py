"""Runtime behaviour: disk cache across processes, corruption, unwritable dirs, concurrency, torch, errors, CLI."""
import multiprocessing as mp
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import prepjit as pj
from prepjit.runtime.cache import CompileCache

MODULE = textwrap.dedent('''
    import numpy as np
    import prepjit as pj

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.float32, (None,)),))
    def feat(x):
        y = np.clip((x - 3.0) / 2.0, -5.0, 5.0)
        return np.log1p(np.abs(y)) * np.sign(y) + np.where(x > 0, 1.0, 0.0)
''')

RUN = textwrap.dedent('''
    import json, sys, warnings
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import featmod
        x = np.linspace(-9, 9, 1001, dtype=np.float32)
        out = featmod.feat(x)
    ok = bool(np.allclose(out, featmod.feat.fn(x), rtol=1e-6, atol=1e-6))
    print(json.dumps({"stats": featmod.feat.stats, "ok": ok, "warnings": [str(w.message) for w in caught]}))
''')


def _env(cache_dir):
    env = dict(os.environ)
    env["PREPJIT_CACHE_DIR"] = str(cache_dir)
    return env


def _run_fresh(tmp_path, cache_dir):
    import json

    (tmp_path / "featmod.py").write_text(MODULE)
    script = tmp_path / "run.py"
    script.write_text(RUN)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], env=_env(cache_dir), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_hit_in_fresh_process(tmp_path):
    cache = tmp_path / "cache"
    first = _run_fresh(tmp_path, cache)
    assert first["ok"] and first["stats"]["compiles"] == 1 and first["stats"]["disk_hits"] == 0
    second = _run_fresh(tmp_path, cache)
    assert second["ok"] and second["stats"]["compiles"] == 0 and second["stats"]["disk_hits"] == 1
    assert CompileCache(cache).info()["entries"] == 1


def test_corrupted_entry_is_detected_recompiled_and_overwritten(tmp_path):
    cache = tmp_path / "cache"
    _run_fresh(tmp_path, cache)
    (entry,) = list(cache.rglob("*.pjc"))
    data = bytearray(entry.read_bytes())
    data[-100] ^= 0xFF  # flip a byte of the object code
    entry.write_bytes(bytes(data))
    run = _run_fresh(tmp_path, cache)
    assert run["ok"] and run["stats"]["compiles"] == 1
    assert any("corrupt" in w.lower() or "checksum" in w.lower() for w in run["warnings"]), run["warnings"]
    again = _run_fresh(tmp_path, cache)  # the recompiled entry was written back
    assert again["ok"] and again["stats"]["compiles"] == 0 and again["stats"]["disk_hits"] == 1


def test_truncated_entry(tmp_path):
    cache = tmp_path / "cache"
    _run_fresh(tmp_path, cache)
    (entry,) = list(cache.rglob("*.pjc"))
    entry.write_bytes(entry.read_bytes()[:50])
    run = _run_fresh(tmp_path, cache)
    assert run["ok"] and run["stats"]["compiles"] == 1 and run["warnings"]


def test_unusable_cache_dir_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    run = _run_fresh(tmp_path, blocker / "cache")  # a path under a regular file: never creatable
    assert run["ok"] and run["stats"]["compiles"] == 1
    assert any("memory" in w.lower() for w in run["warnings"]), run["warnings"]


def test_read_only_cache_dir(tmp_path, monkeypatch):
    cache = tmp_path / "ro"
    _run_fresh(tmp_path, cache)
    os.chmod(cache, 0o555)
    for p in cache.rglob("*"):
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    try:
        run = _run_fresh(tmp_path, cache)  # reads still hit
        assert run["ok"] and run["stats"]["disk_hits"] == 1
    finally:
        for p in [cache, *cache.rglob("*")]:
            os.chmod(p, 0o755)


def _compile_in_child(args):
    tmp, cache = args
    os.environ["PREPJIT_CACHE_DIR"] = cache
    sys.path.insert(0, tmp)
    import featmod

    x = np.linspace(-9, 9, 513, dtype=np.float32)
    ok = bool(np.allclose(featmod.feat(x), featmod.feat.fn(x), rtol=1e-6, atol=1e-6))
    return ok, dict(featmod.feat.stats)


def test_four_processes_compiling_the_same_key(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "featmod.py").write_text(MODULE)
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.map(_compile_in_child, [(str(tmp_path), str(cache))] * 4)
    assert all(ok for ok, _ in results)
    assert sum(s["compiles"] for _, s in results) == 1  # the per-key lock bounds duplicated work
    assert sum(s["disk_hits"] for _, s in results) == 3
    info = CompileCache(cache).info()
    assert info["entries"] == 1
    assert all(e["valid"] for e in CompileCache(cache).entries())


# -- in-process behaviour ------------------------------------------------------------------------------------
@pj.jit_preprocess
def affine(x, y):
    return x * 2 + y


def test_new_sizes_do_not_recompile_but_new_dtypes_do():
    f = pj.jit_preprocess(lambda x: x * 2 + 1, cache=False)
    for n in (0, 1, 7, 1000):
        np.testing.assert_array_equal(f(np.arange(n, dtype=np.float32)), np.arange(n, dtype=np.float32) * 2 + 1)
    assert f.stats["compiles"] == 1
    f(np.arange(3, dtype=np.int64))
    assert f.stats["compiles"] == 2
    f(np.ones((2, 3), np.int64))  # new rank
    assert f.stats["compiles"] == 3


def test_noncontiguous_and_negative_strides():
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    for x in (base[::2, ::3], base[::-1], base.T, base[:, ::-2]):
        y = np.arange(x.shape[-1], dtype=np.float32)
        np.testing.assert_array_equal(affine(x, y), x * 2 + y)


def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    x = torch.linspace(-3, 3, 12).reshape(3, 4)
    y = torch.arange(4, dtype=torch.float64)
    out = affine(x, y)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    torch.testing.assert_close(out, x.double() * 2 + y)
    out = affine(x.t(), torch.zeros(3, dtype=torch.float64))  # non-contiguous view
    torch.testing.assert_close(out, x.t().double() * 2)
    g = torch.ones(3, requires_grad=True)
    assert isinstance(affine(g, torch.zeros(3)), torch.Tensor)
    with pytest.raises(TypeError, match="bfloat16"):
        affine(torch.ones(3, dtype=torch.bfloat16), torch.ones(3))


def test_signature_declares_accepted_inputs_and_compiles_ahead_of_time():
    @pj.jit_preprocess(signature=(pj.TensorSpec(np.uint8, (None, None, 3)),), cache=False)
    def to_float(img):
        return img.astype(np.float32) / 255.0

    to_float.compile()
    assert to_float.stats["compiles"] == 1
    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_float(img), img.astype(np.float32) / 255.0)
    assert to_float.stats["compiles"] == 1
    with pytest.raises(TypeError, match=r"img: uint8 array of shape \(5, 7, 4\)\) match no declared signature; "
                                        r"expected \(uint8 array of shape \(\?, \?, 3\)\)"):
        to_float(np.zeros((5, 7, 4), np.uint8))
    with pytest.raises(TypeError, match=r"img: uint8 array of shape \(5, 7, 5\)\) match no declared signature"):
        to_float(np.zeros((5, 7, 5), np.uint8))
    with pytest.raises(TypeError, match=r"match no declared signature.*uint8 array of shape \(\?, \?, 3\)"):
        to_float(np.zeros((5, 7, 3), np.float32))
    assert "kernel.func" in to_float.ir("lowered")


def test_bad_containers_and_dtypes_raise_type_error_naming_the_argument():
    with pytest.raises(TypeError, match=r"argument 'y' must be a numpy.ndarray or torch.Tensor, got list"):
        affine(np.ones(3), [1, 2, 3])
    with pytest.raises(TypeError, match=r"argument 'x' has dtype float16"):
        affine(np.ones(3, np.float16), np.ones(3))
    with pytest.raises(TypeError, match=r"complex128"):
        affine(np.ones(3, np.complex128), np.ones(3))
    with pytest.raises(TypeError, match=r"affine\(\): missing a required argument: 'y'"):
        affine(np.ones(3))
    np.testing.assert_array_equal(affine(y=np.ones(2), x=np.ones(2)), np.full(2, 3.0))


def test_broadcast_mismatch_raises_before_native_code():
    with pytest.raises(ValueError, match="could not be broadcast"):
        affine(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="test_runtime.py"):
        affine(np.ones((2, 3)), np.ones((3, 2)))


def test_control_flow_on_traced_values_names_the_line():
    def f(x):
        if x.sum() > 0:  # the offending line
            return x
        return -x

    with pytest.raises(pj.TracingError, match=r"test_runtime.py:\d+: .*truth value of a traced array"):
        pj.jit_preprocess(f)(np.ones(3))

    def g(x):
        return x[: x.shape[0] // 2] if x.shape[0] > 4 else x

    with pytest.raises(pj.TracingError, match="dynamic array size"):
        pj.jit_preprocess(g)(np.ones(3))


def test_unsupported_numpy_function_names_function_and_line():
    def f(x):
        return np.sort(x)

    with pytest.raises(pj.UnsupportedError, match=r"test_runtime.py:\d+: np.sort is not supported"):
        pj.jit_preprocess(f)(np.ones(3))


def test_static_python_control_flow_is_unrolled():
    def f(x):
        acc = x
        for k in range(3):
            acc = acc * 2 if x.ndim == 1 else acc
        return acc

    out = pj.jit_preprocess(f)(np.arange(4.0))
    np.testing.assert_array_equal(out, np.arange(4.0) * 8)


def test_threads_share_a_function():
    from concurrent.futures import ThreadPoolExecutor

    f = pj.jit_preprocess(lambda x: np.sqrt(np.abs(x)) + 1, cache=False)
    xs = [np.random.default_rng(i).standard_normal(10_000 + i) for i in range(16)]
    with ThreadPoolExecutor(4) as ex:
        outs = list(ex.map(f, xs))
    for x, o in zip(xs, outs):
        np.testing.assert_array_equal(o, np.sqrt(np.abs(x)) + 1)
    assert f.stats["compiles"] == 1


def test_ir_and_source_introspection():
    f = pj.jit_preprocess(lambda x: np.log1p(np.abs(x)) * 2, cache=False)
    with pytest.raises(ValueError, match="has not been called"):
        f.ir()
    x = np.ones(1000, np.float32)
    f(x)
    assert "tensor.log1p" in f.ir("traced") and "loc(" in f.ir("traced")
    assert "kernel.fused" in f.ir("optimized")
    assert "scf.for" in f.ir("lowered")
    llvm = f.source("llvm")
    assert "define" in llvm and re.search(r"<\d+ x float>", llvm)  # the loop (log1p included) is vectorized
    assert "prepjit_entry" in f.source("llvm", example=(np.ones((2, 2)),), optimized=False)
    with pytest.raises(ValueError):
        f.ir("nope")


def test_import_is_light():
    code = "import sys, prepjit; print(sorted(m for m in ('torch', 'numba', 'cupy', 'llvmlite') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli(tmp_path):
    env = _env(tmp_path / "cache")
    (tmp_path / "featmod.py").write_text(MODULE)
    run = lambda *a: subprocess.run([sys.executable, "-m", "prepjit", *a], env=env, cwd=tmp_path,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    out = run("ir", "featmod:feat", "--stage", "lowered")
    assert out.returncode == 0 and "kernel.func" in out.stdout, out.stderr
    out = run("ir", "featmod:feat", "--spec", "float64[?,?]")
    assert out.returncode == 0 and "tensor<?x?xf64>" in out.stdout, out.stderr
    out = run("demo", "--n", "100000")
    assert out.returncode == 0 and "faster" in out.stdout, out.stderr
    _run_fresh(tmp_path, tmp_path / "cache")
    out = run("cache", "info")
    assert out.returncode == 0 and "entries:   1" in out.stdout and "featmod.feat" in out.stdout, out.stdout
    out = run("cache", "clear")
    assert out.returncode == 0 and "removed 1" in out.stdout
    out = run("ir", "nomodule:feat")
    assert out.returncode != 0 and "cannot import" in out.stderr



def test_batch_outputs_reuse_memory_only_when_dropped():
    """Large .batch outputs live on recycled memory: a dropped batch's memory serves the next one; memory still
    referenced (a view, a torch tensor) is never handed out again, and what is kept stays bounded."""
    import gc

    import torch

    from prepjit.runtime import outputs

    f = pj.jit_preprocess(lambda x: x * 2.0)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((300, 300)) for _ in range(4)]  # 4 × 720 KB float64: a 2.9 MB output
    first = f.batch(xs)
    assert type(first.base).__name__ == "_Block"
    addr = first.ctypes.data
    np.testing.assert_array_equal(first, np.stack(xs) * 2.0)
    del first
    gc.collect()
    second = f.batch(xs[::-1])
    assert second.ctypes.data == addr  # recycled
    keep_view, keep_tensor = second[1:3], torch.from_numpy(second)
    want = np.stack(xs[::-1]) * 2.0
    del second
    gc.collect()
    for _ in range(3):  # the held memory is not reused while the view and the tensor live
        third = f.batch(xs)
        assert third.ctypes.data != addr
        np.testing.assert_array_equal(third, np.stack(xs) * 2.0)
        del third
    np.testing.assert_array_equal(keep_view, want[1:3])
    np.testing.assert_array_equal(keep_tensor.numpy(), want)
    del keep_view, keep_tensor
    gc.collect()
    for n in range(2, 40):  # many sizes, several blocks of each dropped together: bounded per size and in all
        blocks = [outputs.empty((n, 1 << 17), np.float64) for _ in range(12)]
        del blocks
    assert outputs.kept_bytes() <= outputs.KEEP_BYTES
    kept = {size: len(q) for size, q in outputs._free.items()}
    assert kept[2 << 20] == outputs.KEEP_MAX_PER_SIZE  # small outputs: several a batch (a text batch has three)
    assert all(k <= outputs.keep_per_size(size) for size, k in kept.items())
    assert all(k <= outputs.KEEP_PER_SIZE for size, k in kept.items() if size > outputs.KEEP_SIZE_BYTES // 2)
    outputs.release()
    assert outputs.kept_bytes() == 0
