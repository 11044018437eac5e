"""The one HTTP downloader: resumable, retried, with a progress bar, digests and disk-space checks.

:func:`download` streams a URL into a ``.part`` file that the caller verifies and renames into place.
What is already in the ``.part`` file is resumed with an HTTP ``Range`` request; a dropped connection
(also one that ends before ``Content-Length``, which ``http.client`` does not report) is resumed up to
``RETRIES`` times; the free disk space is checked first. It returns the md5, sha256 and first-MiB md5
of the whole file. :mod:`colorize_cli.app.datasets` (training datasets) and :mod:`colorize_cli.engine.perceptual`
(pretrained LPIPS/FID weights) both use it. Whatever goes wrong is one :class:`DownloadError` (or the
caller's subclass of it) whose message says what to do.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from colorize_cli._version import __version__

LOGGER = logging.getLogger("colorize_cli")  # every progress and note line of the package

CHUNK = 1 << 20
HEAD_BYTES = 1 << 20  # fast.ai checks its archives by size and the md5 of their first MiB
DOWNLOAD_TIMEOUT = 60  # seconds, per connection attempt and per read
RETRIES = 3  # automatic resumes after a dropped connection, before giving up
RETRY_WAIT_S = 2.0


class DownloadError(RuntimeError):
    """A file could not be downloaded or stored; the message says what to do.

    ``reason`` is the cause alone (``HTTP 404 Not Found``, ``network error: …``, ``IncompleteRead: …``),
    for callers that word their own message.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class _Interrupted(Exception):
    """A transport failure worth a retry (the partial file is kept)."""

    def __init__(self, message: object, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or str(message)


def human_size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def log(msg: str) -> None:
    """A line about a download, to the ``colorize_cli`` logger (the command line prints it on stderr;
    in Python it is silent unless logging is configured)."""
    LOGGER.info(msg)


def _quiet(msg: str) -> None:
    pass


def download(url: str, part: Path, size: int | None, label: str, progress: bool = True, *,
             quiet: bool = False, retries: int = RETRIES, error: type[DownloadError] = DownloadError,
             mirror_env: str | None = None, docs: str | None = None) -> dict[str, str]:
    """Download ``url`` into ``part``, resuming what is there; returns its md5, sha256 and head md5.

    Args:
        size: the expected bytes, if known: a server that announces another size is refused.
        label: what the messages start with.
        progress: a rich progress bar on stderr. quiet: no log lines on stderr.
        retries: automatic resumes after a dropped connection.
        error: the class raised (a subclass of :class:`DownloadError`).
        mirror_env, docs: named in the messages (the variable that sets a mirror, where the URLs are listed).

    Raises:
        DownloadError (``error``): HTTP errors, disk full, or a transport failure that ``retries``
        resumes did not get past (the partial file is kept, so the next call resumes).
    """
    say = _quiet if quiet else log
    for attempt in range(retries + 1):
        try:
            return _download_once(url, part, size, label, progress, say, error, docs)
        except _Interrupted as exc:
            have = part.stat().st_size if part.exists() else 0
            kept = (f"; the {human_size(have)} received are kept in {part} and the next run resumes from "
                    "there" if have else "")
            if attempt == retries:
                mirror = f" (or ${mirror_env})" if mirror_env else ""
                raise error(f"{label}: cannot download {url} ({exc}); check the network connection{mirror} "
                            f"and run the command again{kept}", exc.reason) from None
            wait = RETRY_WAIT_S * (attempt + 1)
            say(f"{label}: download interrupted ({exc}); trying again in {wait:.0f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


class _Digests:
    def __init__(self) -> None:
        self.md5, self.sha256, self.head = hashlib.md5(), hashlib.sha256(), bytearray()

    def update(self, chunk: bytes) -> None:
        self.md5.update(chunk)
        self.sha256.update(chunk)
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]

    def update_from(self, path: Path) -> None:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                self.update(chunk)

    def result(self) -> dict[str, str]:
        return {"md5": self.md5.hexdigest(), "sha256": self.sha256.hexdigest(),
                "head_md5": hashlib.md5(bytes(self.head)).hexdigest()}


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total) of ``bytes A-B/T`` or ``bytes */T``."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    first = span.partition("-")[0]
    return (int(first) if first.isdigit() else None), (int(total) if total.isdigit() else None)


