"""Planning a batch: expand files, folders and glob patterns into jobs (a source and its output
paths), tell apart inputs that would share an output name, keep the shard asked for, and list what
cannot be read. Nothing is read or written here but the folder tree."""

from __future__ import annotations

import errno
import glob
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from colorize_cli.errors import OptionError
from colorize_cli.io.files import IMAGE_SUFFIXES, walk, walk_reason
from colorize_cli.io.films import VIDEO_SUFFIXES, in_work_folder, is_video, looks_like_film
from colorize_cli.io.images import output_suffix

_GLOB_CHARS = set("*?[")


@dataclass
class Job:
    source: Path
    targets: list[Path]  # its outputs: one, or one per sample with --samples N
    rebuild: Callable[[Path, str], list[Path]] | None = field(default=None, repr=False)  # targets with a tag

    @property
    def target(self) -> Path:
        return self.targets[0]


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
        raise OptionError(f"{{shard}} {text}: use I/N with 1 <= I <= N, e.g. 2/8")
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
