"""Temporally stable chroma for films, and the flicker measure.

A network that colours each frame on its own decides a little differently every frame (film grain,
a slightly shifted framing), and the colour wobbles. :class:`ChromaStabilizer` smooths the
predicted ab over time, following the motion, at the working size:

    L(t-1), L(t) ─► motion (coarse-to-fine block matching on L) ─► warp ab(t-1) along it
    ab(t) = keep * warped ab(t-1) + (1 - keep) * predicted ab(t)

``keep`` is ``memory`` where the motion-compensated previous L matches L(t), and falls towards 0
where it does not (new content, occlusions, the frame border); at a cut, found from the luminance
histogram and the compensated L residual, the colour starts afresh.

:func:`chroma_flicker` measures what it removes: the mean change of ab between consecutive frames
after motion compensation (Lab units), pairs across a cut left out.

Pure NumPy (float32), so that films colour without torch: the private helpers reproduce, to float32
rounding, the torch operations this was first written with (``grid_sample`` bilinear with border
padding, ``avg_pool2d``, bilinear ``interpolate`` without corner alignment, replicate padding, ``histc``).
Arrays in, arrays out; anything ``np.asarray`` takes (a CPU tensor too) is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from colorize_cli.resample import pool2, resize_bilinear

COARSEST_SIDE = 40  # the motion search starts on L pooled down to this long side
BLOCK = 8  # one motion vector per BLOCK x BLOCK pixels, matched over overlapping 2 BLOCK x 2 BLOCK windows
MOTION_PENALTY = 0.05  # squared L units per pixel of motion: flat areas, which match anywhere, stay still
HIST_BINS = 32
CUT_HISTOGRAM = 0.35  # total-variation distance of L histograms (0..1) above which a frame is a cut
CUT_RESIDUAL = 12.0  # mean compensated L residual (L units) above which a frame is a cut


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _pool_axis(x: np.ndarray, axis: int, kernel: int, stride: int, padding: int, ceil_mode: bool,
               count_include_pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """Window sums of ``x`` along ``axis`` (-1 or -2) as torch's pooling lays the windows out, and each
    window's divisor along this axis."""
    n = x.shape[axis]
    out = (n + 2 * padding - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= n + padding:
        out -= 1  # the last window would start in the padding
    starts = np.arange(out) * stride - padding
    if count_include_pad:
        counts = np.minimum(starts + kernel, n + padding) - starts
    else:
        counts = np.minimum(starts + kernel, n) - np.maximum(starts, 0)
    # the windows are unions of cells of g samples, the first cell starting at -padding: sum the cells
    # (what lies in the padding or past the end adds nothing), then each window's kernel / g cells
    g = gcd(kernel, stride)
    cells = ((out - 1) * stride + kernel) // g
    lead = (x.ndim + axis) * (slice(None),)

    def along(a: int | slice) -> tuple:
        return (*lead, a)

    first = -(-padding // g)  # the first cell that starts at or after sample 0
    begin = first * g - padding
    full = max(0, min(cells, (n + padding) // g) - first)  # whole cells inside the data
    sums = np.zeros((*x.shape[:axis], cells, *x.shape[axis:][1:]), x.dtype)
    if full and axis == -1:  # NumPy sums g strided slices faster than a reduction over a short last axis
        target = sums[along(slice(first, first + full))]
        target[...] = x[along(slice(begin, begin + full * g, g))]
        for r in range(1, g):
            target += x[along(slice(begin + r, begin + full * g, g))]
    elif full:
        block = x[along(slice(begin, begin + full * g))]
        block = block.reshape(*block.shape[:axis], full, g, *block.shape[axis:][1:])
        sums[along(slice(first, first + full))] = block.sum(axis=axis)
    if 0 < first <= cells and begin > 0:  # the cell that straddles the start
        sums[along(first - 1)] = x[along(slice(0, min(begin, n)))].sum(axis=axis)
    rest = begin + full * g
    if rest < n and first + full < cells:  # the cell that straddles the end
        sums[along(first + full)] = x[along(slice(rest, min(rest + g, n)))].sum(axis=axis)
    step, span = stride // g, kernel // g
    windows = sums[along(slice(0, (out - 1) * step + 1, step))]
    for j in range(1, span):
        windows = windows + sums[along(slice(j, j + (out - 1) * step + 1, step))]
    return windows, counts


def _avg_pool(x: np.ndarray, kernel: int, stride: int | None = None, padding: int = 0,
              ceil_mode: bool = False, count_include_pad: bool = True) -> np.ndarray:
    """``F.avg_pool2d`` over the last two axes of ``x`` (..., H, W), square kernel, same arguments."""
    stride = kernel if stride is None else stride
    sums, rows = _pool_axis(x, -2, kernel, stride, padding, ceil_mode, count_include_pad)
    sums, cols = _pool_axis(sums, -1, kernel, stride, padding, ceil_mode, count_include_pad)
    return sums / (rows[:, None] * cols[None, :]).astype(np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` (C, H, W) at ``(x + flow[0], y + flow[1])`` for each pixel (bilinear).

    Returns the warped image and a (H, W) mask of pixels whose source lies inside the image.
    """
    image, flow = _f32(image), _f32(flow)
    c, h, w = image.shape
    sx = np.arange(w, dtype=np.float32)[None, :] + flow[0]
    sy = np.arange(h, dtype=np.float32)[:, None] + flow[1]
    valid = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    # grid_sample(align_corners=False, padding_mode="border"): the source clamped into the pixel centres
    ix, iy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0, y0 = np.floor(ix), np.floor(iy)
    wx, wy = ix - x0, iy - y0  # the weights of the right / lower neighbour
    x0, y0 = x0.astype(np.intp), y0.astype(np.intp)
    dx = (x0 < w - 1).astype(np.intp)  # at the last column the right neighbour has weight 0
    dy = (y0 < h - 1).astype(np.intp) * w
    i00 = (y0 * w + x0).ravel()
    i01, i10 = i00 + dx.ravel(), i00 + dy.ravel()
    i11 = i01 + dy.ravel()
    flat = image.reshape(c, h * w)
    wx, wy = wx.ravel(), wy.ravel()
    ex, ey = 1 - wx, 1 - wy
    # mode="clip": a NaN in the flow gives NaN there, not an IndexError
    out = ex * ey * np.take(flat, i00, axis=1, mode="clip")
    out += wx * ey * np.take(flat, i01, axis=1, mode="clip")
    out += ex * wy * np.take(flat, i10, axis=1, mode="clip")
    out += wx * wy * np.take(flat, i11, axis=1, mode="clip")
    return out.reshape(c, h, w), valid


def _parabola(c_minus: np.ndarray, c0: np.ndarray, c_plus: np.ndarray) -> np.ndarray:
    """Sub-pixel offset of a minimum from the costs at -1, 0, +1."""
    denom = c_minus - 2 * c0 + c_plus
    offset = np.float32(0.5) * (c_minus - c_plus) / np.maximum(denom, np.float32(1e-6))
    return np.clip(np.where(denom > 1e-6, offset, np.float32(0)), np.float32(-0.5), np.float32(0.5))


def _block_match(prev: np.ndarray, cur: np.ndarray, radius: int) -> np.ndarray:
    """Per BLOCK x BLOCK block of ``cur`` (H, W), the displacement (2, hb, wb) into ``prev`` with the
    least mean squared difference over the window around the block, within +-radius pixels, refined
    to sub-pixel by a parabola through the costs (which squared differences make parabolic)."""
    h, w = cur.shape
    n = 2 * radius + 1
    padded = np.pad(prev, radius, mode="edge")
    # [dy, dx]: prev shifted by (dx, dy), in C order (a ufunc's own output would follow the view's strides,
    # and pooling that is several times slower)
    diffs = np.empty((n, n, h, w), np.float32)
    np.subtract(sliding_window_view(padded, (h, w)), cur, out=diffs)
    np.square(diffs, out=diffs)
    costs = _avg_pool(diffs.reshape(n * n, h, w), 2 * BLOCK, stride=BLOCK, padding=BLOCK // 2, ceil_mode=True,
                      count_include_pad=False)  # (n*n, hb, wb)
    d = np.abs(np.arange(-radius, radius + 1, dtype=np.float32))
    costs += (MOTION_PENALTY * (d[None, :] + d[:, None])).reshape(-1, 1, 1)
    best = costs.argmin(0)
    iy, ix = best // n, best % n

    def cost(jy: np.ndarray, jx: np.ndarray) -> np.ndarray:
        return np.take_along_axis(costs, (jy * n + jx)[None], 0)[0]

    c0 = cost(iy, ix)
    fx = _parabola(cost(iy, np.maximum(ix - 1, 0)), c0, cost(iy, np.minimum(ix + 1, n - 1)))
    fy = _parabola(cost(np.maximum(iy - 1, 0), ix), c0, cost(np.minimum(iy + 1, n - 1), ix))
    fx = np.where((ix > 0) & (ix < n - 1), fx, np.float32(0))
    fy = np.where((iy > 0) & (iy < n - 1), fy, np.float32(0))
    return np.stack([(ix - radius).astype(np.float32) + fx, (iy - radius).astype(np.float32) + fy])


def estimate_flow(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Motion from ``prev`` to ``cur`` (both (H, W) luminance): flow (2, H, W) such that pixel (x, y)
    of ``cur`` shows what ``prev`` had at (x + flow[0], y + flow[1]).

    Coarse to fine: block matching (+-4 px) on a pyramid's coarsest level, then +-2 px corrections
    at each finer level on ``prev`` warped by the motion so far.
    """
    levels = [(_f32(prev), _f32(cur))]
    while max(levels[-1][1].shape) > COARSEST_SIDE and min(levels[-1][1].shape) >= 2 * BLOCK:
        p, c = levels[-1]
        levels.append((pool2(p), pool2(c)))
    flow = None
    for p, c in reversed(levels):
        h, w = c.shape
        if flow is None:
            flow, radius, warped = np.zeros((2, h, w), np.float32), 4, p  # a zero flow warps to p itself
        else:
            scale = np.array([w / flow.shape[2], h / flow.shape[1]], np.float32).reshape(2, 1, 1)
            flow = resize_bilinear(flow, (h, w)) * scale
            radius = 2
            warped = warp(p[None], flow)[0][0]
        step = _block_match(warped, c, radius)
        flow = flow + resize_bilinear(step, (h, w))
    return flow


def luminance_histogram(lum: np.ndarray) -> np.ndarray:
    """Normalised histogram of L (0..100) in HIST_BINS bins."""
    # torch.histc: equal bins over [0, 100], values outside left out, 100 itself in the last bin
    lum = _f32(lum).ravel()
    inside = lum[(lum >= 0) & (lum <= 100)]
    bins = np.minimum((inside * np.float32(HIST_BINS) / np.float32(100)).astype(np.intp), HIST_BINS - 1)
    return np.bincount(bins, minlength=HIST_BINS).astype(np.float32) / np.float32(lum.size)


@dataclass
class Step:
    """What the motion compensation between two frames found."""

    flow: np.ndarray  # (2, h, w)
    residual: np.ndarray  # (h, w): |L(t) - warped L(t-1)|, smoothed over 3x3
    valid: np.ndarray  # (h, w) bool: the source pixel lies inside the previous frame
    cut: bool


def compare(prev_lum: np.ndarray, lum: np.ndarray) -> Step:
    """Motion, compensated residual and the cut decision between two consecutive frames' L."""
    prev_lum, lum = _f32(prev_lum), _f32(lum)
    flow = estimate_flow(prev_lum, lum)
    warped, valid = warp(prev_lum[None], flow)
    residual = _avg_pool(np.abs(lum - warped[0]), 3, stride=1, padding=1, count_include_pad=False)
    histogram = 0.5 * np.abs(luminance_histogram(prev_lum) - luminance_histogram(lum)).sum()
    mean_residual = residual[valid].mean() if valid.any() else residual.mean()
    cut = bool(histogram > CUT_HISTOGRAM) or bool(mean_residual > CUT_RESIDUAL)
    return Step(flow, residual, valid, cut)


@dataclass
class ChromaStabilizer:
    """Motion-compensated recursive smoothing of predicted ab, restarted at cuts.

    Args:
        memory: the share of the previous (motion-compensated) colour kept where the motion
            compensation matches; 0 turns smoothing off. 0.9 averages over about ten frames.
        sigma: L units of compensated residual at which ``keep`` has fallen to 1/e of ``memory``.
    """

    memory: float = 0.9
    sigma: float = 8.0
    cuts: int = 0
    state: dict = field(default_factory=dict)  # "lum" (h, w), "ab" (2, h, w): the last frame's (float32)

    def __call__(self, lum: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """Stabilised ab (2, h, w) for a frame with luminance ``lum`` (h, w) and predicted ``ab``."""
        lum, ab = _f32(lum), _f32(ab)
        prev_lum, prev_ab = self.state.get("lum"), self.state.get("ab")
        out = ab
        if prev_lum is not None and tuple(prev_lum.shape) == lum.shape:
            step = compare(prev_lum, lum)
            if step.cut:
                self.cuts += 1
            else:
                warped_ab = warp(prev_ab, step.flow)[0]
                match = np.exp(-np.square(step.residual / np.float32(self.sigma)))
                keep = np.float32(self.memory) * match * step.valid
                out = keep * warped_ab + (1 - keep) * ab
        self.state = {"lum": lum, "ab": out}
        return out


def chroma_flicker(lums: list[np.ndarray], abs_: list[np.ndarray]) -> tuple[float, int]:
    """Mean motion-compensated chroma change between consecutive frames, in Lab units.

    ``lums`` (h, w) and ``abs_`` (2, h, w) per frame. For each pair that is not a cut: the mean over
    pixels whose motion source is inside the frame of ``|ab(t) - ab(t-1) warped by the motion|``
    (Euclidean in a, b). Returns (the mean over pairs, the number of cuts left out).
    """
    changes, cuts = [], 0
    for t in range(1, len(lums)):
        step = compare(lums[t - 1], lums[t])
        if step.cut:
            cuts += 1
            continue
        warped = warp(abs_[t - 1], step.flow)[0]
        change = np.sqrt(np.square(_f32(abs_[t]) - warped).sum(0))
        changes.append(float(change[step.valid].mean()) if step.valid.any() else 0.0)
    return (sum(changes) / len(changes) if changes else 0.0), cuts
