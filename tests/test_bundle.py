"""Portable bundles: fn.save(path) / pj.load(path)."""
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import prepjit as pj
from prepjit.runtime.portable import BundleWarning

SAVE = textwrap.dedent('''
    import sys
    import numpy as np
    import prepjit as pj
    from prepjit import image as I

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
    def eval_tf(img):
        x = I.center_crop(I.resize(img, 24, antialias=True), 16)
        return I.to_chw(I.normalize(I.to_dtype(x, np.float32, scale=True), [0.5] * 3, [0.2] * 3))

    img = np.random.default_rng(1).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    np.save(sys.argv[2], eval_tf(img))
    eval_tf.save(sys.argv[1])
''')

LOAD = textwrap.dedent('''
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("error")
    import prepjit as pj
    from prepjit.runtime import native
    compiled = []
    real = native.compile_object
    native.compile_object = lambda ir: compiled.append(1) or real(ir)
    fn = pj.load(sys.argv[1])
    img = np.random.default_rng(1).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    same = bool(np.array_equal(fn(img), np.load(sys.argv[2])))
    print(json.dumps({"same": same, "stats": fn.stats, "repr": repr(fn), "native_compiles": len(compiled)}))
''')


def f2(x, y):
    return {"sum": x + y, "mx": np.maximum(x, y).max()}


@pytest.fixture
def saved(tmp_path):
    fn = pj.jit_preprocess(f2, signature=[(pj.TensorSpec(np.float32, (None,)), pj.TensorSpec(np.float32, (None,))),
                                          (pj.TensorSpec(np.int64, (None, 2)), pj.TensorSpec(np.int64, (2,)))])
    path = tmp_path / "b"
    assert fn.save(path) == str(path)
    return fn, path


def test_bundle_runs_in_a_fresh_process_without_source_or_cache(tmp_path):
    (tmp_path / "save.py").write_text(SAVE)
    (tmp_path / "load.py").write_text(LOAD)
    env = dict(os.environ, PREPJIT_CACHE_DIR=str(tmp_path / "cache1"))
    out = subprocess.run([sys.executable, "save.py", "bundle", "expected.npy"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    (tmp_path / "save.py").unlink()  # no source, and an empty cache: everything must come from the bundle
    env["PREPJIT_CACHE_DIR"] = str(tmp_path / "cache2")
    out = subprocess.run([sys.executable, "load.py", "bundle", "expected.npy"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["same"] and r["stats"]["compiles"] == 0 and r["stats"]["disk_hits"] == 1 and "bundle" in r["repr"]
    # the resize's weight-table kernel travelled in the bundle too: nothing at all was compiled
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert [k["name"] for k in manifest["fixed_kernels"]] == ["resize_table_bilinear_True_False_uint8"]
    assert r["native_compiles"] == 0
    assert manifest["versions"]["prepjit"] == pj.__version__ and "cpu" in manifest["built_on"]
    assert set(manifest["files"]) == {"ir/0.mlir", "objects/cpu/0.o",
                                      "objects/fixed/resize_table_bilinear_True_False_uint8.o"}
    assert (tmp_path / "bundle" / "ir" / "0.mlir").read_text().startswith("func.func @eval_tf")


def test_round_trip_every_specialization(saved):
    fn, path = saved
    g = pj.load(path)
    x, y = np.arange(5, dtype=np.float32), np.full(5, 2.5, np.float32)
    a, b = np.arange(6).reshape(3, 2), np.array([4, 1])
    for args in ((x, y), (a, b)):
        out, ref = g(*args), fn(*args)
        assert out.keys() == ref.keys() and all(np.array_equal(out[k], ref[k]) for k in out)
    assert g.stats["compiles"] == 0 and g.stats["disk_hits"] == 2
    with pytest.raises(TypeError, match="cannot trace new ones"):
        g(x.astype(np.float64), y.astype(np.float64))
    with pytest.raises(TypeError, match="2"):
        g(a, np.array([1, 2, 3]))  # declared static size still checked
    h = pickle.loads(pickle.dumps(g))  # a loaded bundle pickles by IR
    assert np.array_equal(h(x, y)["sum"], x + y)
    g.save(path)  # and can be saved again (over the old bundle)
    assert np.array_equal(pj.load(path)(x, y)["sum"], x + y)


def test_other_machine_recompiles_from_ir_with_a_warning(saved, monkeypatch):
    from prepjit.runtime import native

    fn, path = saved
    triple, cpu, features = native.host_cpu()
    monkeypatch.setattr(native, "host_cpu", lambda: (triple, "other-cpu", features))
    g = pj.load(path)
    x = np.arange(4, dtype=np.float32)
    with pytest.warns(BundleWarning, match="other-cpu.*recompiling from the bundled IR"):
        out = g(x, x)
    assert np.array_equal(out["sum"], x + x) and g.stats["compiles"] == 1


def _expect(path, match):
    with pytest.raises(pj.BundleError, match=match):
        pj.load(path)


def test_tampered_or_truncated_bundles_raise_clear_errors(saved, tmp_path):
    _, path = saved
    obj = path / "objects" / "cpu" / "0.o"
    good = obj.read_bytes()
    obj.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    _expect(path, r"objects/cpu/0.o does not match its checksum")
    obj.write_bytes(good[: len(good) // 2])
    _expect(path, r"objects/cpu/0.o is truncated")
    obj.unlink()
    _expect(path, r"objects/cpu/0.o is missing")
    obj.write_bytes(good)
    ir = path / "ir" / "1.mlir"
    ir_text = ir.read_text()
    ir.write_text(ir_text.replace("tensor.add", "tensor.subtract"))
    _expect(path, "ir/1.mlir")
    ir.write_text(ir_text)
    manifest = path / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    _expect(path, "manifest.json is corrupt or truncated")
    m = json.loads(text)
    m["files"]["../../etc/passwd"] = {"size": 1, "sha256": "0"}
    manifest.write_text(json.dumps(m))
    _expect(path, "outside the bundle")
    del m["files"]["../../etc/passwd"]
    m["specializations"][0]["ir"] = "ir/9.mlir"
    manifest.write_text(json.dumps(m))
    _expect(path, "malformed")
    m["format_version"] = 99
    manifest.write_text(json.dumps(m))
    _expect(path, "format version 99")
    manifest.unlink()
    _expect(path, "not a prepjit bundle")
    _expect(tmp_path / "nope", "not a prepjit bundle")


def test_save_errors(tmp_path):
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "data.txt").write_text("x")
    fn = pj.jit_preprocess(lambda x: x + 1)
    with pytest.raises(ValueError, match="nothing to save"):
        fn.save(tmp_path / "b")
    fn(np.zeros(3))
    with pytest.raises(FileExistsError):
        fn.save(tmp_path / "occupied")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = pj.load(fn.save(tmp_path / "b"))  # a dynamic function's called specialization is saved
    assert np.array_equal(g(np.ones(2)), np.full(2, 2.0))
