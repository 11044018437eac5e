"""Never a broken output: full disks, file-size limits, SIGKILL, a folder made read-only mid-batch,
two processes at once, and what a rerun does with what they leave (docs/faults.md).

Faults are real: the kernel fails the writes (RLIMIT_FSIZE in a child, a small tmpfs), the process
is killed with SIGKILL, permissions are enforced on a child that runs as the user nobody.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_photo
from fault_child import final_outputs, whole
from PIL import Image
from typer.testing import CliRunner

from colorize_cli.cli import app

CHILD = Path(__file__).with_name("fault_child.py")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def child(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHILD), *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout, check=False)


def summary(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def failed(output: str) -> dict[str, str]:
    """{file: reason} of the ``failed: FILE: reason`` lines."""
    lines = [ln[len("failed: "):] for ln in output.splitlines() if ln.startswith("failed: ")]
    return dict(ln.split(": ", 1) for ln in lines)


def noisy_photo(path: Path, size=(160, 120), seed=0) -> Path:
    """A gray photo with grain: its colorized JPEG is big enough to run a small disk full."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    gray = np.clip((x + y) * 255 / (w + h) + rng.normal(0, 40, (h, w)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray).save(path, quality=90)
    return path


def assert_all_whole(folder: Path) -> list[Path]:
    """Every file under a final name decodes fully; no temporary file is left. Returns the outputs."""
    outputs = final_outputs(folder)
    assert {str(p): whole(p) for p in outputs if whole(p)} == {}
    assert not [p for p in folder.rglob(".*.part")]
    return outputs


# ---- a file-size limit, a full disk --------------------------------------------------------------------------


