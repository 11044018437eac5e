"""Colorize many files: plan them (:mod:`colorize_cli.app.plan`), run, and return a :class:`Summary`.

Decoding and encoding run in threads beside the network (PIL, NumPy and the network's runtime release the GIL), photos
that share a working shape are batched, and every output is written atomically. Films
(:mod:`colorize_cli.app.films`) are colorized after the photos, one at a time. Nothing is printed:
what a run has to say (``failed: FILE: reason``, warnings, progress) goes to a :class:`Reporter`;
the command line's prints it and turns the summary into an exit code.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from colorize_cli.app.films import FilmOptions, colorize_film
from colorize_cli.app.guidance import plan_hints, wants_hints
from colorize_cli.app.plan import Job, plan_jobs
from colorize_cli.color import denormalize_l, saturate
from colorize_cli.engine.colorizer import Colorizer
from colorize_cli.engine.weights import HINT_MODEL
from colorize_cli.errors import OptionError, error_text
from colorize_cli.hints import Hints, hint_inputs
from colorize_cli.io.atomic import remove_stale_parts
from colorize_cli.io.films import VideoError, film_problem, is_video
from colorize_cli.io.images import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    output_problem,
    pillow_warnings_as_notes,
    read_image,
    set_max_pixels,
    write_image,
)


class BatchError(ValueError):
    """The batch cannot start (no such input, an unknown model, a bad option); nothing was written."""


class Reporter:
    """What a running batch has to say. This one shows nothing (the lines are kept in
    :attr:`Summary.messages`); the command line's subclass prints them and draws progress bars."""

    def line(self, text: str) -> None:
        """One line: ``failed: FILE: reason``, ``warning: FILE: ...``, ``redoing:``, ``resumed:``,
        ``skipped:``, ``note:`` or ``interrupted:``."""

    def failure(self, exc: BaseException) -> None:
        """The exception behind the ``failed:`` line just reported (the command line's ``--debug``)."""

    @contextlib.contextmanager
    def photos(self, total: int) -> Iterator[Callable[[], None]]:
        """Around the photos of a batch; yields the function called once per photo finished."""
        yield lambda: None

    @contextlib.contextmanager
    def films(self) -> Iterator[Callable[[str], Callable[[int | None, int], None]]]:
        """Around the films of a batch; yields, for a film's name, its ``on_frames(total, done)``:
        called once with the total (``done`` frames resumed), then with ``None`` and each run of frames done."""
        yield lambda name: lambda total, done: None


@dataclass
class Summary:
    processed: int = 0
    colored_inputs: int = 0  # inputs that already had colour and were colorized from their luminance
    skipped_color: int = 0  # ... or left alone with --skip-color
    skipped_existing: int = 0
    skipped_busy: int = 0  # films another colorize process was writing
    skipped_not_image: int = 0
    skipped_own_outputs: int = 0  # files named like our outputs where our outputs go
    videos: int = 0  # of the processed inputs, films
    frames: int = 0  # frames in the films written
    frames_resumed: int = 0  # of them, from segments an interrupted run had finished
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    shard: tuple[int, int] = (1, 1)
    planned: int = 0  # images planned in this shard (done before or not)
    messages: list[str] = field(default_factory=list)  # every line the run reported (not in as_dict)

    @property
    def ok(self) -> bool:
        """Every file planned was colorized or skipped as asked, and the run was not interrupted."""
        return not self.failed and not self.interrupted

    def as_dict(self) -> dict:
        return {"shard": {"index": self.shard[0], "count": self.shard[1], "images": self.planned},
                "processed": self.processed, "colored_inputs": self.colored_inputs,
                "skipped_color": self.skipped_color, "skipped_existing": self.skipped_existing,
                "skipped_busy": self.skipped_busy,
                "skipped_not_image": self.skipped_not_image, "skipped_own_outputs": self.skipped_own_outputs,
                "videos": self.videos, "frames": self.frames, "frames_resumed": self.frames_resumed,
                "failed": [{"file": f, "reason": r} for f, r in self.failed],
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted}

    def line(self) -> str:
        parts = [f"{self.processed} colorized"]
        if self.videos:
            parts.append(f"{self.videos} of them film{'s' * (self.videos > 1)} ({self.frames} frames)")
        if self.colored_inputs:
            parts.append(f"{self.colored_inputs} of them already in colour")
        for n, what in ((self.skipped_existing, "already done"), (self.skipped_color, "in colour, left alone"),
                        (self.skipped_busy, "being written by another process"),
                        (self.skipped_not_image, "not images"),
                        (self.skipped_own_outputs, "earlier outputs (not colorized again)")):
            if n:
                parts.append(f"{n} {what}")
        parts.append(f"{len(self.failed)} failed")
        shard = f"shard {self.shard[0]}/{self.shard[1]} ({self.planned} images): " if self.shard[1] > 1 else ""
        return f"done: {shard}{', '.join(parts)} ({self.seconds:.1f} s)"


