"""Image ops for ``@jit_preprocess`` functions, mirroring ``torchvision.transforms.v2.functional`` on HWC arrays.

Inside a traced function these build IR (``image`` and ``tensor`` dialects) that fuses with the surrounding
numeric code: a resize → center crop → to_dtype → normalize → to_chw chain compiles to one kernel. Sizes and
rounding follow torchvision v2; resampling is bit-identical to torch's CPU ``interpolate`` (see
``prepjit.kernels.resample``).
"""
from __future__ import annotations

import numpy as np

from prepjit.compiler.tracer import Traced, _emit, _traced, user_loc
from prepjit.errors import UnsupportedError, at
from prepjit.ir import dims as D
from prepjit.ir.image import PAD_MODES, opmath
from prepjit.ir.types import check_dtype

__all__ = ["adjust_brightness", "adjust_saturation", "rgb_to_grayscale", "decode", "resize", "resized_crop", "pad",
           "center_crop", "crop", "horizontal_flip", "vertical_flip", "to_dtype", "normalize", "to_chw",
           "random_horizontal_flip", "random_vertical_flip", "random_resized_crop", "random_crop", "random_grayscale",
           "adjust_contrast", "adjust_hue", "color_jitter"]


def decode(data, mode: str = "RGB", reduce=None):
    """Encoded image bytes (a ``bytes`` argument) → HWC uint8 (``mode`` "RGB", "L" or "RGBA"), decoded with
    Pillow before the kernel runs; its size is known only then (shape-generic code handles any size). Corrupt
    or unsupported data raises ``ValueError`` naming the argument (and the sample, in ``.batch``).

    ``reduce=None`` (default) decodes exactly. ``reduce="auto"`` lets the compiler plan a DCT-domain downscale
    of JPEGs (libjpeg's 1/2, 1/4, 1/8) from the resize that follows: a 4000×3000 photo headed for a 256-pixel
    shorter side decodes at 1/8 size. It is approximate — libjpeg's scaled IDCT is not torch's antialiased
    resize (measured error in the README) — and much faster; ``reduce=2``, ``4`` or ``8`` forces a scale."""
    from prepjit.compiler.tracer import TracedBytes, _recorder

    if not isinstance(data, TracedBytes):
        raise TypeError(at(user_loc(), "decode expects a bytes argument of the jit function"))
    rec = _recorder()
    attrs = {"mode": str(mode), "sym_h": rec.fresh_sym(), "sym_w": rec.fresh_sym()}
    if reduce is not None:
        attrs["reduce"] = reduce
    return Traced(rec.emit("image.decode", [data._value], attrs))


def _image(img, what: str) -> Traced:
    x = _traced(img)
    if x.ndim != 3:
        raise TypeError(at(user_loc(), f"{what} expects an (H, W, C) image, got an array of rank {x.ndim}"))
    return x


def _hw(x: Traced):
    return x._value.type.shape[0], x._value.type.shape[1]


def _pair(size, what):
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return int(size), int(size)
    if isinstance(size, (tuple, list)) and len(size) in (1, 2) and all(isinstance(s, (int, np.integer)) for s in size):
        return (int(size[0]), int(size[0])) if len(size) == 1 else (int(size[0]), int(size[1]))
    raise UnsupportedError(at(user_loc(), f"{what}: size must be an int or a pair of static ints, got {size!r}"))


def resize(img, size, interpolation: str = "bilinear", max_size: int | None = None, antialias: bool = True):
    """torchvision ``resize``: an int ``size`` sets the shorter side (the longer one keeps the aspect ratio,
    truncated as torchvision does; ``max_size`` caps it); a pair sets (height, width)."""
    x = _image(img, "resize")
    h, w = _hw(x)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) or (isinstance(size, (tuple, list))
                                                                              and len(size) == 1):
        s = int(size if not isinstance(size, (tuple, list)) else size[0])
        if s <= 0:
            raise ValueError(at(user_loc(), f"resize: size must be positive, got {s}"))
        if max_size is not None and max_size <= s:
            raise ValueError(at(user_loc(), f"resize: max_size = {max_size} must be strictly greater than the "
                                            f"requested size for the smaller edge = {s}"))
        m = -1 if max_size is None else int(max_size)
        out_h = D.call("tv_resize_hw", h, w, s, m, 1)
        out_w = D.call("tv_resize_hw", h, w, s, m, 0)
    else:
        if max_size is not None:
            raise ValueError(at(user_loc(), "resize: max_size is only supported with an int size"))
        out_h, out_w = _pair(size, "resize")
        if out_h <= 0 or out_w <= 0:
            raise ValueError(at(user_loc(), f"resize: sizes must be positive, got {(out_h, out_w)}"))
    mode = str(getattr(interpolation, "value", interpolation)).lower()  # also accepts torchvision's enum
    return _emit("image.resample", [x], {"mode": mode, "antialias": bool(antialias) and "nearest" not in mode,
                                         "out_h": out_h, "out_w": out_w, "top": 0, "left": 0,
                                         "win_h": out_h, "win_w": out_w})


