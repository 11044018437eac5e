"""What a batch is told of the colours: ``--hint``, ``--hints FILE`` and ``--reference PHOTO`` resolved
against the planned inputs before anything is written (the NumPy side of :mod:`colorize_cli.hints`).

Every problem is an :class:`~colorize_cli.errors.OptionError` that names the input and the reason: a
colour that cannot be parsed, a point outside its photo, a hints file that names a file that is not
among the inputs, a reference that cannot be read, point hints for a film.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from colorize_cli.app.plan import Job
from colorize_cli.errors import OptionError
from colorize_cli.hints import (
    Hints,
    check_inside,
    hints_from_reference,
    parse_hint,
    read_hints_file,
    read_reference_schedule,
)
from colorize_cli.io.films import is_video
from colorize_cli.io.images import read_image


def wants_hints(hint: list[str], hints_file: str | Path | None, reference: str | Path | None) -> bool:
    return bool(hint) or hints_file is not None or reference is not None


def _match(table: dict[str, Hints], jobs: list[Job], hints_file: Path) -> dict[Path, Hints]:
    """The hints file's entries by input: a key is a file name, or a path (relative to the working folder)."""
    by_input: dict[Path, Hints] = {}
    for key, hints in table.items():
        found = [j.source for j in jobs if j.source.name == key or j.source.resolve() == Path(key).resolve()]
        if not found:
            raise OptionError(f"{{hints}} {hints_file}: names {key}, which is not among the inputs")
        for source in found:
            by_input[source] = hints
    return by_input


def plan_hints(jobs: list[Job], hint: list[str], hints_file: str | Path | None,
               reference: str | Path | None) -> Callable[[Job], Hints]:
    """Each job's hints, checked: the command line's points (for every photo) and the file's for the
    inputs it names; the file's reference for an input, else ``reference`` (for every input, films too)."""
    points = [parse_hint(h) for h in hint]
    by_input = _match(read_hints_file(Path(hints_file)), jobs, Path(hints_file)) if hints_file else {}
    if reference is None:
        global_hint = Hints()
    elif Path(reference).suffix.lower() == ".txt":  # a film's references, shot by shot
        global_hint = read_reference_schedule(Path(reference))
    else:
        global_hint = hints_from_reference(Path(reference))
    table: dict[Path, Hints] = {}
    for job in jobs:
        entry = by_input.get(job.source, Hints())
        mine = points + entry.points
        if mine and is_video(job.source):
            raise OptionError(f"{job.source}: {{hint}} points are for photos; give a film its colours with {{reference}}")
        if global_hint.schedule and not is_video(job.source):
            raise OptionError(f"{job.source}: a {{reference}} file of TIME=PHOTO lines is for films; give "
                              "photos a colour photo")
        source = entry if entry.histogram is not None else global_hint
        hints = Hints(mine, histogram=source.histogram, saturation=source.saturation,
                      colourfulness=source.colourfulness, schedule=source.schedule)
        if mine:
            try:
                height, width = read_image(job.source).size
            except (OSError, ValueError):
                height = width = 0  # an unreadable photo fails later, as any would, with its own reason
            if height:
                check_inside(hints, width, height, str(job.source))
        table[job.source] = hints
    return lambda job: table.get(job.source, Hints())
