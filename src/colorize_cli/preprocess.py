"""Preprocessing of the L input (Cano & Moncada §IV): Gaussian blur and histogram equalisation.

Both work on normalised L batches ``(N, 1, H, W)`` in [-1, 1] (L/50 − 1), in torch, on any device.
``colorize train --blur`` blurs the training inputs (a light denoising that only training sees);
``--equalize`` equalises them, and since the network then expects equalised L, the exported weights
record it (``equalize_l`` in their config) and the Colorizer equalises photos the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BLUR_KERNEL = 5
BLUR_SIGMA = 0.7
EQUALIZE_BINS = 256


def gaussian_kernel(kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian of ``kernel_size`` taps (sum 1)."""
    x = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


def gaussian_blur(x: torch.Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Blur each channel of ``x`` (N, C, H, W) with a ``kernel_size`` Gaussian of std ``sigma`` pixels
    (separable; edges reflected, so a constant image stays constant)."""
    k = gaussian_kernel(kernel_size, sigma).to(x.device, x.dtype)
    c, pad = x.shape[1], kernel_size // 2
    mode = "reflect" if min(x.shape[-2:]) > pad else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def equalize_histogram(l_norm: torch.Tensor, bins: int = EQUALIZE_BINS) -> torch.Tensor:
    """Histogram-equalise each image of a normalised L batch ``(N, 1, H, W)``.

    Each pixel becomes its rank in its image: the fraction of the image's pixels darker than it plus
    half of those at its level (over ``bins`` levels), stretched to L in [0, 100]. The output's
    levels are spread evenly over the range, with mean L = 50, whatever the photo's exposure and
    contrast. An image of a single level is returned unchanged.
    """
    n = l_norm.shape[0]
    flat = l_norm.reshape(n, -1)
    idx = ((flat.clamp(-1, 1) + 1) * ((bins - 1) / 2)).round().long()
    hist = torch.zeros(n, bins, device=l_norm.device, dtype=torch.float64)
    hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    lut = (hist.cumsum(1) - hist / 2) / flat.shape[1]
    out = (lut.gather(1, idx) * 2 - 1).to(l_norm.dtype)
    single_level = (hist > 0).sum(dim=1, keepdim=True) < 2
    return torch.where(single_level, flat, out).view_as(l_norm)


def prepare_l(l_norm: torch.Tensor, *, blur: bool = False, equalize: bool = False) -> torch.Tensor:
    """The network input from normalised L: blurred (if ``blur``), then equalised (if ``equalize``)."""
    if blur:
        l_norm = gaussian_blur(l_norm)
    if equalize:
        l_norm = equalize_histogram(l_norm)
    return l_norm