@dataclass
class BatchOptions:
    """How :func:`colorize_batch` colorizes (the command line's options of the same names)."""

    model: str = "default"
    output: Path | None = None
    size: int | None = None
    suffix: str = "_color"
    fmt: str = "same"
    quality: int = 95
    overwrite: bool = False
    skip_color: bool = False
    device: str = "cpu"
    half: bool = False
    backend: str = "auto"  # ONNX Runtime on a CPU (Colorizer)
    batch_size: int = 4
    max_pixels: int | None = None
    samples: int = 1  # colorizations per photo, from latent codes sampled with ``seed`` (a vae)
    seed: int | None = None  # sample the latent code(s) from this seed; None and samples 1: the zero code
    shard: tuple[int, int] = (1, 1)  # (I, N): colorize shard I of N (plan.shard_of)
    codec: str | None = None  # films: FFmpeg encoder (default H.264, VP9 for .webm)
    crf: int | None = None  # films: constant quality of the encoder
    stabilize: bool = True  # films: temporally smoothed chroma
    segment_seconds: float = 10.0  # films: resumable segments of this length
    hint: list[str] = field(default_factory=list)  # X,Y=COLOR points for every photo (colorize_cli.hints)
    hints_file: Path | None = None  # JSON or CSV of points per input file
    reference: Path | None = None  # a colour photo whose colours are the global hint
    saturation: float = 1.0  # scale of the predicted chroma, within the gamut (color.saturate)

    def __post_init__(self) -> None:
        if self.output is not None:
            self.output = Path(self.output)  # a str from Python callers


def colorize_batch(inputs: list, reporter: Reporter | None = None, **options) -> Summary:
    """Colorize ``inputs`` (files, folders, glob patterns) and return what happened. Options:
    :class:`BatchOptions`. A file that fails is a ``(file, reason)`` of :attr:`Summary.failed` and the
    batch goes on; Ctrl-C ends it with :attr:`Summary.interrupted` set and every finished output kept.
    Raises :class:`BatchError` before anything is written when the batch cannot start."""
    opts = BatchOptions(**options)
    reporter = reporter or Reporter()
    if not opts.suffix and opts.output is None:
        usage = OptionError("{suffix} must not be empty without {output} (the input would be overwritten)")
        raise BatchError(str(usage)) from usage
    plan = plan_jobs([str(i) for i in inputs], opts.output, opts.suffix, opts.fmt, opts.samples, opts.shard)
    if plan.missing:
        raise BatchError(f"no such file or folder: {', '.join(plan.missing)}")
    if opts.saturation < 0:
        usage = OptionError(f"{{saturation}} {opts.saturation:g}: use 0 (gray) or more (1: as predicted)")
        raise BatchError(str(usage)) from usage
    hinted = wants_hints(opts.hint, opts.hints_file, opts.reference)
    try:
        hints_for = plan_hints(plan.jobs, opts.hint, opts.hints_file, opts.reference) if hinted else None
        model = HINT_MODEL if hinted and opts.model == "default" else opts.model  # a model not named: the hint model
        colorizer = Colorizer(model, device=opts.device, size=opts.size, half=opts.half, backend=opts.backend)
        if hinted and not colorizer.hint_bins:
            raise OptionError(f"{{model}} {opts.model}: takes no colour hints; use {{model}} {HINT_MODEL}")
        latents = None
        if opts.samples > 1 or opts.seed is not None:
            latents = colorizer.sample_latents(opts.samples, 0 if opts.seed is None else opts.seed)
    except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
        raise BatchError(error_text(exc)) from exc
    set_max_pixels(DEFAULT_MAX_PIXELS if opts.max_pixels is None else opts.max_pixels)
    summary = Summary(skipped_not_image=plan.not_images, skipped_own_outputs=plan.own_outputs,
                      shard=opts.shard, planned=len(plan.jobs))

    def say(text: str) -> None:
        summary.messages.append(text)
        reporter.line(text)

    def fail(source, reason: str) -> None:
        summary.failed.append((str(source), reason))
        say(f"failed: {source}: {reason}")

    for path, reason in plan.problems:
        fail(path, reason)
    todo, seen = [], {}
    for job in plan.jobs:
        clash = next((t for t in job.targets if t in seen), None)
        if any(t.resolve() == job.source.resolve() for t in job.targets):
            fail(job.source, "the output would overwrite the input (choose a --suffix)")
        elif clash is not None:
            fail(job.source, f"output {clash} would collide with {seen[clash]}'s")
        elif not opts.overwrite and _outputs_done(job, say):
            summary.skipped_existing += 1
        else:
            seen.update((t, job.source) for t in job.targets)
            todo.append(job)
    for folder in sorted({t.parent for job in plan.jobs for t in job.targets}):
        if removed := remove_stale_parts(folder):
            say(f"note: {folder}: removed {removed} temporary file(s) left by an interrupted run")
    t0 = time.perf_counter()
    runner = _Runner(colorizer, opts, summary, say, reporter, latents, hints_for)
    try:
        with pillow_warnings_as_notes():
            runner.run([j for j in todo if not is_video(j.source)])
            runner.run_films([j for j in todo if is_video(j.source)])
    except KeyboardInterrupt:
        summary.interrupted = True
        say("interrupted: finished outputs are kept, none is half-written; run the same command to resume")
    summary.seconds = time.perf_counter() - t0
    return summary


