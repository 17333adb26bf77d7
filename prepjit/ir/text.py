"""The ``text`` dialect: tokenization of string arguments, one op per BERT stage, and their fused form.

A tokenizer call traces into a chain (per text argument, then over the one or two sequences)::

    %s = text.split_special %text {tokenizer}        : (!py.bytes) -> !text.segments   special tokens in the raw text
    %n = text.normalize %s {clean_text, ...}          : -> !text.segments    cleanup, CJK padding, NFD/strip, lowercase
    %w = text.pre_tokenize %n                         : -> !text.words       whitespace split, punctuation isolated
    %i = text.wordpiece %w {tokenizer}                : -> !text.ids         greedy longest-match-first WordPiece
    %q = text.truncate %i[, %j] {truncation, budget}  : -> !text.seqs        HF's truncation strategies
    %e = text.post_process %q {tokenizer, add_special_tokens} : -> !text.encoding   [CLS] A [SEP] B [SEP], type ids
    %p = text.pad %e {tokenizer, padding, max_length, pad_to_multiple_of} : -> !text.encoding
    %r = text.mask %p {dtype, length, sym_len}        : -> tensor<3x?xsi64>  rows: ids, type ids, attention mask

Each op has a type rule and a pure-Python reference (``prepjit.kernels.text_reference``), so the reference
interpreter runs the unfused chain. Intermediate values (``!text.*``) are never lowered: the ``fuse_text`` pass
(``prepjit.compiler.passes.fuse_text``) rewrites each chain into ``text.bert_tokenize``, a *host* op like
``image.decode`` that the call prologue runs as one native kernel over the sample's UTF-8 bytes
(``prepjit.lowering.text_kernel``). Its length is a fresh size symbol unless padding to ``max_length`` with
truncation makes it static; its attributes name the tokenizer (a content fingerprint, so cached code never mixes
vocabularies) and the options.
"""
from __future__ import annotations

import numpy as np

from prepjit.errors import at
from prepjit.ir import dims as D
from prepjit.ir.core import Inferred, OpDef, define
from prepjit.ir.types import BYTES, TensorType, TextType

SEGMENTS, WORDS, IDS, SEQS, ENCODING = (TextType(k) for k in ("segments", "words", "ids", "seqs", "encoding"))
TRUNCATIONS = ("none", "longest_first", "only_first", "only_second")
PADDINGS = ("none", "max_length", "longest")


def _ref(name):
    def reference(*args, **attrs):
        from prepjit.kernels import text_reference

        return getattr(text_reference, name)(*args, **attrs)
    return reference


def _unary(name, operand, result, check=None):
    def infer(types, attrs, loc):
        if len(types) != 1 or types[0] != operand:
            raise TypeError(at(loc, f"{name} expects one {operand} operand, got {', '.join(map(str, types))}"))
        if check:
            check(attrs, loc)
        return Inferred([result])
    return infer


def _truncate_infer(types, attrs, loc):
    if not 1 <= len(types) <= 2 or any(t != IDS for t in types):
        raise TypeError(at(loc, "text.truncate expects one or two !text.ids operands"))
    if attrs["truncation"] not in TRUNCATIONS or (attrs["truncation"] == "only_second" and len(types) != 2):
        raise TypeError(at(loc, f"text.truncate: bad truncation {attrs['truncation']!r}"))
    return Inferred([SEQS])


def _pad_check(attrs, loc):
    if attrs["padding"] not in PADDINGS or (attrs["padding"] == "max_length" and attrs["max_length"] < 0):
        raise TypeError(at(loc, f"text.pad: bad padding {attrs['padding']!r} / max_length {attrs['max_length']}"))


def _rows_type(attrs):
    length = attrs["length"] if attrs["length"] >= 0 else D.sym(attrs["sym_len"])
    return TensorType(np.dtype(attrs["dtype"]), (3, length))


def _mask_infer(types, attrs, loc):
    if types != [ENCODING]:
        raise TypeError(at(loc, "text.mask expects one !text.encoding operand"))
    return Inferred([_rows_type(attrs)])


TRAITS = frozenset({"text"})
define(OpDef("text.split_special", 1, ("tokenizer",), TRAITS, _unary("text.split_special", BYTES, SEGMENTS),
             _ref("split_special")))
define(OpDef("text.normalize", 1, ("clean_text", "handle_chinese_chars", "strip_accents", "lowercase"), TRAITS,
             _unary("text.normalize", SEGMENTS, SEGMENTS), _ref("normalize")))
define(OpDef("text.pre_tokenize", 1, (), TRAITS, _unary("text.pre_tokenize", SEGMENTS, WORDS), _ref("pre_tokenize")))
define(OpDef("text.wordpiece", 1, ("tokenizer",), TRAITS, _unary("text.wordpiece", WORDS, IDS), _ref("wordpiece")))
define(OpDef("text.truncate", None, ("truncation", "budget"), TRAITS, _truncate_infer, _ref("truncate")))
define(OpDef("text.post_process", 1, ("tokenizer", "add_special_tokens"), TRAITS,
             _unary("text.post_process", SEQS, ENCODING), _ref("post_process")))
define(OpDef("text.pad", 1, ("tokenizer", "padding", "max_length", "pad_to_multiple_of"), TRAITS,
             _unary("text.pad", ENCODING, ENCODING, _pad_check), _ref("pad")))
define(OpDef("text.mask", 1, ("dtype", "length", "sym_len"), TRAITS, _mask_infer, _ref("mask")))


# -- the fused form -----------------------------------------------------------------------------------------------
def _tokenize_infer(types, attrs, loc):
    if not types or len(types) > 2 or any(t != BYTES for t in types):
        raise TypeError(at(loc, "tokenize expects one or two text arguments of the jit function"))
    return Inferred([_rows_type(attrs)])


def _tokenize_reference(*texts, tokenizer, options, dtype, length, sym_len):
    from prepjit.text import host_tokenize

    return host_tokenize(tokenizer, options, dtype, *texts)


define(OpDef("text.bert_tokenize", None, ("tokenizer", "options", "dtype", "length", "sym_len"),
             frozenset({"text", "host"}), _tokenize_infer, _tokenize_reference))
