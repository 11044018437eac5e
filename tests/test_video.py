"""Films: frames, timestamps, size, rotation and sound kept; luminance kept; no flicker; resumable;
bad films reported one line each. Tiny films are made here with PyAV."""

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import make_photo
from test_photos import _run_in_terminal
from typer.testing import CliRunner

from colorize_cli.app.films import film_flicker
from colorize_cli.cli import app
from colorize_cli.engine.temporal import estimate_flow
from colorize_cli.io.films import work_folder


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A gray picture with detail at several scales (float, 0..255)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 120 + 50 * np.sin(x / 9 + rng.uniform(0, 6)) * np.cos(y / 13) + 30 * np.sin((x + 2 * y) / 5)
    blobs = rng.uniform(0, 1, (6, 3)) * [w, h, 1]
    for bx, by, s in blobs:
        img += 60 * (s - 0.5) * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / 60)
    return np.clip(img, 0, 255)


def make_film(path, size=(64, 48), frames=12, rate=12, audio=True, pix_fmt="yuv420p", codec="libx264",
              pts=None, time_base=None, rotate=None, sar=None, pan=0, grain=0.0, colour=False,
              container_format=None):
    """A small gray film: a texture panned by ``pan`` px per frame, with ``grain``; optional sound."""
    w, h = size
    rng = np.random.default_rng(1)
    scene = texture(h, w + pan * frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container_format) as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        if time_base:
            video.time_base = video.codec_context.time_base = time_base
        if rotate:
            video.set_display_rotation(rotate)
        if sar:
            video.codec_context.sample_aspect_ratio = sar
        sound = out.add_stream("aac", rate=8000, layout="mono") if audio else None
        for i in range(frames):
            gray = scene[:, i * pan:i * pan + w] + rng.normal(0, grain, (h, w)) if grain else scene[:, :w] + 3 * i
            gray = np.clip(gray, 0, 255).astype(np.uint8)
            rgb = np.stack([gray, gray, np.clip(gray.astype(int) + 60, 0, 255).astype(np.uint8) if colour else gray], -1)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], video.time_base
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound:
            t = np.arange(int(8000 * frames / rate)) / 8000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, samples.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024].copy(), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 8000, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def _plane(plane) -> np.ndarray:
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width].copy()


