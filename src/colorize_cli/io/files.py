"""Files: which suffixes are photos, walking a folder tree (links followed, loops and broken links
reported), and hashing. One walker serves the colorize batch, evaluation and training data."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

# the photo formats Pillow reads (icons, textures, animations and vector formats are left out)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif",
                  ".jp2", ".j2k", ".j2c", ".jpf", ".jpx", ".mpo", ".avif", ".ppm", ".pgm", ".pbm", ".pnm",
                  ".tga", ".pcx", ".sgi", ".psd", ".qoi"}


def walk(folder: Path, problems: list[tuple[Path, str]], _above: frozenset = frozenset()) -> list[Path]:
    """Every file under ``folder``, following symbolic links to folders; what cannot be walked is
    appended to ``problems`` as (path, reason): an unreadable folder, a broken symbolic link, a
    symbolic link loop (a link to a folder above it, or a link that resolves to itself)."""
    try:
        st = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append((folder, walk_reason(exc, folder) + " (folder not read)"))
        return []
    above = _above | {(st.st_dev, st.st_ino)}
    files: list[Path] = []
    for entry in entries:
        path = Path(entry.path)
        try:
            if entry.is_dir():
                target = path.stat()
                if entry.is_symlink() and (target.st_dev, target.st_ino) in above:
                    reason = f"symbolic link loop (points to {os.readlink(path)}, a folder above it)"
                    problems.append((path, reason))
                else:
                    files += walk(path, problems, above)
            elif entry.is_file():
                files.append(path)
            elif entry.is_symlink():
                path.stat()  # raises: the link is broken or loops
        except OSError as exc:
            problems.append((path, walk_reason(exc, path)))
    return files


def walk_reason(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ELOOP:
        return f"symbolic link loop (points to {os.readlink(path)})" if path.is_symlink() else "symbolic link loop"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"broken symbolic link (points to {os.readlink(path)}, which does not exist)"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, by suffix, through :func:`walk`), sorted for reproducibility;
    what cannot be walked is left out."""
    return sorted(p for p in walk(root, []) if p.suffix.lower() in IMAGE_SUFFIXES)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
