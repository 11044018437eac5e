"""Reading the photos users have and writing results with their metadata, atomically.

:func:`read_image` applies EXIF orientation and keeps the pixels in their own depth (8- or 16-bit,
gray or RGB) plus what must survive the round trip: alpha, the ICC profile, EXIF, the format.
:func:`write_image` writes through :func:`colorize_cli.io.atomic.atomic_write`, so a failed or
interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from colorize_cli.io.atomic import _UMASK, atomic_write  # noqa: F401 - _UMASK: outputs honour it

# Pillow's name for each output format we write, by suffix
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF",
           ".tiff": "TIFF", ".bmp": "BMP"}
# --format choices -> suffix; "same" keeps the input's (GIF becomes PNG: we do not write GIF)
FORMAT_SUFFIX = {"jpg": ".jpg", "png": ".png", "webp": ".webp", "tiff": ".tif"}
DEFAULT_MAX_PIXELS = 200_000_000
_EXIF_ORIENTATION = 0x0112
_EXIF_FORMATS = ("JPEG", "PNG", "WEBP")  # formats whose EXIF block we read and write
_EXIF_POINTERS = (0x8769, 0x8825, 0xA005)  # ExifOffset, GPSInfo, InteropOffset
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageReadError(Exception):
    """A file that cannot be read as an image; the message names the reason."""


# an RGB image whose channels differ by less than this on average (0-255) is treated as grayscale
GRAY_TOLERANCE = 2.0


def is_grayscale(rgb: np.ndarray, maxval: int = 255) -> bool:
    """True if an HxWx3 array (code values 0..maxval) carries no colour: its channels differ by less
    than GRAY_TOLERANCE 8-bit levels on average. Training skips such photos; colorizing counts the others."""
    x = rgb.astype(np.float32) * (255.0 / maxval)
    spread = np.abs(x[..., 0] - x[..., 1]).mean() + np.abs(x[..., 1] - x[..., 2]).mean()
    return bool(spread < GRAY_TOLERANCE)


@dataclass
class Photo:
    """A decoded photo. ``pixels`` is (H, W) gray or (H, W, 3) RGB, uint8 or uint16."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None  # (H, W), same dtype as pixels
    icc_profile: bytes | None = None  # kept only if it describes RGB (a gray/CMYK profile would lie)
    exif: bytes | None = None
    source_mode: str = "RGB"
    source_format: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def maxval(self) -> int:
        return 65535 if self.pixels.dtype == np.uint16 else 255

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.pixels.shape[0], self.pixels.shape[1]

    @property
    def is_color(self) -> bool:
        """True if the photo already carries colour (channels differ by more than rounding)."""
        if self.pixels.ndim == 2:
            return False
        step = max(1, int(np.sqrt(self.pixels.shape[0] * self.pixels.shape[1] / 250_000)))  # ~250k samples
        return not is_grayscale(self.pixels[::step, ::step], self.maxval)


_max_pixels: int | None = DEFAULT_MAX_PIXELS


def set_max_pixels(limit: int | None) -> None:
    """The decompression-bomb limit: images above ``limit`` pixels are refused (None/0: no limit).

    Checked here on the header's size, before decoding, instead of by Pillow's own check, which
    works through process-wide warning filters that threads reading in parallel would race on.
    """
    global _max_pixels
    _max_pixels = limit or None


Image.MAX_IMAGE_PIXELS = None  # replaced by the check in read_image


# Pillow warnings that advise programmers, not users (we do convert such palettes to RGBA)
_SILENT_WARNINGS = ("Palette images with Transparency expressed in bytes",)
_capture = threading.local()  # the notes list of the file this thread is reading, if any


@contextlib.contextmanager
def collect_warnings(notes: list[str]):
    """Collect the warnings this thread raises into ``notes`` (one line each, without repeats)
    instead of printing them; only while :func:`pillow_warnings_as_notes` is active."""
    _capture.notes = notes
    try:
        yield notes
    finally:
        _capture.notes = None


