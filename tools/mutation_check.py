"""Mutation check: break the guarded code on purpose, one mutant at a time, and see a test fail.

    nice -n 10 python tools/mutation_check.py [--only NAME ...] [--no-baseline] [--markdown docs-table.md]

Each mutant below replaces one exact piece of source text in a temporary copy of the repository
(src, tests, examples, weights.toml) and runs the test files named for it there (``pytest -x``,
stopping at the first failure). A mutant is *killed* when a test fails (the first failing test is
reported), *survived* when they all pass. A mutant whose text is no longer in the source is an
error: the code changed under it, so the mutant must be brought up to date. Plain Python, no
dependency; too slow for CI (minutes per mutant on 2 cores). docs/testing.md has the last figures.
Exit code 0 only if every mutant was killed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "src/colorize_cli"


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    file: str  # relative to src/colorize_cli
    old: str | tuple[str, ...]  # text to replace (or several, each replaced by the same place in new)
    new: str | tuple[str, ...]
    tests: tuple[str, ...]  # test files, the one expected to kill it first
    issue: bool = False  # one of the breaks of issue 15's table


MUTANTS = [
    # ----- the breaks of issue 15's table -----
    Mutant("write-in-place", "outputs written straight to the final name (no temp + rename)", "io/atomic.py",
           "    fd, temp = _locked_temp(path)\n",
           "    fd, temp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), path\n",
           ("tests/test_guards.py", "tests/test_faults.py"), issue=True),
    Mutant("bundled-unverified", "sha256 of bundled weights not checked", "engine/hub.py",
           "        _verify(bundled, entry.sha256, label, delete=False)\n", "",
           ("tests/test_guards.py", "tests/test_hub.py"), issue=True),
    Mutant("cache-unverified", "a cached Hub file not re-verified", "engine/hub.py",
           '        _verify(Path(cached), entry.sha256, label, delete=True)\n        return Path(cached), "cached"',
           '        return Path(cached), "cached"', ("tests/test_guards.py", "tests/test_hub.py"), issue=True),
    Mutant("working-size-ignored", "the model's own working size ignored (256 used instead of 128)",
           "engine/colorizer.py", 'self.size = size or self.fixed_size or self.config.get("working_size") or DEFAULT',
           "self.size = size or self.fixed_size or DEFAULT", ("tests/test_guards.py", "tests/test_cli.py"),
           issue=True),
    Mutant("luminance-green", "luminance of colour inputs taken from the green channel only", "color.py",
           "        np.matmul(chunk, m, out=yk)\n", "        yk[:] = chunk[:, 1]\n", ("tests/test_guards.py", "tests/test_color.py"), issue=True),
    Mutant("gamma-lut-256", "the gamma lookup table cut to 256 entries", "color.py",
           "_GAMMA_LUT_SIZE = 1 << 16", "_GAMMA_LUT_SIZE = 1 << 8", ("tests/test_guards.py", "tests/test_color.py"),
           issue=True),
    Mutant("onnx-check-self", "the ONNX export check compares torch with itself", "engine/export.py",
           "            out = engine(x, **extra)\n", "            out = ref\n", ("tests/test_guards.py", "tests/test_export.py"),
           issue=True),
    Mutant("bf16-off", "bf16 autocast never switched on", "app/train/step.py",
           "dtype=torch.bfloat16, enabled=self.amp)", "dtype=torch.bfloat16, enabled=False)",
           ("tests/test_guards.py", "tests/test_train.py"), issue=True),
    Mutant("luminance-working-size", "luminance merged at working size, not full size", "engine/colorizer.py",
           "            out[y0:y1] = lab_to_pixels(pixels_to_l(photo.pixels[y0:y1], maxval), ab, maxval)\n",
           "            coarse = np.asarray(Image.fromarray(photo.pixels).resize((w, h)).resize((width, height)))\n"
           "            out[y0:y1] = lab_to_pixels(pixels_to_l(coarse[y0:y1], maxval), ab, maxval)\n",
           ("tests/test_guards.py", "tests/test_photos.py"), issue=True),
    Mutant("exif-jpeg-only", "EXIF dropped from PNG / WebP outputs", "io/images.py",
           "if photo.exif and fmt in _EXIF_FORMATS:", 'if photo.exif and fmt == "JPEG":',
           ("tests/test_guards.py", "tests/test_photos.py"), issue=True),
    Mutant("ctrl-c-count-race", "the Ctrl-C --json count race of issue 15 put back (the main thread counts "
           "a write after taking it off the queue)", "app/batch.py",
           (("        with self.lock:\n            self.summary.processed += 1\n"
             "            self.summary.colored_inputs += photo.is_color  # \"N colorized, M of them already in colour\"\n"
             "            self._advance()\n"),
            ("            writes[0][1].result()  # never raises: _write reports its own failure\n"
            "            writes.popleft()\n"),
            "                raise\n"),
           ("",
            ("            job, fut = writes.popleft()\n            fut.result()\n"
            "            self.summary.processed += 1\n            self._advance()\n"),
            ("                self._drain(deque((j, f) for j, f in writes if not f.cancelled()), limit=0)\n"
            "                raise\n")),
           ("tests/test_interrupt.py",), issue=True),
    # ----- more, in the modules that guard users' files and colours -----
    Mutant("exif-png16-dropped", "EXIF dropped from 16-bit PNG outputs", "io/images.py",
           "    if exif:\n        out.append(chunk(b\"eXIf\"", "    if False:\n        out.append(chunk(b\"eXIf\"",
           ("tests/test_guards.py", "tests/test_photos.py")),
    Mutant("alpha-dropped", "alpha not written", "io/images.py",
           'alpha = photo.alpha if fmt in ("PNG", "WEBP", "TIFF") else None', "alpha = None",
           ("tests/test_photos.py", "tests/test_guards.py")),
    Mutant("icc-dropped", "the ICC profile not written", "io/images.py",
           "            if photo.icc_profile:\n", "            if False:\n",
           ("tests/test_photos.py", "tests/test_guards.py")),
    Mutant("orientation-ignored", "EXIF orientation not applied", "io/images.py",
           "        im = ImageOps.exif_transpose(im)\n", "", ("tests/test_photos.py", "tests/test_guards.py")),
    Mutant("lab-toe-ignored", "the linear toe of Lab -> sRGB ignored in the full-size path", "color.py",
           "        tk *= 1 / 7.787\n", "        tk *= 0\n", ("tests/test_guards.py", "tests/test_color.py")),
    Mutant("white-point", "a rounded D65 white point", "color.py",
           "WHITE_D65 = (0.95047, 1.0, 1.08883)", "WHITE_D65 = (0.9505, 1.0, 1.089)",
           ("tests/test_color.py", "tests/test_guards.py")),
    Mutant("chroma-nearest-columns", "chroma upsampled nearest-neighbour across", "engine/colorizer.py",
           "        ab_rows += (np.take(ab_small, c1, axis=-1) - ab_rows) * ct\n",
           "        ab_rows += (np.take(ab_small, c1, axis=-1) - ab_rows) * np.round(ct)\n",
           ("tests/test_guards.py", "tests/test_photos.py")),
    Mutant("chroma-nearest-rows", "chroma upsampled nearest-neighbour down", "engine/colorizer.py",
           "            ab += (np.take(ab_rows, r1[y0:y1], axis=1) - ab) * rt[y0:y1, None]\n",
           "            ab += (np.take(ab_rows, r1[y0:y1], axis=1) - ab) * np.round(rt[y0:y1, None])\n",
           ("tests/test_guards.py", "tests/test_photos.py")),
    Mutant("pickle-trusted", "Hub pickle checkpoints accepted without --trust-remote-pickle", "engine/hub.py",
           "(suffix in PICKLE_SUFFIXES and trust_pickle)", "(suffix in PICKLE_SUFFIXES)",
           ("tests/test_hub.py",)),
    Mutant("bad-download-kept", "a download with the wrong sha256 not deleted", "engine/hub.py",
           "        p.unlink(missing_ok=True)\n", "        pass\n", ("tests/test_hub.py",)),
    Mutant("failure-exit-0", "exit code 0 although a file failed", "cli/main.py",
           "return EXIT_FAILED if summary.failed else EXIT_OK", "return EXIT_OK",
           ("tests/test_photos.py", "tests/test_cli.py")),
    Mutant("input-overwritten", "no check that an output would overwrite its input", "app/batch.py",
           "if any(t.resolve() == job.source.resolve() for t in job.targets):", "if False:",
           ("tests/test_photos.py",)),
    Mutant("existing-redone", "existing outputs colorized again (no resume)", "app/batch.py",
           ("elif not opts.overwrite and _outputs_done(job, say):",
            "if not self.opts.overwrite and _outputs_done(job):"), ("elif False:", "if False:"),
           ("tests/test_cli.py", "tests/test_photos.py")),
    # ----- colorizing without torch (issue 28) and colours the user knows (issue 27) -----
    Mutant("torch-on-the-way", "an optional torch import on the colorize path", "resample.py",
           "import numpy as np\n", "import numpy as np\n\ntry:\n    import torch  # noqa: F401\nexcept ImportError:\n    pass\n",
           ("tests/test_without_torch.py",)),
    Mutant("bundled-onnx-unverified", "sha256 of a bundled ONNX graph not checked", "engine/hub.py",
           '    _verify(path, str(entry.info.get("onnx_sha256", "")), f"model {model!r} (ONNX)", delete=False)\n', "",
           ("tests/test_guards.py",)),
    Mutant("hint-gate-open", "the hint model's global branch open without hints", "models/encoder_unet.py",
           "            h = h + gate * g[:, :, None, None]\n", "            h = h + g[:, :, None, None]\n",
           ("tests/test_hints.py",)),
    Mutant("saturation-clipped", "--saturation pushes colours out of the gamut", "color.py",
           "    inside = in_gamut(lum, ab * high)\n", "    return ab * np.float32(factor)\n",
           ("tests/test_hints.py",)),
    Mutant("write-failure-silent", "a failed write not reported", "app/batch.py",
           "            self._fail(job, exc)\n            return\n", "            return\n",
           ("tests/test_photos.py", "tests/test_guards.py")),
]


def _copy_repo(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")
    for name in ("src", "tests", "examples"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("weights.toml", "pyproject.toml"):
        shutil.copy(ROOT / name, dest / name)


def _pytest(work: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, str, float]:
    """Run ``tests`` in ``work``: ('passed' | 'failed' | 'timeout', first failing test, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(work / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("COLORIZE_WEIGHTS_TOML", None)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rfE", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", f"(no result in {timeout:.0f} s)", time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    if proc.returncode == 0:
        return "passed", "", seconds
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.MULTILINE)
    return "failed", m[1] if m else proc.stdout.strip().splitlines()[-1][:200], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutant names (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated tests")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.name:<24} {m.file:<13} {m.what}")
        return 0
    rows, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        work = Path(tmp)
        _copy_repo(work)
        if not args.no_baseline:
            files = tuple(sorted({t for m in mutants for t in m.tests}))
            status, where, seconds = _pytest(work, files, args.timeout * 2)
            print(f"baseline (no mutant) on {' '.join(files)}: {status} {where} ({seconds:.0f} s)", flush=True)
            if status != "passed":
                print("the unmutated tests do not pass: fix them first")
                return 2
        for m in mutants:
            path = work / PKG / m.file
            original = path.read_text()
            edits = list(zip(m.old, m.new)) if isinstance(m.old, tuple) else [(m.old, m.new)]
            counts = [original.count(old) for old, _ in edits]
            if counts != [1] * len(edits):
                result, where, seconds = "ERROR", f"its text is found {counts} times in {m.file}: update it", 0.0
            else:
                mutated = original
                for old, new in edits:
                    mutated = mutated.replace(old, new)
                path.write_text(mutated)
                try:
                    status, where, seconds = _pytest(work, m.tests, args.timeout)
                finally:
                    path.write_text(original)
                result = {"failed": "killed", "timeout": "killed (timeout)", "passed": "SURVIVED"}[status]
            bad += not result.startswith("killed")
            rows.append((m, result, where, seconds))
            print(f"{m.name:<24} {result:<9} {where} ({seconds:.0f} s)", flush=True)
    lines = ["| mutant | where | break | issue 15 table | result | first test that failed | s |",
             "| --- | --- | --- | --- | --- | --- | ---: |"]
    for m, result, where, seconds in rows:
        lines.append(f"| `{m.name}` | {m.file} | {m.what} | {'yes' if m.issue else ''} | {result} | "
                     f"`{where}` | {seconds:.0f} |")
    killed = sum(r[1].startswith("killed") for r in rows)
    lines.append("")
    lines.append(f"{killed} of {len(rows)} mutants killed.")
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
