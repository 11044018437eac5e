"""Metrics of EVAL.md: hand-computed values and a cross-check against an independent computation."""

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab

from colorize_cli.engine import metrics


def _img(rgb, shape=(8, 8)):
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (*shape, 3)).copy()


def test_psnr_by_hand():
    a = _img([100, 100, 100])
    b = a.copy()
    b[..., 0] += 10  # error 10 on a third of the values: MSE = 100/3
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / 3)))
    assert metrics.psnr(a, a) == float("inf")


def test_colorfulness_by_hand():
    assert metrics.colorfulness(_img([120, 120, 120])) == 0.0
    # uniform colour: no spread, rg = 100, yb = |0.5 (200 + 100) - 50| = 100 -> 0.3 * sqrt(2) * 100
    assert metrics.colorfulness(_img([200, 100, 50])) == pytest.approx(0.3 * np.sqrt(2) * 100)
    # half black, half red: rg in {0, 255} (std 127.5, mean 127.5), yb in {0, 127.5} (std 63.75, mean 63.75)
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, :, 0] = 255
    expect = np.hypot(127.5, 63.75) + 0.3 * np.hypot(127.5, 63.75)
    assert metrics.colorfulness(img) == pytest.approx(expect)


def test_auc_by_hand():
    lab = np.zeros((1, 2, 3))
    other = lab.copy()
    other[0, 1, 1] = 50.5  # one pixel exact, one at ab distance 50.5
    # thresholds 0..150: pixel 1 counts for all 151, pixel 2 for t = 51..150 (100 of them)
    assert metrics.auc(other, lab) == pytest.approx(100 * (151 + 100) / (2 * 151))
    assert metrics.auc(lab, lab) == 100.0


def test_identical_images_score_perfectly():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    m = metrics.image_metrics(img, img)
    assert m["auc"] == 100.0 and m["de2000"] == 0.0 and m["psnr"] == float("inf")
    assert m["cf"] == m["cf_gt"]


def _independent(out, truth):
    """EVAL.md written out again, straight from the text, for the cross-check."""
    lo, lt = rgb2lab(out / 255.0), rgb2lab(truth / 255.0)
    d = np.sqrt((lo[..., 1] - lt[..., 1]) ** 2 + (lo[..., 2] - lt[..., 2]) ** 2)
    auc = np.mean([(d <= t).mean() for t in range(151)]) * 100
    mse = ((out.astype(float) - truth.astype(float)) ** 2).mean()

    def cf(x):
        x = x.astype(float)
        rg = np.abs(x[..., 0] - x[..., 1])
        yb = np.abs(0.5 * (x[..., 0] + x[..., 1]) - x[..., 2])
        return np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)

    return {"psnr": 10 * np.log10(255**2 / mse), "de2000": deltaE_ciede2000(lt, lo).mean(), "auc": auc,
            "cf": cf(out), "cf_gt": cf(truth)}


def _hue_shift(img):
    lab = rgb2lab(img)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1], lab[..., 2] = -b, a  # rotate hue by 90 degrees
    from skimage.color import lab2rgb

    return (np.clip(lab2rgb(lab), 0, 1) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("kind", ["gray", "hue_shift", "noisy"])
def test_cross_check_against_an_independent_implementation(kind):
    from skimage import data

    truth = data.astronaut()[::4, ::4]
    if kind == "gray":
        g = np.asarray(__import__("PIL.Image").Image.fromarray(truth).convert("L"))
        out = np.repeat(g[..., None], 3, axis=2)
    elif kind == "hue_shift":
        out = _hue_shift(truth)
    else:
        rng = np.random.default_rng(0)
        out = np.clip(truth + rng.normal(0, 12, truth.shape), 0, 255).astype(np.uint8)
    ours, ref = metrics.image_metrics(out, truth), _independent(out, truth)
    for k in ref:
        assert ours[k] == pytest.approx(ref[k], abs=1e-6), k
    if kind == "gray":
        assert ours["cf"] < 1e-9 and ours["auc"] < 100
    if kind == "hue_shift":
        assert ours["auc"] < metrics.image_metrics(np.repeat(truth.mean(2, keepdims=True).astype(np.uint8), 3, 2),
                                                   truth)["auc"] + 10


def test_summary_adds_dcf_and_grayish():
    rows = [{"psnr": 20, "de2000": 10, "auc": 90, "cf": 5, "cf_gt": 30},
            {"psnr": 30, "de2000": 4, "auc": 96, "cf": 25, "cf_gt": 20},
            {"psnr": 25, "de2000": 6, "auc": 92, "cf": 2, "cf_gt": 8}]
    s = metrics.summarize(rows)
    assert s["psnr"] == 25 and s["cf"] == pytest.approx(32 / 3) and s["cf_gt"] == pytest.approx(58 / 3)
    assert s["dcf"] == pytest.approx(26 / 3)
    assert s["grayish"] == pytest.approx(1 / 3)  # only the first: the third's truth is itself grayish
    assert s["n"] == 3