def resized_crop(img, top: int, left: int, height: int, width: int, size, interpolation: str = "bilinear",
                 antialias: bool = True):
    """torchvision ``resized_crop``: crop (zero outside the image), then resize the crop to ``size``."""
    return resize(crop(img, top, left, height, width), size, interpolation=interpolation, antialias=antialias)


def _padding(what: str, padding, fill, padding_mode: str, x: Traced) -> tuple:
    """torchvision's padding argument → (left, top, right, bottom), after checking it, ``fill`` and the mode."""
    if padding_mode not in ("constant",) + PAD_MODES:
        raise ValueError(at(user_loc(), f"{what}: padding_mode must be one of {('constant',) + PAD_MODES}, got "
                                        f"{padding_mode!r}"))
    p = [padding] if isinstance(padding, (int, np.integer)) else list(padding)
    if len(p) not in (1, 2, 4) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in p):
        raise ValueError(at(user_loc(), f"{what}: padding must be an int or a sequence of 1, 2 or 4 ints, got "
                                        f"{padding!r}"))
    left, top, right, bottom = (p * 4)[:4] if len(p) == 1 else (p[0], p[1], p[0], p[1]) if len(p) == 2 else p
    if min(left, top, right, bottom) < 0:
        raise UnsupportedError(at(user_loc(), f"{what}: negative padding is not supported"))
    if not isinstance(fill, (int, float)) or (x.dtype.kind in "iub" and not float(fill).is_integer()):
        raise UnsupportedError(at(user_loc(), f"{what}: fill must be a number representable in {x.dtype}"))
    return int(left), int(top), int(right), int(bottom)


def _fill_attrs(fill, x: Traced) -> dict:
    """crop_pad's ``fill`` attribute (in the image's dtype), when not the default 0."""
    return {"fill": np.array(fill).astype(x.dtype).item()} if fill else {}


def pad(img, padding, fill=0, padding_mode: str = "constant"):
    """torchvision ``pad``: ``padding`` is an int, (left/right, top/bottom) or (left, top, right, bottom);
    ``padding_mode`` "constant" (``fill``), "edge" (repeat the border pixel), "reflect" (mirror without repeating
    the border; padding < image size) or "symmetric" (mirror repeating it; padding <= image size)."""
    x = _image(img, "pad")
    left, top, right, bottom = _padding("pad", padding, fill, padding_mode, x)
    if padding_mode != "constant":
        return _emit("image.pad", [x], {"top": int(top), "left": int(left), "bottom": int(bottom),
                                        "right": int(right), "mode": padding_mode})
    h, w = _hw(x)
    attrs = {"top": -top, "left": -left, "h": D.add(h, top + bottom), "w": D.add(w, left + right),
             **_fill_attrs(fill, x)}
    return _emit("image.crop_pad", [x], attrs)


