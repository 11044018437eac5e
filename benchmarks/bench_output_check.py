"""What a rerun pays to trust an existing output, and what a durable write costs.

    python benchmarks/bench_output_check.py [--folder /tmp/bench-check] [--repeat 30]

For a 2-megapixel colour photo in each output format: the median time of ``output_problem`` (the
completeness check a rerun makes of every existing output) beside ``os.path.exists`` (what reruns
trusted before) and a full decode (``Image.load``, the thorough check it replaces). Then the median
time to write one 2 MP JPEG with ``write_image`` (temporary file, fsync, rename, fsync of the
folder) against the same encoding written plainly, on the disk of ``--folder``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from colorize_cli.io.images import Photo, output_problem, write_image


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=Path("/tmp/bench-check"))
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    h, w = 1200, 1700
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 255 // (w + h))], -1).astype(np.uint8)
    rgb = np.clip(rgb + np.random.default_rng(0).normal(0, 8, rgb.shape), 0, 255).astype(np.uint8)
    photo = Photo(rgb)
    print(f"{'format':10} {'size':>9} {'exists':>9} {'check':>9} {'decode':>9} {'decode/check':>13}")
    for ext, pixels in ((".jpg", rgb), (".png", rgb), (".webp", rgb), (".tif", rgb),
                        (".tif", rgb.astype(np.uint16) * 257)):
        name = f"out{'16' if pixels.dtype == np.uint16 else ''}{ext}"
        path = args.folder / name
        write_image(path, pixels, photo)
        assert output_problem(path) is None
        exists = median_ms(lambda p=path: os.path.exists(p), args.repeat)
        check = median_ms(lambda p=path: output_problem(p), args.repeat)

        def decode(p=path):
            with Image.open(p) as im:
                im.load()

        full = median_ms(decode, max(3, args.repeat // 5))
        print(f"{name:10} {path.stat().st_size / 1e6:7.2f}MB {exists:7.3f}ms {check:7.3f}ms {full:7.1f}ms "
              f"{full / check:12.0f}x")
    atomic = median_ms(lambda: write_image(args.folder / "a.jpg", rgb, photo), args.repeat)

    def plain():
        Image.fromarray(rgb).save(args.folder / "b.jpg", quality=95)

    direct = median_ms(plain, args.repeat)
    print(f"2 MP JPEG write: atomic+fsync {atomic:.1f} ms, plain {direct:.1f} ms, "
          f"ratio {atomic / direct:.2f} ({args.folder})")


if __name__ == "__main__":
    main()
