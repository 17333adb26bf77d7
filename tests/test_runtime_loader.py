"""prepjit's ELF object loader (prepjit/runtime/elfload.py) against LLJIT, and the warm path that uses it.

Every kernel of a corpus (elementwise ufuncs and casts, layout, reductions, the image pipelines, the text
kernel) is loaded both ways from the same object code and run through the same prologue: results must be
identical. Hand-written LLVM IR covers the relocation kinds our kernels rarely produce (calls into libm through
stubs, GOT loads, absolute pointers in data, jump tables). Malformed objects must be refused cleanly.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import prepjit as pj
from prepjit import image as I
from prepjit.runtime import elfload, native
from prepjit.runtime import executable as X

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREPJIT_CACHE_DIR", str(tmp_path / "cache"))


def _corpus():
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((7, 33)).astype(np.float32)
    i16 = rng.integers(-300, 300, (5, 17), dtype=np.int16)
    u8 = rng.integers(0, 256, (5, 17), dtype=np.uint8)
    img = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)

    def elementwise(x):
        return np.log1p(np.abs(x)) * np.float32(2.5) - np.exp(-x * x) + np.sqrt(np.abs(x)) // 0.25

    def casts(x):
        return (x.astype(np.float64) * 1e3).astype(np.int32), (x > 0) & (x < 1), np.maximum(x, 0.5) % 0.75

    def integer(a, b):
        return a // 7 + (a % 5) * b.astype(np.int16) - np.minimum(a, b.astype(np.int16)), np.bitwise_xor(a, 0x5A)

    def layout(x):
        return np.concatenate([x.T[::-1], x.T[:, ::2]], axis=1).reshape(-1), np.transpose(x[1:, ::3] * 2)

    def reductions(x):
        return x.sum(axis=0), x.max(axis=1), x.mean(), np.prod(x[:2, :5], axis=1), (x > 0).any()

    def eval_tf(im):
        x = I.resize(im, 40, antialias=True)
        x = I.center_crop(x, 32)
        return I.to_chw(I.normalize(I.to_dtype(x, np.float32, scale=True), MEAN, STD))

    def train_tf(im):
        x = I.random_resized_crop(im, 24)
        return I.random_horizontal_flip(x)

    return [(elementwise, (f32,)), (casts, (f32,)), (integer, (i16, u8)), (layout, (f32,)), (reductions, (f32,)),
            (eval_tf, (img,)), (train_tf, (img,))]


def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()  # bit for bit, NaNs included


@pytest.mark.parametrize("fn,args", _corpus(), ids=lambda v: getattr(v, "__name__", ""))
def test_elf_loader_matches_lljit_on_the_corpus(fn, args, monkeypatch):
    monkeypatch.delenv("PREPJIT_LOADER", raising=False)
    jf = pj.jit_preprocess(fn)
    want = jf(*args)
    exe = next(iter(jf._execs.values()))
    assert exe.native.loader == "elf"  # the default path really uses the loader (no silent fallback)
    c = exe.compiled
    obj = c.object_code
    assert obj is not None
    texts = [X.spec_text(t) for t in c.input_types]
    via_elf = X.Executable(c, native.load_object(obj, "prepjit_entry"), jf.arg_names, texts)
    via_llvm = X.Executable(c, native._load_lljit(obj, "prepjit_entry"), jf.arg_names, texts)
    assert via_llvm.native.loader == "llvm"
    for seed in range(3):
        _same(via_elf.run(*args, _rng=(seed, 5)), via_llvm.run(*args, _rng=(seed, 5)))
    _same(via_elf.run(*args), want)


def test_text_kernel_loaded_by_elf_matches_lljit(monkeypatch):
    monkeypatch.delenv("PREPJIT_LOADER", raising=False)
    from prepjit.lowering import text_kernel as TK
    from prepjit.runtime.cache import get_cache

    # an earlier test may have loaded the kernel from another cache directory: load it through this one
    monkeypatch.setattr(TK, "_loaded", {})
    k = TK.load_kernel(64)
    assert k.loader == "elf"
    obj = get_cache().load(TK.kernel_key(64)).payload
    other = native._load_lljit(obj, TK.SYMBOL)
    from prepjit.text import BertTokenizer

    tok = BertTokenizer({t: i for i, t in enumerate(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "wor", "##ld", "!", ","])})
    texts = ["Hello, worlds!", "héllo   WORLD", "", "unknown words hello"]
    want = tok.batch(texts, max_length=12, padding="max_length", truncation=True)
    # the same kernel through LLJIT: swap the entry point under the tokenizer
    TK._loaded[64] = other
    tok._plans.clear()
    try:
        got = tok.batch(texts, max_length=12, padding="max_length", truncation=True)
        single = tok(texts[0], max_length=12, padding="max_length", truncation=True)
    finally:
        TK._loaded[64] = k
        tok._plans.clear()
    _same(got, want)
    _same(single, {n: v[0] for n, v in want.items()})


# -- hand-written IR: relocation kinds beyond what the corpus happens to use -----------------------------------
IR = r"""
declare double @cos(double)
declare ptr @memcpy(ptr, ptr, i64)
@table = internal constant [2 x ptr] [ptr @one, ptr @two]
@counter = internal global i64 0