@contextlib.contextmanager
def pillow_warnings_as_notes():
    """For the duration of a batch: Pillow's warnings about a file become notes of that file (the
    batch prints them as ``warning: FILE: ...``), every time, not only the first; other warnings,
    or those raised outside :func:`collect_warnings`, are shown as usual."""
    with warnings.catch_warnings():
        warnings.filterwarnings("always", module=r"PIL\.")
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            notes = getattr(_capture, "notes", None)
            if notes is None:
                shown(message, category, filename, lineno, file, line)
                return
            text = re.sub(r"\s+", " ", str(message)).strip().rstrip(".")
            if text not in notes and not text.startswith(_SILENT_WARNINGS):
                notes.append(text)

        warnings.showwarning = show
        yield


def _rgb_profile(icc: bytes | None) -> bytes | None:
    # bytes 16-20 of an ICC header name its colour space
    return icc if icc and len(icc) > 20 and icc[16:20] == b"RGB " else None


def _read_tiff16(path: Path, im: Image.Image) -> np.ndarray | None:
    """16-bit RGB(A) TIFF pixels, which Pillow cannot hold; None if the file is not such a TIFF."""
    if im.format != "TIFF" or im.mode not in ("RGB", "RGBA", "RGBX"):
        return None
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if page.dtype != np.uint16 or page.samplesperpixel < 3:
            return None
        arr = page.asarray()  # LZW, Deflate ... through imagecodecs
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            arr = np.moveaxis(arr, 0, -1)  # (samples, H, W) -> (H, W, samples)
        arr = arr[..., :4] if page.extrasamples and page.extrasamples[0] in (1, 2) else arr[..., :3]
        if page.extrasamples and page.extrasamples[0] == tifffile.EXTRASAMPLE.ASSOCALPHA:
            alpha = arr[..., 3:].astype(np.float64)  # premultiplied colour: divide the alpha out
            rgb = np.where(alpha > 0, arr[..., :3] * 65535.0 / np.maximum(alpha, 1), 0)
            arr = np.concatenate([np.clip(rgb + 0.5, 0, 65535), alpha], axis=-1).astype(np.uint16)
        return np.ascontiguousarray(arr)


def read_image(path: Path) -> Photo:
    """Read ``path`` into a :class:`Photo`; raises :class:`ImageReadError` with a one-line reason.

    What Pillow warns about the file (in a batch) ends up in ``Photo.notes``."""
    notes: list[str] = []
    with collect_warnings(notes):
        return _read_image(Path(path), notes)


def _read_image(path: Path, notes: list[str]) -> Photo:
    try:
        im = Image.open(path)
        if _max_pixels and im.width * im.height > _max_pixels:
            im.close()
            raise ImageReadError(f"{im.width}x{im.height} is larger than the limit of {_max_pixels} pixels "
                                 "(raise it with --max-pixels N, or --max-pixels 0 for none)")
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            notes.append(f"{frames} frames: colorizing the first only")
        fmt = im.format
        icc = im.info.get("icc_profile")
        exif = im.getexif()
        orientation = exif.get(_EXIF_ORIENTATION, 1)
        wide = _read_tiff16(path, im)
        im = ImageOps.exif_transpose(im)
        im.load()
    except FileNotFoundError:
        raise ImageReadError("file not found") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except UnidentifiedImageError:  # its message would repeat the path
        raise ImageReadError("not a readable image (Pillow does not recognise its format)") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageReadError(f"not a readable image ({exc})") from None
    if orientation != 1:
        exif[_EXIF_ORIENTATION] = 1  # orientation has been applied to the pixels
    # a TIFF's "EXIF" is its own image directory (sizes, strip offsets): never copy that elsewhere
    exif_bytes = _exif_bytes(exif, notes) if len(exif) and fmt in _EXIF_FORMATS else None
    if wide is not None:
        pixels = _orient(wide[..., :3], orientation)
        alpha = _orient(wide[..., 3], orientation) if wide.shape[2] > 3 else None
        return Photo(pixels, alpha, _rgb_profile(icc), exif_bytes, im.mode, fmt, notes)
    photo = photo_from_pil(im)
    # the profile and format as the file had them (a transposed copy need not carry them)
    photo.icc_profile, photo.exif, photo.source_format, photo.notes = _rgb_profile(icc), exif_bytes, fmt, notes
    return photo


