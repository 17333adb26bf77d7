"""BERT tokenizer semantics as tables for the native kernel (``prepjit.lowering.text_kernel``).

Per-code-point behaviour comes from ``prepjit/data/bert_codepoints.npz``, generated from HF ``tokenizers`` by
``scripts/gen_text_tables.py`` (each normalizer step alone, over every code point). A configuration
(clean_text, handle_chinese_chars, strip_accents, lowercase) composes those per-character steps in HF's order
(clean → CJK padding → NFD + drop nonspacing marks → lowercase), then classifies every output character with
BertPreTokenizer's classes (whitespace splits, punctuation is isolated). The result is one entry per code point:

    kind 0  word character, output = the input bytes            kind 2  whitespace (ends the word)
    kind 1  removed                                               kind 3  isolated character (punctuation, CJK)
    kind 4  several output characters: ``pool[entry >> 3]`` = count, then per character
            [class, nbytes, combining class, bytes]
    kind 5  a mark that survives accent stripping, output = the input bytes, combining class ``entry >> 3``
    kind 6  removed by accent stripping, and its decomposition holds a starter (ends a run of marks)

NFD's canonical reordering (HF strips accents after a full NFD): marks with a nonzero combining class that are
not nonspacing survive the stripping, and the kernel inserts each one into the run of marks before it (stable, by
combining class); characters removed by cleanup, and nonspacing marks without a starter, are transparent to runs.

stored as a two-stage table (256-code-point blocks, identical blocks shared) plus an ASCII table
(``kind << 8 | output byte``). Vocabulary: a byte trie with LinMaxMatch failure links and failure pops (see
``vocab_trie``), ASCII children of shallow nodes in a dense table and the rest in an open-addressing hash table.
"""
from __future__ import annotations

import functools
import pathlib

import numpy as np

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "bert_codepoints.npz"
NCP = 0x110000
WORD, REMOVED, SPACE, ISOLATED, POOLED, MARK, BREAK = 0, 1, 2, 3, 4, 5, 6


@functools.lru_cache(maxsize=None)
def _data() -> dict:
    with np.load(DATA) as z:
        return {k: z[k] for k in z.files}


def _in_ranges(r: np.ndarray) -> np.ndarray:
    m = np.zeros(NCP + 1, np.int32)
    np.add.at(m, r[:, 0], 1)
    np.add.at(m, r[:, 1] + 1, -1)
    return np.cumsum(m[:NCP]) > 0


def _string_map(prefix: str) -> dict:
    d = _data()
    cps, off, pool = d[f"{prefix}_cp"], d[f"{prefix}_off"], d[f"{prefix}_pool"]
    return {int(c): "".join(map(chr, pool[off[i]:off[i + 1]])) for i, c in enumerate(cps)}


