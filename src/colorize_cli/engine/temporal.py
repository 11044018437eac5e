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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

COARSEST_SIDE = 40  # the motion search starts on L pooled down to this long side
BLOCK = 8  # one motion vector per BLOCK x BLOCK pixels, matched over overlapping 2 BLOCK x 2 BLOCK windows
MOTION_PENALTY = 0.05  # squared L units per pixel of motion: flat areas, which match anywhere, stay still
HIST_BINS = 32
CUT_HISTOGRAM = 0.35  # total-variation distance of L histograms (0..1) above which a frame is a cut
CUT_RESIDUAL = 12.0  # mean compensated L residual (L units) above which a frame is a cut


def warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` (C, H, W) at ``(x + flow[0], y + flow[1])`` for each pixel (bilinear).

    Returns the warped image and a (H, W) mask of pixels whose source lies inside the image.
    """
    _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    sx, sy = xs + flow[0], ys + flow[1]
    grid = torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], dim=-1)
    out = F.grid_sample(image[None].float(), grid[None], mode="bilinear", padding_mode="border",
                        align_corners=False)[0]
    valid = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    return out, valid


def _parabola(c_minus: torch.Tensor, c0: torch.Tensor, c_plus: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset of a minimum from the costs at -1, 0, +1."""
    denom = c_minus - 2 * c0 + c_plus
    offset = 0.5 * (c_minus - c_plus) / denom.clamp(min=1e-6)
    return torch.where(denom > 1e-6, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def _block_match(prev: torch.Tensor, cur: torch.Tensor, radius: int) -> torch.Tensor:
    """Per BLOCK x BLOCK block of ``cur`` (H, W), the displacement (2, hb, wb) into ``prev`` with the
    least mean squared difference over the window around the block, within +-radius pixels, refined
    to sub-pixel by a parabola through the costs (which squared differences make parabolic)."""
    h, w = cur.shape
    n = 2 * radius + 1
    padded = F.pad(prev[None, None], [radius] * 4, mode="replicate")[0, 0]
    diffs = torch.stack([(padded[dy:dy + h, dx:dx + w] - cur).square() for dy in range(n) for dx in range(n)])
    costs = F.avg_pool2d(diffs[None], 2 * BLOCK, stride=BLOCK, padding=BLOCK // 2, ceil_mode=True,
                         count_include_pad=False)[0]  # (n*n, hb, wb)
    d = torch.arange(-radius, radius + 1, dtype=torch.float32)
    dyy, dxx = torch.meshgrid(d, d, indexing="ij")
    costs = costs + MOTION_PENALTY * (dxx.abs() + dyy.abs()).reshape(-1, 1, 1)
    hb, wb = costs.shape[1:]
    best = costs.argmin(0)
    iy, ix = best // n, best % n
    grid = costs.view(n, n, hb, wb).permute(2, 3, 0, 1)  # (hb, wb, n, n)
    bi, bj = torch.meshgrid(torch.arange(hb), torch.arange(wb), indexing="ij")
    c0 = grid[bi, bj, iy, ix]
    fx = _parabola(grid[bi, bj, iy, (ix - 1).clamp(min=0)], c0, grid[bi, bj, iy, (ix + 1).clamp(max=n - 1)])
    fy = _parabola(grid[bi, bj, (iy - 1).clamp(min=0), ix], c0, grid[bi, bj, (iy + 1).clamp(max=n - 1), ix])
    fx = torch.where((ix > 0) & (ix < n - 1), fx, torch.zeros_like(fx))
    fy = torch.where((iy > 0) & (iy < n - 1), fy, torch.zeros_like(fy))
    return torch.stack([ix - radius + fx, iy - radius + fy])


def estimate_flow(prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """Motion from ``prev`` to ``cur`` (both (H, W) luminance): flow (2, H, W) such that pixel (x, y)
    of ``cur`` shows what ``prev`` had at (x + flow[0], y + flow[1]).

    Coarse to fine: block matching (+-4 px) on a pyramid's coarsest level, then +-2 px corrections
    at each finer level on ``prev`` warped by the motion so far.
    """
    levels = [(prev.float(), cur.float())]
    while max(levels[-1][1].shape) > COARSEST_SIDE and min(levels[-1][1].shape) >= 2 * BLOCK:
        p, c = levels[-1]
        levels.append((F.avg_pool2d(p[None, None], 2, ceil_mode=True)[0, 0],
                       F.avg_pool2d(c[None, None], 2, ceil_mode=True)[0, 0]))
    flow = None
    for p, c in reversed(levels):
        h, w = c.shape
        if flow is None:
            flow, radius = torch.zeros(2, h, w), 4
        else:
            scale = torch.tensor([w / flow.shape[2], h / flow.shape[1]]).view(2, 1, 1)
            flow = F.interpolate(flow[None], size=(h, w), mode="bilinear", align_corners=False)[0] * scale
            radius = 2
        warped = warp(p[None], flow)[0][0]
        step = _block_match(warped, c, radius)
        flow = flow + F.interpolate(step[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return flow


def luminance_histogram(lum: torch.Tensor) -> torch.Tensor:
    """Normalised histogram of L (0..100) in HIST_BINS bins."""
    return torch.histc(lum.float(), bins=HIST_BINS, min=0, max=100) / lum.numel()


@dataclass
class Step:
    """What the motion compensation between two frames found."""

    flow: torch.Tensor  # (2, h, w)
    residual: torch.Tensor  # (h, w): |L(t) - warped L(t-1)|, smoothed over 3x3
    valid: torch.Tensor  # (h, w) bool: the source pixel lies inside the previous frame
    cut: bool


def compare(prev_lum: torch.Tensor, lum: torch.Tensor) -> Step:
    """Motion, compensated residual and the cut decision between two consecutive frames' L."""
    flow = estimate_flow(prev_lum, lum)
    warped, valid = warp(prev_lum[None], flow)
    residual = F.avg_pool2d((lum - warped[0]).abs()[None, None], 3, stride=1, padding=1,
                            count_include_pad=False)[0, 0]
    histogram = 0.5 * (luminance_histogram(prev_lum) - luminance_histogram(lum)).abs().sum()
    mean_residual = residual[valid].mean() if bool(valid.any()) else residual.mean()
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
    state: dict = field(default_factory=dict)  # "lum" (h, w), "ab" (2, h, w): the last frame's

    def __call__(self, lum: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """Stabilised ab (2, h, w) for a frame with luminance ``lum`` (h, w) and predicted ``ab``."""
        lum, ab = lum.float(), ab.float()
        prev_lum, prev_ab = self.state.get("lum"), self.state.get("ab")
        out = ab
        if prev_lum is not None and prev_lum.shape == lum.shape:
            step = compare(prev_lum, lum)
            if step.cut:
                self.cuts += 1
            else:
                warped_ab = warp(prev_ab, step.flow)[0]
                keep = self.memory * torch.exp(-(step.residual / self.sigma) ** 2) * step.valid
                out = keep * warped_ab + (1 - keep) * ab
        self.state = {"lum": lum, "ab": out}
        return out


def chroma_flicker(lums: list[torch.Tensor], abs_: list[torch.Tensor]) -> tuple[float, int]:
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
        change = (abs_[t] - warped).pow(2).sum(0).sqrt()
        changes.append(float(change[step.valid].mean()) if bool(step.valid.any()) else 0.0)
    return (sum(changes) / len(changes) if changes else 0.0), cuts
