"""Model selection: score snapshots (and option variants of them) on validation sets by EVAL.md's protocol.

    python tools/select_models.py --data ../shared/data/bsds500/val --data ../shared/data/photos/val \
        --sizes 192,256 --option temperature=0.3,0.38,0.5 runs/flagship/snapshots/step_*.safetensors

Each (snapshot, option values, working size) is colorized from gray PNG files through the same pipeline
as `colorize eval` and printed as one line per validation set: AuC, CF (truth), ΔCF, PSNR, grayish.
``--per-source`` adds the scores per top-level subfolder of each set (photos/val: faces, scenes...).
``--json FILE`` writes every row. ``--chroma-gain 0.8,0.9`` also scores each output with its Lab a/b
scaled by each gain (an analysis of the AuC-colourfulness trade, not a setting of the tool). Option variants are re-exported copies of the snapshot with the
option changed in its config (e.g. the annealed-mean temperature of a classifying model).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from colorize_cli.app.evaluate import evaluate_model, gray_baseline, prepare
from colorize_cli.engine import metrics
from colorize_cli.engine.networks import export_generator, load_generator
from colorize_cli.io.files import find_images


def _variants(snapshot: Path, options: dict[str, list], work: Path) -> list[tuple[str, Path]]:
    if not options:
        return [(snapshot.stem, snapshot)]
    model, config = load_generator(snapshot)
    keys = sorted(options)
    out = []
    for values in itertools.product(*(options[k] for k in keys)):
        change = dict(zip(keys, values))
        label = snapshot.stem + "".join(f" {k}={v}" for k, v in change.items())
        path = work / "variants" / f"{snapshot.parent.parent.name}-{snapshot.stem}-{abs(hash(label))}.safetensors"
        for key, value in change.items():
            setattr(model, key, value)  # a decoding option, read at forward time (e.g. temperature)
        extra = {k: v for k, v in config.items() if k not in ("arch", "options", "sha256")}
        export_generator(model, config["arch"], path, extra, {**config.get("options", {}), **change})
        out.append((label, path))
    return out


def _scaled_chroma(path: Path, gain: float) -> np.ndarray:
    """An output PNG with its a/b scaled by ``gain`` in Lab (out-of-gamut colours clipped), as uint8 RGB."""
    lab = rgb2lab(np.asarray(Image.open(path).convert("RGB")))
    lab[..., 1:] *= gain
    return np.round(np.clip(lab2rgb(lab), 0, 1) * 255).astype(np.uint8)


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        return float(text)


def _line(summary: dict) -> str:
    return (f"AuC {summary['auc']:.2f} CF {summary['cf']:.1f} (truth {summary['cf_gt']:.1f}) "
            f"dCF {summary['dcf']:.1f} PSNR {summary['psnr']:.2f} grayish {summary['grayish']:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("snapshots", nargs="+", type=Path)
    ap.add_argument("--data", action="append", type=Path, required=True)
    ap.add_argument("--sizes", default="", help="working sizes, comma-separated (default: the model's)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=V1,V2")
    ap.add_argument("--per-source", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--chroma-gain", default="", metavar="G1,G2", help="also score the outputs with a/b x G")
    args = ap.parse_args(argv)
    options = {k: [_value(v) for v in vs.split(",")] for k, vs in (o.split("=", 1) for o in args.option)}
    sizes = [int(s) for s in args.sizes.split(",") if s] or [None]
    rows = []
    with tempfile.TemporaryDirectory(prefix="select-") as tmp:
        work = Path(tmp)
        sets = {}
        for data in args.data:
            samples = prepare(data, work / data.name / data.parent.name)
            source = {f.stem: (f.relative_to(data).parts[0] if len(f.relative_to(data).parts) > 1 else ".")
                      for f in find_images(data)}
            sets[data] = (samples, source)
            gray = gray_baseline(samples).summary
            print(f"{data} gray: {_line(gray)}", flush=True)
        variants = [v for snap in args.snapshots for v in _variants(snap, options, work)]
        for (label, path), size in itertools.product(variants, sizes):
            for data, (samples, source) in sets.items():
                result = evaluate_model(str(path), samples, work / "eval" / f"{abs(hash((label, size)))}", size=size)
                print(f"{label} size {size or 'default'} on {data}: {_line(result.summary)}", flush=True)
                row = {"snapshot": label, "size": size, "data": str(data), **result.summary}
                if args.per_source:
                    groups: dict[str, list] = {}
                    for r in result.rows:
                        groups.setdefault(source[r["image"]], []).append(r)
                    row["per_source"] = {g: metrics.summarize(rs) for g, rs in sorted(groups.items())}
                    for g, s in row["per_source"].items():
                        print(f"    {g:32s} n={len(groups[g]):3d} {_line(s)}")
                rows.append(row)
                for gain in [float(g) for g in args.chroma_gain.split(",") if g]:
                    outputs = work / "eval" / f"{abs(hash((label, size)))}" / "outputs" / path.stem
                    scaled = metrics.summarize([metrics.image_metrics(
                        _scaled_chroma(outputs / f"{s[2].stem}_color.png", gain), s[1]) for s in samples])
                    print(f"{label} size {size or 'default'} chroma x{gain:g} on {data}: {_line(scaled)}", flush=True)
                    rows.append({**row, "chroma_gain": gain, **scaled})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
