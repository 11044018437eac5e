"""Colorize many files: collect inputs, plan outputs, run, report failures, return an exit code.

Exit codes: 0 all done, 1 some file failed, 2 usage error, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from colorize_cli.data import IMAGE_SUFFIXES

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class Job:
    source: Path
    target: Path


@dataclass
class Summary:
    processed: int = 0
    colored_inputs: int = 0
    skipped_existing: int = 0
    skipped_not_image: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"processed": self.processed, "colored_inputs": self.colored_inputs,
                "skipped_existing": self.skipped_existing, "skipped_not_image": self.skipped_not_image,
                "failed": [{"file": f, "reason": r} for f, r in self.failed],
                "seconds": round(self.seconds, 3)}


def error_message(exc: BaseException) -> str:
    """The one-line text of an exception (KeyError's str() would add quotes)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def output_path(source: Path, root: Path | None, output: Path | None, suffix: str) -> Path:
    """``{stem}{suffix}{ext}`` beside ``source``, or under ``output`` mirroring its place under ``root``."""
    name = f"{source.stem}{suffix}{source.suffix}"
    if output is None:
        return source.with_name(name)
    rel = source.parent.relative_to(root) if root is not None else Path()
    return output / rel / name


def plan_jobs(inputs: list[Path], output: Path | None, suffix: str) -> tuple[list[Job], int, list[str]]:
    """Expand files and folders into jobs; returns (jobs, files that are not images, missing inputs)."""
    jobs: list[Job] = []
    not_images = 0
    missing: list[str] = []
    for item in inputs:
        if item.is_dir():
            for f in sorted(p for p in item.rglob("*") if p.is_file()):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    not_images += 1
                elif not f.stem.endswith(suffix):  # never colorize our own outputs again
                    jobs.append(Job(f, output_path(f, item, output, suffix)))
        elif item.is_file():
            jobs.append(Job(item, output_path(item, None, output, suffix)))
        else:
            missing.append(str(item))
    return jobs, not_images, missing


def run_batch(inputs: list[Path], model: str = "default", output: Path | None = None, size: int | None = None,
              suffix: str = "_color", overwrite: bool = False, device: str = "cpu", quiet: bool = False,
              debug: bool = False) -> int:
    """Colorize ``inputs`` (files and folders); prints one line per failure and returns the exit code."""
    from colorize_cli.imageio import ImageReadError, read_image, write_image
    from colorize_cli.inference import Colorizer

    def err(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if not suffix:
        err("error: --suffix must not be empty (the input would be overwritten)")
        return EXIT_USAGE
    jobs, not_images, missing = plan_jobs(inputs, output, suffix)
    if missing:
        err(f"error: no such file or folder: {', '.join(missing)}")
        return EXIT_USAGE
    try:
        colorizer = Colorizer(model, device=device, size=size)
    except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
        err(f"error: {error_message(exc)}")
        return EXIT_USAGE
    summary = Summary(skipped_not_image=not_images)
    t0 = time.perf_counter()
    try:
        for job in jobs:
            if job.target.exists() and not overwrite:
                summary.skipped_existing += 1
                continue
            try:
                photo = read_image(job.source)
                for note in photo.warnings:
                    err(f"warning: {job.source}: {note}")
                summary.colored_inputs += photo.is_color
                write_image(job.target, colorizer.colorize_array(photo.rgb), photo)
                summary.processed += 1
                if not quiet:
                    print(f"{job.source} -> {job.target}")
            except (ImageReadError, OSError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, ImageReadError) else f"{exc.__class__.__name__}: {exc}"
                summary.failed.append((str(job.source), reason))
                err(f"failed: {job.source}: {reason}")
                if debug:
                    traceback.print_exc()
    except KeyboardInterrupt:
        err("interrupted: finished outputs are kept; run the same command again to resume")
        return EXIT_INTERRUPTED
    summary.seconds = time.perf_counter() - t0
    if not quiet:
        extra = f", {summary.colored_inputs} already in colour" if summary.colored_inputs else ""
        err(f"done: {summary.processed} colorized, {summary.skipped_existing} already done, "
            f"{summary.skipped_not_image} not images, {len(summary.failed)} failed{extra} "
            f"({summary.seconds:.1f} s)")
    return EXIT_FAILED if summary.failed else EXIT_OK


def summary_json(summary: Summary) -> str:
    return json.dumps(summary.as_dict())
