"""``.batch`` on CPU through the native batch driver (prepjit.runtime.batch): the caller prepares rows, worker
threads run them in one native loop each. Every result is checked against single calls (themselves checked
against torch elsewhere) and against the per-sample path (one ctypes call per sample)."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import prepjit as pj
from prepjit import image as I
from prepjit.runtime import batch as native_batch
from prepjit.runtime.executable import addr

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pj.jit_preprocess
def eval_tf(img):
    x = I.resize(img, 64, antialias=True)
    x = I.center_crop(x, 48)
    x = I.to_dtype(x, np.float32, scale=True)
    x = I.normalize(x, MEAN, STD)
    return I.to_chw(x)


@pj.jit_preprocess
def train_tf(img):
    x = I.random_resized_crop(img, 32)
    x = I.random_horizontal_flip(x)
    return I.to_chw(I.to_dtype(x, np.float32, scale=True))


def _images(rng, n, lo=1, hi=160):
    return [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in rng.integers(lo, hi, (n, 2))]


@pytest.fixture
def runs(monkeypatch):
    """Records the native batches run: (rows, threads)."""
    calls = []
    real = native_batch.run

    def spy(prepare, start, n, workers, pool, failures, done=None, bulk=None):
        calls.append((n, workers))
        return real(prepare, start, n, workers, pool, failures, done, bulk)

    monkeypatch.setattr(native_batch, "run", spy)
    return calls


def _per_sample(monkeypatch, fn, *args, **kw):
    monkeypatch.setattr(native_batch, "ENABLED", False)
    try:
        return fn.batch(*args, **kw)
    finally:
        monkeypatch.setattr(native_batch, "ENABLED", True)


RESIDENT = [True, False] if native_batch.RESIDENT else [False]  # resident native workers, or pool threads


@pytest.mark.parametrize("resident", RESIDENT)
@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_ragged_batch_equals_single_calls_and_per_sample_path(threads, resident, runs, monkeypatch):
    monkeypatch.setattr(native_batch, "RESIDENT", resident)
    imgs = _images(np.random.default_rng(threads), 37)
    got = eval_tf.batch(imgs, threads=threads)
    assert runs == [(37, threads)]
    np.testing.assert_array_equal(got, np.stack([eval_tf(im) for im in imgs]))
    np.testing.assert_array_equal(got, _per_sample(monkeypatch, eval_tf, imgs, threads=threads))


@pytest.mark.parametrize("streaming", [True, False])
def test_random_ops_key_on_the_sample_index_in_any_split(streaming, monkeypatch):
    monkeypatch.setattr(native_batch, "STREAMING", streaming)
    imgs = _images(np.random.default_rng(7), 20, 8, 90)
    one = np.stack([train_tf(im, seed=5, index=40 + i) for i, im in enumerate(imgs)])
    for threads in (1, 2, 4):
        np.testing.assert_array_equal(train_tf.batch(imgs, seed=5, index=40, threads=threads), one)
    parts = [train_tf.batch(imgs[:7], seed=5, index=40, threads=2), train_tf.batch(imgs[7:], seed=5, index=47)]
    np.testing.assert_array_equal(np.concatenate(parts), one)


@pytest.mark.parametrize("resident", RESIDENT)
def test_many_tiny_samples_workers_wait_for_rows(resident, runs, monkeypatch):
    """Rows cost less to run than to prepare: workers catch up with the caller and wait (spin, then sleep)."""
    monkeypatch.setattr(native_batch, "RESIDENT", resident)
    monkeypatch.setattr(native_batch, "UNIFORM_MIN", 1 << 30)  # rows prepared one by one, as they come
    f = pj.jit_preprocess(lambda x: x * 3 - 1)
    xs = [np.full((2, 2), k, np.float32) for k in range(600)]
    for threads in (2, 3):
        got = f.batch(xs, threads=threads)
        np.testing.assert_array_equal(got, np.stack(xs) * 3 - 1)
    assert [w for _, w in runs] == [2, 3]


def test_scratch_arenas_grow_mid_batch():
    """Scratch needs rise sample by sample (larger images): new arenas for later rows, earlier rows unchanged."""
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 256, (s, s + 3, 3), dtype=np.uint8) for s in (4, 9, 30, 70, 200, 5, 420, 12)]
    for threads in (1, 2):
        got = eval_tf.batch(imgs, threads=threads)
        np.testing.assert_array_equal(got, np.stack([eval_tf(im) for im in imgs]))


def test_specializations_mix_in_one_batch(monkeypatch):
    """Samples of different ranks run different kernels (argument slots, relocations) from one table; a
    specialization that cannot run as a row (no ``prep``) runs in the caller's thread."""
    f = pj.jit_preprocess(lambda x: (x * 2).sum() + 1)
    rng = np.random.default_rng(4)
    xs = [rng.random((3, 4)).astype(np.float32) if k % 3 else rng.random(5).astype(np.float32) for k in range(14)]
    want = np.array([f(x) for x in xs])
    np.testing.assert_array_equal(f.batch(xs, threads=2), want)
    one_d = f._execs[next(k for k in f._execs if k[0][1] == 1)]
    monkeypatch.setattr(one_d, "prep", None)
    xs[0] = xs[1]  # the first sample decides the native path: make it a 2-d one
    want[0] = want[1]
    for threads in (1, 2):
        np.testing.assert_array_equal(f.batch(xs, threads=threads), want)


