"""The flagship: an ImageNet-pretrained encoder under a U-Net decoder that predicts a/b.

    L ─► gray stem ─► pretrained trunk (strides 2..32) ─► decoder (up + skip + 2 conv, to stride 4)
                                                               └► head: a/b  (``head="classify"``: a
    distribution over Q quantised a/b colours, decoded by its annealed mean; ``"regress"``: a/b directly)
    ─► bilinear ×4 to the input size

Classification with the annealed mean is Zhang et al. (2016): a distribution over colours keeps the
several plausible colours of an object apart where a regression averages them into brown-gray, and
the temperature ``T`` sets how far the mean moves towards the mode (T = 1: the mean; T → 0: the mode),
which is chosen on validation photos after training and stored in the weights' options.

The encoder's published weights are only needed to start training (:meth:`load_pretrained`); a
trained model's weights file holds the whole network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_cli.color import AB_SCALE, ab_bins
from colorize_cli.models.encoders import colorizer_trunk, load_pretrained_trunk
from colorize_cli.models.registry import Recipe, register_model

HEADS = ("classify", "regress")


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _UpBlock(nn.Module):
    """Upsample ×2 (bilinear), concatenate the encoder's skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, cin: int, skip: int, cout: int):
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(cin + skip, cout), _conv_bn_relu(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class EncoderUNet(nn.Module):
    """Pretrained-encoder U-Net colorizer.

    Args:
        encoder: a name of :data:`colorize_cli.models.encoders.ENCODERS`.
        width: the decoder's stages at strides 16, 8 and 4 have 32, 16 and 12 × ``width`` channels.
        head: ``classify`` (Q-way a/b classification, annealed mean) or ``regress`` (tanh a/b).
        temperature: the annealed mean's T (``classify`` only).
    """

    def __init__(self, encoder: str = "efficientnet-lite0", width: int = 4, head: str = "classify",
                 temperature: float = 0.38):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head {head!r}: use {', '.join(HEADS)}")
        self.encoder_name = encoder
        self.encoder = colorizer_trunk(encoder)
        c = self.encoder.channels  # strides 2, 4, 8, 16, 32
        widths = [32 * width, 16 * width, 12 * width]
        self.ups = nn.ModuleList([_UpBlock(c[4], c[3], widths[0]), _UpBlock(widths[0], c[2], widths[1]),
                                  _UpBlock(widths[1], c[1], widths[2])])
        self.head_kind = head
        self.temperature = float(temperature)
        self.register_buffer("bins", torch.from_numpy(ab_bins() / AB_SCALE), persistent=False)  # (Q, 2), normalised ab
        self.head = nn.Conv2d(widths[2], self.bins.shape[0] if head == "classify" else 2, 1)
        self.size_multiple = 32

    def load_pretrained(self) -> None:
        """Fill the encoder with its published ImageNet weights (the 1-channel stem made from the RGB
        one); raises :class:`~colorize_cli.models.encoders.EncoderWeightsError` when they are missing."""
        load_pretrained_trunk(self.encoder, self.encoder_name)

    @property
    def pretrained_encoder(self) -> nn.Module:
        """The part :meth:`load_pretrained` fills (the trainer's ``--freeze-encoder``/``--encoder-lr``)."""
        return self.encoder

    def scores(self, l_norm: torch.Tensor) -> torch.Tensor:
        """The head's output at stride 4: class logits (N, Q, H/4, W/4) or pre-tanh a/b (N, 2, H/4, W/4)."""
        feats = self.encoder.features((l_norm + 1) / 2)  # L/100 as the gray level the encoder expects
        h = feats[4]
        for up, skip in zip(self.ups, (feats[3], feats[2], feats[1])):
            h = up(h, skip)
        return self.head(h)

    def decode(self, scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Normalised a/b (N, 2, *size) from :meth:`scores`: the annealed mean of the class distribution
        (or the tanh of a regression), upsampled bilinearly."""
        if self.head_kind == "classify":
            p = torch.softmax(scores.float() / self.temperature, dim=1)
            ab = torch.einsum("nqhw,qc->nchw", p, self.bins.to(p.dtype))
        else:
            ab = torch.tanh(scores.float())
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.decode(self.scores(l_norm), l_norm.shape[-2:])


_STUDY = "ours: ImageNet-pretrained encoder + U-Net decoder"


@register_model(
    "efflite-unet-gan",
    study=_STUDY + ", with Ehrenberg §1.2's pixel PatchGAN (the flagship, bundled default)",
    description="EfficientNet-Lite0 (ImageNet-pretrained) + U-Net decoder to stride 4; a/b regressed with "
    "100·L1 + a 1x1 pixel PatchGAN with spectral norm",
    recipe=Recipe(discriminator="pixel", discriminator_options={"norm": "spectral"}, recon_weight=100.0),
    size_multiple=32,
    encoder="efficientnet-lite0",
    head="regress",
)
def build_encoder_unet(**options) -> EncoderUNet:
    return EncoderUNet(**options)


# the two loss trials beside the flagship: (name, loss, head, study, description)
_LOSS_TRIALS = (
    ("efflite-unet", "ce", "classify", ", Zhang et al. 2016's colour classification (a loss trial)",
     ("EfficientNet-Lite0 (ImageNet-pretrained, 1-channel stem) + U-Net decoder to stride 4; "
      "classification over quantised a/b (soft targets, annealed mean)")),
    ("efflite-unet-l1", "l1", "regress", ", L1 regression (a loss trial)",
     "EfficientNet-Lite0 (ImageNet-pretrained) + U-Net decoder to stride 4; a/b regressed with L1"),
)
for _name, _loss, _head, _study, _description in _LOSS_TRIALS:
    register_model(_name, study=_STUDY + _study, description=_description,
                   recipe=Recipe(recon_loss=_loss, recon_weight=1.0, lr=5e-4, betas=(0.9, 0.999)),
                   size_multiple=32, encoder="efficientnet-lite0", head=_head)(build_encoder_unet)
