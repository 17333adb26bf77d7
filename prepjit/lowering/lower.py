"""Lower an optimized Function (``kernel.fused`` regions) to a Program of loop-IR kernels.

Each region becomes one ``Kernel``. Values inside a region are expressions indexed by the kernel's loop
variables: elementwise ops apply their rule (``prepjit.kernels.elementwise``), layout ops rewrite the index
vector (``prepjit.kernels.layout``), block arguments are strided loads. Sizes that kernels need become int64
parameters bound to dim expressions, evaluated by the call prologue.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from prepjit.errors import UnsupportedError, at
from prepjit.ir import dims as D
from prepjit.ir.core import Function, Value, producers
from prepjit.ir.types import PyScalarType, TensorType
from prepjit.kernels.elementwise import lower_elementwise
from prepjit.kernels import image as _image_rules  # noqa: F401  (registers the image index maps)
from prepjit.kernels.layout import INDEX_MAPS
from prepjit.kernels.reduction import REDUCERS
from prepjit.lowering.loop_ir import (
    BOOL, Buffer, Cond, Const, Expr, For, If, Kernel, Load, Param, Prim, Store, Var, cast, const, idx, imul, map_expr,
    offset_coeff, prim, select, uses_var, walk,
)


@dataclass
class BufferInfo:
    name: str
    dtype: np.dtype
    shape: tuple          # dims (int | Dim); for outputs the shape returned to the user
    kind: str             # "input" | "const" | "temp" | "output"
    arg: int | None = None        # input position
    value: np.ndarray | None = None  # constant data
    maker: object = None          # "table": a Python function of ints building the array in the prologue
    maker_args: tuple = ()        # its arguments (dims)
    host_args: tuple = ()         # "host": every argument position the maker reads (sentence pairs read two)


@dataclass
class Program:
    """Everything the runtime needs: buffers, kernels, size parameters, checks and the output structure."""

    name: str
    inputs: list                   # TensorType per argument
    buffers: dict[str, BufferInfo] = field(default_factory=dict)
    kernels: list[Kernel] = field(default_factory=list)
    params: dict[str, object] = field(default_factory=dict)   # param name -> dim expression (or ("stride", buf, k))
    constraints: list = field(default_factory=list)
    outputs: list = field(default_factory=list)   # ("buf", name) | ("arg", k)
    tree: object = "single"

    def slots(self) -> list[str]:
        """Order of entries in the native entry point's int64 argument array."""
        return list(self.buffers) + list(self.params)


