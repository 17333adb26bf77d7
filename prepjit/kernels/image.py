"""Lowering rules for the ``image`` dialect.

``image.crop_pad`` is an index map with a bounds test (zero outside). ``image.resample`` lowers to torch's two
separable passes inside the consuming kernel, as loop nests that run before its main nest: the horizontal pass
— only for the window's columns — into a scratch buffer of the intermediate dtype (uint8 for uint8 images:
torch rounds and clamps between the passes), then the vertical pass row by row: on CPU, where the main nest's
row loop reads the window's rows in order, each row is computed at the top of that loop's iteration into a
one-row buffer (still in L1 when read), after the horizontal tiles it newly needs, kept in a ring of mid rows
(one output row's taps plus a tile) — so the working set stays in L2 whatever the photo's size; otherwise the
horizontal pass for all rows the window reads, then all window rows, before the main nest. So resize → crop →
to_dtype → normalize → to_chw is one kernel with no full-size intermediate.
Weight tables come from ``prepjit.kernels.resample`` (the spec), built by the call prologue (``image_tables``) and
cached by size.
"""
from __future__ import annotations

import numpy as np

from prepjit.ir import dims as D
from prepjit.ir.core import producers
from prepjit.ir.image import GRAY_WEIGHTS, NEAREST_MODES, RESAMPLE_MODES, opmath
from prepjit.kernels.image_tables import (  # noqa: F401  (registers the size rules)
    PATHS as _PATHS, rs_index, rs_size, rs_start, rs_weights,
)
from prepjit.kernels.layout import index_map
from prepjit.lowering.loop_ir import (
    BOOL, TILE, Cond, For, If, Load, Reduce, Store, Var, cast, const, iadd, idx, imul, map_expr, offset_coeff, prim,
    select, tile_transpose,
)

I32 = np.dtype(np.int32)


# -- crop_pad ---------------------------------------------------------------------------------------------------
def _inside(i, n_expr):
    """0 <= i < n as a loop-IR condition."""
    return prim("and", prim("ge", i, idx(0), dtype=BOOL), prim("lt", i, n_expr, dtype=BOOL))


@index_map("image.crop_pad")
def _crop_pad(ctx, op, out_idx):
    x = op.operands[0]
    h, w = x.type.shape[0], x.type.shape[1]
    y = iadd(out_idx[0], ctx.dim(op.attrs["top"]))
    c = iadd(out_idx[1], ctx.dim(op.attrs["left"]))
    valid = prim("and", _inside(y, ctx.dim(h)), _inside(c, ctx.dim(w)))
    dt = op.result.type.dtype
    inner = ctx.convert(ctx.emit(x, [y, c, *out_idx[2:]]), dt)
    if op.attrs.get("inside") or ctx.fixed.get(op):  # the window lies inside the image (checked before)
        return inner
    return Cond(valid, inner, const(op.attrs.get("fill", 0), dt), dt)  # lazy: loads happen only inside the image


@index_map("image.pad")
def _pad(ctx, op, out_idx):
    x = op.operands[0]
    src = list(out_idx)
    for axis, before in ((0, op.attrs["top"]), (1, op.attrs["left"])):
        n = ctx.dim(x.type.shape[axis])
        src[axis] = _fold(prim("sub", out_idx[axis], idx(before)), n, op.attrs["mode"])
    return ctx.convert(ctx.emit(x, src), op.result.type.dtype)


def _fold(i, n, mode: str):
    """Index ``i`` (at most one image size outside [0, n), as the pad checks ensure) folded into the image."""
    last = prim("sub", n, idx(1))
    if mode == "edge":
        return prim("min", prim("max", i, idx(0)), last)
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...
        a = prim("abs", i)
        return select(prim("gt", a, last, dtype=BOOL), prim("sub", prim("add", last, last), a), a)
    # symmetric: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
    b = select(prim("lt", i, idx(0), dtype=BOOL), prim("sub", idx(-1), i), i)
    return select(prim("gt", b, last, dtype=BOOL), prim("sub", prim("add", n, last), b), b)


@index_map("image.flip")
def _flip(ctx, op, out_idx):
    x = op.operands[0]
    axis = op.attrs["axis"]
    i = out_idx[axis]
    mirrored = prim("sub", prim("sub", ctx.dim(x.type.shape[axis]), idx(1)), i)
    src = list(out_idx)
    fixed = ctx.fixed.get(op)  # a flag decided per call, in one of the loop nests built for its values
    if fixed is not None:
        src[axis] = mirrored if fixed else i
    else:
        src[axis] = select(prim("ne", ctx.dim(op.attrs["flag"]), idx(0), dtype=BOOL), mirrored, i)
    return ctx.convert(ctx.emit(x, src), op.result.type.dtype)