def _count_preps(monkeypatch, fn) -> list:
    """Counts calls of each of ``fn``'s specializations' prologue (``prep``)."""
    calls = []
    for exe in fn._execs.values():
        real = exe.prep

        def counted(*a, real=real):
            calls.append(1)
            return real(*a)

        monkeypatch.setattr(exe, "prep", counted)
    return calls


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_uniform_batches_take_every_row_from_two_probe_rows(threads, monkeypatch):
    """Samples of one shape, dtype and strides (a fixed-size dataset) through a pipeline that draws nothing: every
    row's argument slots come from two probe rows (``native_batch.uniform_rows``), not from one prologue call a
    sample. Results equal single calls: new arrays and ``out=``, contiguous samples, strided views of one array
    (as a list, and as the stacked array itself), a two-argument function, several outputs (a dict). Rows are
    claimed in shrinking blocks (guided): every row runs once."""
    rng = np.random.default_rng(threads)
    imgs = [rng.integers(0, 256, (37, 50, 3), dtype=np.uint8) for _ in range(40)]
    stack = rng.integers(0, 256, (30, 70, 90, 3), dtype=np.uint8)
    views = [stack[k, ::2, 1::3] for k in range(30)]  # strided, one stride pattern
    two = pj.jit_preprocess(lambda a, b: a * 2.0 - b)
    xs, ys = [rng.random((5, 7)) for _ in range(20)], [rng.random((5, 7)).astype(np.float32) for _ in range(20)]
    several = pj.jit_preprocess(lambda x: {"scaled": x * 0.5, "total": x.sum(), "cols": x.T.astype(np.float32)})
    for fn, cols in ((eval_tf, [imgs]), (eval_tf, [views]), (eval_tf, [stack[:, ::2, 1::3]]), (two, [xs, ys]),
                     (several, [xs])):
        singles = [fn(*args) for args in zip(*cols)]
        want = ({k: np.stack([r[k] for r in singles]) for k in singles[0]} if isinstance(singles[0], dict)
                else np.stack(singles))
        calls = _count_preps(monkeypatch, fn)
        got = fn.batch(*cols, threads=threads)
        assert len(calls) == 3  # sample 0's outputs, then the two probe rows
        out = {k: np.full_like(v, np.nan) for k, v in want.items()} if isinstance(want, dict) else \
            np.full_like(want, np.nan)
        assert fn.batch(*cols, threads=threads, out=out) is out
        for result in (got, out):
            for k in (want if isinstance(want, dict) else [None]):
                np.testing.assert_array_equal(result[k] if k else result, want[k] if k else want)
        monkeypatch.undo()


