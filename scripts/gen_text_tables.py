"""Regenerate ``prepjit/data/bert_codepoints.npz`` — the per-code-point tables of prepjit's BERT tokenizer —
from HF ``tokenizers`` itself (the oracle prepjit must match bit for bit).

HF's BertNormalizer and BertPreTokenizer use Rust's Unicode tables (categories, whitespace, NFD, lowercase),
which differ from Python's ``unicodedata`` in many corners. So instead of re-deriving them, this script runs each
*step* of HF's normalizer alone on every code point and records where it is not the identity:

- ``clean``: BertNormalizer(clean_text=True) alone → removed (control, format, NUL, U+FFFD) or a space;
- ``cjk``: BertNormalizer(handle_chinese_chars=True) alone → code points padded with spaces;
- ``strip``: BertNormalizer(strip_accents=True) alone (NFD, then drop nonspacing marks) → replacement string;
- ``lower``: BertNormalizer(lowercase=True, strip_accents=False) alone (per-character lowercase) → string;
- ``ws`` / ``punct``: BertPreTokenizer's classes (split on whitespace, isolate punctuation).

Each step is a per-character map, so any configuration composes from these (``prepjit.kernels.text``). The one
non-local part of NFD, canonical reordering of combining marks, is recorded as ``ccc`` (canonical combining
class of the marks that survive stripping, their order checked against HF's NFD) and ``strip_starter`` (stripped
code points that end a run of marks), probed with HF's NFD.

    python scripts/gen_text_tables.py            # writes prepjit/data/bert_codepoints.npz
"""
from __future__ import annotations

import pathlib
import sys
import unicodedata

import numpy as np
import tokenizers
from tokenizers import normalizers, pre_tokenizers

OUT = pathlib.Path(__file__).resolve().parents[1] / "prepjit" / "data" / "bert_codepoints.npz"


def codepoints():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def exceptions(norm, cps):
    """(code points, replacement strings) where ``norm`` does not map the code point to itself."""
    keys, vals = [], []
    f = norm.normalize_str
    for c in cps:
        s = chr(c)
        r = f(s)
        if r != s:
            keys.append(c)
            vals.append(r)
    return keys, vals


def pack(keys, vals):
    """Strings → one UTF-32 code point pool with offsets (compact, loads without Python objects per entry)."""
    offs = np.zeros(len(vals) + 1, np.int32)
    pool = []
    for i, v in enumerate(vals):
        pool.extend(ord(ch) for ch in v)
        offs[i + 1] = len(pool)
    return np.asarray(keys, np.int32), offs, np.asarray(pool, np.int32)


def ranges(cps):
    """Sorted code points → (k, 2) int32 array of inclusive [first, last] runs."""
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return np.asarray(out, np.int32).reshape(-1, 2)


def main():
    cps = codepoints()
    B = normalizers.BertNormalizer
    steps = {
        "clean": B(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False),
        "cjk": B(clean_text=False, handle_chinese_chars=True, strip_accents=False, lowercase=False),
        "strip": B(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False),
        "lower": B(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True),
    }
    arrays = {}
    for name, norm in steps.items():
        keys, vals = exceptions(norm, cps)
        print(f"{name}: {len(keys)} code points differ from identity", file=sys.stderr)
        if name == "clean":  # removed (large unassigned/private-use ranges) or mapped to one space
            arrays["clean_removed"] = ranges([c for c, v in zip(keys, vals) if v == ""])
            arrays["clean_space"] = np.asarray([c for c, v in zip(keys, vals) if v == " "], np.int32)
            assert all(v in ("", " ") for v in vals)
        elif name == "cjk":  # padded with spaces: " c "
            assert all(v == " " + chr(c) + " " for c, v in zip(keys, vals))
            arrays["cjk"] = ranges(keys)
        else:
            arrays[f"{name}_cp"], arrays[f"{name}_off"], arrays[f"{name}_pool"] = pack(keys, vals)
    # pre-tokenizer classes: "a<c>a" splits into 2 pieces around whitespace, 3 around punctuation
    pre = pre_tokenizers.BertPreTokenizer()
    ws, punct = [], []
    for c in cps:
        pieces = pre.pre_tokenize_str("a" + chr(c) + "a")
        if len(pieces) == 2:
            ws.append(c)
        elif len(pieces) == 3:
            punct.append(c)
        elif len(pieces) != 1:
            raise SystemExit(f"unexpected pre-tokenization of U+{c:04X}: {pieces}")
    arrays["ws"] = ranges(ws)
    arrays["punct"] = ranges(punct)
    # NFD's canonical reordering (HF runs full NFD before dropping nonspacing marks): marks that survive the
    # stripping keep taking part in it. ``ccc``: canonical combining class of the surviving marks (ordering
    # checked against HF below); ``strip_starter``: code points stripped to nothing whose decomposition holds a
    # starter (they end a run of marks; the others are transparent, as are characters removed by cleanup).
    nfd = normalizers.NFD()
    hi, lo = "\u0305", "\u0323"  # combining overline (ccc 230), combining dot below (ccc 220)

    def nonstarter(x: str) -> bool:  # HF's NFD moves the ccc-220 mark before the ccc-230 one across x
        out = nfd.normalize_str(hi + x + lo)
        return out.index(lo) < out.index(hi)

    strip_cps = set(arrays["strip_cp"].tolist())  # survivors: characters that stripping keeps as they are
    survivors = [c for c in cps if c not in strip_cps and chr(c) not in (hi, lo) and nonstarter(chr(c))]
    # (HF's Unicode tables are older than Python's: some marks Python gives a class are starters for HF)
    ccc = [(c, unicodedata.combining(chr(c))) for c in survivors]
    assert all(v > 0 for _, v in ccc), [hex(c) for c, v in ccc if not v]
    marks = [chr(c) for c, _ in ccc]
    rank = dict((chr(c), v) for c, v in ccc)
    for a in marks:  # the oracle orders every pair of surviving marks as their combining classes say
        for b in marks:
            assert nfd.normalize_str(a + b) == "".join(sorted(a + b, key=rank.get)), (hex(ord(a)), hex(ord(b)))
    lower_cps = set(arrays["lower_cp"].tolist())
    assert not lower_cps & {c for c, _ in ccc}
    gone = [int(c) for i, c in enumerate(arrays["strip_cp"]) if arrays["strip_off"][i] == arrays["strip_off"][i + 1]]
    arrays["strip_starter"] = np.asarray([c for c in gone if not all(map(nonstarter, nfd.normalize_str(chr(c))))],
                                         np.int32)
    arrays["ccc_cp"] = np.asarray([c for c, _ in ccc], np.int32)
    arrays["ccc"] = np.asarray([v for _, v in ccc], np.int32)
    arrays["tokenizers_version"] = np.asarray(tokenizers.__version__)
    print(f"ws {len(ws)}, punct {len(punct)}, reorderable non-Mn marks {len(ccc)}, stripped starters "
          f"{len(arrays['strip_starter'])}", file=sys.stderr)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) from tokenizers {tokenizers.__version__}", file=sys.stderr)


if __name__ == "__main__":
    main()
