"""U-Net generator (Ehrenberg §1.2/§1.3): strided 4x4 convolutions down, transposed convolutions up.

L (1 channel, normalised) in, ab (2 channels) out through tanh, same spatial size. The network
halves the resolution ``depth`` times, so inputs must be a multiple of ``2**depth``: the inference
pipeline pads and crops back, which keeps it fully convolutional for any image size.
"""

from __future__ import annotations

import torch
from torch import nn

from colorize_cli.models.registry import Recipe, register_model


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNet(nn.Module):
    """U-Net with ``depth`` down/up stages of widths ``width * 2**i`` (capped at ``8 * width``).

    Args:
        width: channels of the first stage.
        depth: number of stride-2 stages (4 in Ehrenberg's model, 7-8 in pix2pix).
        in_channels: 1 (L).
        out_channels: 2 (ab).
    """

    def __init__(self, width: int = 32, depth: int = 4, in_channels: int = 1, out_channels: int = 2):
        super().__init__()
        widths = [min(width * 2**i, width * 8) for i in range(depth)]
        self.size_multiple = 2**depth
        self.downs = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.downs.append(_Down(cin, w))
            cin = w
        self.ups = nn.ModuleList()
        # up stage i takes the previous output (concatenated with its skip, except the deepest)
        for i in reversed(range(depth)):
            target = widths[i - 1] if i > 0 else width
            self.ups.append(_Up(cin, target))
            cin = target * 2 if i > 0 else target
        # the L input joins the last features so that edges in the prediction follow the photo
        self.head = nn.Sequential(nn.Conv2d(cin + in_channels, out_channels, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        skips.pop()  # the bottleneck is not a skip
        for up in self.ups:
            h = up(h)
            if skips:
                h = torch.cat([h, skips.pop()], dim=1)
        return self.head(torch.cat([h, x], dim=1))


_EHRENBERG = "Ehrenberg, Image Colorization with GANs"


@register_model(
    "unet-sn",
    study=f"{_EHRENBERG}, §1.2",
    description="U-Net (4 down, 4 up) + 1x1 pixel PatchGAN with spectral norm",
    recipe=Recipe(discriminator="pixel", discriminator_options={"norm": "spectral"}),
    size_multiple=16,
    width=32,
    depth=4,
)
@register_model(
    "unet-bn",
    study=f"{_EHRENBERG}, §1.3",
    description="U-Net (4 down, 4 up) + 1x1 pixel PatchGAN with batch norm",
    recipe=Recipe(discriminator="pixel", discriminator_options={"norm": "batch"}),
    size_multiple=16,
    width=32,
    depth=4,
)
def build_unet(**options) -> UNet:
    return UNet(**options)
