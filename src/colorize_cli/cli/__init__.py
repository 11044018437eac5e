"""The ``colorize`` command line (:mod:`colorize_cli.cli.main`): the only layer that speaks in flags."""

from colorize_cli.cli.main import app, main

__all__ = ["app", "main"]
