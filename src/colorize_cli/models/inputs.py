"""The training inputs' preprocessing (Cano & Moncada §IV), in torch: Gaussian blur, and the
histogram equalisation of :mod:`colorize_cli.preprocess` applied to a batch on its device.

Both work on normalised L batches ``(N, 1, H, W)`` in [-1, 1] (L/50 − 1). ``colorize train --blur``
blurs the training inputs (a light denoising that only training sees); ``--equalize`` equalises them
with the same NumPy function the Colorizer applies to photos, so training and colorizing see one L.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from colorize_cli.preprocess import equalize_histogram

BLUR_KERNEL = 5
BLUR_SIGMA = 0.7


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


def prepare_l(l_norm: torch.Tensor, *, blur: bool = False, equalize: bool = False) -> torch.Tensor:
    """The network input from normalised L: blurred (if ``blur``), then equalised (if ``equalize``)."""
    if blur:
        l_norm = gaussian_blur(l_norm)
    if equalize:
        equalized = equalize_histogram(l_norm.detach().float().cpu().numpy())
        l_norm = torch.from_numpy(equalized).to(l_norm.device, l_norm.dtype)
    return l_norm