def crop(img, top: int, left: int, height: int, width: int):
    """torchvision ``crop``: the window at (top, left); parts outside the image are zero."""
    x = _image(img, "crop")
    for name, v in (("top", top), ("left", left), ("height", height), ("width", width)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise UnsupportedError(at(user_loc(), f"crop: {name} must be a static int"))
    return _emit("image.crop_pad", [x], {"top": int(top), "left": int(left), "h": int(height), "w": int(width)})


def center_crop(img, output_size):
    """torchvision ``center_crop``: offsets ``round((H - h) / 2)``; a crop larger than the image is zero-padded."""
    x = _image(img, "center_crop")
    ch, cw = _pair(output_size, "center_crop")
    h, w = _hw(x)
    return _emit("image.crop_pad", [x], {"top": D.call("tv_crop_anchor", h, ch), "left": D.call("tv_crop_anchor", w, cw),
                                         "h": ch, "w": cw})


def rgb_to_grayscale(img, num_output_channels: int = 1):
    """torchvision ``rgb_to_grayscale`` (ITU-R 601 weights, torch's rounding), keeping the dtype."""
    x = _image(img, "rgb_to_grayscale")
    return _emit("image.rgb_to_grayscale", [x], {"num_output_channels": int(num_output_channels)})


def _float_image(x: Traced):
    return x.astype(np.float64 if x.dtype == np.float64 else np.float32)


def adjust_brightness(img, brightness_factor: float):
    """torchvision ``adjust_brightness``: ``img * factor`` clamped to the dtype's range, cast back."""
    x = _image(img, "adjust_brightness")
    if brightness_factor < 0:
        raise ValueError(at(user_loc(), f"brightness_factor ({brightness_factor}) is not non-negative."))
    return _brightness(x, float(brightness_factor))


def _brightness(x: Traced, factor) -> Traced:
    bound = 1.0 if x.dtype.kind == "f" else float(_MAX[x.dtype])
    out = np.clip(_float_image(x) * factor, 0.0, bound)
    return out if x.dtype.kind == "f" else out.astype(x.dtype)


def adjust_saturation(img, saturation_factor: float):
    """torchvision ``adjust_saturation``: blend with the (unrounded) grayscale image."""
    x = _image(img, "adjust_saturation")
    if saturation_factor < 0:
        raise ValueError(at(user_loc(), f"saturation_factor ({saturation_factor}) is not non-negative."))
    return _saturation(x, float(saturation_factor))


def adjust_contrast(img, contrast_factor: float):
    """torchvision ``adjust_contrast``: blend with the mean of the grayscale image (floored for integer images,
    averaged in float). The mean is a reduction, so this adds a small kernel before the pixel kernel."""
    x = _image(img, "adjust_contrast")
    if contrast_factor < 0:
        raise ValueError(at(user_loc(), f"contrast_factor ({contrast_factor}) is not non-negative."))
    _check_channels(x, "adjust_contrast", (1, 3))
    return _contrast(x, float(contrast_factor))


def _contrast(x: Traced, ratio) -> Traced:
    if x._value.type.shape[2] == 1:
        gray = _float_image(x)
    else:
        gray = _emit("image.rgb_to_grayscale", [x], {"num_output_channels": 1, "preserve_dtype": False})
        if x.dtype.kind != "f":
            gray = np.floor(gray)
    return _emit("image.blend", [x, gray.mean()], {"ratio": ratio})


def _saturation(x: Traced, ratio) -> Traced:
    gray = _emit("image.rgb_to_grayscale", [x], {"num_output_channels": 1, "preserve_dtype": False})
    return _emit("image.blend", [x, gray], {"ratio": ratio})


def horizontal_flip(img):
    x = _image(img, "horizontal_flip")
    return x[:, ::-1]


def vertical_flip(img):
    x = _image(img, "vertical_flip")
    return x[::-1]


# -- random ops: per-sample parameters from the counter-based RNG (prepjit.kernels.rng) ----------------------
def _rng_stream() -> int:
    """A number for this random op, distinct within the traced function (its RNG stream)."""
    from prepjit.compiler.tracer import _recorder

    rec = _recorder()
    rec.rng_streams = getattr(rec, "rng_streams", 0) + 1
    return rec.rng_streams


def _runtime_float(bits, dtype) -> Traced:
    """A 0-d tensor holding a float chosen per call (``bits``: a dim with the IEEE bits of a float64)."""
    return _emit("image.param", [], {"bits": bits, "dtype": np.dtype(dtype).name})


def _factor_range(value, name: str, center: float = 1.0, bound=(0.0, float("inf")), clip_first: bool = True):
    """torchvision ColorJitter's ``_check_input``: a number v → [max(0, center - v), center + v]; a pair as is."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(at(user_loc(), f"color_jitter: if {name} is a single number, it must be non negative."))
        lo, hi = center - float(value), center + float(value)
        if clip_first:
            lo = max(lo, 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        lo, hi = float(value[0]), float(value[1])
    else:
        raise TypeError(at(user_loc(), f"color_jitter: {name} should be a single number or a list/tuple with length 2."))
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ValueError(at(user_loc(), f"color_jitter: {name} values should be between {bound}, but got {[lo, hi]}."))
    return None if lo == hi == center else (lo, hi)


def _hsv_from_rgb(img):
    """torchvision v2 ``_rgb_to_hsv`` on float32 HWC (same operations in the same order)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    maxc = np.maximum(np.maximum(r, g), b)
    minc = np.minimum(np.minimum(r, g), b)
    eqc = maxc == minc
    channels_range = maxc - minc
    s = channels_range / np.where(eqc, np.float32(1), maxc)
    divisor = np.where(eqc, np.float32(1), channels_range)
    rc, gc, bc = (maxc - r) / divisor, (maxc - g) / divisor, (maxc - b) / divisor
    maxc_neq_r = maxc != r
    maxc_eq_g = maxc == g
    hg = (rc + 2.0 - bc) * (maxc_eq_g & maxc_neq_r).astype(np.float32)
    hr = (bc - gc) * (~maxc_neq_r).astype(np.float32)
    hb = (gc + 4.0 - rc) * (maxc_neq_r & ~maxc_eq_g).astype(np.float32)
    h = np.mod((hr + hg + hb) * np.float32(1.0 / 6.0) + 1.0, 1.0)  # = torch fmod_: the sum is >= 5/6 > 0
    return h, s, maxc


def _rgb_from_hsv(h, s, v):
    """torchvision v2 ``_hsv_to_rgb``: sector i = floor(6h) picks (v, p, q, t) per channel."""
    h6 = h * 6.0
    i = np.floor(h6)
    f = h6 - i
    i = np.mod(i.astype(np.int32), 6)
    sxf = s * f
    one_minus_s = 1.0 - s
    q = np.clip((1.0 - sxf) * v, 0.0, 1.0)
    t = np.clip((sxf + one_minus_s) * v, 0.0, 1.0)
    p = np.clip(one_minus_s * v, 0.0, 1.0)
    vpqt = (v, p, q, t)
    table = ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))

    def channel(row):
        out = vpqt[row[5]]
        for k in range(4, -1, -1):
            out = np.where(i == k, vpqt[row[k]], out)
        return out[..., None]

    return np.concatenate([channel(row) for row in table], axis=-1)


