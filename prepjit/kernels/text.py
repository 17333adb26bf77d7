"""BERT tokenizer semantics as tables for the native kernel (``prepjit.lowering.text_kernel``).

Per-code-point behaviour comes from ``prepjit/data/bert_codepoints.npz``, generated from HF ``tokenizers`` by
``scripts/gen_text_tables.py`` (each normalizer step alone, over every code point). A configuration
(clean_text, handle_chinese_chars, strip_accents, lowercase) composes those per-character steps in HF's order
(clean → CJK padding → NFD + drop nonspacing marks → lowercase), then classifies every output character with
BertPreTokenizer's classes (whitespace splits, punctuation is isolated). The result is one entry per code point:

    kind 0  word character, output = the input bytes            kind 2  whitespace (ends the word)
    kind 1  removed                                               kind 3  isolated character (punctuation, CJK)
    kind 4  several output characters: ``pool[entry >> 3]`` = count, then per character [class, nbytes, bytes]

stored as a two-stage table (256-code-point blocks, identical blocks shared) plus an ASCII table
(``kind << 8 | output byte``). Vocabulary: a byte trie whose (node, byte) → child map is an open-addressing hash
table (dense tables for the first step), with the token id of each terminal node.
"""
from __future__ import annotations

import functools
import pathlib

import numpy as np

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "bert_codepoints.npz"
NCP = 0x110000
WORD, REMOVED, SPACE, ISOLATED, POOLED = 0, 1, 2, 3, 4


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
    pool = bytearray()
    entry = kind.astype(np.int64)
    for c, items in special.items():
        if len(items) == 1 and items[0][1] == chr(c):
            entry[c] = items[0][0]
        elif not items:
            entry[c] = REMOVED
        elif all(k == SPACE for k, _ in items):
            entry[c] = SPACE
        else:
            off = len(pool)
            pool.append(len(items))
            for k, x in items:
                bs = x.encode("utf-8")
                pool += bytes([k, len(bs)]) + bs
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


def vocab_trie(vocab: dict, prefix: str):
    """Byte trie of the vocabulary: (htab int64, term int32, cont_root, hmask, hshift, rootc, contc).

    Nodes are numbered from 0 (the root); ``term[node]`` is the id of the token spelled by the path, or -1.
    Transitions (key = node * 256 + byte → child) live in an open-addressing table of power-of-two size, one
    int64 ``key << 24 | child`` per slot (-1: empty), probed linearly from ``(key * HASH_MUL mod 2**64) >> hshift``.
    ``rootc``/``contc`` are the children of the root and of the continuation root as dense 256-entry tables.
    """
    from prepjit.lowering.text_kernel import HASH_MUL

    children: dict = {}
    term = [-1]

    def path(text: str) -> int:
        """The trie node spelling ``text`` from the root, created as needed."""
        node = 0
        for byte in text.encode("utf-8"):
            key = node * 256 + byte
            nxt = children.get(key)
            if nxt is None:
                nxt = children[key] = len(term)
                term.append(-1)
            node = nxt
        return node

    for tok, tid in vocab.items():
        node = path(tok)
        if node:
            term[node] = tid
    cont_root = path(prefix)  # the continuation root: the path of the prefix (created if no token uses it)
    bits = max(4, (2 * len(children) + 1).bit_length())
    size = 1 << bits
    shift = 64 - bits
    keys = np.fromiter(children.keys(), np.uint64, len(children))
    vals = np.fromiter(children.values(), np.int64, len(children))
    home = ((keys * np.uint64(HASH_MUL)) >> np.uint64(shift)).astype(np.int64)
    if len(term) >= 1 << 24:
        raise ValueError(f"vocabulary trie too large ({len(term)} nodes)")
    htab = np.full(size, -1, np.int64)
    mask = size - 1
    slots = [-1] * size
    for k, v, h in zip(keys.tolist(), vals.tolist(), home.tolist()):
        while slots[h] != -1:
            h = (h + 1) & mask
        slots[h] = (k << 24) | v
    htab[:] = slots
    rootc = np.full(256, -1, np.int32)  # the first step from the root / the continuation root, as dense tables
    contc = np.full(256, -1, np.int32)
    for byte in range(256):
        rootc[byte] = children.get(byte, -1)
        contc[byte] = children.get(cont_root * 256 + byte, -1)
    return htab, np.asarray(term, np.int32), cont_root, mask, shift, rootc, contc


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
