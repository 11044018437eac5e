"""The film stabiliser's motion, warp, cut detection and smoothing (engine/temporal.py), in NumPy: no torch
needed, so films colour in an environment without it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from colorize_cli.engine.temporal import ChromaStabilizer, chroma_flicker, compare, estimate_flow, warp


def texture(h: int, w: int, seed: int, dx: float = 0.0, dy: float = 0.0, lo: float = 0.0,
            hi: float = 100.0) -> np.ndarray:
    """A smooth texture f(x + dx, y + dy) in lo..hi: shifting it by a sub-pixel amount is exact."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    xs, ys = xs + dx, ys + dy
    out = np.zeros((h, w))
    for _ in range(24):
        freq, angle = rng.uniform(0.04, 0.45), rng.uniform(0, 2 * np.pi)
        out += rng.uniform(0.5, 1.5) * np.sin(freq * (np.cos(angle) * xs + np.sin(angle) * ys)
                                              + rng.uniform(0, 2 * np.pi))
    out = (out - out.mean()) / out.std()
    return np.clip((lo + hi) / 2 + (hi - lo) / 5 * out, 0, 100).astype(np.float32)


def panning_film(n: int = 10, h: int = 72, w: int = 128, noise: float = 4.0):
    """A camera pan (sub-pixel steps, different in x and y): L, and ab that moves with the content plus
    fresh noise every frame (what a network colouring frame by frame does)."""
    rng = np.random.default_rng(7)
    lums, abs_, x, y = [], [], 0.0, 0.0
    for t in range(n):
        x, y = x + 1.6 + 0.5 * np.sin(t), y + 0.7 * np.cos(t)
        lums.append(texture(h, w, 1, x, y))
        ab = np.stack([texture(h, w, 21, x, y, -40, 140) - 50, texture(h, w, 31, x, y, -40, 140) - 50]) / 2
        abs_.append((ab + rng.normal(0, noise, (2, h, w))).astype(np.float32))
    return lums, abs_


@pytest.mark.parametrize("size", [(97, 150), (144, 256)])
@pytest.mark.parametrize("shift", [(2.5, -1.25), (-1.7, 0.6), (3.0, 1.0), (0.3, -0.4)])
def test_a_pure_shift_is_recovered(size, shift):
    (h, w), (dx, dy) = size, shift
    flow = estimate_flow(texture(h, w, 1), texture(h, w, 1, dx, dy))
    assert flow.shape == (2, h, w) and flow.dtype == np.float32
    inner = flow[:, 12:-12, 12:-12]  # away from the border, where part of the window has no match
    assert abs(float(np.median(inner[0])) - dx) < 0.1 and abs(float(np.median(inner[1])) - dy) < 0.1
    assert float(np.hypot(inner[0] - dx, inner[1] - dy).mean()) < 0.25


def test_warp_with_a_zero_flow_is_the_identity():
    image = np.random.default_rng(0).uniform(0, 100, (3, 13, 17)).astype(np.float32)
    out, valid = warp(image, np.zeros((2, 13, 17), np.float32))
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)
    assert valid.shape == (13, 17) and valid.all()


def test_warp_interpolates_bilinearly_and_clamps_at_the_border():
    h, w = 6, 7
    image = np.random.default_rng(1).uniform(0, 100, (2, h, w)).astype(np.float32)
    flow = np.zeros((2, h, w), np.float32)
    flow[:, 2, 1] = 0.25, 0.5  # samples at (1.25, 2.5)
    flow[:, 1, 2] = -0.75, 1.25  # samples at (1.25, 2.25)
    flow[:, 4, 3] = 1.6, -2.3  # samples at (4.6, 1.7)
    flow[:, 0, w - 1] = 0.3, -0.4  # past the last centre but inside the frame: the border value, valid
    flow[:, 3, w - 1] = 0.7, 0.0  # past the frame's edge: the border value, not valid
    flow[:, 4, 0] = -0.2, 0.45  # left of the first column's centre: clamped in x, interpolated in y, valid
    flow[:, 5, 2] = 0.0, 0.4  # below the last row's centre, inside the frame: the border value, valid
    out, valid = warp(image, flow)

    def bilinear(x: float, y: float) -> np.ndarray:
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        return ((1 - fx) * (1 - fy) * image[:, y0, x0] + fx * (1 - fy) * image[:, y0, x0 + 1]
                + (1 - fx) * fy * image[:, y0 + 1, x0] + fx * fy * image[:, y0 + 1, x0 + 1])

    np.testing.assert_allclose(out[:, 2, 1], bilinear(1.25, 2.5), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out[:, 1, 2], bilinear(1.25, 2.25), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out[:, 4, 3], bilinear(4.6, 1.7), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out[:, 0, w - 1], image[:, 0, w - 1], rtol=1e-6)
    np.testing.assert_allclose(out[:, 3, w - 1], image[:, 3, w - 1], rtol=1e-6)
    np.testing.assert_allclose(out[:, 4, 0], 0.55 * image[:, 4, 0] + 0.45 * image[:, 5, 0],
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out[:, 5, 2], image[:, 5, 2], rtol=1e-6)
    expected = np.ones((h, w), bool)
    expected[3, w - 1] = False
    np.testing.assert_array_equal(valid, expected)