@functools.lru_cache(maxsize=None)
def codepoint_tables(clean_text: bool, handle_chinese_chars: bool, strip_accents: bool, lowercase: bool):
    """(stage1 int32[0x1100], stage2 int32[blocks*256], pool uint8, asc uint16[128]) for one normalizer config."""
    d = _data()
    ws = _in_ranges(d["ws"])
    punct = _in_ranges(d["punct"])
    kind = np.zeros(NCP, np.int64)
    kind[punct] = ISOLATED
    kind[ws] = SPACE
    removed = _in_ranges(d["clean_removed"]) if clean_text else np.zeros(NCP, bool)
    spaced = np.zeros(NCP, bool)
    if clean_text:
        spaced[d["clean_space"]] = True
    cjk = _in_ranges(d["cjk"]) if handle_chinese_chars else np.zeros(NCP, bool)
    kind[cjk] = ISOLATED
    kind[spaced] = SPACE
    kind[removed] = REMOVED
    strip = _string_map("strip") if strip_accents else {}
    lower = _string_map("lower") if lowercase else {}

    def cls(ch: str) -> int:
        c = ord(ch)
        return SPACE if ws[c] else ISOLATED if punct[c] else WORD

    ccc = dict(zip(d["ccc_cp"].tolist(), d["ccc"].tolist())) if strip_accents else {}
    for c, k in ccc.items():  # marks that survive stripping: reordered by combining class as NFD does
        assert kind[c] in (WORD, REMOVED) and c not in lower
        if kind[c] == WORD:
            kind[c] = (k << 3) | MARK
    special = {}
    for c in sorted(set(strip) | set(lower)):
        if removed[c] or spaced[c]:
            continue
        chars = strip.get(c, chr(c))
        chars = "".join(lower.get(ord(x), x) for x in chars)
        items = [(cls(x), x) for x in chars]
        if cjk[c]:  # " c " around the (normalized) character
            items = [(SPACE, " ")] + items + [(SPACE, " ")]
        special[c] = items
    starters = set(d["strip_starter"].tolist()) if strip_accents else set()
    pool = bytearray()
    entry = kind.astype(np.int64)
    for c, items in special.items():
        if len(items) == 1 and items[0][1] == chr(c):
            entry[c] = items[0][0]
        elif not items:  # stripped to nothing: ends a run of marks if its decomposition holds a starter
            entry[c] = BREAK if c in starters else REMOVED
        elif all(k == SPACE for k, _ in items):
            entry[c] = SPACE
        else:
            off = len(pool)
            pool.append(len(items))
            for k, x in items:
                bs = x.encode("utf-8")
                pool += bytes([k, len(bs), ccc.get(ord(x), 0) if k == WORD else 0]) + bs
            entry[c] = (off << 3) | POOLED
    blocks = entry.reshape(NCP // 256, 256)
    uniq, stage1 = np.unique(blocks, axis=0, return_inverse=True)
    stage2 = uniq.reshape(-1).astype(np.int32)
    asc = np.zeros(128, np.uint16)
    for c in range(128):
        e = int(entry[c])
        if e & 7 == POOLED:
            items = special[c]
            assert len(items) == 1 and len(items[0][1]) == 1
            k, x = items[0]
        else:
            k, x = e, chr(c)
        asc[c] = (k << 8) | ord(x)
    return stage1.reshape(-1).astype(np.int32), stage2, np.frombuffer(bytes(pool) or b"\0", np.uint8).copy(), asc


DENSE_NODES = 2048  # trie nodes (in breadth-first order) with a dense child table for ASCII bytes: 1 MB


def vocab_trie(vocab: dict, prefix: str) -> dict:
    """The vocabulary as a byte trie with LinMaxMatch failure links (Song et al., "Fast WordPiece Tokenization",
    EMNLP 2021), so WordPiece runs in time linear in the word instead of greedy longest-match's quadratic rescans.

    Two roots: node 0 spells every token from the start of a word (any vocabulary entry, "##ab" included, as HF
    looks the raw word up), node 1 (the continuation root) spells ``s`` for every entry ``prefix + s``. Nodes are
    numbered breadth-first. Arrays:

    - ``term[u]``: the id of the token node ``u`` spells, or -1;
    - ``fail[u]`` / failure pops ``fpool[foff[u]:foff[u+1]]``: when no child of ``u`` matches the next byte (or the
      word ends), greedy longest-match-first would emit exactly the pops and continue at node ``fail[u]`` (which
      spells the rest of the word matched so far, as a continuation); ``fail[u] == -1``: the word is [UNK];
    - children: ``achild[u * 128 + byte]`` for ASCII bytes of the first ``DENSE_NODES`` nodes (the ASCII fast
      path), else an open-addressing hash table of power-of-two size, one int64 ``key << 24 | child`` per slot
      (key = node * 256 + byte; -1: empty), probed linearly from ``(key * HASH_MUL mod 2**64) >> hshift``.
    """
    from prepjit.lowering.text_kernel import HASH_MUL

    kids: list = [{}, {}]  # node -> {byte: child}, insertion numbering
    term = [-1, -1]

    def insert(root: int, text: str, tid: int):
        node = root
        for byte in text.encode("utf-8"):
            nxt = kids[node].get(byte)
            if nxt is None:
                nxt = kids[node][byte] = len(term)
                kids.append({})
                term.append(-1)
            node = nxt
        if node != root:
            term[node] = tid

    for tok, tid in vocab.items():
        insert(0, tok, tid)
        if tok.startswith(prefix) and len(tok) > len(prefix):
            insert(1, tok[len(prefix):], tid)
    n = len(term)
    if n >= 1 << 24:
        raise ValueError(f"vocabulary trie too large ({n} nodes)")
    order = [0, 1]  # breadth-first renumbering: shallow nodes first (dense tables, failure links by depth)
    for u in order:
        order.extend(kids[u][b] for b in sorted(kids[u]))
    new = [0] * n
    for i, u in enumerate(order):
        new[u] = i
    children = [{b: new[c] for b, c in kids[u].items()} for u in order]
    term = [term[u] for u in order]
    fail = [-1] * n
    pops: list = [()] * n
    for v in range(n):  # breadth-first: every node a failure walk visits is shallower, already done
        for byte, u in children[v].items():
            if term[u] >= 0:
                fail[u], pops[u] = 1, (term[u],)
                continue
            z, acc = fail[v], list(pops[v])
            while z >= 0 and byte not in children[z]:
                acc.extend(pops[z])
                z = fail[z]
            if z >= 0:
                fail[u], pops[u] = children[z][byte], tuple(acc)
    foff = np.zeros(n + 1, np.int32)
    np.cumsum([len(p) for p in pops], out=foff[1:])
    fpool = np.fromiter((t for p in pops for t in p), np.int32, int(foff[-1]))
    nd = min(n, DENSE_NODES)
    achild = np.full(nd * 128, -1, np.int32)
    keys, vals = [], []
    for v in range(n):
        for byte, u in children[v].items():
            if v < nd and byte < 128:
                achild[v * 128 + byte] = u
            else:
                keys.append(v * 256 + byte)
                vals.append(u)
    bits = max(4, (2 * len(keys) + 1).bit_length())
    size = 1 << bits
    shift = 64 - bits
    home = ((np.asarray(keys, np.uint64) * np.uint64(HASH_MUL)) >> np.uint64(shift)).astype(np.int64).tolist()
    mask = size - 1
    slots = [-1] * size
    for k, v, h in zip(keys, vals, home):
        while slots[h] != -1:
            h = (h + 1) & mask
        slots[h] = (k << 24) | v
    return dict(htab=np.asarray(slots, np.int64), hmask=mask, hshift=shift, term=np.asarray(term, np.int32),
                fail=np.asarray(fail, np.int32), foff=foff, fpool=fpool if fpool.size else np.zeros(1, np.int32),
                achild=achild, ndense=nd)


def special_tables(specials: dict):
    """Special tokens matched in the raw text: (first-byte flags uint8[256], data, offsets int64, ids int64)."""
    items = sorted(specials.items())
    first = np.zeros(256, np.uint8)
    data = bytearray()
    offs = [0]
    ids = []
    for s, tid in items:
        bs = s.encode("utf-8")
        if not bs:
            continue
        first[bs[0]] = 1
        data += bs
        offs.append(len(data))
        ids.append(tid)
    return (first, np.frombuffer(bytes(data) or b"\0", np.uint8).copy(), np.asarray(offs, np.int64),
            np.asarray(ids or [0], np.int64), len(ids))
