"""Lowering of ``text.bert_tokenize``: the whole BERT tokenizer as one native kernel, built with llvmlite.

One pass over each sample's UTF-8 bytes does cleanup, normalization and pre-tokenization through a per-code-point
table (an ASCII table first, then a two-stage table for the rest; multi-character mappings come from a small
pool), collects each word's normalized bytes in a per-thread buffer, and runs WordPiece on it as soon as the word
ends: LinMaxMatch (failure links and failure pops precomputed per trie node, so linear in the word) with the
same output as HF's greedy longest-match-first, walking a byte trie (ASCII children of shallow nodes in a dense
table, the rest in an open-addressing hash table, terminal ids per node). Tokens are written straight into the output row; special tokens written in the raw text
(``hello[MASK]world``) are matched before normalization, as HF's added vocabulary does; the post-processor
([CLS] A [SEP] B [SEP]), truncation (HF's ``longest_first`` split of the budget, ``only_first``/``only_second``)
and padding/masks/type ids are applied per row. Rows are independent, so ``.batch`` splits them over threads.

The kernel takes its inputs as an int64 argument array (like ``prepjit_entry``); every table is an argument,
so one compiled object (per id dtype) serves every vocabulary and is stored in the disk cache. Bounds: every read
is inside ``[offset[i], offset[i+1])`` of validated UTF-8 (decoding clamps at the end anyway), the word buffer
takes at most ``max_input_chars_per_word`` characters of at most 4 bytes, and every token write is guarded by
the row capacity (a row that needs more is reported in ``status``, never written past). The word buffer is
``6 * max_chars + 8`` bytes: the word, then per mark of the current run its combining class and byte length.

The per-row state machine needs data-dependent loops (``while``) that the loop IR does not have yet, which is why
this op lowers to its own llvmlite function rather than to loop-IR statements.
"""
from __future__ import annotations

import contextlib
import functools

from llvmlite import ir

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
P8, P16, P32, P64 = I8.as_pointer(), I16.as_pointer(), I32.as_pointer(), I64.as_pointer()

# ctx: per-tokenizer table pointers and scalars (built once by prepjit.kernels.text)
CTX = ["stage1", "stage2", "pool", "asc", "spec_first", "spec_data", "spec_off", "spec_ids", "nspec",
       "htab", "hmask", "hshift", "term", "fail", "foff", "fpool", "achild", "ndense", "unk_id", "max_chars"]
# args: per call
ARGS = ["ctx", "data_a", "off_a", "data_b", "off_b", "row_begin", "row_end", "ids", "types", "mask", "out_off",
        "row_cap", "lens", "status", "wbuf", "scratch", "pair", "add_special", "trunc", "budget", "pad_to", "cls_id",
        "sep_id", "pad_id", "pad_type_id"]
TRUNC = {False: 0, None: 0, True: 1, "longest_first": 1, "only_first": 2, "only_second": 3}
STATUS_OK, STATUS_TOO_LONG, STATUS_TRUNC = 0, 1, 2
HASH_MUL = 0x9E3779B97F4A7C15
SYMBOL = "prepjit_text_bert"
KERNEL_VERSION = "5"


def c64(v):
    return ir.Constant(I64, v)


class _Fn:
    """A small structured-code helper over IRBuilder: variables (allocas promoted by mem2reg), while loops."""

    def __init__(self, module, name, ret, args, linkage="internal"):
        self.fn = ir.Function(module, ir.FunctionType(ret, [a[1] for a in args]), name)
        if linkage:
            self.fn.linkage = linkage
        self.args = {}
        for (n, _), a in zip(args, self.fn.args):
            a.name = n
            self.args[n] = a
        self.entry = self.fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)

    def var(self, ty, init, name=""):
        with self.b.goto_block(self.entry):
            if self.entry.instructions:
                self.b.position_before(self.entry.instructions[0])
            p = self.b.alloca(ty, name=name)
        self.b.store(init if isinstance(init, ir.Value) else ir.Constant(ty, init), p)
        return p

    def get(self, p):
        return self.b.load(p)

    def set(self, p, v):
        self.b.store(v if isinstance(v, ir.Value) else ir.Constant(p.type.pointee, v), p)

    @contextlib.contextmanager
    def while_(self, cond_fn):
        b = self.b
        head = self.fn.append_basic_block("while.head")
        body = self.fn.append_basic_block("while.body")
        done = self.fn.append_basic_block("while.end")
        b.branch(head)
        b.position_at_end(head)
        b.cbranch(cond_fn(), body, done)
        b.position_at_end(body)
        yield
        if not b.block.is_terminated:
            b.branch(head)
        b.position_at_end(done)

    def for_(self, lo, hi):
        i = self.var(I64, lo if isinstance(lo, ir.Value) else c64(lo))

        @contextlib.contextmanager
        def ctx():
            with self.while_(lambda: self.b.icmp_signed("<", self.get(i), hi)):
                iv = self.get(i)
                yield iv
                self.set(i, self.b.add(iv, c64(1)))
        return ctx()

    def load_at(self, base, idx):
        return self.b.load(self.b.gep(base, [idx]))

    def store_at(self, base, idx, v):
        self.b.store(v, self.b.gep(base, [idx]))


