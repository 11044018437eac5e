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

With ``hints=True`` the network also takes the colours a user knows (Zhang et al. 2017, "Real-Time
User-Guided Image Colorization with Learned Deep Priors"): sparse a/b points and their mask (a gray
hint is a hint, the mask says where there is one) and a global hint, a distribution over the Q
quantised a/b colours of a reference photo plus its mean saturation. They enter as side branches: at
the bottleneck and after each decoder stage, a small network sees the decoder's features and the hints
pooled to that stride and adds its output to the features. Each branch ends in a convolution that
starts at zero, and its output is multiplied by whether the image has any hint at all, so without
hints the network is exactly the flagship it is fine-tuned from (``colorize train --init``); with
``tune_base=False`` (the default) only the branches learn, and the flagship's batch norms keep their
statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_cli.color import AB_SCALE, ab_bins
from colorize_cli.hints import HINT_STEP
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


LOCAL_CHANNELS = 3  # a, b (normalised, the mean of the hints in a cell) and the mask (any hint in the cell)


class HintBranch(nn.Module):
    """What the hints say, added to a feature map: conv(features, hints) -> ReLU -> conv -> ReLU -> 1x1
    conv, whose weights start at zero, so that the branch adds nothing until it has learnt."""

    def __init__(self, channels: int, extra: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels + extra, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, h: torch.Tensor, hints: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h, hints.to(h.dtype)], dim=1))