def _adjust_hue(x: Traced, hue) -> Traced:
    """``hue``: a Python float or a 0-d float32 tensor."""
    if x._value.type.shape[2] == 1:
        return x  # grayscale images are invariant
    f = to_dtype(x, np.float32, scale=True)
    h, s, v = _hsv_from_rgb(f)
    h = np.mod(h + (np.float32(hue) if isinstance(hue, float) else hue), 1.0)
    rgb = _rgb_from_hsv(h, s, v)
    if x.dtype == np.float32:
        return rgb
    if x.dtype.kind == "f":
        return rgb.astype(x.dtype)
    return (rgb * (float(_MAX[x.dtype]) + 1.0 - 1e-3)).astype(x.dtype)  # torchvision's float → int scaling


def adjust_hue(img, hue_factor: float):
    """torchvision ``adjust_hue``: RGB → HSV in float32, shift the hue by ``hue_factor`` (in [-0.5, 0.5]),
    back to RGB, then to the input dtype (torchvision's arithmetic, operation for operation)."""
    x = _image(img, "adjust_hue")
    if not -0.5 <= float(hue_factor) <= 0.5:
        raise ValueError(at(user_loc(), f"hue_factor ({hue_factor}) is not in [-0.5, 0.5]."))
    _check_channels(x, "adjust_hue", (1, 3))
    return _adjust_hue(x, float(hue_factor))


def _check_channels(x: Traced, what: str, allowed):
    c = x._value.type.shape[2]
    if isinstance(c, int) and c not in allowed:
        raise TypeError(at(user_loc(), f"{what} expects {' or '.join(map(str, allowed))} channels, got {c}"))


