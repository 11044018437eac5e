"""Colour hints in NumPy: what the user says (``--hint X,Y=COLOR``, ``--hints FILE``, ``--reference
PHOTO``) turned into the hint model's inputs, and hints simulated from a truth for evaluation.

The hint model (``efflite-unet-hints``) takes, beside normalised L at its working shape (h, w):
``hint_ab`` (N, 2, h, w) normalised a/b, ``hint_mask`` (N, 1, h, w), ``hint_hist`` (N, Q) a distribution
over the 10-unit a/b bins of :func:`colorize_cli.color.ab_bins`, and ``hint_saturation`` (N, 1), the
reference's mean chroma, normalised. A point given at X, Y of the input photo lands on the working
pixel that covers it; its colour is taken as a/b in CIELAB (the photo's own L stays).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ImageColor

from colorize_cli.color import (
    AB_SCALE,
    ab_histogram,
    colorfulness,
    lab_to_pixels,
    normalize_ab,
    rgb_to_lab,
    saturate,
)
from colorize_cli.errors import OptionError, error_line
from colorize_cli.io.images import read_image

HINT_STEP = 10.0  # the a/b grid of the global hint's distribution (ab_bins): the model's, training's and ours
# beside the network's inputs, what the pipeline itself does with a reference: its colourfulness
REFERENCE_COLOURFULNESS = "reference_colourfulness"
_HINT = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*=\s*(.+?)\s*$")


@dataclass(frozen=True)
class PointHint:
    x: int  # pixel column of the input photo, from the left
    y: int  # pixel row, from the top
    ab: tuple[float, float]  # the colour's a/b in CIELAB units
    text: str = ""  # as the user wrote it


@dataclass
class Hints:
    """What is known of one photo's colours: points, and a reference's colour distribution."""

    points: list[PointHint] = field(default_factory=list)
    histogram: np.ndarray | None = None  # (Q,) over ab_bins(HINT_STEP)
    saturation: float = 0.0  # mean chroma of the reference, Lab units
    colourfulness: float = 0.0  # the reference's Hasler-Süsstrunk colourfulness (0-255 RGB), which the output takes
    schedule: list[tuple[float, Hints]] = field(default_factory=list)  # a film's references by start time (s)

    def __bool__(self) -> bool:
        return bool(self.points) or self.histogram is not None or bool(self.schedule)

    def at(self, seconds: float) -> Hints:
        """The hints for the frame at ``seconds`` of a film: the scheduled reference that began last
        (the first one before it begins), or these hints when there is no schedule."""
        if not self.schedule:
            return self
        started = [h for t, h in self.schedule if t <= seconds]
        return started[-1] if started else self.schedule[0][1]


def colour_ab(text: str) -> tuple[float, float]:
    """a/b (CIELAB units) of ``#RRGGBB`` or a CSS colour name; OptionError for anything else."""
    try:
        r, g, b = ImageColor.getrgb(text.strip())[:3]
    except ValueError:
        raise OptionError(f"{{hint}} colour {text!r}: not a colour; use #RRGGBB or a CSS name such as red") from None
    lab = rgb_to_lab(np.array([r, g, b], np.float64).reshape(3, 1) / 255)[:, 0]
    return float(lab[1]), float(lab[2])


def parse_hint(text: str) -> PointHint:
    """``X,Y=COLOR`` -> a :class:`PointHint`; OptionError saying what is wrong otherwise."""
    match = _HINT.match(text)
    if match is None:
        raise OptionError(f"{{hint}} {text!r}: expected X,Y=COLOR, e.g. 120,80=red or 12,40=#3a5fcd")
    x, y, colour = int(match[1]), int(match[2]), match[3]
    return PointHint(x, y, colour_ab(colour), text.strip())


def check_inside(hints: Hints, width: int, height: int, where: str) -> None:
    """A point outside the photo is an OptionError naming the photo."""
    for p in hints.points:
        if not (0 <= p.x < width and 0 <= p.y < height):
            raise OptionError(f"{where}: {{hint}} {p.text or f'{p.x},{p.y}'} lies outside the photo "
                              f"({width} x {height} pixels; X 0..{width - 1}, Y 0..{height - 1})")


