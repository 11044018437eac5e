"""Frames per second colorizing films, 480p and 1080p, with the torch and ONNX Runtime backends.

    python benchmarks/bench_video.py [--model unet-sn] [--frames 48] [--repeats 3] [--json FILE]

For each height (480p: 854x480, 1080p: 1920x1080) a gray H.264 film of ``--frames`` frames at
24 fps is made from one photo (a slow pan with film grain; ../shared/data/oldphotos if there, else
a synthetic texture). Each measurement is the median of ``--repeats`` runs of
``video.colorize_film`` (decode, network, stabiliser, chroma, encode: the whole film, default
settings) after one warm-up run, in fps = frames / seconds. Beside it, the I/O floor: decoding the
same film and encoding it again with the same encoder and quality, and nothing else.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from colorize_cli.app.films import FilmOptions, colorize_film
from colorize_cli.engine.colorizer import Colorizer
from colorize_cli.io.films import CRF_DEFAULTS

SIZES = {"480p": (854, 480), "1080p": (1920, 1080)}
PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "oldphotos" / \
    "ddcolor-New_York_Riverfront_December_15_1931.jpg"


def make_film(path: Path, size: tuple[int, int], frames: int) -> None:
    w, h = size
    if PHOTO.is_file():
        photo = Image.open(PHOTO).convert("L")
    else:
        y, x = np.mgrid[0:1000, 0:1400]
        photo = Image.fromarray((128 + 60 * np.sin(x / 23) * np.cos(y / 17) + 40 * np.sin((x + y) / 7)).astype(np.uint8))
    rng = np.random.default_rng(0)
    pw, ph = photo.size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            x0 = i * 0.1 * pw / frames
            box = (x0, 0, x0 + 0.9 * pw, min(ph, 0.9 * pw * h / w))
            px = np.asarray(photo.transform((w, h), Image.Transform.EXTENT, box, Image.Resampling.BILINEAR), np.float32)
            gray = np.clip(px + rng.normal(0, 6, px.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(gray, format="gray").reformat(format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def io_floor(src: Path, dst: Path) -> None:
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        first = True
        for frame in inp.decode(video=0):
            if first:
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                stream.codec_context.options = {"crf": str(CRF_DEFAULTS["libx264"])}
                first = False
            frame.pict_type = av.video.frame.PictureType.NONE  # not the source's frame types
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="480p,1080p")
    ap.add_argument("--backends", default="torch,onnx")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.sizes.split(","):
            film = tmp / f"{name}.mp4"
            make_film(film, SIZES[name], args.frames)
            floor = median_seconds(lambda film=film: io_floor(film, tmp / "floor.mp4"), args.repeats)
            rows.append({"film": name, "pipeline": "I/O floor (decode + libx264 encode)",
                         "fps": args.frames / floor})
            for backend in args.backends.split(","):
                colorizer = Colorizer(args.model, backend=backend)
                seconds = median_seconds(lambda film=film, c=colorizer: colorize_film(
                    c, film, tmp / "out.mp4", FilmOptions(overwrite=True)), args.repeats)
                rows.append({"film": name, "pipeline": f"colorize, {backend}", "fps": args.frames / seconds})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.frames} frames, "
          f"median of {args.repeats} after a warm-up")
    print("| film | pipeline | frames/s | vs I/O floor |")
    print("|---|---|---:|---:|")
    for row in rows:
        floor = next(r["fps"] for r in rows if r["film"] == row["film"] and r["pipeline"].startswith("I/O"))
        print(f"| {row['film']} | {row['pipeline']} | {row['fps']:.1f} | {row['fps'] / floor:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