define internal i64 @one() noinline { ret i64 11 }
define internal i64 @two() noinline { ret i64 22 }

define double @call_cos(double %x) { %r = call double @cos(double %x)  ret double %r }
define i64 @memcpy_address() { ret i64 ptrtoint (ptr @memcpy to i64) }
define i64 @via_table(i64 %i) {
  %p = getelementptr [2 x ptr], ptr @table, i64 0, i64 %i
  %f = load volatile ptr, ptr %p
  %r = call i64 %f()
  ret i64 %r
}
define i64 @bump() {
  %v = load i64, ptr @counter
  %n = add i64 %v, 1
  store i64 %n, ptr @counter
  ret i64 %n
}
define i64 @switch(i64 %x) {
  switch i64 %x, label %d [ i64 0, label %a  i64 1, label %b  i64 2, label %c  i64 3, label %e
                            i64 4, label %f  i64 5, label %g  i64 6, label %h ]
a: ret i64 100
b: ret i64 201
c: ret i64 302
e: ret i64 403
f: ret i64 504
g: ret i64 605
h: ret i64 706
d: ret i64 -1
}
"""


@pytest.fixture(scope="module")
def handmade():
    obj, _ = native.compile_object(IR)
    return obj


def _fn(loaded, name, restype, *argtypes):
    return ctypes.CFUNCTYPE(restype, *argtypes)(loaded.symbols[name])


def test_handmade_relocations(handmade):
    lo = elfload.load(handmade)
    assert _fn(lo, "call_cos", ctypes.c_double, ctypes.c_double)(0.5) == math.cos(0.5)  # libm through a stub
    libc = ctypes.CDLL(None)
    assert _fn(lo, "memcpy_address", ctypes.c_int64)() == ctypes.cast(libc.memcpy, ctypes.c_void_p).value  # GOT
    via_table = _fn(lo, "via_table", ctypes.c_int64, ctypes.c_int64)  # absolute pointers in relocated data
    assert (via_table(0), via_table(1)) == (11, 22)
    bump = _fn(lo, "bump", ctypes.c_int64)  # writable data stays writable, per mapping
    assert [bump(), bump(), bump()] == [1, 2, 3]
    assert elfload.load(handmade).symbols["bump"] != lo.symbols["bump"]
    sw = _fn(lo, "switch", ctypes.c_int64, ctypes.c_int64)  # jump table
    assert [sw(i) for i in range(-1, 9)] == [-1, 100, 201, 302, 403, 504, 605, 706, -1, -1]
    assert set(lo.symbols) >= {"call_cos", "memcpy_address", "via_table", "bump", "switch"}
    assert "one" not in lo.symbols  # internal symbols are not exported


def test_unresolved_symbol_is_refused():
    obj, _ = native.compile_object("declare void @prepjit_no_such_function()\n"
                                   "define void @f() { call void @prepjit_no_such_function()  ret void }")
    with pytest.raises(elfload.Unsupported, match="unresolved symbol 'prepjit_no_such_function'"):
        elfload.load(obj)


def test_unsupported_object_falls_back_to_lljit(monkeypatch):
    monkeypatch.delenv("PREPJIT_LOADER", raising=False)
    # a static constructor (.ctors): the loader would have to run it, so it refuses; LLJIT links the object
    obj, _ = native.compile_object("""
        declare i32 @getpid()
        @llvm.global_ctors = appending global [1 x { i32, ptr, ptr }] [{ i32, ptr, ptr } { i32 65535, ptr @init, ptr null }]
        @g = internal global i64 0
        define internal void @init() { %p = call i32 @getpid()  %q = sext i32 %p to i64  store i64 %q, ptr @g  ret void }
        define i64 @prepjit_entry(ptr %a) { %v = load i64, ptr @g  %r = add i64 %v, 1  ret i64 %r }
    """)
    with pytest.raises(elfload.Unsupported, match="ctors"):
        elfload.load(obj)
    nat = native.load_object(obj, "prepjit_entry")
    assert nat.loader == "llvm" and ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)(nat.address)(None) >= 1
    monkeypatch.setenv("PREPJIT_LOADER", "elf")
    with pytest.raises(elfload.Unsupported):
        native.load_object(obj, "prepjit_entry")


def test_loader_env_forces_lljit(monkeypatch):
    monkeypatch.setenv("PREPJIT_LOADER", "llvm")
    jf = pj.jit_preprocess(lambda x: x * 2 + 1)
    x = np.arange(10, dtype=np.int32)
    np.testing.assert_array_equal(jf(x), x * 2 + 1)
    assert next(iter(jf._execs.values())).native.loader == "llvm"


def test_malformed_objects_are_refused_cleanly(handmade):
    obj = handmade
    for n in list(range(0, 200, 7)) + list(range(len(obj) - 300, len(obj), 5)):
        with pytest.raises(elfload.Unsupported):
            elfload.load(obj[:n])
    assert elfload.load(obj).symbols  # the intact object loads
    # flip each byte of the ELF header and the section header table, and some of the symbol and relocation
    # tables: the loader either refuses or maps something self-consistent; it never raises anything else
    shoff = int.from_bytes(obj[0x28:0x30], "little")
    spots = list(range(0, 64)) + list(range(shoff, len(obj))) + list(range(len(obj) - 700, shoff, 3))
    refused = 0
    for i in spots:
        bad = bytearray(obj)
        bad[i] ^= 0xA5
        try:
            elfload.load(bytes(bad))
        except elfload.Unsupported:
            refused += 1
    assert refused > len(spots) // 4
    with pytest.raises(elfload.Unsupported, match="not a little-endian ELF64"):
        elfload.load(b"\x7fELF" + b"\x01" * 60)
    with pytest.raises(elfload.Unsupported):
        elfload.load(b"")


# -- the warm path -------------------------------------------------------------------------------------------
SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import prepjit as pj
    from prepjit import image as I

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
    def eval_tf(img):
        x = I.resize(img, 64, antialias=True)
        x = I.center_crop(x, 48)
        return I.to_chw(I.normalize(I.to_dtype(x, np.float32, scale=True), [0.5, 0.4, 0.3], [0.2, 0.3, 0.4]))

    img = np.random.default_rng(1).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    out = eval_tf(img)
    heavy = sorted(m for m in sys.modules if m.startswith(("llvmlite.binding", "prepjit.compiler.passes",
                                                           "prepjit.lowering.lower", "prepjit.lowering.llvm")))
    try:
        eval_tf(np.zeros((0, 5, 3), np.uint8))
        err = None
    except ValueError as e:
        err = str(e)
    print(json.dumps({"stats": eval_tf.stats, "heavy": heavy, "sum": float(out.astype(np.float64).sum()),
                      "bytes": out.tobytes().hex()[:4000], "err": err}))
""")


