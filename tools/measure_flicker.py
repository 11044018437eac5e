"""Print the flicker measure of films: the mean motion-compensated change of chroma between
consecutive frames, in CIELAB a/b units (docs/video.md says how it is computed).

    python tools/measure_flicker.py /tmp/demo/film_color.mp4 /tmp/demo/perframe/film_color.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

from colorize_cli.app.films import film_flicker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("films", nargs="+", type=Path)
    ap.add_argument("--size", type=int, default=256, help="long side, in pixels, at which it is measured")
    args = ap.parse_args()
    for film in args.films:
        value, cuts, chroma = film_flicker(film, args.size)
        print(f"{film}: flicker {value:.3f} (Lab a/b units per frame), mean chroma {chroma:.2f}, "
              f"{cuts} cuts left out")


if __name__ == "__main__":
    main()
