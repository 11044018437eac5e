"""Speed of `colorize` on photo folders, as whole processes, on this machine.

Reports (medians of --repeats runs):
  * marginal time per 2-megapixel photo: (time for 24 photos - time for 4 photos) / 20, so that
    start-up cancels, and its ratio to the I/O floor (Pillow decode + convert to RGB + JPEG encode
    of the same files, measured in the same run);
  * latency of one photo end to end (a fresh process);
  * `colorize --version`;
  * peak memory (max RSS) colorizing one 100-megapixel image.

    python benchmarks/bench_batch.py --photos ../shared/data/bsds500/val --repeats 3
    python benchmarks/bench_batch.py --photos ../shared/data/bsds500/val --repeats 3 --backend onnx
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

TWO_MP = (1732, 1155)  # 2.0 megapixels, 3:2 like most cameras


def make_photos(source: Path, folder: Path, count: int, size=TWO_MP) -> list[Path]:
    """Grayscale JPEGs of ``size`` made from the first photos in ``source`` (upscaled as needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in source.rglob("*.jpg"))[:count]
    out = []
    for i, src in enumerate(sources):
        im = Image.open(src).convert("L").resize(size, Image.Resampling.BICUBIC)
        path = folder / f"photo{i:02d}.jpg"
        im.save(path, quality=92)
        out.append(path)
    return out


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def io_floor(files: list[Path], scratch: Path) -> float:
    """Seconds per file to decode, convert to RGB and encode as JPEG: what any tool must pay."""
    t0 = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            im.convert("RGB").save(scratch / f.name, quality=95)
    return (time.perf_counter() - t0) / len(files)


def peak_rss_mb(cmd: list[str]) -> float:
    """Max RSS of a child process, in MB (Linux reports KiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/bsds500/val"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnx"),
                    help="onnx: the model is exported once into a temporary cache before the timed runs")
    ap.add_argument("--skip-100mp", action="store_true")
    args = ap.parse_args()
    colorize = [sys.executable, "-m", "colorize_cli"]
    work = Path(tempfile.mkdtemp(prefix="colorize-bench-"))
    backend = ["--backend", args.backend, "--cache-dir", str(work / "cache")]
    try:
        big = make_photos(args.photos, work / "24", 24)
        small_dir = work / "4"
        small_dir.mkdir()
        for f in big[:4]:
            shutil.copy(f, small_dir / f.name)
        one = work / "one" / "photo.jpg"
        one.parent.mkdir()
        shutil.copy(big[0], one)
        scratch = work / "scratch"
        scratch.mkdir()
        runs: dict[str, list[float]] = {"t24": [], "t4": [], "floor": [], "one": [], "version": []}
        if args.backend == "onnx":  # the one-time export is not what a run costs
            subprocess.run([*colorize, str(one), "--model", args.model, *backend, "--overwrite", "--quiet"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(args.repeats):
            for name, folder in (("t24", work / "24"), ("t4", small_dir)):
                runs[name].append(timed([*colorize, str(folder), "--model", args.model, *backend, "--output",
                                         str(work / f"out{name}"), "--overwrite", "--quiet"]))
            runs["floor"].append(io_floor(big, scratch))
            runs["one"].append(timed([*colorize, str(one), "--model", args.model, *backend, "--overwrite", "--quiet"]))
            runs["version"].append(timed([*colorize, "--version"]))
        med = {k: statistics.median(v) for k, v in runs.items()}
        marginal = [(a - b) / 20 for a, b in zip(runs["t24"], runs["t4"])]
        result = {
            "marginal_s_per_photo": statistics.median(marginal),
            "io_floor_s_per_photo": med["floor"],
            "marginal_ratio_to_io_floor": statistics.median(m / f for m, f in zip(marginal, runs["floor"])),
            "one_photo_s": med["one"],
            "version_s": med["version"],
            "runs": runs,
        }
        if not args.skip_100mp:
            huge = work / "huge" / "scan.png"
            huge.parent.mkdir()
            Image.open(big[0]).resize((12247, 8165), Image.Resampling.BILINEAR).save(huge, compress_level=1)
            result["peak_rss_mb_100mp"] = peak_rss_mb([*colorize, str(huge), "--model", args.model, *backend,
                                                       "--quiet", "--overwrite"])
            result["decoded_100mp_gray_mb"] = 12247 * 8165 / 1e6
        print(json.dumps(result, indent=2))
        print(f"\n| measure | median of {args.repeats} |\n|---|---|")
        print(f"| marginal time per 2 MP photo | {result['marginal_s_per_photo'] * 1000:.0f} ms |")
        print(f"| I/O floor (decode + RGB + JPEG encode) | {result['io_floor_s_per_photo'] * 1000:.0f} ms |")
        print(f"| ratio | {result['marginal_ratio_to_io_floor']:.1f}x |")
        print(f"| one photo end to end | {result['one_photo_s']:.2f} s |")
        print(f"| `colorize --version` | {result['version_s']:.2f} s |")
        if "peak_rss_mb_100mp" in result:
            print(f"| peak memory, one 100 MP image | {result['peak_rss_mb_100mp']:.0f} MB |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
