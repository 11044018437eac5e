"""The one cache folder and the one offline switch of colorize-cli.

Everything colorize-cli downloads or makes once lives in one folder, a subfolder per kind:

    hub/         weights from the Hugging Face Hub (colorize_cli.engine.hub)
    onnx/        ONNX exports made on demand for ``--backend onnx`` (colorize_cli.engine.export)
    datasets/    training datasets (colorize_cli.app.datasets)
    encoders/    pretrained encoder weights put there by hand (colorize_cli.models.encoders)
    pretrained/  LPIPS and FID weights (colorize_cli.engine.perceptual)

That folder is ``--cache-dir`` when given (:func:`cache_options`, which the CLI sets through
``colorize_cli.engine.hub.hub_options``), else ``$COLORIZE_CACHE``, else
``$XDG_CACHE_HOME/colorize-cli``, by default ``~/.cache/colorize-cli``. The Hub's weights alone go to
the Hugging Face cache when neither ``--cache-dir`` nor ``$COLORIZE_CACHE`` is set (:func:`chosen_root`
says whether one is).

Offline mode (``--offline``, else ``$HF_HUB_OFFLINE``) is read by :func:`is_offline`, which every
fetcher asks before it would use the network: it then uses what is cached, or says in one line
what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path

CACHE_ENV = "COLORIZE_CACHE"
OFFLINE_ENV = "HF_HUB_OFFLINE"
APP_FOLDER = "colorize-cli"
OFFLINE_WHY = f"offline mode is on (--offline or {OFFLINE_ENV})"  # for the fetchers' messages
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class CacheSettings:
    cache_dir: Path | None = None  # --cache-dir; None: $COLORIZE_CACHE, else the default folder
    offline: bool | None = None  # --offline; None: $HF_HUB_OFFLINE


_SETTINGS: ContextVar[CacheSettings | None] = ContextVar("colorize_cache_settings", default=None)


def current_settings() -> CacheSettings:
    """The settings of the innermost :func:`cache_options` block (none set outside one)."""
    return _SETTINGS.get() or CacheSettings()


@contextmanager
def cache_options(*, cache_dir: str | Path | None = None, offline: bool | None = None) -> Iterator[CacheSettings]:
    """``--cache-dir`` and ``--offline`` for every fetch inside the ``with`` block (None keeps the current one)."""
    changes = {"cache_dir": Path(cache_dir) if cache_dir else None, "offline": offline}
    token = _SETTINGS.set(replace(current_settings(), **{k: v for k, v in changes.items() if v is not None}))
    try:
        yield current_settings()
    finally:
        _SETTINGS.reset(token)


def chosen_root(cache_dir: str | Path | None = None) -> Path | None:
    """The cache folder the user chose: ``cache_dir``, else ``--cache-dir`` (:func:`cache_options`), else
    ``$COLORIZE_CACHE``; None when none is."""
    root = cache_dir or current_settings().cache_dir or os.environ.get(CACHE_ENV, "").strip()
    return Path(root).expanduser() if root else None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """:func:`chosen_root`, else ``$XDG_CACHE_HOME/colorize-cli``, else ``~/.cache/colorize-cli``."""
    chosen = chosen_root(cache_dir)
    if chosen is not None:
        return chosen
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / APP_FOLDER


def cache_path(kind: str, cache_dir: str | Path | None = None) -> Path:
    """The folder of one kind of cached file: ``hub``, ``onnx``, ``datasets``, ``encoders``, ``pretrained``."""
    return cache_root(cache_dir) / kind


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else ``--offline`` (:func:`cache_options`), else whether ``$HF_HUB_OFFLINE`` is on."""
    if offline is None:
        offline = current_settings().offline
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE
