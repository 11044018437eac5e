"""LPIPS (Zhang et al. 2018, v0.1, ``net='alex'``, as the ``lpips`` package computes it) with the
official pretrained weights (docs/perceptual.md).

The five ReLU outputs of torchvision's ImageNet AlexNet, unit-normalised over channels, squared
differences weighted by the learned 1x1 "lin" layers, averaged over space, summed over layers. The
network is written here in plain torch (no torchvision); its two weight files are fetched by
:func:`colorize_cli.engine.perceptual.pretrained.fetch_pretrained`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from colorize_cli.engine.perceptual.pretrained import PretrainedFile, load_state_dict, loaded, take

ALEXNET = PretrainedFile(
    "alexnet", "alexnet-owt-7be5be79.pth",
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02", 244_408_911,
    "torchvision's ImageNet AlexNet IMAGENET1K_V1, the LPIPS backbone")
LPIPS_ALEX = PretrainedFile(
    "lpips-alex", "alex.pth",
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", 6_009,
    "the LPIPS v0.1 linear layers for AlexNet, as the lpips package ships them")


class AlexNetFeatures(nn.Module):
    """torchvision's ``alexnet().features`` (same layer indices, so the same state-dict keys), returning
    the outputs of its five ReLUs."""

    TAPS = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        taps = []
        for i, layer in enumerate(self.features[: self.TAPS[-1] + 1]):
            x = layer(x)
            if i in self.TAPS:
                taps.append(x)
        return taps


class NetLinLayer(nn.Module):
    """LPIPS's 1x1 "lin" layer (dropout, then a bias-free conv to one channel): key ``model.1.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk; ``forward`` takes images in [-1, 1] and returns (N,)."""

    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        for i, c in enumerate(self.CHANNELS):
            setattr(self, f"lin{i}", NetLinLayer(c))
        # lpips' ScalingLayer: ImageNet mean/std expressed for inputs in [-1, 1]
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    def lins(self) -> list[NetLinLayer]:
        return [getattr(self, f"lin{i}") for i in range(len(self.CHANNELS))]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        feats_a = self.net((a - self.shift) / self.scale)
        feats_b = self.net((b - self.shift) / self.scale)
        total = a.new_zeros(a.shape[0])
        for fa, fb, lin in zip(feats_a, feats_b, self.lins()):
            diff = (normalize_tensor(fa) - normalize_tensor(fb)) ** 2
            total = total + lin.model(diff).mean(dim=(1, 2, 3))
        return total


def normalize_tensor(x: Tensor, eps: float = 1e-10) -> Tensor:
    """lpips.normalize_tensor: divide by the channel-wise L2 norm (eps outside the sqrt, as upstream)."""
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


def load_lpips_weights(model: LPIPS, **fetch) -> LPIPS:
    """Fill ``model`` with the torchvision AlexNet features and the LPIPS v0.1 lin layers."""
    alex = load_state_dict(ALEXNET, **fetch)
    model.net.features.load_state_dict(take(alex, model.net.features, ALEXNET.filename, "features."))
    lins = load_state_dict(LPIPS_ALEX, **fetch)
    for i, lin in enumerate(model.lins()):
        lin.load_state_dict(take(lins, lin, LPIPS_ALEX.filename, f"lin{i}."))
    return model


def get_lpips(device: str | torch.device = "cpu", **fetch) -> LPIPS:
    """The pretrained LPIPS network on ``device``, in eval mode, frozen (loaded once per device).

    Raises:
        WeightsUnavailable: see :func:`~colorize_cli.engine.perceptual.pretrained.fetch_pretrained`
        (``fetch``: its offline/cache_dir/quiet).
    """
    return loaded("lpips", device, lambda: load_lpips_weights(LPIPS(), **fetch))  # type: ignore[return-value]


def lpips_distance(rgb_a: Tensor, rgb_b: Tensor) -> Tensor:
    """LPIPS (v0.1, AlexNet) between sRGB batches (N, 3, H, W) in [0, 1]; returns (N,).

    Differentiable with respect to both inputs (usable as a training loss); the network is frozen.
    The first call loads the pretrained weights (raises :class:`WeightsUnavailable` if it cannot).
    """
    check_pair("lpips_distance", rgb_a, rgb_b)
    model = get_lpips(rgb_a.device)
    return model(rgb_a.float() * 2 - 1, rgb_b.float() * 2 - 1)



def check_pair(name: str, rgb_a: Tensor, rgb_b: Tensor) -> None:
    """Raise ValueError unless ``rgb_a`` and ``rgb_b`` are two (N, 3, H, W) batches of one shape."""
    if rgb_a.shape != rgb_b.shape or rgb_a.ndim != 4 or rgb_a.shape[1] != 3:
        raise ValueError(f"{name}: expected two (N, 3, H, W) batches, got {tuple(rgb_a.shape)} "
                         f"and {tuple(rgb_b.shape)}")
