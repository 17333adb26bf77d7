"""Color ops vs torchvision v2's arithmetic (re-implemented with torch ops: torchvision does not import beside
torch 2.13 here): adjust_hue and color_jitter, whose factors and order come from the counter-based RNG."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch
from skimage import data as skdata

import prepjit as pj
from prepjit import image as I

from prepjit.ir.image import rng_permutation, rng_uniform_bits
from prepjit.kernels.rng import bits_to_float, float_to_bits


def tv_gray(t):
    r, g, b = t.unbind(-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)
def tv_blend(a, b, r):
    bound = 1.0 if a.is_floating_point() else 255.0
    out = a.mul(r).add_(b, alpha=1.0 - r).clamp_(0, bound)
    return out if a.is_floating_point() else out.to(a.dtype)
def tv_brightness(t, f):
    fp = t.is_floating_point(); out = t.mul(f).clamp_(0, 1.0 if fp else 255)
    return out if fp else out.to(t.dtype)
def tv_contrast(t, f):
    fp = t.is_floating_point(); g = tv_gray(t)
    if not fp: g = g.floor_()
    return tv_blend(t, torch.mean(g, dim=(-3,-2,-1), keepdim=True), f)
def tv_saturation(t, f):
    return tv_blend(t, tv_gray(t), f)


def rgb_to_hsv(image):
    r, g, _ = image.unbind(dim=-3)
    minc, maxc = torch.aminmax(image, dim=-3)
    eqc = maxc == minc
    channels_range = maxc - minc
    ones = torch.ones_like(maxc)
    s = channels_range / torch.where(eqc, ones, maxc)
    channels_range_divisor = torch.where(eqc, ones, channels_range).unsqueeze_(dim=-3)
    rc, gc, bc = ((maxc.unsqueeze(dim=-3) - image) / channels_range_divisor).unbind(dim=-3)
    mask_maxc_neq_r = maxc != r
    mask_maxc_eq_g = maxc == g
    hg = rc.add(2.0).sub_(bc).mul_(mask_maxc_eq_g & mask_maxc_neq_r)
    hr = bc.sub_(gc).mul_(~mask_maxc_neq_r)
    hb = gc.add_(4.0).sub_(rc).mul_(mask_maxc_neq_r.logical_and_(mask_maxc_eq_g.logical_not_()))
    h = hr.add_(hg).add_(hb)
    h = h.mul_(1.0 / 6.0).add_(1.0).fmod_(1.0)
    return torch.stack((h, s, maxc), dim=-3)
def hsv_to_rgb(img):
    h, s, v = img.unbind(dim=-3)
    h6 = h.mul(6)
    i = torch.floor(h6)
    f = h6.sub_(i)
    i = i.to(dtype=torch.int32)
    sxf = s * f
    one_minus_s = 1.0 - s
    q = (1.0 - sxf).mul_(v).clamp_(0.0, 1.0)
    t = sxf.add_(one_minus_s).mul_(v).clamp_(0.0, 1.0)
    p = one_minus_s.mul_(v).clamp_(0.0, 1.0)
    i.remainder_(6)
    vpqt = torch.stack((v, p, q, t), dim=-3)
    select = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], dtype=torch.long)
    select = select[:, i]
    return vpqt.gather(-3, select)
def tv_hue(image, f):
    if image.shape[-3] == 1: return image
    orig = image.dtype
    image = image.to(torch.float32).mul_(1/255) if orig == torch.uint8 else image.to(torch.float32)
    image = rgb_to_hsv(image)
    h, s, v = image.unbind(dim=-3)
    h.add_(f).remainder_(1.0)
    out = hsv_to_rgb(torch.stack((h, s, v), dim=-3))
    if orig == torch.uint8: return out.mul(255 + 1.0 - 1e-3).to(torch.uint8)
    return out.to(orig)


@pytest.mark.parametrize("factor", [-0.5, -0.2, 0.0, 0.13, 0.5])
def test_adjust_hue_matches_torchvision(factor):
    f = pj.jit_preprocess(lambda x: I.adjust_hue(x, factor))
    for name in ("astronaut", "coffee"):
        img = getattr(skdata, name)()
        want = tv_hue(torch.from_numpy(img).permute(2, 0, 1), factor).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(f(img), want)
        imgf = (img / 255.0).astype(np.float32)
        want = tv_hue(torch.from_numpy(imgf).permute(2, 0, 1), factor).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(f(imgf), want)
    gray = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)[..., :1]
    np.testing.assert_array_equal(f(np.ascontiguousarray(gray)), gray)  # grayscale images are invariant
    with pytest.raises(ValueError, match=r"not in \[-0.5, 0.5\]"):
        pj.jit_preprocess(lambda x: I.adjust_hue(x, 0.7))(img)


B, C, S, H = 0.4, 0.4, 0.4, 0.1


@pj.jit_preprocess
def jitter(x):
    return I.color_jitter(x, brightness=B, contrast=C, saturation=S, hue=H)


def torch_jitter(img, seed, index, stream=1):
    """torchvision's ColorJitter.transform with the factors and order the RNG drew for this sample."""
    t = torch.from_numpy(img).permute(2, 0, 1)
    ranges = [(1 - B, 1 + B), (1 - C, 1 + C), (1 - S, 1 + S), (-H, H)]
    factors = [bits_to_float(rng_uniform_bits(seed, index, stream, k, float_to_bits(a), float_to_bits(b)))
               for k, (a, b) in enumerate(ranges)]
    ops = [tv_brightness, tv_contrast, tv_saturation, tv_hue]
    for pos in range(4):
        k = rng_permutation(seed, index, stream, 4, pos)
        t = ops[k](t, factors[k])
    return t.permute(1, 2, 0).numpy()


