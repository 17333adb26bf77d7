"""``prepjit warm``: ahead-of-time compilation into the disk cache, concurrent warmers, shareable cache dirs."""
import json
import os
import shutil
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
    from prepjit import image as I

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
    def eval_tf(img):
        x = I.resize(img, 24, antialias=True)
        x = I.center_crop(x, 16)
        return I.to_chw(I.normalize(I.to_dtype(x, np.float32, scale=True), [0.5] * 3, [0.2] * 3))

    @pj.jit_preprocess(signature=[(pj.TensorSpec(np.float32, (None,)),), (pj.TensorSpec(np.int64, (None, 4)),)])
    def feat(x):
        return np.log1p(np.abs(x)) * 2

    @pj.jit_preprocess
    def undeclared(x):
        return x + 1

    class Holder:
        nested = pj.jit_preprocess(lambda x: x * 2, signature=(pj.TensorSpec(np.float64, (3,)),))
''')

BROKEN = textwrap.dedent('''
    import numpy as np
    import prepjit as pj

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.float32, (None,)),))
    def bad(x):
        if x.sum() > 0:
            return x
        return -x

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.float32, (None,)),))
    def good(x):
        return x * 2
''')

USE = textwrap.dedent('''
    import json, sys
    import numpy as np
    import warmmod
    img = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    out = warmmod.eval_tf(img)
    f = warmmod.feat(np.linspace(-2, 2, 9, dtype=np.float32))
    print(json.dumps({"eval_tf": warmmod.eval_tf.stats, "feat": warmmod.feat.stats, "shape": list(out.shape),
                      "llvm": "llvmlite.binding" in sys.modules}))
