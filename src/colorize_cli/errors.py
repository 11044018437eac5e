"""The one-line reason of an exception, as every error line of the tool shows it (``failed: FILE: reason``,
``error: reason``)."""

from __future__ import annotations

import re


def error_line(exc: BaseException, *, with_type: bool = False) -> str:
    """The first line of what ``exc`` says: a KeyError's key without the quotes str() adds, an OSError's
    (or FFmpeg error's) reason without the errno and file name, else its message; its class name when it
    says nothing. ``with_type`` puts the class name in front (for errors of other libraries)."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(getattr(exc, "strerror", None) or exc)
    lines = text.strip().splitlines()
    if not lines:
        return exc.__class__.__name__
    return f"{exc.__class__.__name__}: {lines[0]}" if with_type else lines[0]


class OptionError(ValueError):
    """A value of an option that cannot be used. The message names options as ``{name}`` (their Python
    names: ``{batch_size}``): ``str()`` shows them so (``batch_size``), and the command line, the one
    layer that speaks in flags, shows them as its flags (``--batch-size``) with :func:`for_command_line`."""

    def __init__(self, message: str):
        self.template = message
        super().__init__(_render(message, lambda name: name))


def for_command_line(exc: BaseException) -> str:
    """:func:`error_line` of ``exc`` with the options an :class:`OptionError` names (itself, or the error
    it was raised from) written as flags."""
    cause = exc if isinstance(exc, OptionError) else exc.__cause__
    if isinstance(cause, OptionError):
        return error_line(OptionError(_render(cause.template, lambda name: "--" + name.replace("_", "-"))))
    return error_line(exc)


def _render(template: str, name_of) -> str:
    return re.sub(r"\{([a-z][a-z0-9_]*)\}", lambda m: name_of(m.group(1)), template)