def _fresh(tmp_path, cache, env=None):
    script = tmp_path / "warm_script.py"
    script.write_text(SCRIPT)
    e = dict(os.environ, PYTHONPATH=ROOT, PREPJIT_CACHE_DIR=str(cache), **(env or {}))
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=e, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_warm_process_loads_neither_llvm_nor_the_compiler(tmp_path, monkeypatch):
    monkeypatch.delenv("PREPJIT_LOADER", raising=False)
    cache = tmp_path / "c"
    cold = _fresh(tmp_path, cache)
    assert cold["stats"]["compiles"] == 1 and "llvmlite.binding" in cold["heavy"]
    warm = _fresh(tmp_path, cache)
    assert warm["stats"]["compiles"] == 0 and warm["stats"]["disk_hits"] == 1
    assert warm["heavy"] == []  # no LLVM, no passes, no lowering: trace, key, read, map, call
    assert warm["bytes"] == cold["bytes"] and warm["err"] == cold["err"] and "warm_script.py:" in warm["err"]
    lljit = _fresh(tmp_path, cache, {"PREPJIT_LOADER": "llvm"})
    assert lljit["bytes"] == cold["bytes"] and lljit["stats"]["compiles"] == 0


def test_warm_path_without_memos_or_prologue_still_works(tmp_path):
    """Host memos deleted and the stored prologue stripped (an older entry): LLVM is asked, the prologue is
    regenerated from the program and written back."""
    from prepjit.runtime.cache import CompileCache

    cache = tmp_path / "c"
    cold = _fresh(tmp_path, cache)
    for p in (cache / "v1" / "host").iterdir():
        p.unlink()
    store = CompileCache(cache)
    # the function's entry (the resize-table kernel its prologue calls has its own)
    (e,) = [e for e in store.entries() if str(e["function"]).endswith("eval_tf")]
    entry = store.load(e["key"])
    meta = dict(entry.meta)
    assert "prologue" in meta
    del meta["prologue"]
    store.store(e["key"], entry.payload, meta)
    again = _fresh(tmp_path, cache)
    assert again["bytes"] == cold["bytes"] and again["stats"]["compiles"] == 0
    assert "llvmlite.binding" in again["heavy"] and "prepjit.lowering.lower" in again["heavy"]
    assert "prologue" in CompileCache(cache).load(e["key"]).meta
    warm = _fresh(tmp_path, cache)
    assert warm["heavy"] == [] and warm["bytes"] == cold["bytes"]


