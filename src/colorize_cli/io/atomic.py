"""Atomic, durable file writes: the one way colorize-cli writes a file a user keeps.

:func:`atomic_write` hands out a temporary file in the target's folder, and only when everything
was written, flushed and fsync'd does it rename the file to its final name (then fsyncs the
folder, so the rename survives a power cut as databases make theirs survive). Any failure, or an
exception of the caller, removes the temporary file: nothing ever appears under the final name but
a whole file.

Writes go through Python's buffered writer, never through a raw descriptor handed to C code:
Pillow's encoders (``encode_to_file``) and numpy's ``tofile`` check only for ``write() < 0`` and
ignore a short write, which is what a nearly full disk or a file-size limit returns first. That
left truncated images under their final names (issue 14). Python's writer retries a short write
and raises the error (ENOSPC, EFBIG) that the retry gets.

A temporary file is held under an exclusive ``flock`` while it is written, so a later run can tell
the leftovers of a killed process (unlocked) from the file another running process is writing
(locked): :func:`remove_stale_parts` deletes only the former.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

PART_SUFFIX = ".part"
_PART_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.part")  # .{name}.{mkstemp's 8 characters}.part
_UMASK = os.umask(0o022)  # read the process umask (set it back at once): outputs honour it
os.umask(_UMASK)


class AtomicFile:
    """The file being written: write/seek/tell/flush, and ``temp``, its temporary path.

    It has no usable ``fileno()`` on purpose (see the module docstring): libraries that would write
    to the descriptor from C fall back to calling :meth:`write`.
    """

    def __init__(self, f, temp: Path):
        self._f = f
        self.temp = temp
        self.mode = f.mode

    def write(self, data):
        return self._f.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")  # what Pillow and numpy expect of an in-memory stream

    @property
    def closed(self) -> bool:
        return self._f.closed


@contextlib.contextmanager
def atomic_write(path: Path, text: bool = False) -> Iterator[AtomicFile]:
    """Write ``path`` atomically and durably: ``with atomic_write(p) as f: f.write(...)``.

    The folder is created if needed. ``text=True`` opens the file for UTF-8 text (newlines are
    written as given). Raises what the writes, the fsync or the rename raise, after removing the
    temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = _locked_temp(path)
    try:
        with open(fd, "w" if text else "wb", **({"encoding": "utf-8", "newline": ""} if text else {})) as f:
            yield AtomicFile(f, temp)
            f.flush()
            os.fsync(fd)
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; an output is an ordinary file
            os.replace(temp, path)  # still locked: a concurrent cleaner never removes a file being renamed
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_folder(path.parent)


def _locked_temp(path: Path) -> tuple[int, Path]:
    """A new temporary file beside ``path``, under our exclusive lock until it is renamed or removed.

    Between creating the file and locking it, a cleaner (:func:`remove_stale_parts` of another
    process) may take it for a killed run's leftover and delete it; then the name no longer leads
    to our file, and we take another one.
    """
    while True:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PART_SUFFIX, dir=path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _names_our_file(name, fd):
            return fd, Path(name)
        os.close(fd)


def _names_our_file(name: str, fd: int) -> bool:
    """Whether ``name`` still leads to the file open as ``fd`` (not removed, nor replaced)."""
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def write_bytes(path: Path, data: bytes) -> None:
    """``path.write_bytes(data)``, atomically and durably."""
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: Path, text: str) -> None:
    """``path.write_text(text)`` (UTF-8), atomically and durably."""
    with atomic_write(path, text=True) as f:
        f.write(text)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself has happened
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on the file ``path`` (created if needed) for the ``with`` block;
    yields False, at once, when another process holds it. Whoever removes ``path`` (with the folder
    it is in) must hold the lock: a process that locked a name since removed tries again."""
    path = Path(path)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        if _names_our_file(str(path), fd):
            break
        os.close(fd)  # removed by its holder between our open and our lock
    try:
        yield True
    finally:
        os.close(fd)


def remove_stale_parts(folder: Path) -> int:
    """Delete the temporary files that killed runs left in ``folder``; returns how many.

    A temporary file that another process is writing is locked and stays. An unlocked one is a
    killed run's, whatever its size (a run killed before its first flush leaves an empty one), or
    one that a writer has created and not locked yet: that writer sees its name gone once it holds
    the lock and takes another (:func:`_locked_temp`).
    """
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.endswith(PART_SUFFIX) and _PART_NAME.fullmatch(entry.name)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass  # locked by a live writer, or already renamed or removed by it
        finally:
            os.close(fd)
    return removed
