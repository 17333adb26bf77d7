"""Random image ops: per-sample parameters from the counter-based RNG, pixels exactly as torch computes them."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as skdata

import prepjit as pj
from prepjit import image as I
from prepjit.ir.image import random_crop_offset, random_resized_crop_params, rng_bernoulli, tv_resize_hw
from prepjit.kernels.rng import float_to_bits, uniform

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


@pj.jit_preprocess
def train_tf(img):
    x = I.random_resized_crop(img, 224)
    x = I.random_horizontal_flip(x)
    x = I.to_dtype(x, np.float32, scale=True)
    x = I.normalize(x, MEAN, STD)
    return I.to_chw(x)


def _params(h, w, seed, index, stream=1):
    return random_resized_crop_params(h, w, seed, index, stream, *(float_to_bits(v) for v in SCALE + RATIO))


def torch_train(img, seed, index):
    """The same sample through torch ops, with the box and flip the RNG chose (torchvision's v2 arithmetic)."""
    top, left, h, w = _params(*img.shape[:2], seed, index)
    t = torch.from_numpy(np.ascontiguousarray(img[top:top + h, left:left + w])).permute(2, 0, 1)[None]
    t = F.interpolate(t.contiguous(memory_format=torch.channels_last), size=(224, 224), mode="bilinear",
                      antialias=True, align_corners=False)[0]
    if rng_bernoulli(seed, index, 2, float_to_bits(0.5)):
        t = t.flip(-1)
    f = t.to(torch.float32).mul_(1.0 / 255)
    return ((f - torch.tensor(MEAN).view(-1, 1, 1)) / torch.tensor(STD).view(-1, 1, 1)).numpy()


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_training_pipeline_matches_torch_per_sample(name):
    img = getattr(skdata, name)()
    flips = 0
    for index in range(12):
        np.testing.assert_allclose(train_tf(img, seed=3, index=index), torch_train(img, 3, index), rtol=0, atol=1e-5)
        flips += rng_bernoulli(3, index, 2, float_to_bits(0.5))
    assert 0 < flips < 12  # both branches of the flip ran


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), seed=st.integers(0, 2 ** 63), index=st.integers(0, 2 ** 40))
def test_training_pipeline_random_sizes_and_keys(h, w, seed, index):
    img = np.random.default_rng(index % 1000).integers(0, 256, (h, w, 3), dtype=np.uint8)
    np.testing.assert_allclose(train_tf(img, seed=seed, index=index), torch_train(img, seed, index), rtol=0, atol=1e-5)


def test_training_kernel_reads_the_box_without_bounds_tests_and_chooses_the_flip_outside_its_loops():
    """random_resized_crop's box lies inside the image by construction (the prologue checks it), so the fused kernel
    loads its pixels without a per-pixel bounds test; the random flip is one loop nest per outcome."""
    low = train_tf.ir("lowered", example=(skdata.chelsea(),))
    assert low.count("kernel.func") == 1
    assert " then " not in low  # no lazy select (a crop's zero fill outside the image)
    assert low.count("scf.for %i1 = 0 to 224") == 2  # the main nest, once per flip outcome


@pytest.mark.parametrize("size", [[40, 56], 48])
def test_a_random_flip_before_a_resize_matches_torch_both_ways(size):
    """A flip the resize reads through (its passes are built once, before the main nest) keeps the per-element
    choice; one after the resize gets a loop nest per outcome. Both match torch for both outcomes."""
    @pj.jit_preprocess
    def f(img):
        x = I.resize(I.random_horizontal_flip(img), size, antialias=True)
        return I.random_horizontal_flip(x)

    img = skdata.chelsea()
    outcomes = set()
    for index in range(8):
        first, second = (rng_bernoulli(5, index, stream, float_to_bits(0.5)) for stream in (1, 2))
        outcomes.add((first, second))
        src = img[:, ::-1] if first else img
        t = torch.from_numpy(np.ascontiguousarray(src)).permute(2, 0, 1)[None]
        hw = tuple(size) if isinstance(size, list) else (tv_resize_hw(*img.shape[:2], size, -1, 1),
                                                         tv_resize_hw(*img.shape[:2], size, -1, 0))
        r = F.interpolate(t.contiguous(memory_format=torch.channels_last), size=hw, mode="bilinear",
                          antialias=True, align_corners=False)[0]
        want = (r.flip(-1) if second else r).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(f(img, seed=5, index=index), want)
    assert len(outcomes) >= 3