def test_torch_tensor_batches_of_one_shape_take_uniform_rows(monkeypatch):
    """CPU tensors (a list, or one stacked tensor) are read as arrays once, so samples of one shape take uniform
    rows too; the result is a tensor equal to the arrays' batch, and a sample of a dtype NumPy lacks is named."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (40, 44, 3), dtype=np.uint8) for _ in range(16)]
    want = eval_tf.batch(imgs)
    for tensors in ([torch.from_numpy(im) for im in imgs], torch.from_numpy(np.stack(imgs))):
        with pytest.MonkeyPatch.context() as mp:
            calls = _count_preps(mp, eval_tf)
            got = eval_tf.batch(tensors, threads=2)
        assert isinstance(got, torch.Tensor) and len(calls) == 3
        np.testing.assert_array_equal(got.numpy(), want)
    f = pj.jit_preprocess(lambda x: x * 2.0)
    bad = [torch.ones(3, 4) for _ in range(6)]
    bad[3] = torch.ones(3, 4, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"sample 3: .*bfloat16"):
        f.batch(bad)


def test_batches_that_are_not_uniform_prepare_each_row(monkeypatch):
    """A different shape, the same array twice at the start, a misaligned sample, or random draws: each sample's
    prologue runs, and results equal single calls."""
    rng = np.random.default_rng(11)
    imgs = [rng.integers(0, 256, (33, 41, 3), dtype=np.uint8) for _ in range(12)]
    f = pj.jit_preprocess(lambda x: x * 0.5 + 1.0)
    raw = np.zeros(12 * 30 * 4 + 1, np.uint8)
    floats = [rng.random(30).astype(np.float32) for _ in range(12)]
    floats[5] = np.frombuffer(raw, np.float32, 30, offset=1)  # same shape and strides, misaligned
    cases = [(eval_tf, imgs[:6] + [imgs[6][:, :40]] + imgs[7:], {}),
             (eval_tf, [imgs[0]] + imgs, {}),
             (f, floats, {}),
             (train_tf, imgs, {"seed": 3, "index": 8})]
    for fn, batch, kw in cases:
        if kw:
            want = np.stack([fn(x, seed=3, index=8 + i) for i, x in enumerate(batch)])
        else:
            want = np.stack([fn(x) for x in batch])
        calls = _count_preps(monkeypatch, fn)
        np.testing.assert_array_equal(fn.batch(batch, threads=2, **kw), want)
        assert len(calls) == len(batch) + 1, fn  # sample 0's outputs, then every row
        monkeypatch.undo()


@pj.jit_preprocess
def crop_flip_tf(img):  # CIFAR-style: draws with array forms (offsets, coins), no per-call tables
    x = I.random_vertical_flip(I.random_horizontal_flip(I.random_crop(img, 24, padding=4)), p=0.3)
    return I.to_chw(I.normalize(I.to_dtype(x, np.float32, scale=True), MEAN, STD))


@pj.jit_preprocess
def reflect_gray_tf(img):
    x = I.random_crop(img, (18, 16), padding=(1, 2), padding_mode="reflect")
    return I.random_grayscale(x, p=0.5)


@pj.jit_preprocess
def jitter_tf(img):  # factors and order drawn per sample (rng_uniform_bits, rng_permutation)
    return I.color_jitter(img, 0.4, 0.4, 0.4, 0.1)


@settings(max_examples=24, deadline=None)
@given(st.sampled_from([crop_flip_tf, reflect_gray_tf, jitter_tf]), st.integers(16, 40), st.integers(16, 40),
       st.integers(4, 30), st.integers(0, 2 ** 63 - 1), st.integers(0, 2 ** 40), st.sampled_from([1, 2]))
def test_uniform_batches_draw_every_sample_at_once(fn, h, w, n, seed, index, threads):
    """Random crops, flips, grayscale and color jitter on samples of one shape: the draws of every sample come from
    one run of
    the prologue over an array of sample indices (``uniform_rows``); the batch equals single calls with each
    sample's index, and no per-sample prologue runs."""
    rng = np.random.default_rng(h * 41 + w)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    want = np.stack([fn(im, seed=seed, index=index + i) for i, im in enumerate(imgs)])
    with pytest.MonkeyPatch.context() as mp:
        calls = _count_preps(mp, fn)
        got = fn.batch(imgs, seed=seed, index=index, threads=threads)
    np.testing.assert_array_equal(got, want)
    assert len(calls) == 3  # sample 0's outputs, then the two probe rows


def test_forget_sizes_clears_the_array_prologue_too():
    rng = np.random.default_rng(3)
    imgs = [rng.integers(0, 256, (30, 31, 3), dtype=np.uint8) for _ in range(8)]
    crop_flip_tf.batch(imgs, seed=1)
    exe = next(e for e in crop_flip_tf._execs.values() if getattr(e, "vector_prep", None))
    memos = [m for k, m in exe.vector_prep[0].__globals__.items() if k.startswith("_shape_memo_")]
    assert memos and any(memos)
    exe.forget_sizes()
    assert not any(memos)
    want = np.stack([crop_flip_tf(im, seed=1, index=i) for i, im in enumerate(imgs)])
    np.testing.assert_array_equal(crop_flip_tf.batch(imgs, seed=1), want)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 ** 64 - 1), st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), min_size=1, max_size=8),
       st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1))
