"""Losses of the zoo's recipes: adversarial (BCE, LSGAN, WGAN-GP), L1/MSE on ab, KL, colour rebalancing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from colorize_cli.color import AB_SCALE

_EPS = 1e-6


def adversarial_loss(score: torch.Tensor, real: bool, kind: str = "bce") -> torch.Tensor:
    """Loss that pushes a discriminator ``score`` towards "real" (``real=True``) or "fake".

    ``bce`` and ``lsgan`` read a Tanh score in [-1, 1] as the probability ``(score + 1) / 2``
    (BCE on it equals BCE-with-logits on twice the pre-Tanh value); ``wgangp`` takes an unbounded
    critic value: the critic maximises real - fake.
    """
    if kind == "wgangp":
        return -score.mean() if real else score.mean()
    p = (score + 1) / 2
    if kind == "bce":
        p = p.clamp(_EPS, 1 - _EPS)
        return -(p.log() if real else (1 - p).log()).mean()
    if kind == "lsgan":
        return ((p - (1.0 if real else 0.0)) ** 2).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; use bce, lsgan or wgangp")


def gradient_penalty(critic, l_norm: torch.Tensor, real_ab: torch.Tensor, fake_ab: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty ``mean over images of (‖∇_x̂ critic(L, x̂)‖₂ − 1)²`` (Gulrajani et al. 2017).

    x̂ are random interpolates of real and fake ab (one mixing weight per image), judged with the same
    L. A patch critic gives several scores per image: the gradient is that of their sum, as in the
    pix2pix reference implementation (``cal_gradient_penalty``). The recipe multiplies the result by
    its ``gp_weight`` (10).
    """
    alpha = torch.rand(real_ab.shape[0], 1, 1, 1, device=real_ab.device, dtype=real_ab.dtype)
    mixed = (alpha * real_ab + (1 - alpha) * fake_ab.detach()).requires_grad_(True)
    score = critic(l_norm, mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    norm = (grad.flatten(1).pow(2).sum(dim=1) + 1e-12).sqrt()  # the epsilon keeps a zero gradient finite
    return ((norm - 1) ** 2).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, I)) in closed form, summed over the latent dimensions and averaged
    over the batch: ``0.5 · Σ (mu² + σ² − 1 − log σ²)``. ``mu``, ``logvar``: (N, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1).mean()


class ColorRebalance:
    """Per-pixel weights that make rare (saturated) colours count as much as common ones.

    Zhang et al. (2016) rebalance their colour classes by ``w ∝ 1 / ((1 − λ)·p̃ + λ/Q)`` where p̃
    is the smoothed empirical ab distribution over Q in-gamut bins; we apply the same weights to
    the per-pixel L1 term, which counters the desaturated "sepia" average that plain L1 learns.
    The weights are normalised so that their mean over the pixels they are fitted on is 1,
    which keeps the recipe's L1 weight meaning what it says.
    """

    BINS = 22  # 10-unit bins over ab in [-110, 110]

    def __init__(self, weights: torch.Tensor):
        self.weights = weights  # (BINS, BINS)

    @classmethod
    def fit(cls, ab_norm: torch.Tensor, strength: float) -> ColorRebalance:
        """Estimate the weights from normalised ab values ``(N, 2, H, W)``."""
        idx = cls._bin_index(ab_norm).flatten()
        hist = torch.bincount(idx, minlength=cls.BINS**2).double().view(1, 1, cls.BINS, cls.BINS)
        p = hist / hist.sum()
        kernel = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
        kernel = (kernel[:, None] * kernel[None, :]).view(1, 1, 3, 3)
        smooth = F.conv2d(p, kernel, padding=1).view(cls.BINS, cls.BINS)
        in_gamut = smooth > 0
        q = int(in_gamut.sum())
        w = torch.where(in_gamut, 1.0 / ((1 - strength) * smooth + strength / q), torch.zeros_like(smooth))
        w = torch.where(in_gamut, w, w[in_gamut].min())  # unseen colours get the common weight
        w = w / (p.view_as(w) * w).sum()  # mean weight 1 over the pixels it was fitted on
        return cls(w.float())

    @classmethod
    def _bin_index(cls, ab_norm: torch.Tensor) -> torch.Tensor:
        b = ((ab_norm + 1) * cls.BINS / 2).long().clamp_(0, cls.BINS - 1)
        return b[:, 0] * cls.BINS + b[:, 1]

    def __call__(self, ab_norm: torch.Tensor) -> torch.Tensor:
        """Weights ``(N, 1, H, W)`` for target ab ``(N, 2, H, W)``."""
        w = self.weights.to(ab_norm.device).flatten()
        return w[self._bin_index(ab_norm)].unsqueeze(1)


def l1_loss(pred_ab: torch.Tensor, target_ab: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error on normalised ab, optionally weighted per pixel."""
    err = (pred_ab - target_ab).abs()
    return (err * weights).mean() if weights is not None else err.mean()


def reconstruction_loss(pred_ab: torch.Tensor, target_ab: torch.Tensor, kind: str = "l1",
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """``l1`` (mean absolute error) or ``mse`` (mean squared error) on normalised ab, optionally
    weighted per pixel (colour rebalancing)."""
    if kind == "l1":
        return l1_loss(pred_ab, target_ab, weights)
    if kind == "mse":
        err = (pred_ab - target_ab) ** 2
        return (err * weights).mean() if weights is not None else err.mean()
    raise ValueError(f"unknown reconstruction loss {kind!r}; use l1 or mse")


def color_classification_loss(logits: torch.Tensor, ab_norm: torch.Tensor, bins: torch.Tensor,
                              weights: torch.Tensor | None = None, neighbours: int = 5,
                              sigma: float = 5.0) -> torch.Tensor:
    """Cross-entropy over quantised ab with soft targets (Zhang et al. 2016, §2.1).

    Each true colour is spread over its ``neighbours`` nearest bin centres with Gaussian weights of
    ``sigma`` ab units, and the loss is the cross-entropy of the predicted distribution against it,
    optionally weighted per pixel (colour rebalancing).

    Args:
        logits: (N, Q, h, w) class scores; the targets are ``ab_norm`` area-averaged to h x w.
        ab_norm: (N, 2, H, W) true normalised ab.
        bins: (Q, 2) bin centres in ab units (:func:`colorize_cli.color.ab_bins`).
        weights: optional (N, 1, H, W) per-pixel weights, averaged to h x w like the targets.
    """

    h, w = logits.shape[-2:]
    if ab_norm.shape[-2:] != (h, w):
        ab_norm = F.adaptive_avg_pool2d(ab_norm, (h, w))
        if weights is not None:
            weights = F.adaptive_avg_pool2d(weights, (h, w))
    ab = (ab_norm * AB_SCALE).permute(0, 2, 3, 1).reshape(-1, 2)
    d2 = torch.cdist(ab, bins.to(ab)).pow(2)
    near_d2, near = d2.topk(neighbours, dim=1, largest=False)
    target = torch.softmax(-near_d2 / (2 * sigma**2), dim=1)
    logp = torch.log_softmax(logits.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, bins.shape[0])
    ce = -(target * logp.gather(1, near)).sum(dim=1)
    if weights is not None:
        ce = ce * weights.permute(0, 2, 3, 1).reshape(-1)
    return ce.mean()
