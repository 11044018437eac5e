"""Training data: a folder of colour photos, decoded once into a uint8 cache, served as Lab batches.

Decoding JPEGs and converting to Lab every step costs as much as the network on a small CPU, so
:func:`load_folder` decodes each photo once, resized so that its short side is ``cache_size`` and
centre-cropped square, and keeps the lot as one uint8 tensor (also saved to disk, so a resumed or
repeated run skips the decoding). :class:`BatchSampler` then cuts random crops and flips on tensors.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from colorize_cli.io.files import IMAGE_SUFFIXES, find_images
from colorize_cli.io.images import is_grayscale
from colorize_cli.models.colorspace import rgb_to_model_input


def _decode(args: tuple[str, int]) -> tuple[str, np.ndarray | None, str]:
    """Decode one file to a square uint8 array; returns (path, array or None, reason)."""
    path, size = args
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("RGB", "RGBA", "CMYK", "P", "I;16", "LA", "RGBa"):
                return path, None, "grayscale"
            im = ImageOps.fit(im.convert("RGB"), (size, size), Image.Resampling.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        return path, None, f"unreadable ({exc.__class__.__name__})"
    if is_grayscale(arr):
        return path, None, "grayscale"
    return path, arr, ""


@dataclass
class FolderData:
    images: torch.Tensor  # (N, S, S, 3) uint8
    skipped: dict[str, int]  # reason -> count
    files: int
    sources: list[str] = field(default_factory=lambda: ["."])  # source folders (top-level subfolders)
    source_of: torch.Tensor | None = None  # (N,) index into ``sources`` of each image; None: all in one

    def source_counts(self) -> list[int]:
        """Images per source, in the order of ``sources``."""
        if self.source_of is None:
            return [len(self.images)]
        return torch.bincount(self.source_of, minlength=len(self.sources)).tolist()


def _cache_file(root: Path, files: list[Path], size: int, cache_dir: Path) -> Path:
    h = hashlib.sha256(f"v2|{root.resolve()}|{size}|{len(files)}".encode())  # v2: with the image sources
    for f in files:
        h.update(str(f).encode())
    return cache_dir / f"{root.name}-{size}px-{h.hexdigest()[:12]}.npz"


def load_folder(
    root: Path, cache_size: int, cache_dir: Path | None = None, workers: int | None = None,
    progress=None,
) -> FolderData:
    """Decode every colour photo under ``root`` into an ``(N, S, S, 3)`` uint8 tensor.

    Grayscale and unreadable files are skipped and counted. With ``cache_dir`` the decoded array
    is stored there and reused when the same folder and size are asked for again.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    files = find_images(root)
    if not files:
        raise ValueError(f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    cache = _cache_file(root, files, cache_size, cache_dir) if cache_dir else None
    if cache is not None and cache.exists():
        z = np.load(cache)
        skipped = {k[len("skip_"):]: int(z[k]) for k in z.files if k.startswith("skip_")}
        return FolderData(torch.from_numpy(z["images"]), skipped, len(files), [str(n) for n in z["sources"]],
                          torch.from_numpy(z["source_of"]))
    # a photo's source is the top-level subfolder it is in ("." for the files at the top)
    tops = [f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else "." for f in files]
    sources = sorted(set(tops))
    arrays: list[np.ndarray] = []
    source_of: list[int] = []
    skipped: dict[str, int] = {}
    jobs = [(str(f), cache_size) for f in files]
    workers = workers or min(4, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        for top, (_path, arr, reason) in zip(tops, pool.map(_decode, jobs, chunksize=64)):
            if arr is None:
                key = reason.split(" ")[0]
                skipped[key] = skipped.get(key, 0) + 1
            else:
                arrays.append(arr)
                source_of.append(sources.index(top))
            if progress is not None:
                progress()
    if not arrays:
        raise ValueError(f"{root}: none of the {len(files)} images is a readable colour photo")
    images = np.stack(arrays)
    of = np.asarray(source_of, dtype=np.int64)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, sources=np.asarray(sources), source_of=of,
                 **{f"skip_{k}": v for k, v in skipped.items()})
        tmp.replace(cache)
    return FolderData(torch.from_numpy(images), skipped, len(files), sources, torch.from_numpy(of))


def parse_source(spec: str) -> tuple[str, float]:
    """``PATH|NAME[:SPLIT][:WEIGHT]`` -> (dataset, weight); the weight is a number after the last colon
    (default 1), so ``places365:val`` keeps its split and ``photos/train:2`` weighs twice."""
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            weight = float(tail)
        except ValueError:
            return spec, 1.0
        if not weight > 0:
            raise ValueError(f"{spec}: the weight after ':' must be a positive number")
        return head, weight
    return spec, 1.0


@dataclass
class SourceMix:
    """Several datasets as one: the images, the probability of drawing each, and a table of the shares."""

    images: torch.Tensor  # (N, S, S, 3) uint8
    probabilities: torch.Tensor  # (N,) float64, sums to 1
    shares: list[tuple[str, int, float]]  # (dataset/source, images, share of the draws)
    datasets: list[tuple[str, list[int]]]  # (dataset, indices into ``shares`` of its sources)

    def describe(self) -> list[str]:
        """One phrase per dataset: its share of the draws and how it is spread over its sources."""
        out = []
        for label, idx in self.datasets:
            share = sum(self.shares[i][2] for i in idx)
            n = sum(self.shares[i][1] for i in idx)
            text = f"{label} {share:.1%} ({n} photos"
            if len(idx) > 1:
                each = [self.shares[i][2] for i in idx]
                text += f" in {len(idx)} source folders, {min(each):.1%}-{max(each):.1%} each"
            out.append(text + ")")
        return out


def mix_sources(datasets: list[tuple[str, FolderData, float]], balance: float = 0.5) -> SourceMix:
    """Draw dataset d with probability w_d / Σw, and within it source folder s ∝ n_s ** ``balance``
    (0: every source as often; 1: in proportion to its size, as if the folders were one), so that the
    big sources do not drown the small ones; images of a source are drawn uniformly."""
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"source balance {balance}: use a number from 0 to 1")
    if len({d.images.shape[1:] for _, d, _ in datasets}) > 1:
        raise ValueError("datasets decoded at different sizes cannot be mixed")
    total_w = sum(w for _, _, w in datasets)
    probs, shares, groups = [], [], []
    for label, data, weight in datasets:
        groups.append((label, []))
        counts = torch.tensor(data.source_counts(), dtype=torch.float64)
        share = (counts > 0) * counts.clamp(min=1) ** balance
        share = share / share.sum() * (weight / total_w)
        of = data.source_of if data.source_of is not None else torch.zeros(len(data.images), dtype=torch.long)
        probs.append((share / counts.clamp(min=1))[of])
        for name, n, sh in zip(data.sources, counts.tolist(), share.tolist()):
            if n:
                groups[-1][1].append(len(shares))
                shares.append((label if name == "." else f"{label}/{name}", int(n), sh))
    images = datasets[0][1].images if len(datasets) == 1 else torch.cat([d.images for _, d, _ in datasets])
    p = torch.cat(probs)
    return SourceMix(images, p / p.sum(), shares, groups)


