"""``colorize eval``: the protocol of EVAL.md, run through the same pipeline users run.

1. Each ground-truth photo: EXIF orientation, RGB, centred square crop, 256x256 bicubic.
2. The tool's input is that image as 8-bit grayscale (``convert("L")``) written as PNG.
3. Every model colorizes those files with :func:`colorize_cli.app.batch.colorize_batch`; the outputs are
   read back and scored against the ground truth with :mod:`colorize_cli.engine.metrics`.
The gray baseline (output = input) is always reported beside the models.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import platform
import shlex
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from colorize_cli._version import __version__
from colorize_cli.app.batch import Reporter, colorize_batch
from colorize_cli.engine import metrics
from colorize_cli.engine.device import torch_device
from colorize_cli.engine.perceptual import EvalPerceptual
from colorize_cli.hints import simulated_points
from colorize_cli.io.atomic import atomic_write, write_text
from colorize_cli.io.download import LOGGER
from colorize_cli.io.files import find_images
from colorize_cli.io.images import save_pil

EVAL_SIZE = 256
GRAY = "gray"
SHEET_IMAGES = 6


@dataclass
class ModelResult:
    name: str
    summary: dict
    rows: list[dict]
    images_per_s: float | None = None
    ms_per_mp: float | None = None
    outputs: Path | None = None  # the folder of its colorized eval images


def centre_square(path: Path, size: int = EVAL_SIZE) -> Image.Image:
    """The protocol's ground truth of a photo: upright (EXIF), RGB, its centre square resized to ``size``."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        return im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)


def prepare(data: Path, work: Path, limit: int | None = None) -> list[tuple[str, np.ndarray, Path]]:
    """Ground truths and their gray PNG inputs: ``[(name, truth uint8 256x256x3, gray_png_path)]``."""
    files = find_images(data)
    if not files:
        raise FileNotFoundError(f"{data}: no images to evaluate on")
    files = files[:limit] if limit else files
    out = []
    (work / "input").mkdir(parents=True, exist_ok=True)
    for f in files:
        im = centre_square(f)
        gray_path = work / "input" / f"{f.stem}.png"
        save_pil(im.convert("L"), gray_path)
        out.append((f.stem, np.asarray(im), gray_path))
    return out


def _score(name: str, outputs: list[np.ndarray], samples: list, perceptual=None) -> ModelResult:
    rows = []
    for (stem, truth, _), out in zip(samples, outputs):
        rows.append({"image": stem, **metrics.image_metrics(out, truth)})
    summary = metrics.summarize(rows)
    if perceptual is not None:  # a colorize_cli.engine.perceptual.EvalPerceptual: LPIPS per image, FID per set
        values = perceptual.lpips(outputs)
        if values is not None:
            for row, v in zip(rows, values):
                row["lpips"] = v
            summary["lpips"] = float(np.mean(values))
        fid = perceptual.fid(outputs)
        if fid is not None:
            summary["fid"], summary["fid_n"] = fid, len(outputs)
        fd = perceptual.fd(outputs)
        if fd is not None:
            summary["fd_efflite0"], summary["fd_efflite0_n"] = fd, len(outputs)
    return ModelResult(name, summary, rows)


class _LoggedLines(Reporter):
    """The batch's ``failed:`` and ``warning:`` lines to the package's logger (the command line prints them)."""

    def line(self, text: str) -> None:
        LOGGER.warning(text)


def guidance_file(samples: list, work: Path, hints: int, reference_truth: bool) -> Path:
    """The ``--hints FILE`` a user would write to give each eval photo ``hints`` points at random pixels
    with the truth's colour there (seeded by the photo's name: the same points every run, for every
    model) and, with ``reference_truth``, its own colour photo as the reference (the oracle global hint)."""
    table = {}
    for name, truth, gray in samples:
        entry: dict = {"points": [p.text for p in simulated_points(truth, hints, zlib.crc32(name.encode()))]}
        if reference_truth:
            path = work / "truth" / f"{name}.png"
            if not path.exists():
                save_pil(Image.fromarray(truth), path)
            entry["reference"] = str(path.resolve())
        table[gray.name] = entry
    path = work / f"hints-{hints}{'-reference' if reference_truth else ''}.json"
    write_text(path, json.dumps(table, indent=1) + "\n")
    return path


