"""Run ``colorize`` under a fault the tests cannot put on their own process (tests/test_faults.py).

    python fault_child.py [--fsize BYTES] [--as-nobody WARMUP_DIR] -- COLORIZE_ARGS...
    python fault_child.py --kill-trials N --seed S [--fresh] --watch DIR -- COLORIZE_ARGS...

--fsize sets RLIMIT_FSIZE, so the kernel fails writes past BYTES with EFBIG (after a short write
first, as on a full disk). --as-nobody colorizes WARMUP_DIR once as root (everything is imported:
this machine's Python lives under a folder only root can read), then drops to the user nobody,
whom file permissions bind, and runs the real command. --kill-trials forks the command N times
(imports are paid once), SIGKILLs each child at a random moment and prints, as one JSON line per
trial, what it found under final names in the folders it was told to watch (--watch DIR). The
delays are drawn between the first output and the end of one whole run, timed first; --fresh removes the watched
outputs before each run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path


def colorize(args: list[str]) -> int:
    from colorize_cli.cli import app

    try:
        app(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


def whole(path: Path) -> str | None:
    """Why ``path`` is not a whole image (None: it decodes fully)."""
    from PIL import Image

    from colorize_cli.io.images import output_problem

    problem = output_problem(path)
    if problem:
        return problem
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - any decoding failure is what we look for
        return str(exc)
    return None


def final_outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*_color*") if p.is_file() and not p.name.startswith("."))


def kill_trials(args, command: list[str]) -> None:
    import torch  # noqa: F401

    import colorize_cli.app.batch
    import colorize_cli.engine.colorizer  # noqa: F401

    def start() -> int:
        if args.fresh:
            for p in (p for d in args.watch for p in final_outputs(Path(d))):
                p.unlink()
        pid = os.fork()
        if pid == 0:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os._exit(colorize(command))
        return pid

    # one whole run first, timed and counted; then each trial kills the command at a random moment
    # after a random number k of its outputs (1 <= k < all) have appeared: the moment is random,
    # and it falls mid-batch however fast or busy this machine is
    t0, pid = time.perf_counter(), start()
    os.waitpid(pid, 0)
    whole_run = time.perf_counter() - t0
    total = sum(len(final_outputs(Path(d))) for d in args.watch)
    rng = random.Random(args.seed)

    def outputs() -> list[Path]:
        return [p for d in args.watch for p in final_outputs(Path(d))]

    for trial in range(args.kill_trials):
        k = rng.randint(1, max(1, total - 1))
        jitter = rng.uniform(0, whole_run / max(1, total))  # up to about one output's time
        pid = start()
        t0 = time.perf_counter()
        while len(outputs()) < k and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.002)
        time.sleep(jitter)
        delay = time.perf_counter() - t0
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        found = outputs()
        broken = {str(p): why for p in found if (why := whole(p))}
        print(json.dumps({"trial": trial, "after": k, "delay": round(delay, 3), "killed": os.WIFSIGNALED(status),
                          "outputs": len(found), "broken": broken}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsize", type=int)
    ap.add_argument("--as-nobody", type=Path, metavar="WARMUP_DIR")
    ap.add_argument("--kill-trials", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--watch", action="append", default=[])
    ap.add_argument("--fresh", action="store_true", help="remove the watched outputs before each trial")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.kill_trials:
        kill_trials(args, command)
        return 0
    if args.as_nobody is not None and os.geteuid() == 0:  # anyone else obeys permissions already
        model = command[command.index("--model") + 1]
        colorize([str(args.as_nobody), "--model", model, "--quiet", "--overwrite", "--json"])
        os.setgid(65534)
        os.setuid(65534)
    if args.fsize is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, args.fsize))
    return colorize(command)


if __name__ == "__main__":
    sys.exit(main())
