"""The quality metrics of docs/evaluation.md, on 8-bit RGB arrays (H, W, 3).

PSNR on 8-bit RGB; mean CIEDE2000; AuC of the ab-distance curve for thresholds 0..150;
Hasler & Süsstrunk colourfulness (CF); "grayish" = output CF < 10 while the truth has CF >= 10.
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

from colorize_cli.color import colorfulness

AUC_THRESHOLDS = np.arange(0, 151)
GRAYISH_CF = 10.0


def psnr(output: np.ndarray, truth: np.ndarray) -> float:
    mse = np.mean((output.astype(np.float64) - truth.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def auc(lab_out: np.ndarray, lab_truth: np.ndarray) -> float:
    """Mean over t = 0..150 of the share of pixels whose ab distance is <= t, in percent."""
    dist = np.sqrt(((lab_out[..., 1:] - lab_truth[..., 1:]) ** 2).sum(-1)).ravel()
    counts = np.searchsorted(np.sort(dist), AUC_THRESHOLDS, side="right")
    return float(100 * np.mean(counts / dist.size))


def image_metrics(output: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """All per-image metrics of an 8-bit RGB output against its 8-bit RGB ground truth."""
    lab_out, lab_truth = rgb2lab(output), rgb2lab(truth)
    return {
        "psnr": psnr(output, truth),
        "de2000": float(np.mean(deltaE_ciede2000(lab_truth, lab_out))),
        "auc": auc(lab_out, lab_truth),
        "cf": colorfulness(output),
        "cf_gt": colorfulness(truth),
    }


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Average per-image metrics into the report's row (adds dcf, grayish and n)."""
    if not rows:
        raise ValueError("no images to summarise")
    keys = ("psnr", "de2000", "auc", "cf", "cf_gt")
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    out["dcf"] = abs(out["cf"] - out["cf_gt"])
    out["grayish"] = float(np.mean([r["cf"] < GRAYISH_CF and r["cf_gt"] >= GRAYISH_CF for r in rows]))
    out["n"] = len(rows)
    return out


def hint_errors(output: np.ndarray, truth: np.ndarray, points: list[tuple[int, int]]) -> np.ndarray:
    """CIEDE2000 at the hinted pixels ``(x, y)`` between the output and the colour it was told: the
    truth's a/b there (the hint) at the output's own L (a hint gives a colour; the lightness stays the
    photo's, and a gray input's L differs from its colour original's where the gray is not CIELAB L)."""
    if not points:
        return np.zeros(0)
    xs, ys = np.array(points).T
    lab_out = rgb2lab(output[ys, xs][None].astype(np.float64) / 255)[0]
    told = rgb2lab(truth[ys, xs][None].astype(np.float64) / 255)[0]
    told[:, 0] = lab_out[:, 0]
    return deltaE_ciede2000(lab_out, told)
