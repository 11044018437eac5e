"""Film writes are atomic and durable (colorize_cli.io.atomic): a join that the kernel cuts short
(RLIMIT_FSIZE in a child) leaves nothing under the final name and no temporary file, and the rerun
finishes the film from its segments; a second process on a film being written leaves it alone."""

import json
import os
import resource
import signal
import subprocess
import sys
import time

import av
from test_video import make_film

from colorize_cli.io.films import work_folder

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def colorize(*args, limit=None):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "colorize_cli", *map(str, args), "--json"], capture_output=True,
                          text=True, env=ENV, preexec_fn=set_limit if limit else None, check=False)


def test_a_join_cut_short_by_a_file_size_limit_leaves_no_output_and_resumes(tmp_path, tiny_weights):
    src = make_film(tmp_path / "long.mp4", size=(128, 96), frames=48, rate=24, grain=20.0)
    args = [src, "--model", tiny_weights, "--segment-seconds", "0.5"]  # 4 segments of 12 frames
    ref = colorize(*args, "--output", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    size = (tmp_path / "ref" / "long_color.mp4").stat().st_size
    target = tmp_path / "out" / "long_color.mp4"
    cut = colorize(*args, "--output", tmp_path / "out", limit=int(size * 0.8))  # each segment fits, the film not
    assert cut.returncode == 1, cut.stderr
    assert f"failed: {src}: File too large" in cut.stderr, cut.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == [work_folder(target).name]  # no temporary file
    done = colorize(*args, "--output", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["frames_resumed"] == 48
    with av.open(str(target)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 48
    assert sorted(p.name for p in target.parent.iterdir()) == ["long_color.mp4"]


def test_a_second_process_on_the_same_film_leaves_it_to_the_first(tmp_path, tiny_weights):
    src = make_film(tmp_path / "long.mp4", size=(128, 96), frames=48, rate=24)
    args = [sys.executable, "-m", "colorize_cli", str(src), "--model", str(tiny_weights), "--segment-seconds",
            "0.5", "--json"]
    target = tmp_path / "long_color.mp4"
    manifest = work_folder(target) / "manifest.json"
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not manifest.exists() and first.poll() is None:
            time.sleep(0.005)
        first.send_signal(signal.SIGSTOP)  # mid-film, holding its lock, for as long as the second runs
        assert not target.exists()
        second = subprocess.run(args, capture_output=True, text=True, env=ENV, check=False)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 0, second.stderr
    assert f"skipped: {src}: another colorize process is writing it" in second.stderr
    summary = json.loads(second.stdout.splitlines()[-1])
    assert summary["skipped_busy"] == 1 and summary["failed"] == [] and summary["processed"] == 0
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["frames"] == 48
    with av.open(str(target)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 48
    assert not work_folder(target).exists()
    # once it is done, a third run finds it done
    third = subprocess.run(args, capture_output=True, text=True, env=ENV, check=False)
    assert json.loads(third.stdout.splitlines()[-1])["skipped_existing"] == 1