def color_jitter(img, brightness=None, contrast=None, saturation=None, hue=None):
    """torchvision ``ColorJitter``: brightness, contrast, saturation and hue factors drawn uniformly from their
    ranges and applied in a random order, per sample (the call's ``seed=`` and ``index=``). One kernel chooses
    each stage's op per call; contrast's mean adds a small reduction kernel per stage that can be contrast."""
    from prepjit.ir.image import RNG_INDEX, RNG_SEED
    from prepjit.kernels.rng import float_to_bits

    x = _image(img, "color_jitter")
    ranges = [_factor_range(brightness, "brightness"), _factor_range(contrast, "contrast"),
              _factor_range(saturation, "saturation"),
              _factor_range(hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_first=False)]
    if ranges[1] is not None or ranges[2] is not None or ranges[3] is not None:
        _check_channels(x, "color_jitter", (1, 3) if ranges[2] is None else (3,))
    stream = _rng_stream()
    factors = []
    for k, rg in enumerate(ranges):
        if rg is None:
            factors.append(None)
            continue
        bits = D.call("rng_uniform_bits", RNG_SEED, RNG_INDEX, stream, k, *(float_to_bits(v) for v in rg))
        factors.append(bits)
    stages = [
        lambda y: _brightness(y, _runtime_float(factors[0], opmath(y.dtype))),
        lambda y: _contrast(y, factors[1]),
        lambda y: _saturation(y, factors[2]),
        lambda y: _adjust_hue(y, _runtime_float(factors[3], np.float32)),
    ]
    out = x
    for pos in range(4):  # torchvision: for fn_id in randperm(4): apply that op if it was asked for
        which = D.call("rng_permutation", RNG_SEED, RNG_INDEX, stream, 4, pos)
        choices = [stages[k](out) if factors[k] is not None else out for k in range(4)]
        if all(c is out for c in choices):
            continue
        out = _emit("image.switch", choices, {"index": which})
    return out


def _coin(p: float, what: str):
    """A per-sample flag, 1 with probability ``p`` (torchvision: ``torch.rand(1) < p``), drawn from the call's
    ``seed=`` and ``index=`` (see ``JitFunction.__call__``) on this op's RNG stream."""
    from prepjit.ir.image import RNG_INDEX, RNG_SEED
    from prepjit.kernels.rng import float_to_bits

    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(at(user_loc(), f"{what}: p must be in [0, 1], got {p}"))
    return D.call("rng_bernoulli", RNG_SEED, RNG_INDEX, _rng_stream(), float_to_bits(p))


def random_horizontal_flip(img, p: float = 0.5):
    """torchvision ``RandomHorizontalFlip(p)``: flips with probability ``p``, decided per sample."""
    x = _image(img, "random_horizontal_flip")
    return _emit("image.flip", [x], {"axis": 1, "flag": _coin(p, "random_horizontal_flip")})


def random_vertical_flip(img, p: float = 0.5):
    """torchvision ``RandomVerticalFlip(p)``: flips upside down with probability ``p``, decided per sample."""
    x = _image(img, "random_vertical_flip")
    return _emit("image.flip", [x], {"axis": 0, "flag": _coin(p, "random_vertical_flip")})


def random_grayscale(img, p: float = 0.1):
    """torchvision ``RandomGrayscale(p)``: with probability ``p`` the image becomes its grayscale, repeated over
    its channels (``rgb_to_grayscale(img, num_output_channels=channels)``), decided per sample. One kernel holds
    both versions, chosen outside its loops."""
    x = _image(img, "random_grayscale")
    _check_channels(x, "random_grayscale", (3,))
    flag = _coin(p, "random_grayscale")
    return _emit("image.switch", [x, rgb_to_grayscale(x, 3)], {"index": flag})


def random_crop(img, size, padding=None, pad_if_needed: bool = False, fill=0, padding_mode: str = "constant"):
    """torchvision ``RandomCrop(size, padding, pad_if_needed, fill, padding_mode)``: pad (``padding`` as in
    :func:`pad`; with ``pad_if_needed`` each side of an axis shorter than the crop by the difference), then a
    window of ``size`` at an offset drawn uniformly per sample (the call's ``seed=`` and ``index=``). A crop
    larger than the padded image raises ValueError, naming the sample. With constant padding, pad and crop are
    one window on the image, zero-filled (``fill``) past its edges; with edge/reflect/symmetric padding and
    ``pad_if_needed`` the image's size must be static."""
    from prepjit.ir.image import RNG_INDEX, RNG_SEED

    x = _image(img, "random_crop")
    ch, cw = _pair(size, "random_crop")
    left, top, right, bottom = _padding("random_crop", 0 if padding is None else padding, fill, padding_mode, x)
    h, w = _hw(x)
    # pad_if_needed: each side of an axis shorter than the crop grows by the difference
    dh = D.maximum(0, D.add(ch, D.mul(D.add(h, top + bottom), -1))) if pad_if_needed else 0
    dw = D.maximum(0, D.add(cw, D.mul(D.add(w, left + right), -1))) if pad_if_needed else 0
    if padding_mode != "constant":
        if not (D.is_static(dh) and D.is_static(dw)):
            raise UnsupportedError(at(user_loc(), f"random_crop: pad_if_needed with padding_mode={padding_mode!r} "
                                                  f"needs a static image size (the padding depends on it)"))
        x = pad(x, [left + int(dw), top + int(dh), right + int(dw), bottom + int(dh)], padding_mode=padding_mode)
        h, w = _hw(x)
        top = left = bottom = right = 0
        dh = dw = 0
    stream = _rng_stream()
    ph, pw = D.add(D.add(h, top + bottom), D.mul(dh, 2)), D.add(D.add(w, left + right), D.mul(dw, 2))
    row = D.call("random_crop_offset", RNG_SEED, RNG_INDEX, stream, 0, ph, ch)
    col = D.call("random_crop_offset", RNG_SEED, RNG_INDEX, stream, 1, pw, cw)
    attrs = {"top": D.add(row, D.mul(D.add(dh, top), -1)), "left": D.add(col, D.mul(D.add(dw, left), -1)),
             "h": ch, "w": cw, **(_fill_attrs(fill, x) if padding_mode == "constant" else {})}
    if padding_mode != "constant" or (top == left == bottom == right == 0 and not pad_if_needed):
        attrs["inside"] = 1  # the window lies in the (padded) image by construction; the prologue checks it
    return _emit("image.crop_pad", [x], attrs)