def test_color_jitter_matches_torchvision_in_every_order():
    img = skdata.coffee()[::2, ::2].copy()
    orders = set()
    for index in range(30):
        np.testing.assert_array_equal(jitter(img, seed=4, index=index), torch_jitter(img, 4, index))
        orders.add(tuple(rng_permutation(4, index, 1, 4, p) for p in range(4)))
    assert len(orders) >= 10  # many of the 24 orders ran
    lowered = jitter.ir("lowered")
    assert lowered.count("scf.if") >= 4  # each stage's choice is made outside its loops
    # one kernel a stage: its contrast mean runs inside its contrast branch, skipped when another op is drawn
    assert lowered.count("kernel.func") == 4


def test_color_jitter_float_images_and_factor_ranges():
    img = (skdata.astronaut()[::4, ::4] / 255.0).astype(np.float32)
    for index in range(5):
        np.testing.assert_allclose(jitter(img, seed=2, index=index), torch_jitter(img, 2, index), rtol=0, atol=1e-6)
    lo, hi = float_to_bits(0.6), float_to_bits(1.4)
    draws = [bits_to_float(rng_uniform_bits(1, i, 1, 0, lo, hi)) for i in range(4000)]
    assert 0.6 <= min(draws) < 0.62 and 1.38 < max(draws) < 1.4 and abs(np.mean(draws) - 1.0) < 0.02
    perms = {tuple(rng_permutation(1, i, 1, 4, p) for p in range(4)) for i in range(2000)}
    assert len(perms) == 24 and all(sorted(p) == [0, 1, 2, 3] for p in perms)


def test_color_jitter_partial_and_bad_arguments():
    img = skdata.chelsea()[::3, ::3].copy()
    only_b = pj.jit_preprocess(lambda x: I.color_jitter(x, brightness=(0.5, 0.5)))  # a fixed factor
    np.testing.assert_array_equal(only_b(img), tv_brightness(torch.from_numpy(img).permute(2, 0, 1), 0.5)
                                  .permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(pj.jit_preprocess(lambda x: I.color_jitter(x))(img), img)
    with pytest.raises(ValueError, match="non negative"):
        pj.jit_preprocess(lambda x: I.color_jitter(x, brightness=-1))(img)
    with pytest.raises(ValueError, match="hue values should be between"):
        pj.jit_preprocess(lambda x: I.color_jitter(x, hue=0.7))(img)
    with pytest.raises(TypeError, match="3 channels"):
        pj.jit_preprocess(lambda x: I.color_jitter(x, saturation=0.5))(np.zeros((4, 4, 4), np.uint8))


_sat = pj.jit_preprocess(lambda x: I.adjust_saturation(x, 1.7))
_hue = pj.jit_preprocess(lambda x: I.adjust_hue(x, -0.31))


@given(h=st.integers(1, 9), w=st.integers(1, 70), view=st.sampled_from(["packed", "bgr", "columns", "padded"]),
       dtype=st.sampled_from([np.uint8, np.float32]), seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=60, deadline=None)
def test_color_ops_any_width_and_view(h, w, view, dtype, seed):
    """Each output channel of saturation and hue reads all three: the channel loop is written out around one
    shared computation, and the column loop vectorizes (remainders, 1-pixel rows) — on packed pixels and on
    views whose strides take the general path (reversed channels, every other column, a padded row)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, 2 * w, 4), dtype=np.uint8)
    base[..., 1] = np.where(rng.random((h, 2 * w)) < 0.2, base[..., 0], base[..., 1])  # ties: max == several
    if dtype == np.float32:
        base = (base / 255.0).astype(np.float32)
    img = {"packed": np.ascontiguousarray(base[:, :w, :3]), "bgr": base[:, :w, 2::-1],
           "columns": base[:, ::2, :3], "padded": base[:, :w, :3]}[view]
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    np.testing.assert_array_equal(_sat(img), tv_saturation(t, 1.7).permute(1, 2, 0).numpy())
    np.testing.assert_array_equal(_hue(img), tv_hue(t, -0.31).permute(1, 2, 0).numpy())
