"""CUDA C renderer: loop-IR kernels → one CUDA C ``__global__`` function per Program (beside ``llvm.py``).

The same ``Program`` the LLVM renderer consumes (same kernels, buffers, parameters) becomes CUDA C:

* **One launch for a batch.** The entry ``prepjit_cuda_entry(const long long* args, long long n)`` reads, for
  sample ``s``, the row ``args[s * NSLOTS ...]`` laid out like the CPU entry's argument array (``Program.slots``:
  buffer device pointers, then the int64 size parameters). So per-sample sizes, strides, weight tables and
  scratch buffers all come from the host prologue, and ragged images share one kernel launch. Samples map to
  ``blockIdx.y`` (grid-stride over ``gridDim.y``).
* **Threads of a sample.** The kernels of a program run in order, separated by ``__syncthreads()``. In a kernel,
  a loop is *distributed* over the sample's threads when its iterations write disjoint locations: every buffer it
  stores to is stored at one index vector that contains the loop variable itself, and read in the loop only at
  that same index (``_parallel``). Perfect nests of such loops are collapsed into one linear loop
  (``for (l = tid; l < n0*n1*n2; l += nthreads)``) and loop-invariant ``If``s (the CPU's unit-stride versioning)
  are unswitched out of the nest first. A non-parallel loop over sibling row loops (the vertical resampling
  pass: ``acc[j]`` reused for every output row) is fused and its row accumulator privatized into a per-thread
  scalar (``_fuse_rows``), which makes it parallel. Loops that are still not parallel run in every thread
  (uniformly, so barriers inside them are legal) when they contain a distributed loop; folds into one element
  with an associative operation become per-thread partials and a shared-memory tree (``_tree_reduction``); the
  rest runs in thread 0 only. So the image "pre" nests (horizontal pass → scratch, vertical pass → window) and
  the main nest are phases of one block per sample.
* **Barriers only where needed.** After a distributed loop a ``__syncthreads()`` is emitted unless every buffer
  it touches that is written in the kernel is touched everywhere with the same thread mapping (same collapsed
  inner extents, same index vector up to renaming): then each thread only ever reads what it wrote itself.
* **Grid mode.** A program that needs no barrier at all (one kernel, no thread-0 code: elementwise/layout
  pipelines, reductions over non-innermost axes) spreads each sample over ``gridDim.x`` blocks instead
  (``CudaSource.mode == "grid"``); otherwise one block per sample (``"block"``).

Semantics match the LLVM renderer primitive for primitive: wrapping integer arithmetic (rendered through
unsigned types: no C undefined behaviour), x86-64 float→int casts, NaN-propagating ``min``/``max`` with
``-0 < +0``, ordered compares except ``ne``, lazy ``Cond``. NVRTC runs with ``--fmad=false`` (no contraction,
like LLVM); ``sqrt`` and division are IEEE (NVRTC's default). Transcendentals use CUDA's libdevice (≤2 ULP).

The same text compiles as C++ with a small shim (``EMULATION_SHIM``: threads of a block as host threads with a
deterministic barrier scheduler), which the tests use to check kernel logic without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prepjit.errors import CompileError
from prepjit.lowering.loop_ir import (
    BOOL, Cond, Const, For, If, Kernel, Load, Param, Prim, Reduce, Store, Var, children, walk,
)

ENTRY = "prepjit_cuda_entry"
# Threads per block: a grid-mode sample spans many blocks of GRID_THREADS; a block-mode sample is one block of
# BLOCK_THREADS (larger, since a batch of a few hundred samples is a few hundred blocks; untuned without a GPU).
GRID_THREADS = 256
BLOCK_THREADS = 512

_CTYPE = {
    "bool": "bool", "int8": "signed char", "uint8": "unsigned char", "int16": "short", "uint16": "unsigned short",
    "int32": "int", "uint32": "unsigned int", "int64": "long long", "uint64": "unsigned long long",
    "float32": "float", "float64": "double",
}


def ctype(dt) -> str:
    try:
        return _CTYPE[np.dtype(dt).name]
    except KeyError:
        raise CompileError(f"no CUDA C type for {dt}") from None


def mem_ctype(dt) -> str:
    return "unsigned char" if np.dtype(dt) == BOOL else ctype(dt)


def _wide_unsigned(dt) -> str:
    """The unsigned type integer arithmetic on ``dt`` is done in (wraps, never C undefined behaviour)."""
    return "unsigned long long" if np.dtype(dt).itemsize == 8 else "unsigned int"


def _is_float(dt) -> bool:
    return np.dtype(dt).kind == "f"


def c_const(value, dt) -> str:
    dt = np.dtype(dt)
    if dt == BOOL:
        return "true" if value else "false"
    if dt.kind in "iu":
        v = int(value)
        if dt == np.int64 and v == -(1 << 63):
            return "(-9223372036854775807LL - 1)"
        if dt == np.int32 and v == -(1 << 31):
            return "(-2147483647 - 1)"
        suffix = {"int64": "LL", "uint64": "ULL", "uint32": "u"}.get(dt.name, "")
        text = f"{v}{suffix}"
        return text if dt.itemsize >= 4 else f"(({ctype(dt)}){text})"
    v = float(value)
    if np.isfinite(v):
        return v.hex() + ("f" if dt == np.float32 else "")
    if dt == np.float32:
        return f"pj_f32_bits({int(np.array(v, np.float32).view(np.uint32))}u)"
    return f"pj_f64_bits({int(np.array(v, np.float64).view(np.uint64))}ULL)"


# Helpers every program uses; CUDA's bit casts are intrinsics, the emulation shim defines the same names.
PRELUDE = r"""
#ifdef __CUDACC__
#define PJ_DEV static __device__ __forceinline__
PJ_DEV float pj_f32_bits(unsigned int u) { return __int_as_float((int)u); }
PJ_DEV double pj_f64_bits(unsigned long long u) { return __longlong_as_double((long long)u); }
PJ_DEV unsigned int pj_f32_u(float x) { return (unsigned int)__float_as_int(x); }
PJ_DEV unsigned long long pj_f64_u(double x) { return (unsigned long long)__double_as_longlong(x); }
#endif
PJ_DEV float pj_minimum_f32(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) return (pj_f32_u(a) >> 31) ? a : b;
  return a < b ? a : b;
}
PJ_DEV float pj_maximum_f32(float a, float b) {
  if (a != a || b != b) return a + b;
  if (a == b) return (pj_f32_u(a) >> 31) ? b : a;
  return a > b ? a : b;
}
PJ_DEV double pj_minimum_f64(double a, double b) {
  if (a != a || b != b) return a + b;
  if (a == b) return (pj_f64_u(a) >> 63) ? a : b;
  return a < b ? a : b;
}
PJ_DEV double pj_maximum_f64(double a, double b) {
  if (a != a || b != b) return a + b;
  if (a == b) return (pj_f64_u(a) >> 63) ? b : a;
  return a > b ? a : b;
}
/* x86-64 cvtt semantics (what NumPy's C casts compile to): truncate, or INT_MIN when out of range or NaN */
PJ_DEV int pj_cvtt32_f32(float v) { return (v >= -2147483648.0f && v < 2147483648.0f) ? (int)v : (-2147483647 - 1); }
PJ_DEV int pj_cvtt32_f64(double v) { return (v >= -2147483648.0 && v < 2147483648.0) ? (int)v : (-2147483647 - 1); }
PJ_DEV long long pj_cvtt64_f32(float v) {
  return (v >= -9223372036854775808.0f && v < 9223372036854775808.0f) ? (long long)v : (-9223372036854775807LL - 1);
}
PJ_DEV long long pj_cvtt64_f64(double v) {
  return (v >= -9223372036854775808.0 && v < 9223372036854775808.0) ? (long long)v : (-9223372036854775807LL - 1);
}
PJ_DEV unsigned long long pj_cvtt_u64_f32(float v) {
  if (!(v >= 9223372036854775808.0f)) return (unsigned long long)pj_cvtt64_f32(v);
  return (unsigned long long)pj_cvtt64_f32(v - 9223372036854775808.0f) ^ 0x8000000000000000ULL;
}
PJ_DEV unsigned long long pj_cvtt_u64_f64(double v) {
  if (!(v >= 9223372036854775808.0)) return (unsigned long long)pj_cvtt64_f64(v);
  return (unsigned long long)pj_cvtt64_f64(v - 9223372036854775808.0) ^ 0x8000000000000000ULL;
}
"""

_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_MATH1 = {"floor", "ceil", "trunc", "rint", "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "tanh"}


@dataclass
class CudaSource:
    """A rendered program: CUDA C text plus what the launcher needs."""

    text: str
    entry: str
    nslots: int
    mode: str                     # "grid" (no barriers: a sample may span blocks) | "block" (one block per sample)
    block_threads: int = BLOCK_THREADS
    stats: dict = field(default_factory=dict)


# -- analysis ---------------------------------------------------------------------------------------------------
def _stmt_exprs(s):
    """Expressions a statement evaluates itself (not those of nested statements)."""
    if isinstance(s, Store):
        return (s.value, *s.indices, *s.strides)
    if isinstance(s, For):
        return (s.extent,)
    if isinstance(s, If):
        return (s.cond,)
    return ()


def _all_stmts(stmts):
    for s in stmts:
        yield s
        if isinstance(s, For):
            yield from _all_stmts(s.body)
        elif isinstance(s, If):
            yield from _all_stmts(s.then)
            yield from _all_stmts(s.other)


def _loads(stmts):
    for s in _all_stmts(stmts):
        for e in _stmt_exprs(s):
            for n in walk(e):
                if isinstance(n, Load):
                    yield n


def _stored(stmts) -> set:
    return {s.buf for s in _all_stmts(stmts) if isinstance(s, Store) and not _private(s.buf)}


def _private(buf: str) -> bool:
    """A buffer replaced by a per-thread local variable (``_fuse_rows``)."""
    return buf.startswith("@")


def _parallel(f: For) -> bool:
    """Iterations of ``f`` touch disjoint memory: each buffer stored in the body is stored at one index vector
    that has ``f.var`` itself as an index (row-major buffers: distinct iterations, distinct addresses) and read in
    the body only at that vector."""
    where: dict = {}
    for s in _all_stmts(f.body):
        if isinstance(s, Store) and not _private(s.buf):
            key = (s.indices, s.strides)
            if where.setdefault(s.buf, key) != key:
                return False
    v = Var(f.var)
    for buf, (indices, _) in where.items():
        if v not in indices:
            return False
    for ld in _loads(f.body):
        if ld.buf in where and (ld.indices, ld.strides) != where[ld.buf]:
            return False
    return True


def _uses_vars(e, names) -> bool:
    return any(isinstance(n, Var) and n.name in names for n in walk(e))


def _unswitch(stmts: tuple, written: set) -> tuple:
    """Move loop-invariant Ifs (no loop variable, no load of a written buffer) out of loops, recursively."""
    out = []
    for s in stmts:
        if isinstance(s, For):
            body = _unswitch(s.body, written)
            if len(body) == 1 and isinstance(body[0], If):
                c = body[0]
                if not _uses_vars(c.cond, {s.var}) and not any(
                        isinstance(n, Load) and n.buf in written for n in walk(c.cond)):
                    then = (For(s.var, s.extent, c.then),) if c.then else ()
                    other = (For(s.var, s.extent, c.other),) if c.other else ()
                    out.append(If(c.cond, then, other))
                    continue
            out.append(For(s.var, s.extent, body))
        elif isinstance(s, If):
            out.append(If(s.cond, _unswitch(s.then, written), _unswitch(s.other, written)))
        else:
            out.append(s)
    return tuple(out)


def _accesses(stmts):
    """(buffer, indices, strides, is_store) of every load and store in ``stmts``."""
    for s in _all_stmts(stmts):
        if isinstance(s, Store):
            yield s.buf, s.indices, s.strides, True
        for e in _stmt_exprs(s):
            for n in walk(e):
                if isinstance(n, Load):
                    yield n.buf, n.indices, n.strides, False


def _rebuffer(stmts, names: set):
    """Loads and stores of ``names`` → the private (per-thread scalar) buffer ``@name``."""
    from prepjit.lowering.loop_ir import map_expr

    memo: dict = {}

    def fn(e):
        return Load("@" + e.buf, (), (), e.dtype) if isinstance(e, Load) and e.buf in names else e

    def ex(e):
        return map_expr(e, fn, memo)

    out = []
    for s in stmts:
        if isinstance(s, Store):
            buf, ind, st = ("@" + s.buf, (), ()) if s.buf in names else (s.buf, tuple(map(ex, s.indices)),
                                                                      tuple(map(ex, s.strides)))
            out.append(Store(buf, ind, st, ex(s.value)))
        elif isinstance(s, For):
            out.append(For(s.var, ex(s.extent), _rebuffer(s.body, names)))
        elif isinstance(s, If):
            out.append(If(ex(s.cond), _rebuffer(s.then, names), _rebuffer(s.other, names)))
        else:
            out.append(s)
    return tuple(out)


def _fuse_rows(stmts: tuple, kernel_body: tuple) -> tuple:
    """Fuse a non-parallel loop's sibling loops over one row variable, and privatize its row accumulator.

    ``for y { for j: acc[j] = init;  for k { for j: acc[j] += w[k] * mid[.., j] };  for j: out[y, j] = f(acc[j]) }``
    (the vertical resampling pass: ``acc`` makes ``y`` serial) becomes
    ``for y { for j { acc = init; for k { acc += ... }; out[y, j] = f(acc) } }`` with ``acc`` a per-thread scalar,
    after which ``y`` and ``j`` are parallel: no barrier per output row. Legal when every buffer written in the
    loop is accessed there only at one index vector containing ``j`` (distinct ``j`` never interact, so the ``j``
    loops fuse and interchange with the ``k`` loops); a buffer is privatized when that vector is ``j`` alone, it is
    used nowhere else in the kernel, and each ``j`` iteration first stores it unconditionally.
    """
    out = []
    for s in stmts:
        if isinstance(s, For):
            fused = None if _parallel(s) else _try_fuse(s, kernel_body)
            out.append(fused if fused is not None else For(s.var, s.extent, _fuse_rows(s.body, kernel_body)))
        elif isinstance(s, If):
            out.append(If(s.cond, _fuse_rows(s.then, kernel_body), _fuse_rows(s.other, kernel_body)))
        else:
            out.append(s)
    return tuple(out)


def _try_fuse(f: For, kernel_body: tuple):
    chains, inner = [], []
    for t in f.body:
        chain, u = [], t
        while isinstance(u, For) and len(u.body) == 1 and isinstance(u.body[0], For):
            chain.append(u)
            u = u.body[0]
        if not isinstance(u, For):
            return None
        chains.append(chain)
        inner.append(u)
    var, ext = inner[0].var, inner[0].extent
    if len(inner) < 2 or any(u.var != var or u.extent != ext for u in inner) or _uses_vars(ext, {var}):
        return None
    if any(_uses_vars(c.extent, {var}) for chain in chains for c in chain):
        return None
    where: dict = {}
    written = _stored(f.body)
    for buf, ind, st, _ in _accesses(f.body):
        if buf in written and where.setdefault(buf, (ind, st)) != (ind, st):
            return None
    v = Var(var)
    if any(v not in ind for ind, _ in where.values()):
        return None
    body = []
    for chain, u in zip(chains, inner):
        stmts = u.body
        for c in reversed(chain):
            stmts = (For(c.var, c.extent, stmts),)
        body.extend(stmts)
    body = tuple(body)
    private = set()
    outside = {a[0] for a in _accesses(_replace_stmt(kernel_body, f))}
    for buf, (ind, _) in where.items():
        if ind != (v,) or buf in outside:
            continue
        first = next((s for s in body if buf in {a[0] for a in _accesses((s,))}), None)
        if isinstance(first, Store) and first.buf == buf and not any(
                isinstance(n, Load) and n.buf == buf for n in walk(first.value)):
            private.add(buf)
    if not private:
        return None
    return For(f.var, f.extent, (For(var, ext, _rebuffer(body, private)),))


def _replace_stmt(stmts, target):
    """``stmts`` without ``target`` (by identity), recursively."""
    out = []
    for s in stmts:
        if s is target:
            continue
        if isinstance(s, For):
            out.append(For(s.var, s.extent, _replace_stmt(s.body, target)))
        elif isinstance(s, If):
            out.append(If(s.cond, _replace_stmt(s.then, target), _replace_stmt(s.other, target)))
        else:
            out.append(s)
    return tuple(out)


_MAX = {"f": lambda dt: float("inf"), "i": lambda dt: int(np.iinfo(dt).max), "u": lambda dt: int(np.iinfo(dt).max)}
_MIN = {"f": lambda dt: -float("inf"), "i": lambda dt: int(np.iinfo(dt).min), "u": lambda dt: 0}
_IDENTITY = {
    "add": lambda dt: 0, "add_reassoc": lambda dt: 0, "mul": lambda dt: 1, "or": lambda dt: 0, "xor": lambda dt: 0,
    "and": lambda dt: True if dt == BOOL else -1, "min": lambda dt: True if dt == BOOL else _MAX[dt.kind](dt),
    "max": lambda dt: False if dt == BOOL else _MIN[dt.kind](dt),
}


def _tree_reduction(f: For):
    """``f`` is a (perfect) nest folding values into one accumulator element with an associative, commutative
    operation — ``acc[c] = op(acc[c], value)``, ``c`` loop-invariant, ``value`` not reading ``acc`` — so the fold
    may be split over threads. Float ``add`` only when marked ``add_reassoc`` (the CPU path may reassociate it
    too); float ``min``/``max`` are exact in any order. Returns (nest, store, value, op) or None."""
    nest = [(f.var, f.extent)]
    body = f.body
    while len(body) == 1 and isinstance(body[0], For):
        if _uses_vars(body[0].extent, {v for v, _ in nest}):
            return None
        nest.append((body[0].var, body[0].extent))
        body = body[0].body
    if len(body) != 1 or not isinstance(body[0], Store):
        return None
    st = body[0]
    names = {v for v, _ in nest}
    if any(_uses_vars(e, names) for e in (*st.indices, *st.strides)) or _private(st.buf):
        return None
    v = st.value
    if not isinstance(v, Prim) or len(v.args) != 2:
        return None
    dt = np.dtype(v.dtype)
    ok = v.op in ("min", "max") or (dt.kind in "iub" and v.op in ("add", "mul", "and", "or", "xor")) \
        or v.op == "add_reassoc"
    if not ok or v.op not in _IDENTITY:
        return None
    acc = Load(st.buf, st.indices, st.strides, dt)
    if v.args[0] == acc:
        rest = v.args[1]
    elif v.args[1] == acc:
        rest = v.args[0]
    else:
        return None
    if any(isinstance(n, Load) and n.buf == st.buf for n in walk(rest)):
        return None
    return nest, st, rest, v.op


def _collapse(f: For) -> list:
    """The perfect nest of parallel loops starting at ``f``: [(var, extent), ...], inner extents independent of
    the outer variables, in the order the linear thread index decomposes (last = fastest). Any order is legal
    (the loops are parallel); the loop whose variable indexes the unit-stride dimension of the nest's first
    store goes last, so consecutive threads write consecutive addresses (coalesced), whatever order the CPU
    lowering chose (e.g. channels innermost for a CHW output)."""
    nest = [(f.var, f.extent)]
    body = f.body
    while len(body) == 1 and isinstance(body[0], For) and _parallel(body[0]) \
            and not _uses_vars(body[0].extent, {v for v, _ in nest}):
        nest.append((body[0].var, body[0].extent))
        body = body[0].body
    names = {v for v, _ in nest}
    store = next((s for s in _all_stmts(body) if isinstance(s, Store) and not _private(s.buf)), None)
    if store is not None and len(nest) > 1 and not any(_uses_vars(e, names) for _, e in nest):
        unit = [i.name for i, st in zip(store.indices, store.strides)
                if isinstance(i, Var) and i.name in names and isinstance(st, Const) and st.value == 1]
        if unit and unit[0] != nest[-1][0]:
            k = [v for v, _ in nest].index(unit[0])
            nest = nest[:k] + nest[k + 1:] + [nest[k]]
    return nest


def _nest_body(f: For, depth: int) -> tuple:
    """The body of the perfect nest of ``depth`` loops starting at ``f``."""
    for _ in range(depth - 1):
        f = f.body[0]
    return f.body


def _has_parallel(stmts) -> bool:
    return any(isinstance(s, For) and _parallel(s) for s in _all_stmts(stmts))


class _Access:
    """One load or store of a buffer written in the kernel: ``sig`` its thread mapping (None: all threads or
    thread 0), ``order`` the program position of its block-level statement, ``anc`` the enclosing loops that all
    threads run (a later iteration of one of them comes after any statement inside it)."""

    __slots__ = ("buf", "write", "sig", "order", "anc")

    def __init__(self, buf, write, sig, order, anc):
        self.buf, self.write, self.sig, self.order, self.anc = buf, write, sig, order, anc


def _canon(indices, strides, names: list) -> tuple:
    """An index vector with the collapsed loop variables renamed by position (thread-mapping comparable)."""
    from prepjit.lowering.loop_ir import map_expr

    ren = {Var(n): Var(f"#{k}") for k, n in enumerate(names)}

    def fn(e):
        return ren.get(e, e)

    memo: dict = {}
    return (tuple(map_expr(i, fn, memo) for i in indices), tuple(map_expr(s, fn, memo) for s in strides))


# -- rendering --------------------------------------------------------------------------------------------------
class _Raw:
    __slots__ = ("text", "dtype")

    def __init__(self, text, dtype):
        self.text, self.dtype = text, dtype


class CudaRenderer:
    def __init__(self):
        self.lines: list[str] = []
        self.counter = 0
        self.syncs = 0
        self.serial_regions = 0
        self.tree_reductions = 0
        self.block_threads = BLOCK_THREADS

    # -- output helpers -------------------------------------------------------------------------------------
    def emit(self, line: str):
        self.lines.append("  " * self.depth + line)

    def tmp(self, prefix="t") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # -- kernels ---------------------------------------------------------------------------------------------
    def kernel(self, k: Kernel) -> str:
        self.depth = 1
        self.lines = []
        self.bufs = {b.name: b for b in k.buffers}
        self.scopes: list[dict] = [{}]
        self._loads_memo: dict = {}
        written = _stored(k.body)
        self.written = written
        body = _unswitch(k.body, written)
        body = _fuse_rows(body, body)
        private = sorted({s.buf for s in _all_stmts(body) if isinstance(s, Store) and _private(s.buf)})
        self._plan(body)
        for b in private:  # per-thread scalars (each use stores before it loads)
            self.emit(f"{ctype(self.bufs[b[1:]].dtype)} pv_{b[1:]};")
        self.shared: dict = {}
        self.block_stmts(body)
        self.lines[:0] = [f"  __shared__ {t} {name}[{self.block_threads}];" for name, t in self.shared.items()]
        args = [f"{mem_ctype(b.dtype)}* __restrict__ b_{b.name}" if b.role != "in" else
                f"const {mem_ctype(b.dtype)}* __restrict__ b_{b.name}" for b in k.buffers]
        args += [f"long long p_{p}" for p in k.params]
        head = f"PJ_DEV void pj_{k.name}({', '.join(args)}) {{"
        return "\n".join([head, *self.lines, "}"])

    # The sync plan: record every access of a written buffer with its thread mapping and program position.
    def _plan(self, body):
        self.accesses: list[_Access] = []
        self.loop_sig: dict = {}     # id(For) -> (inner extents, names) for distributed loops
        self._order = 0
        self._walk_plan(body, ())

    def _note_exprs(self, exprs, sig, names, anc):
        for e in exprs:
            for n in walk(e):
                if isinstance(n, Load) and n.buf in self.written:
                    self.accesses.append(_Access(n.buf, False, self._sig(sig, n, names), self._order, anc))

    @staticmethod
    def _sig(sig, node, names):
        if sig is None:
            return None
        return (sig, _canon(node.indices, node.strides, names))

    def _walk_plan(self, stmts, anc):
        """Mirror of ``block_stmts``: the same classification of block-level statements."""
        for s in stmts:
            self._order += 1
            if isinstance(s, For) and _parallel(s):
                nest = _collapse(s)
                names = [v for v, _ in nest]
                sig = tuple(e for _, e in nest[1:])
                if any(any(isinstance(n, Var) for n in walk(e)) for e in sig):
                    sig = ("unique", id(s))  # inner extents vary: never comparable
                self.loop_sig[id(s)] = (sig, names)
                start = len(self.accesses)
                for t in _all_stmts(_nest_body(s, len(nest))):
                    self._note_exprs(_stmt_exprs(t), sig, names, anc)
                    if isinstance(t, Store) and t.buf in self.written:
                        self.accesses.append(_Access(t.buf, True, self._sig(sig, t, names), self._order, anc))
                self.loop_sig[id(s)] += (start, len(self.accesses), self._order)
            elif isinstance(s, For) and _has_parallel(s.body):
                self._note_exprs((s.extent,), None, [], anc)
                self._walk_plan(s.body, anc + (id(s),))
            elif isinstance(s, If):
                self._note_exprs((s.cond,), None, [], anc)
                self._walk_plan(s.then, anc)
                self._walk_plan(s.other, anc)
            else:  # thread-0 region or tree reduction
                for t in _all_stmts((s,)):
                    self._note_exprs(_stmt_exprs(t), None, [], anc)
                    if isinstance(t, Store) and t.buf in self.written:
                        self.accesses.append(_Access(t.buf, True, None, self._order, anc))

    def _needs_sync_after(self, f: For) -> bool:
        sig, names, start, end, order = self.loop_sig[id(f)]
        mine = self.accesses[start:end]
        anc = mine[0].anc if mine else ()
        for a in mine:
            for b in self.accesses:
                if b.buf != a.buf or b.sig == a.sig and b.sig is not None:
                    continue
                if not (a.write or b.write):
                    continue
                if b.order > order or set(b.anc) & set(anc):
                    return True
        return False

    def _needs_sync_before(self, f: For) -> bool:
        """A block-level read (all threads, outside distributed loops) of a buffer this loop writes."""
        sig, names, start, end, order = self.loop_sig[id(f)]
        mine = {a.buf for a in self.accesses[start:end] if a.write}
        return any(b.sig is None and not b.write and b.buf in mine and b.order < order for b in self.accesses)

    def sync(self):
        self.syncs += 1
        self.emit("__syncthreads();")

    def block_stmts(self, stmts):
        """Statements every thread of the sample executes in step (uniform control flow)."""
        for s in stmts:
            if isinstance(s, For) and id(s) in self.loop_sig:
                if self._needs_sync_before(s):
                    self.sync()
                self.distributed(s)
                if self._needs_sync_after(s):
                    self.sync()
            elif isinstance(s, For) and _has_parallel(s.body):
                self.serial_for(s, self.block_stmts)
            elif isinstance(s, If):
                self.if_stmt(s, self.block_stmts)
            elif isinstance(s, For) and _tree_reduction(s) is not None:
                self.tree_reduce(s, *_tree_reduction(s))
            else:
                self.serial_regions += 1
                self.emit("if (PJ_TID == 0) {")
                self.open_scope()
                self.thread_stmts((s,))
                self.close_scope()
                self.emit("}")
                self.sync()

    def tree_reduce(self, f: For, nest, store: Store, rest, op):
        """A fold into one accumulator element: per-thread partials over the distributed nest, a fixed-shape
        tree through shared memory, thread 0 folds the result into the accumulator. Deterministic."""
        self.tree_reductions += 1
        dt = self.bufs[store.buf].dtype
        t = ctype(dt)
        part = self.tmp("part")
        self.emit(f"{t} {part} = {c_const(_IDENTITY[op](np.dtype(dt)), dt)};")
        self.collapsed_loop(nest)
        v = self.expr(rest)
        self.emit(f"{part} = {self._prim(Prim(op, (_Raw(part, dt), _Raw(v, dt)), dt))};")
        self.close_scope()
        self.emit("}")
        red = f"pj_red_{np.dtype(dt).name}"  # one shared array per dtype and kernel (reductions are separated
        self.shared[red] = t                 # by barriers)
        self.emit(f"{red}[threadIdx.x] = {part};")
        self.sync()
        self.emit("for (long long pj_w = 1; pj_w < PJ_NT; pj_w *= 2) {")
        self.depth += 1
        pair = Prim(op, (_Raw(f"{red}[PJ_TID]", dt), _Raw(f"{red}[PJ_TID + pj_w]", dt)), dt)
        self.emit(f"if (PJ_TID % (2 * pj_w) == 0 && PJ_TID + pj_w < PJ_NT) {red}[PJ_TID] = {self._prim(pair)};")
        self.emit("__syncthreads();")
        self.depth -= 1
        self.emit("}")
        self.emit("if (PJ_TID == 0) {")
        self.open_scope()
        self.store(Store(store.buf, store.indices, store.strides,
                         Prim(op, (Load(store.buf, store.indices, store.strides, dt), _Raw(f"{red}[0]", dt)), dt)))
        self.close_scope()
        self.emit("}")
        self.sync()

    def collapsed_loop(self, nest):
        """Open ``for (l = tid; l < prod(extents); l += nthreads) {`` declaring the nest's variables, in a new
        scope (the caller closes it)."""
        exts = [self.expr(e) for _, e in nest]
        total = " * ".join(f"({e})" for e in exts) if len(exts) > 1 else exts[0]
        lin = self.tmp("l")
        self.emit(f"for (long long {lin} = PJ_TID; {lin} < {total}; {lin} += PJ_NT) {{")
        self.open_scope()
        if len(nest) == 1:
            self.emit(f"const long long v_{nest[0][0]} = {lin};")
        else:
            rest = self.tmp("r")
            self.emit(f"long long {rest} = {lin};")
            for k in range(len(nest) - 1, 0, -1):
                self.emit(f"const long long v_{nest[k][0]} = {rest} % ({exts[k]}); {rest} /= ({exts[k]});")
            self.emit(f"const long long v_{nest[0][0]} = {rest};")
        return None

    def distributed(self, f: For):
        nest = _collapse(f)
        self.collapsed_loop(nest)
        self.thread_stmts(_nest_body(f, len(nest)))
        self.close_scope()
        self.emit("}")

    # -- sequential code (inside one thread) ------------------------------------------------------------------
    def serial_for(self, s: For, body) -> None:
        """``for`` run by every thread that reaches it; ``body`` renders the statements inside."""
        n = self.expr(s.extent)
        self.emit(f"for (long long v_{s.var} = 0; v_{s.var} < {n}; ++v_{s.var}) {{")
        self.open_scope()
        body(s.body)
        self.close_scope()
        self.emit("}")

    def if_stmt(self, s: If, body) -> None:
        c = self.expr(s.cond)
        self.emit(f"if ({c}) {{")
        self.open_scope()
        body(s.then)
        self.close_scope()
        if s.other:
            self.emit("} else {")
            self.open_scope()
            body(s.other)
            self.close_scope()
        self.emit("}")

    def thread_stmts(self, stmts):
        for s in stmts:
            if isinstance(s, For):
                self.serial_for(s, self.thread_stmts)
            elif isinstance(s, If):
                self.if_stmt(s, self.thread_stmts)
            elif isinstance(s, Store):
                self.store(s)
            else:
                raise CompileError(f"cannot render {s!r}")

    def store(self, s: Store):
        v = self.expr(s.value)
        if _private(s.buf):
            self.emit(f"pv_{s.buf[1:]} = {v};")
            for scope in self.scopes:
                for e in [e for e in scope if s.buf in self._loaded(e)]:
                    del scope[e]
            return
        dt = self.bufs[s.buf].dtype
        off = self.offset(s.indices, s.strides)
        if np.dtype(dt) == BOOL:
            v = f"(unsigned char)({v})"
        self.emit(f"b_{s.buf}[{off}] = {v};")
        for scope in self.scopes:  # values loaded from this buffer are stale now
            for e in [e for e in scope if s.buf in self._loaded(e)]:
                del scope[e]

    def _loaded(self, e) -> frozenset:
        r = self._loads_memo.get(e)
        if r is None:
            r = frozenset().union(*(self._loaded(c) for c in children(e)))
            if isinstance(e, Load):
                r |= {e.buf}
            self._loads_memo[e] = r
        return r

    def open_scope(self):
        self.depth += 1
        self.scopes.append({})

    def close_scope(self):
        self.depth -= 1
        self.scopes.pop()

    # -- expressions ---------------------------------------------------------------------------------------------
    def offset(self, indices, strides) -> str:
        terms = []
        for i, s in zip(indices, strides):
            if isinstance(s, Const) and s.value == 0:
                continue
            t = self.expr(i)
            if not (isinstance(s, Const) and s.value == 1):
                t = f"{t} * {self.expr(s)}"
            terms.append(t)
        return " + ".join(terms) or "0"

    def expr(self, e) -> str:
        if isinstance(e, _Raw):
            return e.text
        if isinstance(e, Const):
            return c_const(e.value, e.dtype)
        if isinstance(e, Param):
            return f"p_{e.name}"
        if isinstance(e, Var):
            return f"v_{e.name}"
        for scope in reversed(self.scopes):
            if e in scope:
                return scope[e]
        if isinstance(e, Cond):
            name = self._cond(e)
        elif isinstance(e, Reduce):
            name = self._reduce(e)
        else:
            text = self._load(e) if isinstance(e, Load) else self._prim(e)
            name = self.tmp()
            self.emit(f"const {ctype(e.dtype)} {name} = {text};")
        self.scopes[-1][e] = name
        return name

    def _load(self, e: Load) -> str:
        if _private(e.buf):
            return f"pv_{e.buf[1:]}"
        text = f"b_{e.buf}[{self.offset(e.indices, e.strides)}]"
        return f"({text} != 0)" if np.dtype(e.dtype) == BOOL else text

    def _cond(self, e: Cond) -> str:
        c = self.expr(e.cond)
        name = self.tmp()
        self.emit(f"{ctype(e.dtype)} {name};")
        self.emit(f"if ({c}) {{")
        self.open_scope()
        self.emit(f"{name} = {self.expr(e.then)};")
        self.close_scope()
        self.emit("} else {")
        self.open_scope()
        self.emit(f"{name} = {self.expr(e.other)};")
        self.close_scope()
        self.emit("}")
        return name

    def _reduce(self, e: Reduce) -> str:
        init = self.expr(e.init)
        n = self.expr(e.extent)
        acc = self.tmp("acc")
        self.emit(f"{ctype(e.dtype)} {acc} = {init};")
        self.emit(f"for (long long v_{e.var} = 0; v_{e.var} < {n}; ++v_{e.var}) {{")
        self.open_scope()
        v = self.expr(e.body)
        self.emit(f"{acc} = {self._prim(Prim(e.op, (_Raw(acc, e.dtype), _Raw(v, e.dtype)), e.dtype))};")
        self.close_scope()
        self.emit("}")
        return acc

    def _prim(self, e: Prim) -> str:
        op = e.op
        a = [self.expr(x) for x in e.args]
        if op == "cast":
            return self._cast(a[0], e.args[0].dtype, e.dtype)
        if op == "bitcast":  # an int64 carrying a float64's bits (per-call float parameters)
            return f"__longlong_as_double((long long)({a[0]}))"
        if op == "select":
            return f"({a[0]} ? {a[1]} : {a[2]})"
        dt = np.dtype(e.args[0].dtype)
        t = ctype(dt)
        flt = _is_float(dt)
        sfx = "f" if dt == np.float32 else ""
        if op in _CMP:
            return f"({a[0]} {_CMP[op]} {a[1]})"
        if op in ("add", "sub", "mul", "add_reassoc"):
            sym = {"add": "+", "add_reassoc": "+", "sub": "-", "mul": "*"}[op]
            if flt:
                return f"({a[0]} {sym} {a[1]})"
            if dt == BOOL:
                raise CompileError(f"primitive {op} on bool has no CUDA rendering")
            u = _wide_unsigned(dt)
            return f"({t})(({u}){a[0]} {sym} ({u}){a[1]})"
        if op == "fdiv":
            return f"({a[0]} / {a[1]})"
        if op == "frem":
            return f"fmod{sfx}({a[0]}, {a[1]})"
        if op in ("idiv", "irem"):
            return f"({t})({a[0]} {'/' if op == 'idiv' else '%'} {a[1]})"
        if op == "neg":
            return f"(-{a[0]})" if flt else f"({t})(({_wide_unsigned(dt)})0 - ({_wide_unsigned(dt)}){a[0]})"
        if op in ("and", "or", "xor"):
            sym = {"and": "&", "or": "|", "xor": "^"}[op]
            return f"({t})({a[0]} {sym} {a[1]})"
        if op == "not":
            return f"(!{a[0]})" if dt == BOOL else f"({t})(~{a[0]})"
        if op == "shl":
            return f"({t})(({_wide_unsigned(dt)}){a[0]} << {a[1]})"
        if op == "shr":
            return f"({t})({a[0]} >> {a[1]})"
        if op == "isnan":
            return f"({a[0]} != {a[0]})"
        if op == "fma" and flt:
            return f"fma{sfx}({a[0]}, {a[1]}, {a[2]})"
        if op in ("min", "max"):
            if flt:
                return f"pj_{'minimum' if op == 'min' else 'maximum'}_{'f32' if sfx else 'f64'}({a[0]}, {a[1]})"
            return f"({a[0]} {'<' if op == 'min' else '>'} {a[1]} ? {a[0]} : {a[1]})"
        if op in ("fminnum", "fmaxnum") and flt:
            return f"f{op[1:4]}{sfx}({a[0]}, {a[1]})"
        if op == "abs":
            if flt:
                return f"fabs{sfx}({a[0]})"
            if dt.kind == "u":
                return a[0]
            u = _wide_unsigned(dt)
            return f"({a[0]} < 0 ? ({t})(({u})0 - ({u}){a[0]}) : {a[0]})"
        if op == "copysign" and flt:
            return f"copysign{sfx}({a[0]}, {a[1]})"
        if op in _MATH1 and flt:
            return f"{op}{sfx}({a[0]})"
        raise CompileError(f"primitive {op} on {dt} has no CUDA rendering")

    def _cast(self, v: str, src, dst) -> str:
        src, dst = np.dtype(src), np.dtype(dst)
        if src == dst:
            return v
        if dst == BOOL:
            return f"({v} != 0)"
        if src == BOOL or not _is_float(src) or _is_float(dst):
            return f"({ctype(dst)})({v})"
        f = "f32" if src == np.float32 else "f64"
        if dst.itemsize <= 2:
            return f"({ctype(dst)})pj_cvtt32_{f}({v})"
        if dst == np.int32:
            return f"pj_cvtt32_{f}({v})"
        if dst == np.int64:
            return f"pj_cvtt64_{f}({v})"
        if dst == np.uint32:
            return f"(unsigned int)pj_cvtt64_{f}({v})"
        return f"pj_cvtt_u64_{f}({v})"


def render_program(kernels: list[Kernel], slots: list[str], name: str = "prepjit",
                   block_threads: int | None = None) -> CudaSource:
    """CUDA C for a whole Program: one ``__device__`` function per kernel, one ``__global__`` entry."""
    r = CudaRenderer()
    r.block_threads = block_threads or BLOCK_THREADS
    funcs = [r.kernel(k) for k in kernels]
    position = {s: k for k, s in enumerate(slots)}
    mode = "grid" if len(kernels) <= 1 and r.syncs == 0 and r.serial_regions == 0 else "block"
    block_threads = block_threads or (GRID_THREADS if mode == "grid" else BLOCK_THREADS)
    if mode == "grid":
        tid = "((long long)blockIdx.x * blockDim.x + threadIdx.x)"
        nt = "((long long)gridDim.x * blockDim.x)"
    else:
        tid, nt = "((long long)threadIdx.x)", "((long long)blockDim.x)"
    body = []
    for i, k in enumerate(kernels):
        if i:
            body.append("    __syncthreads();")
        args = []
        for b in k.buffers:
            q = "const " if b.role == "in" else ""
            args.append(f"({q}{mem_ctype(b.dtype)}*)pj_a[{position[b.name]}]")
        args += [f"pj_a[{position[p]}]" for p in k.params]
        body.append(f"    pj_{k.name}({', '.join(args)});")
    nslots = len(slots)
    text = "\n".join([
        f"/* prepjit CUDA C: program @{name}, {len(kernels)} kernel(s), {nslots} int64 slots per sample "
        f"({', '.join(slots)}); mode={mode} */",
        PRELUDE.strip("\n"),
        f"#define PJ_TID {tid}",
        f"#define PJ_NT {nt}",
        "",
        *(f + "\n" for f in funcs),
        f'extern "C" __global__ void __launch_bounds__({block_threads}) {ENTRY}(const long long* __restrict__ pj_args, '
        "long long pj_nsamples) {",
        "  for (long long pj_s = blockIdx.y; pj_s < pj_nsamples; pj_s += gridDim.y) {",
        f"    const long long* pj_a = pj_args + pj_s * {nslots};",
        *body,
        "  }",
        "}",
        "",
    ])
    return CudaSource(text, ENTRY, nslots, mode, block_threads,
                      {"syncs": r.syncs, "serial_regions": r.serial_regions, "tree_reductions": r.tree_reductions})


__all__ = ["CudaSource", "CudaRenderer", "render_program", "ENTRY", "PRELUDE", "ctype", "c_const"]