def random_resized_crop(img, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), interpolation: str = "bilinear",
                        antialias: bool = True):
    """torchvision ``RandomResizedCrop(size, scale, ratio)``: a random box (torchvision's 10-attempt rule and
    central fallback, ``prepjit.ir.image.random_resized_crop_params``) resized to ``size``; the box is drawn per
    sample from the call's ``seed=`` and ``index=``."""
    from prepjit.ir.image import RNG_INDEX, RNG_SEED
    from prepjit.kernels.rng import float_to_bits

    x = _image(img, "random_resized_crop")
    scale, ratio = tuple(float(v) for v in scale), tuple(float(v) for v in ratio)
    if len(scale) != 2 or len(ratio) != 2 or scale[0] > scale[1] or ratio[0] > ratio[1] or min(scale) <= 0 \
            or min(ratio) <= 0:
        raise ValueError(at(user_loc(), f"random_resized_crop: scale and ratio must be increasing positive pairs, "
                                        f"got {scale} and {ratio}"))
    out = _pair(size, "random_resized_crop")
    h, w = _hw(x)
    args = (h, w, RNG_SEED, RNG_INDEX, _rng_stream(), *(float_to_bits(v) for v in scale + ratio))
    top, left, ch, cw = (D.call("rrc_param", k, *args) for k in range(4))
    box = _emit("image.crop_pad", [x], {"top": top, "left": left, "h": ch, "w": cw, "inside": 1})
    return resize(box, out, interpolation=interpolation, antialias=antialias)


_MAX = {np.dtype(np.uint8): 255, np.dtype(np.int8): 127, np.dtype(np.int16): 32767, np.dtype(np.uint16): 65535,
        np.dtype(np.int32): 2 ** 31 - 1, np.dtype(np.int64): 2 ** 63 - 1}


def to_dtype(img, dtype, scale: bool = False):
    """torchvision ``to_dtype``; with ``scale=True`` integer → float multiplies by ``1 / max`` like torchvision."""
    x = _traced(img)
    dt = check_dtype(dtype)
    if x.dtype == dt:
        return x
    if not scale:
        return x.astype(dt)
    if x.dtype.kind in "iu" and dt.kind == "f":
        return x.astype(dt) * (1.0 / _MAX[x.dtype])
    if x.dtype.kind == "f" and dt.kind == "f":
        return x.astype(dt)
    raise UnsupportedError(at(user_loc(), f"to_dtype(scale=True) from {x.dtype} to {dt} is not supported yet"))


def normalize(img, mean, std):
    """torchvision ``normalize`` on HWC: ``(x - mean) / std`` per channel, in the image's float dtype."""
    x = _traced(img)
    if x.dtype.kind != "f":
        raise TypeError(at(user_loc(), f"normalize expects a float image, got {x.dtype} (use to_dtype first)"))
    m = np.asarray(mean, dtype=x.dtype).reshape(-1)
    s = np.asarray(std, dtype=x.dtype).reshape(-1)
    if (s == 0).any():
        raise ValueError(at(user_loc(), f"std evaluated to zero after conversion to {x.dtype}, leading to "
                                        "division by zero."))
    return (x - m) / s


def to_chw(img):
    """HWC → CHW (a layout change, folded into the final store)."""
    x = _image(img, "to_chw")
    return x.transpose(2, 0, 1)
