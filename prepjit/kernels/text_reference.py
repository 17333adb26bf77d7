"""Reference semantics of the ``text`` dialect: each BERT stage as plain Python over the HF-generated tables.

These are the ``reference`` functions of the unfused ops in ``prepjit.ir.text`` (the reference interpreter runs a
traced chain with them); the native kernel (``prepjit.lowering.text_kernel``) is the fused form of the whole
chain and must agree with them and with HF ``tokenizers`` row for row. Values between the stages:

    !text.segments  tuple of str (text) and int (a special token's id, matched in the raw text)
    !text.words     tuple of str (a pre-tokenized word) and int (a special token's id)
    !text.ids       tuple of int (WordPiece ids of one sequence)
    !text.seqs      tuple of one or two !text.ids (after truncation)
    !text.encoding  (ids tuple, type ids tuple, number of real tokens)
"""
from __future__ import annotations

import functools

import numpy as np

from prepjit.kernels import text as K


def _tok(fingerprint: str):
    from prepjit.text import _REGISTRY

    return _REGISTRY[fingerprint]


@functools.lru_cache(maxsize=None)
def _classes():
    d = K._data()
    return dict(ws=K._in_ranges(d["ws"]), punct=K._in_ranges(d["punct"]), removed=K._in_ranges(d["clean_removed"]),
                cjk=K._in_ranges(d["cjk"]), spaced=set(d["clean_space"].tolist()), strip=K._string_map("strip"),
                lower=K._string_map("lower"), ccc=dict(zip(d["ccc_cp"].tolist(), d["ccc"].tolist())),
                starter=set(d["strip_starter"].tolist()) if "strip_starter" in d else set())


# -- stages -----------------------------------------------------------------------------------------------------
def split_special(text, *, tokenizer: str) -> tuple:
    """HF's added vocabulary on the raw text: leftmost-longest matches of the special tokens."""
    s = text.decode("utf-8") if isinstance(text, (bytes, bytearray)) else str(text)
    specials = _tok(tokenizer).special_tokens
    out, start, i = [], 0, 0
    while i < len(s):
        best = max((t for t in specials if t and s.startswith(t, i)), key=len, default=None)
        if best is None:
            i += 1
            continue
        if i > start:
            out.append(s[start:i])
        out.append(int(specials[best]))
        i += len(best)
        start = i
    if start < len(s):
        out.append(s[start:])
    return tuple(out)


def normalize(segments, *, clean_text: bool, handle_chinese_chars: bool, strip_accents: bool,
              lowercase: bool) -> tuple:
    """BertNormalizer on each text segment: cleanup, CJK padding, NFD + dropping nonspacing marks (with NFD's
    canonical reordering of the marks that survive), lowercasing."""
    c = _classes()
    return tuple(_normalize(s, c, clean_text, handle_chinese_chars, strip_accents, lowercase) if isinstance(s, str)
                 else s for s in segments)


def _normalize(s, c, clean_text, cjk, strip, lower) -> str:
    out: list = []
    ccc: list = []  # combining class per output character (0 for starters)
    run = 0  # start of the current run of marks in ``out``
    for ch in s:
        cp = ord(ch)
        if clean_text and c["removed"][cp]:
            continue  # removed before NFD: transparent to reordering
        if clean_text and cp in c["spaced"]:
            chars = " "
        else:
            chars = c["strip"].get(cp, ch) if strip else ch
            if lower:
                chars = "".join(c["lower"].get(ord(x), x) for x in chars)
            if cjk and c["cjk"][cp]:
                chars = " " + chars + " "
        if not chars and strip and cp in c["starter"]:
            run = len(out)
        for x in chars:
            k = c["ccc"].get(ord(x), 0) if strip else 0
            if k == 0:
                out.append(x)
                ccc.append(0)
                run = len(out)
                continue
            j = len(out)  # canonical ordering: a stable insertion by combining class within the run
            while j > run and ccc[j - 1] > k:
                j -= 1
            out.insert(j, x)
            ccc.insert(j, k)
    return "".join(out)


