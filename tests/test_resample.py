"""prepjit.kernels.resample against torch 2.13's CPU ``F.interpolate`` (the oracle) and torchvision's size rules.

The spec is ``F.interpolate`` on a **channels-last** NCHW view of an HWC image, ``size=(oh, ow)``,
``align_corners=False``. uint8 results must be bit-identical. The float reference is also bit-identical on torch's
AVX2/AVX512 builds (FMA placement reproduced); on any other build only a tolerance is asserted (FLOAT_TOL).
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from prepjit.kernels import resample as R

torch = pytest.importorskip("torch")
F = torch.nn.functional

CAPABILITY = torch.backends.cpu.get_cpu_capability()
FMA_BUILD = CAPABILITY in ("AVX2", "AVX512")        # the configuration the float rounding was measured on
THREADS = torch.get_num_threads()
# relative to the image's magnitude. Without torch's FMAs (a non-AVX2 build) the float32 source coordinate
# ``scale * (i + 0.5) - 0.5`` is rounded twice, an error of ~ulp(coordinate) that reaches ~1e-5 of the pixel
# range for non-antialiased downscales of ~400 px images; our reference follows the FMA build.
FLOAT_TOL = 1e-5 if FMA_BUILD else 1e-4

MODES_SMOOTH = ("bilinear", "bicubic")


def torch_resize(img: np.ndarray, oh: int, ow: int, mode: str, antialias: bool = False,
                 channels_last: bool = True) -> np.ndarray:
    x = img if img.ndim == 3 else img[:, :, None]
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]
    t = t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()
    kw = {"align_corners": False, "antialias": antialias} if mode in MODES_SMOOTH else {}
    out = F.interpolate(t, size=(oh, ow), mode=mode, **kw)[0].permute(1, 2, 0).numpy()
    return out if img.ndim == 3 else out[:, :, 0]


def ours_u8(img, oh, ow, mode, antialias=False, **kw):
    return R.resize_uint8_hwc(img, oh, ow, mode, antialias, num_threads=THREADS, avx2=CAPABILITY != "DEFAULT", **kw)


def ours_float(img, oh, ow, mode, antialias=False, **kw):
    return R.resize_float_hwc(img, oh, ow, mode, antialias, num_threads=THREADS, **kw)


def assert_u8_equal(img, oh, ow, mode, antialias):
    expected = torch_resize(img, oh, ow, mode, antialias)
    got = ours_u8(img, oh, ow, mode, antialias)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    if not np.array_equal(got, expected):
        bad = np.argwhere(got != expected)
        pytest.fail(f"{img.shape} -> ({oh}, {ow}) {mode} aa={antialias}: {len(bad)} pixels differ, first at "
                    f"{tuple(bad[0])}: ours {got[tuple(bad[0])]} torch {expected[tuple(bad[0])]}")


def float_error(img, oh, ow, mode, antialias):
    """Max error relative to the image magnitude; asserts exactness on the FMA build."""
    expected = torch_resize(img, oh, ow, mode, antialias)
    got = ours_float(img, oh, ow, mode, antialias)
    assert got.dtype == img.dtype and got.shape == expected.shape
    err = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0)) / max(1.0, float(np.abs(img).max()))
    assert err <= FLOAT_TOL, f"{img.shape} -> ({oh}, {ow}) {mode} aa={antialias}: relative error {err}"
    if FMA_BUILD:
        np.testing.assert_array_equal(got, expected, err_msg=f"{img.shape} -> ({oh}, {ow}) {mode} aa={antialias}")
    return err


# ---------------------------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------------------------

def _synthetic_photo(h=203, w=317, seed=0):
    """Photo-like content: smooth gradients, hard edges, a saturated patch and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255.0 / w, yy * 255.0 / h, 127 + 120 * np.sin(xx / 7.0) * np.cos(yy / 11.0)], -1)
    base[(xx // 16 + yy // 16) % 2 == 0] *= 0.3
    base[h // 3:h // 2, w // 4:w // 2] = 255.0
    base += rng.normal(0, 12, base.shape)
    return np.clip(np.rint(base), 0, 255).astype(np.uint8)


PHOTOS = ["astronaut", "coffee", "chelsea", "camera"]        # camera: grayscale (HW)


@pytest.fixture(scope="module", params=PHOTOS + ["synthetic"])
def photo(request):
    if request.param == "synthetic":
        return _synthetic_photo()
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(getattr(data, request.param)())


def _photo_sizes(h, w):
    return [
        (224, 224),              # the classic
        (h // 3, w // 2),        # downscale, different factors
        (2 * h + 1, w + 3),      # upscale, odd
        (37, 401),               # mixed odd
        (h, 123),                # horizontal pass only
        (99, w),                 # vertical pass only
        (h, w),                  # copy
        (1, 1),
        (1, 2 * w),              # extreme aspect ratios
        (2 * h, 1),
        (3, 7 * w // 5),
    ]


# ---------------------------------------------------------------------------------------------------------------
# uint8: bit-exact
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("antialias", [True, False])
def test_uint8_bilinear_photos_exact(photo, antialias):
    h, w = photo.shape[:2]
    for oh, ow in _photo_sizes(h, w):
        assert_u8_equal(photo, oh, ow, "bilinear", antialias)


@pytest.mark.parametrize("antialias", [True, False])
def test_uint8_bicubic_photos_exact(photo, antialias):
    h, w = photo.shape[:2]
    for oh, ow in [(224, 224), (h // 3, w // 2), (2 * h + 1, w + 3), (1, 1), (2 * h, 1)]:
        assert_u8_equal(photo, oh, ow, "bicubic", antialias)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_uint8_nearest_photos_exact(photo, mode):
    h, w = photo.shape[:2]
    for oh, ow in [(224, 224), (h // 3, w // 2), (2 * h + 1, w + 3), (1, 1), (50, 60)]:
        assert_u8_equal(photo, oh, ow, mode, False)


@pytest.mark.parametrize("mode", MODES_SMOOTH)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_uint8_tiny_images_exact(mode, channels):
    """1-pixel and few-pixel inputs/outputs, both directions, every antialias setting."""
    rng = np.random.default_rng(channels)
    for h, w in [(1, 1), (1, 2), (2, 1), (1, 5), (3, 2)]:
        img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        for oh, ow in [(1, 1), (1, 7), (9, 1), (4, 3), (13, 17), (2, 2)]:
            for antialias in (True, False):
                assert_u8_equal(img, oh, ow, mode, antialias)


def test_uint8_extreme_scales_exact():
    """Very large down- and upscales (tiny fixed-point precisions, hundreds of taps) and saturating content."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (6, 1500, 3), dtype=np.uint8)
    img[:, ::2] = 255
    img[:, 1::4] = 0
    for oh, ow in [(1, 1), (5, 3), (6, 7), (700, 2), (2, 3001)]:
        for mode in MODES_SMOOTH:
            for antialias in (True, False):
                assert_u8_equal(img, oh, ow, mode, antialias)


@st.composite
def _u8_case(draw, max_side=64):
    h, w, oh, ow = (draw(st.integers(1, max_side)) for _ in range(4))
    channels = draw(st.sampled_from([1, 3, 4]))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["uniform", "binary", "smooth"]))
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    elif kind == "binary":                       # 0/255 edges: maximal overshoot and clamping for bicubic
        img = (rng.integers(0, 2, (h, w, channels)) * 255).astype(np.uint8)
    else:
        img = np.clip(np.cumsum(rng.integers(-9, 10, (h, w, channels)), 1) + 128, 0, 255).astype(np.uint8)
    return img, oh, ow


@settings(max_examples=250, deadline=None)
@given(case=_u8_case(), antialias=st.booleans())
def test_uint8_bilinear_hypothesis_exact(case, antialias):
    img, oh, ow = case
    assert_u8_equal(img, oh, ow, "bilinear", antialias)


@settings(max_examples=120, deadline=None)
@given(case=_u8_case(), antialias=st.booleans())
def test_uint8_bicubic_hypothesis_exact(case, antialias):
    img, oh, ow = case
    assert_u8_equal(img, oh, ow, "bicubic", antialias)


@settings(max_examples=120, deadline=None)
@given(case=_u8_case(max_side=200), mode=st.sampled_from(["nearest", "nearest-exact"]))
def test_uint8_nearest_hypothesis_exact(case, mode):
    assume(FMA_BUILD or mode == "nearest")      # see test_float_kernel_selection_and_wide_channels
    img, oh, ow = case
    assert_u8_equal(img, oh, ow, mode, False)


def test_uint8_more_than_four_channels_exact():
    """C > 4 leaves torch's AVX kernel for the generic separable one: same integers (plus the width-1 quirk)."""
    rng = np.random.default_rng(5)
    for channels in (5, 8):
        img = rng.integers(0, 256, (23, 31, channels), dtype=np.uint8)
        for oh, ow in [(9, 50), (40, 7), (17, 1), (1, 13)]:
            for mode in MODES_SMOOTH:
                for antialias in (True, False):
                    assert_u8_equal(img, oh, ow, mode, antialias)


# ---------------------------------------------------------------------------------------------------------------
# float path: 1e-5 always, bit-exact on the measured (FMA) build
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_photos(photo, dtype):
    img = photo[::2, ::2].astype(dtype) / dtype(255)          # every other pixel: keeps the test fast
    h, w = img.shape[:2]
    worst = 0.0
    for oh, ow in [(224, 224), (h // 3, w // 2), (2 * h + 1, w + 3), (1, 2 * w), (2 * h, 1)]:
        for mode in MODES_SMOOTH:
            for antialias in (True, False):
                worst = max(worst, float_error(img, oh, ow, mode, antialias))
        for mode in ("nearest", "nearest-exact"):
            worst = max(worst, float_error(img, oh, ow, mode, False))
    print(f"max relative float error ({dtype.__name__}): {worst:.3g}")


@st.composite
def _float_case(draw):
    h, w, oh, ow = (draw(st.integers(1, 64)) for _ in range(4))
    channels = draw(st.sampled_from([1, 2, 3, 4]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 255.0]))
    return (rng.standard_normal((h, w, channels)) * scale).astype(dtype), oh, ow


@settings(max_examples=200, deadline=None)
@given(case=_float_case(), mode=st.sampled_from(R.MODES), antialias=st.booleans())
def test_float_hypothesis(case, mode, antialias):
    img, oh, ow = case
    float_error(img, oh, ow, mode, antialias and mode in MODES_SMOOTH)


def test_float_kernel_selection_and_wide_channels():
    """The fused channels-last bilinear kernel (C > 3 or oh + ow <= 128, vectorised channels for C >= 8) versus
    the generic one, and the two nearest-exact kernels, on sizes where their roundings differ."""
    rng = np.random.default_rng(2)
    for channels in (1, 3, 4, 8, 9):
        for dtype in (np.float32, np.float64):
            img = rng.standard_normal((37, 29, channels)).astype(dtype)
            for oh, ow in [(50, 60), (150, 61), (11, 300)]:
                float_error(img, oh, ow, "bilinear", False)
    # sizes where floorf((i + .5) * scale) and floorf(max(fma(scale, i + .5, -.5), 0) + .5) disagree (the FMA
    # is a property of torch's AVX2 build: a build without it rounds the generic kernel's index differently)
    if not FMA_BUILD:
        return
    for in_w, out_w in [(2, 41), (2, 47), (2, 55)]:
        assert not np.array_equal(R._nearest_indices(in_w, out_w, True, True, np.float32),
                                  R._nearest_indices(in_w, out_w, True, False, np.float32))
        for channels in (1, 4):
            for oh in (3, 200):
                img = rng.integers(0, 256, (3, in_w, channels), dtype=np.uint8)
                assert_u8_equal(img, oh, out_w, "nearest-exact", False)
                float_error(img.astype(np.float64), oh, out_w, "nearest-exact", False)


def test_float_single_thread_bilinear_kernel():
    """With one torch thread, 3-channel float bilinear switches to the fused channels-last kernel."""
    rng = np.random.default_rng(3)
    img = rng.standard_normal((41, 53, 3)).astype(np.float32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = torch_resize(img, 150, 77, "bilinear", False)
    finally:
        torch.set_num_threads(old)
    got = R.resize_float_hwc(img, 150, 77, "bilinear", False, num_threads=1)
    assert np.abs(got - expected).max() <= FLOAT_TOL * np.abs(img).max()
    if FMA_BUILD:
        np.testing.assert_array_equal(got, expected)


def test_width1_vertical_quirk():
    """torch's generic separable kernel repeats the first row of each inner-loop run when the output width is 1
    (float antialias; uint8 with C > 4). We reproduce it by default and can switch it off."""
    rng = np.random.default_rng(4)
    img = rng.standard_normal((30, 5, 3)).astype(np.float32)
    expected = torch_resize(img, 12, 1, "bilinear", True)
    assert (expected == expected[:1]).all()                       # the bug: every row equals row 0
    float_error(img, 12, 1, "bilinear", True)
    correct = R.resize_float_hwc(img, 12, 1, "bilinear", True, torch_quirks=False)
    assert not np.allclose(correct, expected)
    u8 = rng.integers(0, 256, (30, 1, 6), dtype=np.uint8)
    assert_u8_equal(u8, 12, 1, "bicubic", False)
    # large outputs are split into parallel chunks, each restarting the run
    big = rng.standard_normal((50, 1, 1)).astype(np.float32)
    float_error(big, 40000, 1, "bilinear", True)


# ---------------------------------------------------------------------------------------------------------------
# memory format: the spec is channels-last; where contiguous input differs, it is by one rounding
# ---------------------------------------------------------------------------------------------------------------

def test_channels_last_vs_contiguous():
    rng = np.random.default_rng(6)
    for channels in (1, 3, 4):
        u8 = rng.integers(0, 256, (31, 45, channels), dtype=np.uint8)
        f32 = u8.astype(np.float32)
        for oh, ow in [(20, 70), (64, 90), (7, 9)]:
            for mode, aa in [("bilinear", True), ("bilinear", False), ("bicubic", True), ("bicubic", False),
                             ("nearest", False), ("nearest-exact", False)]:
                a = torch_resize(u8, oh, ow, mode, aa, channels_last=True)
                b = torch_resize(u8, oh, ow, mode, aa, channels_last=False)
                np.testing.assert_array_equal(a, b)               # uint8: layout never matters
                fa = torch_resize(f32, oh, ow, mode, aa, channels_last=True)
                fb = torch_resize(f32, oh, ow, mode, aa, channels_last=False)
                if channels == 4 and mode == "bilinear" and not aa and oh + ow > 128:
                    # fused (channels-last) vs generic (contiguous) kernel: equal up to float rounding
                    np.testing.assert_allclose(fa, fb, rtol=0, atol=1e-4)
                else:
                    np.testing.assert_array_equal(fa, fb)


# ---------------------------------------------------------------------------------------------------------------
# the weights tables and the FMA emulation
# ---------------------------------------------------------------------------------------------------------------

def _torch_weight_matrix(in_size, out_size, mode, antialias, dtype):
    """torch's effective weights of a 1-D (horizontal) resize: resize one-hot rows (exact: one non-zero tap)."""
    eye = np.eye(in_size, dtype=dtype)[:, :, None]               # row j is the one-hot image e_j
    return torch_resize(eye, in_size, out_size, mode, antialias)[:, :, 0].T


def _dense(table, dtype):
    m = np.zeros((table.out_size, table.in_size), np.float64)
    for i in range(table.out_size):
        for k in range(table.size[i]):
            m[i, table.index[i, k]] += table.weights[i, k]
    return m.astype(dtype)


@pytest.mark.parametrize("mode,antialias", [("bilinear", True), ("bicubic", True), ("bilinear", False)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_weights_match_torch(mode, antialias, dtype):
    for in_size, out_size in [(30, 7), (7, 30), (13, 44), (1, 9), (48, 46), (300, 25)]:
        table = R.resize_weights(in_size, out_size, mode, antialias, dtype.__name__)
        expected = _torch_weight_matrix(in_size, out_size, mode, antialias, dtype)
        np.testing.assert_allclose(_dense(table, dtype), expected, rtol=0, atol=1e-6)
        if FMA_BUILD:
            np.testing.assert_array_equal(_dense(table, dtype), expected)


def test_weights_table_invariants():
    for in_size, out_size in [(1, 1), (1, 17), (17, 1), (512, 224), (224, 512), (1000, 3), (5, 4000)]:
        for mode in MODES_SMOOTH:
            for antialias in (True, False):
                t = R.resize_weights(in_size, out_size, mode, antialias, "uint8")
                assert t.weights.dtype == np.int16 and 1 <= t.precision <= 22
                assert t.index.min() >= 0 and t.index.max() < in_size
                assert (t.size >= 1).all() and (t.start + t.size <= in_size).all()
                k = np.arange(t.weights.shape[1])
                live = k[None, :] < t.size[:, None]
                np.testing.assert_array_equal(t.index[live], (t.start[:, None] + k[None, :])[live])
                assert (t.weights[~live] == 0).all()
                # each output's weights sum to ~1.0 in fixed point
                sums = t.weights.astype(np.int64).sum(1)
                assert np.abs(sums - (1 << t.precision)).max() <= t.weights.shape[1]
                # the precision rule: the largest weight still fits int16 at `precision`, not at precision + 1
                assert t.weights.max() < 2**15
                if t.precision < 22:
                    assert int(0.5 + t.weights.max() / 2**t.precision * 2**(t.precision + 1)) >= 2**15 - 2
    nearest = R.resize_weights(10, 4, "nearest", False, "float32")
    np.testing.assert_array_equal(nearest.index[:, 0], [0, 2, 5, 7])      # floor(i * 2.5)
    exact = R.resize_weights(10, 4, "nearest-exact", False, "float32")
    np.testing.assert_array_equal(exact.index[:, 0], [1, 3, 6, 8])         # floor((i + .5) * 2.5)


def test_resize_weights_rejects_bad_arguments():
    with pytest.raises(ValueError):
        R.resize_weights(10, 5, "area")
    with pytest.raises(ValueError):
        R.resize_weights(10, 0)
    with pytest.raises(ValueError):
        R.resize_weights(10, 5, dtype_path="float16")
    with pytest.raises(TypeError):
        R.resize_uint8_hwc(np.zeros((4, 4, 3), np.float32), 2, 2)
    with pytest.raises(TypeError):
        R.resize_float_hwc(np.zeros((4, 4, 3), np.uint8), 2, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_is_correctly_rounded(dtype):
    rng = np.random.default_rng(7)
    a = rng.standard_normal(400).astype(dtype)
    b = rng.standard_normal(400).astype(dtype)
    c = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(400) * 1e-6)).astype(dtype)   # cancellation
    got = R.fma(a, b, c, dtype)
    assert got.dtype == dtype
    for x, y, z, g in zip(a, b, c, got):
        exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        r = dtype(float(exact))          # float(Fraction) rounds correctly to double ...
        if dtype is np.float32:          # ... and for float32 pick the nearest neighbour exactly
            cands = [np.nextafter(r, dtype(-np.inf)), r, np.nextafter(r, dtype(np.inf))]
            r = min(cands, key=lambda v: (abs(Fraction(float(v)) - exact), int(np.array(v).view(np.int32)) & 1))
        assert g == r, (x, y, z, g, r)


# ---------------------------------------------------------------------------------------------------------------
# torchvision v2 geometry (expected values produced with torchvision 0.28)
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hw,size,max_size,expected", [
    ((480, 640), 256, None, (256, 341)),
    ((640, 480), 256, None, (341, 256)),
    ((500, 500), 224, None, (224, 224)),
    ((375, 500), [224], None, (224, 298)),
    ((333, 500), 224, None, (224, 336)),
    ((1000, 200), 100, 300, (300, 60)),
    ((200, 1000), 100, 300, (60, 300)),
    ((480, 640), None, 320, (240, 320)),
    ((640, 480), None, 320, (320, 240)),
    ((101, 999), 7, None, (7, 69)),
    ((3, 1000), 1, 50, (0, 50)),
    ((480, 640), [200, 300], None, (200, 300)),
    ((512, 511), 256, None, (256, 256)),
    ((1, 1), 5, None, (5, 5)),
])
def test_torchvision_resize_size(hw, size, max_size, expected):
    assert R.torchvision_resize_size(*hw, size, max_size) == expected


def test_torchvision_resize_size_errors():
    with pytest.raises(ValueError):
        R.torchvision_resize_size(480, 640, 256, max_size=256)
    with pytest.raises(ValueError):
        R.torchvision_resize_size(480, 640, [200, 300], max_size=400)
    with pytest.raises(ValueError):
        R.torchvision_resize_size(480, 640, None)


@pytest.mark.parametrize("h,w,ch,cw,padding,offsets", [
    (256, 256, 224, 224, (0, 0, 0, 0), (16, 16)),
    (257, 256, 224, 224, (0, 0, 0, 0), (16, 16)),       # round(16.5) == 16: Python rounds half to even
    (258, 259, 224, 224, (0, 0, 0, 0), (17, 18)),       # round(17.5) == 18
    (225, 227, 224, 224, (0, 0, 0, 0), (0, 2)),
    (100, 120, 224, 224, (52, 62, 52, 62), (0, 0)),
    (101, 300, 224, 224, (0, 61, 0, 62), (0, 38)),
    (300, 101, 224, 225, (62, 0, 62, 0), (38, 0)),
])
def test_center_crop(h, w, ch, cw, padding, offsets):
    assert R.center_crop_padding(h, w, ch, cw) == padding
    assert R.center_crop_offsets(h, w, ch, cw) == offsets
    img = np.arange(h * w * 2, dtype=np.int64).reshape(h, w, 2) + 1
    out = R.center_crop_hwc(img, ch, cw)
    assert out.shape == (ch, cw, 2)
    left, top, right, bottom = padding
    padded = np.pad(img, [(top, bottom), (left, right), (0, 0)])
    np.testing.assert_array_equal(out, padded[offsets[0]:offsets[0] + ch, offsets[1]:offsets[1] + cw])
    assert (out == 0).sum() == 2 * (ch * cw - min(h, ch) * min(w, cw))


def test_torchvision_pipeline_when_available():
    """Resize(size) + CenterCrop through torchvision itself, when it is installed (CI does not install it)."""
    v2 = pytest.importorskip("torchvision.transforms.v2")
    rng = np.random.default_rng(8)
    for h, w, size, crop in [(375, 500, 256, 224), (500, 333, 256, 224), (100, 120, 64, 80)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        got = v2.CenterCrop(crop)(v2.Resize(size)(t)).permute(1, 2, 0).numpy()
        oh, ow = R.torchvision_resize_size(h, w, size)
        ref = R.center_crop_hwc(R.resize_uint8_hwc(img, oh, ow, "bilinear", True), crop, crop)
        np.testing.assert_array_equal(got, ref)
