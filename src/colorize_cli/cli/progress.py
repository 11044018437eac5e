"""How a batch looks on a terminal: its lines on stderr, rich progress bars for photos (images/s, time
left) and for each film (frames, frames/s), tracebacks with ``--debug``. A
:class:`~colorize_cli.app.batch.Reporter` of the command line; the batch itself prints nothing."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from colorize_cli.app.batch import Reporter


class ConsoleReporter(Reporter):
    """Lines to stderr as they happen; progress bars only on a terminal and without ``quiet``."""

    def __init__(self, quiet: bool = False, debug: bool = False):
        self.console = Console(stderr=True)
        self.show = self.console.is_terminal and not quiet
        self.debug = debug

    def line(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def failure(self, exc: BaseException) -> None:
        if self.debug:
            traceback.print_exception(exc)

    @contextlib.contextmanager
    def photos(self, total: int) -> Iterator[Callable[[], None]]:
        progress = Progress(TextColumn("colorize"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                            console=self.console, disable=not self.show)
        started = time.perf_counter()
        with progress:
            task = progress.add_task("colorize", total=total, rate="")

            def advance() -> None:
                progress.advance(task)
                done = progress.tasks[0].completed
                progress.update(task, rate=f"{done / (time.perf_counter() - started):.1f} img/s")

            yield advance

    @contextlib.contextmanager
    def films(self) -> Iterator[Callable[[str], Callable[[int | None, int], None]]]:
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                            TextColumn("{task.fields[fps]}"), TimeRemainingColumn(), console=self.console,
                            disable=not self.show)
        with progress:
            yield lambda name: _FilmTask(progress, name)


class _FilmTask:
    """``on_frames`` of one film: a task of the films' progress display."""

    def __init__(self, progress: Progress, name: str):
        self.progress, self.name, self.task, self.done, self.started = progress, name, None, 0, time.perf_counter()

    def __call__(self, total: int | None, done: int) -> None:
        if total is not None:
            self.task = self.progress.add_task(self.name, total=total or None, completed=done, fps="")
            self.started = time.perf_counter()
            return
        self.done += done
        fps = self.done / max(1e-9, time.perf_counter() - self.started)
        self.progress.update(self.task, advance=done, fps=f"{fps:.1f} fps")