def test_rng_array_form_equals_scalar_draws(seed, indices, stream, draw):
    from prepjit.ir import dims as D
    from prepjit.kernels import rng as R

    index = np.array(indices, np.int64)
    assert R.uniform_v(seed, index, stream, draw).tolist() == [R.uniform(seed, i, stream, draw) for i in indices]
    seed, stream = seed >> 1, stream >> 1  # (the dim calls take int64s)
    lo, hi = R.float_to_bits(0.6), R.float_to_bits(1.4)
    calls = [("rng_bernoulli", (stream, R.float_to_bits(0.3))), ("rng_uniform_bits", (stream, draw % 4, lo, hi)),
             ("random_crop_offset", (stream, draw % 2, 40, 32)),
             *[("rng_permutation", (stream, 4, k)) for k in range(4)]]
    for name, args in calls:
        got = D.VECTOR_CALLS[name](seed, index, *args)
        assert got.tolist() == [D.CALLS[name](seed, int(i), *args) for i in indices], name


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("bad_at", [0, 1, 9, 23])
def test_bad_sample_names_the_lowest_index_and_rows_before_it_are_written(threads, bad_at):
    imgs = _images(np.random.default_rng(bad_at), 24, 4, 120)
    want = np.stack([eval_tf(im) for im in imgs])
    bad = list(imgs)
    bad[bad_at] = np.zeros((0, 5, 3), np.uint8)
    if bad_at + 5 < len(bad):
        bad[bad_at + 5] = np.zeros((5, 5), np.uint8)  # a later, different error is not the one reported
    out = np.full(want.shape, np.nan, np.float32)
    with pytest.raises(ValueError, match=rf"eval_tf\.batch\(\): sample {bad_at}: .*height 0"):
        eval_tf.batch(bad, threads=threads, out=out)
    np.testing.assert_array_equal(out[:bad_at], want[:bad_at])
    np.testing.assert_array_equal(eval_tf.batch(imgs, threads=threads), want)  # and the next batch is fine


def test_output_shape_mismatch_and_non_value_errors(monkeypatch):
    resize_only = pj.jit_preprocess(lambda img: I.resize(img, 16))  # ragged outputs cannot be stacked
    with pytest.raises(ValueError, match=r"sample 2: output 0 has shape \(16, 32, 3\) here but \(16, 16, 3\)"):
        resize_only.batch([np.zeros((8, 8, 3), np.uint8)] * 2 + [np.zeros((8, 16, 3), np.uint8)], threads=2)

    class Boom(RuntimeError):
        pass

    class Bad:  # converting it raises something else than a bad-sample error: re-raised unchanged
        def __array__(self, *a, **k):
            raise Boom("no")

    with pytest.raises((Boom, TypeError)):
        eval_tf.batch([np.zeros((9, 9, 3), np.uint8)] * 5 + [Bad()], threads=2)
    imgs = _images(np.random.default_rng(1), 6)
    np.testing.assert_array_equal(eval_tf.batch(imgs, threads=2), np.stack([eval_tf(im) for im in imgs]))


@pytest.mark.parametrize("resident", RESIDENT)
def test_concurrent_batches_from_several_threads(resident, monkeypatch):
    """Each calling thread keeps its own scratch arenas (and takes its own group of resident workers); batches
    from several threads at once stay correct."""
    monkeypatch.setattr(native_batch, "RESIDENT", resident)
    imgs = _images(np.random.default_rng(9), 16, 4, 140)
    want = np.stack([eval_tf(im) for im in imgs])
    errors = []

    def go():
        try:
            for _ in range(5):
                np.testing.assert_array_equal(eval_tf.batch(imgs, threads=2), want)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=go) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.sampled_from([np.uint8, np.int32, np.float32, np.float64]),
       st.lists(st.integers(1, 6), min_size=0, max_size=4), st.integers(0, 3))
def test_data_address_matches_numpy(offset, dtype, shape, step):
    a = np.zeros([s + 2 for s in shape] + [9], dtype)
    views = [a, a[..., offset:], a[..., :: step + 1], a.T, a.reshape(-1)[offset:]]
    for v in views:
        assert addr(v) == v.ctypes.data


