"""GPU eval pipeline benchmark: a batch of photos → (N, 3, 224, 224) float32, prepjit CUDA vs torch on CUDA.

    python benchmarks/bench_gpu.py [--batch 256] [--repeat 10]

Pipeline: resize(256, antialias) → center_crop(224) → to_dtype(float32, scale) → normalize → CHW, on
scikit-image's photos (cycled to the batch size). Rows:

* prepjit CUDA from host uint8 images (pinned staging, one H2D copy, one fused launch) and from torch CUDA uint8
  tensors (device resident, no copy), per batch and per image, GB/s (input + output bytes per second);
* torchvision v2 (``torchvision.transforms.v2.functional`` when installed, else the same torch ops) on CUDA
  tensors, one image at a time as torchvision runs them, then stacked;
* device-to-device copy bandwidth (the ceiling for a memory-bound kernel);
* the same pipeline on the CPU (prepjit ``.batch`` with all cores), and NVRTC compile time (cold) for both
  AOT architectures.

Runs without a GPU: the GPU rows print as skipped with the reason; the CPU and NVRTC rows still run.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()

    import skimage.data

    import prepjit as pj
    from prepjit import image as I
    from prepjit.runtime import cuda as C

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    def eval_tf(img):
        x = I.resize(img, 256, antialias=True)
        x = I.center_crop(x, 224)
        x = I.to_dtype(x, np.float32, scale=True)
        x = I.normalize(x, mean, std)
        return I.to_chw(x)

    sig = (pj.TensorSpec(np.uint8, (None, None, 3)),)
    cpu = pj.jit_preprocess(eval_tf, signature=sig)
    gpu = cpu.to("cuda")
    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    # distinct arrays (the staging deduplicates repeated array objects, as it does for weight tables)
    batch = [p.copy() for p in (photos * (args.batch // len(photos) + 1))[:args.batch]]
    in_bytes = sum(p.nbytes for p in batch)
    out_bytes = args.batch * 3 * 224 * 224 * 4

    def best(fn, sync=lambda: None, repeat=args.repeat):
        fn()
        sync()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            sync()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    rows = []

    def row(name, seconds, note=""):
        if seconds is None:
            rows.append(f"| {name} | – | – | – | {note} |")
        else:
            gbs = (in_bytes + out_bytes) / seconds / 1e9
            rows.append(f"| {name} | {seconds * 1e3:.2f} | {seconds / args.batch * 1e6:.1f} | {gbs:.1f} | {note} |")

    # NVRTC (no GPU needed): cold compile of the fused kernel for the AOT architectures
    try:
        text = gpu.source("cuda", example=(photos[0],))
        t0 = time.perf_counter()
        for arch in C.DEFAULT_AOT_ARCHS:
            C.compile_cubin(text, arch)
        nvrtc_ms = (time.perf_counter() - t0) * 1e3
        nvrtc_note = f"NVRTC {C.nvrtc_version()}: {nvrtc_ms:.0f} ms for {', '.join(C.DEFAULT_AOT_ARCHS)}"
    except Exception as e:  # noqa: BLE001 - report, do not fail the benchmark
        nvrtc_note = f"NVRTC unavailable: {e}"

    cpu_t = best(lambda: cpu.batch(batch), repeat=max(1, args.repeat // 5))
    no_device = C.describe_no_device()
    speedups = {}
    if no_device is not None:
        reason = f"skipped: {no_device.split('(')[0].strip()}"
        for name in ("prepjit CUDA, host uint8 → device (stage + 1 copy + 1 launch)",
                     "prepjit CUDA, torch CUDA uint8 in → torch out", "torch/torchvision on CUDA tensors",
                     "device-to-device copy (same bytes)"):
            row(name, None, reason)
    else:  # pragma: no cover - needs a GPU
        import cupy
        import torch
        import torch.nn.functional as F

        from prepjit.ir.image import tv_crop_anchor, tv_resize_hw

        sync = cupy.cuda.get_current_stream().synchronize
        t_host = best(lambda: gpu.batch(batch), sync)
        tensors = [torch.from_numpy(p).cuda() for p in batch]
        tsync = torch.cuda.synchronize
        t_dev = best(lambda: gpu.batch(tensors), tsync)
        m = torch.tensor(mean, device="cuda").view(-1, 1, 1)
        s = torch.tensor(std, device="cuda").view(-1, 1, 1)
        try:
            import torchvision.transforms.v2.functional as TF

            def tv(t):
                x = t.permute(2, 0, 1)
                x = TF.resize(x, 256, antialias=True)
                x = TF.center_crop(x, 224)
                x = TF.to_dtype(x, torch.float32, scale=True)
                return TF.normalize(x, mean, std)
            peer = "torchvision v2"
        except ImportError:
            def tv(t):
                h, w = t.shape[:2]
                oh, ow = tv_resize_hw(h, w, 256, -1, 1), tv_resize_hw(h, w, 256, -1, 0)
                x = F.interpolate(t.permute(2, 0, 1)[None], size=(oh, ow), mode="bilinear", antialias=True,
                                  align_corners=False)[0]
                top, left = tv_crop_anchor(oh, 224), tv_crop_anchor(ow, 224)
                return (x[:, top:top + 224, left:left + 224].to(torch.float32).mul_(1.0 / 255) - m) / s
            peer = "torch ops (torchvision not installed)"
        t_tv = best(lambda: torch.stack([tv(t) for t in tensors]), tsync)
        got = gpu.batch(tensors)
        want = torch.stack([tv(t) for t in tensors])
        err = float((got - want).abs().max())
        src = cupy.empty(in_bytes + out_bytes, np.uint8)
        dst = cupy.empty_like(src)
        t_copy = best(lambda: dst.__setitem__(Ellipsis, src), sync)
        row("prepjit CUDA, host uint8 → device (stage + 1 copy + 1 launch)", t_host, f"{t_tv / t_host:.2f}× {peer}")
        row("prepjit CUDA, torch CUDA uint8 in → torch out", t_dev,
            f"{t_tv / t_dev:.2f}× {peer}; {t_copy / t_dev * 100:.0f}% of copy bandwidth; max |Δ| vs {peer} {err:.1e}")
        row(f"{peer} on CUDA tensors, per image + stack", t_tv)
        row("device-to-device copy (same bytes)", t_copy, "bandwidth ceiling")
        speedups["gpu"] = t_tv / t_dev
    row("prepjit CPU .batch (all cores), same pipeline", cpu_t, "")
    print(f"eval pipeline, batch of {args.batch} photos (300–640 px) → ({args.batch}, 3, 224, 224) float32; "
          f"bytes moved {(in_bytes + out_bytes) / 1e6:.1f} MB; {nvrtc_note}")
    print("| implementation | ms / batch | µs / image | GB/s | notes |")
    print("|---|---:|---:|---:|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
