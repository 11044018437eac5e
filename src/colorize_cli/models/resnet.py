"""Residual networks: Ehrenberg's ResNet generator and Bharadwaj & Narayana's ResNet-18 regression.

Both are built from He et al.'s basic block (two 3x3 convolutions with batch norm, ReLU, identity
shortcut), written here because torchvision has no CPU wheel we can depend on. The regression's
from-scratch trunk keeps torchvision's ``resnet18`` attribute names (``conv1``, ``bn1``, ``layer1``,
``layer2``); its default trunk is a pretrained encoder cut at the same stride, since no ResNet-18
ImageNet weights can be had here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_cli.models.common import init_weights
from colorize_cli.models.encoders import STRIDES, colorizer_trunk, create_encoder, load_pretrained_trunk
from colorize_cli.models.registry import Recipe, register_model


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    The shortcut is the identity, or a strided 1x1 convolution + BN where the shape changes
    (torchvision's ``downsample``).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def _up_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class ResNetGenerator(nn.Module):
    """ResNet generator after pix2pix's ``resnet_9blocks`` (Ehrenberg §1.1): 1 channel in, 2 out.

    7x7 stem, two stride-2 3x3 convolutions (width, 2x, 4x channels), ``blocks`` residual blocks at
    4x width and a quarter of the resolution, two transposed convolutions back up, a 7x7 convolution
    to ab and Tanh. Batch norm + ReLU between convolutions; Xavier-uniform initialisation. Inputs
    must be multiples of 4.

    Args:
        width: channels of the stem (pix2pix: 64).
        blocks: residual blocks (pix2pix: 9).
        init: see :func:`~colorize_cli.models.common.init_weights` (the study: ``xavier``).
    """

    def __init__(self, width: int = 32, blocks: int = 6, init: str = "xavier") -> None:
        super().__init__()
        layers = _conv_bn_relu(1, width, 7) + _conv_bn_relu(width, 2 * width, 3, 2)
        layers += _conv_bn_relu(2 * width, 4 * width, 3, 2)
        layers += [BasicBlock(4 * width, 4 * width) for _ in range(blocks)]
        layers += _up_bn_relu(4 * width, 2 * width) + _up_bn_relu(2 * width, width)
        layers += [nn.Conv2d(width, 2, 7, 1, 3), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.size_multiple = 4
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


SCRATCH = "scratch"
TRUNK_STRIDE = 8  # where the study's cut (after ResNet-18's 6th child, layer2) leaves the image
STUDY_TRUNK = "an ImageNet-pretrained ResNet-18 cut after its 6th child (conv1 to layer2: stride 8, 128 channels)"


def describe_trunk(trunk: str) -> str:
    """One line for a model card: what the trunk option ``trunk`` is, and what it stands in for."""
    if trunk == SCRATCH:
        return ("ResNet-18 conv1 to layer2 (stride 8, 128 channels), trained from scratch: the study's cut "
                "without its ImageNet weights")
    encoder = create_encoder(trunk)
    channels = encoder.channels[STRIDES.index(TRUNK_STRIDE)]
    return (f"{trunk} (ImageNet-pretrained, 1-channel gray stem) cut at stride {TRUNK_STRIDE} "
            f"({channels} channels), standing in for {STUDY_TRUNK}: no ResNet-18 weights can be had here")


class ResNet18Regression(nn.Module):
    """Bharadwaj & Narayana's method 1: a ResNet-18 trunk cut after its 6th child, and an upsampling head.

    torchvision's ``resnet18`` children are conv1, bn1, relu, maxpool, layer1, layer2, layer3, ...;
    "cut off after the 6th set of layers" keeps conv1 (here on 1 channel) to layer2: 2x width
    channels (128) at 1/8 of the resolution. The head is their table, but starting at the 128
    channels the cut yields (their table's 512 is what a trunk cut after layer4 would give, at 1/32
    resolution, which three 2x upsamplings could not bring back): conv 128→128, up 2x, conv 128→64,
    conv 64→64, conv 64→32, up 2x, conv 32→2, up 2x; 3x3 convolutions with batch norm + ReLU (as in
    the Places colorization code the study follows), parameter-free bilinear upsampling, and Tanh
    instead of the table's final ReLU, since normalised ab is signed. Inputs must be multiples of 8.

    The study's trunk is ImageNet-pretrained; no ResNet-18 weights can be had here, so ``trunk`` names
    the pretrained encoder that stands in (:mod:`~colorize_cli.models.encoders`, cut at the same stride
    8, its gray stem; :meth:`load_pretrained` fills it), or ``"scratch"`` for the ResNet layers above
    trained from scratch (the weights files from before the option). The head's first convolution
    then takes the encoder's channels (EfficientNet-Lite0: 40) to 2x width.

    Args:
        width: channels of conv1 and layer1 (ResNet-18: 64); layer2 and the head scale with it.
        trunk: ``"scratch"`` or an encoder name (``efficientnet-lite0``, ``mobilenet-v2``...).
        code_channels: maps concatenated to the trunk's output before the head (a conditional VAE's
            code, given to :meth:`forward`); 0 for the plain regression.
    """

    def __init__(self, width: int = 64, trunk: str = SCRATCH, code_channels: int = 0) -> None:
        super().__init__()
        self.trunk_name, self.code_channels = trunk, code_channels
        if trunk == SCRATCH:
            self.conv1 = nn.Conv2d(1, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = nn.Sequential(BasicBlock(width, width), BasicBlock(width, width))
            self.layer2 = nn.Sequential(BasicBlock(width, 2 * width, 2), BasicBlock(2 * width, 2 * width))
            cut = 2 * width
            # torchvision's initialisation in the trunk; PyTorch's default in the head, whose smaller
            # weights keep the final Tanh out of saturation at the start
            for part in (self.conv1, self.layer1, self.layer2):
                for m in part.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        else:
            self.encoder = colorizer_trunk(trunk, TRUNK_STRIDE)
            cut = self.encoder.channels[-1]
        c = 2 * width
        self.head1 = nn.Sequential(*_conv_bn_relu(cut + code_channels, c, 3))
        self.head2 = nn.Sequential(*_conv_bn_relu(c, width, 3), *_conv_bn_relu(width, width, 3),
                                   *_conv_bn_relu(width, width // 2, 3))
        self.head3 = nn.Sequential(nn.Conv2d(width // 2, 2, 3, 1, 1), nn.Tanh())
        self.size_multiple = 8

    @property
    def pretrained_encoder(self) -> nn.Module | None:
        """The part :meth:`load_pretrained` fills; None for the from-scratch trunk."""
        return getattr(self, "encoder", None)

    def load_pretrained(self) -> None:
        """Fill the trunk with its encoder's published ImageNet weights (nothing to do from scratch)."""
        if self.pretrained_encoder is not None:
            load_pretrained_trunk(self.encoder, self.trunk_name, TRUNK_STRIDE)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The features at stride 8 of normalised L."""
        if self.pretrained_encoder is not None:
            return self.encoder.features((x + 1) / 2)[-1]  # L/100 as the gray level the encoder expects
        return self.layer2(self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x))))))

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """ab of normalised L; ``code`` (N, code_channels) is replicated over the trunk's map."""
        h = self.trunk(x)
        if self.code_channels:
            if code is None:  # a wrong length is head1's channel error
                raise ValueError(f"this network takes a code of {self.code_channels} values per image")
            h = torch.cat([h, code.to(h.dtype)[:, :, None, None].expand(-1, -1, *h.shape[-2:])], dim=1)
        h = self.head2(self._up(self.head1(h)))
        return self._up(self.head3(self._up(h)))


