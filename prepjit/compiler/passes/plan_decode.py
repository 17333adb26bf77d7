"""Decode planning: let ``decode(reduce="auto")`` decode JPEGs at a DCT-domain reduced size (1/2, 1/4, 1/8).

When every use of a decoded image is a resize, the decoder only needs an image at least as large as the
resize target: record that target on the decode op (``min_h``/``min_w`` for a fixed size, ``min_short`` for
torchvision's shorter-side rule) and the host decoder picks the largest libjpeg scale that still meets it.
Approximate by design (libjpeg's scaled IDCT is not a resize), so it runs only on request.
"""
from __future__ import annotations

from prepjit.ir.core import Function, users


def _target(decode, resample):
    """(min_h, min_w, min_short) the resample needs from the decoded image, or None if unknown."""
    a = resample.attrs
    oh, ow = a["out_h"], a["out_w"]
    if isinstance(oh, int) and isinstance(ow, int):
        return oh, ow, 0
    syms = (decode.attrs["sym_h"], decode.attrs["sym_w"])
    for d in (oh, ow):  # torchvision's Resize(int): tv_resize_hw(h, w, size, max_size=-1, ...) of the decoded size
        if not (getattr(d, "op", None) == "call" and d.args[0] == "tv_resize_hw" and d.args[4] == -1
                and tuple(getattr(s, "args", (None,))[0] for s in d.args[1:3]) == syms):
            return None
    return 0, 0, oh.args[3]


def plan_decode(fn: Function) -> bool:
    changed = False
    uses = users(fn.body)
    for op in fn.ops:
        if op.name != "image.decode" or op.attrs.get("reduce") != "auto" or "min_short" in op.attrs:
            continue
        consumers = uses.get(op.result, [])
        targets = [_target(op, u) if u.name == "image.resample" else None for u in consumers]
        if not targets or any(t is None for t in targets):
            op.attrs.update(min_h=0, min_w=0, min_short=0)  # no safe reduction: decode exactly
        else:
            op.attrs.update(min_h=max(t[0] for t in targets), min_w=max(t[1] for t in targets),
                            min_short=max(t[2] for t in targets))
        changed = True
    return changed
