"""Runtime benchmarks: time to first result in a fresh process (cold vs warm cache) and DataLoader throughput.

    python benchmarks/bench_runtime.py [--reps 3] [--images 256] [--no-torch-compile] [--skip-startup|--skip-loader]

1. Time to first result. Each row is a fresh interpreter that imports its framework, builds the image eval
   pipeline (resize shorter side → 256 bilinear, center crop 224, scale to float32, normalize, CHW) and runs it
   once on a 480×640 photo; we time from before the framework import to the result (``first result``) and the
   whole process from ``subprocess`` start to exit (``process wall``). ``cold``: empty compile cache;
   ``warm``: the cache left by the cold run. Peers doing comparable work:
   - numba ``@njit(cache=True)``: the same pipeline (bilinear, no antialias: a simpler kernel) written as loops;
   - ``torch.compile`` (inductor, CPU) of the pipeline in torch ops, with a fresh / reused inductor cache.
   The text pipeline does not exist yet (another issue); it will be added here.
2. DataLoader throughput (images/s) for num_workers 0, 1, 2 (fork): a dataset of random-size HWC uint8 images,
   batch 32, collated by ``eval_tf.collate`` vs the same pipeline in torch ops (per-image
   ``F.interpolate(antialias=True)`` + crop + normalize, ``torch.stack``; torchvision v2's path), torch
   limited to 1 thread per process as DataLoader workers are.

Medians of ``--reps`` runs; the machine is shared and noisy.
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


def startup(reps: int, torch_compile: bool) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "bench_pipe.py"), "w") as f:
            f.write(PIPE)
        base = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, tmp, os.environ.get("PYTHONPATH", "")]))
        base.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode cached
        peers = [("prepjit", FIRST_PREPJIT, {"PREPJIT_CACHE_DIR": "pj"}),
                 ("numba cache=True", FIRST_NUMBA, {"NUMBA_CACHE_DIR": "nb"})]
        if torch_compile:
            peers.append(("torch.compile", FIRST_TORCH_COMPILE, {"TORCHINDUCTOR_CACHE_DIR": "ti",
                                                                "TORCHINDUCTOR_FX_GRAPH_CACHE": "1"}))
        for name, source, cache_vars in peers:
            script = os.path.join(tmp, f"first_{name.split()[0].replace('.', '_')}.py")
            with open(script, "w") as f:
                f.write(source)
            _fresh(script, tmp, dict(base, **{k: os.path.join(tmp, f"{v}-prime") for k, v in cache_vars.items()}))
            cold, warm = [], []
            n = reps if name != "torch.compile" else max(1, min(reps, 2))
            for i in range(n):
                env = dict(base, **{k: os.path.join(tmp, f"{v}{i}") for k, v in cache_vars.items()})
                cold.append(_fresh(script, tmp, env))   # empty cache
                warm.append(_fresh(script, tmp, env))   # the cache the cold run left
                if name == "prepjit":
                    assert cold[-1]["stats"]["compiles"] == 1 and warm[-1]["stats"]["compiles"] == 0, warm[-1]
            results[name] = {k: {m: statistics.median(r[m] for r in rs) for m in ("call", "first", "wall")}
                             for k, rs in (("cold", cold), ("warm", warm))}
            results[name]["n"] = n
            print(f"  {name:18s} first call: cold {results[name]['cold']['call'] * 1e3:7.0f} ms, warm "
                  f"{results[name]['warm']['call'] * 1e3:7.0f} ms; import → result: cold "
                  f"{results[name]['cold']['first'] * 1e3:7.0f} ms, warm {results[name]['warm']['first'] * 1e3:7.0f} ms "
                  f"(median of {n})", file=sys.stderr)
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
        pj = s["prepjit"]
        print("## Time to first result, fresh process (image eval pipeline, 480×640 photo)\n")
        print("`first call`: the first call of the compiled function (compile or cache load + run); `import → "
              "result`: from before importing the framework (numpy, torch) to the first result; `process`: the "
              f"whole interpreter, start to exit. Medians of {pj['n']} fresh processes.\n")
        print("| implementation | cache | first call | import → result | process |")
        print("|---|---|---:|---:|---:|")
        for name, r in s.items():
            for k in ("cold", "warm"):
                print(f"| {name} | {k} | {r[k]['call'] * 1e3:.0f} ms | {r[k]['first'] * 1e3:.0f} ms | "
                      f"{r[k]['wall'] * 1e3:.0f} ms |")
        print(f"\nprepjit cold / warm: {pj['cold']['call'] / pj['warm']['call']:.1f}× (first call), "
              f"{pj['cold']['first'] / pj['warm']['first']:.1f}× (import → result), "
              f"{pj['cold']['wall'] / pj['warm']['wall']:.1f}× (process)")
        for name in s:
            if name != "prepjit":
                print(f"prepjit warm vs {name} warm: {s[name]['warm']['call'] / pj['warm']['call']:.2f}× (first call), "
                      f"{s[name]['warm']['first'] / pj['warm']['first']:.2f}× (import → result), "
                      f"{s[name]['warm']['wall'] / pj['warm']['wall']:.2f}× (process)")
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
