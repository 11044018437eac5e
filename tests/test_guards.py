"""Guards that a user relies on without seeing them, each tested the way it would break
(tools/mutation_check.py breaks each on purpose and checks that a test here fails; docs/testing.md):
atomic outputs, weights integrity, the working size, exact luminance, the gamma table, ONNX
fp16/int8 parity, bf16 autocast, EXIF in every format that keeps it, file permissions."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from conftest import make_photo
from PIL import Image
from skimage.color import rgb2lab
from test_hub import error_lines, hub, zoo  # noqa: F401 - the test Hub on 127.0.0.1 and a model pinned on it
from textures import textured
from typer.testing import CliRunner

from colorize_cli import color
from colorize_cli.cli import app
from colorize_cli.engine.colorizer import Colorizer
from colorize_cli.engine.networks import export_generator, load_generator
from colorize_cli.engine.weights import bundled_path, read_weights_toml
from colorize_cli.io.images import Photo, read_image
from colorize_cli.models import create_model


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COLORIZE_WEIGHTS_TOML"}
    return {**env, "PYTHONPATH": os.pathsep.join(sys.path), **extra}


def _decodes_whole(path: Path, size: tuple[int, int]) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
            return im.size == size
    except Exception:  # noqa: BLE001 - a truncated file raises OSError, SyntaxError or ValueError
        return False


# ----- an output never exists incomplete under its final name -----
def test_an_output_is_never_incomplete_under_its_final_name(tmp_path, tiny_weights):
    size = (2000, 1500)
    src = tmp_path / "big.jpg"
    Image.fromarray(textured(size[1], size[0], color=False)).save(src, quality=90)
    out = tmp_path / "out"
    final = out / "big_color.png"
    cmd = [sys.executable, "-m", "colorize_cli", str(src), "--model", str(tiny_weights), "--output", str(out),
           "--format", "png", "--quiet"]

    # 1. SIGKILL as soon as anything appears in the output folder: the final name is absent or whole
    proc = subprocess.Popen(cmd, env=_child_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (out.is_dir() and any(out.iterdir())):
        time.sleep(0.0005)
    killed = proc.poll() is None
    proc.kill()
    proc.wait(timeout=60)
    assert killed, "the run ended before its write could be interrupted"
    assert not final.exists() or _decodes_whole(final, size), "a killed write left a broken file under its final name"

    # 2. a whole run, watched: whenever the final name exists it holds the whole picture
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen(cmd, env=_child_env(), stderr=subprocess.PIPE)
    seen = []
    while proc.poll() is None:
        if final.exists():
            seen.append(_decodes_whole(final, size))
        time.sleep(0.001)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    assert all(seen), f"{seen.count(False)} of {len(seen)} looks at {final.name} found it incomplete"
    assert _decodes_whole(final, size) and sorted(out.iterdir()) == [final]


# ----- weights integrity -----
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_corrupted_bundled_weights_are_refused_with_one_clear_line(tmp_path, backend):
    """A copy of the installed package whose bundled default weights (the ONNX graph that ONNX Runtime
    runs, or the safetensors that torch loads) have one byte changed."""
    import colorize_cli
    from colorize_cli.engine.weights import DEFAULT_MODEL, weights_toml_path

    entries = read_weights_toml()
    default = entries[DEFAULT_MODEL]
    package = Path(colorize_cli.__file__).parent
    copy = tmp_path / "site" / "colorize_cli"
    others = {f for e in entries.values() if e.name != DEFAULT_MODEL for f in (e.filename, e.info.get("onnx"))}
    shutil.copytree(package, copy, ignore=lambda d, names: [n for n in names if n in others or n == "__pycache__"])
    if not (copy / "weights.toml").exists():  # a source checkout reads the one at the repository root
        shutil.copy(weights_toml_path(), tmp_path / "weights.toml")
    weights = copy / "weights" / (default.info["onnx"] if backend == "onnx" else default.filename)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # a flipped bit in the tensors: the file still loads, only its sha256 tells
    weights.write_bytes(bytes(data))
    photo = make_photo(tmp_path / "a.png", mode="L")
    env = _child_env(PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), *sys.path]))
    result = subprocess.run([sys.executable, "-m", "colorize_cli", str(photo), "--backend", backend],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert str(weights) in errors[0] and "sha256" in errors[0] and "reinstall colorize-cli" in errors[0]
    assert not (tmp_path / "a_color.png").exists()
    assert bundled_path(default).is_file()  # the real package was not touched


def _corrupt(path: Path) -> None:
    blob = path.resolve()  # the Hugging Face cache links snapshots to blobs
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))


def test_a_corrupted_cached_hub_file_is_refused_and_deleted(zoo, hub, tmp_path):  # noqa: F811
    commit = zoo[0]
    photo = make_photo(tmp_path / "a.png", mode="L")
    assert run(photo, "--model", "tiny").exit_code == 0
    cached = tmp_path / "hf" / "hub" / "models--colorize-cli--tiny" / "snapshots" / commit / "tiny.safetensors"
    blob = cached.resolve()
    _corrupt(cached)
    result = run(photo, "--model", "tiny", "--overwrite", "--offline")  # the cached copy is all there is
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "tiny.safetensors" in line and "sha256" in line and "deleted" in line
    assert not cached.exists() and not blob.exists()
    # an hf:// reference: the cache names the blob after its sha256, which is checked too
    uri = f"hf://colorize-cli/tiny@{commit}/tiny.safetensors"
    assert run(photo, "--model", uri, "--overwrite").exit_code == 0
    _corrupt(cached)
    result = run(photo, "--model", uri, "--overwrite")
    assert result.exit_code == 2 and "sha256" in error_lines(result)[0]
    assert not cached.exists()


# ----- the working size -----
def _network_inputs(colorizer: Colorizer) -> list[tuple[int, ...]]:
    """Records the shape of every input the colorizer's engine (either backend) receives."""
    shapes: list[tuple[int, ...]] = []
    engine = colorizer.engine

    class Recorder:
        latent_dim, hint_bins = engine.latent_dim, engine.hint_bins

        def __call__(self, x, **inputs):
            shapes.append(tuple(x.shape))
            return engine(x, **inputs)

    colorizer.engine = Recorder()
    return shapes


