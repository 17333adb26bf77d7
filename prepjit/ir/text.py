"""The ``text`` dialect: tokenization of string arguments.

``text.bert_tokenize`` takes one text argument (or two, for sentence pairs) and yields a ``(3, L)`` integer
tensor — rows ``input_ids``, ``token_type_ids``, ``attention_mask`` — in the requested dtype. It is a *host*
op like ``image.decode``: the call prologue runs it (one native kernel over the sample's UTF-8 bytes, see
``prepjit.lowering.text_kernel``) before the main kernels, and its length is a fresh size symbol unless padding to
``max_length`` with truncation makes it static. All of BERT's stages (clean/normalize, pre-tokenize, WordPiece,
special tokens, truncation, padding, masks) are fused into that one kernel; the attributes name the tokenizer
(a content fingerprint, so cached code never mixes vocabularies) and the options.
"""
from __future__ import annotations

import numpy as np

from prepjit.errors import at
from prepjit.ir import dims as D
from prepjit.ir.core import Inferred, OpDef, define
from prepjit.ir.types import BYTES, TensorType


def _tokenize_infer(types, attrs, loc):
    if not types or len(types) > 2 or any(t != BYTES for t in types):
        raise TypeError(at(loc, "tokenize expects one or two text arguments of the jit function"))
    length = attrs["length"] if attrs["length"] >= 0 else D.sym(attrs["sym_len"])
    return Inferred([TensorType(np.dtype(attrs["dtype"]), (3, length))])


def _tokenize_reference(*texts, tokenizer, options, dtype, length, sym_len):
    from prepjit.text import host_tokenize

    return host_tokenize(tokenizer, options, dtype, *texts)


define(OpDef("text.bert_tokenize", None, ("tokenizer", "options", "dtype", "length", "sym_len"),
             frozenset({"text", "host"}), _tokenize_infer, _tokenize_reference))
