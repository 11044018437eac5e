"""Discriminators that judge (L, ab) pairs.

``pixel``: Ehrenberg's 1x1 ("pixel") PatchGAN, which judges each pixel's colour given its
lightness: first layer without normalisation + LeakyReLU, three middle layers with spectral norm
(or batch norm) + LeakyReLU, last layer without normalisation + Tanh.

``patch``: pix2pix's 70x70 PatchGAN (Isola et al., ``n_layers=3``): 4x4 convolutions of 1x, 2x, 4x
the width (stride 2) and 8x (stride 1), then a 1-channel convolution (pix2pix: C64-C128-C256-C512);
one score per 70x70 patch, and the losses average them. The first layer has no normalisation; the
others batch norm, spectral norm or none (a WGAN-GP critic).

With ``output="tanh"`` (the default) a score lies in [-1, 1] and ``losses.adversarial_loss`` reads
it as a probability ``(score + 1) / 2`` (bce, lsgan); ``output="linear"`` gives the unbounded score
of a Wasserstein critic.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from colorize_cli.models.common import init_weights

OUTPUTS = ("tanh", "linear")


def _output(kind: str) -> list[nn.Module]:
    if kind not in OUTPUTS:
        raise ValueError(f"output {kind!r}: use tanh (bce, lsgan) or linear (a wgangp critic)")
    return [nn.Tanh()] if kind == "tanh" else []


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
                 sample_pixels: int | None = 16384, output: str = "tanh", init: str = "default"):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_channels, width), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(3):
            layers += _normalized_linear(width, width, norm)
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Linear(width, 1), *_output(output)]
        self.net = init_weights(nn.Sequential(*layers), init)
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


def _normalized_conv(cin: int, cout: int, stride: int, norm: str) -> list[nn.Module]:
    if norm == "spectral":
        return [spectral_norm(nn.Conv2d(cin, cout, 4, stride, 1))]
    if norm == "batch":
        return [nn.Conv2d(cin, cout, 4, stride, 1, bias=False), nn.BatchNorm2d(cout)]
    if norm == "none":
        return [nn.Conv2d(cin, cout, 4, stride, 1)]
    raise ValueError(f"unknown norm {norm!r}; use batch, spectral or none")


class PatchDiscriminator(nn.Module):
    """pix2pix's PatchGAN on concat(L, ab): one score per ``receptive_field`` x ``receptive_field`` patch.

    Args:
        norm: ``batch`` (pix2pix), ``spectral`` (Ehrenberg §1.1) or ``none`` (a WGAN-GP critic).
        width: channels of the first layer (64 in pix2pix); later layers 2x, 4x, 8x (capped at 8x).
        n_layers: stride-2 layers after the first; 3 gives the 70x70 receptive field.
        in_channels: 3 (L and ab).
        output: ``tanh`` or ``linear`` (see the module docstring).
        init: ``default``, ``normal`` (N(0, 0.02), pix2pix) or ``xavier`` (Ehrenberg §1.1).

    Returns scores shaped ``(N, 1, h, w)``, about ``(H/8 - 2, W/8 - 2)`` for n_layers=3.
    """

    def __init__(self, norm: str = "batch", width: int = 64, n_layers: int = 3, in_channels: int = 3,
                 output: str = "tanh", init: str = "default"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        cin = width
        for i in range(1, n_layers + 1):
            cout = width * min(2**i, 8)
            layers += _normalized_conv(cin, cout, 2 if i < n_layers else 1, norm)
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        layers += [nn.Conv2d(cin, 1, 4, 1, 1), *_output(output)]
        self.net = init_weights(nn.Sequential(*layers), init)
        self.receptive_field = self._receptive_field()

    def _receptive_field(self) -> int:
        field = 1
        for m in reversed(self.net):
            if isinstance(m, nn.Conv2d):
                field = (field - 1) * m.stride[0] + m.kernel_size[0]
        return field

    def forward(self, l_norm: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([l_norm, ab], dim=1))


DISCRIMINATORS = {"pixel": PixelDiscriminator, "patch": PatchDiscriminator}


def create_discriminator(name: str, **options) -> nn.Module:
    try:
        cls = DISCRIMINATORS[name]
    except KeyError:
        raise KeyError(f"unknown discriminator {name!r}; known: {', '.join(DISCRIMINATORS)}") from None
    return cls(**options)