def test_the_working_size_a_config_names_is_what_the_network_receives(tmp_path, monkeypatch):
    torch.manual_seed(0)
    weights = export_generator(create_model("unet-sn", width=4).eval(), "unet-sn", tmp_path / "w48.safetensors",
                               extra={"working_size": 48}, options={"width": 4})
    photo = Photo(textured(120, 200, color=False))
    colorizer = Colorizer(str(weights))
    shapes = _network_inputs(colorizer)
    assert colorizer.colorize(photo).shape == (120, 200, 3)
    assert shapes == [(1, 1, 32, 48)]  # long side 48, short side 28.8 rounded to the multiple of 16
    sized = Colorizer(str(weights), size=96)  # --size wins over the config
    shapes = _network_inputs(sized)
    sized.colorize(photo)
    assert shapes == [(1, 1, 64, 96)]
    # the ONNX backend takes the size from the exported file's metadata
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "cache"))
    onnx = Colorizer(str(weights), backend="onnx")
    seen = _network_inputs(onnx)
    onnx.colorize(photo)
    assert seen == [(1, 1, 32, 48)]
    torch_backend = Colorizer(str(weights), backend="torch")
    seen = _network_inputs(torch_backend)
    torch_backend.colorize(photo)
    assert seen == [(1, 1, 32, 48)]


@pytest.mark.parametrize("name", sorted(n for n, e in read_weights_toml().items() if e.bundled))
def test_each_bundled_model_runs_at_the_working_size_of_its_config(name):
    import json

    config = json.loads(bundled_path(read_weights_toml()[name]).with_suffix(".json").read_text())
    colorizer = Colorizer(name)
    shapes = _network_inputs(colorizer)
    colorizer.colorize(Photo(textured(200, 300, color=False)))
    size = config["working_size"]
    assert max(shapes[0][2:]) == size, (name, shapes, size)


# ----- luminance -----
def _colour_photos() -> dict[str, np.ndarray]:
    return {"astronaut": skimage.data.astronaut(), "coffee": skimage.data.coffee(),
            "chelsea": skimage.data.chelsea(), "textured": textured(301, 417, seed=3)}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "textured"])
def test_the_luminance_of_a_colour_photo_is_its_cielab_l(name):
    rgb = _colour_photos()[name]
    ours = color.pixels_to_l(np.ascontiguousarray(rgb), 255)
    assert np.abs(ours - rgb2lab(rgb)[..., 0]).max() < 1e-4
    rng = np.random.default_rng(0)
    rgb16 = (rgb.astype(np.int64) * 257 + rng.integers(-128, 128, rgb.shape)).clip(0, 65535)
    ours16 = color.pixels_to_l(rgb16.astype(np.uint16), 65535)
    assert np.abs(ours16 - rgb2lab(rgb16 / 65535)[..., 0]).max() < 1e-4


