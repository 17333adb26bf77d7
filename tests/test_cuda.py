"""GPU backend: CUDA C from the same loop IR, checked without a GPU.

1. every generated program compiles to cubin with NVRTC for sm_80 and sm_90;
2. the emulation harness (``prepjit.runtime.cuda_emulate``: the CUDA C compiled as C++ with AddressSanitizer and
   UBSan, threads of a block run by a deterministic barrier scheduler) agrees with the CPU backend and with the
   NumPy reference interpreter, on batches of ragged samples;
3. tests marked ``cuda`` run the real thing and are skipped without a device.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import prepjit as pj
from prepjit import image as I
from prepjit.kernels.reference import interpret

from prepjit.runtime import cuda as C
from prepjit.runtime import cuda_emulate as E


def _has_nvrtc() -> bool:
    try:
        C.nvrtc_version()
    except Exception:
        return False
    return True


needs_nvrtc = pytest.mark.skipif(not _has_nvrtc(), reason="needs CuPy's NVRTC (pip install prepjit[gpu])")

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
RNG = np.random.default_rng(5)
needs_cxx = pytest.mark.skipif(E.compiler() is None, reason="the emulation harness needs g++")


# -- the corpus: one entry per kind of generated kernel ------------------------------------------------------------
def feat(x):
    y = np.clip((x - 3.0) / 2.0, -5.0, 5.0)
    return np.log1p(np.abs(y)) * np.sign(y) + np.where(x > 0, 1.0, 0.0)


def int_arith(x, y):
    return (x * 3 + y) // 5 - x % 4, -x, np.abs(x), (x & 60) | (y ^ 5), ~x


def casts(x):
    return (x.astype(np.int8), x.astype(np.uint8), x.astype(np.int32), x.astype(np.int64), x.astype(np.uint64),
            x.astype(np.bool_), x.astype(np.float32))


def cast_u32(x):  # out-of-range float → uint32 differs between NumPy's own SIMD and scalar loops: in range only
    return x.astype(np.uint32), x.astype(np.uint16)


def logic(x, y):
    return ((x > 0) & ~(y < 1)) | (x == y), np.isnan(x), np.logical_xor(x > y, y > 0)


def minmax(x, y):
    return np.maximum(x, y), np.minimum(x, y), np.fmax(x, y), np.fmin(x, y)


def math64(x):
    a = np.abs(x) + 0.5
    return (np.exp(x), np.expm1(x), np.log(a), np.log2(a), np.log10(a), np.tanh(x), np.sqrt(a), np.floor(x),
            np.ceil(x), np.rint(x), np.trunc(x), x ** 2, x % 0.7, x // 0.3)


def layout(x, y):
    z = np.concatenate([x.T[::-1], y[:, 1:3].T], axis=0)
    return np.stack([z, z * 2]).swapaxes(0, 1) + x[0, :2, None]


def reductions(x):
    return {"s0": x.sum(axis=0) / x.max(), "m1": x.mean(axis=1), "p": x.prod(axis=0), "any": (x > 1).any(),
            "all": (x > -3).all(axis=1), "mn": x.min(axis=(0, 1))}


def int_reductions(x):
    return x.sum(axis=1), x.max(axis=0), x.sum()


def eval_tf(img):
    x = I.resize(img, 256, antialias=True)
    x = I.center_crop(x, 224)
    x = I.to_dtype(x, np.float32, scale=True)
    x = I.normalize(x, MEAN, STD)
    return I.to_chw(x)


def small_eval(img):  # eval_tf's structure at a size the emulator runs quickly, crop larger than the image
    x = I.resize(img, [20, 22], antialias=True)
    x = I.center_crop(x, 24)
    x = I.to_dtype(x, np.float32, scale=True)
    return I.to_chw(I.normalize(x, MEAN, STD))


def bicubic_f32(img):
    x = I.to_dtype(img, np.float32, scale=True)
    return I.resize(x, [13, 17], interpolation="bicubic", antialias=False)


def nearest_u8(img):
    return I.horizontal_flip(I.resize(img, [9, 11], interpolation="nearest"))


def color(img):
    g = I.rgb_to_grayscale(img, num_output_channels=3)
    x = I.adjust_saturation(I.adjust_brightness(img, 1.3), 0.6)
    return I.vertical_flip(x), g


def crops(img):
    x = I.resized_crop(img, 2, 3, 10, 12, [8, 8], antialias=True)
    return I.pad(x, [1, 2], fill=7)


def pad_modes(img):
    return (I.pad(img, [1, 2], padding_mode="reflect"), I.pad(img, 2, padding_mode="symmetric"),
            I.pad(img, [0, 3, 1, 2], padding_mode="edge"), I.resize(img, [7, 9], interpolation="nearest-exact"))


def decoded(data):
    return I.to_chw(I.resize(I.decode(data), [8, 8]))


def keepdims(x, y):
    return x - x.mean(axis=1, keepdims=True), (x * y).sum(axis=-1), np.max(y, axis=0, keepdims=True)


def _png(a):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def empty(x, m):
    return x * 2 + 1, x.sum(axis=0), x.sum(), m & (x > 0)


def f32(*shape, lo=-4, hi=4):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def img(h, w, c=3):
    return RNG.integers(0, 256, (h, w, c), dtype=np.uint8)


def ints(dtype, n):
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, n, endpoint=True).astype(dtype)


def special(dtype):
    v = np.array([0.0, -0.0, 1.5, -1.5, 2.5, 300.7, -129.2, 3e9, -3e9, 1e19, -1e19, np.nan, np.inf, -np.inf, 7e4,
                  255.9], dtype)
    return v


CASES = {
    # name: (function, [samples]; each sample a tuple of arguments), rtol vs CPU and NumPy (0: exact);
    # image float paths: CPU exact, NumPy's spec within 1e-5 (FLOAT_IMAGE)
    "feat": (feat, [(f32(5, 7),), (f32(3, 9),)], 1e-6),
    "int_arith_i8": (int_arith, [(ints(np.int8, 40), ints(np.int8, 40))], 0),
    "int_arith_u16": (int_arith, [(ints(np.uint16, 33), ints(np.uint16, 33))], 0),
    "int_arith_i64": (int_arith, [(RNG.integers(-2**62, 2**62, 21), RNG.integers(-2**62, 2**62, 21))], 0),
    "casts_f32": (casts, [(special(np.float32),)], 0),
    "casts_f64": (casts, [(special(np.float64),)], 0),
    "cast_u32": (cast_u32, [(np.array([0.0, 1.5, 3e9, 4294967295.0, 65535.5, 7e4], np.float64),)], 0),
    "logic": (logic, [(np.array([0.0, 1, np.nan, 2, -1], np.float32),
                       np.array([0.0, 2, 1, np.nan, -1], np.float32))], 0),
    "minmax": (minmax, [(np.array([0.0, -0.0, np.nan, 1, 2], np.float64),
                         np.array([-0.0, 0.0, 1, np.nan, 3], np.float64))], 0),
    "math64": (math64, [(RNG.uniform(-5, 5, 50),)], 1e-13),
    "layout": (layout, [(f32(4, 3), f32(4, 5)), (f32(6, 3), f32(6, 2))], 0),
    "reductions": (reductions, [(f32(6, 5, lo=0.5, hi=2),), (f32(2, 9, lo=0.5, hi=2),)], 1e-6),
    "int_reductions": (int_reductions, [(RNG.integers(-100, 100, (7, 5)).astype(np.int32),)], 0),
    "small_eval": (small_eval, [(img(30, 41),), (img(17, 23),), (img(40, 12),)], 0),
    "bicubic_f32": (bicubic_f32, [(img(29, 31),), (img(9, 8),)], 0),
    "nearest_u8": (nearest_u8, [(img(20, 25),), (img(5, 30),)], 0),
    "color": (color, [(img(11, 13),), (img(6, 4),)], 0),
    "crops": (crops, [(img(21, 19),), (img(8, 9),)], 0),
    "pad_modes": (pad_modes, [(img(5, 6),), (img(3, 4),)], 0),
    "decoded": (decoded, [(_png(img(12, 10)),), (_png(img(9, 13)),)], 0),
    "empty": (empty, [(f32(0, 3), np.zeros((0, 3), bool)), (f32(3, 0), np.zeros((3, 0), bool)),
                      (f32(2, 3), np.array([[True, False, True]] * 2))], 1e-6),
    "keepdims": (keepdims, [(f32(4, 6), f32(4, 6)), (f32(1, 3), f32(1, 3))], 1e-5),
}


FLOAT_IMAGE = {"small_eval", "bicubic_f32"}


def _jit(fn, target="cpu"):
    return pj.jit_preprocess(fn, target=target)


def _leaves(out):
    if isinstance(out, dict):
        return list(out.values())
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


# -- 1. NVRTC -----------------------------------------------------------------------------------------------------
@needs_nvrtc
@pytest.mark.parametrize("name", [*CASES, "eval_tf", "train"])
def test_every_kernel_compiles_with_nvrtc(name):
    extra = {"eval_tf": (eval_tf, [(img(300, 400),)]), "train": (small_train, [(img(40, 31),)])}
    fn, samples = extra[name] if name in extra else CASES[name][:2]
    jf = _jit(fn, "cuda")
    text = jf.source("cuda", example=samples[0])
    for arch in C.DEFAULT_AOT_ARCHS:
        cubin = C.compile_cubin(text, arch)
        assert cubin[:4] == b"\x7fELF" and len(cubin) > 1000


# -- 2. emulation ---------------------------------------------------------------------------------------------------
@needs_cxx
@pytest.mark.parametrize("name", list(CASES))
def test_emulated_kernels_match_cpu_and_numpy(name):
    fn, samples, rtol = CASES[name]
    cpu = _jit(fn)
    # samples whose outputs agree in shape run as one batch (ragged inputs, one launch), others one by one
    groups: dict = {}
    for s in samples:
        groups.setdefault(tuple(np.shape(x) for x in _leaves(cpu(*s))), []).append(s)
    for group in groups.values():
        outs, src = E.run(cpu, group, threads=4)
        prog = cpu._compiled_for(group[0], "cuda").program
        names = [b.name for b in prog.buffers.values() if b.kind == "output"]
        for i, s in enumerate(group):
            ref_cpu = _leaves(cpu(*s))
            ref_np = _leaves(interpret(cpu._compiled_for(s).traced, *s))
            for k, (kind, ref) in enumerate(prog.outputs):
                if kind != "buf" or ref not in names:
                    continue
                got = outs[names.index(ref)][i]
                for want, atol in ((ref_cpu[k], 0), (ref_np[k], 1e-5 if name in FLOAT_IMAGE else 0)):
                    want = np.asarray(want)
                    assert got.dtype == want.dtype and got.shape == want.shape
                    if rtol or atol:
                        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol or 1e-12, equal_nan=True)
                    else:
                        np.testing.assert_array_equal(got, want)


@needs_cxx
def test_emulated_eval_pipeline_bit_identical_to_cpu_both_schedules():
    cpu = _jit(eval_tf)
    samples = [(img(260, 300),), (img(230, 230),)]
    want = np.stack([cpu(*s) for s in samples])
    for order in ("descending", "ascending"):
        outs, src = E.run(cpu, samples, threads=8, order=order)
        assert src.mode == "block" and src.stats["syncs"] >= 2
        np.testing.assert_array_equal(outs[0], want)


@needs_cxx
def test_emulator_catches_a_missing_barrier():
    """Drop the barriers from a resampling kernel: the deterministic scheduler makes the race visible."""
    cpu = _jit(small_eval)
    samples = [(img(30, 41),)]
    want = cpu(*samples[0])
    outs, _ = E.run(cpu, samples, threads=4, transform=lambda t: t.replace("__syncthreads();", ""))
    assert not np.array_equal(outs[0][0], want)


@needs_cxx
def test_emulator_catches_out_of_bounds_access():
    """AddressSanitizer is on: a kernel reading one element past its input aborts the run."""
    cpu = _jit(feat)
    samples = [(f32(4, 4),)]

    def off_by_one(t):  # read x[i + 1]: past the end for the last element
        return t.replace("b_a0[v_i0 * p_a0_st0 + v_i1]", "b_a0[v_i0 * p_a0_st0 + v_i1 + 1]", 1)

    with pytest.raises(RuntimeError, match="AddressSanitizer|heap-buffer-overflow"):
        E.run(cpu, samples, threads=2, transform=off_by_one)


# -- the runtime path (planner, staging, argument table, launch, cache) on an emulated device -----------------------
@needs_cxx
@needs_nvrtc
def test_runtime_path_on_emulated_device(monkeypatch, tmp_path):
    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path))
    fake = E.emulated_device(monkeypatch)
    cpu, dev = _jit(small_eval), _jit(small_eval, "cuda")
    imgs = [img(30, 41), img(17, 23), img(40, 12)[::-1]]  # ragged, one with a negative stride
    out = dev.batch(imgs)
    np.testing.assert_array_equal(np.asarray(out), cpu.batch(imgs))
    assert dev.stats["compiles"] == 1 and fake.launches == 1  # one NVRTC compile, one launch for the batch
    np.testing.assert_array_equal(np.asarray(dev(imgs[1])), cpu(imgs[1]))  # a call is a batch of one
    # device-resident inputs are used in place (pointers and strides from __cuda_array_interface__)
    np.testing.assert_array_equal(np.asarray(dev.batch([fake.asarray(i) for i in imgs])), cpu.batch(imgs))
    # a new process (new function object): the cubin comes from the disk cache
    again = _jit(small_eval, "cuda")
    np.testing.assert_array_equal(np.asarray(again.batch(imgs[:2])), cpu.batch(imgs[:2]))
    assert again.stats["compiles"] == 0 and again.stats["disk_hits"] == 1
    # bad input: the CPU path's checks, before launch, naming the sample
    launches = fake.launches
    with pytest.raises(TypeError, match="sample 1"):
        dev.batch([img(5, 5), img(5, 5)[:, :, 0]])
    with pytest.raises(TypeError, match="sample 1"):
        dev.batch([img(5, 5), "not an image"])
    assert fake.launches == launches


@needs_cxx
@needs_nvrtc
def test_runtime_numeric_structures_on_emulated_device(monkeypatch, tmp_path):
    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path))
    E.emulated_device(monkeypatch, order="ascending")
    for fn, samples in ((reductions, [(f32(6, 5, lo=0.5, hi=2),), (f32(6, 5, lo=0.5, hi=2),)]),
                        (feat, [(f32(300, 7),), (f32(300, 7),)]),  # grid mode: a sample spans blocks
                        (int_arith, CASES["int_arith_i8"][1] * 2)):
        cpu, dev = _jit(fn), _jit(fn, "cuda")
        cols = list(zip(*samples))
        got, want = _leaves(dev.batch(*cols)), _leaves(cpu.batch(*cols))
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), w, rtol=1e-6)
        for g, w in zip(_leaves(dev(*samples[0])), _leaves(cpu(*samples[0]))):
            np.testing.assert_allclose(np.asarray(g), w, rtol=1e-6)
    with pytest.raises(ValueError, match="broadcast"):
        _jit(lambda x, y: x + y, "cuda")(f32(3), f32(4))


# -- renderer structure ----------------------------------------------------------------------------------------
def test_full_reductions_split_over_threads():
    stats = C.render(_jit(reductions)._compiled_for((f32(6, 5),), "cuda")).stats
    assert stats["tree_reductions"] == 6  # max, any, min (each versioned twice): thread-0 code only stores init/final
    src = C.render(_jit(lambda x: x.prod())._compiled_for((f32(5),), "cuda"))
    assert src.stats["tree_reductions"] == 0  # float products keep the CPU's sequential order


def test_modes_and_barriers():
    assert C.render(_jit(feat)._compiled_for((f32(3, 3),), "cuda")).mode == "grid"
    src = C.render(_jit(eval_tf)._compiled_for((img(300, 400),), "cuda"))
    assert src.mode == "block" and src.stats["serial_regions"] == 0
    # phases separated by a few barriers; the vertical pass's row accumulator is privatized (a per-thread
    # scalar), so its rows and columns are one distributed loop: no loop over output rows in every thread
    assert 2 <= src.stats["syncs"] <= 6
    assert "pv_scratch" in src.text and "v_rs0_vrow = 0;" not in src.text
    # the CHW output's column index varies fastest across threads (coalesced stores), whatever the loop order
    main = src.text[src.text.rindex("for (long long l"):]
    assert main.index("const long long v_i2") < main.index("const long long v_i0") < main.index("const long long v_i1")


@needs_nvrtc
def test_source_and_aot_without_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path))
    jf = pj.jit_preprocess(eval_tf, target="cuda", signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
    text = jf.source("cuda", example=(np.zeros((300, 400, 3), np.uint8),))
    assert 'extern "C" __global__' in text and "prepjit_cuda_entry" in text
    jf.compile(arch=["sm_80", "sm_90"])
    assert jf.stats["compiles"] == 2
    jf2 = pj.jit_preprocess(eval_tf, target="cuda", signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
    jf2.compile(arch=("sm_80", "sm_90"))
    assert jf2.stats == {**jf2.stats, "compiles": 0, "disk_hits": 2}  # warm: cubins come from the cache
    metas = [e for e in pj_cache_entries(tmp_path)]
    assert {m.get("arch") for m in metas if m.get("kind") != "source"} == {"sm_80", "sm_90"}
    assert any(m.get("kind") == "source" for m in metas)
    with pytest.raises(ValueError, match="sm_90"):
        jf.compile(arch=["ampere"])
    with pytest.raises(TypeError, match="target='cuda'"):
        pj.jit_preprocess(feat).compile(pj.TensorSpec(np.float32, (None,)), arch=["sm_90"])


def pj_cache_entries(path):
    from prepjit.runtime.cache import CompileCache

    cache = CompileCache(path)
    return [cache.load(e["key"]).meta for e in cache.entries()]


@needs_nvrtc
def test_cubin_key_covers_arch_nvrtc_and_options():
    k80, k90 = C.cubin_key("x", "sm_80"), C.cubin_key("x", "sm_90")
    assert k80 != k90 and k80 != C.cubin_key("y", "sm_80")
    assert C.nvrtc_version().count(".") == 1


@pytest.mark.skipif(C.describe_no_device() is None, reason="a CUDA device is present")
def test_clear_error_without_device():
    jf = pj.jit_preprocess(feat, target="cuda")
    with pytest.raises(C.CudaUnavailableError, match="no CUDA device is available"):
        jf(f32(3))
    with pytest.raises(C.CudaUnavailableError, match="no CUDA device is available"):
        jf.to("cuda").batch([f32(3), f32(4)])
    x = f32(3)
    np.testing.assert_allclose(jf.to("cpu")(x), feat(x), rtol=1e-6)


def test_cli_prints_cuda_source(tmp_path):
    (tmp_path / "gpumod.py").write_text(
        "import numpy as np\nimport prepjit as pj\n\n@pj.jit_preprocess(target='cuda')\ndef f(x):\n"
        "    return np.sqrt(x) * 2\n")
    env = dict(os.environ, PREPJIT_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(pj.__file__)), str(tmp_path)]))
    out = subprocess.run([sys.executable, "-m", "prepjit", "ir", "gpumod:f", "--stage", "cuda", "--spec", "float32[?]"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "prepjit_cuda_entry" in out.stdout and "sqrtf" in out.stdout, out.stderr


def test_import_does_not_load_cupy():
    code = "import sys, prepjit; assert 'cupy' not in sys.modules and 'cupy_backends' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


def test_batch_layout_stages_once_and_dedupes_tables():
    jf = _jit(small_eval)
    prog = jf._compiled_for((img(30, 41),), "cuda").program
    from prepjit.runtime.executable import spec_text

    planner = C.build_planner(prog, jf.arg_names, [spec_text(t) for t in prog.inputs])
    same = [planner(img(30, 41)) for _ in range(3)]
    lay = C.layout_batch(prog, same, "small_eval")
    tables = [b for b in prog.buffers.values() if b.kind == "table"]
    # three images, one set of weight tables (same size), two constants
    assert len(lay.stage_parts) == 3 + len(tables) + 2
    table = lay.resolve({"stage": 1 << 20, "temp": 1 << 30, ("out", 0): 1 << 40})
    assert table.shape == (3, len(prog.slots()))
    double = _jit(lambda x: x * 2)
    prog2 = double._compiled_for((f32(3),), "cuda").program
    plan2 = C.build_planner(prog2, ["x"], ["x"])
    with pytest.raises(ValueError, match="sample 1: output shape"):
        C.layout_batch(prog2, [plan2(f32(3)), plan2(f32(4))], "double")


# -- 3. on a GPU ------------------------------------------------------------------------------------------------------
gpu = pytest.mark.skipif(C.describe_no_device() is not None, reason="no CUDA device")


@pytest.mark.cuda
@gpu
def test_gpu_eval_batch_matches_cpu():  # pragma: no cover - needs a GPU
    import cupy

    cpu = _jit(eval_tf)
    gpu_fn = cpu.to("cuda")
    imgs = [img(300, 400), img(256, 256), img(500, 333)]
    out = gpu_fn.batch(imgs)
    assert isinstance(out, cupy.ndarray) and out.shape == (3, 3, 224, 224)
    np.testing.assert_array_equal(cupy.asnumpy(out), cpu.batch(imgs))
    assert gpu_fn.stats["specializations"] == 1


@pytest.mark.cuda
@gpu
@pytest.mark.parametrize("name", list(CASES))
def test_gpu_corpus_matches_cpu(name):  # pragma: no cover - needs a GPU
    import cupy

    fn, samples, rtol = CASES[name]
    cpu, dev = _jit(fn), _jit(fn, "cuda")
    for s in samples:
        for got, want in zip(_leaves(dev(*s)), _leaves(cpu(*s))):
            got = cupy.asnumpy(got)
            if rtol:  # CUDA's libdevice transcendentals: within 2 ULP
                np.testing.assert_allclose(got, want, rtol=4 * rtol if rtol > 1e-10 else 1e-12, equal_nan=True)
            else:
                np.testing.assert_array_equal(got, want)


@pytest.mark.cuda
@gpu
def test_gpu_torch_in_torch_out_and_warm_cache():  # pragma: no cover - needs a GPU
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    dev = _jit(eval_tf, "cuda")
    imgs = [torch.from_numpy(img(300, 400)).cuda(), torch.from_numpy(img(240, 320)).cuda()]
    out = dev.batch(imgs)
    assert isinstance(out, torch.Tensor) and out.is_cuda and out.shape == (2, 3, 224, 224)
    cpu = _jit(eval_tf)
    np.testing.assert_array_equal(out.cpu().numpy(), cpu.batch([i.cpu().numpy() for i in imgs]))
    again = _jit(eval_tf, "cuda")
    again.batch(imgs)
    assert again.stats["compiles"] == 0 and again.stats["disk_hits"] == 1


# -- every primitive on every dtype: all ufuncs and casts on edge values, one program per (dtype, arity) -----------
def _prim_programs():
    from _ops_helpers import DTYPES, special_values

    from prepjit.ir.tensor import BINARY_UFUNCS, UNARY_UFUNCS

    progs = []
    for dt in DTYPES:
        v = special_values(dt)
        sample = tuple(m.ravel() for m in np.meshgrid(v, v))  # every pair of edge values
        unary, binary = [], []
        for uf in UNARY_UFUNCS + BINARY_UFUNCS:  # keep the pairs prepjit traces (as NumPy: no invert on floats)
            one = uf.nin == 1
            try:
                _jit((lambda x, uf=uf: uf(x)) if one else (lambda x, y, uf=uf: uf(x, y)))._compiled_for(
                    sample[:1] if one else sample)
                (unary if one else binary).append(uf)
            except Exception:  # noqa: BLE001 - NumPy or prepjit rejects this pair
                pass
        casts = [np.dtype(t) for t in DTYPES]

        def fn(x, y, unary=tuple(unary), binary=tuple(binary), casts=tuple(casts)):
            return (tuple(uf(x) for uf in unary) + tuple(uf(x, y) for uf in binary)
                    + tuple(x.astype(t) for t in casts))

        fn.__name__ = f"prims_{dt}"
        names = [uf.__name__ for uf in unary + binary] + [f"astype({t})" for t in casts]
        progs.append(pytest.param(fn, sample, names, id=str(dt)))
    return progs


PRIM_PROGRAMS = _prim_programs()


@needs_nvrtc
@pytest.mark.parametrize("fn, sample, names", PRIM_PROGRAMS)
def test_every_primitive_compiles_with_nvrtc(fn, sample, names):
    text = _jit(fn, "cuda").source("cuda", example=sample)
    for arch in C.DEFAULT_AOT_ARCHS:
        assert C.compile_cubin(text, arch)[:4] == b"\x7fELF"


@needs_cxx
@pytest.mark.parametrize("fn, sample, names", PRIM_PROGRAMS)
def test_every_primitive_emulated_matches_cpu(fn, sample, names):
    from _ops_helpers import TRANSCENDENTAL, assert_leaf

    cpu = _jit(fn)
    outs, _ = E.run(cpu, [sample], threads=3)
    want = cpu(*sample)
    prog = cpu._compiled_for(sample, "cuda").program
    bufs = [b.name for b in prog.buffers.values() if b.kind == "output"]
    for name, (kind, ref), w in zip(names, prog.outputs, want):
        if kind != "buf" or ref not in bufs:  # an input returned as is (np.positive, astype to its own dtype)
            continue
        got = outs[bufs.index(ref)][0]
        if name.startswith("astype(uint32") or name.startswith("astype(uint64"):
            # out-of-range float → unsigned: the CPU's vectorized loop and the scalar C cast disagree (as NumPy's
            # own SIMD and scalar loops do); compare where the value is in range
            x = sample[0].astype(np.float64)
            keep = (~np.isnan(x) & (x >= 0) & (x < float(np.iinfo(w.dtype).max))) if sample[0].dtype.kind == "f" \
                else np.ones(w.shape, bool)
            got, w = got[keep], w[keep]
        # fmin/fmax of zeros of both signs: either zero (implementation-defined, as for NumPy's own loops)
        assert_leaf(got, w, f"{fn.__name__}: {name}", ulp=3 if name in TRANSCENDENTAL else None,
                    zero_sign=name not in ("fmin", "fmax"))


# -- resampling at many scales under the bounds checks (programs are shape-generic: one build, many sizes) --------
def _rs_bilinear(img):
    return I.center_crop(I.resize(img, 12, antialias=True), 10)


def _rs_bicubic_f32(img):
    return I.center_crop(I.resize(I.to_dtype(img, np.float32, scale=True), 12, interpolation="bicubic",
                                  antialias=False), 10)


def _rs_nearest(img):
    return I.center_crop(I.resize(img, 12, interpolation="nearest"), 10)


@needs_cxx
@pytest.mark.parametrize("fn", [_rs_bilinear, _rs_bicubic_f32, _rs_nearest], ids=lambda f: f.__name__[4:])
def test_emulated_resampling_any_scale_in_bounds(fn):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    cpu = _jit(fn)
    side = st.integers(1, 60)

    @settings(max_examples=12, deadline=None)
    @given(side, side, side, side, st.integers(1, 4))
    def check(h0, w0, h1, w1, c):
        samples = [(img(h0, w0, c),), (img(h1, w1, c),)]  # ragged: two scales in one launch
        outs, _ = E.run(cpu, samples, threads=3)
        for i, s in enumerate(samples):
            np.testing.assert_array_equal(outs[0][i], cpu(*s))

    check()


# -- random augmentations: the same counter-based draws as the CPU path (per-sample host parameters) -------------
def small_train(img):
    x = I.random_resized_crop(img, 12)
    x = I.random_horizontal_flip(x)
    x = I.to_dtype(x, np.float32, scale=True)
    return I.to_chw(I.normalize(x, MEAN, STD))


def small_cifar(img):
    """random_crop with zero padding (windows over the padding) and a per-call vertical flip."""
    return I.to_chw(I.random_vertical_flip(I.random_crop(img, 16, padding=3, fill=9)))


@needs_cxx
@pytest.mark.parametrize("fn", [small_train, small_cifar], ids=lambda f: f.__name__)
def test_emulated_random_augmentations_match_cpu(fn):
    cpu = _jit(fn)
    samples = [(img(40, 31),), (img(25, 50),), (img(33, 33),), (img(60, 20),)]
    outs, _ = E.run(cpu, samples, threads=4, seed=7, index=100)
    np.testing.assert_array_equal(outs[0], cpu.batch([s[0] for s in samples], seed=7, index=100))
    for i, s in enumerate(samples):  # sample i is (seed, index + i), whatever the batch
        np.testing.assert_array_equal(outs[0][i], cpu(*s, seed=7, index=100 + i))


@needs_cxx
@needs_nvrtc
def test_runtime_random_augmentations_on_emulated_device(monkeypatch, tmp_path):
    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path))
    E.emulated_device(monkeypatch)
    cpu, dev = _jit(small_train), _jit(small_train, "cuda")
    imgs = [img(40, 31), img(25, 50), img(33, 33)]
    np.testing.assert_array_equal(np.asarray(dev.batch(imgs, seed=3, index=10)), cpu.batch(imgs, seed=3, index=10))
    np.testing.assert_array_equal(np.asarray(dev(imgs[1], seed=3, index=11)), cpu(imgs[1], seed=3, index=11))


def small_jitter(img):
    """color_jitter: per-call float factors (bitcast parameters) and per-stage choices (hoisted switches)."""
    return I.color_jitter(img, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)


@needs_nvrtc
def test_color_jitter_compiles_with_nvrtc():
    text = _jit(small_jitter, "cuda").source("cuda", example=(img(20, 30),))
    assert "__longlong_as_double" in text
    for arch in C.DEFAULT_AOT_ARCHS:
        assert C.compile_cubin(text, arch)[:4] == b"\x7fELF"


@needs_cxx
def test_emulated_color_jitter_matches_cpu():
    cpu = _jit(small_jitter)
    samples = [(img(20, 30),), (img(17, 23),), (img(24, 24),)]
    for i, s in enumerate(samples):
        outs, _ = E.run(cpu, [s], threads=4, seed=5, index=40 + i)
        np.testing.assert_array_equal(outs[0][0], cpu(*s, seed=5, index=40 + i))
