"""The official pretrained files of the perceptual metrics: fetched, verified, cached, loaded once.

:func:`fetch_pretrained` gets a file from its official URL with the one downloader,
:func:`colorize_cli.io.download.download`, into the ``pretrained/`` folder of the colorize-cli cache
(:mod:`colorize_cli.io.cache`: ``--cache-dir``, else ``$COLORIZE_CACHE``, else
``~/.cache/colorize-cli``), checks its sha256, and never fetches in offline mode (``--offline`` or
``HF_HUB_OFFLINE``). A file put into that folder by hand is used if its sha256 is right.
``COLORIZE_PRETRAINED_URL`` replaces the URLs' base (a mirror, or the tests' local server); the file
names and checksums stay the official ones. Whatever goes wrong is one :class:`WeightsUnavailable`
line that says what to do. :func:`loaded` keeps each network, once built, per device.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from colorize_cli.io.cache import CACHE_ENV, OFFLINE_WHY, cache_path, is_offline
from colorize_cli.io.download import LOGGER, DownloadError, download
from colorize_cli.io.files import sha256_of

PRETRAINED_URL_ENV = "COLORIZE_PRETRAINED_URL"


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


# ----- the downloader -----
def pretrained_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``CACHE/pretrained`` of the colorize-cli cache (``cache_dir``, else ``--cache-dir``, else
    ``$COLORIZE_CACHE``, else ``~/.cache/colorize-cli``: :func:`colorize_cli.io.cache.cache_root`)."""
    return cache_path("pretrained", cache_dir)


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
    return (f"download {spec.url} and put it at {path} (or point --cache-dir or {CACHE_ENV} at a folder whose "
            f"pretrained/ holds it)")


def fetch_pretrained(spec: PretrainedFile, *, offline: bool | None = None,
                     cache_dir: str | Path | None = None, quiet: bool = False) -> Path:
    """The verified local copy of ``spec``: from the cache, else downloaded (to ``.part``, then renamed).

    Args:
        offline: no network attempt; default ``--offline``, else ``$HF_HUB_OFFLINE``.
        cache_dir: the colorize-cli cache folder; default ``--cache-dir``, else ``$COLORIZE_CACHE``,
            else ~/.cache/colorize-cli.
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
    if is_offline(offline):
        why = f"{stale}, and {OFFLINE_WHY}" if stale else f"not in the cache {path.parent} and {OFFLINE_WHY}"
        raise WeightsUnavailable(f"{spec.filename} ({spec.what}): {why}; {_remedy(spec, path)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    if not quiet:
        LOGGER.info(f"downloading {url} to {path}")
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


def load_state_dict(spec: PretrainedFile, **fetch) -> dict[str, Tensor]:
    """The tensors of ``spec``'s file (:func:`fetch_pretrained` with ``fetch``), read without running code."""
    path = fetch_pretrained(spec, **fetch)
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    return state if isinstance(state, dict) else {}  # not a state dict: take() names what is missing


def take(state: dict[str, Tensor], module: nn.Module, path: str, prefix: str = "") -> dict[str, Tensor]:
    """The entries of ``state`` under ``prefix`` for ``module``; every key and shape must be there."""
    want = module.state_dict()
    got = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    bad = [k for k in want if k not in got or got[k].shape != want[k].shape]
    if bad:
        raise RuntimeError(f"{path}: missing or mis-shaped entries {', '.join(bad[:4])}"
                           f"{' …' if len(bad) > 4 else ''}; not the expected file")
    return {k: got[k] for k in want}


# ----- the networks, loaded once -----
_MODELS: dict[tuple[str, str], nn.Module] = {}
_LOCK = threading.Lock()


def loaded(name: str, device: str | torch.device, build: Callable[[], nn.Module]) -> nn.Module:
    """The network ``build()`` makes, on ``device``, in eval mode, frozen: built once per (name, device)
    and kept; a ``build`` that raises keeps nothing."""
    key = (name, str(torch.device(device)))
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = build().eval().requires_grad_(False).to(torch.device(device))
        return _MODELS[key]
