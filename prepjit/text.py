"""Text pipelines: BERT WordPiece tokenization compiled to one native pass, bit-identical to HF ``tokenizers``.

```python
tok = prepjit.text.BertTokenizer.from_file("tokenizer.json")          # or "vocab.txt", lowercase=..., ...

@prepjit.jit_preprocess
def enc(text):                                                        # str or UTF-8 bytes
    return tok(text, max_length=128, padding="max_length", truncation=True)

enc("hello world")          # {"input_ids", "token_type_ids", "attention_mask"}: int64 arrays of shape (128,)
enc.batch(texts)            # the same keys, shape (N, 128): one native pass per thread over all samples
```

Cleanup, normalization, pre-tokenization, WordPiece, special tokens, truncation, padding, type ids and masks are
one kernel (``prepjit.lowering.text_kernel``) driven by tables (``prepjit.kernels.text``): per-code-point tables
generated from HF ``tokenizers`` itself, and per-vocabulary trie and special-token tables built once per
tokenizer. A tokenizer is also usable outside ``@jit_preprocess``: ``tok(text, ...)``, ``tok.batch(texts, ...)``.

Input: ``str`` (a lone surrogate raises ``ValueError``) or ``bytes``, which must be valid UTF-8: invalid UTF-8
raises ``ValueError`` naming the sample and byte offset (decode with ``errors="replace"`` first to get HF's
behaviour on such input). Anything else raises ``TypeError`` naming the sample.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
from functools import cache, lru_cache

import numpy as np

from prepjit.ir.func import output_structure

__all__ = ["BertTokenizer"]

TRUNCATION = (True, False, None, "longest_first", "only_first", "only_second", "do_not_truncate")
_WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
                + "\u2028\u2029\u202f\u205f\u3000")  # Unicode White_Space, what Rust's trim_end trims
_REGISTRY: dict = {}  # fingerprint -> BertTokenizer (IR attributes name tokenizers by content)


def _round_up(n: int, m: int | None) -> int:
    return n if not m else -(-n // m) * m


class BertTokenizer:
    """A BERT WordPiece tokenizer (HF ``BertNormalizer`` + ``BertPreTokenizer`` + ``WordPiece`` + BERT template)."""

    def __init__(self, vocab: dict, *, lowercase: bool = True, strip_accents: bool | None = None,
                 handle_chinese_chars: bool = True, clean_text: bool = True, unk_token: str = "[UNK]",
                 sep_token: str = "[SEP]", cls_token: str = "[CLS]", pad_token: str = "[PAD]",
                 mask_token: str | None = "[MASK]", wordpieces_prefix: str = "##", max_input_chars_per_word: int = 100,
                 special_tokens: dict | None = None, pad_type_id: int = 0, source: str = "vocab"):
        if not vocab:
            raise ValueError(f"{source}: the vocabulary is empty")
        self.vocab = dict(vocab)
        self.lowercase = bool(lowercase)
        self.strip_accents = self.lowercase if strip_accents is None else bool(strip_accents)
        self.handle_chinese_chars = bool(handle_chinese_chars)
        self.clean_text = bool(clean_text)
        self.prefix = str(wordpieces_prefix)
        self.max_input_chars_per_word = int(max_input_chars_per_word)
        if self.max_input_chars_per_word < 0:
            raise ValueError(f"{source}: max_input_chars_per_word must be >= 0")
        missing = [t for t in (unk_token, cls_token, sep_token, pad_token) if t not in self.vocab]
        if missing:
            raise ValueError(f"{source}: the vocabulary lacks the special token(s) {missing}; BERT tokenization "
                             f"needs unk_token, cls_token, sep_token and pad_token in the vocabulary")
        self.unk_id = self.vocab[unk_token]
        self.cls_id = self.vocab[cls_token]
        self.sep_id = self.vocab[sep_token]
        self.pad_id = self.vocab[pad_token]
        self.pad_type_id = int(pad_type_id)
        if special_tokens is None:  # like tokenizers.BertWordPieceTokenizer: the specials that are in the vocab
            special_tokens = {t: self.vocab[t] for t in (pad_token, unk_token, cls_token, sep_token, mask_token)
                              if t is not None and t in self.vocab}
        self.special_tokens = dict(special_tokens)
        for v in [*self.vocab.values(), *self.special_tokens.values()]:
            if not 0 <= v < 2**31 - 1:
                raise ValueError(f"{source}: token id {v} out of range")
        h = hashlib.sha256()
        h.update(json.dumps([sorted(self.vocab.items()), sorted(self.special_tokens.items()), self.lowercase,
                             self.strip_accents, self.handle_chinese_chars, self.clean_text, self.prefix,
                             self.max_input_chars_per_word, self.unk_id, self.cls_id, self.sep_id, self.pad_id,
                             self.pad_type_id], ensure_ascii=True).encode())
        self.fingerprint = h.hexdigest()[:32]
        _REGISTRY[self.fingerprint] = self
        self._ctx = None
        self._ctx_lock = threading.Lock()
        self._plans: dict = {}

    def __repr__(self):
        return (f"<prepjit.text.BertTokenizer vocab={len(self.vocab)} lowercase={self.lowercase} "
                f"strip_accents={self.strip_accents}>")

    # -- loading --------------------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path, **options) -> "BertTokenizer":
        """An HF ``tokenizer.json`` (BertNormalizer/BertPreTokenizer/WordPiece/BERT template), or a ``vocab.txt``
        (one token per line) with options as ``tokenizers.BertWordPieceTokenizer``: ``lowercase=True,
        strip_accents=None, handle_chinese_chars=True, clean_text=True, unk_token="[UNK]", sep_token="[SEP]",
        cls_token="[CLS]", pad_token="[PAD]", mask_token="[MASK]", wordpieces_prefix="##",
        max_input_chars_per_word=100``. Malformed files raise ``ValueError`` naming the problem."""
        path = os.fspath(path)
        with open(path, "rb") as fh:
            raw = fh.read()
        if path.endswith(".json") or raw.lstrip()[:1] == b"{":
            if options:
                raise TypeError(f"{path}: options {sorted(options)} apply to vocab.txt files; tokenizer.json "
                                f"carries its own configuration")
            return cls._from_json(raw, path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: vocabulary is not valid UTF-8 ({e})") from None
        lines = text.split("\n")  # as HF's WordPiece.read_file: lines split on "\n", trailing White_Space trimmed
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {}
        for i, line in enumerate(lines):
            vocab[line.rstrip(_WHITE_SPACE)] = i
        return cls(vocab, source=path, **options)

    @classmethod
    def _from_json(cls, raw: bytes, path: str) -> "BertTokenizer":
        def bad(msg):
            return ValueError(f"{path}: {msg}")

        try:
            d = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f"not valid JSON ({e})") from None
        if not isinstance(d, dict) or not isinstance(d.get("model"), dict):
            raise bad("no 'model' object: not an HF tokenizer.json")
        model = d["model"]
        if model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
            raise bad(f"model type {model.get('type')!r} is not supported (only WordPiece with a vocab)")
        vocab = model["vocab"]
        if not all(isinstance(k, str) and isinstance(v, int) for k, v in vocab.items()):
            raise bad("model.vocab must map strings to integer ids")
        norm = d.get("normalizer")
        if not isinstance(norm, dict) or norm.get("type") != "BertNormalizer":
            raise bad(f"normalizer {norm and norm.get('type')!r} is not supported (only BertNormalizer)")
        pre = d.get("pre_tokenizer")
        if not isinstance(pre, dict) or pre.get("type") != "BertPreTokenizer":
            raise bad(f"pre_tokenizer {pre and pre.get('type')!r} is not supported (only BertPreTokenizer)")
        specials = {}
        for t in d.get("added_tokens") or []:
            try:
                content, tid = t["content"], t["id"]
            except (TypeError, KeyError):
                raise bad(f"malformed added token {t!r}") from None
            if t.get("normalized") or t.get("lstrip") or t.get("rstrip") or t.get("single_word"):
                raise bad(f"added token {content!r}: normalized/lstrip/rstrip/single_word tokens are not supported")
            specials[content] = tid
        post = d.get("post_processor")
        cls_tok, sep_tok = "[CLS]", "[SEP]"
        if isinstance(post, dict) and post.get("type") == "BertProcessing":
            cls_tok, sep_tok = post["cls"][0], post["sep"][0]
        elif isinstance(post, dict) and post.get("type") == "TemplateProcessing":
            try:
                single, pair = post["single"], post["pair"]
                shape = [next(iter(x)) for x in single], [next(iter(x)) for x in pair]
                ok = shape == (["SpecialToken", "Sequence", "SpecialToken"],
                               ["SpecialToken", "Sequence", "SpecialToken", "Sequence", "SpecialToken"])
                cls_tok, sep_tok = single[0]["SpecialToken"]["id"], single[2]["SpecialToken"]["id"]
                types = [next(iter(x.values()))["type_id"] for x in pair]
                ok = ok and types == [0, 0, 0, 1, 1] and pair[2]["SpecialToken"]["id"] == sep_tok \
                    and pair[4]["SpecialToken"]["id"] == sep_tok and pair[0]["SpecialToken"]["id"] == cls_tok
                for tok in (cls_tok, sep_tok):
                    if tok not in vocab:
                        raise bad(f"the vocabulary lacks the special token(s) {[tok]} of the post_processor")
                    ids = post["special_tokens"][tok]["ids"]
                    ok = ok and len(ids) == 1 and vocab.get(tok) == ids[0]
            except (KeyError, TypeError, IndexError, StopIteration):
                raise bad("malformed TemplateProcessing post_processor") from None
            if not ok:
                raise bad("post_processor is not BERT's template ([CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1)")
        elif post is not None:
            raise bad(f"post_processor {post.get('type') if isinstance(post, dict) else post!r} is not supported")
        pad = d.get("padding") or {}
        pad_tok = pad.get("pad_token", "[PAD]")
        strip = norm.get("strip_accents")
        return cls(vocab, lowercase=norm.get("lowercase", True), strip_accents=strip,
                   handle_chinese_chars=norm.get("handle_chinese_chars", True), clean_text=norm.get("clean_text", True),
                   unk_token=model.get("unk_token", "[UNK]"), cls_token=cls_tok, sep_token=sep_tok, pad_token=pad_tok,
                   wordpieces_prefix=model.get("continuing_subword_prefix") or "",
                   max_input_chars_per_word=model.get("max_input_chars_per_word", 100), special_tokens=specials,
                   pad_type_id=pad.get("pad_type_id", 0), source=path)

    # -- native tables ----------------------------------------------------------------------------------------
    def _context(self):
        """The kernel's ctx array (table pointers), built once per tokenizer; keeps the tables alive."""
        if self._ctx is None:
            with self._ctx_lock:
                if self._ctx is None:
                    from prepjit.kernels import text as K
                    from prepjit.lowering.text_kernel import CTX

                    flags = (self.clean_text, self.handle_chinese_chars, self.strip_accents, self.lowercase)
                    cp = _cached_tables(("codepoints", K.DATA.read_bytes(), flags), lambda: dict(zip(
                        ("stage1", "stage2", "pool", "asc"), K.codepoint_tables(*flags))))
                    stage1, stage2, pool, asc = cp["stage1"], cp["stage2"], cp["pool"], cp["asc"]
                    vt = _cached_tables(("vocab", self.fingerprint, self.prefix), lambda: {
                        **K.vocab_trie(self.vocab, self.prefix), **dict(zip(
                            ("spec_first", "spec_data", "spec_off", "spec_ids", "nspec"),
                            K.special_tables(self.special_tokens)))})
                    keep = dict(stage1=stage1, stage2=stage2, pool=pool, asc=asc)
                    scalars = dict(unk_id=self.unk_id, max_chars=self.max_input_chars_per_word)
                    for k, v in vt.items():
                        if v.ndim:
                            keep[k] = np.ascontiguousarray(v)
                        else:
                            scalars[k] = int(v)
                    ctx = np.array([keep[n].ctypes.data if n in keep else scalars[n] for n in CTX], np.int64)
                    self._ctx = (ctx, keep)
        return self._ctx[0]

    # -- calling --------------------------------------------------------------------------------------------
    def __call__(self, text, text_pair=None, *, max_length: int | None = None, padding=False, truncation=False,
                 pad_to_multiple_of: int | None = None, return_attention_mask: bool = True,
                 return_token_type_ids: bool = True, add_special_tokens: bool = True, dtype=np.int64):
        """Encode one text (or a sentence pair) → dict of 1-d arrays, like HF's ``tokenizer(text, ...)``.

        Inside ``@jit_preprocess`` ``text``/``text_pair`` are the function's text arguments and this traces the
        ``text`` dialect's chain (``prepjit.ir.text``), which the compiler fuses into one ``text.bert_tokenize``
        kernel; its results compose with numeric ops like any array.
        """
        opts = _options(max_length, padding, truncation, pad_to_multiple_of, add_special_tokens, text_pair is not None)
        dtype = _id_dtype(dtype)
        from prepjit.compiler.tracer import TracedBytes

        if isinstance(text, TracedBytes) or isinstance(text_pair, TracedBytes):
            return self._trace(text, text_pair, opts, dtype, return_attention_mask, return_token_type_ids)
        out = self._encode_one((text,) if text_pair is None else (text, text_pair), opts, dtype)
        return _select({"input_ids": out[0], "token_type_ids": out[1], "attention_mask": out[2]},
                       return_attention_mask, return_token_type_ids)

    def batch(self, texts, text_pairs=None, *, max_length: int | None = None, padding=False, truncation=False,
              pad_to_multiple_of: int | None = None, return_attention_mask: bool = True,
              return_token_type_ids: bool = True, add_special_tokens: bool = True, dtype=np.int64,
              threads: int | None = None):
        """Encode N texts (or N pairs): arrays of shape (N, L) when padded, lists of 1-d arrays when not."""
        opts = _options(max_length, padding, truncation, pad_to_multiple_of, add_special_tokens, text_pairs is not None)
        cols = [list(texts)] if text_pairs is None else [list(texts), list(text_pairs)]
        if len(cols) == 2 and len(cols[0]) != len(cols[1]):
            raise ValueError(f"batch(): {len(cols[0])} texts but {len(cols[1])} text pairs")
        out = self._encode(cols, opts, _id_dtype(dtype), threads)
        return _select(out, return_attention_mask, return_token_type_ids)

    def _trace(self, text, text_pair, opts, dtype, want_mask, want_types):
        from prepjit.compiler.tracer import Traced, TracedBytes, _recorder, user_loc
        from prepjit.errors import at

        operands = [text] if text_pair is None else [text, text_pair]
        if not all(isinstance(t, TracedBytes) for t in operands):
            raise TypeError(at(user_loc(), "inside @jit_preprocess a tokenizer takes the function's text arguments"))
        rec = _recorder()
        fixed = opts["padding"] == "max_length" and opts["truncation"] != 0
        length = _round_up(opts["max_length"], opts["pad_to_multiple_of"]) if fixed else -1
        fp = self.fingerprint
        seqs = []
        for t in operands:  # the text dialect's chain; fuse_text turns it into one text.bert_tokenize kernel
            v = rec.emit("text.split_special", [t._value], {"tokenizer": fp})
            v = rec.emit("text.normalize", [v], {"clean_text": self.clean_text, "lowercase": self.lowercase,
                                                 "handle_chinese_chars": self.handle_chinese_chars,
                                                 "strip_accents": self.strip_accents})
            v = rec.emit("text.pre_tokenize", [v])
            seqs.append(rec.emit("text.wordpiece", [v], {"tokenizer": fp}))
        nsp = (len(seqs) + 1) if opts["add_special_tokens"] else 0
        trunc = opts["truncation"] or "none"
        v = rec.emit("text.truncate", seqs, {"truncation": trunc,
                                             "budget": opts["max_length"] - nsp if trunc != "none" else -1})
        v = rec.emit("text.post_process", [v], {"tokenizer": fp, "add_special_tokens": opts["add_special_tokens"]})
        v = rec.emit("text.pad", [v], {"tokenizer": fp, "padding": opts["padding"] or "none",
                                       "max_length": -1 if opts["max_length"] is None else opts["max_length"],
                                       "pad_to_multiple_of": opts["pad_to_multiple_of"] or 0})
        h = Traced(rec.emit("text.mask", [v], {"dtype": dtype, "length": length, "sym_len": rec.fresh_sym()}))
        return _select({"input_ids": h[0], "token_type_ids": h[1], "attention_mask": h[2]}, want_mask, want_types)

    def _plan(self, opts: dict, dtype: np.dtype, pair: bool):
        """Per-options constants of single-sample calls: an argument template with room for the per-call slots."""
        from prepjit.lowering.text_kernel import ARGS, TRUNC, load_kernel

        key = (tuple(opts.items()), dtype, pair)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        nsp = (3 if pair else 2) if opts["add_special_tokens"] else 0
        trunc = TRUNC[opts["truncation"]]
        budget = opts["max_length"] - nsp if trunc else 0
        fixed = _round_up(opts["max_length"], opts["pad_to_multiple_of"]) if trunc or opts["padding"] == "max_length" \
            else None
        tail = len(ARGS)  # after the arguments: off_a[2], off_b[2], lens, status, out_off, row_cap
        template = np.zeros(tail + 8, np.int64)
        template[:tail] = self._arg_row(pair, opts["add_special_tokens"], trunc, budget, row_begin=0, row_end=1)
        plan = (template, {a: k for k, a in enumerate(ARGS)}, tail, fixed, nsp, budget,
                load_kernel(dtype.itemsize * 8).cfunc, opts["padding"], opts["pad_to_multiple_of"])
        self._plans[key] = plan
        return plan

    def _encode_one(self, texts, opts, dtype) -> np.ndarray:
        """One sample (or pair) → (3, L) [ids, type ids, mask], with no per-batch machinery (low latency)."""
        from prepjit.lowering.text_kernel import STATUS_OK

        plan = self._plans.get((tuple(opts.items()), dtype, len(texts) == 2)) or self._plan(opts, dtype,
                                                                                          len(texts) == 2)
        template, slot, tail, fixed, nsp, budget, cfunc, padding, mult = plan
        bufs = []
        sizes = []
        for k, t in enumerate(texts):
            what = "text" if k == 0 else "text_pair"
            if isinstance(t, str):
                try:
                    b = t.encode("utf-8")
                except UnicodeEncodeError as e:
                    raise ValueError(f"{what} is not valid Unicode ({e.reason} at index {e.start})") from None
            elif isinstance(t, (bytes, bytearray, memoryview)):
                b = bytes(t)
                try:
                    b.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"{what} is not valid UTF-8 ({e.reason} at byte {e.start}); decode it with "
                                     f"errors='replace' first to tokenize U+FFFD as HF does") from None
            else:
                raise TypeError(f"{what} must be str or bytes, got {type(t).__name__}")
            bufs.append(np.frombuffer(b, np.uint8) if b else _EMPTY)
            sizes.append(len(b))
        width = fixed if fixed is not None else 3 * sum(sizes) + nsp + (mult or 0)
        out = np.empty((3, max(width, 1)), dtype)
        args = template.copy()
        a0 = args.__array_interface__["data"][0]
        base = out.__array_interface__["data"][0]
        step = out.shape[1] * dtype.itemsize
        args[slot["ids"]], args[slot["types"]], args[slot["mask"]] = base, base + step, base + 2 * step
        args[slot["data_a"]] = bufs[0].__array_interface__["data"][0]
        args[tail + 1] = sizes[0]
        args[slot["off_a"]] = a0 + 8 * tail
        bb = bufs[-1]
        args[slot["data_b"]] = bb.__array_interface__["data"][0]
        args[tail + 3] = sizes[-1]
        args[slot["off_b"]] = a0 + 8 * (tail + 2)
        args[slot["lens"]], args[slot["status"]] = a0 + 8 * (tail + 4), a0 + 8 * (tail + 5)
        args[slot["out_off"]], args[slot["row_cap"]] = a0 + 8 * (tail + 6), a0 + 8 * (tail + 7)
        args[tail + 7] = width
        args[slot["pad_to"]] = width
        tls = _scratch.__dict__
        wbuf = tls.get("wbuf")
        if wbuf is None or wbuf.size < 6 * self.max_input_chars_per_word + 16:
            wbuf = tls["wbuf"] = np.empty(6 * self.max_input_chars_per_word + 16, np.uint8)
        key = ("scratch", dtype)
        scratch = tls.get(key)
        if scratch is None or scratch.size < max(budget, 1):
            scratch = tls[key] = np.empty(max(budget, 1), dtype)
        args[slot["wbuf"]] = wbuf.__array_interface__["data"][0]
        args[slot["scratch"]] = scratch.__array_interface__["data"][0]
        cfunc(a0)
        status = int(args[tail + 5])
        if status != STATUS_OK:
            from prepjit.lowering.text_kernel import STATUS_TOO_LONG

            if status == STATUS_TOO_LONG:
                raise ValueError(f"the encoding is longer than max_length={opts['max_length']} and truncation is "
                                 f"off; pass truncation=True, or padding='longest'/False")
            raise ValueError(f"truncation={opts['truncation']!r} cannot fit max_length={opts['max_length']}: the "
                             f"sequence to truncate is too short")
        if padding == "max_length":
            return out
        n = int(args[tail + 4])
        L = _round_up(n, mult) if padding == "longest" else n
        return out if L == out.shape[1] else np.ascontiguousarray(out[:, :L])

    def _arg_row(self, pair: bool, add: bool, trunc: int, budget: int, **slots) -> np.ndarray:
        """The kernel's argument slots that follow from the tokenizer and options (the rest 0, or ``slots``)."""
        from prepjit.lowering.text_kernel import ARGS

        common = dict(ctx=self._context().ctypes.data, pair=int(pair), add_special=int(add), trunc=trunc,
                      budget=budget, cls_id=self.cls_id, sep_id=self.sep_id, pad_id=self.pad_id,
                      pad_type_id=self.pad_type_id, **slots)
        return np.array([common.get(a, 0) for a in ARGS], np.int64)

    def _batch_row(self, pair: bool, add: bool, trunc: int, budget: int, pad_to: int, wspace: int) -> np.ndarray:
        """A batch row's argument slots that are the same for every chunk and batch of these options (the word
        buffer and truncation scratch as offsets into the worker's arena)."""
        key = ("batch row", pair, add, trunc, budget, pad_to, wspace)
        row = self._plans.get(key)
        if row is None:
            row = self._plans[key] = self._arg_row(pair, add, trunc, budget, pad_to=pad_to, wbuf=0, scratch=wspace)
        return row

    def _encode(self, cols, opts, dtype, threads):
        from prepjit.lowering.text_kernel import ARGS, STATUS_TOO_LONG, STATUS_TRUNC, TRUNC, load_kernel
        from prepjit.runtime import batch as native_batch
        from prepjit.runtime.executable import addr
        from prepjit.runtime.threads import available_cpus, pool

        n = len(cols[0])
        pair = len(cols) == 2
        names = ("input_ids", "token_type_ids", "attention_mask")
        if n == 0:
            if opts["padding"] is False:
                return {k: [] for k in names}
            w = _round_up(opts["max_length"], opts["pad_to_multiple_of"]) if opts["padding"] == "max_length" else 0
            return {k: np.empty((0, w), dtype) for k in names}
        add = opts["add_special_tokens"]
        nsp = (3 if pair else 2) if add else 0
        trunc = TRUNC[opts["truncation"]]
        padding = opts["padding"]
        max_length = opts["max_length"]
        mult = opts["pad_to_multiple_of"]
        budget = max_length - nsp if trunc else 0
        what = ("text", "text_pair")
        workers = max(1, min(threads or available_cpus(), (n + 15) // 16))
        flat = not (trunc or padding == "max_length")
        chunks = _chunking(n, workers)
        nchunks = len(chunks)
        if not flat:  # fixed-width rows: each chunk's texts are encoded when its row is prepared
            width = _round_up(max_length, mult)
            out_off, row_cap = _fixed_rows(n, width)
            pad_to = width
            size = n * width
            prepared = None
        else:  # no truncation: rows of capacity 3 tokens per byte (+ specials), packed, unpadded
            prepared = [_prepare(c, what[k]) for k, c in enumerate(cols)]
            nbytes = np.diff(prepared[0][1]) + (np.diff(prepared[1][1]) if pair else 0)
            row_cap = 3 * nbytes + nsp
            out_off = np.zeros(n, np.int64)
            np.cumsum(row_cap[:-1], out=out_off[1:])
            size = int(row_cap.sum())
            pad_to = 0
            width = None
        from prepjit.runtime import outputs  # large buffers on recycled memory (see prepjit.runtime.outputs)

        ids, types, mask = (outputs.empty((max(size, 1),), dtype) for _ in range(3))
        lens_status = np.zeros((2, n), np.int64)
        lens, status = lens_status
        kernel = load_kernel(dtype.itemsize * 8)
        wbytes = 6 * self.max_input_chars_per_word + 16  # the word, then the run of marks (see text_kernel)
        # Chunks of samples are rows of the native batch driver (prepjit.runtime.batch): this thread encodes a
        # chunk's texts and publishes its arguments; worker threads tokenize published chunks without taking the
        # GIL, each word buffer and truncation scratch in the worker's own arena (relocated slots).
        ragged = padding is False and not flat  # rows returned as views, made chunk by chunk as chunks finish
        wspace = -(-wbytes // 64) * 64
        slot, relocs = _batch_slots()
        common = self._batch_row(pair, add, trunc, budget, pad_to, wspace).copy()
        common[slot["ids"]], common[slot["types"]], common[slot["mask"]] = addr(ids), addr(types), addr(mask)
        argtab = np.repeat(common[None], nchunks, 0)
        rows_at = [(slot[name], addr(arr)) for name, arr in (("out_off", out_off), ("row_cap", row_cap),
                                                            ("lens", lens), ("status", status))]
        need = wspace + max(budget, 1) * dtype.itemsize
        rows: tuple = ([], [], [])  # ragged output: id, type-id and mask rows, extended as chunks finish
        at = argtab.ctypes.data
        cols_at = [(c, what[j]) for j, c in enumerate(cols)]
        relocs_at = addr(relocs)
        kernel_at, row_bytes = kernel.address, 8 * len(ARGS)
        da, oa, db, ob, end = slot["data_a"], slot["off_a"], slot["data_b"], slot["off_b"], slot["row_end"]

        def prepare(k):
            lo, hi = chunks[k]
            args = argtab[k]
            for j, base in rows_at:
                args[j] = base + 8 * lo  # per-row arrays from the chunk's first row
            args[end] = hi - lo
            if prepared is None:
                data = [_prepare(c[lo:hi], w, lo) for c, w in cols_at]
                args[da], args[oa] = addr(data[0][0]), addr(data[0][1])
                args[db], args[ob] = addr(data[-1][0]), addr(data[-1][1])
            else:
                data = prepared
                args[da], args[oa] = addr(data[0][0]), addr(data[0][1]) + 8 * lo
                args[db], args[ob] = addr(data[-1][0]), addr(data[-1][1]) + 8 * lo
            return kernel_at, at + k * row_bytes, relocs_at, 2, need, data

        if ragged:  # mask rows (and a single sequence's type ids) are constant: shared rows (_constant_rows)
            ones = _constant_rows_upto(1, width, dtype)
            zeros = None if pair else _constant_rows_upto(0, width, dtype)

        def finished(k):
            lo, hi = chunks[k]
            _ragged_rows(rows, ids, types, ones, zeros, out_off[lo:hi], lens[lo:hi])

        failures: list = []
        native_batch.run(prepare, 0, nchunks, min(workers, nchunks), pool(workers - 1) if workers > 1 else None,
                         failures, finished if ragged else None)
        if failures:  # the first bad sample's error (chunks are prepared in order), as a sequential run would raise
            raise failures[0][1]
        bad = np.flatnonzero(status)
        if bad.size:
            i = int(bad[0])
            if status[i] == STATUS_TOO_LONG:
                raise ValueError(f"sample {i}: the encoding is longer than max_length={max_length} and truncation "
                                 f"is off; pass truncation=True, or padding='longest'/False")
            if status[i] == STATUS_TRUNC:
                raise ValueError(f"sample {i}: truncation={opts['truncation']!r} cannot fit max_length="
                                 f"{max_length}: the sequence to truncate is too short")
            raise RuntimeError(f"sample {i}: tokenizer kernel status {status[i]}")  # pragma: no cover
        if not flat:
            shaped = {k: v[:size].reshape(n, width) for k, v in
                      (("input_ids", ids), ("token_type_ids", types), ("attention_mask", mask))}
            if padding == "max_length":
                return shaped
            if padding == "longest":
                L = min(width, _round_up(int(lens.max()) if n else 0, mult))
                return {k: np.ascontiguousarray(v[:, :L]) for k, v in shaped.items()}
            # ragged rows: views of each row's tokens in the (N, width) buffers, made as chunks finished
            return dict(zip(names, rows))
        if padding == "longest":
            L = _round_up(int(lens.max()) if n else 0, mult)
            sel = np.arange(L) < lens[:, None]
            src = (out_off[:, None] + np.arange(L))[sel]
            res = {}
            for k, v, fill in (("input_ids", ids, self.pad_id), ("token_type_ids", types, self.pad_type_id),
                               ("attention_mask", mask, 0)):
                r = np.full((n, L), fill, dtype)
                r[sel] = v[src]
                res[k] = r
            return res
        src = np.repeat(out_off - np.concatenate(([0], np.cumsum(lens)[:-1])), lens) + np.arange(int(lens.sum()))
        ls = lens.tolist()
        return {"input_ids": _split(ids[src], lens),
                "token_type_ids": _split(types[src], lens) if pair else list(map(
                    _constant_rows(0, set(ls), dtype).__getitem__, ls)),
                "attention_mask": list(map(_constant_rows(1, set(ls), dtype).__getitem__, ls))}


def _ragged_rows(rows: tuple, ids: np.ndarray, types: np.ndarray, ones, zeros, starts: np.ndarray,
                 lens: np.ndarray) -> None:
    """Append a chunk of unpadded samples to ``rows`` ([id rows], [type-id rows], [mask rows]): views of the rows'
    tokens, and shared constant rows indexed by length (:func:`_constant_rows_upto`): ``ones`` for masks,
    ``zeros`` for a single sequence's type ids (None for pairs, whose type ids are views too)."""
    ls = lens.tolist()
    rows[0].extend(_views(ids, starts, lens))
    rows[1].extend(_views(types, starts, lens) if zeros is None else map(zeros.__getitem__, ls))
    rows[2].extend(map(ones.__getitem__, ls))


def _views(flat: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> list:
    """The views ``flat[start:start + len]`` (a comprehension: a fifth faster than mapping slices)."""
    return [flat[a:b] for a, b in zip(starts.tolist(), (starts + lens).tolist())]


def _constant_rows(value: int, lengths, dtype) -> dict:
    """{length: row} for rows of one value (unpadded masks are all 1s, a single sequence's type ids all 0s):
    read-only views of one array, each shared by every row of its length. (A fresh view a row made these two
    lists two thirds of the GIL-holding work of an unpadded batch.)"""
    lengths = list(lengths)
    base = np.full(max(lengths, default=0), value, dtype)
    base.flags.writeable = False
    return {k: base[:k] for k in lengths}


@lru_cache(maxsize=16)
def _constant_rows_upto(value: int, width: int, dtype) -> tuple:
    """:func:`_constant_rows` for every length 0..width, as a tuple indexed by length (the same read-only rows for
    every batch of that width: making them anew took ~50 µs, a sixth of an unpadded batch's serial setup)."""
    rows = _constant_rows(value, range(width + 1), dtype)
    return tuple(rows[k] for k in range(width + 1))


def _split(flat: np.ndarray, lens: np.ndarray) -> list:
    ends = np.cumsum(lens).tolist()
    return [flat[a:b] for a, b in zip([0] + ends[:-1], ends)]


_TABLES_SOURCE = b""


def _cached_tables(key_parts: tuple, build) -> dict:
    """Tables built once and kept in prepjit's disk cache next to the compiled code (npz payloads)."""
    import io

    from prepjit.kernels import text as K
    from prepjit.lowering.text_kernel import kernel_key

    global _TABLES_SOURCE
    if not _TABLES_SOURCE:
        _TABLES_SOURCE = hashlib.sha256(open(K.__file__, "rb").read()).digest()
    from prepjit.runtime.cache import get_cache

    h = hashlib.sha256(kernel_key(64).encode())
    h.update(_TABLES_SOURCE)  # the table builders' own code: a new table layout is a new entry
    for p in key_parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    key = h.hexdigest()
    store = get_cache()
    entry = store.load(key)
    if entry is not None:
        try:
            with np.load(io.BytesIO(entry.payload)) as z:
                return {k: z[k] for k in z.files}
        except Exception:  # noqa: BLE001 - an unreadable entry is rebuilt
            pass
    arrays = {k: np.asarray(v) for k, v in build().items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    store.store(key, buf.getvalue(), {"function": f"prepjit.text tables ({key_parts[0]})", "target": "cpu",
                                      "specialization": []})
    return arrays


_EMPTY = np.zeros(1, np.uint8)  # stands for an empty text (a valid pointer the kernel never reads)
_scratch = threading.local()  # per-thread word buffer and pair scratch of single-sample calls
_OPTIONS: dict = {}  # options attribute text -> dict


def _id_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.int64), np.dtype(np.int32)):
        raise TypeError(f"tokenizer dtype must be int64 or int32, got {dt}")
    return dt


def _options(max_length, padding, truncation, pad_to_multiple_of, add_special_tokens, pair) -> dict:
    if padding is True:
        padding = "longest"
    if padding in (None, "do_not_pad"):
        padding = False
    if truncation in (None, "do_not_truncate"):
        truncation = False
    if padding not in ("max_length", "longest", False):
        raise ValueError(f"padding must be 'max_length', 'longest' or False, got {padding!r}")
    if not isinstance(truncation, (bool, str)) or truncation not in TRUNCATION:
        raise ValueError(f"truncation must be True, False, 'longest_first', 'only_first' or 'only_second', "
                         f"got {truncation!r}")
    if truncation == "only_second" and not pair:
        raise ValueError("truncation='only_second' needs a text pair")
    nsp = (3 if pair else 2) if add_special_tokens else 0
    if (truncation or padding == "max_length") and max_length is None:
        raise ValueError("max_length is required with truncation or padding='max_length'")
    if max_length is not None:
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 0:
            raise ValueError(f"max_length must be a non-negative int, got {max_length!r}")
        if truncation and max_length < nsp:
            raise ValueError(f"max_length={max_length} leaves no room for the {nsp} special tokens")
    if pad_to_multiple_of is not None and (not isinstance(pad_to_multiple_of, (int, np.integer))
                                           or pad_to_multiple_of <= 0):
        raise ValueError(f"pad_to_multiple_of must be a positive int, got {pad_to_multiple_of!r}")
    return {"max_length": None if max_length is None else int(max_length), "padding": padding,
            "truncation": truncation if truncation in (False, "only_first", "only_second") else "longest_first",
            "pad_to_multiple_of": None if pad_to_multiple_of is None else int(pad_to_multiple_of),
            "add_special_tokens": bool(add_special_tokens)}


def _select(out: dict, want_mask: bool, want_types: bool) -> dict:
    res = {"input_ids": out["input_ids"]}
    if want_types:
        res["token_type_ids"] = out["token_type_ids"]
    if want_mask:
        res["attention_mask"] = out["attention_mask"]
    return res


CHUNK_MAX = 128  # texts per chunk (a row of the batch driver), at most
CHUNKS_PER_WORKER = 16  # at least, where the batch is large enough: the last chunks balance the threads


@cache
def _batch_slots() -> tuple:
    """({argument name: slot}, the relocated slots (word buffer, truncation scratch)) of the tokenizer kernel."""
    from prepjit.lowering.text_kernel import ARGS

    slot = {a: k for k, a in enumerate(ARGS)}
    return slot, np.array([slot["wbuf"], slot["scratch"]], np.int64)


@lru_cache(maxsize=32)
def _chunking(n: int, workers: int) -> list:
    """[(lo, hi)]: the chunks of a batch of n texts. With several workers, the last texts (one full chunk a
    worker) go in quarter-size chunks, so that the threads finish within a small chunk of each other."""
    size = min(CHUNK_MAX, max(16, -(-n // (CHUNKS_PER_WORKER * workers))))
    tail = min(n, workers * size) if workers > 1 else 0
    return list(itertools.pairwise([*range(0, n - tail, size), *range(n - tail, n, max(4, size // 4)), n]))


@lru_cache(maxsize=32)
def _fixed_rows(n: int, width: int) -> tuple:
    """(row offsets, row capacities) of n rows of ``width`` tokens (read-only: shared by batches of that size)."""
    out_off = np.arange(n, dtype=np.int64) * width
    row_cap = np.full(n, width, np.int64)
    out_off.flags.writeable = row_cap.flags.writeable = False
    return out_off, row_cap

def _prepare(texts, what: str, first: int = 0):
    """Samples (str or UTF-8 bytes) → (uint8 buffer, int64 offsets). Errors name the sample (``first`` + index)."""
    try:  # the common case, all str: no Python-level loop
        if all(map(str.isascii, texts)):  # one encode of the whole batch; byte offsets = character offsets
            joined = "".join(texts).encode("ascii")
            offs = np.zeros(len(texts) + 1, np.int64)
            np.cumsum(np.array(list(map(len, texts)), np.int64), out=offs[1:])
            return (np.frombuffer(joined, np.uint8) if joined else np.zeros(1, np.uint8)), offs
        enc = list(map(str.encode, texts))
        joined = b"".join(enc)
        offs = np.zeros(len(enc) + 1, np.int64)
        np.cumsum(np.array(list(map(len, enc)), np.int64), out=offs[1:])
        return (np.frombuffer(joined, np.uint8) if joined else np.zeros(1, np.uint8)), offs
    except (TypeError, UnicodeEncodeError):
        pass
    enc = []
    for i, t in enumerate(texts):
        tt = type(t)
        if tt is str:
            try:
                enc.append(t.encode("utf-8"))
            except UnicodeEncodeError as e:
                raise ValueError(f"sample {first + i}: {what} is not valid Unicode ({e.reason} at index "
                                 f"{e.start})") from None
        elif tt is bytes:
            enc.append(t)
        elif isinstance(t, (str, bytes, bytearray, memoryview)):
            enc.append(str(t).encode("utf-8") if isinstance(t, str) else bytes(t))
        else:
            raise TypeError(f"sample {first + i}: {what} must be str or bytes, got {type(t).__name__}")
    joined = b"".join(enc)
    offs = np.zeros(len(enc) + 1, np.int64)
    np.cumsum(np.array(list(map(len, enc)), np.int64), out=offs[1:])
    if any(type(t) is not str for t in texts):  # bytes: must be valid UTF-8 sample by sample
        _check_utf8(joined, offs, enc, what, first)
    buf = np.frombuffer(joined, np.uint8) if joined else np.zeros(1, np.uint8)
    return buf, offs


def _check_utf8(joined: bytes, offs: np.ndarray, enc: list, what: str, first: int = 0):
    try:
        joined.decode("utf-8")
        arr = np.frombuffer(joined, np.uint8)
        inner = offs[1:-1][offs[1:-1] < len(joined)]
        ok = not inner.size or not np.any((arr[inner] & 0xC0) == 0x80)
        # a valid whole whose samples start at character boundaries: every sample is valid on its own
    except UnicodeDecodeError:
        ok = False
    if ok:
        return
    for i, b in enumerate(enc):
        try:
            b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"sample {first + i}: {what} is not valid UTF-8 ({e.reason} at byte {e.start}); decode it "
                             f"with errors='replace' first to tokenize U+FFFD as HF does") from None


# -- @jit_preprocess integration --------------------------------------------------------------------------------
def host_tokenize(fingerprint: str, options: str, dtype, *texts) -> np.ndarray:
    """``text.bert_tokenize``'s host implementation: one sample → (3, L) [ids, type ids, mask]."""
    opts = _OPTIONS.get(options)
    if opts is None:
        opts = _OPTIONS[options] = json.loads(options)
    return _REGISTRY[fingerprint]._encode_one(texts, opts, np.dtype(dtype))


def _row_selectors(c):
    """For a traced function that only tokenizes: (host op, [row per output leaf]); else None."""
    from prepjit.ir import dims as D

    from prepjit.compiler.passes.fuse_text import fuse_text
    from prepjit.ir.core import clone_function

    fn = clone_function(c.traced)
    fuse_text(fn)  # the chain as the one op the batch path runs
    hosts = [op for op in fn.ops if op.name == "text.bert_tokenize"]
    if len(hosts) != 1:
        return None
    host = hosts[0]
    if [fn.inputs.index(o) for o in host.operands] != list(range(len(fn.inputs))):
        return None
    L = 7
    probe = np.arange(3 * L, dtype=np.int64).reshape(3, L).astype(host.result.type.dtype)
    env = {host.result: probe}
    for op in fn.ops:
        if op is host or op.opdef.has("terminator"):
            continue
        if op.opdef.has("host") or op.opdef.reference is None or not all(v in env for v in op.operands):
            return None
        if any(isinstance(v, D.Dim) for v in op.attrs.values()):
            return None  # size expressions: not a plain row selection
        try:
            env[op.result] = np.asarray(op.opdef.reference(*[env[v] for v in op.operands], **op.attrs))
        except Exception:
            return None
    rows = []
    for v in fn.outputs:
        r = env.get(v)
        if r is None or r.shape != (L,) or r.dtype != probe.dtype:
            return None
        k = int(r[0]) // L
        if not np.array_equal(r, probe[k]):
            return None
        rows.append(k)
    return host, rows


def batch_text(jf, cols, threads):
    """``JitFunction.batch`` for functions that only tokenize: one native pass over all samples (per thread),
    outputs written straight into (N, L) rows. Returns None (the generic path) for anything else."""
    n = len(cols[0])
    if n == 0:
        return None
    try:
        sample = [jf._to_numpy(c[0], j) if not isinstance(c[0], str) else c[0].encode("utf-8", "surrogatepass")
                  for j, c in enumerate(cols)]
    except TypeError:  # the generic path reports it, naming the sample
        return None
    if not all(isinstance(a, bytes) for a in sample):
        return None
    from prepjit.api import _key

    key = _key(sample)
    exe = jf._execs.get(key) or jf._specialize(sample, key)
    plan = getattr(exe, "text_batch", False)
    if plan is False:
        plan = exe.text_batch = _batch_plan(jf, exe)  # once per specialization
    if plan is None:
        return None
    tok, opts, dtype, rows, tree = plan
    try:
        out = tok._encode(cols, opts, dtype, threads)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{jf.name}.batch(): {e}") from None
    names = ("input_ids", "token_type_ids", "attention_mask")
    return output_structure(tree, [out[names[k]] for k in rows])


def _batch_plan(jf, exe):
    """(tokenizer, options, id dtype, [row per output leaf], output tree) of a specialization that only
    tokenizes, for :func:`batch_text`; None for anything else."""
    comp = next((c for c in jf._compiled.values() if c.program is exe.program), None)
    if comp is None:
        return None
    sel = _row_selectors(comp)
    if sel is None:
        return None
    host, rows = sel
    return (_REGISTRY[host.attrs["tokenizer"]], json.loads(host.attrs["options"]), np.dtype(host.attrs["dtype"]),
            rows, comp.traced.body.terminator.attrs["tree"])