def pre_tokenize(segments) -> tuple:
    """BertPreTokenizer: split on whitespace, punctuation characters are words of their own."""
    c = _classes()
    out: list = []
    for s in segments:
        if not isinstance(s, str):
            out.append(s)
            continue
        word: list = []
        for ch in s:
            cp = ord(ch)
            if c["ws"][cp] or c["punct"][cp]:
                if word:
                    out.append("".join(word))
                    word = []
                if c["punct"][cp]:
                    out.append(ch)
            else:
                word.append(ch)
        if word:
            out.append("".join(word))
    return tuple(out)


def wordpiece(words, *, tokenizer: str) -> tuple:
    """Greedy longest-match-first WordPiece, as HF: a word with no match somewhere is one [UNK]; a word longer
    than max_input_chars_per_word characters is [UNK]."""
    tok = _tok(tokenizer)
    out: list = []
    for w in words:
        if not isinstance(w, str):
            out.append(w)
            continue
        if len(w) > tok.max_input_chars_per_word:
            out.append(tok.unk_id)
            continue
        pieces, start = [], 0
        while start < len(w):
            end = len(w)
            while end > start:
                sub = (tok.prefix if start else "") + w[start:end]
                if sub in tok.vocab:
                    pieces.append(tok.vocab[sub])
                    break
                end -= 1
            if end == start:
                pieces = [tok.unk_id]
                break
            start = end
        out.extend(pieces)
    return tuple(out)


def truncate(*seqs, truncation: str, budget: int) -> tuple:
    """HF's truncate_encodings with the budget left after the special tokens: longest_first (the shorter
    sequence keeps what it can, halves when both are long), only_first, only_second; ``none`` keeps all."""
    if truncation == "none":
        return tuple(seqs)
    M = budget
    if len(seqs) == 1:
        return (seqs[0][:max(M, 0)],)
    a, b = seqs
    na, nb = len(a), len(b)
    k1, k2 = na, nb
    if M <= 0:
        k1 = k2 = 0
    elif na + nb > M:
        if truncation == "longest_first":
            swap = na > nb
            s1 = nb if swap else na
            t2 = s1 if s1 > M else max(s1, M - s1)
            t1 = s1
            if t1 + t2 > M:
                t1, t2 = M // 2, M // 2 + M % 2
            k1, k2 = (t2, t1) if swap else (t1, t2)
            k1, k2 = min(k1, na), min(k2, nb)
        else:
            first = truncation == "only_first"
            rm = na + nb - M
            if (na if first else nb) <= rm:
                raise ValueError(f"truncation={truncation!r} cannot fit the {M} tokens left after the special "
                                 f"tokens: the sequence to truncate is too short")
            k1, k2 = (na - rm, nb) if first else (na, nb - rm)
    return a[:min(k1, M)], b[:min(k2, M)]


def post_process(seqs, *, tokenizer: str, add_special_tokens: bool) -> tuple:
    """BERT's template: [CLS] A [SEP] (type 0) B [SEP] (type 1)."""
    tok = _tok(tokenizer)
    a = list(seqs[0])
    if add_special_tokens:
        a = [tok.cls_id] + a + [tok.sep_id]
    ids, types = a, [0] * len(a)
    if len(seqs) == 2:
        b = list(seqs[1]) + ([tok.sep_id] if add_special_tokens else [])
        ids, types = ids + b, types + [1] * len(b)
    return tuple(ids), tuple(types), len(ids)


def pad(enc, *, tokenizer: str, padding: str, max_length: int, pad_to_multiple_of: int) -> tuple:
    """Right padding to max_length or to the (rounded) length; a row longer than a fixed width is an error."""
    tok = _tok(tokenizer)
    ids, types, n = enc
    mult = pad_to_multiple_of or 1
    if padding == "max_length":
        width = -(-max_length // mult) * mult
        if n > width:
            raise ValueError(f"the encoding is longer than max_length={max_length} and truncation is off; pass "
                             f"truncation=True, or padding='longest'/False")
    elif padding == "longest":
        width = -(-n // mult) * mult
    else:
        width = n
    extra = width - n
    return ids + (tok.pad_id,) * extra, types + (tok.pad_type_id,) * extra, n


def mask(enc, *, dtype, length: int, sym_len: str) -> np.ndarray:
    """The output rows: ids, type ids and the attention mask (1 on real tokens)."""
    ids, types, n = enc
    return np.array([ids, types, [1] * n + [0] * (len(ids) - n)], np.int64).reshape(3, len(ids)).astype(dtype)
