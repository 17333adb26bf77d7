"""LLVM renderer: loop-IR kernels → LLVM IR text (llvmlite.ir).

A thin class over the loop IR: one method per statement kind, one table entry per primitive. Each kernel is
an internal function with ``noalias`` buffer pointers (inlined into the entry point, where LLVM keeps the
no-alias facts as scoped metadata). The entry point ``prepjit_entry(i64* args)`` unpacks the argument array
the Python prologue fills (pointers, then int64 parameters) and calls the kernels in order.
"""
from __future__ import annotations

import re

import numpy as np
from llvmlite import ir

from prepjit.errors import CompileError
from prepjit.lowering.loop_ir import (
    BOOL, TILE, Cond, Const, For, If, Kernel, Load, Param, Prim, Reduce, Store, Var, children, idx, map_expr, offset_coeff,
)

ENTRY = "prepjit_entry"
I1, I8, I64T = ir.IntType(1), ir.IntType(8), ir.IntType(64)
PTR = ir.PointerType()


def reg_type(dt) -> ir.Type:
    dt = np.dtype(dt)
    if dt == BOOL:
        return I1
    if dt.kind in "iu":
        return ir.IntType(dt.itemsize * 8)
    if dt == np.float32:
        return ir.FloatType()
    if dt == np.float64:
        return ir.DoubleType()
    raise CompileError(f"no LLVM type for {dt}")


def mem_type(dt) -> ir.Type:
    return I8 if np.dtype(dt) == BOOL else reg_type(dt)


def _signed(dt) -> bool:
    return np.dtype(dt).kind == "i"


def _is_float(dt) -> bool:
    return np.dtype(dt).kind == "f"


def _const(value, dt) -> ir.Constant:
    dt = np.dtype(dt)
    ty = reg_type(dt)
    if dt == BOOL:
        return ir.Constant(I1, int(bool(value)))
    if dt.kind in "iu":
        v = int(value)
        bits = dt.itemsize * 8
        v &= (1 << bits) - 1
        if v >= 1 << (bits - 1):
            v -= 1 << bits
        return ir.Constant(ty, v)
    return ir.Constant(ty, float(value))


_ICMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_FLOAT_INTRINSIC_1 = {"floor": "llvm.floor", "ceil": "llvm.ceil", "trunc": "llvm.trunc", "rint": "llvm.roundeven",
                      "sqrt": "llvm.sqrt", "abs": "llvm.fabs"}
_FLOAT_INTRINSIC_2 = {"min": "llvm.minimum", "max": "llvm.maximum", "fminnum": "llvm.minnum",
                      "fmaxnum": "llvm.maxnum", "copysign": "llvm.copysign"}
MATH_FUNCTIONS = ("exp", "expm1", "log", "log1p", "log2", "log10", "tanh")


def _suffix(ty) -> str:
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    return f"i{ty.width}"


class _Raw:
    """An already-rendered LLVM value standing in as an expression operand (the accumulator of a fold)."""

    __slots__ = ("value", "dtype")

    def __init__(self, value, dtype):
        self.value, self.dtype = value, dtype