class BatchSampler:
    """Random square crops (side 80-100 % of the cached image), resized to ``size``, random flips.

    Images are drawn uniformly, or with ``probabilities`` (a :class:`SourceMix`'s). Yields
    ``(l_norm, ab_norm)`` float batches. The generator it draws from is part of the
    trainer's checkpoint, so a resumed run sees the same batches.
    """

    def __init__(self, images: torch.Tensor, size: int, batch_size: int, generator: torch.Generator,
                 min_scale: float = 0.8, probabilities: torch.Tensor | None = None):
        self.images = images
        self.probabilities = probabilities  # None: every image equally often
        self.size = size
        self.batch_size = batch_size
        self.generator = generator
        self.min_scale = min_scale

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, side = self.images.shape[0], self.images.shape[1]
        g = self.generator
        if self.probabilities is None:
            idx = torch.randint(0, n, (self.batch_size,), generator=g)
        else:
            idx = torch.multinomial(self.probabilities, self.batch_size, replacement=True, generator=g)
        lo = max(self.size, int(side * self.min_scale)) if side >= self.size else side
        crops = []
        for i in idx.tolist():
            c = int(torch.randint(lo, side + 1, (1,), generator=g))
            y = int(torch.randint(0, side - c + 1, (1,), generator=g))
            x = int(torch.randint(0, side - c + 1, (1,), generator=g))
            crop = self.images[i, y : y + c, x : x + c].permute(2, 0, 1).float().div_(255)
            if c != self.size:
                crop = F.interpolate(crop[None], size=(self.size, self.size), mode="bilinear",
                                     antialias=True, align_corners=False)[0]
            if bool(torch.rand((), generator=g) < 0.5):
                crop = crop.flip(-1)
            crops.append(crop)
        rgb = torch.stack(crops).clamp_(0, 1)
        return rgb_to_model_input(rgb)