def test_a_box_outside_the_image_is_refused_before_native_code(monkeypatch):
    """The prologue checks the window random_resized_crop's kernel reads without bounds tests."""
    from prepjit.ir import dims as D

    real = D.CALLS["rrc_param"]
    monkeypatch.setitem(D.CALLS, "rrc_param", lambda which, *a: real(which, *a) + (40 if which == 0 else 0))

    @pj.jit_preprocess
    def crop(img):
        return I.random_resized_crop(img, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0))

    with pytest.raises(ValueError, match="crop window ends at row 80, past the image's height 40"):
        crop(np.zeros((40, 40, 3), np.uint8))


def test_same_augmentation_whatever_the_batching():
    imgs = [skdata.astronaut(), skdata.coffee(), skdata.chelsea(), skdata.rocket()] * 2
    one = np.stack([train_tf(im, seed=11, index=100 + i) for i, im in enumerate(imgs)])
    np.testing.assert_array_equal(train_tf.batch(imgs, seed=11, index=100, threads=1), one)
    np.testing.assert_array_equal(train_tf.batch(imgs, seed=11, index=100, threads=2), one)
    halves = [train_tf.batch(imgs[:3], seed=11, index=100), train_tf.batch(imgs[3:], seed=11, index=103)]
    np.testing.assert_array_equal(np.concatenate(halves), one)
    assert not np.array_equal(train_tf(imgs[0], seed=12, index=100), one[0])  # another seed, another crop