class LLVMRenderer:
    def __init__(self, module_name: str = "prepjit"):
        self.module = ir.Module(name=module_name)

    # -- declarations -----------------------------------------------------------------------------------
    def intrinsic(self, name: str, ret, args) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
        return fn

    def math_function(self, name: str, ty) -> ir.Function:
        from prepjit.lowering import llvm_math

        if name not in llvm_math.SUPPORTED:
            raise CompileError(f"math function {name} is not implemented for the CPU backend")
        return llvm_math.get_math_function(self.module, name, ty)

    # -- kernels ----------------------------------------------------------------------------------------
    def kernel(self, k: Kernel) -> ir.Function:
        args = [PTR] * len(k.buffers) + [I64T] * len(k.params)
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), args), name=k.name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        self.env: dict = {}
        for a, b in zip(fn.args, k.buffers):
            a.add_attribute("noalias")
            a.name = b.name
            self.env[("buf", b.name)] = (a, b.dtype)
        for a, p in zip(fn.args[len(k.buffers):], k.params):
            a.name = p
            self.env[("param", p)] = a
        self.builder = ir.IRBuilder(fn.append_basic_block("entry"))
        self.scopes: list[dict] = [{}]
        self._loads_memo: dict = {}
        self.stmts(k.body)
        self.builder.ret_void()
        return fn

    def stmts(self, stmts):
        for s in stmts:
            getattr(self, "stmt_" + type(s).__name__)(s)

    def _counted_loop(self, var: str, extent, body, carried=None, vectorize=True):
        """``for var in [0, extent)``. ``body()`` renders the loop body in a new scope; with ``carried =
        (type, initial value)`` it returns the carried value's next value, and the loop returns the final one."""
        b = self.builder
        n = self.expr(extent)
        pre = b.block
        header = b.append_basic_block(f"{var}.header")
        body_block = b.append_basic_block(f"{var}.body")
        exit_ = b.append_basic_block(f"{var}.exit")
        b.branch(header)
        b.position_at_end(header)
        i = b.phi(I64T, name=var)
        i.add_incoming(ir.Constant(I64T, 0), pre)
        acc = None
        if carried is not None:
            acc = b.phi(carried[0], name=f"{var}.acc")
            acc.add_incoming(carried[1], pre)
        b.cbranch(b.icmp_signed("<", i, n), body_block, exit_)
        b.position_at_end(body_block)
        self.env[("var", var)] = i
        self.scopes.append({})
        nxt = body(acc)
        self.scopes.pop()
        i.add_incoming(b.add(i, ir.Constant(I64T, 1), name=f"{var}.next", flags=("nuw", "nsw")), b.block)
        if acc is not None:
            acc.add_incoming(nxt, b.block)
        latch = b.branch(header)
        if not vectorize:
            latch.set_metadata("llvm.loop", self._no_vectorize_md())
        b.position_at_end(exit_)
        return acc

    def _no_vectorize_md(self):
        # a loop ID must be a distinct node whose first operand is itself; llvmlite cannot build that, so the
        # node is tagged here and rewritten in the module text (see ``render_program``)
        self._loop_ids = getattr(self, "_loop_ids", 0) + 1
        # scalar loops are short (taps, a row's last bytes): unrolling them only multiplies code and compile time
        flag = self.module.add_metadata([ir.MetaDataString(self.module, "llvm.loop.vectorize.enable"),
                                         ir.Constant(I1, 0)])
        no_unroll = self.module.add_metadata([ir.MetaDataString(self.module, "llvm.loop.unroll.disable")])
        return self.module.add_metadata([ir.MetaDataString(self.module, f"{_LOOP_ID_TAG}{self._loop_ids}"), flag,
                                         no_unroll])

    def stmt_For(self, s: For):
        if s.transpose and self._tile_transpose(s):
            return
        self._counted_loop(s.var, s.extent, lambda _: self.stmts(s.body), vectorize=s.vectorize)

    def _tile_transpose(self, s: For) -> bool:
        """A TILE×TILE byte tile copied between a layout contiguous in one loop variable and one contiguous in the
        other: TILE vector loads, log2(TILE) rounds of byte interleaves, TILE vector stores — instead of the
        byte-at-a-time gathers or scatters LLVM's loop vectorizer makes of it. False: not such a tile (the plain
        loops are rendered instead)."""
        inner = s.body[0] if len(s.body) == 1 else None
        if not (isinstance(inner, For) and len(inner.body) == 1 and isinstance(inner.body[0], Store)):
            return False
        st = inner.body[0]
        ld = st.value
        if not (isinstance(ld, Load) and s.extent == idx(TILE) and inner.extent == idx(TILE)
                and np.dtype(ld.dtype).itemsize == 1 and ld.dtype == self.env[("buf", st.buf)][1]):
            return False
        src = {v: offset_coeff(ld.indices, ld.strides, v) for v in (s.var, inner.var)}
        dst = {v: offset_coeff(st.indices, st.strides, v) for v in (s.var, inner.var)}
        # vectors are read along the source's unit axis and written along the destination's, the other one
        along = next((a for a in src if src[a] == idx(1)), None)
        across = inner.var if along == s.var else s.var
        if along is None or dst[across] != idx(1) or None in dst.values():
            return False
        b = self.builder
        zero = {s.var: idx(0), inner.var: idx(0)}

        def pointers(indices, strides, coeff, buf):
            at0 = tuple(map_expr(i, lambda e: zero.get(e.name, e) if isinstance(e, Var) else e) for i in indices)
            base, step = self.offset(at0, strides), self.expr(coeff)
            ptr = self.env[("buf", buf)][0]
            return [b.gep(ptr, [b.add(base, b.mul(step, ir.Constant(I64T, k)))], inbounds=True, source_etype=I8)
                    for k in range(TILE)]

        vec = ir.VectorType(I8, TILE)
        rows = [b.load(p, typ=vec, align=1) for p in pointers(ld.indices, ld.strides, src[across], ld.buf)]
        half = TILE // 2
        lo, hi = (ir.Constant(ir.VectorType(ir.IntType(32), TILE), [v for k in ks for v in (k, k + TILE)])
                  for ks in (range(half), range(half, TILE)))
        for _ in range(TILE.bit_length() - 1):  # each round: zip row i with row i + TILE/2; log2(TILE) rounds
            rows = [v for i in range(half) for v in (b.shuffle_vector(rows[i], rows[i + half], lo),
                                                     b.shuffle_vector(rows[i], rows[i + half], hi))]
        for v, p in zip(rows, pointers(st.indices, st.strides, dst[along], st.buf)):
            b.store(v, p, align=1)
        self._forget_loads_of(st.buf)
        return True

    def stmt_If(self, s: If):
        b = self.builder
        c = self.expr(s.cond)
        then = b.append_basic_block("then")
        other = b.append_basic_block("else")
        merge = b.append_basic_block("endif")
        b.cbranch(c, then, other)
        for block, body in ((then, s.then), (other, s.other)):
            b.position_at_end(block)
            self.scopes.append({})
            self.stmts(body)
            self.scopes.pop()
            b.branch(merge)
        b.position_at_end(merge)

    def stmt_Store(self, s: Store):
        ptr, dt = self.env[("buf", s.buf)]
        v = self.expr(s.value)
        if np.dtype(dt) == BOOL:
            v = self.builder.zext(v, I8)
        addr = self.builder.gep(ptr, [self.offset(s.indices, s.strides)], inbounds=True, source_etype=mem_type(dt))
        self.builder.store(v, addr, align=np.dtype(dt).itemsize)
        self._forget_loads_of(s.buf)

    def _forget_loads_of(self, buf: str):
        # Values computed from loads of this buffer are stale now (a reduction's finish step re-reads the
        # accumulator it just stored, in the same scope when there are no loops): compute them again.
        for scope in self.scopes:
            for e in [e for e in scope if buf in self._loads(e)]:
                del scope[e]

    def _loads(self, e) -> frozenset:
        """The buffers expression ``e`` reads (memoized: expressions are immutable)."""
        r = self._loads_memo.get(e)
        if r is None:
            r = frozenset().union(*(self._loads(c) for c in children(e)))
            if isinstance(e, Load):
                r |= {e.buf}
            self._loads_memo[e] = r
        return r

    # -- expressions ------------------------------------------------------------------------------------
    def offset(self, indices, strides):
        b = self.builder
        off = ir.Constant(I64T, 0)
        for i, s in zip(indices, strides):
            if isinstance(s, Const) and s.value == 0:
                continue
            term = self.expr(i)
            if not (isinstance(s, Const) and s.value == 1):
                term = b.mul(term, self.expr(s))
            off = term if (isinstance(off, ir.Constant) and off.constant == 0) else b.add(off, term)
        return off

    def expr(self, e):
        if isinstance(e, _Raw):
            return e.value
        for scope in reversed(self.scopes):
            if e in scope:
                return scope[e]
        v = self._expr(e)
        self.scopes[-1][e] = v
        return v

    def _expr(self, e):
        b = self.builder
        if isinstance(e, Const):
            return _const(e.value, e.dtype)
        if isinstance(e, Param):
            return self.env[("param", e.name)]
        if isinstance(e, Var):
            return self.env[("var", e.name)]
        if isinstance(e, Load):
            ptr, dt = self.env[("buf", e.buf)]
            addr = b.gep(ptr, [self.offset(e.indices, e.strides)], inbounds=True, source_etype=mem_type(dt))
            v = b.load(addr, typ=mem_type(dt), align=np.dtype(dt).itemsize)
            if np.dtype(dt) == BOOL:
                v = b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
            return v
        if isinstance(e, Cond):
            return self._cond(e)
        if isinstance(e, Reduce):
            return self._reduce(e)
        if isinstance(e, Prim):
            return self._prim(e)
        raise CompileError(f"cannot render {e!r}")

    def _reduce(self, e: Reduce):
        init = self.expr(e.init)

        def body(acc):
            v = self.expr(e.body)
            return self._prim(Prim(e.op, (_Raw(acc, e.dtype), _Raw(v, e.dtype)), e.dtype))

        return self._counted_loop(e.var, e.extent, body, carried=(reg_type(e.dtype), init))

    def _cond(self, e: Cond):
        b = self.builder
        c = self.expr(e.cond)
        then = b.append_basic_block("cond.then")
        other = b.append_basic_block("cond.else")
        merge = b.append_basic_block("cond.end")
        b.cbranch(c, then, other)
        results = []
        for block, sub in ((then, e.then), (other, e.other)):
            b.position_at_end(block)
            self.scopes.append({})
            v = self.expr(sub)
            self.scopes.pop()
            results.append((v, b.block))
            b.branch(merge)
        b.position_at_end(merge)
        phi = b.phi(reg_type(e.dtype))
        for v, blk in results:
            phi.add_incoming(v, blk)
        return phi

    def _prim(self, e: Prim):
        b = self.builder
        op = e.op
        args = [self.expr(a) for a in e.args]
        if op == "cast":
            return self._cast(args[0], e.args[0].dtype, e.dtype)
        if op == "bitcast":  # same-width reinterpretation (a float parameter passed as its int64 bits)
            return b.bitcast(args[0], reg_type(e.dtype))
        if op == "select":
            return b.select(args[0], args[1], args[2])
        dt = e.args[0].dtype
        ty = reg_type(dt)
        flt = _is_float(dt)
        if op in _ICMP:
            if flt:
                return b.fcmp_unordered("!=", *args) if op == "ne" else b.fcmp_ordered(_ICMP[op], *args)
            cmp = b.icmp_signed if _signed(dt) else b.icmp_unsigned
            return cmp(_ICMP[op], *args)
        if op in ("add", "sub", "mul", "add_reassoc"):
            if flt:
                instr = {"add": b.fadd, "add_reassoc": b.fadd, "sub": b.fsub, "mul": b.fmul}[op](*args)
                if op == "add_reassoc":
                    instr.flags.append("reassoc")
                return instr
            return {"add": b.add, "add_reassoc": b.add, "sub": b.sub, "mul": b.mul}[op](*args)
        if op == "fdiv":
            return b.fdiv(*args)
        if op == "frem":
            return b.frem(*args)
        if op == "idiv":
            return b.sdiv(*args) if _signed(dt) else b.udiv(*args)
        if op == "irem":
            return b.srem(*args) if _signed(dt) else b.urem(*args)
        if op == "neg":
            return b.fneg(args[0]) if flt else b.sub(ir.Constant(ty, 0), args[0])
        if op in ("and", "or", "xor"):
            return {"and": b.and_, "or": b.or_, "xor": b.xor}[op](*args)
        if op == "not":
            return b.xor(args[0], ir.Constant(ty, -1 if ty != I1 else 1))
        if op in ("shl", "shr"):
            if op == "shl":
                return b.shl(*args)
            return b.ashr(*args) if _signed(dt) else b.lshr(*args)
        if op == "fma" and flt:
            return b.call(self.intrinsic(f"llvm.fma.{_suffix(ty)}", ty, [ty, ty, ty]), args)
        if op == "isnan":
            return b.fcmp_unordered("uno", args[0], args[0])
        if flt and op in _FLOAT_INTRINSIC_1:
            return b.call(self.intrinsic(f"{_FLOAT_INTRINSIC_1[op]}.{_suffix(ty)}", ty, [ty]), args)
        if flt and op in _FLOAT_INTRINSIC_2:
            return b.call(self.intrinsic(f"{_FLOAT_INTRINSIC_2[op]}.{_suffix(ty)}", ty, [ty, ty]), args)
        if op in ("min", "max") and not flt:
            name = ("llvm.s" if _signed(dt) else "llvm.u") + op
            return b.call(self.intrinsic(f"{name}.{_suffix(ty)}", ty, [ty, ty]), args)
        if op == "abs" and not flt:
            return b.call(self.intrinsic(f"llvm.abs.{_suffix(ty)}", ty, [ty, I1]), [args[0], ir.Constant(I1, 0)])
        if flt and op in MATH_FUNCTIONS:
            return b.call(self.math_function(op, ty), args)
        raise CompileError(f"primitive {op} on {dt} has no LLVM rendering")

    def _cast(self, v, src, dst):
        b = self.builder
        src, dst = np.dtype(src), np.dtype(dst)
        sty, dty = reg_type(src), reg_type(dst)
        if src == dst:
            return v
        if dst == BOOL:
            return b.fcmp_unordered("!=", v, ir.Constant(sty, 0.0)) if _is_float(src) \
                else b.icmp_unsigned("!=", v, ir.Constant(sty, 0))
        if src == BOOL:
            return b.uitofp(v, dty) if _is_float(dst) else b.zext(v, dty)
        if _is_float(src) and _is_float(dst):
            return b.fpext(v, dty) if dst.itemsize > src.itemsize else b.fptrunc(v, dty)
        if not _is_float(src) and _is_float(dst):
            return b.sitofp(v, dty) if _signed(src) else b.uitofp(v, dty)
        if not _is_float(src):
            if dst.itemsize < src.itemsize:
                return b.trunc(v, dty)
            if dst.itemsize > src.itemsize:
                return b.sext(v, dty) if _signed(src) else b.zext(v, dty)
            return v
        return self._float_to_int(v, sty, dst)

    def _cvtt(self, v, fty, bits):
        """x86 cvtt semantics (what NumPy's C casts compile to): truncate, or INT_MIN when out of range/NaN."""
        b = self.builder
        ity = ir.IntType(bits)
        lo = ir.Constant(fty, -float(2 ** (bits - 1)))
        hi = ir.Constant(fty, float(2 ** (bits - 1)))
        ok = b.and_(b.fcmp_ordered(">=", v, lo), b.fcmp_ordered("<", v, hi))
        return b.select(ok, b.fptosi(v, ity), ir.Constant(ity, -(1 << (bits - 1))))

    def _float_to_int(self, v, fty, dst):
        b = self.builder
        dty = reg_type(dst)
        if dst.itemsize <= 2:  # C converts to int first, then narrows
            return b.trunc(self._cvtt(v, fty, 32), dty)
        if dst == np.int32:
            return self._cvtt(v, fty, 32)
        if dst == np.int64:
            return self._cvtt(v, fty, 64)
        if dst == np.uint32:
            return b.trunc(self._cvtt(v, fty, 64), dty)
        # uint64: values >= 2**63 convert from (v - 2**63) and set the top bit back; NaN takes the first
        # branch (C compilers test "not v >= 2**63"), giving INT64_MIN = 2**63 as NumPy does
        two63 = ir.Constant(fty, float(2 ** 63))
        small = self._cvtt(v, fty, 64)
        big = b.xor(self._cvtt(b.fsub(v, two63), fty, 64), ir.Constant(I64T, -(1 << 63)))
        return b.select(b.fcmp_unordered("<", v, two63), small, big)

    # -- entry point ------------------------------------------------------------------------------------
    def program(self, kernels: list[Kernel], slots: list[str]) -> ir.Module:
        fns = [self.kernel(k) for k in kernels]
        entry = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR]), name=ENTRY)
        entry.attributes.add("nounwind")
        b = ir.IRBuilder(entry.append_basic_block("entry"))
        position = {name: k for k, name in enumerate(slots)}
        loaded: dict = {}

        def slot(name, as_ptr):
            if name not in loaded:
                addr = b.gep(entry.args[0], [ir.Constant(I64T, position[name])], inbounds=True, source_etype=I64T)
                loaded[name] = b.load(addr, typ=I64T, align=8)
            v = loaded[name]
            return b.inttoptr(v, PTR) if as_ptr else v

        for k, fn in zip(kernels, fns):
            args = [slot(buf.name, True) for buf in k.buffers] + [slot(p, False) for p in k.params]
            b.call(fn, args)
        b.ret_void()
        return self.module


_LOOP_ID_TAG = "prepjit.loop."
_LOOP_ID_RE = re.compile(r'^(!\d+) = !\{ *!"' + re.escape(_LOOP_ID_TAG) + r'\d+" *, *', re.M)


def render_program(kernels: list[Kernel], slots: list[str], name: str = "prepjit") -> str:
    text = str(LLVMRenderer(name).program(kernels, slots))
    return _LOOP_ID_RE.sub(lambda m: f"{m.group(1)} = distinct !{{{m.group(1)}, ", text)
