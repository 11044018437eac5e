"""The public Python API (docs/api.md): ``Colorizer`` on PIL images and NumPy arrays, ``colorize_batch``
returning a summary without printing, the loaders, and an import that does not pull in torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import make_photo
from PIL import Image
from typer.testing import CliRunner

import colorize_cli
from colorize_cli import BatchError, Colorizer, colorize_batch, load_model, resolve_weights
from colorize_cli.cli import app
from colorize_cli.color import rgb_to_lab


def lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_lab((rgb.astype(np.float32) / (65535 if rgb.dtype == np.uint16 else 255)).transpose(2, 0, 1))[0]


def test_a_pil_image_gives_a_pil_image_of_its_size_with_its_luminance(tiny_weights, tmp_path):
    gray = Image.open(make_photo(tmp_path / "p.png", size=(53, 37), mode="L"))
    out = Colorizer(str(tiny_weights)).colorize(gray)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (53, 37)
    truth = np.asarray(gray, dtype=np.float64) / 255
    expected_l = np.where(truth > 0.04045, ((truth + 0.055) / 1.055) ** 2.4, truth / 12.92)  # sRGB -> linear Y
    expected_l = 116 * np.cbrt(np.maximum(expected_l, 216 / 24389)) - 16
    assert np.abs(lightness(np.asarray(out)) - expected_l).mean() < 0.6


def test_the_api_and_the_command_line_give_the_same_pixels(tiny_weights, tmp_path):
    src = make_photo(tmp_path / "p.png", size=(53, 37), mode="L")
    result = CliRunner().invoke(app, [str(src), "--model", str(tiny_weights), "-q"])
    assert result.exit_code == 0, result.output
    cli = np.asarray(Image.open(tmp_path / "p_color.png"))
    api = Colorizer(str(tiny_weights)).colorize(np.asarray(Image.open(src)))
    assert api.dtype == np.uint8 and api.shape == (37, 53, 3)
    assert np.array_equal(api, cli)


def test_arrays_keep_their_bit_depth_and_alpha(tiny_weights):
    colorizer = Colorizer(str(tiny_weights))
    rng = np.random.default_rng(0)
    gray16 = (rng.random((30, 40)) * 65535).astype(np.uint16)
    out16 = colorizer.colorize(gray16)
    assert out16.dtype == np.uint16 and out16.shape == (30, 40, 3)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    out = colorizer.colorize(rgba)
    assert out.shape == (30, 40, 4) and np.array_equal(out[..., 3], rgba[..., 3])
    image = colorizer.colorize(Image.fromarray(rgba, "RGBA"))
    assert image.mode == "RGBA" and np.array_equal(np.asarray(image)[..., 3], rgba[..., 3])


def test_what_cannot_be_an_image_is_a_clear_error(tiny_weights):
    colorizer = Colorizer(str(tiny_weights))
    with pytest.raises(ValueError, match="uint8 or uint16, not float64"):
        colorizer.colorize(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"not \(8, 8, 2\)"):
        colorizer.colorize(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(TypeError, match="not str"):
        colorizer.colorize("photo.jpg")


def test_a_batch_returns_its_summary_and_prints_nothing(tiny_weights, tmp_path, capfd):
    folder = tmp_path / "album"
    make_photo(folder / "a.png")
    make_photo(folder / "sub" / "b.jpg", mode="L")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    summary = colorize_batch([folder], output=str(tmp_path / "out"), model=str(tiny_weights))  # Path or str
    assert capfd.readouterr() == ("", "")
    assert summary.processed == 2 and not summary.ok
    assert [f for f, _ in summary.failed] == [str(folder / "broken.png")]
    assert any(m.startswith(f"failed: {folder / 'broken.png'}: not a readable image") for m in summary.messages)
    assert (tmp_path / "out" / "a_color.png").is_file() and (tmp_path / "out" / "sub" / "b_color.jpg").is_file()
    again = colorize_batch([str(folder)], output=tmp_path / "out", model=str(tiny_weights))
    assert again.skipped_existing == 2 and again.processed == 0


def test_a_batch_that_cannot_start_raises_and_writes_nothing(tiny_weights, tmp_path):
    photo = make_photo(tmp_path / "in" / "a.png")
    with pytest.raises(BatchError, match="no such file or folder"):
        colorize_batch([str(photo), str(tmp_path / "missing.jpg")], model=str(tiny_weights))
    with pytest.raises(BatchError, match="unknown model 'nope'"):
        colorize_batch([str(photo)], model="nope")
    assert [p.name for p in photo.parent.iterdir()] == ["a.png"]


def test_the_loaders_give_the_default_weights_and_network():
    path = resolve_weights("default")
    assert path.suffix == ".safetensors" and path.is_file()
    net, config = load_model("default")
    assert not net.training and config["arch"] == "efflite-unet-gan"


def test_importing_the_package_does_not_import_torch():
    code = "import sys, colorize_cli; print('torch' in sys.modules, colorize_cli.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", colorize_cli.__version__]
    assert set(colorize_cli.__all__) <= set(dir(colorize_cli))


def test_every_public_name_is_importable_and_listed():
    names = set(colorize_cli.__all__) - {"__version__"}
    assert names == set(colorize_cli._API)
    for name in names:
        assert getattr(colorize_cli, name) is not None


def test_the_api_names_options_by_their_python_names_and_the_command_line_by_its_flags(tiny_weights, tmp_path):
    with pytest.raises(ValueError, match=r"^device gpu: not a device; use cpu, cuda, cuda:N or auto$"):
        Colorizer(str(tiny_weights), device="gpu")
    with pytest.raises(ValueError, match=r"^half precision needs a GPU \(device cuda\)$"):
        Colorizer(str(tiny_weights), half=True)
    src = make_photo(tmp_path / "p.png")
    result = CliRunner().invoke(app, [str(src), "--model", str(tiny_weights), "--device", "gpu"])
    assert result.exit_code == 2 and "error: --device gpu: not a device; use cpu, cuda, cuda:N or auto" in result.output
    result = CliRunner().invoke(app, [str(src), "--model", str(tiny_weights), "--half"])
    assert result.exit_code == 2 and "error: --half precision needs a GPU (--device cuda)" in result.output
    with pytest.raises(BatchError, match=r"^suffix must not be empty without output \(the input would be"):
        colorize_batch([src], suffix="", model=str(tiny_weights))
    result = CliRunner().invoke(app, [str(src), "--model", str(tiny_weights), "--suffix", ""])
    assert result.exit_code == 2 and "error: --suffix must not be empty without --output" in result.output


def test_a_pil_photo_is_colorized_upright_as_the_command_line_reads_it(tiny_weights, tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    Image.open(make_photo(tmp_path / "p.png", size=(80, 40), mode="L")).save(path, exif=exif)
    out = Colorizer(str(tiny_weights)).colorize(Image.open(path))
    assert out.size == (40, 80)
    result = CliRunner().invoke(app, [str(path), "--model", str(tiny_weights), "-q"])
    assert result.exit_code == 0 and Image.open(tmp_path / "phone_color.jpg").size == out.size


def test_an_error_line_of_the_command_line_says_all_the_error_says(tiny_weights, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(tiny_weights), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(tiny_weights))
    missing = min(tensors)
    del tensors[missing]
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, str(broken), metadata=meta)
    result = CliRunner().invoke(app, [str(make_photo(tmp_path / "p.png")), "--model", str(broken)])
    assert result.exit_code == 2 and "Missing key(s)" in result.output and missing in result.output
