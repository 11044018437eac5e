"""Colorize many files: collect inputs, plan outputs, run, report failures, return an exit code.

Decoding and encoding run in threads beside the network (PIL and torch release the GIL), photos
that share a working shape are batched, and every output is written atomically. Films (video.py)
are colorized after the photos, one at a time. Exit codes:
0 all done, 1 some file failed, 2 usage error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from colorize_cli.app.films import FilmOptions, FilmTask, colorize_film, film_progress
from colorize_cli.engine.colorizer import Colorizer
from colorize_cli.io.atomic import remove_stale_parts
from colorize_cli.io.files import IMAGE_SUFFIXES, walk, walk_reason
from colorize_cli.io.films import (
    VIDEO_SUFFIXES,
    VideoError,
    film_problem,
    in_work_folder,
    is_video,
    looks_like_film,
)
from colorize_cli.io.images import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    output_problem,
    output_suffix,
    pillow_warnings_as_notes,
    read_image,
    set_max_pixels,
    write_image,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_GLOB_CHARS = set("*?[")


@dataclass
class Job:
    source: Path
    targets: list[Path]  # its outputs: one, or one per sample with --samples N
    rebuild: Callable[[Path, str], list[Path]] | None = field(default=None, repr=False)  # targets with a tag

    @property
    def target(self) -> Path:
        return self.targets[0]


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


def error_message(exc: BaseException) -> str:
    """The one-line text of an exception (KeyError's str() would add quotes)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def output_path(source: Path, root: Path | None, output: Path | None, suffix: str, ext: str,
                sample: int | None = None, tag: str = "") -> Path:
    """``{stem}{tag}{suffix}{ext}`` beside ``source``, or under ``output`` mirroring its place under
    ``root``; sample k of ``--samples N`` is ``{stem}{tag}{suffix}-{k}{ext}``. ``tag`` tells apart
    inputs that share a stem (:func:`_name_apart`)."""
    name = f"{source.stem}{tag}{suffix}{'' if sample is None else f'-{sample}'}{ext}"
    if output is None:
        return source.with_name(name)
    rel = source.parent.relative_to(root) if root is not None else Path()
    return output / rel / name


def _expand(item: str) -> list[tuple[Path, Path | None]]:
    """(path, root it is relative to) for a file, a folder or a glob pattern."""
    path = Path(item)
    if path.exists() or not (_GLOB_CHARS & set(item)):
        return [(path, path if path.is_dir() else None)]
    base = Path()
    for part in path.parts:
        if _GLOB_CHARS & set(part):
            break
        base /= part
    return [(Path(m), base) for m in sorted(glob.glob(item, recursive=True))]


def _is_own_output(f: Path, suffix: str, out_root: Path | None) -> bool:
    """An output of an earlier run (colorizing it again is never wanted): named ``{stem}{suffix}.*``
    and either inside the output folder or next to its source ``{stem}.*``."""
    match = re.fullmatch(f"(.+){re.escape(suffix)}(-[0-9]+)?", f.stem) if suffix else None
    if match is None:
        return False
    if out_root is not None and out_root in f.resolve().parents:
        return True
    base = match.group(1)
    if any(p.stem == base and p != f for p in f.parent.glob(glob.escape(base) + ".*")):
        return True
    tagged = re.fullmatch(r"(.+)_([A-Za-z0-9]+)", base)  # {stem}_{ext}{suffix}: see _name_apart
    return tagged is not None and any(p.suffix[1:].lower() == tagged.group(2).lower() and p != f
                                      for p in f.parent.glob(glob.escape(tagged.group(1)) + ".*"))


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (1 <= I <= N) -> (I, N); raises ValueError with a one-line reason."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ValueError(f"--shard {text}: use I/N with 1 <= I <= N, e.g. 2/8")
    return int(match.group(1)), int(match.group(2))


