"""Image eval pipeline benchmark (work in progress for the image issue): prepjit vs torch ops, side by side.

    python benchmarks/bench_image.py [--repeat 5] [--batch 64]

Pipeline: resize(256, antialias) → center_crop(224) → to_dtype(float32, scale) → normalize → CHW, on
scikit-image's photos. Peers run in the same process, interleaved: torch ops on uint8 tensors (torchvision v2's
path; torch limited to 1 thread for the single-thread rows) and PIL when installed. Results are checked to
agree before timing (prepjit vs torch: identical within 1e-5).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    import skimage.data
    import torch
    import torch.nn.functional as F

    import prepjit as pj
    from prepjit import image as I
    from prepjit.ir.image import tv_crop_anchor, tv_resize_hw

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    @pj.jit_preprocess(signature=(pj.TensorSpec(np.uint8, (None, None, 3)),))
    def eval_tf(img):
        x = I.resize(img, 256, antialias=True)
        x = I.center_crop(x, 224)
        x = I.to_dtype(x, np.float32, scale=True)
        x = I.normalize(x, mean, std)
        return I.to_chw(x)

    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)

    def torch_eval(t):  # t: HWC uint8 tensor, channels-last view as torchvision would get from decode
        h, w = t.shape[:2]
        oh, ow = tv_resize_hw(h, w, 256, -1, 1), tv_resize_hw(h, w, 256, -1, 0)
        x = t.permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)[0]
        top, left = tv_crop_anchor(oh, 224), tv_crop_anchor(ow, 224)
        x = x[:, top:top + 224, left:left + 224]
        return (x.to(torch.float32).mul_(1.0 / 255) - m) / s

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    tensors = [torch.from_numpy(p) for p in photos]
    for p, t in zip(photos, tensors):
        assert np.abs(eval_tf(p) - torch_eval(t).numpy()).max() <= 1e-5

    def best(fn):
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    torch.set_num_threads(1)
    one_pj = best(lambda: [eval_tf(p) for p in photos]) / len(photos)
    one_torch = best(lambda: [torch_eval(t) for t in tensors]) / len(photos)
    batch = (photos * (args.batch // len(photos) + 1))[:args.batch]
    b1 = best(lambda: eval_tf.batch(batch, threads=1)) / len(batch)
    b2 = best(lambda: eval_tf.batch(batch, threads=2)) / len(batch)

    print("| eval pipeline, per image (photos 300–640 px) | ms | vs torch (1 thread) |")
    print("|---|---:|---:|")
    print(f"| torch ops, 1 thread | {one_torch * 1e3:.3f} | 1.00× |")
    print(f"| prepjit, single call | {one_pj * 1e3:.3f} | {one_torch / one_pj:.2f}× |")
    print(f"| prepjit .batch threads=1 | {b1 * 1e3:.3f} | {one_torch / b1:.2f}× |")
    print(f"| prepjit .batch threads=2 | {b2 * 1e3:.3f} | {one_torch / b2:.2f}× (scaling {b1 / b2:.2f}× from 1 to 2 threads) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
