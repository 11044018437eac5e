"""A film's colour is the photo colour of each frame (right U/V, right matrix), and a cut starts the
colour afresh. Tiny films made here; the model is the tests' tiny one."""

import av
import numpy as np
from PIL import Image
from test_video import run, texture

from colorize_cli.app.films import film_flicker
from colorize_cli.color import rgb_to_lab
from colorize_cli.engine.temporal import ChromaStabilizer
from colorize_cli.resample import pool2

BT601 = (0.299, 0.114)


def _plane(plane) -> np.ndarray:
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width].astype(np.float32)


def decoded(path, matrix=BT601):
    """Each frame's (Y, a/b of the frame in Lab (2, h, w) at chroma resolution), converted here from
    its limited-range YUV 4:2:0 planes with ``matrix``: the colour a player shows for that tag."""
    kr, kb = matrix
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            y, u, v = (_plane(p) for p in f.planes[:3])
            y2 = pool2(y)  # L at chroma resolution
            yn, cb, cr = (y2 - 16) / 219, (u - 128) / 224, (v - 128) / 224
            r = yn + 2 * (1 - kr) * cr
            b = yn + 2 * (1 - kb) * cb
            g = (yn - kr * r - kb * b) / (1 - kr - kb)
            rgb = np.clip(np.stack([r, g, b]), 0, 1)
            out.append((y, rgb_to_lab(rgb)[1:]))
    return out


def photo_ab(path) -> np.ndarray:
    """a/b of a colour photo (2, h, w), averaged over 2x2 blocks (4:2:0's chroma resolution)."""
    rgb = (np.asarray(Image.open(path).convert("RGB"), np.float32) / 255).transpose(2, 0, 1)
    return pool2(rgb_to_lab(rgb)[1:])


def limited_to_gray(y: np.ndarray) -> np.ndarray:
    """What a limited-range Y shows as 8-bit gray."""
    return np.clip(np.round((y - 16) * 255 / 219), 0, 255).astype(np.uint8)


def test_film_chroma_is_the_photo_colour_of_the_frame(tmp_path, tiny_weights):
    src = tmp_path / "reel.mp4"
    with av.open(str(src), "w") as out:
        video = out.add_stream("libx264", rate=12, options={"crf": "0"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.colorspace, video.codec_context.color_range = 6, 1  # BT.601, limited: tagged
        for i in range(3):
            gray = texture(48, 64, seed=i).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.stack([gray] * 3, -1), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=6)
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    result = run(src, "--model", tiny_weights, "--crf", "0", "--no-stabilize", "--size", "64")
    assert result.exit_code == 0, result.output
    film = decoded(tmp_path / "reel_color.mp4")
    for k, (y, film_ab) in enumerate(film):
        # the same frame as a gray photo, colorized by the same model at the same size
        Image.fromarray(limited_to_gray(y)).save(tmp_path / f"frame{k}.png")
        assert run(tmp_path / f"frame{k}.png", "--model", tiny_weights, "--size", "64").exit_code == 0
        ab = photo_ab(tmp_path / f"frame{k}_color.png")
        chroma = float(np.sqrt((ab ** 2).sum(0)).mean())
        error = float(np.sqrt(((film_ab - ab) ** 2).sum(0)).mean())
        assert chroma > 5  # the model gives colour to compare
        assert error < 0.1 * chroma, (error, chroma)  # 4:2:0, rounding: 0.05; U/V swapped 1.7, BT.709 0.19
    with av.open(str(tmp_path / "reel_color.mp4")) as c:
        assert c.streams.video[0].codec_context.colorspace == 6  # the output keeps the tag


def two_shots(h=48, w=64):
    """Two shots of 6 frames: the left half the same texture in both, the right half dark in the first
    and bright in the second (a lamp, a new background): a hard cut by the luminance histogram, and
    the left half, whose luminance does not change, is where a smoother that missed the cut would
    carry the first shot's colour on."""
    kept = texture(h, w, seed=3)
    stripes = (np.arange(w) // 8) % 2 == 1  # 8-pixel columns, every other one changes
    shots = [np.where(stripes, float(level), kept).astype(np.uint8) for level in (25, 230)]
    return [shots[0]] * 6 + [shots[1]] * 6


def write_gray_film(path, frames, rate=12):
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"crf": "0"})
        video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for gray in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(np.stack([gray] * 3, -1), format="rgb24")):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return path


def test_a_cut_starts_the_colour_afresh(tmp_path, tiny_weights):
    src = write_gray_film(tmp_path / "cut.mp4", two_shots())
    assert run(src, "--model", tiny_weights, "--crf", "0", "--size", "64").exit_code == 0
    assert run(src, "--model", tiny_weights, "--crf", "0", "--size", "64", "--no-stabilize",
               "--output", tmp_path / "raw").exit_code == 0
    _, cuts, _ = film_flicker(tmp_path / "cut_color.mp4")
    assert cuts == 1  # the one cut, found on the output's luminance
    stable, raw = decoded(tmp_path / "cut_color.mp4"), decoded(tmp_path / "raw" / "cut_color.mp4")
    # right after the cut, the left half (unchanged luminance) has the new shot's colour, frame by frame's
    left = (np.arange(32) // 4) % 2 == 0  # the unchanged stripes at chroma resolution
    after = float(np.sqrt(((stable[6][1] - raw[6][1])[:, :, left] ** 2).sum(0)).mean())
    shift = float(np.sqrt(((raw[5][1] - raw[6][1])[:, :, left] ** 2).sum(0)).mean())
    assert shift > 1.0  # the network colours the left half differently in the two shots
    assert after < 0.05, (after, shift)  # identical (lossless, same prediction); carried over: 0.4


def test_the_stabiliser_restarts_at_a_cut_and_smooths_within_a_shot():
    frames = [f.astype(np.float32) / 2.55 for f in two_shots()]
    first, second = np.array([30.0, -20.0], np.float32), np.array([-25.0, 35.0], np.float32)
    stabilizer = ChromaStabilizer()
    out = []
    for t, lum in enumerate(frames):
        ab = np.broadcast_to((first if t < 6 else second)[:, None, None], (2, *lum.shape))
        noise = 4 * np.random.default_rng(t).standard_normal((2, *lum.shape)).astype(np.float32)
        out.append(stabilizer(lum, ab + noise))
    assert stabilizer.cuts == 1
    # the frame after the cut is its own prediction: nothing of the first shot's colour
    assert float(np.abs(out[6].mean((1, 2)) - second).max()) < 0.5
    # within a shot, the noise is averaged down
    assert float((out[5] - first[:, None, None]).std()) < 0.6 * 4