class _ProgramBuilder:
    def __init__(self, fn: Function, target: str = "cpu"):
        self.fn = fn
        self.target = target  # rules may schedule for it (e.g. SIMD row tiles on the CPU only)
        self.prog = Program(fn.name, [a.type for a in fn.inputs])
        self.dim_params: dict = {}
        self.names: dict[Value, str] = {}

    def dim(self, d) -> Expr:
        if isinstance(d, int):
            return idx(d)
        if d.op == "sym":
            name = d.args[0]
        else:
            name = self.dim_params.get(d)
            if name is None:
                name = f"d{len(self.dim_params)}"
                self.dim_params[d] = name
        self.prog.params.setdefault(name, d)
        return Param(name)

    def stride(self, buf: BufferInfo, k: int) -> Expr:
        if buf.kind == "input":
            name = f"{buf.name}_st{k}"
            self.prog.params.setdefault(name, ("stride", buf.name, k))
            return Param(name)
        if buf.kind == "const":
            return idx(buf.value.strides[k] // buf.value.itemsize if buf.value.shape[k] > 1 else 0)
        return self.dim(D.product(buf.shape[k + 1:]))

    def add_buffer(self, v: Value, kind: str, prefix: str, **kw) -> BufferInfo:
        name = f"{prefix}{sum(1 for b in self.prog.buffers.values() if b.name.startswith(prefix))}"
        info = BufferInfo(name, v.type.dtype, v.type.shape, kind, **kw)
        self.prog.buffers[name] = info
        self.names[v] = name
        return info


class _KernelBuilder:
    """Builds the expression for one region, memoized by (value, index vector)."""

    def __init__(self, pb: _ProgramBuilder, args: dict[Value, BufferInfo]):
        self.pb = pb
        self.args = args
        self.memo: dict = {}
        self.pre: list = []          # loop nests that run before the kernel's main nest (e.g. a resize pass)
        self.extra: list = []        # buffers those need (scratch, tables)
        self.state: dict = {}        # per-op lowering state shared by all uses of an op in this kernel
        self.fixed: dict = {}        # op -> the value of its per-call flag in the loop nest being built
        # Computing at the main nest's outermost loop: ``outer`` is that loop's variable while the nest's body is
        # built (None: not allowed), ``per_outer`` the statements to run at the top of each of its iterations
        # (e.g. one row of a resize's vertical pass), ``outer_uses`` (op, index expression) pairs that relied on
        # the index being exactly ``outer`` (checked once the nest is built; the kernel is lowered again without
        # computing at the loop if one is not).
        self.outer: Var | None = None
        self.per_outer: list = []
        self.outer_uses: list = []

    def built_with(self, fixed: dict, build):
        """``build()`` with the per-call values of the ops in ``fixed`` taken as known (one version of a loop nest).
        Memoized expressions are dropped before and after: they may depend on those values."""
        saved = dict(self.fixed)
        self.fixed.update(fixed)
        self.memo.clear()
        try:
            return build()
        finally:
            self.fixed = saved
            self.memo.clear()

    def table(self, maker, args: tuple, dtype, shape: tuple) -> BufferInfo:
        """A read-only array the prologue builds with ``maker(*evaluated args)`` (cached by the maker)."""
        key = (maker, args)
        for b in self.pb.prog.buffers.values():
            if b.kind == "table" and (b.maker, b.maker_args) == key:
                break
        else:
            name = f"tab{sum(1 for b in self.pb.prog.buffers.values() if b.kind == 'table')}"
            b = self.pb.prog.buffers[name] = BufferInfo(name, np.dtype(dtype), tuple(shape), "table",
                                                        maker=maker, maker_args=args)
        if b not in self.extra:
            self.extra.append(b)
        return b

    def scratch(self, dtype, shape: tuple) -> BufferInfo:
        name = f"scratch{sum(1 for b in self.pb.prog.buffers.values() if b.name.startswith('scratch'))}"
        b = self.pb.prog.buffers[name] = BufferInfo(name, np.dtype(dtype), tuple(shape), "temp")
        self.extra.append(b)
        return b

    def strides(self, buf: BufferInfo) -> tuple:
        return tuple(self.pb.stride(buf, k) for k in range(len(buf.shape)))

    def unit_stride_version(self, nest: For, var: str) -> tuple:
        """``nest``, or an If choosing a copy where the input strides ``var`` walks are the constant 1."""
        inputs = {b.name: b.shape for b in self.args.values() if b.kind in ("input", "host")}
        return _versioned(nest.var, nest.extent, nest.body, inputs, var)

    def dim(self, d) -> Expr:
        return self.pb.dim(d)

    def convert(self, e, dt):
        if isinstance(e, PyScalarType):
            return const(e.value, dt)
        return cast(e, dt)

    def broadcast_index(self, src_shape, out_shape, out_idx):
        r = len(out_shape) - len(src_shape)
        res = []
        for k, d in enumerate(src_shape):
            o = out_shape[k + r]
            i = out_idx[k + r]
            if d == o:
                res.append(i)
            elif isinstance(d, int):
                res.append(idx(0) if d == 1 else i)
            else:
                res.append(select(prim("eq", self.dim(d), idx(1), dtype=BOOL), idx(0), i))
        return res

    def load(self, buf: BufferInfo, index) -> Expr:
        strides = tuple(self.pb.stride(buf, k) for k in range(len(index)))
        return Load(buf.name, tuple(index), strides, buf.dtype)

    def emit(self, v: Value, index):
        key = (v, tuple(index))
        if key in self.memo:
            return self.memo[key]
        if v in self.args:
            r = self.load(self.args[v], index)
        elif v.owner.name == "tensor.pyconst":
            r = v.type
        else:
            op = v.owner
            d = op.opdef
            if d.has("elementwise"):
                ops = []
                for o in op.operands:
                    if isinstance(o.type, PyScalarType):
                        ops.append(o.type)
                    else:
                        ops.append(self.emit(o, self.broadcast_index(o.type.shape, v.type.shape, index)))
                r = lower_elementwise(op, ops)
            elif op.name in INDEX_MAPS:
                r = INDEX_MAPS[op.name](self, op, list(index))
            else:
                raise UnsupportedError(at(op.loc, f"{op.name} cannot be fused here"))
        self.memo[key] = r
        return r


def _nest(shape_exprs, var_prefix, body_fn, input_bufs, order=None, collapse=None) -> tuple:
    """Perfect loop nest over ``shape_exprs`` (loops in ``order``, outermost first; default: dimension order);
    the innermost loop is versioned for unit input strides. ``collapse(number of loops)`` (asked once the body is
    built) allows a version with the two innermost loops as one (:func:`_collapsed`)."""
    vars_ = [Var(f"{var_prefix}{k}") for k in range(len(shape_exprs))]
    body = tuple(body_fn(vars_))
    if not vars_:
        return body
    order = list(range(len(vars_))) if order is None else list(order)
    while len(order) >= 2 and shape_exprs[order[-1]] == idx(1):  # an innermost loop of one iteration: index 0,
        body = _substituted(body, {vars_[order[-1]].name: idx(0)})  # so the loop around it can vectorize
        order = order[:-1]
    inner = shape_exprs[order[-1]]
    if collapse is not None and len(order) >= 2 and isinstance(inner, Const) and inner.value <= UNROLL \
            and collapse(len(order)):
        stmts = _unrolled(vars_, order, shape_exprs, body, input_bufs)
    else:
        stmts = _loops(vars_, order, shape_exprs, body, input_bufs)
    if collapse is not None and len(order) >= 2 and collapse(len(order)):
        fused = _collapsed(vars_, order, shape_exprs, body, input_bufs)
        if fused is not None:
            cond, loops = fused
            stmts = loops if cond is None else (If(cond, loops, stmts),)
    return stmts


def _map_stmts(stmts: tuple, fn) -> tuple:
    """Stores and loops with every expression rebuilt by ``map_expr(expr, fn)``."""
    memo: dict = {}

    def sub(e):
        return map_expr(e, fn, memo)

    def stmt(s):
        if isinstance(s, Store):
            return Store(s.buf, tuple(map(sub, s.indices)), tuple(map(sub, s.strides)), sub(s.value))
        if isinstance(s, For):
            return replace(s, extent=sub(s.extent), body=tuple(stmt(b) for b in s.body))
        return s

    return tuple(stmt(s) for s in stmts)


def _substituted(body: tuple, values: dict) -> tuple:
    """``body`` with the loop variables named in ``values`` replaced by those expressions, and the choices that
    become constant made (a channel index's ``c < 1 ? r : ...``), so each copy keeps only its own branch."""
    def fold(n):
        if isinstance(n, Var):
            return values.get(n.name, n)
        if isinstance(n, Prim) and all(isinstance(a, Const) for a in n.args) and n.op in _INT_FOLDS \
                and all(np.dtype(a.dtype).kind in "biu" for a in n.args):
            return Const(_INT_FOLDS[n.op](*(int(a.value) for a in n.args)), BOOL)
        if isinstance(n, Cond) and isinstance(n.cond, Const):
            return n.then if n.cond.value else n.other
        if isinstance(n, Prim) and n.op == "select" and isinstance(n.args[0], Const):
            return n.args[1] if n.args[0].value else n.args[2]
        return n

    return _map_stmts(body, fold)


_INT_FOLDS = {"lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
              "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b}


def _loops(vars_, order, shape_exprs, body: tuple, input_bufs) -> tuple:
    inner = order[-1]
    stmts = _versioned(vars_[inner].name, shape_exprs[inner], body, input_bufs)
    for k in reversed(order[:-1]):
        stmts = (For(vars_[k].name, shape_exprs[k], stmts),)
    return stmts


UNROLL = 4  # a constant innermost loop this short (an HWC pixel's channels) is written out


def _unrolled(vars_, order, shape_exprs, body: tuple, input_bufs) -> tuple:
    """The nest with its innermost loop (a few constant iterations) written out, one body per iteration, so the
    loop around it is innermost and vectorizes (its accesses strided by the channel count). Work shared by the
    channels (a pixel's hue, its grayscale value) is then the same expression in each copy and is computed once;
    LLVM's own full unrolling gives up on a body that large."""
    v = vars_[order[-1]]
    flat = tuple(s for k in range(shape_exprs[order[-1]].value) for s in _substituted(body, {v.name: idx(k)}))
    return _loops(vars_, order[:-1], shape_exprs, flat, input_bufs)


def _collapsed(vars_, order, shape_exprs, body: tuple, input_bufs):
    """The nest with its two innermost loops ``a``, ``b`` as one loop over ``j = a * extent_b + b``, when every
    load and store walks them as one range (offset coefficient of ``a`` = extent of ``b`` × that of ``b``) and
    nothing else uses them: (the runtime condition, or None when it holds statically; the loops), or None.
    An HWC image's last loop has 3 iterations: too short to vectorize, while a row of W × 3 bytes is not."""
    a, b = vars_[order[-2]], vars_[order[-1]]
    extent_b = shape_exprs[order[-1]]
    j = Var(f"{a.name}{b.name}")
    names = (a.name, b.name)
    if not all(isinstance(s, Store) for s in body):
        return None
    accesses = list(body) + [n for s in body for e in (s.value, *s.indices) for n in walk(e) if isinstance(n, Load)]
    cond = None
    for acc in accesses:
        ca, cb = (offset_coeff(acc.indices, acc.strides, v) for v in names)
        if ca is None or cb is None or any(uses_var(c, v) for c in (ca, cb) for v in names):
            return None
        want = imul(extent_b, cb)
        if ca == want:
            continue
        if isinstance(ca, Const) and isinstance(want, Const):
            return None  # statically not one range (e.g. a CHW output)
        c = prim("eq", ca, want, dtype=BOOL)
        cond = c if cond is None else prim("and", cond, c)
    sub = {a.name: idx(0), b.name: j}
    memo: dict = {}

    def flat(e):  # a and b inside an access's indices: base + a * ca + b * cb == base + j * cb
        return map_expr(e, lambda n: sub.get(n.name, n) if isinstance(n, Var) else n, memo)

    def load(n):
        return Load(n.buf, tuple(flat(i) for i in n.indices), n.strides, n.dtype) if isinstance(n, Load) else n

    new_body = tuple(Store(s.buf, tuple(flat(i) for i in s.indices), s.strides, map_expr(s.value, load))
                     for s in body)
    if any(uses_var(e, v) for s in new_body for e in (s.value, *s.indices) for v in names):
        return None  # a or b used as a value (e.g. a per-channel constant chosen by the channel index)
    extent = imul(shape_exprs[order[-2]], extent_b)
    return cond, _loops([*vars_, j], [*order[:-2], len(vars_)], [*shape_exprs, extent], new_body, input_bufs)


def _loop_order(shape) -> list[int]:
    """Dimension order of an elementwise nest: a small static leading axis (the C of a CHW output) goes
    innermost, so each pixel's channels are computed together from one channels-last read and the loop over
    columns vectorizes; otherwise the output's own order."""
    order = list(range(len(shape)))
    if len(shape) >= 2 and isinstance(shape[0], int) and 1 < shape[0] <= 4:
        order = order[1:] + [0]
    return order


def _exprs_of(stmts):
    for s in stmts:
        if isinstance(s, Store):
            yield s.value
            yield from s.indices
        elif isinstance(s, For):
            yield s.extent
            yield from _exprs_of(s.body)


def _versioned(var: str, extent: Expr, body: tuple, input_bufs: dict, walked: str | None = None) -> tuple:
    """The loop ``for var < extent: body``, or an If choosing between a copy with constant input strides and the
    general one.

    Strides of inputs are runtime values; when the ones the loop variable ``walked`` (default: ``var``) walks
    are 1 (the common contiguous case) a copy with the stride folded to the constant 1 lets LLVM vectorize with
    plain vector loads. When ``walked`` indexes a dimension followed only by static ones it does not index (the
    pixels of an HWC image read channel by channel), the copy folds those strides to a packed layout's instead
    (W stride 3, C stride 1), so LLVM sees a constant-stride access it can vectorize. ``input_bufs``: input
    buffer name -> shape.
    """
    walked = walked or var
    folds = _stride_folds(body, input_bufs, walked)
    if not folds:
        return (For(var, extent, body),)
    cond = None
    for s, v in folds.items():
        c = prim("eq", s, idx(v), dtype=BOOL)
        cond = c if cond is None else prim("and", cond, c)

    fast = _map_stmts(body, lambda e: idx(folds[e]) if e in folds else e)
    return (If(cond, (For(var, extent, fast),), (For(var, extent, body),)),)


def _stride_folds(body: tuple, input_bufs: dict, walked: str) -> dict:
    """{stride parameter: the constant it is folded to} for ``_versioned``."""
    unit: dict = {}
    packed: dict = {}
    for e in _exprs_of(body):
        for n in walk(e):
            if not (isinstance(n, Load) and n.buf in input_bufs):
                continue
            shape = input_bufs[n.buf]
            for k, (i, s) in enumerate(zip(n.indices, n.strides)):
                if not (isinstance(s, Param) and uses_var(i, walked)):
                    continue
                unit[s] = 1
                tail = list(zip(shape[k + 1:], n.indices[k + 1:], n.strides[k + 1:]))
                if tail and all(isinstance(d, int) and isinstance(t, Param) and not uses_var(j, walked)
                                for d, j, t in tail):
                    step = 1
                    for d, _, t in reversed(tail):
                        packed.setdefault(t, step)
                        step *= d
                    packed.setdefault(s, step)
    # a parameter is one input's stride: packed (static inner dims) is that input's likely layout
    return {**unit, **packed}


def _lower_elementwise_kernel(pb: _ProgramBuilder, kop, name: str, arg_bufs, out_bufs,
                              compute_at: bool = True) -> Kernel:
    region = kop.regions[0]
    kb = _KernelBuilder(pb, dict(zip(region.args, arg_bufs)))
    ys = region.terminator.operands
    shape = ys[0].type.shape
    inputs = {b.name: b.shape for b in arg_bufs if b.kind == "input"}
    order = _loop_order(shape)
    switch = ys[0].owner if len(ys) == 1 and ys[0].owner is not None else None
    switch = switch if switch is not None and switch.name == "image.switch" else None
    # per-row work inside the outermost loop: CPU (the CUDA renderer spreads perfect nests over threads), at
    # least two loops
    compute_at = compute_at and pb.target == "cpu" and len(shape) >= 2
    before = (dict(pb.prog.buffers), dict(pb.prog.params), dict(pb.dim_params))  # restored to lower again

    def nest(values):
        def body(vars_):
            kb.outer = vars_[order[0]] if compute_at else None
            stmts = []
            for y, ob in zip(values, out_bufs):
                val = kb.convert(kb.emit(y, vars_), ob.dtype)
                stmts.append(Store(ob.name, tuple(vars_), tuple(pb.stride(ob, k) for k in range(len(vars_))), val))
            return stmts

        # two innermost loops as one where accesses allow (CPU; a per-row head needs the outer loop to stay)
        collapse = (lambda loops: loops >= 3 or not kb.per_outer) if pb.target == "cpu" else None
        return _nest([pb.dim(d) for d in shape], "i", body, inputs, order, collapse)

    if switch is not None:
        # a choice made once per call: one loop nest per alternative, chosen outside the loops
        sel = pb.dim(switch.attrs["index"])
        loops: tuple = nest([switch.operands[-1]])
        for k in range(len(switch.operands) - 2, -1, -1):
            loops = (If(prim("eq", sel, idx(k), dtype=BOOL), nest([switch.operands[k]]), loops),)
    elif pb.target == "cpu":
        flips, crops = _versioned_flips(region)[:2], _versioned_crops(region)

        def versions():
            return _flag_versions(kb, flips, lambda: nest(ys))

        loops = versions()
        if crops:  # windows inside their images (checked per call): plain loads, no per-element bounds test
            inside = kb.built_with({op: True for op in crops}, versions)
            loops = (If(_image_rules._windows_inside(kb, crops), inside, loops),)
    else:
        loops = nest(ys)
    if kb.per_outer:
        if any(i != kb.outer for _, i in kb.outer_uses):  # an op read at other rows too: materialize it
            for now, then in zip((pb.prog.buffers, pb.prog.params, pb.dim_params), before):
                now.clear()
                now.update(then)
            return _lower_elementwise_kernel(pb, kop, name, arg_bufs, out_bufs, compute_at=False)
        loops = _at_outer_loops(loops, tuple(kb.per_outer))
    bufs = [Buffer(b.name, b.dtype, len(b.shape), "in") for b in arg_bufs] + \
           [Buffer(b.name, b.dtype, len(b.shape), "out") for b in out_bufs] + _extra_buffers(kb)
    return Kernel(name, bufs, [], tuple(kb.pre) + loops)


def _versioned_flips(region) -> list:
    """The flips decided per call that get one loop nest per outcome: those no resample is computed from (a
    resample's passes are built once, before the main nest, and shared by every version of it)."""
    below = _below_resample(region)
    return [op for op in region.ops if op.name == "image.flip" and not D.is_static(op.attrs["flag"])
            and op not in below]


def _versioned_crops(region) -> list:
    """The crops with a per-element bounds test that the main nest reads (none a resample is computed from: its
    horizontal pass has its own version for windows inside the image)."""
    below = _below_resample(region)
    return [op for op in region.ops if op.name == "image.crop_pad" and not op.attrs.get("inside")
            and op not in below]


def _below_resample(region) -> set:
    return set(producers(v for op in region.ops if op.name == "image.resample" for v in op.operands))


def _flag_versions(kb: _KernelBuilder, ops: list, build) -> tuple:
    """One loop nest per combination of the per-call flags of ``ops`` (random flips), chosen outside the loops: a
    select on the flag at every element would keep the main loop from vectorizing."""
    if not ops:
        return build()
    op = ops[0]
    flipped, plain = (kb.built_with({op: value}, lambda: _flag_versions(kb, ops[1:], build)) for value in (1, 0))
    return (If(prim("ne", kb.dim(op.attrs["flag"]), idx(0), dtype=BOOL), flipped, plain),)


def _at_outer_loops(stmts: tuple, head: tuple) -> tuple:
    """``stmts`` (a nest, or a switch's If tree of nests over the same loop variables) with ``head`` at the top of
    each nest's outermost loop body."""
    out = []
    for s in stmts:
        if isinstance(s, If):
            s = replace(s, then=_at_outer_loops(s.then, head), other=_at_outer_loops(s.other, head))
        elif isinstance(s, For):
            s = replace(s, body=head + tuple(s.body))
        out.append(s)
    return tuple(out)


def _extra_buffers(kb: _KernelBuilder) -> list:
    return [Buffer(b.name, b.dtype, len(b.shape), "in" if b.kind == "table" else "temp") for b in kb.extra]


def _lower_reduction_kernel(pb: _ProgramBuilder, kop, name: str, arg_bufs, out_buf: BufferInfo) -> Kernel:
    region = kop.regions[0]
    kb = _KernelBuilder(pb, dict(zip(region.args, arg_bufs)))
    (y,) = region.terminator.operands
    red = y.owner
    reducer = REDUCERS[red.name]
    x = red.operands[0]
    axes = set(red.attrs["axes"])
    in_shape = x.type.shape
    kept = [d for k, d in enumerate(in_shape) if k not in axes]
    out_dt = y.type.dtype
    acc_dt = reducer.acc_dtype(out_dt)
    needs_finish = acc_dt != out_dt or reducer.mean
    if needs_finish:
        acc_name = f"acc_{name}"
        acc = BufferInfo(acc_name, acc_dt, tuple(kept), "temp")
        pb.prog.buffers[acc_name] = acc
    else:
        acc = out_buf
    kept_strides = [pb.dim(D.product(kept[k + 1:])) for k in range(len(kept))]
    kept_exprs = [pb.dim(d) for d in kept]

    def init(vars_):
        return [Store(acc.name, tuple(vars_), tuple(kept_strides), const(reducer.identity(acc_dt), acc_dt))]

    def accumulate(vars_):
        j = tuple(v for k, v in enumerate(vars_) if k not in axes)
        cur = Load(acc.name, j, tuple(kept_strides), acc_dt)
        val = reducer.prepare(kb.convert(kb.emit(x, vars_), x.type.dtype), acc_dt)
        return [Store(acc.name, j, tuple(kept_strides), reducer.step(cur, val))]

    def finish(vars_):
        count = pb.dim(D.product(in_shape[k] for k in axes)) if reducer.mean else None
        cur = Load(acc.name, tuple(vars_), tuple(kept_strides), acc_dt)
        return [Store(out_buf.name, tuple(vars_), tuple(kept_strides), reducer.finish(cur, out_dt, count))]

    inputs = {b.name: b.shape for b in arg_bufs if b.kind == "input"}
    body = _nest(kept_exprs, "j", init, {})
    body += _nest([pb.dim(d) for d in in_shape], "i", accumulate, inputs)
    if needs_finish:
        body += _nest(kept_exprs, "k", finish, {})
    bufs = [Buffer(b.name, b.dtype, len(b.shape), "in") for b in arg_bufs] + [Buffer(out_buf.name, out_dt, len(kept), "out")]
    if needs_finish:
        bufs.append(Buffer(acc.name, acc_dt, len(kept), "temp"))
    return Kernel(name, bufs + _extra_buffers(kb), [], tuple(kb.pre) + body)


def _collect_params(k: Kernel) -> list[str]:
    names: list[str] = []

    def visit(e):
        for n in walk(e):
            if isinstance(n, Param) and n.name not in names:
                names.append(n.name)

    def stmts(ss):
        for s in ss:
            if isinstance(s, Store):
                for e in (s.value, *s.indices, *s.strides):
                    visit(e)
            elif isinstance(s, For):
                visit(s.extent)
                stmts(s.body)
            elif isinstance(s, If):
                visit(s.cond)
                stmts(s.then)
                stmts(s.other)

    stmts(k.body)
    return names


def _sink_reductions(prog: Program) -> None:
    """A reduction whose result only some alternatives of a per-call choice read (color_jitter's contrast mean:
    one per stage, which may not be contrast) runs inside those alternatives' branches of its one consumer, so a
    call that takes another alternative skips it. CPU: kernels run one after another in one call."""
    kernels = prog.kernels
    k = 0
    while k < len(kernels):
        r = kernels[k]
        outs = [b for b in r.buffers if b.role == "out"]
        users = [j for j, e in enumerate(kernels) if j != k and outs and any(b.name == outs[0].name for b in e.buffers)]
        if not (r.meta.get("reduction") and len(outs) == 1 and prog.buffers[outs[0].name].kind == "temp"
                and len(users) == 1 and users[0] > k):
            k += 1
            continue
        j, name = users[0], outs[0].name
        read = {b.name for b in r.buffers if b.role == "in"}
        written_between = {b.name for e in kernels[k + 1:j] for b in e.buffers if b.role != "in"}
        body = _in_branches(kernels[j].body, name, r.body) if not read & written_between else None
        if body is None:
            k += 1
            continue
        e = kernels[j]
        have = {b.name for b in e.buffers}
        bufs = [replace(b, role="temp") if b.name == name else b for b in e.buffers]
        bufs += [b for b in r.buffers if b.name not in have]
        kernels[j] = Kernel(e.name, bufs, [], body, dict(e.meta))
        kernels[j].params = _collect_params(kernels[j])
        del kernels[k]


def _in_branches(stmts: tuple, name: str, first: tuple):
    """``stmts`` with ``first`` run at the start of the branches that read buffer ``name``: descends through a
    lone ``If`` whose one branch alone reads it; None when ``stmts`` reads it anywhere else (nothing to skip)."""
    reading = [s for s in stmts if _reads(s, name)]
    if not reading:
        return stmts
    if len(reading) == 1 and isinstance(reading[0], If) and not _reads_expr(reading[0].cond, name):
        s = reading[0]
        then, other = _reads(s.then, name), _reads(s.other, name)
        if then != other:
            new = If(s.cond, _in_branches(s.then, name, first) or first + s.then, s.other) if then else \
                If(s.cond, s.then, _in_branches(s.other, name, first) or first + s.other)
            return tuple(new if t is s else t for t in stmts)
    return None


def _reads(s, name: str) -> bool:
    if isinstance(s, tuple):
        return any(_reads(t, name) for t in s)
    if isinstance(s, Store):
        return any(_reads_expr(e, name) for e in (s.value, *s.indices, *s.strides))
    if isinstance(s, For):
        return _reads_expr(s.extent, name) or _reads(s.body, name)
    if isinstance(s, If):
        return _reads_expr(s.cond, name) or _reads(s.then, name) or _reads(s.other, name)
    return True  # unknown statement: assume it reads


def _reads_expr(e, name: str) -> bool:
    return any(isinstance(n, Load) and n.buf == name for n in walk(e))


def lower_function(fn: Function, constraints: list, target: str = "cpu") -> Program:
    pb = _ProgramBuilder(fn, target)
    prog = pb.prog
    prog.constraints = list(constraints)
    prog.tree = fn.body.terminator.attrs["tree"]
    for k, a in enumerate(fn.inputs):
        if isinstance(a.type, TensorType):
            pb.add_buffer(a, "input", "a", arg=k)
    outputs = fn.outputs
    for op in fn.ops:
        if op.name == "tensor.constant":
            pb.add_buffer(op.result, "const", "c", value=op.attrs["value"])
        elif op.opdef.has("host"):  # computed by the call prologue from an argument (e.g. image decoding)
            pb.add_buffer(op.result, "host", "h", arg=fn.inputs.index(op.operands[0]), maker=op.opdef.reference,
                          maker_args=tuple(sorted(op.attrs.items())),
                          host_args=tuple(fn.inputs.index(o) for o in op.operands))
    for kop in (op for op in fn.ops if op.name == "kernel.fused"):
        out_bufs = [pb.add_buffer(r, "output" if r in outputs else "temp", "o" if r in outputs else "t")
                    for r in kop.results]
        arg_bufs = [prog.buffers[pb.names[v]] for v in kop.operands]
        kname = f"k{len(prog.kernels)}"
        if kop.attrs["kind"] == "reduction":
            kern = _lower_reduction_kernel(pb, kop, kname, arg_bufs, out_bufs[0])
            kern.meta["reduction"] = True
        else:
            kern = _lower_elementwise_kernel(pb, kop, kname, arg_bufs, out_bufs)
        kern.params = _collect_params(kern)
        prog.kernels.append(kern)
    if target == "cpu":
        _sink_reductions(prog)
    for v in outputs:
        if v.owner is None:
            prog.outputs.append(("arg", fn.inputs.index(v)))
        else:
            prog.outputs.append(("buf", pb.names[v]))
    return prog


__all__ = ["Program", "BufferInfo", "lower_function"]