def pool_hints(hint_ab: torch.Tensor, hint_mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Local hints at ``stride``: (N, 3, H/stride, W/stride) of the mean hint colour in each cell (0
    where none) and whether the cell holds a hint."""
    if stride == 1:
        return torch.cat([hint_ab * hint_mask, hint_mask], dim=1)
    share = F.avg_pool2d(hint_mask, stride)
    ab = F.avg_pool2d(hint_ab * hint_mask, stride) / share.clamp(min=1e-6)
    return torch.cat([ab, F.max_pool2d(hint_mask, stride)], dim=1)


class EncoderUNet(nn.Module):
    """Pretrained-encoder U-Net colorizer.

    Args:
        encoder: a name of :data:`colorize_cli.models.encoders.ENCODERS`.
        width: the decoder's stages at strides 16, 8 and 4 have 32, 16 and 12 × ``width`` channels.
        head: ``classify`` (Q-way a/b classification, annealed mean) or ``regress`` (tanh a/b).
        temperature: the annealed mean's T (``classify`` only).
        hints: take local and global colour hints (see the module's docstring); ``forward(l, hint_ab,
            hint_mask, hint_hist, hint_saturation)``.
        tune_base: with ``hints``, let the flagship under the branches learn too (default: frozen).
    """

    def __init__(self, encoder: str = "efficientnet-lite0", width: int = 4, head: str = "classify",
                 temperature: float = 0.38, hints: bool = False, tune_base: bool = False):
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
        self.hints, self.tune_base = bool(hints), bool(tune_base)
        if self.hints:
            self.hint_bins = int(ab_bins(HINT_STEP).shape[0])
            self.global_hint = nn.Sequential(nn.Linear(self.hint_bins + 1, 256), nn.ReLU(inplace=True),
                                             nn.Linear(256, c[4]))
            nn.init.zeros_(self.global_hint[-1].weight)
            nn.init.zeros_(self.global_hint[-1].bias)
            # at the bottleneck (stride 32), then after each decoder stage (16, 8, 4)
            self.hint_branches = nn.ModuleList([HintBranch(ch, LOCAL_CHANNELS) for ch in (c[4], *widths)])
            if not self.tune_base:
                for p in self._base_parameters():
                    p.requires_grad_(False)

    def example_inputs(self, n: int, h: int, w: int) -> dict[str, torch.Tensor]:
        """The inputs beside L, by name, as zeros (no hint); {} without ``hints``. The ONNX export makes
        them graph inputs."""
        if not self.hints:
            return {}
        return {"hint_ab": torch.zeros(n, 2, h, w), "hint_mask": torch.zeros(n, 1, h, w),
                "hint_hist": torch.zeros(n, self.hint_bins), "hint_saturation": torch.zeros(n, 1)}

    @property
    def parts_beyond_init(self) -> tuple[str, ...]:
        """The state-dict prefixes of what ``hints`` adds: ``--init`` from the flagship lacks them."""
        return ("global_hint.", "hint_branches.") if self.hints else ()

    def _base_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.encoder, self.ups, self.head) for p in m.parameters()]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What training updates: everything, or with ``hints`` and a frozen base, the hint branches."""
        if self.hints and not self.tune_base:
            return [p for m in (self.global_hint, self.hint_branches) for p in m.parameters()]
        return list(self.parameters())

    def train(self, mode: bool = True) -> EncoderUNet:
        super().train(mode)
        if self.hints and not self.tune_base:  # the frozen flagship keeps its batch-norm statistics
            for m in (self.encoder, self.ups, self.head):
                m.train(False)
        return self

    def load_pretrained(self) -> None:
        """Fill the encoder with its published ImageNet weights (the 1-channel stem made from the RGB
        one); raises :class:`~colorize_cli.models.encoders.EncoderWeightsError` when they are missing."""
        load_pretrained_trunk(self.encoder, self.encoder_name)

    @property
    def pretrained_encoder(self) -> nn.Module:
        """The part :meth:`load_pretrained` fills (the trainer's ``--freeze-encoder``/``--encoder-lr``)."""
        return self.encoder

    def scores(self, l_norm: torch.Tensor, hint_ab: torch.Tensor | None = None,
               hint_mask: torch.Tensor | None = None, hint_hist: torch.Tensor | None = None,
               hint_saturation: torch.Tensor | None = None) -> torch.Tensor:
        """The head's output at stride 4: class logits (N, Q, H/4, W/4) or pre-tanh a/b (N, 2, H/4, W/4).

        Hints (``hints=True`` only; None: no hint): ``hint_ab`` (N, 2, H, W) normalised a/b,
        ``hint_mask`` (N, 1, H, W) 1 where a hint is, ``hint_hist`` (N, Q) a distribution over
        :func:`colorize_cli.color.ab_bins` (HINT_STEP) or zeros, ``hint_saturation`` (N, 1) the reference's
        mean chroma (normalised)."""
        if self.hints and not self.tune_base and torch.is_grad_enabled():
            with torch.no_grad():  # the frozen flagship's encoder needs no gradient at all
                feats = self.encoder.features((l_norm + 1) / 2)
        else:
            feats = self.encoder.features((l_norm + 1) / 2)  # L/100 as the gray level the encoder expects
        h = feats[4]
        local = None
        if self.hints:
            n = l_norm.shape[0]
            hint_ab = l_norm.new_zeros(n, 2, *l_norm.shape[-2:]) if hint_ab is None else hint_ab
            hint_mask = l_norm.new_zeros(n, 1, *l_norm.shape[-2:]) if hint_mask is None else hint_mask
            hint_hist = l_norm.new_zeros(n, self.hint_bins) if hint_hist is None else hint_hist
            hint_saturation = l_norm.new_zeros(n, 1) if hint_saturation is None else hint_saturation
            # an image without any hint takes the flagship's path exactly
            given = torch.maximum(hint_mask.flatten(1).amax(1), (hint_hist.sum(1) > 0).to(hint_mask.dtype))
            gate = given.view(n, 1, 1, 1).to(h.dtype)
            g = self.global_hint(torch.cat([hint_hist, hint_saturation], dim=1).to(h.dtype))
            h = h + gate * g[:, :, None, None]
            h = h + gate * self.hint_branches[0](h, pool_hints(hint_ab, hint_mask, 32))
            local = (hint_ab, hint_mask, gate)
        for i, (up, skip, stride) in enumerate(zip(self.ups, (feats[3], feats[2], feats[1]), (16, 8, 4))):
            h = up(h, skip)
            if local is not None:
                h = h + local[2] * self.hint_branches[i + 1](h, pool_hints(local[0], local[1], stride))
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

    def forward(self, l_norm: torch.Tensor, hint_ab: torch.Tensor | None = None,
                hint_mask: torch.Tensor | None = None, hint_hist: torch.Tensor | None = None,
                hint_saturation: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.scores(l_norm, hint_ab, hint_mask, hint_hist, hint_saturation), l_norm.shape[-2:])


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


register_model(
    "efflite-unet-hints", study=_STUDY + ", taking the colours a user knows (Zhang et al. 2017's local "
    "points and global distribution), fine-tuned from the flagship",
    description="the flagship (efflite-unet-gan) with side branches for colour hints: sparse a/b points "
    "with their mask, and a reference's a/b distribution over 10-unit bins with its mean saturation; "
    "without hints exactly the flagship",
    recipe=Recipe(discriminator="pixel", discriminator_options={"norm": "spectral"}, recon_weight=100.0),
    size_multiple=32, encoder="efficientnet-lite0", head="regress", hints=True)(build_encoder_unet)
