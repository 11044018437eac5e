import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import make_photo
from PIL import Image
from skimage.color import rgb2lab
from typer.testing import CliRunner

from colorize_cli.cli import app


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def _l_channel(path: Path) -> np.ndarray:
    return rgb2lab(np.asarray(Image.open(path).convert("RGB")))[..., 0]


def test_colorizes_a_file_beside_it_keeping_size_and_luminance(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "old photo.jpg", size=(53, 37), mode="L")
    result = run(src, "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    out = tmp_path / "old photo_color.jpg"
    assert out.exists()
    with Image.open(out) as im:
        assert im.size == (53, 37) and im.mode == "RGB"
    # luminance is the input's, up to JPEG re-encoding of the colour image
    diff = np.abs(_l_channel(out) - _l_channel(src))
    assert diff.mean() < 1.5


def test_luminance_is_kept_exactly_before_quantisation(tiny_weights):
    from colorize_cli.color import rgb_to_lab
    from colorize_cli.engine.colorizer import Colorizer
    from colorize_cli.io.images import Photo

    colorizer = Colorizer(str(tiny_weights))
    gray16 = (np.random.default_rng(0).random((45, 67)) * 50000 + 5000).astype(np.uint16)
    out = colorizer.colorize(Photo(gray16))
    assert out.shape == (45, 67, 3) and out.dtype == np.uint16
    # where the colour is in gamut (no clipping), L is the input's to 16-bit precision
    rgb = (out.astype(np.float64) / 65535).transpose(2, 0, 1)
    lab_in = rgb_to_lab(np.broadcast_to(gray16.astype(np.float64) / 65535, (3, 45, 67)))
    inside = ((rgb > 0.001) & (rgb < 0.999)).all(axis=0)
    assert inside.mean() > 0.5
    assert np.abs(lab_in[0] - rgb_to_lab(rgb)[0])[inside].max() < 0.01


def test_png_output_keeps_luminance_within_quantisation(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "a.png", size=(64, 48), mode="L")
    assert run(src, "--model", tiny_weights).exit_code == 0
    assert np.abs(_l_channel(tmp_path / "a_color.png") - _l_channel(src)).mean() < 0.6


def test_folder_to_output_dir_mirrors_the_tree(tmp_path, tiny_weights):
    make_photo(tmp_path / "in" / "a.png")
    make_photo(tmp_path / "in" / "trip" / "b.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    result = run(tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a_color.png").exists()
    assert (tmp_path / "out" / "trip" / "b_color.jpg").exists()
    assert "1 not images" in result.output


def test_a_broken_file_fails_alone_with_one_line_and_exit_1(tmp_path, tiny_weights):
    make_photo(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    result = run(tmp_path / "in", "--model", tiny_weights)
    assert result.exit_code == 1
    assert (tmp_path / "in" / "good_color.png").exists()
    lines = [ln for ln in result.output.splitlines() if "broken.jpg" in ln]
    assert len(lines) == 1 and lines[0].startswith("failed:") and "not a readable image" in lines[0]
    assert "Traceback" not in result.output
    assert not list((tmp_path / "in").glob("*.part"))


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "a.png")
    out = make_photo(tmp_path / "a_color.png", size=(5, 5))  # a whole image: kept (incomplete ones: test_faults)
    before = out.read_bytes()
    result = run(src, "--model", tiny_weights)
    assert result.exit_code == 0 and out.read_bytes() == before
    assert "1 already done" in result.output
    assert run(src, "--model", tiny_weights, "--overwrite").exit_code == 0
    assert Image.open(out).size == (37, 29)


def test_usage_errors_exit_2_with_a_clear_message(tmp_path, tiny_weights):
    result = run(tmp_path / "missing.jpg", "--model", tiny_weights)
    assert result.exit_code == 2 and "no such file or folder" in result.output
    src = make_photo(tmp_path / "a.png")
    result = run(src, "--model", "no-such-model")
    assert result.exit_code == 2 and "unknown model 'no-such-model'" in result.output
    result = run(src, "--model", tiny_weights, "--device", "cuda:99")
    assert result.exit_code == 2
    if __import__("torch").cuda.is_available():
        assert "CUDA device(s) here" in result.output
    else:
        assert "CUDA is not available" in result.output


def test_bundled_default_model_colorizes_the_example(tmp_path):
    example = Path(__file__).parents[1] / "examples" / "astronaut.jpg"
    result = run(example, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "astronaut_color.jpg").convert("RGB")).astype(float)
    assert out.shape == (512, 512, 3)
    # the bundled model puts colour in: channels differ visibly on average
    assert np.abs(out[..., 0] - out[..., 2]).mean() > 3


def _bundled() -> list[str]:
    from colorize_cli.engine.weights import read_weights_toml

    return sorted(name for name, entry in read_weights_toml().items() if entry.bundled)


@__import__("pytest").mark.parametrize("name", _bundled())
def test_every_bundled_model_colorizes_a_photo_by_name(tmp_path, name):
    import hashlib

    from colorize_cli.engine.hub import resolve
    from colorize_cli.engine.weights import read_weights_toml

    entry = read_weights_toml()[name]
    path = resolve(name)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256 and path.stat().st_size == entry.size
    src = make_photo(tmp_path / "p.png", size=(75, 50), mode="L")
    result = run(src, "--model", name, "--quiet")
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "p_color.png").convert("RGB")).astype(float)
    assert out.shape == (50, 75, 3)
    assert np.abs(_l_channel(tmp_path / "p_color.png") - _l_channel(src)).mean() < 1.5  # luminance kept
    assert np.abs(out[..., 0] - out[..., 2]).mean() > 0.5  # some colour


def test_models_lists_the_whole_zoo():
    from colorize_cli.models import list_models

    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in list_models():
        assert name in result.output


def test_version_answers_fast_without_importing_torch():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "colorize_cli", "--version"], check=False,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("colorize-cli ")
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert "torch" not in imported and "typer" not in imported


def test_help_lists_sub_commands():
    result = run("--help")
    assert result.exit_code == 0
    for word in ("train", "eval", "models"):
        assert word in result.output


def test_an_output_folder_under_a_file_is_one_failure_line(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "photo.jpg", size=(40, 30))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run(src, "--model", tiny_weights, "--output", blocker / "out")
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert [ln for ln in lines if not ln.startswith("done:")] == [f"failed: {src}: Not a directory ({blocker / 'out'})"]
    assert blocker.read_text() == "not a folder"


def test_debug_shows_the_traceback_of_a_failed_file_and_only_then(tmp_path, tiny_weights):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    for flags, traceback_shown in (((), False), (("--debug",), True)):
        result = run(broken, "--model", tiny_weights, *flags)
        assert result.exit_code == 1
        assert f"failed: {broken}: not a readable image" in result.output
        assert ("Traceback (most recent call last)" in result.output) == traceback_shown
