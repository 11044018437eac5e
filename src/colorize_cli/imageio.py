"""Reading the photos users have and writing results with their metadata, atomically.

:func:`read_image` applies EXIF orientation and turns any supported mode into float RGB in [0, 1]
plus what must survive the round trip (alpha, ICC profile, EXIF, format). :func:`write_image`
writes to a temporary file in the target folder and renames it, so an interrupted run never
leaves a half-written output.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Pillow's name for each output format we write, by suffix
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF",
           ".tiff": "TIFF", ".bmp": "BMP", ".gif": "PNG"}
_EXIF_ORIENTATION = 0x0112


class ImageReadError(Exception):
    """A file that cannot be read as an image; the message names the reason."""


@dataclass
class Photo:
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    alpha: np.ndarray | None = None  # (H, W) float32 in [0, 1]
    icc_profile: bytes | None = None
    exif: bytes | None = None
    source_mode: str = "RGB"
    source_format: str | None = None
    bits: int = 8
    warnings: list[str] = field(default_factory=list)

    @property
    def is_color(self) -> bool:
        """True if the photo already carries colour (channels differ by more than rounding)."""
        x = self.rgb
        spread = np.abs(x[..., 0] - x[..., 1]).mean() + np.abs(x[..., 1] - x[..., 2]).mean()
        return bool(spread * 255 > 2.0)


def read_image(path: Path) -> Photo:
    """Read ``path`` into a :class:`Photo`; raises :class:`ImageReadError` with a one-line reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            notes = []
            if getattr(im, "n_frames", 1) > 1:
                notes.append(f"{im.n_frames} frames: colorizing the first only")
            fmt = im.format
            icc = im.info.get("icc_profile")
            exif = im.getexif()
            im = ImageOps.exif_transpose(im)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{exc} (raise the limit with --max-pixels)") from None
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"not a readable image ({exc})") from None
    if exif is not None and _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1  # orientation has been applied to the pixels
    mode = im.mode
    alpha = None
    bits = 8
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float32)
        scale = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        bits = 16 if scale == 65535.0 else 8
        gray = np.clip(arr / scale, 0, 1)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    else:
        if mode in ("LA", "RGBA", "PA") or (mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            alpha = np.asarray(im.getchannel("A"), dtype=np.float32) / 255
        rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    return Photo(rgb, alpha, icc, exif.tobytes() if exif else None, mode, fmt, bits, notes)


def write_image(path: Path, rgb: np.ndarray, photo: Photo, quality: int = 95) -> None:
    """Write float RGB ``(H, W, 3)`` in [0, 1] to ``path`` with the photo's metadata, atomically."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot write {path.suffix!r} files; use jpg, png, webp or tiff")
    alpha = photo.alpha if fmt in ("PNG", "WEBP", "TIFF") else None
    channels = [rgb] if alpha is None else [rgb, alpha[..., None]]
    data = np.concatenate(channels, axis=2)
    im = Image.fromarray(np.round(np.clip(data, 0, 1) * 255).astype(np.uint8), "RGBA" if alpha is not None else "RGB")
    kwargs: dict = {}
    if photo.icc_profile:
        kwargs["icc_profile"] = photo.icc_profile
    if photo.exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["exif"] = photo.exif
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, format=fmt, **kwargs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