def test_driver_loaded_by_elf_and_by_lljit_runs_the_same(monkeypatch):
    """The driver is a cached object like any kernel: prepjit's ELF loader maps it by default; LLJIT agrees."""
    from prepjit.lowering import batch_driver as B
    from prepjit.runtime import native
    from prepjit.runtime.cache import get_cache

    monkeypatch.delenv("PREPJIT_LOADER", raising=False)
    imgs = _images(np.random.default_rng(12), 11, 3, 100)
    want = np.stack([eval_tf(im) for im in imgs])
    elf = native_batch.driver()
    assert elf.loader == "elf"
    obj = get_cache().load(native_batch.driver_key()[0]).payload
    monkeypatch.setattr(native_batch, "_driver", native._load_lljit(obj, B.SYMBOL))
    for threads in (1, 2):
        np.testing.assert_array_equal(eval_tf.batch(imgs, threads=threads), want)


@pytest.mark.skipif(not native_batch.RESIDENT, reason="resident workers need Linux futexes on x86-64")
def test_resident_workers_take_rows_sleep_between_batches_and_leave_each_batch(monkeypatch):
    """Resident workers wait for batches in native code: asleep on a futex between batches (woken by the next
    post), asleep when rows run out mid-batch (woken by the next published row). They run rows, and leave
    (acknowledge) every batch they were given, at the latest an instant after .batch returns."""
    import time

    monkeypatch.setattr(native_batch, "UNIFORM_MIN", 1 << 30)  # rows published one by one, as they come
    f = pj.jit_preprocess(lambda x: (x * 2 + 1).sum(axis=0))
    xs = [np.full((300, 400), k, np.float32) for k in range(40)]
    want = np.stack([(x * 2 + 1).sum(axis=0) for x in xs])
    ran = 0
    for _ in range(20):  # (under load, e.g. beside another test process, a woken worker may get no CPU in time)
        time.sleep(0.06)  # past the spin: the workers are asleep when the batch is posted
        np.testing.assert_array_equal(f.batch(xs, threads=3), want)
        groups = list(native_batch._resident_all)
        deadline = time.monotonic() + 30
        while not all(h[0] == h[2] for g in groups for h in g.homes) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert groups and all(h[0] == h[2] for g in groups for h in g.homes)  # seq == ack: left the batch
        ran = sum(int(c[5]) for g in groups for c in g.ctls)
        if ran:
            break
    assert ran > 0  # the workers, not only the caller, ran rows


def test_process_with_resident_workers_exits_and_forks_cleanly():
    """The workers stop before interpreter teardown frees their code; a forked child (which has none of the
    parent's threads) starts its own."""
    import subprocess
    import sys

    code = """
import os, numpy as np, prepjit as pj
f = pj.jit_preprocess(lambda x: x * 2 + 1)
xs = [np.full((64, 64), k, np.float32) for k in range(50)]
want = np.stack(xs) * 2 + 1
assert (f.batch(xs, threads=2) == want).all()
pid = os.fork()
if pid == 0:
    ok = (f.batch(xs, threads=2) == want).all() and (f.batch(xs, threads=3) == want).all()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert (f.batch(xs, threads=2) == want).all()
print("done")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "done", (r.returncode, r.stderr[-2000:])


@pytest.mark.skipif(not native_batch.RESIDENT, reason="resident workers need Linux futexes on x86-64")
def test_batch_does_not_wait_for_a_resident_worker_that_never_wakes(monkeypatch):
    """A worker whose wake-up comes late (on a VM, its CPU may be descheduled for milliseconds) holds up nothing:
    the caller runs the rows nobody claimed and returns once every claimed row is done, without waiting for the
    worker to acknowledge the batch (it could claim no row any more)."""
    from prepjit.lowering import batch_driver as B

    group = native_batch._Resident()  # one worker that never runs: its blocks exist, its thread does not
    group.homes.append(np.zeros(B.HOME_WORDS, np.int64))
    group.ctls.append(np.zeros(B.CTL_WORDS, np.int64))
    monkeypatch.setattr(native_batch, "_resident_free", [group])
    monkeypatch.setattr(native_batch, "_resident_all", [])
    imgs = _images(np.random.default_rng(21), 12, 4, 120)
    np.testing.assert_array_equal(eval_tf.batch(imgs, threads=2), np.stack([eval_tf(im) for im in imgs]))
    assert group.homes[0][0] == 1 and group.homes[0][2] == 0  # posted, never acknowledged
    assert native_batch._resident_free == [group]  # back for the next batch, which waits for its acknowledgement
