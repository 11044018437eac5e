"""Images/s of the torch and ONNX Runtime backends, on the same photos in the same run.

    python benchmarks/bench_backends.py --model runs/unet-sn/unet-sn.safetensors \\
        [--data ../shared/data/bsds500/val] [--n 8] [--runs 5] [--threads N] [--json FILE]

Backends: torch eager, ONNX Runtime fp32 and ONNX Runtime int8 (both exported into a temporary
folder by ``colorize_cli.engine.export``). For each, two timings, each the median of ``--runs`` runs after
one warm-up run:

- pipeline: ``Colorizer.colorize(photo)`` over the N decoded photos (resizing, network, full-size
  Lab->RGB; decoding and encoding files excluded), one photo per call;
- network: the engine alone on the same photos' working-size L inputs.

Quality cost: mean |8-bit output - torch's 8-bit output| over all pixels and channels.
Every backend gets the same number of intra-op threads (default: the physical cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from colorize_cli.engine.backends import OnnxEngine, physical_cores
from colorize_cli.engine.colorizer import Colorizer
from colorize_cli.engine.export import export_onnx
from colorize_cli.engine.hub import resolve
from colorize_cli.io.files import IMAGE_SUFFIXES
from colorize_cli.io.images import read_image


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up: first-call allocations, ORT's lazy initialisation, torch's kernel selection
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="weights path (.safetensors) or a model name")
    parser.add_argument("--data", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "bsds500" / "val")
    parser.add_argument("--n", type=int, default=8, help="photos (the first N, sorted by name)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=None, help="working size (default: the model's)")
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    files = sorted(p for p in args.data.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[: args.n]
    if not files:
        print(f"error: no photos in {args.data}", file=sys.stderr)
        return 2
    photos = [read_image(p) for p in files]
    torch.set_num_threads(args.threads)
    weights = resolve(args.model)

    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        exports = {"onnx-fp32": export_onnx(weights, Path(tmp) / "fp32.onnx"),
                   "onnx-int8": export_onnx(weights, Path(tmp) / "int8.onnx", quantize="int8")}
        colorizers = {"torch": Colorizer(str(weights), size=args.size, backend="torch")}
        for name, result in exports.items():
            c = Colorizer(str(result.path), size=args.size)
            c.engine = OnnxEngine(result.path, threads=args.threads)  # same threads as torch
            colorizers[name] = c

        inputs = [colorizers["torch"].working_input(p) for p in photos]
        rows, reference = [], None
        for name, c in colorizers.items():
            outputs = [c.colorize(p) for p in photos]
            if reference is None:
                reference = outputs
            diff = np.mean([np.abs(o.astype(np.float64) - r).mean() for o, r in zip(outputs, reference)])
            pipeline = median_seconds(lambda c=c: [c.colorize(p) for p in photos], args.runs)
            network = median_seconds(lambda c=c: [c.engine(x) for x in inputs], args.runs)
            size = exports[name].size_bytes if name in exports else weights.stat().st_size
            rows.append({"backend": name, "pipeline_img_s": len(photos) / pipeline,
                         "network_img_s": len(photos) / network, "mean_abs_diff_8bit": float(diff),
                         "file_mb": size / 1e6})

    base = rows[0]
    shape = "x".join(map(str, inputs[0].shape[-2:]))
    height, width = photos[0].size
    print(f"{len(photos)} photos from {args.data} (the first {width}x{height} px, working shape {shape} "
          f"h x w), {args.threads} threads, median of {args.runs} runs, torch {torch.__version__}")
    print("| backend | pipeline img/s | vs torch | network img/s | vs torch | "
          "mean abs diff vs torch (8-bit) | file MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        r["pipeline_ratio"] = r["pipeline_img_s"] / base["pipeline_img_s"]
        r["network_ratio"] = r["network_img_s"] / base["network_img_s"]
        print(f"| {r['backend']} | {r['pipeline_img_s']:.1f} | {r['pipeline_ratio']:.2f}x "
              f"| {r['network_img_s']:.1f} | {r['network_ratio']:.2f}x "
              f"| {r['mean_abs_diff_8bit']:.3f} | {r['file_mb']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"model": str(weights), "photos": [str(f) for f in files],
                                         "threads": args.threads, "runs": args.runs, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
