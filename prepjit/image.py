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
from prepjit.ir.types import check_dtype

__all__ = ["adjust_brightness", "adjust_saturation", "rgb_to_grayscale", "decode", "resize", "resized_crop", "pad",
           "center_crop", "crop", "horizontal_flip", "vertical_flip", "to_dtype", "normalize", "to_chw",
           "random_horizontal_flip", "random_resized_crop", "adjust_contrast"]


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
    return _emit("image.resample", [x], {"mode": mode, "antialias": bool(antialias) and mode != "nearest",
                                         "out_h": out_h, "out_w": out_w, "top": 0, "left": 0,
                                         "win_h": out_h, "win_w": out_w})


def resized_crop(img, top: int, left: int, height: int, width: int, size, interpolation: str = "bilinear",
                 antialias: bool = True):
    """torchvision ``resized_crop``: crop (zero outside the image), then resize the crop to ``size``."""
    return resize(crop(img, top, left, height, width), size, interpolation=interpolation, antialias=antialias)


def pad(img, padding, fill=0, padding_mode: str = "constant"):
    """torchvision ``pad`` with a constant fill; ``padding`` is an int, (left/right, top/bottom) or
    (left, top, right, bottom)."""
    x = _image(img, "pad")
    if padding_mode != "constant":
        raise UnsupportedError(at(user_loc(), f"pad: padding_mode {padding_mode!r} is not supported yet "
                                              "(supported: 'constant')"))
    p = [padding] if isinstance(padding, (int, np.integer)) else list(padding)
    if len(p) not in (1, 2, 4) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in p):
        raise ValueError(at(user_loc(), f"pad: padding must be an int or a sequence of 1, 2 or 4 ints, got {padding!r}"))
    left, top, right, bottom = (p * 4)[:4] if len(p) == 1 else (p[0], p[1], p[0], p[1]) if len(p) == 2 else p
    if min(left, top, right, bottom) < 0:
        raise UnsupportedError(at(user_loc(), "pad: negative padding is not supported"))
    if not isinstance(fill, (int, float)) or (x.dtype.kind in "iub" and not float(fill).is_integer()):
        raise UnsupportedError(at(user_loc(), f"pad: fill must be a number representable in {x.dtype}"))
    h, w = _hw(x)
    attrs = {"top": -int(top), "left": -int(left), "h": D.add(h, int(top) + int(bottom)),
             "w": D.add(w, int(left) + int(right))}
    if fill:
        attrs["fill"] = np.array(fill).astype(x.dtype).item()
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
    bound = 1.0 if x.dtype.kind == "f" else float(_MAX[x.dtype])
    out = np.clip(_float_image(x) * float(brightness_factor), 0.0, bound)
    return out if x.dtype.kind == "f" else out.astype(x.dtype)


def adjust_saturation(img, saturation_factor: float):
    """torchvision ``adjust_saturation``: blend with the (unrounded) grayscale image."""
    x = _image(img, "adjust_saturation")
    if saturation_factor < 0:
        raise ValueError(at(user_loc(), f"saturation_factor ({saturation_factor}) is not non-negative."))
    gray = _emit("image.rgb_to_grayscale", [x], {"num_output_channels": 1, "preserve_dtype": False})
    return _emit("image.blend", [x, gray], {"ratio": float(saturation_factor)})


def adjust_contrast(img, contrast_factor: float):
    """torchvision ``adjust_contrast``: blend with the mean of the grayscale image (floored for integer images,
    averaged in float). The mean is a reduction, so this adds a small kernel before the pixel kernel."""
    x = _image(img, "adjust_contrast")
    if contrast_factor < 0:
        raise ValueError(at(user_loc(), f"contrast_factor ({contrast_factor}) is not non-negative."))
    c = x._value.type.shape[2]
    if isinstance(c, int) and c not in (1, 3):
        raise TypeError(at(user_loc(), f"adjust_contrast expects 1 or 3 channels, got {c}"))
    if c == 1:
        gray = _float_image(x)
    else:
        gray = _emit("image.rgb_to_grayscale", [x], {"num_output_channels": 1, "preserve_dtype": False})
        if x.dtype.kind != "f":
            gray = np.floor(gray)
    return _emit("image.blend", [x, gray.mean()], {"ratio": float(contrast_factor)})


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


def random_horizontal_flip(img, p: float = 0.5):
    """torchvision ``RandomHorizontalFlip(p)``: flips with probability ``p``, decided per sample by the
    call's ``seed=`` and ``index=`` (see ``JitFunction.__call__``)."""
    from prepjit.ir.image import RNG_INDEX, RNG_SEED
    from prepjit.kernels.rng import float_to_bits

    x = _image(img, "random_horizontal_flip")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(at(user_loc(), f"random_horizontal_flip: p must be in [0, 1], got {p}"))
    flag = D.call("rng_bernoulli", RNG_SEED, RNG_INDEX, _rng_stream(), float_to_bits(p))
    return _emit("image.flip", [x], {"axis": 1, "flag": flag})


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
    box = _emit("image.crop_pad", [x], {"top": top, "left": left, "h": ch, "w": cw})
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
