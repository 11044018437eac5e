"""The Typer application of ``colorize``: the group that makes ``colorize`` the default command,
``--version``, and :func:`fail`, the one way a command ends with an error line and an exit code."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from colorize_cli._version import __version__
from colorize_cli.errors import for_command_line

DEFAULT_COMMAND = "colorize"


class _DefaultCommandGroup(TyperGroup):
    """Routes ``colorize ARGS`` to the default command unless ARGS starts with a sub-command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version", "-V"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx):
        # the default command first, then the rest in definition order
        return list(self.commands)


app = typer.Typer(
    cls=_DefaultCommandGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Put plausible colour into black-and-white photos and films.\n\n"
    "colorize PHOTO_OR_FOLDER... colorizes with the bundled default model (see 'colorize colorize --help' "
    "for its options); 'colorize film.mp4' writes film_color.mp4 with the same frames, timestamps and "
    "sound. The sub-commands below do the rest.",
)


def _version(value: bool) -> None:
    if value:
        print(f"colorize-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    show_log_lines()


class _StderrLines(logging.Handler):
    """The package's log lines (downloads, training, notes) as they are, on the stderr of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def show_log_lines() -> None:
    """Print what the package logs (the ``colorize_cli`` logger, INFO and up) on stderr: below the
    command line the package prints nothing itself."""
    logger = logging.getLogger("colorize_cli")
    if not any(isinstance(h, _StderrLines) for h in logger.handlers):
        logger.addHandler(_StderrLines())
    logger.setLevel(logging.INFO)


def fail(problem: str | BaseException, code: int = 1) -> None:
    text = for_command_line(problem) if isinstance(problem, BaseException) else problem
    print(f"error: {text}", file=sys.stderr)
    raise typer.Exit(code)


# the options every command that may download or export takes (colorize_cli.io.cache)
OfflineOption = Annotated[bool, typer.Option(
    help="Never use the network: weights and datasets come from the bundled files or the cache, and "
    "what is missing is one error line (as HF_HUB_OFFLINE=1).")]
CacheDirOption = Annotated[Path | None, typer.Option(
    help="The colorize-cli cache folder, for everything downloaded or made once: Hub weights in "
    "CACHE_DIR/hub, ONNX exports in CACHE_DIR/onnx, datasets, encoder and LPIPS/FID weights (default: "
    "$COLORIZE_CACHE, else ~/.cache/colorize-cli or $XDG_CACHE_HOME/colorize-cli; Hub weights: else the "
    "Hugging Face cache).")]


def needs_torch(command: str, extra: str = "torch") -> None:
    """Stop ``command`` with one line (exit 2) where torch, which it needs, is not installed (the command
    imports it next anyway)."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        from colorize_cli.errors import missing_torch

        fail(missing_torch(command, extra), 2)