def test_a_write_cut_short_by_a_file_size_limit_fails_and_leaves_nothing(tmp_path, tiny_weights):
    """Issue 14's cause: Pillow ignored the short write the kernel returns first, and a truncated
    JPEG got its final name. The limit here falls inside the last write of one output."""
    for i, size in enumerate([(40, 30), (60, 45), (160, 120), (200, 150), (240, 180)]):
        noisy_photo(tmp_path / "in" / f"p{i}.jpg", size, seed=i)
    assert run(tmp_path / "in", "--output", tmp_path / "ref", "--model", tiny_weights).exit_code == 0
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "ref").iterdir()}
    limit = sizes["p2_color.jpg"] - 500  # p2 would be cut 500 bytes short; p0, p1 fit; p3, p4 do not
    assert sizes["p1_color.jpg"] < limit < sizes["p2_color.jpg"] < 65536  # one Pillow write: the bug's case
    proc = child("--fsize", limit, "--", tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights,
                 "--json")
    assert proc.returncode == 1, proc.stderr
    reasons = failed(proc.stderr)
    assert sorted(Path(f).name for f in reasons) == ["p2.jpg", "p3.jpg", "p4.jpg"]
    assert all(r.startswith("File too large") for r in reasons.values()), reasons
    assert "Traceback" not in proc.stderr
    assert [p.name for p in assert_all_whole(tmp_path / "out")] == ["p0_color.jpg", "p1_color.jpg"]
    assert summary(proc.stdout)["processed"] == 2
    result = run(tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights, "--json")
    assert result.exit_code == 0
    assert (summary(result.stdout)["processed"], summary(result.stdout)["skipped_existing"]) == (3, 2)
    assert len(assert_all_whole(tmp_path / "out")) == 5


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs (root can mount one); None where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
                             capture_output=True, check=False).returncode == 0
    yield disk if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_fails_the_photos_that_do_not_fit_and_a_rerun_finishes(tmp_path, tiny_weights, small_disk):
    """The issue's scenario: 16 photos into a nearly full disk. Without mount (not root): the same
    batch under a file-size limit, which fails the writes the same way (EFBIG for ENOSPC)."""
    for i in range(16):
        noisy_photo(tmp_path / "in" / f"{i:02d}.jpg", (200 + 10 * i, 150), seed=i)
    out = small_disk or tmp_path / "out"
    if small_disk is not None:
        result = run(tmp_path / "in", "--output", out, "--model", tiny_weights, "--json")
        code, stderr, stdout, why = result.exit_code, result.output, result.stdout, "No space left on device"
    else:
        proc = child("--fsize", 40_000, "--", tmp_path / "in", "--output", out, "--model", tiny_weights, "--json")
        code, stderr, stdout, why = proc.returncode, proc.stderr, proc.stdout, "File too large"
    assert code == 1
    reasons = failed(stderr)
    done = assert_all_whole(out)
    assert reasons and done and len(reasons) + len(done) == 16
    assert all(r.startswith(why) for r in reasons.values()), reasons
    assert {Path(f).stem for f in reasons}.isdisjoint(p.stem.removesuffix("_color") for p in done)
    assert summary(stdout)["processed"] == len(done)
    if small_disk is not None:  # room again
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
    result = run(tmp_path / "in", "--output", out, "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    assert summary(result.stdout)["processed"] == len(reasons)
    assert summary(result.stdout)["skipped_existing"] == len(done)
    assert len(assert_all_whole(out)) == 16


def test_every_writer_fails_cleanly_under_a_file_size_limit(tmp_path, tiny_weights):
    """16-bit PNG and TIFF photos, weights (safetensors + JSON), a checkpoint, an ONNX export and a
    report file, each written past RLIMIT_FSIZE in a child: an error, nothing under the final name,
    no temporary file; the same writers under the limit succeed."""
    script = f"""
import json, resource, sys
import numpy as np, torch
from pathlib import Path
from colorize_cli.io.atomic import atomic_write, write_text
from colorize_cli.engine.export import export_onnx
from colorize_cli.io.images import Photo, write_image
from colorize_cli.models import create_model
from colorize_cli.engine.networks import export_generator
out = Path({str(tmp_path / "w")!r})
def save_checkpoint(p):  # as Trainer.save_checkpoint does
    with atomic_write(p) as f:
        torch.save({{"w": torch.randn(100_000)}}, f)
big = (np.random.default_rng(0).random((200, 200, 3)) * 65535).astype(np.uint16)
writers = {{
    "photo.png": lambda p: write_image(p, big, Photo(big)),
    "photo.tif": lambda p: write_image(p, big, Photo(big)),
    "photo.jpg": lambda p: write_image(p, (big >> 8).astype(np.uint8), Photo(big)),
    "weights.safetensors": lambda p: export_generator(create_model("unet-sn", width=8), "unet-sn", p),
    "checkpoint.pt": save_checkpoint,
    "model.onnx": lambda p: export_onnx({str(tiny_weights)!r}, p),
    "report.md": lambda p: write_text(p, "x" * 200_000),
}}
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
results = {{}}
for name, write in writers.items():
    try:
        write(out / name)
        results[name] = "written"
    except Exception as exc:
        results[name] = f"{{type(exc).__name__}}: {{exc}}"
print(json.dumps(results))
"""
    (tmp_path / "w").mkdir()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=ENV, timeout=120,
                          check=False)
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 7
    for name, result in results.items():
        if name == "checkpoint.pt":  # torch's own writer turns the EFBIG into "unexpected pos" RuntimeError
            assert result.startswith("RuntimeError"), result
            continue
        assert "File too large" in result or "EFBIG" in result or "Errno 27" in result, (name, result)
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == [], "nothing under a final name, no temporary"


# ---- SIGKILL -------------------------------------------------------------------------------------------------