def photo_from_pil(im: Image.Image) -> Photo:
    """A :class:`Photo` of a Pillow image's pixels as they are (any mode: gray stays gray, 16 bits stay
    16, alpha and an RGB ICC profile are kept)."""
    mode, alpha = im.mode, None
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "F" or arr.max(initial=0) > 65535 or arr.min(initial=0) < 0:
            arr = np.clip(arr, 0, 65535)
        pixels = arr.astype(np.uint16) if mode != "F" or arr.max(initial=0) > 1 else (arr * 65535).astype(np.uint16)
    elif mode in ("1", "L") and "transparency" not in im.info:
        pixels = np.array(im.convert("L"))
    elif mode in ("L", "LA") or (mode in ("P", "PA") and _palette_is_gray(im)):
        la = np.asarray(im.convert("LA"))
        pixels = la[..., 0].copy()
        alpha = la[..., 1].copy() if _has_alpha(im) else None
    else:
        if _has_alpha(im):
            rgba = np.asarray(im.convert("RGBA"))
            pixels, alpha = rgba[..., :3].copy(), rgba[..., 3].copy()
        else:
            pixels = np.array(im.convert("RGB"))
    return Photo(pixels, alpha, _rgb_profile(im.info.get("icc_profile")), source_mode=mode, source_format=im.format)


def _exif_bytes(exif: Image.Exif, notes: list[str]) -> bytes | None:
    """The EXIF block to write; tags whose values cannot be written (a resolution that is a string,
    as some cameras store it) are dropped, with a note."""
    with contextlib.suppress(Exception):  # Pillow raises TypeError, ValueError, struct.error ... for bad values
        return exif.tobytes()
    dropped = []
    for tag in list(exif):
        if tag in _EXIF_POINTERS:  # offsets of sub-directories: written from those, not probed alone
            continue
        probe = Image.Exif()
        probe[tag] = exif[tag]
        try:
            probe.tobytes()
        except Exception:  # noqa: BLE001
            dropped.append(ExifTags.TAGS.get(tag, f"0x{tag:04x}"))
            del exif[tag]
    try:
        data = exif.tobytes()
    except Exception:  # noqa: BLE001
        notes.append("EXIF could not be written back and was dropped")
        return None
    what = "an invalid value and was" if len(dropped) == 1 else "invalid values and were"
    notes.append(f"EXIF {', '.join(dropped)} had {what} dropped from the output")
    return data


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or "transparency" in im.info


