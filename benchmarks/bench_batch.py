"""Speed of `colorize` on photo folders, as whole processes, on this machine.

Reports (medians of --repeats runs):
  * marginal time per 2-megapixel photo: (time for 24 photos - time for 4 photos) / 20, so that
    start-up cancels, and its ratio to the I/O floor (Pillow decode + convert to RGB + JPEG encode
    of the same files, measured in the same run);
  * latency of one photo end to end (a fresh process);
  * `colorize --version`;
  * peak memory (max RSS) colorizing one 100-megapixel image.

    python benchmarks/bench_batch.py --photos ../shared/data/bsds500/val --repeats 5 --backends onnx,torch

Each backend is measured in the same run, interleaved repeat by repeat (this shared machine drifts by
more than the backends differ), against the same I/O floor; `--backends onnx` alone needs no torch.
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


def measure(colorize: list[str], backend: str, args, work: Path, one: Path) -> dict:
    """One repeat of every timed command for ``backend``."""
    opts = ["--model", args.model, "--backend", backend, "--cache-dir", str(work / "cache")]
    out = {}
    for name, folder in (("t24", work / "24"), ("t4", work / "4")):
        out[name] = timed([*colorize, str(folder), *opts, "--output", str(work / f"out{name}-{backend}"),
                           "--overwrite", "--quiet"])
    out["one"] = timed([*colorize, str(one), *opts, "--overwrite", "--quiet"])
    return out


def summarise(runs: dict[str, list[float]], floor: list[float]) -> dict:
    marginal = [(a - b) / 20 for a, b in zip(runs["t24"], runs["t4"])]
    return {"marginal_s_per_photo": statistics.median(marginal),
            "marginal_ratio_to_io_floor": statistics.median(m / f for m, f in zip(marginal, floor)),
            "one_photo_s": statistics.median(runs["one"]), "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=Path("../shared/data/bsds500/val"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="default")
    ap.add_argument("--backends", default="onnx,torch",
                    help="comma-separated: onnx (the default backend on a CPU), torch (needs colorize-cli[torch])")
    ap.add_argument("--skip-100mp", action="store_true")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    colorize = [sys.executable, "-m", "colorize_cli"]
    work = Path(tempfile.mkdtemp(prefix="colorize-bench-"))
    try:
        big = make_photos(args.photos, work / "24", 24)
        (work / "4").mkdir()
        for f in big[:4]:
            shutil.copy(f, work / "4" / f.name)
        one = work / "one" / "photo.jpg"
        one.parent.mkdir()
        shutil.copy(big[0], one)
        scratch = work / "scratch"
        scratch.mkdir()
        for backend in backends:  # a warm-up each: the file cache, and any one-time export
            timed([*colorize, str(one), "--model", args.model, "--backend", backend, "--cache-dir",
                   str(work / "cache"), "--overwrite", "--quiet"])
        runs = {b: {"t24": [], "t4": [], "one": []} for b in backends}
        floor, version = [], []
        for _ in range(args.repeats):
            for backend in backends:
                for k, v in measure(colorize, backend, args, work, one).items():
                    runs[backend][k].append(v)
            floor.append(io_floor(big, scratch))
            version.append(timed([*colorize, "--version"]))
        result = {"io_floor_s_per_photo": statistics.median(floor), "version_s": statistics.median(version),
                  "floor_runs": floor, "version_runs": version,
                  "backends": {b: summarise(runs[b], floor) for b in backends}}
        if not args.skip_100mp:
            huge = work / "huge" / "scan.png"
            huge.parent.mkdir()
            Image.open(big[0]).resize((12247, 8165), Image.Resampling.BILINEAR).save(huge, compress_level=1)
            for b in backends:
                result["backends"][b]["peak_rss_mb_100mp"] = peak_rss_mb(
                    [*colorize, str(huge), "--model", args.model, "--backend", b, "--cache-dir", str(work / "cache"),
                     "--quiet", "--overwrite"])
        print(json.dumps(result, indent=2))
        rows = result["backends"]
        print(f"\n| measure, median of {args.repeats} | " + " | ".join(f"`--backend {b}`" for b in backends)
              + " |\n|---|" + "---|" * len(backends))
        print("| one 2 MP photo, command to file | " + " | ".join(f"{rows[b]['one_photo_s']:.2f} s" for b in backends) + " |")
        print("| marginal time per 2 MP photo | "
              + " | ".join(f"{rows[b]['marginal_s_per_photo'] * 1000:.0f} ms" for b in backends) + " |")
        print(f"| I/O floor (decode + RGB + JPEG encode) | {result['io_floor_s_per_photo'] * 1000:.1f} ms |"
              + " |" * (len(backends) - 1))
        print("| marginal / floor | " + " | ".join(f"{rows[b]['marginal_ratio_to_io_floor']:.1f} x" for b in backends) + " |")
        print(f"| `colorize --version` | {result['version_s']:.3f} s |" + " |" * (len(backends) - 1))
        if not args.skip_100mp:
            print("| peak memory, one 100 MP image | "
                  + " | ".join(f"{rows[b]['peak_rss_mb_100mp']:.0f} MB" for b in backends) + " |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