def evaluate_model(model: str, samples: list, work: Path, device: str = "cpu", size: int | None = None,
                   perceptual=None, hints: int = 0, reference_truth: bool = False) -> ModelResult:
    """Colorize the gray inputs with ``model`` from files (given ``hints`` simulated points and the
    truth as reference, if asked: :func:`guidance_file`), read the outputs back, score them."""
    label = model + (f" +{hints} hints" if hints else "") + (" +reference" if reference_truth else "")
    out_dir = work / "outputs" / (Path(model).stem + (f"-h{hints}" if hints else "") + ("-ref" if reference_truth else ""))
    guide = guidance_file(samples, work, hints, reference_truth) if hints or reference_truth else None
    t0 = time.perf_counter()
    summary = colorize_batch([s[2] for s in samples], _LoggedLines(), model=model, output=out_dir, overwrite=True,
                             device=device, batch_size=8, size=size, hints_file=guide)
    seconds = time.perf_counter() - t0
    if not summary.ok:
        what = "; ".join(f"{f}: {r}" for f, r in summary.failed[:3]) or "interrupted"
        raise RuntimeError(f"model {model}: colorizing the eval images failed ({what})")
    outputs = [np.asarray(Image.open(out_dir / f"{s[2].stem}_color.png").convert("RGB")) for s in samples]
    result = _score(label, outputs, samples, perceptual)
    if hints:  # how closely the outputs keep the colours they were told, at the hinted pixels
        told = json.loads(guide.read_text())
        errors = np.concatenate([metrics.hint_errors(out, truth, [tuple(map(int, p.split("=")[0].split(",")))
                                                                  for p in told[gray.name]["points"]])
                                 for out, (_, truth, gray) in zip(outputs, samples)])
        result.summary["hint_de2000"] = float(errors.mean())
        result.summary["hint_within5"] = float((errors <= 5).mean())
    result.outputs = out_dir
    result.images_per_s = len(samples) / seconds
    result.ms_per_mp = 1000 * seconds / (len(samples) * EVAL_SIZE * EVAL_SIZE / 1e6)
    return result


def gray_baseline(samples: list, perceptual=None) -> ModelResult:
    outputs = [np.asarray(Image.open(s[2]).convert("RGB")) for s in samples]
    return _score(GRAY, outputs, samples, perceptual)


# the optional metrics' keys in a summary and their column titles
PERCEPTUAL_COLUMNS = {"lpips": "LPIPS", "fid": "FID", "fd_efflite0": "FD-EffLite0"}


def write_report(results: list[ModelResult], samples: list, work: Path, output: Path, command: str,
                 notes: list[str] | None = None) -> None:
    """report.md, metrics.json, per_image.csv and sheet.png into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    write_text(output / "metrics.json", json.dumps(
        {r.name: {**r.summary, "images_per_s": r.images_per_s, "ms_per_mp": r.ms_per_mp} for r in results},
        indent=2) + "\n")
    with atomic_write(output / "per_image.csv", text=True) as f:
        w = csv.writer(f)
        keys = ["psnr", "de2000", "auc", "cf", "cf_gt"] + (["lpips"] if results and "lpips" in results[0].rows[0] else [])
        w.writerow(["model", "image", *keys])
        for r in results:
            for row in r.rows:
                w.writerow([r.name, row["image"], *(f"{row[k]:.4f}" for k in keys)])
    lines = [
        "# Evaluation report", "",
        f"Command: `{command}`", "",
        (f"Date: {dt.date.today().isoformat()}; colorize-cli {__version__}; Python {platform.python_version()}; "
        f"torch {_torch_version()}; {len(samples)} images; protocol: docs/evaluation.md "
        f"({EVAL_SIZE}x{EVAL_SIZE} centre crops, gray PNG inputs)."), "",
        markdown_table(results), "",
        *[line for note in notes or [] for line in (note, "")],
        "Speed: whole pipeline from files (read, colorize, write), on the eval images, this machine.", "",
        "![contact sheet: gray input, ground truth, each model](sheet.png)", "",
    ]
    write_text(output / "report.md", "\n".join(lines))
    contact_sheet(results, samples, work, output / "sheet.png")


def _torch_version() -> str:
    import torch

    return torch.__version__


def metric_table(results: list[ModelResult]) -> tuple[list[str], list[list[str]]]:
    """The column titles and the formatted cells of the metrics table, one row per model: the report's
    (:func:`markdown_table`) and the terminal's are the same table."""
    extra = [k for k in PERCEPTUAL_COLUMNS if results and k in results[0].summary]  # asked for, and computed
    hinted = any("hint_de2000" in r.summary for r in results)
    head = ["model", "PSNR (dB) ↑", "ΔE2000 ↓", "AuC (%) ↑", "CF", "CF truth", "ΔCF ↓", "grayish ↓",
            *(f"{PERCEPTUAL_COLUMNS[k]} ↓" for k in extra),
            *(("ΔE2000 at hints ↓", "hints within 5") if hinted else ()), "images/s", "ms/MP"]
    rows = []
    for r in results:
        s = r.summary
        at_hints = (f"{s['hint_de2000']:.2f}", f"{s['hint_within5']:.3f}") if "hint_de2000" in s else ("–", "–")
        rows.append([r.name, f"{s['psnr']:.2f}", f"{s['de2000']:.2f}", f"{s['auc']:.2f}", f"{s['cf']:.1f}",
                     f"{s['cf_gt']:.1f}", f"{s['dcf']:.1f}", f"{s['grayish']:.3f}",
                     *(f"{s[k]:.3f}" if k == "lpips" else f"{s[k]:.1f}" for k in extra),
                     *(at_hints if hinted else ()),
                     *((f"{r.images_per_s:.1f}", f"{r.ms_per_mp:.0f}") if r.images_per_s else ("–", "–"))])
    return head, rows


