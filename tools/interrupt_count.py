"""Ctrl-C count check: interrupt colorize (a real SIGINT) while it writes 2-megapixel photos, N times,
and compare the --json summary's ``processed`` with the outputs on disk.

    nice -n 10 python tools/interrupt_count.py --runs 10 [--photos ../shared/data/bsds500/val] [--model unet-sn]

Photos: the first 12 of ``--photos`` upscaled (bicubic) to 1732x1155 and made gray, or, without
``--photos``, synthetic textured ones of that size. Each run sends SIGINT once ``k`` outputs exist
and another is being written (k = 1, 2, 3, ... in turn). Exit code 0 only if every run was exact.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_interrupt import interrupt_during_a_write  # the test's own driver, shared
from textures import textured

SIZE = (1732, 1155)  # 2.0 megapixels, the aspect of a bsds500 photo


def make_photos(folder: Path, source: Path | None, n: int = 12) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:n] if source else []
    for i in range(n):
        if files:
            with Image.open(files[i % len(files)]) as im:
                im = im.convert("L")
                if im.height > im.width:
                    im = im.rotate(90, expand=True)
                im = im.resize(SIZE, Image.Resampling.BICUBIC)
        else:
            im = Image.fromarray(textured(SIZE[1], SIZE[0], seed=i, color=False))
        im.save(folder / f"p{i:02d}.jpg", quality=92)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--photos", type=Path, default=None, help="a folder of photos to upscale")
    parser.add_argument("--model", default="unet-sn")
    args = parser.parse_args()
    exact = 0
    with tempfile.TemporaryDirectory(prefix="interrupt-count-") as work:
        folder = Path(work) / "in"
        make_photos(folder, args.photos)
        n = len(list(folder.iterdir()))
        print(f"{n} photos of {SIZE[0]}x{SIZE[1]} in {folder}; --model {args.model}", flush=True)
        for run in range(args.runs):
            after = 1 + run % 4
            got = interrupt_during_a_write(folder, Path(work) / f"out{run}", args.model, after)
            reported = got["summary"]["processed"] if got["summary"] else None
            written = len(got["finals"])
            whole = all(_decodes(p) for p in got["finals"])
            ok = (reported == written and got["code"] == 130 and got["while_writing"] and whole
                  and not got["left"])
            exact += ok
            print(f"run {run + 1}: SIGINT after {after} outputs, during a write: {got['while_writing']}; "
                  f"exit {got['code']}; reported {reported}, written {written}, all whole: {whole}, "
                  f"left-over temporary files: {len(got['left'])} -> {'exact' if ok else 'WRONG'}", flush=True)
    print(f"exact in {exact} of {args.runs} interrupted runs")
    return 0 if exact == args.runs else 1


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
            return im.size == SIZE
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