def _l_of(path: Path) -> np.ndarray:
    return rgb2lab(np.asarray(Image.open(path).convert("RGB")))[..., 0]


def test_a_colour_photo_keeps_its_luminance_through_the_cli(tmp_path, tiny_weights):
    rgb = textured(240, 320, seed=5)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert run(tmp_path / "c.png", "--model", tiny_weights, "--size", "64").exit_code == 0
    diff = np.abs(_l_of(tmp_path / "c_color.png") - rgb2lab(rgb)[..., 0])
    assert diff.mean() < 0.3 and np.percentile(diff, 99) < 1.0  # 8-bit rounding of the new colours only


def test_luminance_is_merged_at_full_size_in_an_8bit_photo(tmp_path, tiny_weights):
    gray = textured(300, 400, seed=6, color=False)
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert run(tmp_path / "g.png", "--model", tiny_weights, "--size", "64").exit_code == 0
    lum = color.gray_to_l(gray / 255)
    diff = np.abs(_l_of(tmp_path / "g_color.png") - lum)
    # the per-pixel noise of the input is in the output: L was not taken at 64 px and scaled up
    # (8-bit rounding of the new colours costs up to about one L unit in the darkest pixels)
    assert diff.mean() < 0.3 and np.percentile(diff, 99) < 1.5


@pytest.mark.parametrize("axis", [0, 1])
def test_chroma_is_upsampled_smoothly_never_in_blocks(tiny_weights, axis):
    """ab predicted at 8 px across, shown on 256 px: a ramp stays a ramp (bilinear), with no steps."""
    colorizer = Colorizer(str(tiny_weights))
    shape = (256, 64) if axis == 0 else (64, 256)
    photo = Photo(np.full(shape, 128, np.uint8))
    ramp = np.linspace(-20, 20, 8, dtype=np.float32)
    ab_small = np.stack([np.broadcast_to(ramp[:, None], (8, 2)) if axis == 0 else np.broadcast_to(ramp, (2, 8)),
                         np.zeros((8, 2) if axis == 0 else (2, 8), np.float32)])
    a = rgb2lab(colorizer.finish(photo, ab_small))[..., 1].mean(axis=1 - axis)
    steps = np.abs(np.diff(a))
    assert a[-1] - a[0] > 30  # the colour changes across the picture ...
    assert steps.max() < 1.0  # ... in steps of about 40/256, not 8 jumps of 40/7


# ----- the gamma lookup table -----
def test_the_gamma_table_agrees_with_the_exact_curve_at_every_16bit_level():
    linear = np.arange(65536, dtype=np.float64) / 65535
    lum = color.gray_to_l(color.linear_to_srgb(linear)).astype(np.float32).reshape(256, 256)  # grays: ab = 0
    ab = np.zeros((2, 256, 256), np.float32)
    for maxval, worst in ((255, 1), (65535, 4)):  # 1 level: float32 rounding at a level's boundary
        exact = np.floor(color.linear_to_srgb(linear) * maxval + 0.5).reshape(256, 256, 1)
        diff = np.abs(color.lab_to_pixels(lum, ab, maxval).astype(np.int64) - exact)
        assert diff.max() <= worst, (maxval, diff.max())
        if maxval == 255:
            assert (diff > 0).mean() < 0.005  # off by one only where float32 lands on a rounding boundary


# ----- ONNX parity -----
@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_onnx_fp16_and_int8_follow_torch_and_report_it_truly(kind, tiny_weights, tmp_path):
    from colorize_cli.engine.backends import OnnxEngine
    from colorize_cli.engine.export import export_onnx

    result = export_onnx(tiny_weights, tmp_path / f"{kind}.onnx", fp16=kind == "fp16",
                         quantize="int8" if kind == "int8" else None)
    net, _ = load_generator(tiny_weights)
    engine = OnnxEngine(result.path)
    photo = textured(128, 192, seed=2)
    lum = rgb2lab(photo)[..., 0].astype(np.float32)[None, None]
    random = np.random.default_rng(0).uniform(-1, 1, (2, 1, 64, 96)).astype(np.float32)
    inputs = {"photo": color.normalize_l(lum), "random": random}
    diffs = {}
    for name, x in inputs.items():
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        out = engine(x)
        assert out.shape == ref.shape and out.dtype == np.float32
        diffs[name] = np.abs(out - ref)
    assert diffs["photo"].mean() < (1e-4 if kind == "fp16" else 0.02)
    assert diffs["random"].max() < (1e-3 if kind == "fp16" else 0.5)
    assert diffs["random"].max() > 0  # a reduced precision is measurably not float32
    # what `colorize export` prints is what ONNX Runtime does: the same order as measured here
    measured = float(diffs["random"].max())
    assert measured / 4 < result.max_diff < measured * 4, (result.checks, measured)