def _palette_is_gray(im: Image.Image) -> bool:
    pal = np.asarray(im.convert("RGB"))
    return bool((pal[..., 0] == pal[..., 1]).all() and (pal[..., 1] == pal[..., 2]).all())


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as ImageOps.exif_transpose does."""
    ops = {2: [np.fliplr], 3: [lambda a: np.rot90(a, 2)], 4: [np.flipud], 5: [lambda a: np.rot90(a, 1), np.flipud],
           6: [lambda a: np.rot90(a, -1)], 7: [lambda a: np.rot90(a, -1), np.flipud], 8: [lambda a: np.rot90(a, 1)]}
    for op in ops.get(orientation, []):
        arr = op(arr)
    return np.ascontiguousarray(arr)


def output_suffix(source: Path, fmt: str) -> str:
    """The suffix of the output for ``--format fmt`` (``same`` keeps the input's where we can write it)."""
    if fmt != "same":
        return FORMAT_SUFFIX[fmt]
    return source.suffix if source.suffix.lower() in FORMATS else ".png"


def write_image(path: Path, pixels: np.ndarray, photo: Photo, quality: int = 95) -> None:
    """Write RGB ``pixels`` (H, W, 3; uint8 or uint16) with the photo's alpha, ICC and EXIF, atomically.

    16-bit results are written as 16-bit PNG or TIFF; other formats get 8 bits.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write {path.suffix!r} files; use jpg, png, webp or tiff")
    alpha = photo.alpha if fmt in ("PNG", "WEBP", "TIFF") else None
    sixteen = pixels.dtype == np.uint16 and fmt in ("PNG", "TIFF")
    if pixels.dtype == np.uint16 and not sixteen:
        pixels = (pixels.astype(np.uint32) * 255 + 32767) // 65535
    if alpha is not None and alpha.dtype != pixels.dtype:
        alpha = (alpha.astype(np.uint32) * 65535 // 255) if sixteen else (alpha.astype(np.uint32) * 255 // 65535)
    data = pixels if alpha is None else np.concatenate([pixels, alpha[..., None]], axis=2)
    data = data.astype(np.uint16 if sixteen else np.uint8)
    with atomic_write(path) as f:
        if sixteen and fmt == "PNG":
            f.write(png16_bytes(data, photo.icc_profile, photo.exif))
        elif sixteen:
            import tifffile

            tifffile.imwrite(f, data, photometric="rgb", iccprofile=photo.icc_profile,
                             extrasamples=("unassalpha",) if alpha is not None else None)
        else:
            im = Image.fromarray(data, "RGBA" if alpha is not None else "RGB")
            kwargs: dict = {}
            if photo.icc_profile:
                kwargs["icc_profile"] = photo.icc_profile
            if photo.exif and fmt in _EXIF_FORMATS:
                kwargs["exif"] = photo.exif
            if fmt in ("JPEG", "WEBP"):
                kwargs["quality"] = quality
            im.save(f, format=fmt, **kwargs)


def save_pil(im: Image.Image, path: Path, **params) -> None:
    """``im.save(path, **params)``, atomically and durably (the format comes from the suffix)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    with atomic_write(path) as f:
        im.save(f, format=fmt, **params)


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def output_problem(path: Path) -> str | None:
    """Why ``path`` is not a whole output (None: it is), cheaply, without decoding the pixels.

    The header must parse (Pillow reads up to the image data) and the file must end where its format
    says: JPEG with its end-of-image marker, PNG with IEND, WebP and BMP at the size their header
    states, TIFF after the last strip or tile its directory points to. A write cut short fails this.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f, collect_warnings([]):  # what Pillow says of a broken file is dropped
            size = os.fstat(f.fileno()).st_size
            head = f.read(16)
            f.seek(max(0, size - 12))
            tail = f.read()
            f.seek(0)
            with Image.open(f) as im:
                fmt = im.format
                ends = _tiff_end(im) if fmt == "TIFF" else None
    except (FileNotFoundError, NotADirectoryError):  # under a file: it cannot be there either
        return "missing"
    except UnidentifiedImageError:
        return "not an image Pillow knows"
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        return f"not a readable image ({exc})"
    if fmt == "JPEG" and not tail.endswith(b"\xff\xd9"):
        return f"{size} bytes, no JPEG end marker"
    if fmt == "PNG" and tail != _PNG_END:
        return f"{size} bytes, no PNG end chunk"
    if fmt == "WEBP" and int.from_bytes(head[4:8], "little") + 8 > size:
        return f"{size} bytes of {int.from_bytes(head[4:8], 'little') + 8}"
    if fmt == "BMP" and int.from_bytes(head[2:6], "little") > size:
        return f"{size} bytes of {int.from_bytes(head[2:6], 'little')}"
    if ends is not None and ends > size:
        return f"{size} bytes of {ends}"
    return None


def _tiff_end(im: Image.Image) -> int:
    """Where a TIFF's first image ends: past its last strip or tile."""
    def values(*tags: int) -> tuple:
        value = next((im.tag_v2[t] for t in tags if t in im.tag_v2), (0,))
        return value if isinstance(value, tuple) else (value,)

    return max(o + c for o, c in zip(values(273, 324), values(279, 325)))  # Strip/Tile Offsets, ByteCounts


def png16_bytes(data: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit RGB or RGBA PNG (Pillow cannot write 16-bit colour PNGs)."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    h, w, c = data.shape
    color_type = {3: 2, 4: 6}[c]
    rows = data.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()  # filter type 0 per row
    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))]
    if icc:
        out.append(chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc)))
    if exif:
        out.append(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out += [chunk(b"IDAT", zlib.compress(raw, 6)), chunk(b"IEND", b"")]
    return b"".join(out)
