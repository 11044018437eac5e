"""LPIPS, FID and FD-EffLite0 for ``colorize eval`` (docs/evaluation.md, docs/perceptual.md)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from colorize_cli.engine.perceptual.frechet import (
    FD_NAME,
    FIDInceptionV3,
    fd_features,
    fid,
    get_fd_encoder,
    get_inception,
    inception_features,
)
from colorize_cli.engine.perceptual.lpips import LPIPS, get_lpips
from colorize_cli.engine.perceptual.pretrained import WeightsUnavailable
from colorize_cli.io.download import LOGGER
from colorize_cli.models.encoders import EncoderWeightsError


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
            LOGGER.warning(f"warning: {metric} unavailable, evaluating without it: {exc}")
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
