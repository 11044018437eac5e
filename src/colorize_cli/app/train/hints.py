"""Colour hints simulated from the truth, for training a hint-taking model (Zhang et al. 2017, §3.3).

Local hints: with probability ``1 - P_NO_POINTS`` a geometric number of points (mean 1 / P_GEOMETRIC),
each a square patch of side 1 to ``MAX_PATCH`` pixels at a uniform place, coloured with the mean of the
truth's a/b over the patch; the mask marks the patch. Global hint: with probability ``P_GLOBAL`` the
distribution of the truth's colours over the 10-unit a/b bins and its mean chroma, taken from the
whole photo or (half the time) from a random crop of half to all of each side, as a reference photo of
the same scene would give it. Each part is dropped on its own, so the model learns every combination,
and the images with no hint at all keep the flagship's colours (the model's gate).
"""

from __future__ import annotations

import torch

from colorize_cli.color import AB_SCALE, ab_bin_table, ab_bins
from colorize_cli.hints import HINT_STEP

P_NO_POINTS = 0.1
P_GEOMETRIC = 1 / 8
MAX_PATCH = 9
P_GLOBAL = 0.5


def histogram(ab_norm: torch.Tensor, step: float = HINT_STEP) -> torch.Tensor:
    """(N, Q) distributions of normalised ``ab_norm`` (N, 2, H, W) over :func:`colorize_cli.color.ab_bins`,
    as :func:`colorize_cli.color.ab_histogram` computes them."""
    table, offset = ab_bin_table(step)
    table_t = torch.from_numpy(table).to(ab_norm.device)
    cells = torch.round(ab_norm.detach().float() * AB_SCALE / step).long().add(offset).clamp(0, len(table) - 1)
    index = table_t[cells[:, 0], cells[:, 1]].flatten(1)  # (N, HW), -1 outside the gamut's bins
    q = int(table.max()) + 1
    counts = torch.zeros(index.shape[0], q + 1, device=ab_norm.device)
    counts.scatter_add_(1, torch.where(index >= 0, index, q), torch.ones_like(index, dtype=counts.dtype))
    counts = counts[:, :q]
    return counts / counts.sum(1, keepdim=True).clamp(min=1)


def simulate_hints(ab: torch.Tensor, rng: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Hints for a batch of normalised truths ``ab`` (N, 2, H, W): (hint_ab, hint_mask, hint_hist,
    hint_saturation), as the hint model's ``forward`` takes them after L."""
    n, _, h, w = ab.shape
    hint_ab, mask = torch.zeros_like(ab), torch.zeros(n, 1, h, w, device=ab.device, dtype=ab.dtype)
    q = len(ab_bins(HINT_STEP))
    hist, saturation = torch.zeros(n, q, device=ab.device), torch.zeros(n, 1, device=ab.device)

    def uniform() -> float:
        return float(torch.rand((), generator=rng))

    def below(k: int) -> int:
        return int(torch.randint(k, (), generator=rng))

    for i in range(n):
        if uniform() >= P_NO_POINTS:
            points = 1
            while uniform() > P_GEOMETRIC:  # a geometric count, drawn from the run's generator
                points += 1
            for _ in range(points):
                side = 1 + below(MAX_PATCH)
                y, x = below(max(1, h - side + 1)), below(max(1, w - side + 1))
                patch = ab[i, :, y:y + side, x:x + side]
                hint_ab[i, :, y:y + side, x:x + side] = patch.mean((1, 2), keepdim=True)
                mask[i, :, y:y + side, x:x + side] = 1
        if uniform() < P_GLOBAL:
            region = ab[i:i + 1]
            if uniform() < 0.5:
                ch, cw = max(1, int(h * (0.5 + 0.5 * uniform()))), max(1, int(w * (0.5 + 0.5 * uniform())))
                y, x = below(h - ch + 1), below(w - cw + 1)
                region = region[:, :, y:y + ch, x:x + cw]
            hist[i] = histogram(region)[0]
            saturation[i] = region.float().pow(2).sum(1).sqrt().mean()
    return hint_ab, mask, hist, saturation
