"""Ctrl-C (a real SIGINT to a real colorize process) while an output is being written: the --json
summary counts exactly the files that exist under their final names, and each of them is whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image
from textures import textured

SIZE = (1600, 1200)  # 2 megapixels: finishing and PNG-encoding one takes long enough to land a SIGINT in


def _photos(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(textured(SIZE[1], SIZE[0], seed=i, color=False)).save(folder / f"p{i:02d}.jpg", quality=90)


def _finals(out: Path) -> list[Path]:
    return sorted(out.glob("*_color.png"))


def _in_progress(out: Path) -> list[Path]:
    """Files in the output folder that are not outputs under their final names: writes under way."""
    return [p for p in out.iterdir() if not p.name.endswith("_color.png")] if out.is_dir() else []


def _main_thread_waiting(pid: int, since: float | None) -> float | None:
    """When the process's main thread began its current sleep (None: it is running). A sleep of
    more than a few ms is a wait on another thread's result, not a GIL hand-over (Linux /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return (since or time.monotonic()) if state == "S" else None


def interrupt_during_a_write(folder: Path, out: Path, weights: Path | str, after: int,
                             timeout: float = 120) -> dict:
    """Start colorize on ``folder``; once ``after`` outputs exist, another is being written and the
    main thread has been waiting for 30 ms (on a write: the moment of the race in issue 15), send
    SIGINT; return what it reported and what is on disk."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "colorize_cli", str(folder), "--model", str(weights), "--output", str(out),
           "--format", "png", "--batch-size", "1", "--json", "--quiet"]
    # a shell that starts jobs in the background makes them ignore SIGINT; a user's Ctrl-C is not ignored
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    deadline = time.monotonic() + timeout
    sent_while_writing = False
    waiting = None
    while time.monotonic() < deadline and proc.poll() is None:
        waiting = _main_thread_waiting(proc.pid, waiting)
        if (waiting is not None and time.monotonic() - waiting > 0.03 and len(_finals(out)) >= after
                and _in_progress(out)):
            proc.send_signal(signal.SIGINT)
            sent_while_writing = True
            break
        time.sleep(0.001)
    if not sent_while_writing:
        proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=timeout)
    lines = stdout.strip().splitlines()
    return {"code": proc.returncode, "stderr": stderr, "while_writing": sent_while_writing,
            "summary": json.loads(lines[-1]) if lines else None, "finals": _finals(out),
            "left": _in_progress(out)}


def test_ctrl_c_while_writing_counts_exactly_the_files_written(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    _photos(folder, 8)
    for trial, after in enumerate((1, 2, 3)):
        out = tmp_path / f"out{trial}"
        got = interrupt_during_a_write(folder, out, tiny_weights, after)
        assert got["while_writing"], "the run ended before a write could be interrupted"
        assert got["code"] == 130, got["stderr"]
        assert "Traceback" not in got["stderr"] and "interrupted" in got["stderr"]
        assert got["left"] == []  # no temporary file is left behind
        assert after <= len(got["finals"]) < 8
        for p in got["finals"]:
            with Image.open(p) as im:
                im.load()  # decodes whole
                assert im.size == SIZE
        summary = got["summary"]
        assert summary["interrupted"]
        assert summary["processed"] == len(got["finals"]), (trial, summary, [p.name for p in got["finals"]])
