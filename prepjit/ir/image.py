"""The ``image`` dialect: HWC image ops whose lowering is more than an index map.

``image.resample`` resizes an (H, W, C) image to (out_h, out_w) exactly as torch's CPU ``interpolate`` does
(separable passes, torch's weight tables and rounding; see ``prepjit.kernels.resample``) and keeps the window
[top, top + win_h) × [left, left + win_w) of the result, zero outside — so a crop of a resize is one op and
only the kept region is computed. ``image.crop_pad`` is a window of any image with zero fill (torchvision pads
crops larger than the image).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from prepjit.errors import UnsupportedError, at
from prepjit.ir import dims as D
from prepjit.ir.core import Constraint, Inferred, OpDef, define
from prepjit.ir.types import TensorType
from prepjit.kernels.rng import bits_to_float, float_to_bits, uniform, uniform_v

RESAMPLE_MODES = ("bilinear", "bicubic", "nearest", "nearest-exact")
NEAREST_MODES = ("nearest", "nearest-exact")
RESAMPLE_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


def _window(x, top, left, h, w, fill=0):
    """Zero-filled window of an array's first two axes (negative offsets and overhang allowed)."""
    out = np.full((h, w) + x.shape[2:], fill, dtype=x.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, x.shape[0]), min(left + w, x.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = x[y0:y1, x0:x1]
    return out


def _resample_reference(x, mode, antialias, out_h, out_w, top, left, win_h, win_w):
    from prepjit.kernels import resample

    if x.dtype == np.uint8:
        full = resample.resize_uint8_hwc(x, out_h, out_w, mode=mode, antialias=antialias)
    else:
        full = resample.resize_float_hwc(x, out_h, out_w, mode=mode, antialias=antialias)
    return _window(np.asarray(full, dtype=x.dtype), top, left, win_h, win_w)


def _resample_infer(types, attrs, loc):
    (t,) = types
    if t.rank != 3:
        raise TypeError(at(loc, f"image.resample expects an (H, W, C) image, got rank {t.rank}"))
    if t.dtype not in RESAMPLE_DTYPES:
        raise UnsupportedError(at(loc, f"resize supports uint8, float32 and float64 images, got {t.dtype}"))
    if attrs["mode"] in NEAREST_MODES and attrs["antialias"]:
        attrs = dict(attrs, antialias=False)  # torch ignores antialias for nearest
    if attrs["mode"] not in RESAMPLE_MODES:
        raise UnsupportedError(at(loc, f"resize mode {attrs['mode']!r} is not supported yet "
                                       f"(supported: {', '.join(RESAMPLE_MODES)})"))
    cons = [Constraint("gt", (t.shape[0], 0), "resize: the input image has height {0}; it must be at least 1", loc),
            Constraint("gt", (t.shape[1], 0), "resize: the input image has width {0}; it must be at least 1", loc),
            Constraint("gt", (attrs["out_h"], 0), "resize: output height {0} must be at least 1", loc),
            Constraint("gt", (attrs["out_w"], 0), "resize: output width {0} must be at least 1", loc)]
    return Inferred([TensorType(t.dtype, (attrs["win_h"], attrs["win_w"], t.shape[2]))], cons)


def _crop_pad_infer(types, attrs, loc):
    (t,) = types
    if t.rank < 2:
        raise TypeError(at(loc, f"crop expects an image with at least 2 dimensions, got rank {t.rank}"))
    cons = [Constraint("ge", (attrs["h"], 0), "crop height {0} must be >= 0", loc),
            Constraint("ge", (attrs["w"], 0), "crop width {0} must be >= 0", loc)]
    if attrs.get("inside"):  # a window inside the image by construction (random_resized_crop): checked all the same
        cons += [Constraint("ge", (attrs["top"], 0), "crop top {0} must be >= 0", loc),
                 Constraint("ge", (attrs["left"], 0), "crop left {0} must be >= 0", loc),
                 Constraint("ge", (t.shape[0], D.add(attrs["top"], attrs["h"])),
                            "crop window ends at row {1}, past the image's height {0}", loc),
                 Constraint("ge", (t.shape[1], D.add(attrs["left"], attrs["w"])),
                            "crop window ends at column {1}, past the image's width {0}", loc)]
    return Inferred([TensorType(t.dtype, (attrs["h"], attrs["w"]) + t.shape[2:])], cons)


DECODE_MODES = {"RGB": 3, "L": 1, "RGBA": 4}


JPEG_SCALES = (8, 4, 2)


def _draft_scale(w: int, h: int, reduce, min_h: int, min_w: int, min_short: int) -> int:
    """The libjpeg scale denominator for ``reduce``: an explicit 2/4/8, or for "auto" the largest one whose
    decoded size (libjpeg rounds up) still covers the planned resize target."""
    if reduce in JPEG_SCALES:
        return int(reduce)
    if reduce != "auto" or not (min_h or min_w or min_short):
        return 1
    for s in JPEG_SCALES:
        sh, sw = -(-h // s), -(-w // s)
        if sh >= min_h and sw >= min_w and min(sh, sw) >= min_short:
            return s
    return 1


def decode_image(data, mode: str = "RGB", reduce=None, min_h: int = 0, min_w: int = 0,
                 min_short: int = 0) -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ... anything Pillow reads) → HWC uint8 in ``mode`` (RGB, L or RGBA), exactly
    as Pillow decodes them (``Image.open(...).convert(mode)``).

    ``reduce`` (JPEG only; other formats decode exactly): 2, 4 or 8 decodes at 1/2, 1/4, 1/8 size in the DCT
    domain (libjpeg's scaled IDCT: Pillow's ``draft``); "auto" picks the largest such scale that still covers
    ``min_h`` × ``min_w`` or a shorter side of ``min_short`` (set by the compiler from the downstream resize).

    JPEGs go through libjpeg-turbo's TurboJPEG API (simplejpeg) when it decodes them as Pillow would: Pillow
    decodes with the same library, then copies into NumPy (a 2048×1536 photo: Pillow 13–28 ms across
    sessions, simplejpeg's decoding 7). Anything else — other formats, CMYK, L from a colour JPEG (Pillow
    converts RGB → L with its own weights), data libjpeg warns about, simplejpeg not installed — goes to
    Pillow."""
    arr = _decode_turbojpeg(data, mode, reduce, min_h, min_w, min_short)
    if arr is None:
        arr = decode_pillow(data, mode, reduce, min_h, min_w, min_short)
    return arr


_TURBO_COLORSPACES = {"RGB": "RGB", "RGBA": "RGBA", "L": "GRAY"}


@lru_cache(maxsize=None)
def _simplejpeg():
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


def _decode_turbojpeg(data, mode, reduce, min_h, min_w, min_short):
    """The image as Pillow would decode it, or None when this path does not apply."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or bytes(data[:2]) != b"\xff\xd8":
        return None
    sj = _simplejpeg()
    if sj is None:
        return None
    try:
        h, w, colorspace, _ = sj.decode_jpeg_header(data)
    except Exception:  # noqa: BLE001 - let Pillow read it, or say what is wrong with it
        return None
    if colorspace not in ("YCbCr", "Gray") or (mode == "L" and colorspace != "Gray"):
        return None
    scale = _draft_scale(w, h, reduce, min_h, min_w, min_short) if reduce else 1
    size = {}
    if scale > 1:
        if min(h, w) < 8:  # libjpeg's 1/s is then not the only eighth giving ceil(size / s): leave it to Pillow
            return None
        size = {"min_height": -(-h // scale), "min_width": -(-w // scale)}
    try:  # strict: a libjpeg warning (corrupt data) raises; Pillow then decides what to make of the bytes
        arr = sj.decode_jpeg(data, colorspace=_TURBO_COLORSPACES[mode], fastdct=False, fastupsample=False,
                             strict=True, **size)
    except Exception:  # noqa: BLE001
        return None
    return arr.reshape(arr.shape[0], arr.shape[1], DECODE_MODES[mode])


def decode_pillow(data, mode: str = "RGB", reduce=None, min_h: int = 0, min_w: int = 0,
                  min_short: int = 0) -> np.ndarray:
    """``decode_image`` through Pillow only (the reference the fast path is tested against)."""
    import io

    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency of the image extra
        raise ImportError("prepjit.image.decode needs Pillow: pip install 'prepjit[image]'") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            scale = _draft_scale(im.width, im.height, reduce, min_h, min_w, min_short) if reduce else 1
            if scale > 1 and im.format == "JPEG":
                # Pillow's draft picks the largest scale s with size // requested >= s: ask for the floor sizes
                im.draft(mode, (max(1, im.width // scale), max(1, im.height // scale)))
            arr = np.array(im.convert(mode))  # writable (asarray of a PIL image is a read-only view of bytes)
    except Exception as e:  # Pillow raises many types for bad data; the caller gets one, naming the problem
        raise ValueError(f"cannot decode image bytes ({len(data)} bytes): {e}") from None
    return arr.reshape(arr.shape[0], arr.shape[1], DECODE_MODES[mode])


def _decode_infer(types, attrs, loc):
    if attrs["mode"] not in DECODE_MODES:
        raise ValueError(at(loc, f"decode: mode must be one of {sorted(DECODE_MODES)}, got {attrs['mode']!r}"))
    if attrs.get("reduce") not in (None, "auto", *JPEG_SCALES):
        raise ValueError(at(loc, f"decode: reduce must be None, 'auto', 2, 4 or 8, got {attrs['reduce']!r}"))
    h, w = D.sym(attrs["sym_h"]), D.sym(attrs["sym_w"])
    return Inferred([TensorType(np.dtype(np.uint8), (h, w, DECODE_MODES[attrs["mode"]]))])


# Runs on the host in the call prologue (its sizes become new symbols); kernels read its result as a buffer.
define(OpDef("image.decode", 1, ("mode", "sym_h", "sym_w"), frozenset({"image", "host"}), _decode_infer,
             lambda data, mode, sym_h, sym_w, **plan: decode_image(data, mode, **plan)))
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def opmath(dt) -> np.dtype:
    """The float type torch computes image arithmetic in: float64 for float64 images, else float32."""
    return np.dtype(np.float64) if np.dtype(dt) == np.float64 else np.dtype(np.float32)


def _gray_reference(x, num_output_channels, preserve_dtype=True):
    """torchvision v2 rgb_to_grayscale: ``r.mul(.2989).add_(g, alpha=.587).add_(b, alpha=.114)`` — torch's
    ``add_`` with alpha is a fused multiply-add — then cast back to the input dtype."""
    from prepjit.kernels.resample import fma  # correctly rounded a * b + c, the same as the kernel's

    ft = opmath(x.dtype).type
    r, g, b = (x[..., k].astype(ft) for k in range(3))
    wr, wg, wb = (ft(w) for w in GRAY_WEIGHTS)
    gray = fma(b, wb, fma(g, wg, r * wr, ft), ft)
    with np.errstate(all="ignore"):
        out = (gray.astype(x.dtype) if preserve_dtype else gray)[..., None]
    return np.repeat(out, num_output_channels, axis=-1)


def _gray_infer(types, attrs, loc):
    (t,) = types
    if t.rank != 3:
        raise TypeError(at(loc, f"rgb_to_grayscale expects an (H, W, 3) image, got rank {t.rank}"))
    if isinstance(t.shape[2], int) and t.shape[2] != 3:
        raise TypeError(at(loc, f"rgb_to_grayscale expects 3 channels, got {t.shape[2]}"))
    if attrs["num_output_channels"] not in (1, 3):
        raise ValueError(at(loc, "rgb_to_grayscale: num_output_channels must be 1 or 3"))
    cons = [Constraint("eq", (t.shape[2], 3), "rgb_to_grayscale expects 3 channels, got {0}", loc)]
    dt = t.dtype if attrs.get("preserve_dtype", True) else opmath(t.dtype)
    return Inferred([TensorType(dt, (t.shape[0], t.shape[1], attrs["num_output_channels"]))], cons)


def _blend_reference(x, y, ratio):  # ratio: a float, or (per call) a float64's IEEE bits as an int
    """torchvision's ``_blend``: ``x.mul(ratio).add_(y, alpha=1 - ratio).clamp_(0, max)`` (``add_`` with alpha is
    a fused multiply-add in torch), cast back to x's dtype."""
    from prepjit.kernels.resample import fma

    ratio = bits_to_float(ratio) if isinstance(ratio, int) else ratio
    ft = opmath(x.dtype).type
    a = x.astype(ft) * ft(ratio)
    mixed = fma(np.broadcast_to(y, x.shape).astype(ft), ft(1.0 - ratio), a, ft)
    bound = 1.0 if x.dtype.kind == "f" else float(np.iinfo(x.dtype).max)
    out = np.clip(mixed, ft(0), ft(bound))
    with np.errstate(all="ignore"):
        return out.astype(x.dtype)


def _blend_infer(types, attrs, loc):
    x, y = types
    from prepjit.ir.tensor import broadcast_shapes

    shape, cons = broadcast_shapes([x.shape, y.shape], loc, "blend")
    if shape != tuple(x.shape) and len(shape) != x.rank:
        raise ValueError(at(loc, "blend: the second image must broadcast to the first"))
    return Inferred([TensorType(x.dtype, tuple(x.shape))], cons)


define(OpDef("image.blend", 2, ("ratio",), frozenset({"image"}), _blend_infer, _blend_reference))


define(OpDef("image.rgb_to_grayscale", 1, ("num_output_channels",), frozenset({"image"}), _gray_infer,
             _gray_reference))
define(OpDef("image.resample", 1, ("mode", "antialias", "out_h", "out_w", "top", "left", "win_h", "win_w"),
             frozenset({"image"}), _resample_infer, _resample_reference))
def _flip_infer(types, attrs, loc):
    (t,) = types
    if t.rank < 2:
        raise TypeError(at(loc, f"flip expects an image with at least 2 dimensions, got rank {t.rank}"))
    if attrs["axis"] not in (0, 1):
        raise ValueError(at(loc, f"flip: axis must be 0 or 1, got {attrs['axis']}"))
    return Inferred([t])


def _param_infer(types, attrs, loc):
    if attrs["dtype"] not in ("float32", "float64"):
        raise ValueError(at(loc, f"image.param: dtype must be float32 or float64, got {attrs['dtype']!r}"))
    return Inferred([TensorType(np.dtype(attrs["dtype"]), ())])


def _param_reference(bits, dtype):
    return np.array(bits_to_float(bits), dtype=dtype)


# A float decided per call (a random factor): ``bits`` is a dim holding the IEEE bits of a float64, evaluated
# by the prologue; the result is that value rounded to ``dtype``, as a 0-d tensor.
define(OpDef("image.param", 0, ("bits", "dtype"), frozenset({"image"}), _param_infer, _param_reference))


def _switch_infer(types, attrs, loc):
    first = types[0]
    if any(t.dtype != first.dtype or t.rank != first.rank for t in types[1:]):
        raise TypeError(at(loc, f"image.switch: all choices must have the same dtype and rank, got {types}"))
    cons = [Constraint("eq", (d, e), "image.switch: choices differ in size ({0} vs {1})", loc)
            for t in types[1:] for d, e in zip(first.shape, t.shape) if d != e]
    return Inferred([first], cons)


# One of several same-typed values, chosen per call by the dim ``index`` (color_jitter's random order).
define(OpDef("image.switch", None, ("index",), frozenset({"image", "materialize"}), _switch_infer,
             lambda *xs, index: xs[index]))


# A flip decided per call (random_horizontal_flip): ``flag`` is a dim (0 or 1) evaluated by the prologue.
define(OpDef("image.flip", 1, ("axis", "flag"), frozenset({"image", "layout"}), _flip_infer,
             lambda x, axis, flag: np.flip(x, axis).copy() if flag else x))
define(OpDef("image.crop_pad", 1, ("top", "left", "h", "w"), frozenset({"image", "layout"}), _crop_pad_infer,
             lambda x, top, left, h, w, fill=0, inside=0: _window(x, top, left, h, w, fill)))


# Padding that repeats the image (torchvision's padding_mode "edge", "reflect", "symmetric"): an index map folding
# out-of-range indices back into the image. NumPy's np.pad modes of the same names are the reference.
PAD_MODES = ("edge", "reflect", "symmetric")


def _pad_infer(types, attrs, loc):
    (t,) = types
    if t.rank < 2:
        raise TypeError(at(loc, f"pad expects an image with at least 2 dimensions, got rank {t.rank}"))
    mode = attrs["mode"]
    cons = []
    for size, name, before, after in ((t.shape[0], "height", attrs["top"], attrs["bottom"]),
                                      (t.shape[1], "width", attrs["left"], attrs["right"])):
        most = max(before, after)
        if mode == "edge" and most:
            cons.append(Constraint("ge", (size, 1), f"pad: padding_mode 'edge' needs a non-empty image, got {name} "
                                                    "{0}", loc))
        elif most:  # torch's reflect needs padding < size; torchvision's symmetric indexing needs padding <= size
            kind, rel = ("gt", "less than") if mode == "reflect" else ("ge", "at most")
            cons.append(Constraint(kind, (size, most), f"pad: padding_mode {mode!r} needs padding {rel} the image "
                                                       f"{name}: got padding {{1}} for {name} {{0}}", loc))
    h, w = D.add(t.shape[0], attrs["top"] + attrs["bottom"]), D.add(t.shape[1], attrs["left"] + attrs["right"])
    return Inferred([TensorType(t.dtype, (h, w) + t.shape[2:])], cons)


def _pad_reference(x, top, left, bottom, right, mode):
    return np.pad(x, [(top, bottom), (left, right)] + [(0, 0)] * (x.ndim - 2), mode=mode)


define(OpDef("image.pad", 1, ("top", "left", "bottom", "right", "mode"), frozenset({"image", "layout"}), _pad_infer,
             _pad_reference))



# -- torchvision's size rules, as named dim functions (evaluated by the call prologue) -----------------------
def tv_resize_hw(h: int, w: int, size: int, max_size: int, want_h: int) -> int:
    """torchvision v2 ``Resize(size)`` with an int size: the shorter side becomes ``size`` (float maths and
    ``int()`` truncation exactly as torchvision's ``_compute_resized_output_size``); ``max_size < 0`` = None."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size >= 0 and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h if want_h else new_w


def tv_crop_anchor(img: int, crop: int) -> int:
    """torchvision v2 ``center_crop`` offset along one axis; negative = zero padding before the image."""
    if crop > img:
        return -((crop - img) // 2)
    return int(round((img - crop) / 2.0))


D.register_call("tv_resize_hw", tv_resize_hw)
D.register_call("tv_crop_anchor", tv_crop_anchor)


# -- random parameters (counter-based, see prepjit.kernels.rng), as dim functions of the sample's RNG key ------
RNG_SEED, RNG_INDEX = D.sym("rng_seed"), D.sym("rng_index")  # bound per call from fn(..., seed=, index=)


@lru_cache(maxsize=4096)
def random_resized_crop_params(h: int, w: int, seed: int, index: int, stream: int, scale_lo: int, scale_hi: int,
                               ratio_lo: int, ratio_hi: int) -> tuple[int, int, int, int]:
    """torchvision v2 ``RandomResizedCrop.make_params`` (10 attempts, then the central fallback) with draws from
    the counter-based RNG; float arguments arrive as their IEEE bits. Returns (top, left, height, width)."""
    s0, s1, r0, r1 = (bits_to_float(b) for b in (scale_lo, scale_hi, ratio_lo, ratio_hi))
    area = h * w
    log_r0, log_r1 = math.log(r0), math.log(r1)
    for attempt in range(10):
        u = [uniform(seed, index, stream, 4 * attempt + k) for k in range(4)]
        target_area = area * (s0 + (s1 - s0) * u[0])
        aspect = math.exp(log_r0 + (log_r1 - log_r0) * u[1])
        cw = int(round(math.sqrt(target_area * aspect)))
        ch = int(round(math.sqrt(target_area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < min(r0, r1):
        cw, ch = w, int(round(w / min(r0, r1)))
    elif in_ratio > max(r0, r1):
        ch, cw = h, int(round(h * max(r0, r1)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def rrc_param(which: int, *args) -> int:
    return random_resized_crop_params(*args)[which]


def rng_bernoulli(seed: int, index: int, stream: int, p_bits: int) -> int:
    """1 with probability p (torchvision: ``torch.rand(1) < p``), else 0."""
    return int(uniform(seed, index, stream, 0) < bits_to_float(p_bits))


def rng_uniform_bits(seed: int, index: int, stream: int, draw: int, lo_bits: int, hi_bits: int) -> int:
    """A factor drawn uniformly from [lo, hi) as torchvision draws it (``torch.empty(1).uniform_(lo, hi)``: a
    float32 value), returned as the IEEE bits of that value as a float64."""
    lo, hi = bits_to_float(lo_bits), bits_to_float(hi_bits)
    return float_to_bits(float(np.float32(lo + (hi - lo) * uniform(seed, index, stream, draw))))


@lru_cache(maxsize=4096)
def _permutation(seed: int, index: int, stream: int, n: int) -> tuple:
    perm = list(range(n))
    for k in range(n - 1, 0, -1):  # Fisher-Yates with counter-based draws
        j = int(uniform(seed, index, stream, 100 + k) * (k + 1))
        perm[k], perm[j] = perm[j], perm[k]
    return tuple(perm)


def rng_permutation(seed: int, index: int, stream: int, n: int, k: int) -> int:
    """Element ``k`` of a random permutation of range(n) (torchvision: ``torch.randperm(n)``)."""
    return _permutation(seed, index, stream, n)[k]


def random_crop_offset(seed: int, index: int, stream: int, draw: int, padded: int, crop: int) -> int:
    """torchvision v2 ``RandomCrop.make_params``: the crop's offset along one axis of the padded image,
    uniform over ``[0, padded - crop]`` (``torch.randint``), 0 when the crop spans the axis; ``draw`` 0 for the
    rows, 1 for the columns. A crop larger than the padded image is torchvision's ValueError."""
    if padded < crop:
        axis = ("height", "width")[draw]
        raise ValueError(f"random_crop: the crop {axis} {crop} is larger than the (padded) image {axis} {padded}; "
                         f"pass pad_if_needed=True to pad it")
    return int(uniform(seed, index, stream, draw) * (padded - crop + 1)) if padded > crop else 0


def _random_crop_offset_v(seed: int, index, stream: int, draw: int, padded: int, crop: int):
    """:func:`random_crop_offset` for an array of sample indices."""
    if padded <= crop:
        return np.full(np.shape(index), random_crop_offset(seed, 0, stream, draw, padded, crop), np.int64)
    return (uniform_v(seed, index, stream, draw) * (padded - crop + 1)).astype(np.int64)  # (truncates: >= 0)


def _rng_bernoulli_v(seed: int, index, stream: int, p_bits: int):
    """:func:`rng_bernoulli` for an array of sample indices."""
    return (uniform_v(seed, index, stream, 0) < bits_to_float(p_bits)).astype(np.int64)


def _rng_uniform_bits_v(seed: int, index, stream: int, draw: int, lo_bits: int, hi_bits: int):
    """:func:`rng_uniform_bits` for an array of sample indices (the same float64 arithmetic, then float32)."""
    lo, hi = bits_to_float(lo_bits), bits_to_float(hi_bits)
    return (lo + (hi - lo) * uniform_v(seed, index, stream, draw)).astype(np.float32).astype(np.float64).view(np.int64)


_last_perms: tuple = (None, None, None)  # ((seed, stream, n), index array, permutations): a call reads every k


def _rng_permutation_v(seed: int, index, stream: int, n: int, k: int):
    """:func:`rng_permutation` for an array of sample indices: the same Fisher-Yates draws, a row a sample."""
    global _last_perms
    key, last_index, perms = _last_perms
    if last_index is not index or key != (seed, stream, n):
        perms = np.tile(np.arange(n, dtype=np.int64), (len(index), 1))
        rows = np.arange(len(index))
        for m in range(n - 1, 0, -1):
            j = (uniform_v(seed, index, stream, 100 + m) * (m + 1)).astype(np.int64)
            at_m = perms[rows, m].copy()
            perms[rows, m] = perms[rows, j]
            perms[rows, j] = at_m
        _last_perms = ((seed, stream, n), index, perms)
    return perms[:, k]


D.register_call("random_crop_offset", random_crop_offset, _random_crop_offset_v)
D.register_call("rrc_param", rrc_param)
D.register_call("rng_uniform_bits", rng_uniform_bits, _rng_uniform_bits_v)
D.register_call("rng_permutation", rng_permutation, _rng_permutation_v)
D.register_call("rng_bernoulli", rng_bernoulli, _rng_bernoulli_v)