def _resize_a():
    def f(img):
        return I.resize(img, 8)  # line A
    return f


def _resize_b():
    def f(img):
        return I.resize(img, 8)  # line B
    return f


def test_prologue_of_another_function_with_the_same_ir_is_not_used():
    """Same computation at another source line: one cache entry (the key leaves locations out), but each
    function's error messages name its own line."""
    import inspect

    line_a = inspect.getsourcelines(_resize_a)[1] + 2
    line_b = inspect.getsourcelines(_resize_b)[1] + 2
    spec = pj.TensorSpec(np.uint8, (None, None, 3))
    fa = pj.jit_preprocess(signature=(spec,))(_resize_a())
    fb = pj.jit_preprocess(signature=(spec,))(_resize_b())
    img = np.zeros((10, 12, 3), np.uint8)
    np.testing.assert_array_equal(fa(img), fb(img))
    assert fa._last.key == fb._last.key and fb.stats["disk_hits"] == 1 and fb.stats["compiles"] == 0
    empty = np.zeros((0, 12, 3), np.uint8)
    with pytest.raises(ValueError, match=f"test_runtime_loader.py:{line_b}: resize"):
        fb(empty)
    fa2 = pj.jit_preprocess(signature=(spec,))(_resize_a())
    with pytest.raises(ValueError, match=f"test_runtime_loader.py:{line_a}: resize"):
        fa2(empty)
    assert fa2.stats["disk_hits"] == 1
