"""How a perceptual distance ranks plausible colour errors against gray, on real photos.

    python tools/probe_perceptual.py ../shared/data/photos/val --count 64 --size 128

For each photo (centre crop, resized to --size) it measures the encoder distance of docs/perceptual.md
(and the official LPIPS where its weights can be had) between the truth and: the gray photo (a = b = 0),
the truth at half chroma, the truth with its hue turned by 60 degrees, and the truth at 1.3x chroma;
beside each, the L1 on ab that the recipes weight by 100. Prints the means. A distance that puts gray
closer to the truth than a half-saturated or hue-shifted guess pushes a generator towards gray.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from colorize_cli.app.evaluate import centre_square
from colorize_cli.engine.perceptual import WeightsUnavailable, encoder_distance, lpips_distance
from colorize_cli.io.files import find_images
from colorize_cli.models.colorspace import lab_to_rgb, rgb_to_lab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--encoder", default="efficientnet-lite0")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    files = find_images(Path(args.folder))
    files = [files[round(i * (len(files) - 1) / max(1, args.count - 1))] for i in range(min(args.count, len(files)))]
    t_truth = torch.from_numpy(np.stack([np.asarray(centre_square(f, args.size)) for f in files])).permute(0, 3, 1, 2).float() / 255
    lab = rgb_to_lab(t_truth)
    lum, a, b = lab.unbind(1)
    turn = math.radians(60)
    variants = {
        "gray (a = b = 0)": (0 * a, 0 * b),
        "half chroma": (0.5 * a, 0.5 * b),
        "hue turned 60 degrees": (a * math.cos(turn) - b * math.sin(turn), a * math.sin(turn) + b * math.cos(turn)),
        "1.3x chroma": (1.3 * a, 1.3 * b),
    }
    try:
        lpips_distance(t_truth[:1], t_truth[:1])
        has_lpips = True
    except WeightsUnavailable:
        has_lpips = False
    print(f"{len(files)} photos of {args.folder} at {args.size} px; distances to the truth (means)")
    print(f"{'variant':24} {'L1 on ab/110':>12} {args.encoder + ' distance':>28}" + ("  LPIPS" if has_lpips else ""))
    for name, (va, vb) in variants.items():
        t = lab_to_rgb(torch.stack([lum, va, vb], dim=1))
        l1 = float(torch.cat([va - a, vb - b]).abs().mean() / 110)
        d = float(encoder_distance(t, t_truth, args.encoder).mean())
        extra = f"  {float(lpips_distance(t, t_truth).mean()):.4f}" if has_lpips else ""
        print(f"{name:24} {l1:12.4f} {d:28.4f}{extra}")


if __name__ == "__main__":
    main()
