"""Every film suffix colorize accepts is written back in its own container; a text file with a film
suffix is not a film; a film output cut short is redone on the next run."""

import json

import av
import numpy as np
import pytest
from conftest import make_photo
from test_video import make_film, run, summary_of

from colorize_cli.io.films import CONTAINERS, VIDEO_SUFFIXES, default_codec


def frame_count(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.mark.parametrize("suffix", sorted(VIDEO_SUFFIXES))
def test_every_film_suffix_is_written_with_default_settings(tmp_path, tiny_weights, suffix):
    codec = default_codec(suffix)
    src = make_film(tmp_path / f"f{suffix}", frames=6, rate=25, audio=False, codec=codec,
                    container_format=CONTAINERS[suffix][0])
    assert frame_count(src) == 6
    result = run(src, "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    out = tmp_path / f"f_color{suffix}"
    assert summary_of(result)["frames"] == 6 and frame_count(out) == 6
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == av.codec.Codec(codec, "w").canonical_name
        u = [np.frombuffer(f.planes[1], np.uint8) for f in c.decode(video=0)]
    assert max(int(np.abs(p.astype(int) - 128).max()) for p in u) > 2  # coloured, not only copied


def test_a_text_file_with_a_film_suffix_is_not_a_film(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    make_photo(folder / "a.png", mode="L")
    (folder / "app.ts").write_text("export const answer: number = 42;\n" * 20)
    (folder / "mod.mts").write_text("import { x } from './x.js'; // é\n")
    make_film(folder / "reel.ts", frames=4, rate=25, audio=False, container_format="mpegts")
    result = run(folder, "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    summary = summary_of(result)
    assert summary["failed"] == [] and summary["processed"] == 2 and summary["videos"] == 1
    assert summary["skipped_not_image"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_color.png", "app.ts", "mod.mts", "reel.ts",
                                                         "reel_color.ts"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mpg"])
def test_a_film_output_cut_short_is_redone(tmp_path, tiny_weights, suffix):
    src = make_film(tmp_path / f"long{suffix}", frames=48, rate=25, audio=False, codec=default_codec(suffix),
                    container_format=CONTAINERS[suffix][0])
    out = tmp_path / "out" / f"long_color{src.suffix}"
    assert run(src, "--model", tiny_weights, "--output", tmp_path / "out").exit_code == 0
    whole = out.read_bytes()
    # an mp4 cut anywhere loses its index (written last); Matroska and MPEG-PS lose their last frames
    out.write_bytes(whole[:len(whole) // 2])
    result = run(src, "--model", tiny_weights, "--output", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    assert f"redoing: {out}: not a complete film (" in result.output
    assert summary_of(result)["processed"] == 1 and frame_count(out) == 48
    # and a whole output is done: the next run skips it without a word
    result = run(src, "--model", tiny_weights, "--output", tmp_path / "out", "--json")
    assert "redoing" not in result.output and json.loads(result.stdout.splitlines()[-1])["skipped_existing"] == 1
