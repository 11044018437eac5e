"""Make a 10-second black-and-white demo film from ../shared/data/oldphotos.

Four shots of 2.5 s (24 fps, 640x480): a slow pan, a slow zoom in, a pan back, a zoom out, with
cuts between them, film grain, a little exposure flicker, and a sound track (a tone with tremolo,
a click at each cut), H.264 + AAC in an MP4. The film is made here from the data and never
committed. Example (docs/video.md):

    python tools/make_demo_film.py --data ../shared/data/oldphotos --output /tmp/demo/film.mp4
    colorize /tmp/demo/film.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
from PIL import Image

FPS, WIDTH, HEIGHT, SHOT_FRAMES = 24, 640, 480, 60
# (photo, first crop box, last crop box) in the photo's pixels: (left, top, right, bottom)
SHOTS = [
    ("ddcolor-Broadway_at_the_United_States_Hotel_Saratoga_Springs_N.Y._ca_1900-1915.jpg",
     (0, 40, 700, 565), (180, 40, 880, 565)),
    ("ddcolor-Einstein_Rejection_and_Crafting_a_Future.jpeg", (0, 60, 728, 606), (124, 150, 604, 510)),
    ("ddcolor-New_York_Riverfront_December_15_1931.jpg", (300, 100, 1000, 625), (60, 160, 760, 685)),
    (("klee_hp100-Dorothea_Lange_These_cotton_hoers_work_from_6_a.m._to_7_p.m._for_1.00_near_Clarksdale_"
      "Mississippi_June-July_1937._.jpg"), (240, 300, 720, 660), (0, 120, 960, 840)),
]


def smooth(t: float) -> float:
    """Ease in and out, as a camera operator would."""
    return t * t * (3 - 2 * t)


def frames(data: Path, grain: float, seed: int):
    rng = np.random.default_rng(seed)
    for name, first, last in SHOTS:
        photo = Image.open(data / name).convert("L")
        for i in range(SHOT_FRAMES):
            t = smooth(i / (SHOT_FRAMES - 1))
            box = tuple(a + (b - a) * t for a, b in zip(first, last))
            im = photo.transform((WIDTH, HEIGHT), Image.Transform.EXTENT, box, Image.Resampling.BICUBIC)
            px = np.asarray(im, np.float32) * rng.uniform(0.97, 1.03)  # exposure flicker
            px += rng.normal(0, grain, px.shape).astype(np.float32)  # grain
            yield np.clip(px, 0, 255).astype(np.uint8)


def sound(seconds: float, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 220 * t) * (0.75 + 0.25 * np.sin(2 * np.pi * 4 * t))
    for k in range(1, len(SHOTS)):  # a click at each cut
        at = int(k * SHOT_FRAMES / FPS * rate)
        tone[at:at + 200] += 0.6 * np.hanning(200)
    return tone.astype(np.float32)[None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/oldphotos"))
    ap.add_argument("--output", type=Path, default=Path("/tmp/demo/film.mp4"))
    ap.add_argument("--grain", type=float, default=7.0, help="standard deviation of the grain, 8-bit levels")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(args.output), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.codec_context.options = {"crf": "18"}
        audio = out.add_stream("aac", rate=48000, layout="mono")
        for gray in frames(args.data, args.grain, args.seed):
            frame = av.VideoFrame.from_ndarray(gray, format="gray").reformat(format="yuv420p")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        samples = sound(len(SHOTS) * SHOT_FRAMES / FPS)
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024].copy(), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    cuts = [k * SHOT_FRAMES for k in range(1, len(SHOTS))]
    print(f"{args.output}: {len(SHOTS) * SHOT_FRAMES} frames, {WIDTH}x{HEIGHT}, {FPS} fps, cuts before frames {cuts}")


if __name__ == "__main__":
    main()