def read_hints_file(path: Path) -> dict[str, Hints]:
    """``--hints FILE``, keyed by input file name (or path relative to the working folder):

    * JSON: ``{"photo.jpg": ["120,80=red", ...]}``, or per photo ``{"points": [...], "reference":
      "colour.jpg"}`` (a reference path relative to the file's folder);
    * CSV: rows ``file,x,y,colour`` (a header row optional).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise OptionError(f"{{hints}} {path}: cannot be read ({exc.strerror or exc})") from None
    table: dict[str, Hints] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise OptionError(f"{{hints}} {path}: not valid JSON ({exc})") from None
        shape = '{"photo.jpg": ["X,Y=COLOR", ...] or {"points": [...], "reference": "PHOTO"}, ...}'
        if not isinstance(data, dict):
            raise OptionError(f"{{hints}} {path}: expected {shape}")
        for name, entry in data.items():
            entry = {"points": entry} if isinstance(entry, list) else entry
            if not isinstance(entry, dict) or not isinstance(entry.get("points", []), list):
                raise OptionError(f"{{hints}} {path}: {name}: expected {shape}")
            hints = Hints([parse_hint(str(item)) for item in entry.get("points", [])])
            if entry.get("reference"):
                ref = hints_from_reference(path.parent / str(entry["reference"]))
                hints.histogram, hints.saturation, hints.colourfulness = ref.histogram, ref.saturation, ref.colourfulness
            table[str(name)] = hints
        return table
    for row in csv.reader(io.StringIO(text)):
        if not row or row[0].strip().lower() == "file" or row[0].startswith("#"):
            continue
        if len(row) != 4:
            raise OptionError(f"{{hints}} {path}: expected rows of file,x,y,colour, not {','.join(row)!r}")
        table.setdefault(row[0].strip(), Hints()).points.append(parse_hint(f"{row[1]},{row[2]}={row[3]}"))
    return table


_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)$")


def parse_time(text: str) -> float:
    """``SECONDS``, ``MM:SS`` or ``HH:MM:SS`` (fractions allowed) -> seconds; ValueError otherwise."""
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(text)
    parts = [float(p) for p in match.groups() if p is not None]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def read_reference_schedule(path: Path) -> Hints:
    """``--reference FILE.txt`` for a film: lines ``TIME=PHOTO`` (TIME in seconds, MM:SS or HH:MM:SS;
    PHOTO relative to the file's folder), one per shot, each reference guiding the frames from its time
    on; ``#`` starts a comment."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise OptionError(f"{{reference}} {path}: cannot be read ({exc.strerror or exc})") from None
    schedule = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        time_text, _, photo = line.partition("=")
        try:
            seconds = parse_time(time_text)
        except ValueError:
            raise OptionError(f"{{reference}} {path}:{number}: expected TIME=PHOTO (TIME in seconds or "
                              f"HH:MM:SS), not {line!r}") from None
        schedule.append((seconds, hints_from_reference(path.parent / photo.strip())))
    if not schedule:
        raise OptionError(f"{{reference}} {path}: no TIME=PHOTO lines")
    return Hints(schedule=sorted(schedule, key=lambda item: item[0]))


def hints_from_reference(path: Path) -> Hints:
    """The global hint of the colour photo at ``path``; OptionError naming it when it cannot serve."""
    try:
        photo = read_image(Path(path))
    except (OSError, ValueError) as exc:
        raise OptionError(f"{{reference}} {path}: {error_line(exc)}") from None
    if photo.pixels.ndim != 3:
        raise OptionError(f"{{reference}} {path}: a gray photo has no colours to give; use a colour photo")
    return reference_hints(photo.pixels)


def reference_hints(rgb: np.ndarray) -> Hints:
    """The global hint of a colour photo (H, W, 3) uint8/uint16: its a/b distribution and mean chroma."""
    scale = 65535 if rgb.dtype == np.uint16 else 255
    lab = rgb_to_lab(np.asarray(rgb[..., :3], np.float32).transpose(2, 0, 1) / scale)
    chroma = float(np.sqrt((lab[1:] ** 2).sum(0)).mean())
    return Hints(histogram=ab_histogram(lab[1:], HINT_STEP), saturation=chroma,
                 colourfulness=colorfulness(np.asarray(rgb[..., :3], np.float64) * (255 / scale)))


def hint_inputs(hints_per_image: list[Hints], sizes: list[tuple[int, int]], shape: tuple[int, int],
                bins: int) -> dict[str, np.ndarray]:
    """The hint model's inputs for a batch: each image's hints (points in its own pixel coordinates,
    ``sizes`` its (height, width)) at the working ``shape`` (h, w)."""
    n, (h, w) = len(hints_per_image), shape
    hint_ab = np.zeros((n, 2, h, w), np.float32)
    mask = np.zeros((n, 1, h, w), np.float32)
    hist = np.zeros((n, bins), np.float32)
    saturation = np.zeros((n, 1), np.float32)
    colourful = np.zeros(n, np.float32)
    for i, (hints, (height, width)) in enumerate(zip(hints_per_image, sizes)):
        for p in hints.points:
            row, col = min(h - 1, p.y * h // height), min(w - 1, p.x * w // width)
            hint_ab[i, :, row, col] = normalize_ab(np.asarray(p.ab, np.float32))
            mask[i, 0, row, col] = 1
        if hints.histogram is not None:
            hist[i] = hints.histogram
            saturation[i] = hints.saturation / AB_SCALE
            colourful[i] = hints.colourfulness
    return {"hint_ab": hint_ab, "hint_mask": mask, "hint_hist": hist, "hint_saturation": saturation,
            REFERENCE_COLOURFULNESS: colourful}


def simulated_points(truth_rgb: np.ndarray, count: int, seed: int) -> list[PointHint]:
    """``count`` point hints at uniformly random pixels of a colour photo (H, W, 3), each with the
    truth's colour there: what ``colorize eval --hints N`` gives the model, the same for the same seed."""
    rng = np.random.default_rng(seed)
    height, width = truth_rgb.shape[:2]
    ys, xs = rng.integers(0, height, count), rng.integers(0, width, count)
    points = []
    for x, y in zip(xs.tolist(), ys.tolist()):
        r, g, b = (int(v) for v in truth_rgb[y, x, :3])
        points.append(PointHint(x, y, colour_ab(f"#{r:02x}{g:02x}{b:02x}"), f"{x},{y}=#{r:02x}{g:02x}{b:02x}"))
    return points


SPREAD_SIGMA = 24.0  # working pixels: how far a point hint's colour spreads (chosen on bsds500/val: docs/hints.md)
SPREAD_SIGMA_L = 8.0  # L units: the spread fades across an edge (a change of lightness) this steep
PIN_SIGMA = 1.0  # working pixels: around the point itself the hint's colour is held exactly


def _hint_weights(lum: np.ndarray | None, n: int, y: int, x: int, shape: tuple[int, int], sigma: float,
                  sigma_l: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """The window around (y, x) and the weights of the point there: exp(-d² / 2σ²) exp(-ΔL² / 2σ_L²)."""
    h, w = shape
    radius = max(1, int(np.ceil(3 * sigma)))
    y0, y1, x0, x1 = max(0, y - radius), min(h, y + radius + 1), max(0, x - radius), min(w, x + radius + 1)
    dy, dx = np.arange(y0, y1)[:, None] - y, np.arange(x0, x1)[None, :] - x
    weight = np.exp(-(dy**2 + dx**2) / (2 * sigma**2)).astype(np.float32)
    if lum is not None:
        weight = weight * np.exp(-((lum[n, y0:y1, x0:x1] - lum[n, y, x]) ** 2) / (2 * sigma_l**2))
    return (slice(y0, y1), slice(x0, x1)), weight


def spread_points(ab: np.ndarray, hint_ab: np.ndarray, hint_mask: np.ndarray, lum: np.ndarray | None = None,
                  sigma: float = SPREAD_SIGMA, sigma_l: float = SPREAD_SIGMA_L) -> np.ndarray:
    """The predicted chroma ``ab`` (N, 2, h, w, Lab units) moved towards the point hints around them,
    along the photo's own edges (Levin et al. 2004's idea, in one edge-aware pass): each point pulls
    with weight exp(-d² / 2σ²) exp(-ΔL² / 2σ_L²) (``lum``: the working L, (N, h, w)), several points by
    the share of their weights; then each point's own pixel is held to its colour (``PIN_SIGMA``), so
    that the output keeps the colour the user gave there whatever the network and the other points make
    of it."""
    out = np.array(ab, np.float32, copy=True)
    points = list(zip(*np.nonzero(hint_mask[:, 0])))
    for n in sorted({int(p[0]) for p in points}):
        pull = np.zeros_like(out[n])
        total = np.zeros(out.shape[-2:], np.float32)
        for _, y, x in (p for p in points if p[0] == n):
            window, weight = _hint_weights(lum, n, y, x, out.shape[-2:], sigma, sigma_l)
            pull[(slice(None), *window)] += weight * (hint_ab[n, :, y, x, None, None] * AB_SCALE - out[n][(slice(None), *window)])
            total[window] += weight
        out[n] += pull / np.maximum(total, 1.0)
        for _, y, x in (p for p in points if p[0] == n):
            window, weight = _hint_weights(None, n, y, x, out.shape[-2:], PIN_SIGMA, sigma_l)
            target = hint_ab[n, :, y, x, None, None] * AB_SCALE
            out[n][(slice(None), *window)] += (target - out[n][(slice(None), *window)]) * weight
    return out


def match_colourfulness(ab: np.ndarray, lum: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each image's chroma ``ab`` (N, 2, h, w, Lab units) scaled, hue kept and within the sRGB gamut at
    lightness ``lum`` (N, h, w), so that the picture is as colourful (Hasler-Süsstrunk, the CF of
    EVAL.md) as its reference, ``target`` (N,; 0: no reference, left alone), by at most 3x either way:
    the network sees the reference's colours, and the reference says how colourful the result is."""
    out = np.array(ab, np.float32, copy=True)
    for i, want in enumerate(np.asarray(target, np.float32).reshape(-1)):
        if want <= 0 or not np.any(out[i]):
            continue
        low, high = 1 / 3, 3.0
        for _ in range(12):  # colourfulness grows with the scale: bisect on it
            mid = (low * high) ** 0.5
            if colorfulness(lab_to_pixels(lum[i], out[i] * np.float32(mid), 255)) < want:
                low = mid
            else:
                high = mid
        out[i] = saturate(out[i], lum[i], (low * high) ** 0.5)
    return out