_EHRENBERG = "Ehrenberg, Image Colorization with GANs"
_BHARADWAJ = "Bharadwaj & Narayana, Comparing Regression, Autoencoder and GAN for Image Colorization"


@register_model(
    "resnet-patchgan",
    study=f"{_EHRENBERG}, §1.1",
    description="ResNet generator (7x7 stem, 2 stride-2 downs, 6 residual blocks at 128 channels, 2 "
    "transposed-conv ups; BN + ReLU; Xavier-uniform init; width 32: 2.0 M parameters, where the study's "
    "10 M did not finish an epoch in 24 h on a CPU) + 70x70 PatchGAN (width 32) with spectral norm, "
    "LeakyReLU 0.2, Tanh and Xavier init; adversarial (BCE) + 100·L1",
    recipe=Recipe(discriminator="patch",
                  discriminator_options={"norm": "spectral", "width": 32, "init": "xavier"},
                  recon_weight=100.0),
    size_multiple=4,
    width=32,
    blocks=6,
)
def build_resnet_generator(**options) -> ResNetGenerator:
    return ResNetGenerator(**options)


@register_model(
    "regression",
    study=f"{_BHARADWAJ}, §2.1-2.3 (method 1)",
    description="trunk on L at stride 8: EfficientNet-Lite0 (ImageNet-pretrained, gray stem) cut at stride 8 "
    "(40 channels), standing in for the study's ImageNet ResNet-18 cut after layer2 (stride 8, 128 channels; "
    "no ResNet-18 weights exist here; trunk=scratch: those ResNet layers from scratch) + upsampling head "
    "→128→64→64→32→2 (3x3 conv-BN-ReLU, 3 bilinear 2x upsamplings, Tanh; the study's table starts at "
    "512, which this cut cannot give); recipe: the study's MSE on ab, no discriminator",
    recipe=Recipe(recon_loss="mse", recon_weight=1.0, lr=1e-3, betas=(0.9, 0.999)),
    size_multiple=8,
    legacy_options={"trunk": SCRATCH},
    width=64,
    trunk="efficientnet-lite0",
)
def build_regression(**options) -> ResNet18Regression:
    return ResNet18Regression(**options)