def _outputs_done(job: Job, err=None) -> bool:
    """True if every output of ``job`` is there and whole; an output that is there but not whole (a
    write cut short by an older version, another program) is named through ``err`` and redone."""
    done = True
    for target in job.targets:
        film = is_video(target)
        problem = film_problem(target, job.source) if film else output_problem(target)
        if problem is not None and problem != "missing" and err is not None:
            err(f"redoing: {target}: not a complete {'film' if film else 'image'} ({problem})")
        done = done and problem is None
    return done


class _Runner:
    """Read ahead in threads, batch photos by working shape, finish and write in two threads (the
    full-resolution colour conversion is the longest step: two photos at a time keep both cores busy)."""

    def __init__(self, colorizer, opts: BatchOptions, summary: Summary, say: Callable[[str], None],
                 reporter: Reporter, latents=None, hints_for: Callable[[Job], Hints] | None = None):
        self.c, self.opts, self.summary, self.say, self.reporter = colorizer, opts, summary, say, reporter
        self.latents = latents  # (samples, latent_dim): code k makes output k of every photo; None: z = 0
        self.hints_for = hints_for  # each job's colour hints, for the hint model; None: no hints
        self._advance: Callable[[], None] = lambda: None  # the reporter's, while photos run
        # the writer threads count their own results: a file renamed into place is counted even when
        # Ctrl-C interrupts the main thread while it waits for that write
        self.lock = threading.RLock()

    def _fail(self, job: Job, exc: BaseException) -> None:
        with self.lock:
            self._report_failure(job, exc)

    def _report_failure(self, job: Job, exc: BaseException) -> None:
        if isinstance(exc, (ImageReadError, VideoError)):
            reason = str(exc)
        elif isinstance(exc, PermissionError):
            reason = f"permission denied ({exc.filename or job.target})"
        elif isinstance(exc, OSError):
            reason = f"{exc.strerror or exc} ({exc.filename or job.target})"
        else:
            reason = f"{exc.__class__.__name__}: {exc}"
        self.summary.failed.append((str(job.source), reason))
        self.say(f"failed: {job.source}: {reason}")
        self.reporter.failure(exc)
        self._advance()

    def _write(self, job: Job, photo, abs_small: list) -> None:
        """Finish and write one job's outputs, then count it (in the writer thread)."""

        try:
            for target, ab_small in zip(job.targets, abs_small):
                if self.opts.overwrite or output_problem(target) is not None:  # whole samples are kept
                    write_image(target, self.c.finish(photo, ab_small), photo, quality=self.opts.quality)
        except Exception as exc:  # noqa: BLE001 - any failure of one file is reported, the batch goes on
            self._fail(job, exc)
            return
        with self.lock:
            self.summary.processed += 1
            self.summary.colored_inputs += photo.is_color  # "N colorized, M of them already in colour"
            self._advance()

    def run(self, jobs: list[Job]) -> None:
        window = max(2, 2 * self.opts.batch_size)
        if not jobs:
            return
        with self.reporter.photos(len(jobs)) as self._advance, \
                ThreadPoolExecutor(2, thread_name_prefix="read") as readers, \
                ThreadPoolExecutor(2, thread_name_prefix="write") as writer:
            reads: deque[tuple[Job, Future]] = deque()
            writes: deque[tuple[Job, Future]] = deque()
            groups: dict[tuple[int, int], list] = {}
            pending = iter(jobs)
            try:
                while True:
                    while len(reads) < window and (job := next(pending, None)) is not None:
                        if not self.opts.overwrite and _outputs_done(job):  # another process did it meanwhile
                            self.summary.skipped_existing += 1
                            self._advance()
                            continue
                        reads.append((job, readers.submit(read_image, job.source)))
                    if not reads:
                        break
                    job, fut = reads.popleft()
                    try:
                        photo = fut.result()
                    except Exception as exc:  # noqa: BLE001 - any failure of one file is reported, the batch goes on
                        self._fail(job, exc)
                        continue
                    for note in photo.notes:
                        self.say(f"warning: {job.source}: {note}")
                    if photo.is_color and self.opts.skip_color:
                        self.summary.skipped_color += 1
                        self._advance()
                        continue
                    group = groups.setdefault(self.c.working_shape(photo), [])
                    group.append((job, photo))
                    if len(group) >= self.opts.batch_size or sum(map(len, groups.values())) >= window:
                        self._flush(groups, writer, writes)
                    self._drain(writes, limit=window)
                self._flush(groups, writer, writes)
                self._drain(writes, limit=0)
            except BaseException:
                for _, f in list(reads) + list(writes):
                    f.cancel()
                # writes already running finish (they are atomic either way) and count themselves
                # before the executors' exit lets the summary be printed
                raise

    def _flush(self, groups: dict, writer: ThreadPoolExecutor, writes: deque) -> None:
        for shape in list(groups):
            items = groups.pop(shape)
            for start in range(0, len(items), self.opts.batch_size):
                chunk = items[start:start + self.opts.batch_size]
                try:
                    l_norm = np.concatenate([self.c.working_input(p) for _, p in chunk])
                    hints = None if self.hints_for is None else hint_inputs(
                        [self.hints_for(job) for job, _ in chunk], [p.size for _, p in chunk], shape,
                        self.c.hint_bins)
                    if self.latents is None:
                        abs_ = [self.c.predict(l_norm, hints=hints)]
                    else:
                        abs_ = [self.c.predict(l_norm, np.broadcast_to(z, (len(chunk), len(z)))) for z in self.latents]
                    if self.opts.saturation != 1:
                        lum = denormalize_l(l_norm[:, 0])
                        abs_ = [np.stack([saturate(ab[i], lum[i], self.opts.saturation) for i in range(len(ab))])
                                for ab in abs_]
                except Exception as exc:  # noqa: BLE001
                    for job, _ in chunk:
                        self._fail(job, exc)
                    continue
                for i, (job, photo) in enumerate(chunk):
                    writes.append((job, writer.submit(self._write, job, photo, [ab[i] for ab in abs_])))

    def _drain(self, writes: deque, limit: int) -> None:
        """Wait until at most ``limit`` writes are pending (each counts its own result)."""
        while len(writes) > limit or (writes and writes[0][1].done()):
            writes[0][1].result()  # never raises: _write reports its own failure
            writes.popleft()


    def run_films(self, jobs: list[Job]) -> None:
        """Colorize films one after the other (each one decodes, predicts and encodes in parallel)."""
        self._advance = lambda: None  # a failed film is no step of the photos' progress (it has ended)
        if not jobs:
            return
        o = self.opts
        options = FilmOptions(codec=o.codec, crf=o.crf, stabilize=o.stabilize, segment_seconds=o.segment_seconds,
                              batch_size=o.batch_size, overwrite=o.overwrite, skip_color=o.skip_color,
                              saturation=o.saturation)
        if self.latents is not None:
            self.say("warning: --samples and --seed apply to photos; films get the model's default colorization")
        with self.reporter.films() as on_frames:
            for job in jobs:
                try:
                    mine = options if self.hints_for is None else replace(options, hints=self.hints_for(job))
                    result = colorize_film(self.c, job.source, job.target, mine, on_frames(job.source.name))
                except Exception as exc:  # noqa: BLE001 - any failure of one film is reported, the batch goes on
                    self._fail(job, exc)
                    continue
                for note in result.notes:
                    self.say(f"warning: {job.source}: {note}")
                if result.busy:
                    self.say(f"skipped: {job.source}: another colorize process is writing it")
                    self.summary.skipped_busy += 1
                    continue
                if result.done_meanwhile:
                    self.summary.skipped_existing += 1
                    continue
                if result.skipped:
                    self.summary.skipped_color += 1
                    continue
                self.summary.colored_inputs += result.in_colour
                if result.resumed_frames:
                    self.say(f"resumed: {job.source}: {result.resumed_frames} of {result.frames} frames "
                             "from the interrupted run")
                self.summary.processed += 1
                self.summary.videos += 1
                self.summary.frames += result.frames
                self.summary.frames_resumed += result.resumed_frames
