"""Image pipelines: prepjit vs torch ops, PIL, OpenCV and a hand-written numba kernel, side by side.

    python benchmarks/bench_image.py [--rounds 15] [--batch 64]

Pipelines (per image, scikit-image's photos, 300-640 px):
  eval   resize(256, antialias) → center_crop(224) → to_dtype(float32, scale) → normalize → CHW
  train  random_resized_crop(224) → random_horizontal_flip → to_dtype → normalize → CHW
  cifar  random_crop(32, padding=4) → random_horizontal_flip → to_dtype → normalize → CHW on 32×32 images;
         and the test-time transform (to_dtype → normalize → CHW): a batch of one shape, no random draws
  ragged the eval pipeline on a batch (--batch) of crops of those photos, each of another size, new to the
         process (per-size caches cleared before each run: what a first epoch over a real dataset sees)
  hwc    ops on HWC uint8 pixels, no resize: brightness, to_dtype, grayscale, center_crop + normalize,
         saturation, hue, color_jitter, against torchvision v2's arithmetic in torch ops (the color ops as
         tests/test_image_color.py states them), outputs checked equal first
  jpeg   the eval pipeline from JPEG bytes (photos encoded at quality 90; and one 2048×1536 photo), exact
         decoding and decode(reduce="auto"); peers: PIL decode + torch ops, simplejpeg decode + torch ops
Peers run in the same process, interleaved round by round (the machine is shared and noisy; each row is the
best round): torch ops on uint8 tensors (torchvision v2's path, 1 thread), PIL (resize, crop, NumPy
normalize), OpenCV INTER_LINEAR (not antialiased: less work, different output), a numba kernel fusing the same
integer passes as torch, and prepjit. Outputs are checked before timing: prepjit vs torch within 1e-5.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _numba_kernel():
    """The eval pipeline as a numba user would fuse it: torch's integer passes (its weight tables), crop window,
    normalize and CHW in one function."""
    import numba

    @numba.njit(cache=True, nogil=True)
    def fused(img, xs, xn, xw, px, ys, yn, yw, py, top, left, mean, std, out):
        h, _, c = img.shape
        oh, ow = out.shape[1], out.shape[2]
        mid = np.empty((h, ow, c), np.uint8)
        for r in range(h):
            for j in range(ow):
                jj = j + left
                x0, n = xs[jj], xn[jj]
                for ch in range(c):
                    acc = np.int32(1 << (px - 1))
                    for k in range(n):
                        acc += np.int32(img[r, x0 + k, ch]) * xw[jj, k]
                    mid[r, j, ch] = min(max(acc >> px, 0), 255)
        scale = np.float32(1.0 / 255)
        for i in range(oh):
            ii = i + top
            y0, n = ys[ii], yn[ii]
            for j in range(ow):
                for ch in range(c):
                    acc = np.int32(1 << (py - 1))
                    for k in range(n):
                        acc += np.int32(mid[y0 + k, j, ch]) * yw[ii, k]
                    v = np.float32(min(max(acc >> py, 0), 255))
                    out[ch, i, j] = (v * scale - mean[ch]) / std[ch]

    return fused


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    import skimage.data
    import torch
    import torch.nn.functional as F
    from PIL import Image

    import prepjit as pj
    from prepjit import image as I
    from prepjit.ir.image import (random_crop_offset, random_resized_crop_params, rng_bernoulli, tv_crop_anchor,
                                  tv_resize_hw)
    from prepjit.kernels.resample import resize_weights
    from prepjit.kernels.rng import float_to_bits
    from prepjit.runtime.threads import available_cpus

    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        cv2 = None
    try:
        numba_fused = _numba_kernel()
    except ImportError:
        numba_fused = None
    torch.set_num_threads(1)

    sig = (pj.TensorSpec(np.uint8, (None, None, 3)),)

    @pj.jit_preprocess(signature=sig)
    def eval_tf(img):
        x = I.resize(img, 256, antialias=True)
        x = I.center_crop(x, 224)
        x = I.to_dtype(x, np.float32, scale=True)
        x = I.normalize(x, MEAN, STD)
        return I.to_chw(x)

    @pj.jit_preprocess(signature=sig)
    def train_tf(img):
        x = I.random_resized_crop(img, 224)
        x = I.random_horizontal_flip(x)
        x = I.to_dtype(x, np.float32, scale=True)
        x = I.normalize(x, MEAN, STD)
        return I.to_chw(x)

    def jpeg_tf(reduce):
        @pj.jit_preprocess(signature=(pj.BYTES,))
        def f(data):
            return eval_tf.fn(I.decode(data, reduce=reduce))
        return f

    jpeg_exact, jpeg_auto = jpeg_tf(None), jpeg_tf("auto")

    @pj.jit_preprocess(signature=sig)
    def brighten(img):  # an elementwise op on HWC pixels, no resize: the (W, 3) inner loops as one
        return I.adjust_brightness(img, 1.2)

    @pj.jit_preprocess(signature=sig)
    def as_float(img):
        return I.to_dtype(img, np.float32, scale=True)

    @pj.jit_preprocess(signature=sig)
    def gray(img):
        return I.rgb_to_grayscale(img)

    @pj.jit_preprocess(signature=sig)
    def crop_norm(img):  # a dataset stored at its training size: crop, no resize
        x = I.center_crop(img, 224)
        x = I.to_dtype(x, np.float32, scale=True)
        return I.to_chw(I.normalize(x, MEAN, STD))

    @pj.jit_preprocess(signature=sig)
    def saturate(img):
        return I.adjust_saturation(img, 1.3)

    @pj.jit_preprocess(signature=sig)
    def hue(img):
        return I.adjust_hue(img, 0.1)

    # torchvision v2's color arithmetic with torch ops, as the tests state it (torchvision does not import here)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from test_image_color import jitter, torch_jitter, tv_hue, tv_saturation

    def torch_gray(t):  # torchvision v2's arithmetic on an HWC uint8 tensor
        r, g, b = t.permute(2, 0, 1).unbind(0)
        return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).to(torch.uint8)

    m_t, s_t = torch.tensor(MEAN).view(-1, 1, 1), torch.tensor(STD).view(-1, 1, 1)
    m_np, s_np = np.array(MEAN, np.float32), np.array(STD, np.float32)

    def sizes(h, w):
        oh, ow = tv_resize_hw(h, w, 256, -1, 1), tv_resize_hw(h, w, 256, -1, 0)
        return oh, ow, tv_crop_anchor(oh, 224), tv_crop_anchor(ow, 224)

    def torch_norm(x):
        return (x.to(torch.float32).mul_(1.0 / 255) - m_t) / s_t

    def torch_eval(t):  # t: HWC uint8 tensor, channels-last as torchvision gets it from decode_jpeg/PIL
        oh, ow, top, left = sizes(*t.shape[:2])
        x = F.interpolate(t.permute(2, 0, 1)[None], size=(oh, ow), mode="bilinear", antialias=True,
                          align_corners=False)[0]
        return torch_norm(x[:, top:top + 224, left:left + 224])

    def torch_crop_norm(t):
        top, left = tv_crop_anchor(t.shape[0], 224), tv_crop_anchor(t.shape[1], 224)
        return torch_norm(t.permute(2, 0, 1)[:, top:top + 224, left:left + 224])

    def pil_eval(img):
        oh, ow, top, left = sizes(*img.shape[:2])
        im = Image.fromarray(img).resize((ow, oh), Image.BILINEAR).crop((left, top, left + 224, top + 224))
        x = np.asarray(im, np.float32) * np.float32(1.0 / 255)
        return ((x - m_np) / s_np).transpose(2, 0, 1)

    def cv_eval(img):
        oh, ow, top, left = sizes(*img.shape[:2])
        x = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR)[top:top + 224, left:left + 224]
        x = x.astype(np.float32) * np.float32(1.0 / 255)
        return ((x - m_np) / s_np).transpose(2, 0, 1)

    tables = {}

    def numba_eval(img):
        h, w = img.shape[:2]
        oh, ow, top, left = sizes(h, w)
        key = (h, w)
        if key not in tables:
            tx, ty = resize_weights(w, ow), resize_weights(h, oh)
            tables[key] = (tx.start, tx.size, tx.weights.astype(np.int32), tx.precision,
                           ty.start, ty.size, ty.weights.astype(np.int32), ty.precision)
        out = np.empty((3, 224, 224), np.float32)
        numba_fused(img, *tables[key][:4], *tables[key][4:], top, left, m_np, s_np, out)
        return out

    rrc_bits = [float_to_bits(v) for v in (0.08, 1.0, 3 / 4, 4 / 3)]

    def torch_train(t, index, seed=0):  # the same boxes and flips prepjit draws, done with torch ops
        top, left, h, w = random_resized_crop_params(t.shape[0], t.shape[1], seed, index, 1, *rrc_bits)
        x = F.interpolate(t[top:top + h, left:left + w].permute(2, 0, 1)[None], size=(224, 224), mode="bilinear",
                          antialias=True, align_corners=False)[0]
        if rng_bernoulli(seed, index, 2, float_to_bits(0.5)):
            x = x.flip(-1)
        return torch_norm(x)

    @pj.jit_preprocess(signature=sig)
    def cifar_tf(img):  # CIFAR's augmentation: RandomCrop(32, padding=4) + RandomHorizontalFlip + normalize
        x = I.random_horizontal_flip(I.random_crop(img, 32, padding=4))
        x = I.to_dtype(x, np.float32, scale=True)
        return I.to_chw(I.normalize(x, MEAN, STD))

    @pj.jit_preprocess(signature=sig)
    def cifar_test(img):  # CIFAR's test-time transform: ToTensor + Normalize
        return I.to_chw(I.normalize(I.to_dtype(img, np.float32, scale=True), MEAN, STD))

    def torch_cifar(t, index, seed=0):  # the same offsets and flips, with torch ops
        row, col = (random_crop_offset(seed, index, 1, k, 40, 32) for k in (0, 1))
        x = F.pad(t.permute(2, 0, 1), (4, 4, 4, 4))[:, row:row + 32, col:col + 32]
        if rng_bernoulli(seed, index, 2, float_to_bits(0.5)):
            x = x.flip(-1)
        return torch_norm(x)

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    tensors = [torch.from_numpy(p) for p in photos]
    tiny = [np.ascontiguousarray(p[::8, ::8][:32, :32]) for p in photos] * 64  # 256 images of 32×32
    tiny_t = [torch.from_numpy(p) for p in tiny]
    jpegs = []
    for p in photos:
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, "JPEG", quality=90)
        jpegs.append(buf.getvalue())
    big = Image.fromarray(skimage.data.astronaut()).resize((2048, 1536), Image.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    big_jpeg = buf.getvalue()

    def pil_decode(data):
        with Image.open(io.BytesIO(data)) as im:
            return torch.from_numpy(np.asarray(im.convert("RGB")))

    try:
        import simplejpeg
    except ImportError:
        simplejpeg = None

    def turbo_decode(data):  # libjpeg-turbo's TurboJPEG API straight into NumPy: the fastest decoding peer
        return torch.from_numpy(simplejpeg.decode_jpeg(data))

    # -- agreement before timing ------------------------------------------------------------------------------------
    for p, t in zip(photos, tensors):
        assert np.abs(eval_tf(p) - torch_eval(t).numpy()).max() <= 1e-5
        if numba_fused is not None:
            assert np.abs(numba_eval(p) - torch_eval(t).numpy()).max() <= 1e-5
        for i in range(3):
            assert np.abs(train_tf(p, index=i) - torch_train(t, i).numpy()).max() <= 1e-5
    for d in jpegs:
        assert np.abs(jpeg_exact(d) - torch_eval(pil_decode(d)).numpy()).max() <= 1e-5
    for p, t in zip(photos, tensors):
        assert np.array_equal(brighten(p), (t.float() * 1.2).clamp_(0, 255).to(torch.uint8).numpy())
        assert np.array_equal(as_float(p), t.float().mul_(1.0 / 255).numpy())
        assert np.array_equal(gray(p)[..., 0], torch_gray(t).numpy())
        assert np.abs(crop_norm(p) - torch_crop_norm(t).numpy()).max() <= 1e-5
    for i in range(8):
        assert np.abs(cifar_tf(tiny[i], index=i) - torch_cifar(tiny_t[i], i).numpy()).max() <= 1e-5
        assert np.abs(cifar_test(tiny[i]) - torch_norm(tiny_t[i].permute(2, 0, 1)).numpy()).max() <= 1e-5
        assert np.array_equal(saturate(p), tv_saturation(t.permute(2, 0, 1), 1.3).permute(1, 2, 0).numpy())
        assert np.array_equal(hue(p), tv_hue(t.permute(2, 0, 1), 0.1).permute(1, 2, 0).numpy())
        assert np.array_equal(jitter(p, seed=0, index=3), torch_jitter(p, 0, 3))
    std_levels = np.array(STD, np.float32)[:, None, None] * 255  # normalized units → uint8 levels
    pil_diff = max(float((np.abs(pil_eval(p) - torch_eval(t).numpy()) * std_levels).max())
                   for p, t in zip(photos, tensors))
    auto_err = [np.abs(jpeg_auto(d) - jpeg_exact(d)) for d in jpegs + [big_jpeg]]
    auto_err_u8 = [e * std_levels for e in auto_err]

    # a real dataset's sizes: every photo a different size, each new to the process (prepjit's per-size caches
    # of resize weight tables are cleared before every run of these rows: the worst case, a first epoch)
    rng = np.random.default_rng(7)
    ragged = []
    for k in range(args.batch):
        p = photos[k % len(photos)]
        h, w = (int(rng.integers(d // 2, d + 1)) for d in p.shape[:2])
        ragged.append(np.ascontiguousarray(p[:h, :w]))
    ragged_t = [torch.from_numpy(r) for r in ragged]
    for r, t in zip(ragged, ragged_t):
        assert np.abs(eval_tf(r) - torch_eval(t).numpy()).max() <= 1e-5

    from prepjit.kernels import image_tables
    from prepjit.runtime import executable

    def new_sizes(fn, native_tables=True):
        def run():
            for cache in (image_tables._table, image_tables.rs_start, image_tables._span, executable._table):
                cache.cache_clear()
            for exe in eval_tf._execs.values():  # and the sizes its prologue remembers per input shape
                exe.forget_sizes()
            image_tables._NATIVE = native_tables  # False: the tables built by the NumPy spec (before native)
            try:
                return fn()
            finally:
                image_tables._NATIVE = True
        return run

    # -- timing: every candidate once per round, interleaved; best round ----------------------------------------
    cands: dict = {}

    def add(name, fn, per):
        cands[name] = (fn, per)

    n = len(photos)
    add("eval/torch", lambda: [torch_eval(t) for t in tensors], n)
    add("eval/pil", lambda: [pil_eval(p) for p in photos], n)
    if cv2 is not None:
        add("eval/opencv", lambda: [cv_eval(p) for p in photos], n)
    if numba_fused is not None:
        add("eval/numba", lambda: [numba_eval(p) for p in photos], n)
    add("eval/prepjit", lambda: [eval_tf(p) for p in photos], n)
    batch = (photos * (args.batch // n + 1))[:args.batch]
    jpeg_batch = (jpegs * (args.batch // n + 1))[:args.batch]  # decoding runs in the threads too
    threads = available_cpus()
    buf = np.empty((len(batch), 3, 224, 224), np.float32)  # out=: one buffer reused batch after batch
    add("eval/prepjit batch t1", lambda: eval_tf.batch(batch, threads=1), len(batch))
    add("eval/prepjit batch tN", lambda: eval_tf.batch(batch, threads=threads), len(batch))
    add("eval/prepjit batch out t1", lambda: eval_tf.batch(batch, threads=1, out=buf), len(batch))
    add("eval/prepjit batch out tN", lambda: eval_tf.batch(batch, threads=threads, out=buf), len(batch))
    # controls: what 1 → N threads gives on this machine right now, for pure compute (SHA-256 of an L2-sized
    # buffer; vector float arithmetic on L2-resident arrays, the kind of work prepjit's kernels do) and for memory
    # traffic (copying 32 MB arrays); all release the GIL like prepjit's native calls
    ctl = ThreadPoolExecutor(threads)
    small, big_src = b"x" * (256 << 10), [np.ones(32 << 20, np.uint8) for _ in range(threads)]
    big_dst = [np.empty_like(a) for a in big_src]

    def sha(k, reps):
        for _ in range(reps):
            hashlib.sha256(small).digest()

    def copy(k, reps):
        for _ in range(reps):
            np.copyto(big_dst[k], big_src[k])

    vec = [tuple(np.random.default_rng(k).random(1 << 16, np.float32) for _ in range(3)) for k in range(threads)]

    def simd(k, reps):  # vector float arithmetic on L2-resident arrays: compute like prepjit's kernels, no memory
        a, b, c = vec[k]
        for _ in range(reps):
            np.multiply(a, b, out=c)
            np.add(c, a, out=c)
            np.sqrt(c, out=c)

    for name, fn, reps in (("sha", sha, 64), ("simd", simd, 256), ("copy", copy, 4)):
        add(f"control/{name} t1", lambda fn=fn, reps=reps: fn(0, reps * threads), 1)
        add(f"control/{name} tN", lambda fn=fn, reps=reps: list(ctl.map(fn, range(threads), [reps] * threads)), 1)
    # sustained: a loop calling .batch back to back (a data pipeline's steady state): the second CPU stays busy
    # between batches. Above, each N-thread batch follows a 1-thread one, during which this VM may deschedule
    # the idle CPU, so that the N-thread batch starts on a CPU that first has to be woken up.
    back = 4

    def back_to_back(f):  # each batch dropped before the next, as a training loop does
        def run():
            for _ in range(back):
                f()
        return run

    for label, f, data in (("eval", eval_tf, batch), ("train", train_tf, batch), ("jpeg", jpeg_exact, jpeg_batch)):
        for k, th in (("t1", 1), ("tN", threads)):
            add(f"sustained/prepjit {label} {k}",
                back_to_back(lambda f=f, data=data, th=th: f.batch(data, threads=th)), back * len(data))
    add("sustained/prepjit out t1", lambda: [eval_tf.batch(batch, threads=1, out=buf) for _ in range(back)],
        back * len(batch))
    add("sustained/prepjit out tN", lambda: [eval_tf.batch(batch, threads=threads, out=buf) for _ in range(back)],
        back * len(batch))
    add("sustained/sha t1", lambda: [sha(0, 64 * threads) for _ in range(back)], back)
    add("sustained/sha tN", lambda: [list(ctl.map(sha, range(threads), [64] * threads)) for _ in range(back)],
        back)
    add("hwc/torch brightness", lambda: [(t.float() * 1.2).clamp_(0, 255).to(torch.uint8) for t in tensors], n)
    add("hwc/prepjit brightness", lambda: [brighten(p) for p in photos], n)
    add("hwc/torch to_dtype", lambda: [t.float().mul_(1.0 / 255) for t in tensors], n)
    add("hwc/prepjit to_dtype", lambda: [as_float(p) for p in photos], n)
    add("hwc/torch gray", lambda: [torch_gray(t) for t in tensors], n)
    add("hwc/prepjit gray", lambda: [gray(p) for p in photos], n)
    add("hwc/torch crop", lambda: [torch_crop_norm(t) for t in tensors], n)
    add("hwc/prepjit crop", lambda: [crop_norm(p) for p in photos], n)
    add("hwc/torch saturation", lambda: [tv_saturation(t.permute(2, 0, 1), 1.3).permute(1, 2, 0) for t in tensors],
        n)
    add("hwc/prepjit saturation", lambda: [saturate(p) for p in photos], n)
    add("hwc/torch hue", lambda: [tv_hue(t.permute(2, 0, 1), 0.1).permute(1, 2, 0) for t in tensors], n)
    add("hwc/prepjit hue", lambda: [hue(p) for p in photos], n)
    add("hwc/torch jitter", lambda: [torch_jitter(p, 0, i) for i, p in enumerate(photos)], n)
    add("hwc/prepjit jitter", lambda: [jitter(p, seed=0, index=i) for i, p in enumerate(photos)], n)
    add("train/torch", lambda: [torch_train(t, i) for i, t in enumerate(tensors)], n)
    add("train/prepjit", lambda: [train_tf(p, index=i) for i, p in enumerate(photos)], n)
    add("train/prepjit batch t1", lambda: train_tf.batch(batch, threads=1), len(batch))
    add("train/prepjit batch tN", lambda: train_tf.batch(batch, threads=threads), len(batch))
    add("train/prepjit batch out t1", lambda: train_tf.batch(batch, threads=1, out=buf), len(batch))
    add("train/prepjit batch out tN", lambda: train_tf.batch(batch, threads=threads, out=buf), len(batch))
    add("cifar/torch", lambda: [torch_cifar(t, i) for i, t in enumerate(tiny_t)], len(tiny))
    add("cifar/prepjit", lambda: [cifar_tf(p, index=i) for i, p in enumerate(tiny)], len(tiny))
    add("cifar/prepjit batch t1", lambda: cifar_tf.batch(tiny, threads=1), len(tiny))
    add("cifar/prepjit batch tN", lambda: cifar_tf.batch(tiny, threads=threads), len(tiny))
    add("cifar test/torch", lambda: [torch_norm(t.permute(2, 0, 1)) for t in tiny_t], len(tiny))
    add("cifar test/prepjit", lambda: [cifar_test(p) for p in tiny], len(tiny))
    add("cifar test/prepjit batch t1", lambda: cifar_test.batch(tiny, threads=1), len(tiny))
    add("cifar test/prepjit batch tN", lambda: cifar_test.batch(tiny, threads=threads), len(tiny))
    add("jpeg/pil+torch", lambda: [torch_eval(pil_decode(d)) for d in jpegs], n)
    if simplejpeg is not None:
        add("jpeg/turbo+torch", lambda: [torch_eval(turbo_decode(d)) for d in jpegs], n)
        add("big/turbo+torch", lambda: torch_eval(turbo_decode(big_jpeg)), 1)
    add("jpeg/prepjit", lambda: [jpeg_exact(d) for d in jpegs], n)
    add("jpeg/prepjit auto", lambda: [jpeg_auto(d) for d in jpegs], n)
    add("jpeg/prepjit batch t1", lambda: jpeg_exact.batch(jpeg_batch, threads=1), len(jpeg_batch))
    add("jpeg/prepjit batch tN", lambda: jpeg_exact.batch(jpeg_batch, threads=threads), len(jpeg_batch))
    add("big/pil+torch", lambda: torch_eval(pil_decode(big_jpeg)), 1)
    add("big/prepjit", lambda: jpeg_exact(big_jpeg), 1)
    add("big/prepjit auto", lambda: jpeg_auto(big_jpeg), 1)
    times: dict = {k: [] for k in cands}

    def timed_rounds(names):
        for _ in range(args.rounds):
            for k in names:
                fn, per = cands[k]
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) / per)

    timed_rounds(list(cands))
    # new sizes: a phase of its own, since clearing the per-size caches would slow the rows above
    nr = len(ragged)
    add("ragged/torch", lambda: [torch_eval(t) for t in ragged_t], nr)
    add("ragged/pil", lambda: [pil_eval(p) for p in ragged], nr)
    if cv2 is not None:
        add("ragged/opencv", lambda: [cv_eval(p) for p in ragged], nr)
    add("ragged/prepjit", new_sizes(lambda: [eval_tf(p) for p in ragged]), nr)
    add("ragged/prepjit spec tables", new_sizes(lambda: [eval_tf(p) for p in ragged], False), nr)
    add("ragged/prepjit batch t1", new_sizes(lambda: eval_tf.batch(ragged, threads=1)), nr)
    add("ragged/prepjit batch tN", new_sizes(lambda: eval_tf.batch(ragged, threads=threads)), nr)
    later = [k for k in cands if k not in times]
    times.update({k: [] for k in later})
    timed_rounds(later)
    best = {k: min(v) for k, v in times.items()}

    def paired(a, b):  # median of the per-round ratios: the two runs of a round see about the same machine
        return float(np.median(np.array(times[a]) / np.array(times[b])))

    def ms(k):
        return best[k] * 1e3

    def row(label, k, ref):
        r = best[ref] / best[k]
        print(f"| {label} | {ms(k):.{3 if ms(k) >= 0.1 else 4}f} | {r:.2f}× |")

    def prepjit_rows(pipe):  # one call, then .batch on 1 and all threads, into new arrays and into out=
        row("**prepjit**, one call", f"{pipe}/prepjit", f"{pipe}/torch")
        for label, key in (("`.batch`", "batch"), ("`.batch(out=buf)`", "batch out")):
            row(f"**prepjit** {label}, 1 thread", f"{pipe}/prepjit {key} t1", f"{pipe}/torch")
            row(f"**prepjit** {label}, {threads} threads", f"{pipe}/prepjit {key} tN", f"{pipe}/torch")

    print(f"machine: {os.cpu_count()} CPUs ({threads} usable); best of {args.rounds} interleaved rounds; ms per image\n")
    print("| eval pipeline, decoded photos | ms/image | vs torch ops |")
    print("|---|---:|---:|")
    row("torch ops (uint8, 1 thread)", "eval/torch", "eval/torch")
    row("PIL resize + NumPy normalize", "eval/pil", "eval/torch")
    if cv2 is not None:
        row("OpenCV INTER_LINEAR + NumPy (not antialiased)", "eval/opencv", "eval/torch")
    if numba_fused is not None:
        row("numba fused kernel (torch's integer passes)", "eval/numba", "eval/torch")
    prepjit_rows("eval")
    print()
    print(f"| eval pipeline, {nr} photos of {nr} sizes, each new to the process | ms/image | vs torch ops |")
    print("|---|---:|---:|")
    row("torch ops (uint8, 1 thread)", "ragged/torch", "ragged/torch")
    row("PIL resize + NumPy normalize", "ragged/pil", "ragged/torch")
    if cv2 is not None:
        row("OpenCV INTER_LINEAR + NumPy (not antialiased)", "ragged/opencv", "ragged/torch")
    row("prepjit, one call, weight tables by the NumPy spec (before)", "ragged/prepjit spec tables", "ragged/torch")
    row("**prepjit**, one call", "ragged/prepjit", "ragged/torch")
    row("**prepjit** `.batch`, 1 thread", "ragged/prepjit batch t1", "ragged/torch")
    row(f"**prepjit** `.batch`, {threads} threads", "ragged/prepjit batch tN", "ragged/torch")
    print()
    print("| training pipeline (random_resized_crop + flip) | ms/image | vs torch ops |")
    print("|---|---:|---:|")
    row("torch ops, same boxes and flips", "train/torch", "train/torch")
    prepjit_rows("train")
    print()
    for key, title, ref in (("cifar", "CIFAR augmentation (random_crop(32, padding=4) + flip + normalize)",
                              "torch ops, same offsets and flips"),
                             ("cifar test", "CIFAR test-time transform (to_dtype + normalize)", "torch ops")):
        print(f"| {title}, 256 images of 32×32 | ms/image | vs torch ops |")
        print("|---|---:|---:|")
        row(ref, f"{key}/torch", f"{key}/torch")
        row("**prepjit**, one call", f"{key}/prepjit", f"{key}/torch")
        row("**prepjit** `.batch`, 1 thread", f"{key}/prepjit batch t1", f"{key}/torch")
        row(f"**prepjit** `.batch`, {threads} threads", f"{key}/prepjit batch tN", f"{key}/torch")
        print()
    print("| on HWC pixels, no resize | ms/image | vs torch ops |")
    print("|---|---:|---:|")
    for op, key, torch_label in (("adjust_brightness(1.2)", "brightness", "torch ops (float, clamp, uint8)"),
                                 ("to_dtype(float32, scale=True)", "to_dtype", "torch ops"),
                                 ("rgb_to_grayscale", "gray", "torch ops"),
                                 ("center_crop(224) + to_dtype + normalize + CHW", "crop", "torch ops"),
                                 ("adjust_saturation(1.3)", "saturation", "torch ops"),
                                 ("adjust_hue(0.1)", "hue", "torch ops"),
                                 ("color_jitter(0.4, 0.4, 0.4, 0.1)", "jitter", "torch ops, same factors and order")):
        row(f"{op}: {torch_label}", f"hwc/torch {key}", f"hwc/torch {key}")
        row(f"{op}: **prepjit**", f"hwc/prepjit {key}", f"hwc/torch {key}")
    print()
    print("| from JPEG bytes | ms/image | vs PIL decode + torch ops |")
    print("|---|---:|---:|")
    row("photos: PIL decode + torch ops", "jpeg/pil+torch", "jpeg/pil+torch")
    if simplejpeg is not None:
        row("photos: simplejpeg (libjpeg-turbo) decode + torch ops", "jpeg/turbo+torch", "jpeg/pil+torch")
    row("photos: **prepjit** decode (exact)", "jpeg/prepjit", "jpeg/pil+torch")
    row("photos: **prepjit** decode(reduce=\"auto\")", "jpeg/prepjit auto", "jpeg/pil+torch")
    row("photos: **prepjit** decode (exact), `.batch`, 1 thread", "jpeg/prepjit batch t1", "jpeg/pil+torch")
    row(f"photos: **prepjit** decode (exact), `.batch`, {threads} threads", "jpeg/prepjit batch tN", "jpeg/pil+torch")
    row("2048×1536: PIL decode + torch ops", "big/pil+torch", "big/pil+torch")
    if simplejpeg is not None:
        row("2048×1536: simplejpeg decode + torch ops", "big/turbo+torch", "big/pil+torch")
    row("2048×1536: **prepjit** decode (exact)", "big/prepjit", "big/pil+torch")
    row("2048×1536: **prepjit** decode(reduce=\"auto\")", "big/prepjit auto", "big/pil+torch")
    print()
    e = auto_err_u8
    print(f"reduce=\"auto\" error vs exact decoding, in uint8 levels of the resized crop: photos mean "
          f"{np.mean([x.mean() for x in e[:-1]]):.2f} / max {max(x.max() for x in e[:-1]):.1f}; 2048×1536 mean "
          f"{e[-1].mean():.2f} / max {e[-1].max():.1f}")
    print(f"PIL's output differs from torch's by up to {pil_diff:.1f} uint8 levels (prepjit: equal within 1e-5)")
    print(f"single thread: prepjit vs torch {best['eval/torch'] / best['eval/prepjit']:.2f}× (target ≥2×), vs PIL "
          f"{best['eval/pil'] / best['eval/prepjit']:.2f}× (target ≥5×)"
          + (f", vs OpenCV {best['eval/opencv'] / best['eval/prepjit']:.2f}× (target ≥1.2×)" if cv2 else "")
          + f"; .batch 1 → {threads} threads: {best['eval/prepjit batch t1'] / best['eval/prepjit batch tN']:.2f}× "
            f"with new output arrays, {best['eval/prepjit batch out t1'] / best['eval/prepjit batch out tN']:.2f}× "
            f"into out= (best rounds; median of paired rounds "
            f"{paired('eval/prepjit batch t1', 'eval/prepjit batch tN'):.2f}× / "
            f"{paired('eval/prepjit batch out t1', 'eval/prepjit batch out tN'):.2f}×; train pipeline "
            f"{best['train/prepjit batch t1'] / best['train/prepjit batch tN']:.2f}× / "
            f"{paired('train/prepjit batch t1', 'train/prepjit batch tN'):.2f}×) "
            f"(target ≥1.8× on 2); this machine meanwhile, 1 → {threads} threads: compute "
            f"(SHA-256) {best['control/sha t1'] / best['control/sha tN']:.2f}× (paired "
            f"{paired('control/sha t1', 'control/sha tN'):.2f}×), vector float arithmetic in L2 "
            f"{best['control/simd t1'] / best['control/simd tN']:.2f}× (paired "
            f"{paired('control/simd t1', 'control/simd tN'):.2f}×), memory traffic (copying 32 MB) "
            f"{best['control/copy t1'] / best['control/copy tN']:.2f}×")
    print(f"new sizes: prepjit vs torch {best['ragged/torch'] / best['ragged/prepjit']:.2f}× (tables by the NumPy "
          f"spec: {best['ragged/torch'] / best['ragged/prepjit spec tables']:.2f}×); .batch 1 → {threads} threads "
          f"{best['ragged/prepjit batch t1'] / best['ragged/prepjit batch tN']:.2f}× (paired "
          f"{paired('ragged/prepjit batch t1', 'ragged/prepjit batch tN'):.2f}×)")
    print(f"from JPEG bytes (decoding in the threads): .batch 1 → {threads} threads "
          f"{best['jpeg/prepjit batch t1'] / best['jpeg/prepjit batch tN']:.2f}× (paired "
          f"{paired('jpeg/prepjit batch t1', 'jpeg/prepjit batch tN'):.2f}×)")
    print(f"throughput, {back} batches back to back (each dropped before the next; the second CPU stays busy "
          f"between them), 1 → {threads} threads, best rounds (median of paired rounds): "
          + ", ".join(f"{what} {best[f'sustained/prepjit {k} t1'] / best[f'sustained/prepjit {k} tN']:.2f}× "
                      f"({paired(f'sustained/prepjit {k} t1', f'sustained/prepjit {k} tN'):.2f}×)"
                      for what, k in (("eval", "eval"), ("eval into out=", "out"), ("training", "train"),
                                      ("JPEG bytes", "jpeg")))
          + f"; SHA-256 control the same way "
          f"{best['sustained/sha t1'] / best['sustained/sha tN']:.2f}× (paired "
          f"{paired('sustained/sha t1', 'sustained/sha tN'):.2f}×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
