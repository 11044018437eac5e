"""How much colour rebalancing weights saturated pixels against near-gray ones (docs/training.md).

    nice -n 10 python tools/rebalance_weights.py ../shared/data/imagenette/train --size 64 --strength 0.5 0.9

Fits the weights exactly as ``colorize train --rebalance λ`` does (256 random crops of the dataset,
decoded at 1.25 x ``--size``, generator seed 1) and prints, for each λ, the mean weight of training
pixels with chroma 30-60 over that of pixels with chroma under 5 (in CIELAB units).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from colorize_cli.app.data import BatchSampler, load_folder
from colorize_cli.color import AB_SCALE
from colorize_cli.models.losses import ColorRebalance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--strength", type=float, nargs="+", default=[0.5, 0.9])
    parser.add_argument("--cache-dir", type=Path, default=None, help="reuse a decoded dataset cache")
    args = parser.parse_args()
    data = load_folder(args.dataset, round(args.size * 1.25), args.cache_dir)
    ab = BatchSampler(data.images, args.size, 256, torch.Generator().manual_seed(1)).next()[1]
    chroma = (ab * AB_SCALE).norm(dim=1, keepdim=True)
    saturated, gray = (chroma >= 30) & (chroma <= 60), chroma < 5
    print(f"{args.dataset}: {len(data.images)} colour photos, 256 crops at {args.size} px; "
          f"{float(saturated.float().mean()):.1%} of pixels with chroma 30-60, {float(gray.float().mean()):.1%} under 5")
    for strength in args.strength:
        w = ColorRebalance.fit(ab, strength)(ab)
        ratio = float(w[saturated].mean() / w[gray].mean())
        print(f"λ = {strength}: chroma 30-60 weighs {ratio:.1f} x as much as chroma < 5")


if __name__ == "__main__":
    main()
