"""Discriminators that judge (L, ab) pairs.

``pixel``: Ehrenberg's 1x1 ("pixel") PatchGAN, which judges each pixel's colour given its
lightness: first layer without normalisation + LeakyReLU, three middle layers with spectral norm
(or batch norm) + LeakyReLU, last layer without normalisation + Tanh. Its output is a score in
[-1, 1] per pixel; ``losses.adversarial_loss`` reads it as a probability ``(score + 1) / 2``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _normalized_linear(cin: int, cout: int, norm: str) -> list[nn.Module]:
    if norm == "spectral":
        return [spectral_norm(nn.Linear(cin, cout))]
    if norm == "batch":
        return [nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout)]
    if norm == "none":
        return [nn.Linear(cin, cout)]
    raise ValueError(f"unknown norm {norm!r}; use spectral, batch or none")


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN on concat(L, ab): one real/fake score per pixel.

    A 1x1 convolution is a per-pixel linear layer, and that is how it is computed (a matmul is
    several times faster than a 1x1 convolution on a CPU). Because every pixel is judged on its
    own, the mean loss over a random subset of pixels is an unbiased estimate of the mean over all
    of them: in training mode, ``sample_pixels`` pixels per batch are judged (None = all).

    Returns scores shaped ``(N, 1, H, W)`` in eval mode or ``(1, 1, P)`` for P sampled pixels.
    """

    def __init__(self, norm: str = "spectral", width: int = 64, in_channels: int = 3,
                 sample_pixels: int | None = 16384):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_channels, width), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(3):
            layers += _normalized_linear(width, width, norm)
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Linear(width, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.sample_pixels = sample_pixels
        self._generator: torch.Generator | None = None

    def forward(self, l_norm: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        x = torch.cat([l_norm, ab], dim=1)
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(-1, c)
        if self.training and self.sample_pixels and pixels.shape[0] > self.sample_pixels:
            idx = torch.randint(0, pixels.shape[0], (self.sample_pixels,), device=x.device)
            return self.net(pixels[idx]).view(1, 1, -1)
        return self.net(pixels).view(n, h, w, 1).permute(0, 3, 1, 2)


DISCRIMINATORS = {"pixel": PixelDiscriminator}


def create_discriminator(name: str, **options) -> nn.Module:
    try:
        cls = DISCRIMINATORS[name]
    except KeyError:
        raise KeyError(f"unknown discriminator {name!r}; known: {', '.join(DISCRIMINATORS)}") from None
    return cls(**options)