def _unpack(f: _Fn, arr, names, types):
    """Load named fields of an int64 array, converting pointers."""
    out = {}
    for k, n in enumerate(names):
        v = f.b.load(f.b.gep(arr, [c64(k)]), name=n)
        ty = types.get(n)
        out[n] = f.b.inttoptr(v, ty) if ty is not None else v
    return out


def build_module(id_bits: int) -> str:
    """LLVM IR of the tokenizer kernel writing ids/type ids/masks as int{id_bits}."""
    IDT = ir.IntType(id_bits)
    PID = IDT.as_pointer()
    m = ir.Module(name="prepjit_text")
    ctx_types = {"stage1": P32, "stage2": P32, "pool": P8, "asc": P16, "spec_first": P8, "spec_data": P8,
                 "spec_off": P64, "spec_ids": P64, "htab": P64, "term": P32, "fail": P32, "foff": P32,
                 "fpool": P32, "achild": P32}

    # ---- wordpiece(ctx, w, wlen, out, count, cap) -> count ---------------------------------------------------
    f = _Fn(m, "wordpiece", I64, [("ctx", P64), ("w", P8), ("wlen", I64), ("out", PID), ("count", I64),
                                  ("cap", I64)])
    f.fn.attributes.add("noinline")
    b = f.b
    A = f.args
    c = _unpack(f, A["ctx"], CTX, ctx_types)
    cnt = f.var(I64, A["count"], "cnt")

    def emit(fn, cntp, out, cap, tok):
        bb = fn.b
        n = fn.get(cntp)
        with bb.if_then(bb.icmp_signed("<", n, cap)):
            fn.store_at(out, n, bb.trunc(tok, IDT) if id_bits < 64 else tok)
        fn.set(cntp, bb.add(n, c64(1)))

    # LinMaxMatch: one walk down the trie; where no child matches, emit the node's failure pops and follow its
    # failure link (never moving back in the word), so the work is linear in the word's length.
    i = f.var(I64, c64(0), "i")
    u = f.var(I64, c64(0), "u")
    nxt = f.var(I64, c64(-1), "nxt")
    h = f.var(I64, c64(0), "h")
    fail = f.var(I1, ir.Constant(I1, 0), "fail")
    searching = f.var(I1, ir.Constant(I1, 1), "searching")

    def follow_failure():
        """Emit F(u) and go to f(u); f(u) == -1 means the word is [UNK]."""
        uv = f.get(u)
        fu = b.sext(f.load_at(c["fail"], uv), I64)
        with b.if_else(b.icmp_signed("<", fu, c64(0))) as (none, some):
            with none:
                f.set(fail, ir.Constant(I1, 1))
            with some:
                lo = b.sext(f.load_at(c["foff"], uv), I64)
                hi = b.sext(f.load_at(c["foff"], b.add(uv, c64(1))), I64)
                with f.for_(lo, hi) as k:
                    emit(f, cnt, A["out"], A["cap"], b.sext(f.load_at(c["fpool"], k), I64))
                f.set(u, fu)

    with f.while_(lambda: b.and_(b.icmp_signed("<", f.get(i), A["wlen"]), b.not_(f.get(fail)))):
        byte = b.zext(f.load_at(A["w"], f.get(i)), I64)
        uv = f.get(u)
        dense = b.and_(b.icmp_unsigned("<", byte, c64(128)), b.icmp_signed("<", uv, c["ndense"]))
        with b.if_else(dense, likely=True) as (fast, slow):
            with fast:  # the ASCII fast path: a dense child table for shallow nodes
                f.set(nxt, b.sext(f.load_at(c["achild"], b.add(b.mul(uv, c64(128)), byte)), I64))
            with slow:
                key = b.add(b.mul(uv, c64(256)), byte)
                f.set(h, b.lshr(b.mul(key, c64(HASH_MUL)), c["hshift"]))
                f.set(searching, ir.Constant(I1, 1))
                with f.while_(lambda: f.get(searching)):  # entries: key << 24 | child (one load per probe)
                    hv = f.get(h)
                    ent = f.load_at(c["htab"], hv)
                    k = b.ashr(ent, c64(24))
                    with b.if_else(b.icmp_signed("==", k, key)) as (hit, miss):
                        with hit:
                            f.set(nxt, b.and_(ent, c64(0xFFFFFF)))
                            f.set(searching, ir.Constant(I1, 0))
                        with miss:
                            with b.if_else(b.icmp_signed("<", k, c64(0))) as (empty, other):
                                with empty:
                                    f.set(nxt, c64(-1))
                                    f.set(searching, ir.Constant(I1, 0))
                                with other:
                                    f.set(h, b.and_(b.add(hv, c64(1)), c["hmask"]))
        nv = f.get(nxt)
        with b.if_else(b.icmp_signed(">=", nv, c64(0)), likely=True) as (step, back):
            with step:
                f.set(u, nv)
                f.set(i, b.add(f.get(i), c64(1)))
            with back:
                follow_failure()
    # the word ended: pop until the continuation root (everything matched is emitted)
    with f.while_(lambda: b.and_(b.icmp_signed("!=", f.get(u), c64(1)), b.not_(f.get(fail)))):
        follow_failure()
    with b.if_then(f.get(fail)):
        f.set(cnt, A["count"])
        emit(f, cnt, A["out"], A["cap"], c["unk_id"])
    b.ret(f.get(cnt))
    wordpiece = f.fn

    # ---- tokenize(ctx, data, pos, end, out, cap, stop, wbuf) -> count ------------------------------------------
    f = _Fn(m, "tokenize", I64, [("ctx", P64), ("data", P8), ("pos", I64), ("end", I64), ("out", PID),
                                 ("cap", I64), ("stop", I64), ("wbuf", P8)])
    b = f.b
    A = f.args
    c = _unpack(f, A["ctx"], CTX, ctx_types)
    pos = f.var(I64, A["pos"], "pos")
    cnt = f.var(I64, c64(0), "cnt")
    wlen = f.var(I64, c64(0), "wlen")
    wchars = f.var(I64, c64(0), "wchars")
    rn = f.var(I64, c64(0), "rn")  # marks in the current run (NFD reordering), at the end of the word buffer
    data, end, out, cap = A["data"], A["end"], A["out"], A["cap"]
    # per run mark: combining class and byte length, after the word bytes in the same per-thread buffer
    rcc = b.gep(A["wbuf"], [b.add(b.mul(c["max_chars"], c64(4)), c64(8))])
    rlb = b.gep(rcc, [c["max_chars"]])

    def flush():
        wc = f.get(wchars)
        with b.if_then(b.icmp_signed(">", wc, c64(0))):
            with b.if_else(b.icmp_signed(">", wc, c["max_chars"])) as (toolong, ok):
                with toolong:
                    emit(f, cnt, out, cap, c["unk_id"])
                with ok:
                    f.set(cnt, b.call(wordpiece, [A["ctx"], A["wbuf"], f.get(wlen), out, f.get(cnt), cap]))
            f.set(wlen, c64(0))
            f.set(wchars, c64(0))
        f.set(rn, c64(0))

    def append(src, nb):
        wc = b.add(f.get(wchars), c64(1))
        f.set(wchars, wc)
        f.set(rn, c64(0))  # a starter ends the run of marks
        with b.if_then(b.icmp_signed("<=", wc, c["max_chars"])):
            wl = f.get(wlen)
            with f.for_(0, nb) as j:
                f.store_at(A["wbuf"], b.add(wl, j), f.load_at(src, j))
            f.set(wlen, b.add(wl, nb))

    jv = f.var(I64, c64(0), "j")
    offv = f.var(I64, c64(0), "off")

    def append_mark(src, nb, cc):
        """NFD's canonical ordering: insert the mark after the run's marks of class <= cc (stable)."""
        wc = b.add(f.get(wchars), c64(1))
        f.set(wchars, wc)
        with b.if_then(b.icmp_signed("<=", wc, c["max_chars"])):
            wl = f.get(wlen)
            n = f.get(rn)
            f.set(jv, n)
            f.set(offv, wl)
            with f.while_(lambda: b.and_(b.icmp_signed(">", f.get(jv), c64(0)), b.icmp_unsigned(
                    ">", b.zext(f.load_at(rcc, b.sub(f.get(jv), c64(1))), I64), cc))):
                jn = b.sub(f.get(jv), c64(1))
                f.set(jv, jn)
                f.set(offv, b.sub(f.get(offv), b.zext(f.load_at(rlb, jn), I64)))
            j, off = f.get(jv), f.get(offv)
            with f.for_(0, b.sub(wl, off)) as t:  # bytes [off, wl) move up by nb, from the end
                src_i = b.sub(b.sub(wl, c64(1)), t)
                f.store_at(A["wbuf"], b.add(src_i, nb), f.load_at(A["wbuf"], src_i))
            with f.for_(0, b.sub(n, j)) as t:
                src_i = b.sub(b.sub(n, c64(1)), t)
                f.store_at(rcc, b.add(src_i, c64(1)), f.load_at(rcc, src_i))
                f.store_at(rlb, b.add(src_i, c64(1)), f.load_at(rlb, src_i))
            with f.for_(0, nb) as t:
                f.store_at(A["wbuf"], b.add(off, t), f.load_at(src, t))
            f.store_at(rcc, j, b.trunc(cc, I8))
            f.store_at(rlb, j, b.trunc(nb, I8))
            f.set(rn, b.add(n, c64(1)))
            f.set(wlen, b.add(wl, nb))

    def append1(byte):
        wc = b.add(f.get(wchars), c64(1))
        f.set(wchars, wc)
        f.set(rn, c64(0))
        with b.if_then(b.icmp_signed("<=", wc, c["max_chars"])):
            wl = f.get(wlen)
            f.store_at(A["wbuf"], wl, byte)
            f.set(wlen, b.add(wl, c64(1)))

    def handle(kind, do_append, do_mark=None):
        """kind 0: word char, 1: removed, 2: whitespace, 3: isolated (punctuation, CJK), 5: surviving mark,
        6: removed, ends a run of marks."""
        after = f.fn.append_basic_block("k.after")
        sw = b.switch(kind, after)
        blocks = {}
        if do_mark is not None:
            for k, body in ((5, do_mark), (6, lambda: f.set(rn, c64(0)))):
                blocks[k] = f.fn.append_basic_block(f"k{k}")
                sw.add_case(ir.Constant(kind.type, k), blocks[k])
                b.position_at_end(blocks[k])
                body()
                b.branch(after)
        for k in (0, 2, 3):
            blocks[k] = f.fn.append_basic_block(f"k{k}")
            sw.add_case(ir.Constant(kind.type, k), blocks[k])
        b.position_at_end(blocks[0])
        do_append()
        b.branch(after)
        b.position_at_end(blocks[2])
        flush()
        b.branch(after)
        b.position_at_end(blocks[3])
        flush()
        do_append()
        flush()
        b.branch(after)
        b.position_at_end(after)

    matched = f.var(I1, ir.Constant(I1, 0), "matched")
    blen = f.var(I64, c64(0), "blen")
    bid = f.var(I64, c64(0), "bid")
    eq = f.var(I1, ir.Constant(I1, 1), "eq")
    cpv = f.var(I64, c64(0), "cp")
    q = f.var(I64, c64(0), "q")
    with f.while_(lambda: b.and_(b.icmp_signed("<", f.get(pos), end),
                                 b.icmp_signed("<", f.get(cnt), A["stop"]))):
        pv = f.get(pos)
        byte = f.load_at(data, pv)
        bz = b.zext(byte, I64)
        f.set(matched, ir.Constant(I1, 0))
        # special tokens written in the raw text: leftmost (we scan left to right), longest among those here
        with b.if_then(b.icmp_unsigned("!=", f.load_at(c["spec_first"], bz), ir.Constant(I8, 0)), likely=False):
            f.set(blen, c64(0))
            with f.for_(0, c["nspec"]) as k:
                so = f.load_at(c["spec_off"], k)
                L = b.sub(f.load_at(c["spec_off"], b.add(k, c64(1))), so)
                fits = b.and_(b.icmp_signed(">", L, f.get(blen)), b.icmp_signed("<=", b.add(pv, L), end))
                with b.if_then(fits):
                    f.set(eq, ir.Constant(I1, 1))
                    with f.for_(0, L) as j:
                        same = b.icmp_unsigned("==", f.load_at(data, b.add(pv, j)),
                                               f.load_at(c["spec_data"], b.add(so, j)))
                        f.set(eq, b.and_(f.get(eq), same))
                    with b.if_then(f.get(eq)):
                        f.set(blen, L)
                        f.set(bid, f.load_at(c["spec_ids"], k))
            with b.if_then(b.icmp_signed(">", f.get(blen), c64(0))):
                flush()
                emit(f, cnt, out, cap, f.get(bid))
                f.set(pos, b.add(pv, f.get(blen)))
                f.set(matched, ir.Constant(I1, 1))
        with b.if_then(b.not_(f.get(matched))):
            with b.if_else(b.icmp_unsigned("<", byte, ir.Constant(I8, 0x80)), likely=True) as (ascii_, multi):
                with ascii_:
                    e = f.load_at(c["asc"], bz)
                    handle(b.lshr(e, ir.Constant(I16, 8)), lambda: append1(b.trunc(e, I8)))
                    f.set(pos, b.add(pv, c64(1)))
                with multi:
                    n = b.select(b.icmp_unsigned(">=", bz, c64(0xF0)), c64(4),
                                 b.select(b.icmp_unsigned(">=", bz, c64(0xE0)), c64(3),
                                          b.select(b.icmp_unsigned(">=", bz, c64(0xC0)), c64(2), c64(1))))
                    rem = b.sub(end, pv)
                    n = b.select(b.icmp_signed("<", rem, n), rem, n)  # never past the sample's end
                    lead_mask = b.select(b.icmp_unsigned(">=", bz, c64(0xF0)), c64(7),
                                         b.select(b.icmp_unsigned(">=", bz, c64(0xE0)), c64(15), c64(31)))
                    f.set(cpv, b.and_(bz, lead_mask))
                    with f.for_(1, n) as j:
                        cb = b.zext(f.load_at(data, b.add(pv, j)), I64)
                        f.set(cpv, b.or_(b.shl(f.get(cpv), c64(6)), b.and_(cb, c64(63))))
                    cp = f.get(cpv)
                    cp = b.select(b.icmp_unsigned(">", cp, c64(0x10FFFF)), c64(0xFFFD), cp)
                    blk = b.zext(f.load_at(c["stage1"], b.lshr(cp, c64(8))), I64)
                    e = b.zext(f.load_at(c["stage2"], b.add(b.shl(blk, c64(8)), b.and_(cp, c64(255)))), I64)
                    kind = b.and_(e, c64(7))
                    src = b.gep(data, [pv])
                    with b.if_else(b.icmp_unsigned("!=", kind, c64(4)), likely=True) as (simple, pooled):
                        with simple:
                            handle(kind, lambda: append(src, n), lambda: append_mark(src, n, b.lshr(e, c64(3))))
                        with pooled:  # several output characters: [count] then per char [class, nbytes, ccc, bytes]
                            off = b.lshr(e, c64(3))
                            items = b.zext(f.load_at(c["pool"], off), I64)
                            f.set(q, b.add(off, c64(1)))
                            with f.for_(0, items):
                                qv = f.get(q)
                                cls = b.zext(f.load_at(c["pool"], qv), I64)
                                nb = b.zext(f.load_at(c["pool"], b.add(qv, c64(1))), I64)
                                cc = b.zext(f.load_at(c["pool"], b.add(qv, c64(2))), I64)
                                isrc = b.gep(c["pool"], [b.add(qv, c64(3))])
                                cls = b.select(b.icmp_unsigned(">", cc, c64(0)), c64(5), cls)
                                handle(cls, lambda: append(isrc, nb), lambda: append_mark(isrc, nb, cc))
                                f.set(q, b.add(qv, b.add(nb, c64(3))))
                    f.set(pos, b.add(pv, n))
    flush()
    b.ret(f.get(cnt))
    tokenize = f.fn

    # ---- entry(args): rows [row_begin, row_end) ---------------------------------------------------------------
    f = _Fn(m, SYMBOL, ir.VoidType(), [("args", P64)], linkage=None)
    b = f.b
    arg_types = {"ctx": P64, "data_a": P8, "off_a": P64, "data_b": P8, "off_b": P64, "ids": PID, "types": PID,
                 "mask": PID, "out_off": P64, "row_cap": P64, "lens": P64, "status": P64, "wbuf": P8,
                 "scratch": PID}
    a = _unpack(f, f.args["args"], ARGS, arg_types)
    big = c64((1 << 62))
    addsp = b.icmp_signed("!=", a["add_special"], c64(0))
    pair = b.icmp_signed("!=", a["pair"], c64(0))
    trunc = a["trunc"]
    truncating = b.icmp_signed("!=", trunc, c64(0))
    o = b.select(addsp, c64(1), c64(0))
    nsp = b.select(addsp, b.select(pair, c64(3), c64(2)), c64(0))
    M = a["budget"]
    n1v = f.var(I64, c64(0), "n1")
    n2v = f.var(I64, c64(0), "n2")
    st = f.var(I64, c64(0), "st")
    one = ir.Constant(IDT, 1)
    zero = ir.Constant(IDT, 0)

    def idt(v):
        return b.trunc(v, IDT) if id_bits < 64 else v

    with f.for_(a["row_begin"], a["row_end"]) as i:
        base = f.load_at(a["out_off"], i)
        W = f.load_at(a["row_cap"], i)
        row = b.gep(a["ids"], [base])
        body = b.gep(row, [o])
        sa = f.load_at(a["off_a"], i)
        ea = f.load_at(a["off_a"], b.add(i, c64(1)))
        f.set(st, c64(STATUS_OK))
        free = b.sub(W, nsp)
        with b.if_else(b.not_(pair)) as (single, paired):
            with single:
                capa = b.select(truncating, M, free)
                n = b.call(tokenize, [a["ctx"], a["data_a"], sa, ea, body, capa, b.select(truncating, M, big),
                                      a["wbuf"]])
                with b.if_then(b.and_(b.not_(truncating), b.icmp_signed(">", n, capa))):  # row too short
                    f.set(st, c64(STATUS_TOO_LONG))
                f.set(n1v, b.select(b.icmp_signed("<", n, capa), n, capa))
                f.set(n2v, c64(0))
            with paired:
                sb = f.load_at(a["off_b"], i)
                eb = f.load_at(a["off_b"], b.add(i, c64(1)))
                with b.if_else(truncating) as (tr, notr):
                    with tr:
                        na = b.call(tokenize, [a["ctx"], a["data_a"], sa, ea, body, M, big, a["wbuf"]])
                        nb_ = b.call(tokenize, [a["ctx"], a["data_b"], sb, eb, a["scratch"], M, big, a["wbuf"]])
                        # HF tokenizers' truncate_encodings, with max_length = budget (specials removed)
                        total = b.add(na, nb_)
                        f.set(n1v, na)
                        f.set(n2v, nb_)
                        with b.if_then(b.icmp_signed("<=", M, c64(0))):
                            f.set(n1v, c64(0))
                            f.set(n2v, c64(0))
                        need = b.and_(b.icmp_signed(">", M, c64(0)), b.icmp_signed(">", total, M))
                        with b.if_then(need):
                            rm = b.sub(total, M)
                            with b.if_else(b.icmp_signed("==", trunc, c64(1))) as (lf, only):
                                with lf:
                                    swap = b.icmp_signed(">", na, nb_)
                                    s1 = b.select(swap, nb_, na)
                                    s2 = b.select(swap, na, nb_)
                                    m_s1 = b.sub(M, s1)
                                    t2 = b.select(b.icmp_signed(">", s1, M), s1,
                                                  b.select(b.icmp_signed(">", s1, m_s1), s1, m_s1))
                                    t1 = s1
                                    half = b.sdiv(M, c64(2))
                                    over = b.icmp_signed(">", b.add(t1, t2), M)
                                    t1b = b.select(over, half, t1)
                                    t2b = b.select(over, b.add(half, b.srem(M, c64(2))), t2)
                                    k1 = b.select(swap, t2b, t1b)
                                    k2 = b.select(swap, t1b, t2b)
                                    f.set(n1v, b.select(b.icmp_signed("<", k1, na), k1, na))
                                    f.set(n2v, b.select(b.icmp_signed("<", k2, nb_), k2, nb_))
                                    del s2
                                with only:
                                    first = b.icmp_signed("==", trunc, c64(2))
                                    tl = b.select(first, na, nb_)
                                    with b.if_else(b.icmp_signed(">", tl, rm)) as (can, cannot):
                                        with can:
                                            with b.if_else(first) as (tf, ts):
                                                with tf:
                                                    f.set(n1v, b.sub(na, rm))
                                                with ts:
                                                    f.set(n2v, b.sub(nb_, rm))
                                        with cannot:
                                            f.set(st, c64(STATUS_TRUNC))
                        # B's kept tokens follow A's kept tokens and its [SEP] (only what was stored: <= M each)
                        k1 = f.get(n1v)
                        k2 = f.get(n2v)
                        f.set(n1v, b.select(b.icmp_signed("<", k1, M), k1, M))
                        f.set(n2v, b.select(b.icmp_signed("<", k2, M), k2, M))
                        with b.if_then(b.icmp_signed("==", f.get(st), c64(STATUS_OK))):
                            dst = b.gep(body, [b.add(f.get(n1v), o)])
                            with f.for_(0, f.get(n2v)) as j:
                                f.store_at(dst, j, f.load_at(a["scratch"], j))
                    with notr:
                        na = b.call(tokenize, [a["ctx"], a["data_a"], sa, ea, body, free, big, a["wbuf"]])
                        rest = b.sub(free, b.select(b.icmp_signed("<", na, free), na, free))
                        dst = b.gep(body, [b.add(b.select(b.icmp_signed("<", na, free), na, free), o)])
                        nb_ = b.call(tokenize, [a["ctx"], a["data_b"], sb, eb, dst, rest, big, a["wbuf"]])
                        with b.if_then(b.icmp_signed(">", b.add(na, nb_), free)):
                            f.set(st, c64(STATUS_TOO_LONG))
                        f.set(n1v, na)
                        f.set(n2v, nb_)
        with b.if_then(b.icmp_signed(">", b.add(b.add(f.get(n1v), f.get(n2v)), nsp), W)):  # never past the row
            with b.if_then(b.icmp_signed("==", f.get(st), c64(STATUS_OK))):
                f.set(st, c64(STATUS_TOO_LONG))
        stv = f.get(st)
        f.store_at(a["status"], i, stv)
        with b.if_then(b.icmp_signed("==", stv, c64(STATUS_OK))):
            n1 = f.get(n1v)
            n2 = f.get(n2v)
            total = b.add(b.add(n1, n2), nsp)
            f.store_at(a["lens"], i, total)
            first_len = b.add(n1, b.select(addsp, c64(2), c64(0)))  # [CLS] A [SEP]: type 0
            with b.if_then(addsp):
                f.store_at(row, c64(0), idt(a["cls_id"]))
                f.store_at(row, b.add(n1, c64(1)), idt(a["sep_id"]))
                with b.if_then(pair):
                    f.store_at(row, b.sub(total, c64(1)), idt(a["sep_id"]))
            trow = b.gep(a["types"], [base])
            mrow = b.gep(a["mask"], [base])
            with f.for_(0, total) as j:
                f.store_at(trow, j, b.select(b.icmp_signed("<", j, first_len), zero, one))
                f.store_at(mrow, j, one)
            pad_to = b.select(b.icmp_signed("<", a["pad_to"], W), a["pad_to"], W)
            with f.for_(total, pad_to) as j:
                f.store_at(row, j, idt(a["pad_id"]))
                f.store_at(trow, j, idt(a["pad_type_id"]))
                f.store_at(mrow, j, zero)
    b.ret_void()
    return str(m)


@functools.lru_cache(maxsize=None)
def kernel_key(id_bits: int) -> str:
    from prepjit.runtime import native

    with open(__file__, "rb") as fh:
        src = fh.read().decode()
    return native.fixed_kernel_key(f"text.bert_tokenize int{id_bits}", KERNEL_VERSION, src)


_loaded: dict = {}


def load_kernel(id_bits: int):
    """The compiled kernel for int{id_bits} outputs: from this process, the disk cache, or compiled now."""
    k = _loaded.get(id_bits)
    if k is not None:
        return k
    from prepjit.runtime import native

    k = native.load_fixed_kernel(kernel_key(id_bits), lambda: build_module(id_bits), SYMBOL,
                                 {"function": "prepjit.text.BertTokenizer", "target": "cpu",
                                  "specialization": [f"int{id_bits} ids"]})
    _loaded[id_bits] = k
    return k
