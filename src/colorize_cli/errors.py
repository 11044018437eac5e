"""What an exception says, as the tool's lines show it (``failed: FILE: reason``, ``error: reason``), and
:class:`OptionError`, whose message names options so that only the command line writes them as flags."""

from __future__ import annotations

import re


def error_text(exc: BaseException) -> str:
    """All that ``exc`` says (a KeyError's key without the quotes str() adds); its class name when it
    says nothing. What an ``error:`` line of the command line shows."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return text.strip() or exc.__class__.__name__


def error_line(exc: BaseException, *, with_type: bool = False, reason_only: bool = False) -> str:
    """The first line of :func:`error_text`, to fit inside a longer line. ``reason_only``: an OSError's
    (or FFmpeg error's) reason without the errno and file name that str() adds (where the line names
    the file already); ``with_type``: the class name in front (for errors of other libraries)."""
    strerror = getattr(exc, "strerror", None) if reason_only else None
    first = (str(strerror).strip() if strerror else error_text(exc)).splitlines()[0]
    return f"{exc.__class__.__name__}: {first}" if with_type else first


class OptionError(ValueError):
    """A value of an option that cannot be used. The message names options as ``{name}`` (their Python
    names: ``{batch_size}``): ``str()`` shows them so (``batch_size``), and the command line, the one
    layer that speaks in flags, shows them as its flags (``--batch-size``) with :func:`for_command_line`."""

    def __init__(self, message: str):
        self.template = message
        super().__init__(_render(message, lambda name: name))


def for_command_line(exc: BaseException) -> str:
    """:func:`error_text` of ``exc``, with the options an :class:`OptionError` names (``exc`` itself,
    or the error it was raised from) written as flags."""
    cause = exc if isinstance(exc, OptionError) else exc.__cause__
    if isinstance(cause, OptionError):
        return _render(cause.template, lambda name: "--" + name.replace("_", "-")).strip()
    return error_text(exc)


def _render(template: str, name_of) -> str:
    return re.sub(r"\{([a-z][a-z0-9_]*)\}", lambda m: name_of(m.group(1)), template)


class MissingExtraError(RuntimeError):
    """A feature that needs an optional dependency which is not installed; the message says which extra
    of colorize-cli installs it."""


def missing_torch(what: str, extra: str = "torch") -> MissingExtraError:
    """The one-line error for ``what`` needing torch where it is not installed."""
    return MissingExtraError(f"{what} needs torch, which is not installed: pip install 'colorize-cli[{extra}]'")