def markdown_table(results: list[ModelResult]) -> str:
    head, rows = metric_table(results)
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(row) + " |" for row in rows)])


def contact_sheet(results: list[ModelResult], samples: list, work: Path, path: Path, count: int = SHEET_IMAGES) -> None:
    """Rows: a fixed sample of images (evenly spaced); columns: gray input, truth, each model."""
    picks = np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int)
    thumb = 160
    models = [r for r in results if r.name != GRAY]
    cols = 2 + len(models)
    sheet = Image.new("RGB", (cols * thumb, len(picks) * thumb), "white")
    for row, i in enumerate(picks):
        stem, truth, gray_path = samples[i]
        tiles = [Image.open(gray_path).convert("RGB"), Image.fromarray(truth)]
        tiles += [Image.open(r.outputs / f"{stem}_color.png").convert("RGB") for r in models]
        for col, tile in enumerate(tiles):
            sheet.paste(tile.resize((thumb, thumb), Image.Resampling.BICUBIC), (col * thumb, row * thumb))
    save_pil(sheet, path)


def run_eval(models: list[str], data: Path, output: Path, limit: int | None = None, device: str = "cpu",
             command: str | None = None, size: int | None = None, lpips: bool = False, fid: bool = False,
             strict_perceptual: bool = False, fd: bool = False, hints: list[int] | None = None,
             reference_truth: bool = False) -> list[ModelResult]:
    """Evaluate ``models`` on the photos in ``data`` and write the report into ``output``.

    ``hints``: numbers of simulated point hints (each a row per model; 0: none), and ``reference_truth``
    each photo's own colour photo as its reference (:func:`guidance_file`); a model that takes no hints
    is an error then. ``lpips``/``fid``/``fd`` (FD-EffLite0) add those metrics (docs/perceptual.md); when their pretrained weights cannot be
    had they are left out with a warning and a line in the report, or, with ``strict_perceptual``,
    :class:`colorize_cli.engine.perceptual.WeightsUnavailable` is raised."""
    work = output / "work"
    samples = prepare(data, work, limit)
    perceptual = None
    if lpips or fid or fd:
        perceptual = EvalPerceptual([s[1] for s in samples], lpips=lpips, fid=fid, fd=fd,
                                    device=torch_device(device), strict=strict_perceptual)
    # with hints: each model at each number of points (and with the reference), as given
    guided = [(n, reference_truth) for n in (hints or [0])]
    results = [gray_baseline(samples, perceptual)] + [
        evaluate_model(m, samples, work, device, size, perceptual, n, ref) for m in models for n, ref in guided]
    write_report(results, samples, work, output, command or shlex.join(["colorize", *sys.argv[1:]]),
                 notes=perceptual.notes() if perceptual else None)
    return results