def test_sigkill_at_random_moments_never_leaves_a_broken_output(tmp_path, tiny_weights):
    for i in range(16):
        noisy_photo(tmp_path / "in" / f"p{i:02d}.jpg", (640 + 8 * i, 480), seed=i)  # enough work to kill mid-batch
    out = tmp_path / "out"
    trials = 10
    proc = child("--kill-trials", trials, "--seed", 14, "--fresh", "--watch", out, "--",
                 tmp_path / "in", "--output", out, "--model", tiny_weights, "--batch-size", "2", "--quiet",
                 timeout=240)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert len(results) == trials
    assert [r["broken"] for r in results] == [{}] * trials  # every file under a final name decodes fully
    # kills land mid-batch (each after k of the 16 outputs; the jitter may let the last ones finish first)
    assert sum(r["killed"] and 0 < r["outputs"] < 16 for r in results) >= trials // 2, results
    result = run(tmp_path / "in", "--output", out, "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    s = summary(result.stdout)
    assert s["processed"] + s["skipped_existing"] == 16 and s["processed"] == 16 - results[-1]["outputs"]
    assert len(assert_all_whole(out)) == 16  # and the killed runs' temporary files are gone


# ---- permissions, unreadable folders ---------------------------------------------------------------------------


@pytest.fixture
def shared_dir(tiny_weights):
    """A folder the user nobody can reach (pytest's tmp_path is private to root), with the weights."""
    base = Path(tempfile.mkdtemp(prefix="colorize-faults-"))
    base.chmod(0o755)
    shutil.copy(tiny_weights, base / "tiny.safetensors")
    shutil.copy(tiny_weights.with_suffix(".json"), base / "tiny.json")
    for f in base.iterdir():
        f.chmod(0o644)
    yield base
    for p in base.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(base, ignore_errors=True)


def test_output_folder_made_read_only_during_the_batch(shared_dir):
    """The child runs as nobody (root would ignore permissions); an input subfolder it may not
    read is reported too."""
    src, out = shared_dir / "in", shared_dir / "out"
    for i in range(40):
        make_photo(src / f"p{i:02d}.png", size=(96, 96), seed=i, mode="L")
    make_photo(src / "locked" / "hidden.png", mode="L")
    make_photo(shared_dir / "warmup" / "w.png", mode="L")
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    for d in (src, shared_dir / "warmup"):
        d.chmod(0o777)
    (src / "locked").chmod(0o000)
    proc = subprocess.Popen([sys.executable, str(CHILD), "--as-nobody", str(shared_dir / "warmup"), "--", str(src),
                             "--output", str(out), "--model", str(shared_dir / "tiny.safetensors"), "--batch-size", "1",
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "COLORIZE_CACHE": str(shared_dir / "cache")})  # the ONNX export, readable
    deadline = time.time() + 60
    while time.time() < deadline and len(final_outputs(out)) < 3 and proc.poll() is None:
        time.sleep(0.02)
    out.chmod(0o555)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    reasons = failed(stderr)
    assert reasons.pop(str(src / "locked")) == "permission denied (folder not read)"
    done = final_outputs(out)
    assert 3 <= len(done) < 40 and len(reasons) + len(done) == 40, (len(done), reasons)
    assert all(r.startswith("permission denied") for r in reasons.values()), reasons
    assert "Traceback" not in stderr
    assert {str(p): whole(p) for p in done if whole(p)} == {}
    out.chmod(0o777)
    (src / "locked").chmod(0o755)
    result = run(src, "--output", out, "--model", shared_dir / "tiny.safetensors", "--json")
    assert result.exit_code == 0, result.output
    assert summary(result.stdout)["processed"] == 40 - len(done) + 1  # the rest, and hidden.png
    assert len(assert_all_whole(out)) == 41


def test_broken_links_link_loops_are_one_line_failures_and_linked_folders_are_followed(tmp_path, tiny_weights):
    src = tmp_path / "in"
    make_photo(src / "a.png", mode="L")
    make_photo(tmp_path / "elsewhere" / "b.png", mode="L")
    (src / "linked").symlink_to(tmp_path / "elsewhere")
    (src / "gone.jpg").symlink_to(tmp_path / "nothing.jpg")
    (src / "self.jpg").symlink_to(src / "self.jpg")
    (src / "sub").mkdir()
    (src / "sub" / "up").symlink_to(src)
    result = run(src, "--output", tmp_path / "out", "--model", tiny_weights, "--json")
    assert result.exit_code == 1
    reasons = failed(result.output)
    assert reasons == {
        str(src / "gone.jpg"): f"broken symbolic link (points to {tmp_path / 'nothing.jpg'}, which does not exist)",
        str(src / "self.jpg"): f"symbolic link loop (points to {src / 'self.jpg'})",
        str(src / "sub" / "up"): f"symbolic link loop (points to {src}, a folder above it)",
    }
    assert summary(result.stdout)["processed"] == 2 and len(summary(result.stdout)["failed"]) == 3
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in assert_all_whole(tmp_path / "out")) == [
        "a_color.png", "linked/b_color.png"]
    result = run(src / "gone.jpg", "--model", tiny_weights)  # named, not walked: the same line
    assert result.exit_code == 1 and "broken symbolic link" in result.output


# ---- two processes, reruns -------------------------------------------------------------------------------------