@pytest.mark.parametrize("second", [
    texture(97, 150, 3),  # unrelated content, the same range of L: the compensated residual finds it
    texture(97, 150, 3, lo=50, hi=100),  # and a brighter one: the histogram finds it too
])
def test_a_cut_between_unrelated_frames_is_detected(second):
    step = compare(texture(97, 150, 2), second)
    assert step.cut


def test_a_repeated_or_moved_frame_is_not_a_cut():
    frame = texture(97, 150, 2)
    step = compare(frame, frame.copy())
    assert not step.cut
    assert step.valid.all() and float(step.residual.mean()) < 0.5
    moved = compare(frame, texture(97, 150, 2, 2.5, -1.25))
    assert not moved.cut and float(moved.residual[moved.valid].mean()) < 2.0


def test_the_stabiliser_reduces_chroma_flicker_on_a_pan():
    lums, abs_ = panning_film()
    stabilizer = ChromaStabilizer()
    stable = [stabilizer(lum, ab) for lum, ab in zip(lums, abs_)]
    assert all(s.dtype == np.float32 and s.shape == ab.shape for s, ab in zip(stable, abs_))
    assert stabilizer.cuts == 0
    raw_flicker, raw_cuts = chroma_flicker(lums, abs_)
    stable_flicker, stable_cuts = chroma_flicker(lums, stable)
    assert raw_cuts == stable_cuts == 0
    assert raw_flicker > 4.0  # about the noise's sqrt(2 * 2) * 4 * sqrt(pi / 4)
    assert stable_flicker < 0.35 * raw_flicker, (stable_flicker, raw_flicker)
    # the colour follows the motion instead of smearing it: the last frame is still close to the noiseless ab
    noiseless = panning_film(noise=0.0)[1][-1]
    assert float(np.abs(stable[-1] - noiseless).mean()) < 0.6 * float(np.abs(abs_[-1] - noiseless).mean())


def test_memory_zero_returns_the_prediction_unchanged():
    lums, abs_ = panning_film(n=4)
    stabilizer = ChromaStabilizer(memory=0.0)
    for lum, ab in zip(lums, abs_):
        np.testing.assert_array_equal(stabilizer(lum, ab), ab)


def test_the_stabiliser_starts_afresh_after_a_cut():
    lums, abs_ = panning_film(n=4)
    other = texture(72, 128, 9)
    stabilizer = ChromaStabilizer()
    for lum, ab in zip(lums, abs_):
        stabilizer(lum, ab)
    ab = np.full((2, 72, 128), 20.0, np.float32)
    np.testing.assert_array_equal(stabilizer(other, ab), ab)
    assert stabilizer.cuts == 1


def test_the_module_does_not_need_torch():
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
            "import numpy as np\n"
            "from colorize_cli.engine.temporal import ChromaStabilizer\n"
            "s = ChromaStabilizer(); lum = np.linspace(0, 100, 24 * 40, dtype=np.float32).reshape(24, 40)\n"
            "s(lum, np.zeros((2, 24, 40), np.float32)); s(lum, np.ones((2, 24, 40), np.float32))\n")
    subprocess.run([sys.executable, "-c", code], check=True)