F64 = np.dtype(np.float64)


def _float_param(ctx, bits) -> object:
    """A float64 passed per call as the int64 dim ``bits``."""
    return prim("bitcast", ctx.dim(bits), dtype=F64)


@index_map("image.param")
def _param(ctx, op, out_idx):
    return cast(_float_param(ctx, op.attrs["bits"]), op.result.type.dtype)


@index_map("image.switch")
def _switch(ctx, op, out_idx):
    """Lazy choice: only the chosen operand's expression is evaluated."""
    sel = ctx.dim(op.attrs["index"])
    dt = op.result.type.dtype
    choices = [ctx.convert(ctx.emit(v, out_idx), dt) for v in op.operands]
    out = choices[-1]
    for k in range(len(choices) - 2, -1, -1):
        out = Cond(prim("eq", sel, idx(k), dtype=BOOL), choices[k], out, dt)
    return out


# -- rgb_to_grayscale -----------------------------------------------------------------------------------------
@index_map("image.rgb_to_grayscale")
def _rgb_to_grayscale(ctx, op, out_idx):
    x = op.operands[0]
    dt = x.type.dtype
    ft = opmath(dt)
    r, g, b = (cast(ctx.convert(ctx.emit(x, [out_idx[0], out_idx[1], idx(k)]), dt), ft) for k in range(3))
    wr, wg, wb = (const(w, ft) for w in GRAY_WEIGHTS)
    gray = prim("fma", b, wb, prim("fma", g, wg, prim("mul", r, wr)))  # torch's add_(alpha=) is an FMA
    return cast(gray, op.result.type.dtype)


@index_map("image.blend")
def _blend(ctx, op, out_idx):
    x, y = op.operands
    dt = x.type.dtype
    ft = opmath(dt)
    ratio = op.attrs["ratio"]
    a = cast(ctx.convert(ctx.emit(x, out_idx), dt), ft)
    b = cast(ctx.convert(ctx.emit(y, ctx.broadcast_index(y.type.shape, x.type.shape, out_idx)), y.type.dtype), ft)
    if isinstance(ratio, float):
        r, r1 = const(ratio, ft), const(1.0 - ratio, ft)
    else:  # decided per call: the IEEE bits of a float64 (1 - ratio is formed in float64, as in Python)
        r64 = _float_param(ctx, ratio)
        r, r1 = cast(r64, ft), cast(prim("sub", const(1.0, F64), r64), ft)
    mixed = prim("fma", b, r1, prim("mul", a, r))
    bound = 1.0 if dt.kind == "f" else float(np.iinfo(dt).max)
    return cast(prim("min", prim("max", mixed, const(0, ft)), const(bound, ft)), dt)


# -- resample -----------------------------------------------------------------------------------------------------
def _clamp(i, hi_expr):
    """min(max(i, 0), hi - 1) on int64 indices."""
    return prim("min", prim("max", i, idx(0)), prim("sub", hi_expr, idx(1)))


class _AxisTables:
    def __init__(self, ctx, in_dim, out_dim, mode, antialias, path, wdtype, op_mode):
        args = (in_dim, out_dim, mode, int(antialias), path)
        taps = D.call("rs_taps", *args)
        self.size = ctx.table(rs_size, args, np.dtype(np.int64), (out_dim,))
        self.index = ctx.table(rs_index, args, np.dtype(np.int64), (out_dim, taps))
        # every table but torch's non-antialiased float one (edge taps clamped) reads taps start, start + 1, ...
        self.contiguous = path == 0 or antialias or op_mode in NEAREST_MODES
        self.start = ctx.table(rs_start, args, np.dtype(np.int64), (out_dim,)) if self.contiguous else None
        self.weights = ctx.table(rs_weights, args, wdtype, (out_dim, taps))
        self.precision = ctx.dim(D.call("rs_precision", *args))
        self.strides = (ctx.dim(taps), idx(1))

    def tap_index(self, i, k):
        """Source index of output ``i``'s tap ``k``."""
        if self.contiguous:
            return iadd(self.load(self.start, i), k)
        return self.load(self.index, i, k)

    def load(self, buf, i, k=None):
        if k is None:
            return Load(buf.name, (i,), (idx(1),), buf.dtype)
        return Load(buf.name, (i, k), self.strides, buf.dtype)


