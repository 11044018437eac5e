"""Real photo collections: every mode and format, metadata, failures, resumability."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_photo
from PIL import Image, ImageCms
from typer.testing import CliRunner

from colorize_cli.cli import app
from colorize_cli.io.images import png16_bytes, read_image


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _gray_array(h=24, w=36):
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 5 + y * 3) % 256).astype(np.uint8)


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16"]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_is_colorized_at_full_size(tmp_path, tiny_weights, mode):
    gray = _gray_array()
    if mode == "I;16":
        im = Image.fromarray(gray.astype(np.uint16) * 257)
        src = tmp_path / "in.png"
    else:
        im = Image.fromarray(gray).convert(mode)
        src = tmp_path / ("in.jpg" if mode == "CMYK" else "in.png")
    im.save(src)
    result = run(src, "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    out = Image.open(src.with_name("in_color" + src.suffix))
    assert out.size == (36, 24)
    assert out.mode in ("RGB", "RGBA")
    if mode in ("LA", "RGBA"):
        assert out.mode == "RGBA"


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp", ".bmp"])
def test_every_format_round_trips(tmp_path, tiny_weights, suffix):
    src = make_photo(tmp_path / f"p{suffix}", mode="L")
    result = run(src, "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / f"p_color{suffix}") as out:
        assert out.size == (37, 29)


def test_gif_uses_the_first_frame_with_a_warning_and_writes_png(tmp_path, tiny_weights):
    frames = [Image.fromarray(_gray_array()).convert("P"), Image.fromarray(255 - _gray_array()).convert("P")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = run(tmp_path / "anim.gif", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    assert "2 frames: colorizing the first only" in result.output
    assert Image.open(tmp_path / "anim_color.png").size == (36, 24)


def test_exif_orientation_is_applied_and_reset_and_exif_kept(tmp_path, tiny_weights):
    im = Image.fromarray(_gray_array(20, 40)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    exif[0x010F] = "TestCam"  # Make
    im.save(tmp_path / "o.jpg", exif=exif)
    assert run(tmp_path / "o.jpg", "--model", tiny_weights).exit_code == 0
    out = Image.open(tmp_path / "o_color.jpg")
    assert out.size == (20, 40)  # upright
    assert out.getexif()[0x0112] == 1 and out.getexif()[0x010F] == "TestCam"


def test_icc_profile_and_alpha_are_kept(tmp_path, tiny_weights):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgba = Image.fromarray(_gray_array()).convert("RGBA")
    alpha = np.zeros((24, 36), np.uint8)
    alpha[:, 18:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "a.png", icc_profile=icc)
    assert run(tmp_path / "a.png", "--model", tiny_weights).exit_code == 0
    out = Image.open(tmp_path / "a_color.png")
    assert out.info.get("icc_profile") == icc
    assert np.array_equal(np.asarray(out.getchannel("A")), alpha)


def test_sixteen_bit_input_gives_sixteen_bit_png_and_tiff(tmp_path, tiny_weights):
    import tifffile

    gray16 = (np.linspace(1000, 64000, 24 * 36).reshape(24, 36)).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "scan.png")
    tifffile.imwrite(tmp_path / "scan.tif", np.stack([gray16] * 3, axis=-1), photometric="rgb")
    assert run(tmp_path / "scan.png", tmp_path / "scan.tif", "--model", tiny_weights).exit_code == 0
    out_tif = tifffile.imread(tmp_path / "scan_color.tif")
    assert out_tif.dtype == np.uint16 and out_tif.shape == (24, 36, 3)
    assert len(np.unique(out_tif)) > 256  # real 16-bit values, not 8-bit scaled up
    raw = (tmp_path / "scan_color.png").read_bytes()
    assert raw[24] == 16  # IHDR bit depth
    assert read_image(tmp_path / "scan.tif").pixels.dtype == np.uint16


def test_png16_writer_produces_a_valid_png():
    import struct
    import zlib

    data = (np.random.default_rng(0).random((5, 7, 3)) * 65535).astype(np.uint16)
    raw = png16_bytes(data)
    pos, idat = 8, b""
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        tag, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", raw[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body)
        idat += body if tag == b"IDAT" else b""
        pos += 12 + n
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(5, 1 + 7 * 6)
    assert np.array_equal(rows[:, 1:].copy().view(">u2").reshape(5, 7, 3), data)


def test_format_and_quality_options(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "p.png", size=(64, 64), mode="L")
    assert run(src, "--model", tiny_weights, "--format", "jpg", "--quality", "30").exit_code == 0
    small = (tmp_path / "p_color.jpg").stat().st_size
    assert run(src, "--model", tiny_weights, "--format", "jpg", "--quality", "98", "--overwrite").exit_code == 0
    assert (tmp_path / "p_color.jpg").stat().st_size > small
    assert run(src, "--model", tiny_weights, "--format", "gif").exit_code == 2


def test_colour_photos_are_counted_or_skipped(tmp_path, tiny_weights):
    make_photo(tmp_path / "in" / "colour.png")
    make_photo(tmp_path / "in" / "gray.png", mode="L")
    result = run(tmp_path / "in", "--model", tiny_weights, "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["processed"] == 2 and summary["colored_inputs"] == 1
    result = run(tmp_path / "in", "--model", tiny_weights, "--skip-color", "--overwrite", "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["processed"] == 1 and summary["skipped_color"] == 1


def test_globs_and_mixed_inputs(tmp_path, tiny_weights):
    for name in ("a.jpg", "b.jpg", "c.png", "sub/d.jpg"):
        make_photo(tmp_path / "in" / name, mode="L")
    result = run(str(tmp_path / "in" / "**" / "*.jpg"), tmp_path / "in" / "c.png", "--output", tmp_path / "out",
                 "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    got = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*"))
    assert got == ["a_color.jpg", "b_color.jpg", "c_color.png", "sub/d_color.jpg"]
    assert run(str(tmp_path / "nothing*.jpg"), "--model", tiny_weights).exit_code == 2


def test_decompression_bomb_limit_is_a_clear_error_with_the_option(tmp_path, tiny_weights):
    make_photo(tmp_path / "big.png", size=(100, 100), mode="L")
    result = run(tmp_path / "big.png", "--model", tiny_weights, "--max-pixels", "5000")
    assert result.exit_code == 1
    assert "--max-pixels" in result.output and "big.png" in result.output
    assert run(tmp_path / "big.png", "--model", tiny_weights, "--max-pixels", "0").exit_code == 0


def test_unwritable_output_folder_is_one_line_per_file_and_exit_1(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "a.png", mode="L")
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    result = run(src, "--model", tiny_weights, "--output", blocker / "sub")
    assert result.exit_code == 1
    failed = [ln for ln in result.output.splitlines() if ln.startswith("failed:")]
    assert len(failed) == 1 and "a.png" in failed[0]


def test_output_name_collisions_are_failures_not_overwrites(tmp_path, tiny_weights):
    make_photo(tmp_path / "a" / "x.png", mode="L")
    make_photo(tmp_path / "b" / "x.png", mode="L", seed=1)
    result = run(tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--output", tmp_path / "out",
                 "--model", tiny_weights)
    assert result.exit_code == 1 and "collide" in result.output
    # inputs that share a stem in one folder are told apart instead (tests/test_faults.py has more)
    make_photo(tmp_path / "x.png", mode="L")
    make_photo(tmp_path / "x.jpg", mode="L", seed=1)
    result = run(tmp_path / "x.png", tmp_path / "x.jpg", "--format", "png", "--model", tiny_weights)
    assert result.exit_code == 0 and (tmp_path / "x_jpg_color.png").exists()


def test_json_summary_is_the_last_stdout_line_with_reasons(tmp_path, tiny_weights):
    make_photo(tmp_path / "in" / "ok.png", mode="L")
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "in" / "readme.txt").write_text("hello")
    result = run(tmp_path / "in", "--model", tiny_weights, "--json", "--quiet")
    assert result.exit_code == 1
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["processed"] == 1 and summary["skipped_not_image"] == 1
    assert [f["file"] for f in summary["failed"]] == [str(tmp_path / "in" / "bad.png")]
    assert summary["seconds"] >= 0


def test_half_precision_on_cpu_is_refused(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "a.png", mode="L")
    result = run(src, "--model", tiny_weights, "--half")
    assert result.exit_code == 2 and "GPU" in result.output


def test_batches_of_mixed_sizes_give_the_same_pixels_as_one_by_one(tmp_path, tiny_weights):
    for i, size in enumerate([(40, 30), (40, 30), (64, 20), (40, 30), (17, 50)]):
        make_photo(tmp_path / "in" / f"p{i}.png", size=size, seed=i, mode="L")
    assert run(tmp_path / "in", "--output", tmp_path / "one", "--batch-size", "1", "--model", tiny_weights).exit_code == 0
    assert run(tmp_path / "in", "--output", tmp_path / "many", "--batch-size", "3", "--model", tiny_weights).exit_code == 0
    for p in sorted((tmp_path / "one").iterdir()):
        a = np.asarray(Image.open(p)).astype(int)
        b = np.asarray(Image.open(tmp_path / "many" / p.name)).astype(int)
        assert np.abs(a - b).max() <= 1, p.name


def test_ctrl_c_stops_cleanly_keeping_finished_outputs(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    for i in range(400):
        make_photo(folder / f"p{i:03d}.png", size=(96, 96), seed=i, mode="L")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # a shell that starts jobs in the background makes them ignore SIGINT; a user's Ctrl-C is not ignored
    proc = subprocess.Popen([sys.executable, "-m", "colorize_cli", str(folder), "--model", str(tiny_weights),
                             "--batch-size", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509 - no threads run here
    deadline = time.time() + 60
    while time.time() < deadline and len(list(folder.glob("*_color.png"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    done = list(folder.glob("*_color.png"))
    assert 3 <= len(done) < 400
    assert not list(folder.glob("*.part")) and not list(folder.glob(".*"))
    for p in done:
        assert Image.open(p).size == (96, 96)  # complete, decodable files
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] and summary["processed"] == len(done)  # the summary counts every file written
    # a second run resumes: the finished ones are skipped
    proc = subprocess.run([sys.executable, "-m", "colorize_cli", str(folder), "--model", str(tiny_weights),
                           "--json"], capture_output=True, text=True, env=env, check=False)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["skipped_existing"] == len(done)


def _run_in_terminal(args: list[str]) -> tuple[int, str]:
    """Run colorize with stderr on a pseudo-terminal (as a user at a shell) and capture what it shows."""
    import pty

    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "colorize_cli", *args], stdout=subprocess.DEVNULL,
                            stderr=child_fd, env=env)
    os.close(child_fd)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(main_fd)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_and_quiet_silences_it(tmp_path, tiny_weights):
    for i in range(3):
        make_photo(tmp_path / "in" / f"p{i}.png", seed=i, mode="L")
    code, screen = _run_in_terminal([str(tmp_path / "in"), "--model", str(tiny_weights)])
    assert code == 0
    assert "3/3" in screen and "img/s" in screen and "done: 3 colorized" in screen
    code, screen = _run_in_terminal([str(tmp_path / "in"), "--model", str(tiny_weights), "--overwrite", "--quiet"])
    assert code == 0 and screen.strip() == ""


def test_strip_processing_matches_whole_image(tiny_weights, monkeypatch):
    """Big scans are converted strip by strip (bounded memory); strips must not show seams."""
    from colorize_cli.engine import colorizer as inference
    from colorize_cli.io.images import Photo

    colorizer = inference.Colorizer(str(tiny_weights))
    photo = Photo((np.random.default_rng(0).random((203, 77, 3)) * 255).astype(np.uint8))
    ab = colorizer.predict(colorizer.working_input(photo))[0]
    whole = colorizer.finish(photo, ab)
    monkeypatch.setattr(inference, "STRIP_PIXELS", 77 * 10)  # 21 strips, the last one short
    assert np.array_equal(colorizer.finish(photo, ab), whole)


def test_outputs_never_replace_inputs_and_earlier_outputs_are_not_recolorized(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "in" / "a.jpg", mode="L")
    before = src.read_bytes()
    result = run(src, "--output", tmp_path / "in", "--suffix", "", "--overwrite", "--model", tiny_weights)
    assert result.exit_code == 1 and "would overwrite the input" in result.output
    assert src.read_bytes() == before
    # a photo that merely has "_color" in its name is colorized when outputs go elsewhere
    make_photo(tmp_path / "in" / "sunset_color.jpg", mode="L", seed=2)
    result = run(tmp_path / "in", "--output", tmp_path / "out", "--model", tiny_weights, "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["processed"] == 2
    # outputs of a run beside the inputs are not inputs of a later run into --output
    assert run(src, "--model", tiny_weights).exit_code == 0
    result = run(tmp_path / "in", "--output", tmp_path / "out2", "--model", tiny_weights, "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["skipped_own_outputs"] == 1
    (tmp_path / "in" / "a_color.jpg").unlink()
    # re-running a glob beside the inputs skips the outputs of the first run
    assert run(str(tmp_path / "in" / "*.jpg"), "--model", tiny_weights).exit_code == 0
    result = run(str(tmp_path / "in" / "*.jpg"), "--model", tiny_weights, "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["processed"] == 0 and summary["skipped_existing"] == 2  # a_color, sunset_color_color
    assert summary["skipped_own_outputs"] == 2 and not list((tmp_path / "in").glob("*_color_color_color*"))


def test_recursive_glob_mirrors_the_tree_once(tmp_path, tiny_weights):
    make_photo(tmp_path / "in" / "x.jpg", mode="L")
    make_photo(tmp_path / "in" / "b" / "x.jpg", mode="L", seed=1)
    result = run(str(tmp_path / "in" / "**"), "--output", tmp_path / "out", "--model", tiny_weights)
    assert result.exit_code == 0, result.output
    got = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*"))
    assert got == ["b/x_color.jpg", "x_color.jpg"]


def test_outputs_honour_the_umask(tmp_path, tiny_weights):
    src = make_photo(tmp_path / "a.png", mode="L")
    assert run(src, "--model", tiny_weights).exit_code == 0
    from colorize_cli.io.images import _UMASK

    assert (tmp_path / "a_color.png").stat().st_mode & 0o777 == 0o666 & ~_UMASK


def test_gray_png_with_a_transparent_colour_keeps_transparency(tmp_path, tiny_weights):
    Image.fromarray(_gray_array()).save(tmp_path / "t.png", transparency=0)
    assert run(tmp_path / "t.png", "--model", tiny_weights).exit_code == 0
    assert Image.open(tmp_path / "t_color.png").mode == "RGBA"