def film_facts(path):
    """Frame times (exact), Y and U planes, size, pixel format, SAR, rotation, audio packet bytes."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        facts = {"times": [f.pts * f.time_base for f in frames], "size": (frames[0].width, frames[0].height),
                 "pix_fmt": frames[0].format.name, "sar": v.sample_aspect_ratio, "rotation": frames[0].rotation,
                 "y": [_plane(f.planes[0]) for f in frames], "u": [_plane(f.planes[1]) for f in frames]}
    with av.open(str(path)) as c:
        facts["audio"] = [bytes(p) for p in c.demux(*c.streams.audio) if p.size] if c.streams.audio else []
    return facts


def summary_of(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_film_keeps_frames_timestamps_size_rotation_sound_and_luminance(tmp_path, tiny_weights):
    src = make_film(tmp_path / "reel.mp4", frames=14, rotate=90, sar=Fraction(4, 3))
    result = run(src, "--model", tiny_weights, "--crf", "0", "--json")
    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert summary["processed"] == 1 and summary["videos"] == 1 and summary["frames"] == 14
    before, after = film_facts(src), film_facts(tmp_path / "reel_color.mp4")
    assert after["times"] == before["times"] and len(after["times"]) == 14
    assert after["size"] == (64, 48) and after["pix_fmt"] == "yuv420p"
    assert after["sar"] == Fraction(4, 3) and after["rotation"] == 90
    assert after["audio"] == before["audio"] and len(after["audio"]) > 3  # copied packet for packet
    for y0, y1 in zip(before["y"], after["y"]):
        assert np.array_equal(y0, y1)  # lossless H.264: the luminance is the input's, exactly
    assert max(np.abs(u.astype(int) - 128).max() for u in after["u"]) > 2  # and it has colour
    with av.open(str(tmp_path / "reel_color.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    assert not work_folder(tmp_path / "reel_color.mp4").exists()


def test_variable_frame_rate_in_many_segments_keeps_every_timestamp(tmp_path, tiny_weights):
    pts = [0, 40, 90, 100, 180, 260, 270, 400, 410, 500, 610, 615]
    src = make_film(tmp_path / "vfr.mkv", frames=len(pts), pts=pts, time_base=Fraction(1, 1000))
    result = run(src, "--model", tiny_weights, "--segment-seconds", "0.15")  # 5 segments, default crf
    assert result.exit_code == 0, result.output
    before, after = film_facts(src), film_facts(tmp_path / "vfr_color.mkv")
    assert after["times"] == before["times"] == [Fraction(p, 1000) for p in pts]
    assert after["audio"] == before["audio"]
    lum_error = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(before["y"], after["y"])])
    assert lum_error < 3.0  # lossy, but the luminance is the input's


def test_odd_sizes_are_encoded_yuv444p_at_their_size(tmp_path, tiny_weights):
    src = make_film(tmp_path / "odd.mp4", size=(35, 23), frames=5, pix_fmt="yuv444p", audio=False)
    result = run(src, "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    assert "odd size 35x23: encoded yuv444p" in result.output
    after = film_facts(tmp_path / "odd_color.mp4")
    assert after["size"] == (35, 23) and after["pix_fmt"] == "yuv444p" and len(after["times"]) == 5


def test_folders_colorize_films_beside_photos_and_reruns_skip_them(tmp_path, tiny_weights):
    make_photo(tmp_path / "in" / "a.png", mode="L")
    make_film(tmp_path / "in" / "reel.mov", frames=4)
    make_film(tmp_path / "in" / "sub" / "clip.webm", frames=3, codec="libvpx-vp9", audio=False)
    result = run(tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    got = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*"))
    assert got == ["a_color.png", "reel_color.mov", "sub/clip_color.webm"]
    summary = summary_of(result)
    assert summary["processed"] == 3 and summary["videos"] == 2 and summary["frames"] == 7
    with av.open(str(tmp_path / "out" / "sub" / "clip_color.webm")) as c:
        assert c.streams.video[0].codec_context.name == "vp9"  # WebM holds VP9, not H.264
    summary = summary_of(run(tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights, "--json"))
    assert summary["skipped_existing"] == 3 and summary["processed"] == 0


def test_codec_and_colour_options(tmp_path, tiny_weights):
    src = make_film(tmp_path / "c.mp4", frames=3, audio=False, colour=True)
    assert run(src, "--model", tiny_weights, "--codec", "nosuch").exit_code == 2
    result = run(src, "--model", tiny_weights, "--skip-color", "--json")
    assert summary_of(result)["skipped_color"] == 1 and not (tmp_path / "c_color.mp4").exists()
    result = run(src, "--model", tiny_weights, "--codec", "mpeg4", "--json")
    assert result.exit_code == 0, result.output
    assert summary_of(result)["colored_inputs"] == 1
    with av.open(str(tmp_path / "c_color.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"


def test_bad_films_fail_one_line_each_and_the_batch_goes_on(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    make_photo(folder / "good.png", mode="L")
    (folder / "noise.mp4").write_bytes(random.Random(0).randbytes(4000))
    # noise that FFmpeg's probe takes for LRC lyrics (a subtitle format): still not a readable video
    (folder / "lyrics.mp4").write_bytes(random.Random(131).randbytes(4000))
    with av.open(str(folder / "sound.m4a.mp4"), "w") as out:  # sound only
        stream = out.add_stream("aac", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    make_film(tmp_path / "long.mkv", frames=48, rate=4, audio=False)  # 12 s
    data = (tmp_path / "long.mkv").read_bytes()
    (folder / "cut.mkv").write_bytes(data[:len(data) // 2])  # a download that stopped half-way
    make_film(tmp_path / "x.avi", frames=3, codec="mpeg4", audio=False)
    (folder / "alien.avi").write_bytes((tmp_path / "x.avi").read_bytes().replace(b"FMP4", b"ZZZ9"))
    result = run(folder, "--model", tiny_weights, "--json")
    assert result.exit_code == 1
    failed = {line.split(": ")[1]: line for line in result.output.splitlines() if line.startswith("failed: ")}
    assert sorted(failed) == sorted(str(folder / n) for n in ("noise.mp4", "lyrics.mp4", "sound.m4a.mp4",
                                                                  "cut.mkv", "alien.avi"))
    assert "not a readable video" in failed[str(folder / "noise.mp4")]
    assert "not a readable video" in failed[str(folder / "lyrics.mp4")]
    assert "no video stream (only 1 audio stream)" in failed[str(folder / "sound.m4a.mp4")]
    assert "truncated" in failed[str(folder / "cut.mkv")]
    assert "unsupported video codec" in failed[str(folder / "alien.avi")]
    summary = summary_of(result)
    assert summary["processed"] == 1 and len(summary["failed"]) == 5
    assert sorted(p.name for p in folder.iterdir()) == ["alien.avi", "cut.mkv", "good.png", "good_color.png",
                                                         "lyrics.mp4", "noise.mp4", "sound.m4a.mp4"]  # no output, no work folder


def test_stabilised_colour_flickers_less_than_frame_by_frame(tmp_path, tiny_weights):
    src = make_film(tmp_path / "pan.mp4", size=(96, 64), frames=16, pan=2, grain=8.0, audio=False)
    # the measure's motion estimate finds the pan: frame t shows at x what frame t-1 had at x + 2
    with av.open(str(src)) as c:
        lum = [f.to_ndarray(format="gray").astype(np.float32) / 2.55 for f in c.decode(video=0)]
    flow = np.stack([estimate_flow(a, b)[:, 8:-8, 8:-24] for a, b in itertools.pairwise(lum)])
    assert abs(float(np.median(flow[:, 0])) - 2) < 0.15 and abs(float(np.median(flow[:, 1]))) < 0.15
    assert run(src, "--model", tiny_weights, "--size", "96", "--crf", "0").exit_code == 0
    assert run(src, "--model", tiny_weights, "--size", "96", "--crf", "0", "--no-stabilize",
               "--output", tmp_path / "raw").exit_code == 0
    stable, cuts, chroma_stable = film_flicker(tmp_path / "pan_color.mp4")
    raw, _, chroma_raw = film_flicker(tmp_path / "raw" / "pan_color.mp4")
    assert cuts == 0
    assert stable < 0.7 * raw, (stable, raw)
    assert chroma_stable > 0.8 * chroma_raw  # steadier, not washed out


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def test_an_interrupted_film_resumes_into_one_seamless_file(tmp_path, tiny_weights):
    src = make_film(tmp_path / "long.mp4", size=(128, 96), frames=64, rate=24)  # 6 segments
    args = [sys.executable, "-m", "colorize_cli", str(src), "--model", str(tiny_weights), "--segment-seconds", "0.5",
            "--batch-size", "2", "--json"]
    target, work = tmp_path / "long_color.mp4", work_folder(tmp_path / "long_color.mp4")

    def finished_segments():
        try:
            return len(json.loads((work / "manifest.json").read_text())["segments"])
        except (OSError, ValueError):
            return 0

    # Ctrl-C: exit 130, nothing under the final name
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    deadline = time.time() + 60
    while time.time() < deadline and finished_segments() < 1:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err and not target.exists()
    # a kill: the segments finished so far stay
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    first = finished_segments()
    while time.time() < deadline and finished_segments() < first + 2:
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    kept = finished_segments()
    assert 0 < kept < 6 and not target.exists()
    # the rerun continues after them and joins one file
    done = subprocess.run(args, capture_output=True, text=True, env=_env(), check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 64 and summary["frames_resumed"] >= kept * 12
    assert "resumed:" in done.stderr and not work.exists()
    resumed = film_facts(target)
    assert resumed["times"] == film_facts(src)["times"]
    # the same pixels as a run never interrupted
    assert run(src, "--model", tiny_weights, "--segment-seconds", "0.5", "--batch-size", "2",
               "--output", tmp_path / "once").exit_code == 0
    once = film_facts(tmp_path / "once" / "long_color.mp4")
    assert all(np.array_equal(a, b) for a, b in zip(once["u"], resumed["u"]))


def test_progress_shows_frames_and_fps_on_a_terminal(tmp_path, tiny_weights):
    src = make_film(tmp_path / "p.mp4", frames=6, audio=False)
    code, screen = _run_in_terminal([str(src), "--model", str(tiny_weights)])
    assert code == 0
    assert "6/6" in screen and "frames" in screen and "fps" in screen and "1 of them film (6 frames)" in screen


@pytest.mark.parametrize("suffix", [".avi", ".m4v", ".mkv"])
def test_other_containers(tmp_path, tiny_weights, suffix):
    src = make_film(tmp_path / f"f{suffix}", frames=3, codec="mpeg4" if suffix == ".avi" else "libx264")
    result = run(src, "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    after = film_facts(tmp_path / f"f_color{suffix}")
    assert len(after["times"]) == 3 and after["audio"] == film_facts(src)["audio"]