''')


def _env(cache):
    env = dict(os.environ)
    env["PREPJIT_CACHE_DIR"] = str(cache)
    return env


def _warm(tmp_path, *args, cache=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "prepjit", "warm", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout, env=_env(cache or tmp_path / "cache"))


def _use(tmp_path, cache):
    (tmp_path / "use.py").write_text(USE)
    out = subprocess.run([sys.executable, "use.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=_env(cache))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_warm_then_fresh_process_compiles_nothing(tmp_path):
    (tmp_path / "warmmod.py").write_text(MODULE)
    cache = tmp_path / "cache"
    out = _warm(tmp_path, "warmmod", "--cache-dir", str(cache))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 compiled, 0 already cached, 0 failed, 1 skipped" in out.stdout, out.stdout
    # eval_tf's resize: its weight-table kernel was compiled and cached with it, so using the cache compiles nothing
    listed = subprocess.run([sys.executable, "-m", "prepjit", "cache", "info", "--cache-dir", str(cache)],
                            capture_output=True, text=True, timeout=60)
    assert "prepjit resize_table_bilinear_True_False_uint8: 1 entries" in listed.stdout, listed.stdout
    assert "warmmod.Holder.nested" in out.stdout and "skipped  warmmod.undeclared" in out.stdout
    again = _warm(tmp_path, "warmmod", "--json", cache=cache)  # via $PREPJIT_CACHE_DIR this time
    summary = json.loads(again.stdout)
    assert again.returncode == 0 and summary["compiled"] == 0 and summary["cached"] == 4
    used = _use(tmp_path, cache)
    assert used["shape"] == [3, 16, 16] and not used["llvm"]  # nothing compiled: not even the table kernel
    for name in ("eval_tf", "feat"):
        assert used[name]["compiles"] == 0 and used[name]["disk_hits"] >= 1, used
    # the cache directory is shareable: a copy elsewhere (another machine with the same CPU) starts warm
    copy = tmp_path / "copied-cache"
    shutil.copytree(cache, copy)
    used = _use(tmp_path, copy)
    assert used["eval_tf"]["compiles"] == 0 and used["eval_tf"]["disk_hits"] == 1
    # per-function breakdown
    info = subprocess.run([sys.executable, "-m", "prepjit", "cache", "info", "--cache-dir", str(copy)],
                          capture_output=True, text=True, timeout=60)
    assert "entries:   5" in info.stdout and "warmmod.feat: 2 entries" in info.stdout, info.stdout


def test_warm_reports_failures_and_exits_nonzero(tmp_path):
    (tmp_path / "brokenmod.py").write_text(BROKEN)
    out = _warm(tmp_path, "brokenmod", "nosuchmodule_xyz", "--no-progress")
    assert out.returncode == 1
    assert "1 compiled, 0 already cached, 2 failed" in out.stdout, out.stdout
    assert "FAILED  brokenmod.bad(float32[?]) [cpu]: TracingError" in out.stderr
    assert "FAILED  nosuchmodule_xyz" in out.stderr and "cannot import" in out.stderr


def test_warm_target_options(tmp_path):
    (tmp_path / "brokenmod.py").write_text(BROKEN)
    out = _warm(tmp_path, "brokenmod", "--target", "tpu")
    assert out.returncode == 2 and "tpu target not available" in out.stderr, out.stderr
    out = _warm(tmp_path, "brokenmod", "--arch", "sm_80")
    assert out.returncode == 2 and "--arch needs a GPU --target" in out.stderr
    from prepjit.warm import main

    assert main(["brokenmod", "--target", "tpu", "--json"]) == 2


def test_eight_processes_warming_at_once_leave_a_consistent_cache(tmp_path):
    (tmp_path / "warmmod.py").write_text(MODULE)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-m", "prepjit.warm", "warmmod", "--json"], cwd=tmp_path,
                              env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    summaries = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        summaries.append(json.loads(out))
    assert all(s["failed"] == 0 and s["compiled"] + s["cached"] == 4 for s in summaries)
    # per-key file locks: every key was compiled by exactly one process, the others waited and loaded it
    assert sum(s["compiled"] for s in summaries) == 4, [s["compiled"] for s in summaries]
    store = CompileCache(cache)
    entries = store.entries()
    assert len(entries) == 5 and all(e["valid"] for e in entries)  # 4 specializations + eval_tf's table kernel
    assert all(store.load(e["key"]) is not None for e in entries)  # payload checksums hold
    leftovers = [p.name for p in (cache / "v1").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    used = _use(tmp_path, cache)
    assert used["eval_tf"]["compiles"] == 0 and used["feat"]["compiles"] == 0 and not used["llvm"]


def test_entries_for_other_cpus_or_versions_are_ignored(monkeypatch):
    from prepjit.compiler import driver
    from prepjit.runtime import native

    def make():
        return pj.jit_preprocess(lambda x: x * 3 - 1, signature=(pj.TensorSpec(np.float32, (None,)),))

    x = np.arange(4, dtype=np.float32)
    make().compile()
    same = make().compile()
    assert same.stats["compiles"] == 0 and same.stats["disk_hits"] == 1
    triple, cpu, features = native.host_cpu()
    monkeypatch.setattr(native, "host_cpu", lambda: (triple, cpu, features.replace("+", "-", 1)))
    other_cpu = make().compile()  # a cache copied from a machine with different CPU features: not used
    assert other_cpu.stats["compiles"] == 1 and other_cpu.stats["disk_hits"] == 0
    monkeypatch.undo()
    monkeypatch.setattr(driver, "__version__", "0.0.0-other")
    other_version = make().compile()
    assert other_version.stats["compiles"] == 1 and other_version.stats["disk_hits"] == 0
    np.testing.assert_array_equal(other_version(x), x * 3 - 1)


@pytest.mark.parametrize("entry", ["python -m prepjit.warm", "prepjit.cli warm"])
def test_help(entry, tmp_path):
    cmd = [sys.executable, "-m", *entry.split()[2:]] if entry.startswith("python") else \
        [sys.executable, "-c", "import sys, prepjit.cli; sys.exit(prepjit.cli.main(['warm', '--help']))"]
    if entry.startswith("python"):
        cmd.append("--help")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--cache-dir" in out.stdout and "--target" in out.stdout


def test_cache_info_breakdown_prune_stale_and_lru(tmp_path, capsys, monkeypatch):
    from prepjit import cli
    from prepjit.runtime.portable import host_meta

    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path / "c"))
    f = pj.jit_preprocess(lambda x: x - 1, signature=(pj.TensorSpec(np.float32, (None,)),)).compile()
    assert f.stats["compiles"] == 1
    store = CompileCache(tmp_path / "c")
    (entry,) = store.entries()
    assert entry["meta"]["host"] == host_meta()["host"]  # cache entries record what built them
    other = {**host_meta(), "host": {**host_meta()["host"], "cpu": "some-other-cpu"}, "function": "m.other"}
    store.store("ab" * 16, b"\0" * 5000, other)
    store.store("cd" * 16, b"\0" * 100, {**host_meta(), "function": "m.old"})
    os.utime(store._entry_path("cd" * 16), (1, 1))  # least recently used
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "entries:   3" in out and "other CPUs / prepjit versions: 1 entries" in out
    assert "m.other: 1 entries" in out and "m.old: 1 entries" in out
    assert cli.main(["cache", "prune", "--stale"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    keys = {e["key"] for e in store.entries()}
    assert "ab" * 16 not in keys and len(keys) == 2
    big = max(e["size"] for e in store.entries())
    assert cli.main(["cache", "prune", "--max-size", str(big)]) == 0  # LRU: the old entry goes first
    assert [e["function"] for e in store.entries()] == [entry["function"]]
    assert cli.main(["cache", "clear"]) == 0 and store.entries() == []


def test_warm_cuda_cubins_for_named_architectures_without_a_gpu(tmp_path):
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc")
    (tmp_path / "brokenmod.py").write_text(BROKEN)
    out = _warm(tmp_path, "brokenmod", "--target", "cuda", "--arch", "sm_80,sm_90", "--json")
    assert out.returncode == 1, out.stderr  # `bad` cannot be traced, for any target
    summary = json.loads(out.stdout)
    assert summary["compiled"] == 2 and summary["failed"] == 2, summary  # good: one cubin per architecture
    again = json.loads(_warm(tmp_path, "brokenmod", "--target", "cuda", "--arch", "sm_80,sm_90", "--json").stdout)
    assert again["compiled"] == 0 and again["cached"] == 2, again
