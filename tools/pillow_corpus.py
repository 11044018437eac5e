"""Colorize Pillow's own test images (every mode, codec and known-malicious file the Pillow team has
met) as one batch, and count the outcomes by kind.

    pip download --no-deps --no-binary :all: pillow==12.0.0 -d /tmp/pillow-src
    tar xzf /tmp/pillow-src/pillow-12.0.0.tar.gz -C /tmp/pillow-src
    python tools/pillow_corpus.py /tmp/pillow-src/pillow-12.0.0/Tests/images --output /tmp/corpus-out

Kinds: colorized; skipped as not an image (by suffix); skipped as in colour (none: colour photos
are colorized); failed as unreadable (Pillow itself cannot decode the file either); refused by a
limit the user can lift (--max-pixels); failed by us (Pillow decodes the file, we did not colorize
it: a bug of ours). Also counted: warning lines, tracebacks (should be 0), and whether every output
is whole. Exit code 1 if any failure is ours or any traceback was printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

from PIL import Image


def pillow_reads(path: str) -> bool:
    """True if Pillow decodes the first frame of ``path`` without error."""
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                im.load()
        return True
    except Exception:  # noqa: BLE001 - any failure means Pillow cannot read it
        return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", type=Path, help="Pillow's Tests/images folder")
    ap.add_argument("--output", type=Path, default=Path("/tmp/pillow-corpus-out"))
    ap.add_argument("--model", default="default")
    ap.add_argument("--show", action="store_true", help="print every failure and warning line")
    args = ap.parse_args()
    shutil.rmtree(args.output, ignore_errors=True)
    cmd = [sys.executable, "-m", "colorize_cli", str(args.corpus), "--output", str(args.output),
           "--model", args.model, "--json", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    kinds = collections.Counter()
    ours, unreadable = [], []
    limited = []
    for f in summary["failed"]:
        if "--max-pixels" in f["reason"]:
            kinds["refused by a limit (--max-pixels)"] += 1
            limited.append(f)
        elif Path(f["file"]).is_file() and pillow_reads(f["file"]):
            kinds["failed by us (Pillow reads it)"] += 1
            ours.append(f)
        else:
            kinds["failed as unreadable (Pillow cannot decode it either)"] += 1
            unreadable.append(f)
    from colorize_cli.io.images import output_problem

    outputs = [p for p in args.output.rglob("*") if p.is_file()]
    broken = [str(p) for p in outputs if output_problem(p) is not None]
    wrong_size = [f"{t} is {got[0]}x{got[1]}, {s} is {want[0]}x{want[1]}" for s, t, got, want in _sizes(args)
                  if got != want]
    lines = proc.stderr.splitlines()
    warned = [ln for ln in lines if ln.startswith("warning:")]
    report = {
        "files": sum(1 for p in args.corpus.rglob("*") if p.is_file()),
        "colorized": summary["processed"],
        "of them already in colour": summary["colored_inputs"],
        "skipped as not an image": summary["skipped_not_image"],
        **kinds,
        "warning lines": len(warned),
        "tracebacks": proc.stderr.count("Traceback"),
        "outputs": len(outputs), "outputs not whole": len(broken), "outputs of the wrong size": len(wrong_size),
        "exit code": proc.returncode, "seconds": round(seconds, 1),
    }
    for k, v in report.items():
        print(f"{k:58} {v}")
    if args.show:
        for f in unreadable:
            print(f"unreadable: {f['file']}: {f['reason']}")
        for f in limited:
            print(f"limit: {f['file']}: {f['reason']}")
        for ln in warned:
            print(ln)
    for f in ours:
        print(f"OURS: {f['file']}: {f['reason']}")
    for b in broken:
        print(f"NOT WHOLE: {b}")
    for w in wrong_size:
        print(f"WRONG SIZE: {w}")
    return 1 if ours or broken or wrong_size or report["tracebacks"] else 0


def _sizes(args):
    """(source, output, output size, upright source size) of every output written."""
    from colorize_cli.app.plan import plan_jobs

    for job in plan_jobs([args.corpus], args.output, "_color").jobs:
        if not job.target.exists():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(job.source) as im:
                im.load()  # libtiff applies a TIFF's orientation itself, and drops the tag
                w, h = im.size
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    w, h = h, w
            with Image.open(job.target) as out:
                yield job.source, job.target, out.size, (w, h)


if __name__ == "__main__":
    sys.exit(main())