@index_map("image.resample")
def _resample(ctx, op, out_idx):
    x = op.operands[0]
    a = op.attrs
    h, w, c = x.type.shape
    dt = x.type.dtype
    path = _PATHS.index(str(dt))
    mode = RESAMPLE_MODES.index(a["mode"])
    if a["mode"] in NEAREST_MODES:  # torch's channels-last kernel computes nearest indices its own way
        mode = D.add(mode, D.mul(len(RESAMPLE_MODES), D.call("rs_vectorized", c, a["out_h"], a["out_w"])))
    acc_dt = I32 if path == 0 else dt
    y_out, x_out, ch = out_idx
    at_row = ctx.outer is not None and y_out == ctx.outer  # the main nest walks the window's rows in order
    state = ctx.state.get(op)
    if state is None:
        state = ctx.state[op] = _resample_passes(ctx, op, x, h, w, c, dt, path, mode, acc_dt,
                                                 ctx.outer if at_row else None)
    out, row_only = state
    if row_only:  # one row of the window, computed at the top of each iteration of the main nest's row loop
        ctx.outer_uses.append((op, y_out))
        return Load(out.name, (x_out, ch), ctx.strides(out), dt)
    return Load(out.name, (y_out, x_out, ch), ctx.strides(out), dt)


def _resample_passes(ctx, op, x, h, w, c, dt, path, mode, acc_dt, at_row=None):
    """Loop nests computing the resample window: (buffer, whether it holds one row only).

    1. horizontal pass (before the kernel's main nest), for the window's columns and only the input rows the
       window's rows read: ``mid[r, j, ch]`` (zero for columns outside the resized image, which the vertical
       pass then maps to 0 exactly); with a static channel count the channels of a pixel share each tap's index
       and weight;
    2. vertical pass row by row, vectorizable: for each output row, ``acc[:] += w[k] * mid[row_k, :]`` over the
       taps (contiguous rows of ``win_w * C`` values), then rounding/clamping into ``out[y, :]``. With
       ``at_row`` (the main nest's row variable, which reads the window's rows in order) the row is computed at
       the top of each iteration of that loop into a one-row buffer, still in L1 when the main nest reads it;
       otherwise all rows, before the main nest, into a window-sized buffer.
    """
    a = op.attrs
    n = len(ctx.state)
    xt = _AxisTables(ctx, w, a["out_w"], mode, a["antialias"], path, acc_dt, a["mode"])
    yt = _AxisTables(ctx, h, a["out_h"], mode, a["antialias"], path, acc_dt, a["mode"])
    win_h, win_w = a["win_h"], a["win_w"]
    span = (h, a["out_h"], mode, int(a["antialias"]), path, a["top"], win_h)
    lo, n_rows = D.call("rs_span_lo", *span), D.call("rs_span_len", *span)
    row_len = D.mul(win_w, c)
    tiled = isinstance(c, int) and ctx.pb.target == "cpu"
    # Rows computed at the main nest's row loop also get their horizontal rows just in time: tile by tile into a
    # ring of mid rows large enough for one output row's taps plus a tile, instead of every row the window reads
    ring = at_row is not None and tiled
    taps_y = D.call("rs_taps", h, a["out_h"], mode, int(a["antialias"]), path)
    n_mid = D.mul(TILE_ROWS, D.floordiv(D.add(taps_y, 2 * TILE_ROWS - 1), TILE_ROWS)) if ring else n_rows
    mid = ctx.scratch(dt, (n_mid, win_w, c))
    acc = ctx.scratch(acc_dt, (row_len,))
    out = ctx.scratch(dt, (win_w, c) if at_row is not None else (win_h, win_w, c))
    out_h, out_w = ctx.dim(a["out_h"]), ctx.dim(a["out_w"])
    lo_e = ctx.dim(lo)

    # 1. horizontal pass (row tiles are a CPU schedule: SIMD lanes; a GPU gives each output its own thread)
    if ring:
        def tiles_through(y):  # tiles of mid rows up to the last input row output row y reads
            ry = _clamp(iadd(y, ctx.dim(a["top"])), out_h)
            last = yt.tap_index(ry, prim("sub", yt.load(yt.size, ry), idx(1)))
            return prim("idiv", iadd(prim("sub", last, lo_e), idx(TILE_ROWS)), idx(TILE_ROWS))

        done = select(prim("gt", at_row, idx(0), dtype=BOOL), tiles_through(prim("sub", at_row, idx(1))), idx(0))
        tk = Var(f"rs{n}_tk")
        first = prim("mul", iadd(done, tk), idx(TILE_ROWS))
        body = _horizontal_tiled(ctx, op, x, w, c, dt, path, mode, acc_dt, xt, mid, lo, n_rows, n, first,
                                 prim("irem", first, ctx.dim(n_mid)))
        ctx.per_outer.append(For(tk.name, prim("sub", tiles_through(at_row), done), body))
    elif tiled:
        tile = Var(f"rs{n}_ttile")
        first = prim("mul", tile, idx(TILE_ROWS))
        body = _horizontal_tiled(ctx, op, x, w, c, dt, path, mode, acc_dt, xt, mid, lo, n_rows, n, first, first)
        ctx.pre.append(For(tile.name, ctx.dim(D.floordiv(D.add(n_rows, TILE_ROWS - 1), TILE_ROWS)), body))
    else:
        fr, fx, fc, fk = (Var(f"rs{n}_h{s}") for s in ("row", "col", "ch", "tap"))
        col = iadd(fx, ctx.dim(a["left"]))
        cc = _clamp(col, out_w)
        src = ctx.convert(ctx.emit(x, [iadd(fr, lo_e), xt.tap_index(cc, fk), fc]), dt)
        term = prim("mul", cast(src, acc_dt), xt.load(xt.weights, cc, fk))
        total = Reduce(fk.name, xt.load(xt.size, cc), term, _acc_init(xt, acc_dt), "add", acc_dt)
        value = select(_inside(col, out_w), _finish(total, xt, dt), const(0, dt))
        fill = For(fc.name, ctx.dim(c), (Store(mid.name, (fr, fx, fc), ctx.strides(mid), value),))
        ctx.pre.append(For(fr.name, ctx.dim(n_rows), (For(fx.name, ctx.dim(win_w), (fill,)),)))

    # 2. vertical pass, one output row at a time
    vy, vk, vj = (Var(f"rs{n}_v{s}") for s in ("row", "tap", "j"))
    if at_row is not None:
        vy = at_row
    r = iadd(vy, ctx.dim(a["top"]))
    rr = _clamp(r, out_h)
    one = (idx(1),)
    n_row = ctx.dim(row_len)
    init = Store(acc.name, (vj,), one, _acc_init(yt, acc_dt))
    mid_row = prim("sub", yt.load(yt.index, rr, vk), lo_e)
    if ring:
        mid_row = prim("irem", mid_row, ctx.dim(n_mid))
    term = prim("mul", cast(Load(mid.name, (mid_row, vj), (n_row, idx(1)), dt), acc_dt), yt.load(yt.weights, rr, vk))
    step = Store(acc.name, (vj,), one, prim("add", Load(acc.name, (vj,), one, acc_dt), term))
    valid = _inside(r, out_h)
    done = select(valid, _finish(Load(acc.name, (vj,), one, acc_dt), yt, dt), const(0, dt))
    row = (For(vj.name, n_row, (init,)),
           For(vk.name, yt.load(yt.size, rr), (For(vj.name, n_row, (step,)),)))
    if at_row is not None:
        ctx.per_outer.extend(row + (For(vj.name, n_row, (Store(out.name, (vj,), (idx(1),), done),)),))
        return out, True
    emit = Store(out.name, (vy, vj), (n_row, idx(1)), done)
    ctx.pre.append(For(vy.name, ctx.dim(win_h), row + (For(vj.name, n_row, (emit,)),)))
    return out, False


