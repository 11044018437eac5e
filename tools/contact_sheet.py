"""A contact sheet of real photos through several models, to look at (no ground truth needed).

    python tools/contact_sheet.py ../shared/data/oldphotos --model unet-sn --model efflite-unet \
        --output docs/img/oldphotos-sheet.jpg

Every photo of the folder is colorized by each model through the same batch pipeline users run
(`colorize FOLDER --model NAME`), and the sheet shows, per photo, the input and each model's output
side by side, ``--per-row`` photos to a row, each cell ``--height`` pixels tall, labelled on top.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from colorize_cli.app.batch import colorize_batch
from colorize_cli.io.files import find_images


def _cell(path: Path, height: int, width: int) -> Image.Image:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return ImageOps.pad(im, (width, height), color=(255, 255, 255))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--per-row", type=int, default=3)
    ap.add_argument("--height", type=int, default=150)
    ap.add_argument("--width", type=int, default=150)
    ap.add_argument("--size", type=int, default=None, help="working size for every model (default: each one's)")
    args = ap.parse_args(argv)
    photos = find_images(args.folder)
    columns = ["input", *args.model]
    with tempfile.TemporaryDirectory(prefix="sheet-") as tmp:
        outputs = {}
        for model in args.model:
            out = Path(tmp) / Path(model).stem
            summary = colorize_batch(photos, model=model, output=out, overwrite=True, size=args.size, fmt="png")
            if not summary.ok:
                print(f"{model}: colorizing failed: {summary.failed or 'interrupted'}", file=sys.stderr)
                return 1
            outputs[model] = {p.name.removesuffix("_color.png"): p for p in out.rglob("*_color.png")}
        h, w, label = args.height, args.width, 16
        group = len(columns) * w + 12
        rows = -(-len(photos) // args.per_row)
        sheet = Image.new("RGB", (args.per_row * group, label + rows * (h + 6)), "white")
        draw = ImageDraw.Draw(sheet)
        for g in range(args.per_row):
            for c, name in enumerate(columns):
                draw.text((g * group + c * w + 4, 2), Path(name).stem[:22], fill="black")
        for i, photo in enumerate(photos):
            r, g = divmod(i, args.per_row)
            y, x0 = label + r * (h + 6), g * group
            sheet.paste(_cell(photo, h, w), (x0, y))
            for c, model in enumerate(args.model, start=1):
                sheet.paste(_cell(outputs[model][photo.stem], h, w), (x0 + c * w, y))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, quality=88)
    print(f"{args.output}: {len(photos)} photos x {len(columns)} columns, {sheet.width}x{sheet.height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
