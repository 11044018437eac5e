"""Hard files from Pillow's own test images (tests/fixtures/README.md): what failed in issue 14's
run of the whole corpus (tools/pillow_corpus.py) and must not fail again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from colorize_cli.cli import app
from colorize_cli.io.images import read_image

FIXTURES = Path(__file__).parent / "fixtures" / "pillow"


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def warnings_of(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("warning: ")]


@pytest.mark.parametrize("name", ["broken_exif_dpi.jpg", "invalid-exif-without-x-resolution.jpg"])
def test_exif_that_cannot_be_written_back_is_dropped_with_a_warning(tmp_path, tiny_weights, name):
    result = run(FIXTURES / name, "--output", tmp_path, "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    assert warnings_of(result.output) == [
        f"warning: {FIXTURES / name}: EXIF XResolution, YResolution had invalid values and were dropped from the output"]
    with Image.open(tmp_path / name.replace(".jpg", "_color.jpg")) as out:
        out.load()
        exif = out.getexif()
        assert out.size == Image.open(FIXTURES / name).size
    assert 282 not in exif and 283 not in exif  # XResolution, YResolution
    if name == "broken_exif_dpi.jpg":
        assert exif[271] == "NIKON CORPORATION" and exif.get_ifd(0x8769)  # the rest is kept, sub-IFD included


def _tiff_samples(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        arr = page.asarray()
        return np.moveaxis(arr, 0, -1) if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE else arr


@pytest.mark.parametrize("name", ["tiff_16bit_RGBa.tiff", "tiff_tiled_planar_16bit_RGBa.tiff",
                                  "tiff_strip_planar_16bit_RGB.tiff"])
def test_sixteen_bit_lzw_planar_and_tiled_tiffs_stay_sixteen_bit(tmp_path, tiny_weights, name):
    result = run(FIXTURES / name, "--output", tmp_path, "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    out = tifffile.imread(tmp_path / name.replace(".tiff", "_color.tiff"))
    source = _tiff_samples(FIXTURES / name)
    assert out.dtype == np.uint16 and out.shape == source.shape == (40, 100, source.shape[2])
    assert len(np.unique(out[..., :3])) > 256
    if source.shape[2] == 4:
        assert np.array_equal(out[..., 3], source[..., 3])  # alpha exactly


def test_planar_and_contiguous_tiffs_of_the_same_picture_read_the_same():
    contiguous = read_image(FIXTURES / "tiff_16bit_RGBa.tiff")
    planar = read_image(FIXTURES / "tiff_tiled_planar_16bit_RGBa.tiff")
    assert np.array_equal(contiguous.pixels, planar.pixels) and np.array_equal(contiguous.alpha, planar.alpha)
    # premultiplied (associated) alpha is divided out
    raw = _tiff_samples(FIXTURES / "tiff_16bit_RGBa.tiff").astype(float)
    seen = raw[..., 3] > 32768
    expected = raw[..., :3][seen] * 65535 / raw[..., 3][seen][:, None]
    assert seen.any() and np.abs(contiguous.pixels[seen] - expected).max() <= 1


def test_inputs_sharing_a_stem_get_deterministic_names(tmp_path, tiny_weights):
    for name in ("hopper.png", "hopper.gif"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    result = run(tmp_path, "--model", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*_color*")) == ["hopper_color.png", "hopper_gif_color.png"]
    for p in tmp_path.glob("*_color*"):
        assert Image.open(p).size == (128, 128)
    again = json.loads(run(tmp_path, "--model", tiny_weights, "--json").stdout.strip().splitlines()[-1])
    assert (again["processed"], again["skipped_existing"], again["skipped_own_outputs"]) == (0, 2, 2)


def test_pillow_warnings_are_one_line_warnings_of_the_file_or_dropped(tmp_path, tiny_weights):
    bad = tmp_path / "in" / "bad_exif.jpg"  # an EXIF directory whose tag points past the end of the block
    bad.parent.mkdir()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (48, 1))).save(
        bad, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x02\x00\x0f\x01\x02\x00\x20\x00\x00\x00\x40\x00\x00\x00")
    shutil.copy(bad, tmp_path / "in" / "bad_exif_2.jpg")  # the same warning, for each file that has it
    shutil.copy(FIXTURES / "pil123p.png", tmp_path / "in")
    result = run(tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    assert "UserWarning" not in result.output and "Palette images" not in result.output  # advice to programmers
    lines = warnings_of(result.output)
    # Pillow's wording changes between releases (10.0: "Truncated File Read"; later: "Tag data larger
    # than file. Skipping tag 271" and "Corrupt EXIF data ..."): each file gets the same lines, whatever they say
    said = [[ln.removeprefix(f"warning: {f}: ") for ln in lines if ln.startswith(f"warning: {f}: ")]
            for f in (bad, tmp_path / "in" / "bad_exif_2.jpg")]
    assert said[0] and said[0] == said[1], lines
    assert any("Tag data larger than file" in s or "Truncated File Read" in s for s in said[0]), lines
    assert len(list((tmp_path / "out").glob("*_color.*"))) == 3
