"""Text fusion: rewrite each BERT chain of the ``text`` dialect into one ``text.bert_tokenize`` kernel op.

The pattern, from each ``text.mask`` back to the function's text arguments::

    text.mask ← text.pad ← text.post_process ← text.truncate ← (text.wordpiece ← text.pre_tokenize
                                                                ← text.normalize ← text.split_special ← %arg) × 1|2

with one tokenizer throughout and the normalizer flags that tokenizer was built with. The fused op takes the
text arguments directly and carries the options the chain's attributes spell, so it lowers to the native
tokenizer kernel. An intermediate value with several users (e.g. CSE merged the stages two tokenizer calls on
the same text share) is recomputed inside each fused op rather than materialized: every chain is matched from
its own ``text.mask``, and the stages left without users are dropped. A chain that does not match is an error
(``!text.*`` values are never lowered).
"""
from __future__ import annotations

import json

from prepjit.compiler.passes.dce import dce
from prepjit.errors import UnsupportedError, at
from prepjit.ir.core import Function, Operation

_STAGES = ("text.wordpiece", "text.pre_tokenize", "text.normalize", "text.split_special")
_FLAGS = ("clean_text", "handle_chinese_chars", "strip_accents", "lowercase")


def _producer(v, name):
    op = v.owner
    return op if op is not None and op.name == name else None


def _sequence(v, fn: Function, fingerprint: str, tok):
    """The text argument a wordpiece value was computed from by the single-sequence stages, or None."""
    for name in _STAGES:
        op = _producer(v, name)
        if op is None or op.attrs.get("tokenizer", fingerprint) != fingerprint:
            return None
        if name == "text.normalize" and any(op.attrs[f] != getattr(tok, f) for f in _FLAGS):
            return None
        v = op.operands[0]
    return v if v.owner is None and v in fn.inputs else None


def _match(mask: Operation, fn: Function):
    """(text arguments, options) of the chain ending in ``mask``, or None."""
    from prepjit.text import _REGISTRY

    pad = _producer(mask.operands[0], "text.pad")
    post = pad and _producer(pad.operands[0], "text.post_process")
    trunc = post and _producer(post.operands[0], "text.truncate")
    if trunc is None or pad.attrs["tokenizer"] != post.attrs["tokenizer"]:
        return None
    fp = post.attrs["tokenizer"]
    tok = _REGISTRY.get(fp)
    if tok is None:
        return None
    texts = [_sequence(v, fn, fp, tok) for v in trunc.operands]
    if any(t is None for t in texts):
        return None
    add = bool(post.attrs["add_special_tokens"])
    nsp = (len(texts) + 1) if add else 0
    max_length = pad.attrs["max_length"] if pad.attrs["max_length"] >= 0 else None
    truncation = trunc.attrs["truncation"]
    if truncation != "none" and (max_length is None or trunc.attrs["budget"] != max_length - nsp):
        return None  # the kernel derives the budget from max_length
    opts = {"max_length": max_length, "padding": False if pad.attrs["padding"] == "none" else pad.attrs["padding"],
            "truncation": False if truncation == "none" else truncation,
            "pad_to_multiple_of": pad.attrs["pad_to_multiple_of"] or None, "add_special_tokens": add}
    return fp, texts, json.dumps(opts, sort_keys=True)


def fuse_text(fn: Function) -> bool:
    changed = False
    replace: dict = {}
    ops = []
    for op in fn.ops:
        op.operands = [replace.get(v, v) for v in op.operands]
        if op.name != "text.mask":
            ops.append(op)
            continue
        m = _match(op, fn)
        if m is None:
            raise UnsupportedError(at(op.loc, "text.mask: its operand is not a BERT chain of one tokenizer "
                                              "(split_special, normalize, pre_tokenize, wordpiece, truncate, "
                                              "post_process, pad) that fuse_text can turn into a kernel"))
        fp, texts, options = m
        fused = Operation("text.bert_tokenize", texts, [op.result.type],
                          {"tokenizer": fp, "options": options, "dtype": op.attrs["dtype"],
                           "length": op.attrs["length"], "sym_len": op.attrs["sym_len"]}, op.loc)
        replace[op.result] = fused.result
        ops.append(fused)
        changed = True
    fn.body.ops = ops
    if changed:
        dce(fn)  # the stages no other chain uses
    return changed
