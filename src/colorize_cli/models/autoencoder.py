"""Bharadwaj & Narayana's method 2: a convolutional autoencoder from L to ab through a fusion bottleneck.

    L 224x224 ─► encoder (3x3 stride-2 convs 1→32→64→128→256, ReLU) ─► 256x14x14
              ─► fusion (linear 256·14·14 → 56, linear 56 → 256·14·14, ReLU) ─► 256x14x14
              ─► decoder (3x3 stride-2 transposed convs 256→256→128→64→2, ReLU, final Tanh) ─► ab

The fusion layers are fully connected over the 14x14 grid, so the network only runs at 224x224
(``fixed_size``): the Colorizer resizes every photo's L to it and the ab back up. Everything the
decoder knows passes through 56 numbers, so expect a coarse colour layout rather than colour that
follows edges; the full-resolution L the pipeline keeps supplies the detail.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from colorize_cli.models.registry import Recipe, register_model

FIXED_SIZE = 224
_STRIDES = 4  # 224 / 2**4 = 14


class ConvAutoencoder(nn.Module):
    """The study's encoder, fusion and decoder tables (Bharadwaj & Narayana §2.6).

    Args:
        width: channels of the first encoder layer (the study: 32); the others 2x, 4x, 8x.
        latent: size of the fusion bottleneck (the study: 56).

    The study's second fusion row reads "256 → 256·14·14"; its input must be the 56 of the first
    row. Its decoder table ends with ReLU then "final activation TanH": Tanh replaces that ReLU,
    since normalised ab is signed.
    """

    def __init__(self, width: int = 32, latent: int = 56) -> None:
        super().__init__()
        chans = [1] + [width * 2**i for i in range(_STRIDES)]
        enc: list[nn.Module] = []
        for cin, cout in pairwise(chans):
            enc += [nn.Conv2d(cin, cout, 3, 2, 1), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*enc)
        self.grid = FIXED_SIZE // 2**_STRIDES
        self.channels = chans[-1]
        flat = self.channels * self.grid * self.grid
        self.fusion = nn.Sequential(nn.Linear(flat, latent), nn.ReLU(inplace=True), nn.Linear(latent, flat),
                                    nn.ReLU(inplace=True))
        dec_chans = [chans[-1], chans[-1], chans[-2], chans[-3], 2]
        dec: list[nn.Module] = []
        for cin, cout in pairwise(dec_chans):
            dec += [nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1),
                    nn.ReLU(inplace=True) if cout != 2 else nn.Tanh()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != (FIXED_SIZE, FIXED_SIZE):
            raise ValueError(f"autoencoder runs at {FIXED_SIZE}x{FIXED_SIZE} only (its fusion layers are "
                             f"fully connected), got {tuple(x.shape[-2:])}; resize the input")
        h = self.encoder(x)
        h = self.fusion(h.flatten(1)).view(-1, self.channels, self.grid, self.grid)
        return self.decoder(h)


@register_model(
    "autoencoder",
    study="Bharadwaj & Narayana, Comparing Regression, Autoencoder and GAN for Image Colorization, "
    "§2.4-2.6 (method 2)",
    description="Convolutional autoencoder: encoder 1→32→64→128→256 (3x3 stride-2 conv, ReLU) to "
    "256x14x14, fusion 256·14·14→56→256·14·14 (linear, ReLU), decoder 256→256→128→64→2 (3x3 stride-2 "
    "transposed conv, ReLU, final Tanh); runs at 224x224 only; recipe: the study's MSE on ab, no discriminator",
    recipe=Recipe(recon_loss="mse", recon_weight=1.0, lr=1e-3, betas=(0.9, 0.999)),
    fixed_size=FIXED_SIZE,
    width=32,
    latent=56,
)
def build_autoencoder(**options) -> ConvAutoencoder:
    return ConvAutoencoder(**options)
