"""U-Net generator: strided 4x4 convolutions down, transposed convolutions up.

One class for Ehrenberg's 4-level U-Net (§1.2/§1.3: ``unet-sn``, ``unet-bn``) and the 7-level
pix2pix U-Net of Cano & Moncada and Gong et al. (``pix2pix*``), which adds dropout in the innermost
decoder stages and pix2pix's N(0, 0.02) initialisation.

L (1 channel, normalised) in, ab (2 channels) out through tanh, same spatial size. The network
halves the resolution ``depth`` times, so inputs must be a multiple of ``2**depth``: the inference
pipeline rounds the working size to it, which keeps it fully convolutional for any image size.
"""

from __future__ import annotations

import torch
from torch import nn

from colorize_cli.models.common import init_weights
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
    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        if dropout:
            layers.append(nn.Dropout(dropout))  # parameter-free, so the state-dict keys stay those above
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UNet(nn.Module):
    """U-Net with ``depth`` down/up stages of widths ``width * 2**i`` (capped at ``8 * width``).

    Args:
        width: channels of the first stage.
        depth: number of stride-2 stages (4 in Ehrenberg's model, 7-8 in pix2pix).
        in_channels: 1 (L), more when other maps are concatenated to it (the VAE's latent code).
        out_channels: 2 (ab).
        dropout: dropout rate of the ``dropout_stages`` innermost decoder stages (pix2pix: 0.5 in
            three); active in training only, so inference stays deterministic.
        dropout_stages: how many decoder stages, from the bottleneck, have dropout.
        init: weight initialisation, see :func:`~colorize_cli.models.common.init_weights`.
    """

    def __init__(self, width: int = 32, depth: int = 4, in_channels: int = 1, out_channels: int = 2,
                 dropout: float = 0.0, dropout_stages: int = 3, init: str = "default"):
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
        for stage, i in enumerate(reversed(range(depth))):
            target = widths[i - 1] if i > 0 else width
            self.ups.append(_Up(cin, target, dropout if stage < dropout_stages else 0.0))
            cin = target * 2 if i > 0 else target
        # the L input joins the last features so that edges in the prediction follow the photo
        self.head = nn.Sequential(nn.Conv2d(cin + in_channels, out_channels, 3, padding=1), nn.Tanh())
        init_weights(self, init)

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
_CANO = "Cano Caldero & Moncada Ramírez, Image recoloring with conditional GANs"
_PIX2PIX = ("pix2pix U-Net, 7 levels (4x4 conv-BN-LeakyReLU down, 16-128 channels: 2.6 M parameters, "
            "dropout 0.5 in the 3 innermost decoder stages, N(0, 0.02) init; inputs multiples of 128 px) "
            "+ 70x70 PatchGAN (width 32: 0.7 M)")
# The 7-level U-Net is pix2pix's unet_128 and Gong et al.'s "7 encoders and 7 decoders"; it needs inputs
# that are multiples of 128 px (train with --size 128). pix2pix's widths (64 in both networks: 42 M
# parameters in a 7-level U-Net) do not train on 2 CPU cores; 16 in the generator and 32 in the
# PatchGAN (same 70x70 receptive field, a quarter of the cost of 64) do. The studies' "σ = 0.2"
# initialisation is pix2pix's 0.02 mistyped. Dropout is off at inference, so a photo always gets the
# same colours.
_PIX2PIX_UNET = {"width": 16, "depth": 7, "dropout": 0.5, "init": "normal"}
_PATCH_BN = {"norm": "batch", "width": 32, "init": "normal"}
_CRITIC = {"norm": "none", "output": "linear", "width": 32, "init": "normal"}
_WGANGP = {"gan_loss": "wgangp", "critic_steps": 5, "gp_weight": 10.0}


@register_model(
    "pix2pix",
    study=f"{_CANO}, §V (original pix2pix); Gong et al., §5.2",
    description=f"{_PIX2PIX} with batch norm; adversarial (BCE) + 100·L1",
    recipe=Recipe(discriminator="patch", discriminator_options=_PATCH_BN, recon_weight=100.0),
    size_multiple=128,
    **_PIX2PIX_UNET,
)
@register_model(
    "pix2pix-lpips",
    study=f"{_CANO}, §V (LPIPS)",
    description=f"{_PIX2PIX} with batch norm; adversarial (BCE) + 100·L1 + 50·LPIPS",
    recipe=Recipe(discriminator="patch", discriminator_options=_PATCH_BN, recon_weight=100.0,
                  perceptual_weight=50.0),
    size_multiple=128,
    **_PIX2PIX_UNET,
)
@register_model(
    "pix2pix-wgangp",
    study=f"{_CANO}, §V (WGAN-GP)",
    description=f"{_PIX2PIX} critic without batch norm or Tanh; Wasserstein + 10·gradient penalty, "
    "5 critic steps per generator step; + 100·L1",
    recipe=Recipe(discriminator="patch", discriminator_options=_CRITIC, recon_weight=100.0, **_WGANGP),
    size_multiple=128,
    **_PIX2PIX_UNET,
)
@register_model(
    "pix2pix-wgangp-lpips",
    study=f"{_CANO}, §V (WGAN-GP + LPIPS, their final model)",
    description=f"{_PIX2PIX} critic without batch norm or Tanh; Wasserstein + 10·gradient penalty, "
    "5 critic steps per generator step; + 100·L1 + 50·LPIPS",
    recipe=Recipe(discriminator="patch", discriminator_options=_CRITIC, recon_weight=100.0,
                  perceptual_weight=50.0, **_WGANGP),
    size_multiple=128,
    **_PIX2PIX_UNET,
)
def build_unet(**options) -> UNet:
    return UNet(**options)


# Ehrenberg's two U-Nets differ only in the pixel PatchGAN's normalisation: (name, norm, section)
for _name, _norm, _section in (("unet-sn", "spectral", "§1.2"), ("unet-bn", "batch", "§1.3")):
    register_model(
        _name,
        study=f"{_EHRENBERG}, {_section}",
        description=f"U-Net (4 down, 4 up) + 1x1 pixel PatchGAN with {_norm} norm",
        recipe=Recipe(discriminator="pixel", discriminator_options={"norm": _norm}),
        size_multiple=16,
        width=32,
        depth=4,
    )(build_unet)