def test_two_processes_on_the_same_folder_both_finish_and_every_output_is_whole(tmp_path, tiny_weights):
    for i in range(30):
        make_photo(tmp_path / "in" / f"p{i:02d}.png", size=(80, 64), seed=i, mode="L")
    cmd = [sys.executable, "-m", "colorize_cli", str(tmp_path / "in"), "--model", str(tiny_weights), "--json",
           "--batch-size", "2"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert all("Traceback" not in err and "failed:" not in err for _, err in outs)
    summaries = [summary(o) for o, _ in outs]
    for s in summaries:
        assert s["processed"] + s["skipped_existing"] == 30  # each did or found every photo
    assert len(assert_all_whole(tmp_path / "in")) == 30
    result = run(tmp_path / "in", "--model", tiny_weights, "--json")
    assert summary(result.stdout)["skipped_existing"] == 30 and summary(result.stdout)["processed"] == 0


def test_a_rerun_redoes_outputs_that_are_not_whole_images(tmp_path, tiny_weights):
    for name in ("a", "b", "c"):
        make_photo(tmp_path / f"{name}.jpg", size=(64, 48), mode="L")
    assert run(tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg", "--model", tiny_weights).exit_code == 0
    cut = tmp_path / "a_color.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # what the old writer left on a full disk
    (tmp_path / "b_color.jpg").write_bytes(b"not an image at all")
    result = run(tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg", "--model", tiny_weights, "--json")
    assert result.exit_code == 0
    redone = [ln for ln in result.output.splitlines() if ln.startswith("redoing: ")]
    assert [ln.split(": ")[1] for ln in redone] == [str(cut), str(tmp_path / "b_color.jpg")]
    assert all("not a complete image (" in ln for ln in redone)
    assert (summary(result.stdout)["processed"], summary(result.stdout)["skipped_existing"]) == (2, 1)
    assert len(assert_all_whole(tmp_path)) == 3


# ---- shards ----------------------------------------------------------------------------------------------------


def test_shards_split_the_archive_disjointly_resume_alone_and_report_in_json(tmp_path, tiny_weights):
    names = [f"{d}/p{i:02d}.png" for d in ("a", "b", "c/d") for i in range(8)]
    for i, name in enumerate(names):
        make_photo(tmp_path / "archive" / name, size=(32, 24), seed=i, mode="L")
    (tmp_path / "archive" / "notes.txt").write_text("not a photo")
    done: dict[int, set[str]] = {}
    not_images = 0
    for index in (1, 2, 3):
        result = run(tmp_path / "archive", "--output", tmp_path / "out", "--shard", f"{index}/3",
                     "--model", tiny_weights, "--json")
        assert result.exit_code == 0, result.output
        s = summary(result.stdout)
        assert s["shard"]["index"] == index and s["shard"]["count"] == 3
        assert s["shard"]["images"] == s["processed"] > 0
        not_images += s["skipped_not_image"]
        done[index] = {str(p.relative_to(tmp_path / "out")) for p in final_outputs(tmp_path / "out")} - set().union(
            *done.values())
    assert sum(map(len, done.values())) == 24 and not_images == 1  # disjoint, and together the whole archive
    assert len(assert_all_whole(tmp_path / "out")) == 24
    # the same shard of the archive moved elsewhere is the same files; a rerun of it has nothing to do
    shutil.copytree(tmp_path / "archive", tmp_path / "moved")
    result = run(tmp_path / "moved", "--output", tmp_path / "out2", "--shard", "2/3", "--model", tiny_weights)
    assert {str(p.relative_to(tmp_path / "out2")) for p in final_outputs(tmp_path / "out2")} == done[2]
    result = run(tmp_path / "archive", "--output", tmp_path / "out", "--shard", "2/3", "--model", tiny_weights,
                 "--json")
    assert summary(result.stdout)["processed"] == 0 and summary(result.stdout)["skipped_existing"] == len(done[2])
    for bad in ("0/3", "4/3", "2", "a/b"):
        result = run(tmp_path / "archive", "--shard", bad, "--model", tiny_weights)
        assert result.exit_code == 2 and "--shard" in result.output


def test_shards_are_balanced():
    from colorize_cli.app.plan import shard_of

    keys = [f"scans/{year}/roll{r:03d}/IMG_{i:04d}.tif" for year in range(1950, 1960) for r in range(30)
            for i in range(40)]
    counts = np.bincount([shard_of(k, 8) for k in keys], minlength=9)[1:]
    assert counts.sum() == 12_000 and np.abs(counts - 1500).max() < 1500 * 0.05, counts


# ---- inputs that share a stem ----------------------------------------------------------------------------------


def test_inputs_that_share_a_stem_are_both_colorized_under_names_a_rerun_recognises(tmp_path, tiny_weights):
    make_photo(tmp_path / "hopper.png", mode="L")
    Image.open(make_photo(tmp_path / "x.png", mode="L", seed=1)).convert("P").save(tmp_path / "hopper.gif")
    (tmp_path / "x.png").unlink()
    result = run(tmp_path, "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in assert_all_whole(tmp_path)) == ["hopper_color.png", "hopper_gif_color.png"]
    result = run(tmp_path, "--model", tiny_weights, "--json")
    s = summary(result.stdout)
    assert (s["processed"], s["skipped_existing"], s["skipped_own_outputs"]) == (0, 2, 2)


def test_cleaning_leftovers_never_removes_a_file_being_written(tmp_path):
    from colorize_cli.io.atomic import atomic_write, remove_stale_parts

    orphan = tmp_path / ".a.jpg.abcd1234.part"  # what a killed run leaves: unlocked
    orphan.write_bytes(b"half a photo")
    empty = tmp_path / ".b.jpg.efgh5678.part"  # a run killed before its first flush leaves it empty
    empty.touch()
    (tmp_path / "notes.part").write_text("not ours")
    with atomic_write(tmp_path / "c.jpg") as f:
        f.write(b"being written")
        f.flush()
        assert remove_stale_parts(tmp_path) == 2
        assert f.temp.exists() and not orphan.exists() and not empty.exists() and (tmp_path / "notes.part").exists()
    assert (tmp_path / "c.jpg").read_bytes() == b"being written" and not f.temp.exists()


def test_a_writer_knows_when_a_cleaner_took_its_file_before_it_locked_it(tmp_path):
    """The window between creating a temporary file and locking it is too short for a test to hit
    (a cleaner of another process may delete the file in it); what the writer then checks is
    tested here: whether the name still leads to the file it holds open."""
    from colorize_cli.io.atomic import _names_our_file

    name = tmp_path / ".a.jpg.abcd1234.part"
    fd = os.open(name, os.O_CREAT | os.O_RDWR)
    try:
        assert _names_our_file(str(name), fd)
        name.unlink()  # a cleaner took it
        assert not _names_our_file(str(name), fd)
        name.write_bytes(b"")  # and someone made another file of that name
        assert not _names_our_file(str(name), fd)
    finally:
        os.close(fd)


def test_inputs_that_share_a_stem_keep_their_names_when_in_different_shards(tmp_path, tiny_weights):
    from colorize_cli.app.plan import shard_of

    make_photo(tmp_path / "in" / "hopper.png", mode="L")
    make_photo(tmp_path / "in" / "hopper.jpg", mode="L", seed=1)
    n = next(n for n in range(2, 50) if shard_of("hopper.png", n) != shard_of("hopper.jpg", n))
    for i in (shard_of("hopper.png", n), shard_of("hopper.jpg", n)):
        result = run(tmp_path / "in", "--output", tmp_path / "out", "--format", "png", "--shard", f"{i}/{n}",
                     "--model", tiny_weights, "--json")
        assert result.exit_code == 0 and summary(result.stdout)["processed"] == 1, result.output
    assert sorted(p.name for p in assert_all_whole(tmp_path / "out")) == ["hopper_color.png", "hopper_jpg_color.png"]


def test_colour_inputs_whose_outputs_fail_are_not_counted_as_colorized(tmp_path, tiny_weights):
    """'N colorized, M of them already in colour' counts only outputs that were written."""
    for i in range(3):
        make_photo(tmp_path / "in" / f"c{i}.png", size=(160, 120), seed=i, mode="RGB")
    proc = child("--fsize", 1_000, "--", tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights,
                 "--json")
    assert proc.returncode == 1 and len(failed(proc.stderr)) == 3
    s = summary(proc.stdout)
    assert (s["processed"], s["colored_inputs"]) == (0, 0)
    result = run(tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights, "--json")
    s = summary(result.stdout)
    assert (s["processed"], s["colored_inputs"]) == (3, 3)
