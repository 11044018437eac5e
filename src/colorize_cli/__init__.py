"""colorize-cli: put plausible colour into black-and-white photographs.

The public API (docs/api.md); the ``colorize`` command is a layer over it::

    from colorize_cli import Colorizer, colorize_batch

    colour = Colorizer().colorize(Image.open("grandma.jpg"))        # one photo, PIL or NumPy
    summary = colorize_batch(["album/"], output="album_colour/")    # files and folders; prints nothing
    print(summary.processed, summary.failed)

Names are imported when first used, so that ``import colorize_cli`` (and ``colorize --version``) does
not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from colorize_cli._version import __version__

# public name -> the module that defines it
_API = {
    "Colorizer": "colorize_cli.engine.colorizer",
    "load_model": "colorize_cli.engine.colorizer",
    "colorize_batch": "colorize_cli.app.batch",
    "BatchOptions": "colorize_cli.app.batch",
    "BatchError": "colorize_cli.app.batch",
    "Reporter": "colorize_cli.app.batch",
    "Summary": "colorize_cli.app.batch",
    "resolve_weights": "colorize_cli.engine.hub",
    "list_models": "colorize_cli.models",
    "Photo": "colorize_cli.io.images",
    "read_image": "colorize_cli.io.images",
}
_RENAMED = {"resolve_weights": "resolve"}

__all__ = [
    "BatchError", "BatchOptions", "Colorizer", "Photo", "Reporter", "Summary", "__version__", "colorize_batch",
    "list_models", "load_model", "read_image", "resolve_weights",
]

if TYPE_CHECKING:
    from colorize_cli.app.batch import BatchError, BatchOptions, Reporter, Summary, colorize_batch
    from colorize_cli.engine.colorizer import Colorizer, load_model
    from colorize_cli.engine.hub import resolve as resolve_weights
    from colorize_cli.io.images import Photo, read_image
    from colorize_cli.models import list_models


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'colorize_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