TILE_ROWS = TILE  # input rows filtered together: one SIMD lane per row, and one transposed tile's side


def _horizontal_tiled(ctx, op, x, w, c, dt, path, mode, acc_dt, xt, mid, lo, n_rows, n, first, mid_first):
    """The horizontal pass with rows as SIMD lanes (static channel count).

    Channels-last pixels make a per-column fold scalar (each output column has its own taps). Filtering
    TILE_ROWS rows at once instead makes every tap one vector multiply-add over the rows: the tile's columns
    are first transposed to ``tin[col, ch, row]``, filtered into ``tout[j, ch, row]``, then transposed back into
    ``mid``. Each output still accumulates its taps in torch's order, so results are unchanged.
    Returns the statements for one tile whose first row (relative to the first row the window reads) is
    ``first``, stored from ``mid``'s row ``mid_first`` on (the same row, or its slot in a ring of mid rows).
    """
    a = op.attrs
    R = TILE_ROWS
    win_w = a["win_w"]
    xspan = (w, a["out_w"], mode, int(a["antialias"]), path, a["left"], win_w)
    xlo, n_cols = D.call("rs_span_lo", *xspan), D.call("rs_span_len", *xspan)
    tin = ctx.scratch(dt, (n_cols, c, R))
    tout = ctx.scratch(dt, (win_w, c, R))
    lanes = ctx.scratch(acc_dt, (c * R,))
    p, ch, lane, j, k, jc = (Var(f"rs{n}_t{s}") for s in ("col", "ch", "lane", "j", "tap", "jc"))
    one = (idx(1),)
    lo_e, rows_e, xlo_e = ctx.dim(lo), ctx.dim(n_rows), ctx.dim(xlo)
    last_row = prim("sub", iadd(lo_e, rows_e), idx(1))

    def transposed_in():
        # rows past the end repeat the last one; their results are never copied out
        row = prim("min", iadd(iadd(lo_e, first), lane), last_row)
        load_in = Store(tin.name, (p, ch, lane), ctx.strides(tin),
                        ctx.convert(ctx.emit(x, [row, iadd(p, xlo_e), ch]), dt))
        loops = For(lane.name, idx(R), (For(p.name, ctx.dim(n_cols), (For(ch.name, idx(c), (load_in,)),)),))
        loops = ctx.unit_stride_version(loops, ch.name)
        pixels = _packed_rows(ctx, x, dt, c, xlo_e)
        if pixels is not None:  # a full tile of an input whose pixels are packed: shuffled 16×16 blocks
            packed, at = pixels
            whole = prim("le", iadd(first, idx(R)), rows_e, dtype=BOOL)
            fast = _tiles(ctx, D.mul(n_cols, c), lane, n, lambda q: Store(tin.name, (q, lane), (idx(R), idx(1)),
                                                                          at(iadd(iadd(lo_e, first), lane), q)))
            loops = (If(prim("and", whole, packed), fast, loops),)
        return loops

    # A crop below x (resized_crop, crop) tests every index against the image and fills zeros outside: when its
    # window lies inside the image (checked once per call), a version of the loads without the tests
    crops = _bounds_tested_crops(x)
    if crops:
        plain = ctx.built_with({c_op: True for c_op in crops}, transposed_in)
        transpose_in = (If(_windows_inside(ctx, crops), plain, transposed_in()),)
    else:
        transpose_in = transposed_in()

    # filter: for each output column, lanes[:] += w[k] * tin[src_k, :, :] over the taps — the pixel's channels and
    # the tile's rows are one contiguous vector of c * TILE_ROWS values sharing each tap's weight
    col = iadd(j, ctx.dim(a["left"]))
    out_w = ctx.dim(a["out_w"])
    cc = _clamp(col, out_w)
    src = prim("sub", xt.tap_index(cc, k), xlo_e)
    width = idx(c * R)
    lanes_at = ((lane,), one)
    tap = Load(tin.name, (src, lane), (width, idx(1)), dt)
    step = Store(lanes.name, *lanes_at, prim("add", Load(lanes.name, *lanes_at, acc_dt),
                                             prim("mul", cast(tap, acc_dt), xt.load(xt.weights, cc, k))))
    value = select(_inside(col, out_w), _finish(Load(lanes.name, *lanes_at, acc_dt), xt, dt), const(0, dt))
    filt = For(j.name, ctx.dim(win_w), (
        For(lane.name, width, (Store(lanes.name, *lanes_at, _acc_init(xt, acc_dt)),)),
        For(k.name, xt.load(xt.size, cc), (For(lane.name, width, (step,)),), vectorize=False),
        For(lane.name, width, (Store(tout.name, (j, lane), (width, idx(1)), value),)),
    ))

    # transpose out: the tile's valid rows into mid
    n_valid = prim("min", idx(R), prim("sub", rows_e, first))
    row_len = ctx.dim(D.mul(win_w, c))
    def copy(q):
        return Store(mid.name, (iadd(mid_first, lane), q), (row_len, idx(1)),
                     Load(tout.name, (q, lane), (idx(R), idx(1)), dt))

    transpose_out = If(prim("eq", n_valid, idx(R), dtype=BOOL), _tiles(ctx, D.mul(win_w, c), lane, n, copy),
                       (For(lane.name, n_valid, (For(jc.name, row_len, (copy(jc),)),)),))

    return (*transpose_in, filt, transpose_out)


def _bounds_tested_crops(x) -> list:
    """The crops with a per-index bounds test (``image.crop_pad`` not known to be inside) that ``x`` is computed
    from within the fused region."""
    return [op for op in producers([x]) if op.name == "image.crop_pad" and not op.attrs.get("inside")]


def _windows_inside(ctx, crops):
    """Whether every crop's window lies inside its image (a loop-invariant condition)."""
    cond = None
    for op in crops:
        img = op.operands[0].type.shape
        a = {k: ctx.dim(op.attrs[k]) for k in ("top", "left", "h", "w")}
        for start, size, extent in ((a["top"], a["h"], img[0]), (a["left"], a["w"], img[1])):
            ok = prim("and", prim("ge", start, idx(0), dtype=BOOL),
                      prim("le", iadd(start, size), ctx.dim(extent), dtype=BOOL))
            cond = ok if cond is None else prim("and", cond, ok)
    return cond


def _tiles(ctx, length, lane, n, store_at) -> tuple:
    """``for lane < TILE: for q < length: store_at(q)`` (``store_at`` reading along q and writing along lane, or
    the reverse) as TILE×TILE transposed tiles plus a plain remainder."""
    blk, qq, q = (Var(f"rs{n}_x{s}") for s in ("blk", "q", "rest"))
    whole = D.floordiv(length, TILE)
    tiles = For(blk.name, ctx.dim(whole), (tile_transpose(lane.name, qq.name, store_at(iadd(imul(blk, idx(TILE)), qq))),))
    done = ctx.dim(D.mul(whole, TILE))
    rest = For(lane.name, idx(TILE), (For(q.name, ctx.dim(D.mod(length, TILE)), (store_at(iadd(done, q)),),
                                          vectorize=False),), vectorize=False)  # < TILE bytes a row: keep it small
    return (tiles, rest)