def test_random_resized_crop_params_follow_torchvision_rules():
    counts = {"fallback": 0}
    for index in range(3000):
        h, w = 50 + index % 200, 40 + (index * 7) % 300
        top, left, ch, cw = _params(h, w, 5, index)
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
        # torchvision's rounding of the drawn area and ratio: area within scale, ratio within bounds (± rounding)
        area = ch * cw / (h * w)
        if not (SCALE[0] - 0.05 <= area <= SCALE[1] + 1e-9):
            counts["fallback"] += 1
            continue
        assert RATIO[0] * 0.7 < cw / ch < RATIO[1] / 0.7
    assert counts["fallback"] < 30
    # a very elongated image cannot fit the ratio: torchvision's central fallback
    assert _params(10, 1000, 0, 0) == (0, (1000 - round(10 * 4 / 3)) // 2, 10, round(10 * 4 / 3))
    assert _params(1000, 10, 0, 0) == ((1000 - round(10 / (3 / 4))) // 2, 0, round(10 / (3 / 4)), 10)


def test_rng_draws_are_uniform_and_keyed():
    u = np.array([uniform(1, i, 1, 0) for i in range(20000)])
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005 and u.min() >= 0 and u.max() < 1
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 1800
    assert uniform(1, 5, 1, 0) != uniform(2, 5, 1, 0) != uniform(1, 6, 1, 0)
    assert uniform(1, 5, 1, 0) != uniform(1, 5, 2, 0) != uniform(1, 5, 1, 1)
    flips = sum(rng_bernoulli(9, i, 2, float_to_bits(0.3)) for i in range(20000))
    assert abs(flips / 20000 - 0.3) < 0.015


def test_random_ops_bad_arguments():
    with pytest.raises(ValueError, match="p must be in"):
        pj.jit_preprocess(lambda x: I.random_horizontal_flip(x, 1.5))(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="increasing positive pairs"):
        pj.jit_preprocess(lambda x: I.random_resized_crop(x, 8, scale=(1.0, 0.5)))(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match=r"\(H, W, C\)"):
        pj.jit_preprocess(lambda x: I.random_resized_crop(x, 8))(np.zeros((4, 4), np.uint8))


def test_training_pipeline_is_one_kernel():
    train_tf(skdata.astronaut())
    assert train_tf.ir("lowered").count("kernel.func") == 1
    assert math.isfinite(float(train_tf(skdata.astronaut()).sum()))


# -- random_crop (CIFAR's RandomCrop(32, padding=4)) and random_vertical_flip -----------------------------------
def torch_random_crop(img, size, padding, pad_if_needed, fill, mode, seed, index, stream=1):
    """torchvision v2 RandomCrop's transform with the offsets the RNG drew: F.pad (torch's pad modes; symmetric
    by NumPy, which torch lacks for images), then the window."""
    ch, cw = (size, size) if isinstance(size, int) else size
    p = [padding] * 4 if isinstance(padding, int) else (list(padding) * 2 if len(padding) == 2 else list(padding))
    left, top, right, bottom = p
    h, w = img.shape[:2]
    dh = max(0, ch - (h + top + bottom)) if pad_if_needed else 0
    dw = max(0, cw - (w + left + right)) if pad_if_needed else 0
    left, right, top, bottom = left + dw, right + dw, top + dh, bottom + dh
    t = torch.from_numpy(img).permute(2, 0, 1)
    if mode == "symmetric":
        t = torch.from_numpy(np.pad(img, ((top, bottom), (left, right), (0, 0)), mode="symmetric")).permute(2, 0, 1)
    elif mode == "constant":
        t = F.pad(t, (left, right, top, bottom), value=fill)
    else:
        t = F.pad(t.float(), (left, right, top, bottom), mode={"edge": "replicate", "reflect": "reflect"}[mode])
        t = t.to(torch.uint8)
    ph, pw = t.shape[1:]
    row = random_crop_offset(seed, index, stream, 0, ph, ch)
    col = random_crop_offset(seed, index, stream, 1, pw, cw)
    return t[:, row:row + ch, col:col + cw].permute(1, 2, 0).numpy()


_CROPS: dict = {}


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), size=st.one_of(st.integers(1, 40), st.tuples(st.integers(1, 40),
       st.integers(1, 40))), padding=st.one_of(st.integers(0, 6), st.tuples(*[st.integers(0, 6)] * 4)),
       pad_if_needed=st.booleans(), fill=st.sampled_from([0, 7, 255]),
       mode=st.sampled_from(["constant", "edge", "reflect", "symmetric"]), seed=st.integers(0, 2 ** 63),
       index=st.integers(0, 2 ** 40))
def test_random_crop_matches_torchvision(h, w, size, padding, pad_if_needed, fill, mode, seed, index):
    """Every padding mode, pad_if_needed, fills, crops larger than the padded image (torchvision's ValueError),
    windows inside the image and over its padding; the image size is static for the other modes' pad_if_needed."""
    pad = padding if isinstance(padding, int) else list(padding)
    p = [pad] * 4 if isinstance(pad, int) else pad
    if mode == "reflect" and max(p) >= min(h, w) or mode == "symmetric" and max(p) > min(h, w):
        return  # beyond what that mode can mirror (pad's own error, tested there)
    static = mode != "constant"
    key = (size if isinstance(size, int) else tuple(size), padding, pad_if_needed, fill, mode, static and (h, w))
    f = _CROPS.get(key)
    if f is None:
        sig = (pj.TensorSpec(np.uint8, (h, w, 3) if static else (None, None, 3)),)
        f = _CROPS[key] = pj.jit_preprocess(
            lambda x: I.random_crop(x, size, padding=pad, pad_if_needed=pad_if_needed, fill=fill, padding_mode=mode),
            signature=sig)
    img = np.random.default_rng(index % 1000).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ch, cw = (size, size) if isinstance(size, int) else size
    dh = max(0, ch - (h + p[1] + p[3])) if pad_if_needed else 0
    dw = max(0, cw - (w + p[0] + p[2])) if pad_if_needed else 0
    if mode != "constant" and (dh or dw) and (max(p[1] + dh, p[3] + dh) >= h or max(p[0] + dw, p[2] + dw) >= w):
        return  # the needed padding is more than reflect/symmetric can mirror
    if h + p[1] + p[3] + 2 * dh < ch or w + p[0] + p[2] + 2 * dw < cw:
        with pytest.raises(ValueError, match="larger than the \\(padded\\) image"):
            f(img, seed=seed, index=index)
        return
    np.testing.assert_array_equal(f(img, seed=seed, index=index),
                                  torch_random_crop(img, size, pad, pad_if_needed, fill, mode, seed, index))


