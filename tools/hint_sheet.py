"""A contact sheet of photos colorized without and with colour hints, to look at (no ground truth).

    python tools/hint_sheet.py ../shared/data/oldphotos --hints docs/hints/oldphotos-hints.json \
        --reference ../shared/data/photos/val/SOME.jpg --output docs/img/oldphotos-hints.jpg

For each photo the hints file names: the gray input, the default model's colours, the hint model's with
the file's points (each marked by a ring of its colour), and the hint model's with the reference photo
(the reference itself in the last row). Every output comes from the batch pipeline users run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from colorize_cli.app.batch import colorize_batch
from colorize_cli.hints import parse_hint


def _cell(path: Path, height: int) -> Image.Image:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return im.resize((round(im.width * height / im.height), height), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--hints", type=Path, required=True)
    ap.add_argument("--reference", type=Path, required=True)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--height", type=int, default=220)
    ap.add_argument("--hint-model", default="default", help="the hint model (default: the bundled one)")
    args = ap.parse_args(argv)
    table = json.loads(args.hints.read_text())
    photos = [args.folder / name for name in table]
    with tempfile.TemporaryDirectory() as tmp:
        out = {key: Path(tmp) / key for key in ("default", "hints", "reference")}
        colorize_batch(photos, output=out["default"])
        colorize_batch(photos, output=out["hints"], hints_file=args.hints, model=args.hint_model)
        colorize_batch(photos, output=out["reference"], reference=args.reference, model=args.hint_model)
        rows = []
        for photo in photos:
            name = f"{photo.stem}_color{photo.suffix}"
            cells = [_cell(photo, args.height)] + [_cell(out[k] / name, args.height) for k in out]
            scale = args.height / ImageOps.exif_transpose(Image.open(photo)).height
            draw = ImageDraw.Draw(cells[2])
            for hint in map(parse_hint, table[photo.name]):
                x, y, r = hint.x * scale, hint.y * scale, 6
                colour = hint.text.split("=", 1)[1]
                draw.ellipse((x - r, y - r, x + r, y + r), outline="white", width=3)
                draw.ellipse((x - r + 2, y - r + 2, x + r - 2, y + r - 2), outline=colour, width=2)
            rows.append(cells)
        rows.append([_cell(args.reference, args.height)])
        labels = ["gray input", "default", "hint model + points (rings)", "hint model + reference (last row)"]
        widths = [max(r[i].width for r in rows if i < len(r)) for i in range(4)]
        sheet = Image.new("RGB", (sum(widths), 18 + args.height * len(rows)), "white")
        draw = ImageDraw.Draw(sheet)
        for i, label in enumerate(labels):
            draw.text((sum(widths[:i]) + 4, 3), label, fill="black")
        for r, cells in enumerate(rows):
            for i, cell in enumerate(cells):
                sheet.paste(cell, (sum(widths[:i]), 18 + r * args.height))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(args.output, quality=88)
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