def _packed_rows(ctx, x, dt, c, xlo_e):
    """When ``x`` is read straight from a buffer: (the runtime condition that its pixels are packed — channel
    stride 1, column stride ``c`` — and ``at(row, q)``, the load of byte ``q`` of ``row``'s span from column
    ``xlo``). None for computed inputs or non-affine index maps (their tiles keep the plain loops)."""
    rv, pv, cv = Var("rs_probe_row"), Var("rs_probe_col"), Var("rs_probe_ch")
    probe = ctx.convert(ctx.emit(x, [rv, iadd(pv, xlo_e), cv]), dt)
    if not isinstance(probe, Load) or np.dtype(probe.dtype).itemsize != 1:
        return None
    s_row, s_col, s_ch = (offset_coeff(probe.indices, probe.strides, v.name) for v in (rv, pv, cv))
    if None in (s_row, s_col, s_ch):
        return None
    zero = {v.name: idx(0) for v in (rv, pv, cv)}
    at0 = tuple(map_expr(i, lambda e: zero.get(e.name, e) if isinstance(e, Var) else e) for i in probe.indices)
    packed = prim("and", prim("eq", s_ch, idx(1), dtype=BOOL), prim("eq", s_col, idx(c), dtype=BOOL))

    def at(row, q):
        return Load(probe.buf, (*at0, row, q), (*probe.strides, s_row, idx(1)), probe.dtype)

    return packed, at


def _acc_init(t: _AxisTables, acc_dt):
    if acc_dt == I32:  # the +0.5 of round-half-up in fixed point: 1 << (precision - 1); 0 for nearest (p = 0)
        p = cast(t.precision, I32)
        half = prim("shl", const(1, I32), prim("max", prim("sub", p, const(1, I32)), const(0, I32)))
        return select(prim("gt", p, const(0, I32), dtype=BOOL), half, const(0, I32))
    return const(0, acc_dt)


def _finish(acc, t: _AxisTables, dt):
    if dt == np.uint8:  # arithmetic shift (floor), then saturate to [0, 255]
        v = prim("shr", acc, cast(t.precision, I32))
        return cast(prim("min", prim("max", v, const(0, I32)), const(255, I32)), dt)
    return cast(acc, dt)