def test_cifar_augmentation_and_vertical_flip():
    """RandomCrop(32, padding=4) + RandomHorizontalFlip on 32×32 images in .batch, as torch computes them; the
    offsets cover the whole range; random_vertical_flip flips rows with its own stream."""
    @pj.jit_preprocess
    def cifar(x):
        return I.random_horizontal_flip(I.random_crop(x, 32, padding=4))

    @pj.jit_preprocess
    def vflip(x):
        return I.random_vertical_flip(x, p=0.5)

    imgs = [np.random.default_rng(k).integers(0, 256, (32, 32, 3), dtype=np.uint8) for k in range(64)]
    got = cifar.batch(imgs, seed=5, threads=2)
    rows = set()
    for i, img in enumerate(imgs):
        want = torch_random_crop(img, 32, 4, False, 0, "constant", 5, i)
        if rng_bernoulli(5, i, 2, float_to_bits(0.5)):
            want = want[:, ::-1]
        np.testing.assert_array_equal(got[i], want)
        rows.add(random_crop_offset(5, i, 1, 0, 40, 32))
        flipped = rng_bernoulli(5, i, 1, float_to_bits(0.5))
        np.testing.assert_array_equal(vflip(img, seed=5, index=i), img[::-1] if flipped else img)
    assert rows == set(range(9))  # every offset 0..8 drawn
    with pytest.raises(ValueError, match="sample 3: .*crop height 30 is larger than the \\(padded\\) image height 20"):
        pj.jit_preprocess(lambda x: I.random_crop(x, 30)).batch(imgs[:3] + [imgs[3][:20]], seed=1)


def test_random_grayscale_matches_torchvision():
    """RandomGrayscale(p) after a random crop, in .batch: the grayscale (3 channels, torchvision's weights and
    rounding) exactly where the RNG drew it; uint8 and float32; 1-channel or 4-channel images are refused."""
    @pj.jit_preprocess
    def aug(x):
        return I.random_grayscale(I.random_resized_crop(x, 24), p=0.5)

    img = skdata.coffee()[::4, ::4].copy()
    for dtype in (np.uint8, np.float32):
        x = img if dtype == np.uint8 else (img / 255.0).astype(np.float32)
        got = aug.batch([x] * 16, seed=9, index=40)
        grays = 0
        for i in range(16):
            top, left, h, w = _params(*x.shape[:2], 9, 40 + i)
            t = torch.from_numpy(np.ascontiguousarray(x[top:top + h, left:left + w])).permute(2, 0, 1)[None]
            if dtype == np.uint8:
                t = t.contiguous(memory_format=torch.channels_last)
            t = F.interpolate(t, size=(24, 24), mode="bilinear", antialias=True, align_corners=False)[0]
            if rng_bernoulli(9, 40 + i, 2, float_to_bits(0.5)):
                r, g, b = t.unbind(0)
                y = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)
                t = (y if dtype == np.float32 else y.to(torch.uint8)).expand(3, -1, -1)
                grays += 1
            want = t.permute(1, 2, 0).numpy()
            if dtype == np.uint8:
                np.testing.assert_array_equal(got[i], want)
            else:
                np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-5)
        assert 0 < grays < 16
    with pytest.raises(TypeError, match="3 channels"):
        pj.jit_preprocess(lambda x: I.random_grayscale(x))(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="p must be in"):
        pj.jit_preprocess(lambda x: I.random_grayscale(x, 1.5))(img)