def shard_of(key: str, count: int) -> int:
    """The shard (1..count) of a file, from a hash of its path relative to the folder walked: the
    same in every process and every rerun, whatever else is in the archive."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


def _name_apart(jobs: list[Job]) -> None:
    """Inputs that would get the same output name (``hopper.png`` and ``hopper.gif`` both make
    ``hopper_color.png``) are told apart: the one whose extension is the output's keeps the name,
    the others get their extension in it (``hopper_gif_color.png``). Deterministic: the names depend
    only on the files planned, so a rerun finds the same outputs."""
    by_target: dict[Path, list[Job]] = {}
    for job in jobs:
        by_target.setdefault(job.target, []).append(job)
    for group in by_target.values():
        if len(group) < 2:
            continue
        for job in group:
            if job.source.suffix != job.target.suffix:
                job.targets = job.rebuild(job.source, "_" + job.source.suffix[1:].lower())


@dataclass
class Plan:
    """What :func:`plan_jobs` found: the jobs, and what is counted or reported instead."""

    jobs: list[Job] = field(default_factory=list)
    not_images: int = 0
    own_outputs: int = 0  # earlier outputs found while walking
    missing: list[str] = field(default_factory=list)  # inputs that match nothing
    problems: list[tuple[Path, str]] = field(default_factory=list)  # what could not be walked, and why


def plan_jobs(inputs: list, output: Path | None, suffix: str, fmt: str = "same", samples: int = 1,
              shard: tuple[int, int] = (1, 1)) -> Plan:
    """Expand files, folders and globs into jobs (with ``samples`` > 1, a job has that many outputs).

    Each source file is planned once, however many inputs name it; files found by walking a folder
    or a glob keep their place under it in ``output``. With ``shard=(I, N)`` only the files of shard
    I are planned or counted (:func:`shard_of`).
    """

    plan = Plan()
    jobs: list[tuple[Job, bool]] = []  # every job, and whether it is in this shard
    seen: set[Path] = set()
    out_root = output.resolve() if output is not None else None
    numbers = range(1, samples + 1) if samples > 1 else [None]
    for item in inputs:
        expanded = _expand(str(item))
        if not expanded or not any(p.exists() or p.is_symlink() for p, _ in expanded):
            plan.missing.append(str(item))
            continue
        for path, root in expanded:
            walked = path.is_dir() or root is not None  # found by walking or a glob, not named
            problems: list[tuple[Path, str]] = []
            files = sorted(f for f in walk(path, problems) if not in_work_folder(f.relative_to(path))) \
                if path.is_dir() else [path]
            if not path.is_dir() and path.is_symlink() and not path.exists():
                files, problems = [], [(path, walk_reason(_stat_error(path), path))]
            rel_root = root if root is not None else (path if path.is_dir() else None)
            mine = [(p, why) for p, why in problems if shard_of(_relative(p, rel_root), shard[1]) == shard[0]]
            plan.problems += mine
            for f in files:
                resolved = f.resolve()
                if resolved in seen:
                    continue
                seen.add(resolved)
                mine = shard_of(_relative(f, rel_root), shard[1]) == shard[0]
                if f.suffix.lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES or (is_video(f) and not looks_like_film(f)):
                    plan.not_images += mine
                elif walked and _is_own_output(f, suffix, out_root):
                    plan.own_outputs += mine
                else:
                    # a film keeps its container and gets one colorization
                    ext, ks = (f.suffix, [None]) if is_video(f) else (output_suffix(f, fmt), numbers)

                    def targets(src: Path, tag: str = "", rel_root=rel_root, ext=ext, ks=ks) -> list[Path]:
                        return [output_path(src, rel_root, output, suffix, ext, k, tag) for k in ks]

                    jobs.append((Job(f, targets(f), targets), mine))
    _name_apart([job for job, _ in jobs])  # over all shards: an output's name must not depend on the shard
    plan.jobs = [job for job, mine in jobs if mine]
    return plan


def _relative(path: Path, root: Path | None) -> str:
    """The key a file is sharded by: its path under the folder walked (the path given otherwise)."""
    return (path.relative_to(root) if root is not None else path).as_posix()


def _stat_error(path: Path) -> OSError:
    try:
        path.stat()
    except OSError as exc:
        return exc
    return OSError(errno.EIO, "cannot be read")


@dataclass
class BatchOptions:
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
    backend: str = "torch"
    batch_size: int = 4
    max_pixels: int | None = None
    quiet: bool = False
    json: bool = False
    debug: bool = False
    samples: int = 1  # colorizations per photo, from latent codes sampled with ``seed`` (a vae)
    seed: int | None = None  # sample the latent code(s) from this seed; None and samples 1: the zero code
    shard: tuple[int, int] = (1, 1)  # (I, N): colorize shard I of N (shard_of)
    codec: str | None = None  # films: FFmpeg encoder (default H.264, VP9 for .webm)
    crf: int | None = None  # films: constant quality of the encoder
    stabilize: bool = True  # films: temporally smoothed chroma
    segment_seconds: float = 10.0  # films: resumable segments of this length


def run_batch(inputs: list, **options) -> int:
    """Colorize ``inputs`` (files, folders, globs); returns the exit code. Options: :class:`BatchOptions`."""
    opts = BatchOptions(**options)
    def err(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if not opts.suffix and opts.output is None:
        err("error: --suffix must not be empty without --output (the input would be overwritten)")
        return EXIT_USAGE
    plan = plan_jobs(inputs, opts.output, opts.suffix, opts.fmt, opts.samples, opts.shard)
    if plan.missing:
        err(f"error: no such file or folder: {', '.join(plan.missing)}")
        return EXIT_USAGE
    try:
        colorizer = Colorizer(opts.model, device=opts.device, size=opts.size, half=opts.half,
                              backend=opts.backend)
        latents = None
        if opts.samples > 1 or opts.seed is not None:
            latents = colorizer.sample_latents(opts.samples, 0 if opts.seed is None else opts.seed)
    except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
        err(f"error: {error_message(exc)}")
        return EXIT_USAGE
    set_max_pixels(DEFAULT_MAX_PIXELS if opts.max_pixels is None else opts.max_pixels)
    summary = Summary(skipped_not_image=plan.not_images, skipped_own_outputs=plan.own_outputs,
                      shard=opts.shard, planned=len(plan.jobs))

    def fail(source, reason: str) -> None:
        summary.failed.append((str(source), reason))
        err(f"failed: {source}: {reason}")

    for path, reason in plan.problems:
        fail(path, reason)
    todo, seen = [], {}
    for job in plan.jobs:
        clash = next((t for t in job.targets if t in seen), None)
        if any(t.resolve() == job.source.resolve() for t in job.targets):
            fail(job.source, "the output would overwrite the input (choose a --suffix)")
        elif clash is not None:
            fail(job.source, f"output {clash} would collide with {seen[clash]}'s")
        elif not opts.overwrite and _outputs_done(job, err):
            summary.skipped_existing += 1
        else:
            seen.update((t, job.source) for t in job.targets)
            todo.append(job)
    for folder in sorted({t.parent for job in plan.jobs for t in job.targets}):
        if removed := remove_stale_parts(folder):
            err(f"note: {folder}: removed {removed} temporary file(s) left by an interrupted run")
    t0 = time.perf_counter()
    runner = _Runner(colorizer, opts, summary, err, latents)
    try:
        with pillow_warnings_as_notes():
            runner.run([j for j in todo if not is_video(j.source)])
            runner.run_films([j for j in todo if is_video(j.source)])
    except KeyboardInterrupt:
        summary.interrupted = True
        err("interrupted: finished outputs are kept, none is half-written; run the same command to resume")
    summary.seconds = time.perf_counter() - t0
    if not opts.quiet:
        err(summary.line())
    if opts.json:
        print(json.dumps(summary.as_dict()), flush=True)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


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

    def __init__(self, colorizer, opts: BatchOptions, summary: Summary, err, latents=None):
        self.c, self.opts, self.summary, self.err = colorizer, opts, summary, err
        self.latents = latents  # (samples, latent_dim): code k makes output k of every photo; None: z = 0
        self.progress = None
        self.task = None
        self.started = time.perf_counter()
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
        self.err(f"failed: {job.source}: {reason}")
        if self.opts.debug:
            traceback.print_exception(exc)
        self._advance()

    def _advance(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)
            done = self.progress.tasks[0].completed
            self.progress.update(self.task, rate=f"{done / (time.perf_counter() - self.started):.1f} img/s")

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
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )


        console = Console(stderr=True)
        show = console.is_terminal and not self.opts.quiet and jobs
        self.progress = Progress(TextColumn("colorize"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=console, disable=not show)
        window = max(2, 2 * self.opts.batch_size)
        with self.progress, ThreadPoolExecutor(2, thread_name_prefix="read") as readers, \
                ThreadPoolExecutor(2, thread_name_prefix="write") as writer:
            self.task = self.progress.add_task("colorize", total=len(jobs), rate="")
            self.started = time.perf_counter()
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
                        self.err(f"warning: {job.source}: {note}")
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
        import torch

        for shape in list(groups):
            items = groups.pop(shape)
            for start in range(0, len(items), self.opts.batch_size):
                chunk = items[start:start + self.opts.batch_size]
                try:
                    l_norm = torch.cat([self.c.working_input(p) for _, p in chunk])
                    if self.latents is None:
                        abs_ = [self.c.predict(l_norm)]
                    else:
                        abs_ = [self.c.predict(l_norm, z.expand(len(chunk), -1)) for z in self.latents]
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
        from rich.console import Console


        if not jobs:
            return
        o = self.opts
        options = FilmOptions(codec=o.codec, crf=o.crf, stabilize=o.stabilize, segment_seconds=o.segment_seconds,
                              batch_size=o.batch_size, overwrite=o.overwrite, skip_color=o.skip_color)
        if self.latents is not None:
            self.err("warning: --samples and --seed apply to photos; films get the model's default colorization")
        self.progress = None
        with film_progress(Console(stderr=True).is_terminal and not o.quiet) as progress:
            for job in jobs:
                try:
                    result = colorize_film(self.c, job.source, job.target, options, FilmTask(progress, job.source.name))
                except Exception as exc:  # noqa: BLE001 - any failure of one film is reported, the batch goes on
                    self._fail(job, exc)
                    continue
                for note in result.notes:
                    self.err(f"warning: {job.source}: {note}")
                if result.busy:
                    self.err(f"skipped: {job.source}: another colorize process is writing it")
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
                    self.err(f"resumed: {job.source}: {result.resumed_frames} of {result.frames} frames "
                             "from the interrupted run")
                self.summary.processed += 1
                self.summary.videos += 1
                self.summary.frames += result.frames
                self.summary.frames_resumed += result.resumed_frames