# ----- bf16 autocast -----
def test_amp_really_computes_in_bfloat16(tmp_path):
    from colorize_cli.app.train import TrainConfig, Trainer

    torch.manual_seed(0)
    trainer = Trainer(TrainConfig(model="unet-sn", dataset="", output=str(tmp_path / "run"), size=32,
                                  model_options={"width": 4}, amp=True))
    dtypes: dict[str, set] = {"generator": set(), "discriminator": set()}
    for part, seen_dtypes in dtypes.items():
        for m in getattr(trainer, part).modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):  # the layers that do the arithmetic
                m.register_forward_hook(lambda mod, args, out, seen=seen_dtypes: seen.add(out.dtype))
    trainer.train_step(torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 2, 32, 32) * 0.6 - 0.3)
    assert dtypes == {"generator": {torch.bfloat16}, "discriminator": {torch.bfloat16}}
    assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())
    plain = Trainer(TrainConfig(model="unet-sn", dataset="", output=str(tmp_path / "plain"), size=32,
                                model_options={"width": 4}, amp=False))
    seen = set()
    for m in plain.generator.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(lambda mod, args, out: seen.add(out.dtype))
    plain.train_step(torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 2, 32, 32) * 0.6 - 0.3)
    assert seen == {torch.float32}


# ----- EXIF -----
@pytest.mark.parametrize("suffix,sixteen", [(".jpg", False), (".png", False), (".webp", False), (".png", True)])
def test_exif_is_kept_in_every_format_that_keeps_it(tmp_path, tiny_weights, suffix, sixteen):
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0132] = "2001:02:03 04:05:06"  # DateTime
    exif[0x0112] = 3  # upside down: applied to the pixels, then reset to 1
    gray = textured(30, 44, color=False)
    im = Image.fromarray(gray.astype(np.uint16) * 257 if sixteen else gray)
    im.save(tmp_path / f"e{suffix}", exif=exif)
    assert read_image(tmp_path / f"e{suffix}").exif, "the test photo carries no EXIF"
    result = run(tmp_path / f"e{suffix}", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    out = tmp_path / f"e_color{suffix}"
    with Image.open(out) as im:
        got = im.getexif()
        assert got.get(0x010F) == "TestCam" and got.get(0x0132) == "2001:02:03 04:05:06"
        assert got.get(0x0112) == 1 and im.size == (44, 30)
    if sixteen:
        assert out.read_bytes()[24] == 16  # still a 16-bit PNG


# ----- permissions, for root too -----
def _without_file_permission_override() -> None:
    """In a child: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so that root
    (CI runs as root) obeys file modes after exec like any user; a non-root user obeys them anyway."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _colorize_unprivileged(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "colorize_cli", *map(str, args)], capture_output=True,
                          text=True, env=_child_env(), timeout=120, check=False,
                          preexec_fn=_without_file_permission_override)


def test_unreadable_file_and_unwritable_folder_fail_alone_even_for_root(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    make_photo(folder / "ok.png", mode="L")
    locked = make_photo(folder / "locked.png", mode="L", seed=1)
    locked.chmod(0)
    try:
        result = _colorize_unprivileged(folder, "--model", tiny_weights)
        assert result.returncode == 1, result.stderr
        failed = [ln for ln in result.stderr.splitlines() if ln.startswith("failed:")]
        assert len(failed) == 1 and failed[0].startswith(f"failed: {locked}: permission denied")
        assert Image.open(folder / "ok_color.png").size == (37, 29)  # the batch went on
    finally:
        locked.chmod(0o644)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = _colorize_unprivileged(folder / "ok.png", "--model", tiny_weights, "--output", out)
        assert result.returncode == 1, result.stderr
        failed = [ln for ln in result.stderr.splitlines() if ln.startswith("failed:")]
        assert len(failed) == 1 and "ok.png" in failed[0] and "permission denied" in failed[0]
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o755)