def _download_once(url: str, part: Path, size: int | None, label: str, progress: bool,
                   say: Callable[[str], None], error: type[DownloadError],
                   docs: str | None) -> dict[str, str]:
    start = part.stat().st_size if part.exists() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    headers = {"User-Agent": f"colorize-cli/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        request = urllib.request.Request(url, headers=headers)
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # nothing after what we have: complete already, or not this file
            if _content_range(exc.headers.get("Content-Range"))[1] == start:
                digests = _Digests()
                digests.update_from(part)
                return digests.result()
            part.unlink()
            raise _Interrupted("the partial download does not match the server's file; "
                               "starting again") from exc
        listed = f"; {docs} lists the official URLs" if docs else ""
        hint = f"the file has moved, or the mirror lacks it{listed}" if exc.code == 404 else "try again later"
        raise error(f"{label}: {url} answered HTTP {exc.code} {exc.reason}; {hint}",
                    f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        described = f"{exc.__class__.__name__}: {exc}"
        reason = f"network error: {exc.reason}" if isinstance(exc, urllib.error.URLError) else described
        raise _Interrupted(getattr(exc, "reason", None) or described, reason) from exc
    with response:
        total = None
        if response.status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != start:
                part.unlink()
                raise _Interrupted(f"the server resumed at byte {first}, not {start}; starting again")
        else:
            if start:
                say(f"{label}: the server does not resume downloads; starting again from 0")
            start = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if size is not None and total is not None and total != size:
            see = f" ({docs})" if docs else ""
            raise error(f"{label}: {url} is {total} bytes, not the {size} its publisher gives; the file has "
                        f"changed on the server, so it cannot pass verification{see}")
        total = total or size
        check_space(part.parent, (total or 0) - start, label, error)
        digests = _Digests()
        if start:
            digests.update_from(part)
            say(f"{label}: resuming {url} at {human_size(start)}")
        else:
            say(f"{label}: downloading {url}" + (f" ({human_size(total)})" if total else ""))
        with (open(part, "ab" if start else "wb") as out,
              progress_bar(part.name.removesuffix(".part"), total, start, progress) as advance):
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(f"{exc.__class__.__name__}: {exc}") from exc
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise disk_error(exc, part, label, error) from exc
                digests.update(chunk)
                advance(len(chunk))
    received = part.stat().st_size
    if total is not None and received < total:  # http.client ends a short body without an error
        raise _Interrupted(f"the connection closed after {human_size(received)} of {human_size(total)}",
                           f"IncompleteRead: the connection dropped with {total - received} bytes "
                           "still to come")
    return digests.result()


@contextmanager
def progress_bar(description: str, total: int | None, completed: int,
                 enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr: bytes, speed, time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as bar:
        task = bar.add_task(description, total=total, completed=completed)
        yield lambda n: bar.advance(task, n)


def check_space(folder: Path, needed: int, label: str, error: type[DownloadError] = DownloadError) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise error(f"{label}: not enough disk space in {folder}: {human_size(needed)} needed, "
                    f"{human_size(free)} free; free some space, or set COLORIZE_CACHE to a folder on a "
                    "larger disk")


def disk_error(exc: OSError, path: Path, label: str,
               error: type[DownloadError] = DownloadError) -> DownloadError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return error(f"{label}: the disk is full while writing {path}; free some space (or set "
                     "COLORIZE_CACHE to a folder on a larger disk) and run the command again")
    return error(f"{label}: cannot write {path} ({exc.strerror or exc})")
