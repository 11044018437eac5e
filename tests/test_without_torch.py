"""Colorizing needs ONNX Runtime and NumPy, not torch (issue 28): the command runs in a process where
torch cannot be imported (an import hook refuses it and records every attempt), on a photo, a folder,
a film and every bundled model; the commands that do need torch say in one line which extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import make_photo
from PIL import Image
from test_video import make_film

from colorize_cli.engine.weights import bundled_path, read_weights_toml

# runs the CLI with torch unimportable; prints one JSON line: the exit code and the torch imports tried
RUNNER = textwrap.dedent("""
    import json, sys

    class NoTorch:
        tried = []

        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                self.tried.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    from colorize_cli.__main__ import main

    sys.argv = ["colorize", *sys.argv[1:]]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    loaded = sorted(m for m, v in sys.modules.items() if m.split(".")[0] == "torch" and v is not None)
    print(json.dumps({"code": code, "tried": NoTorch.tried, "loaded": loaded}))
""")


def colorize_without_torch(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-c", RUNNER, *map(str, args)], capture_output=True, text=True, check=False,
                          cwd=cwd, timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, proc.stderr


def test_photo_folder_and_film_colorize_without_importing_torch(tmp_path):
    make_photo(tmp_path / "in" / "a.jpg", size=(64, 48), mode="L")
    make_photo(tmp_path / "in" / "deep" / "b.png", size=(40, 30), mode="L")
    make_film(tmp_path / "in" / "reel.mp4", frames=6, audio=True)
    result, err = colorize_without_torch(tmp_path / "in", "--output", tmp_path / "out", "--quiet")
    assert result == {"code": 0, "tried": [], "loaded": []}, err
    assert Image.open(tmp_path / "out" / "a_color.jpg").size == (64, 48)
    assert Image.open(tmp_path / "out" / "deep" / "b_color.png").mode == "RGB"
    assert (tmp_path / "out" / "reel_color.mp4").stat().st_size > 0


BUNDLED = [name for name, entry in read_weights_toml().items() if entry.bundled]


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_model_runs_without_torch(tmp_path, name):
    photo = make_photo(tmp_path / "p.png", size=(48, 40), mode="L")
    result, err = colorize_without_torch(photo, "--model", name, "--output", tmp_path / "out", "--quiet")
    assert result == {"code": 0, "tried": [], "loaded": []}, err
    assert Image.open(tmp_path / "out" / "p_color.png").size == (48, 40)


def test_sampled_colorizations_of_the_vae_need_no_torch(tmp_path):
    photo = make_photo(tmp_path / "p.png", size=(48, 40), mode="L")
    result, err = colorize_without_torch(photo, "--model", "vae", "--samples", "2", "--seed", "3",
                                         "--output", tmp_path / "out", "--quiet")
    assert result == {"code": 0, "tried": [], "loaded": []}, err
    one, two = (Image.open(tmp_path / "out" / f"p_color-{k}.png") for k in (1, 2))
    assert one.tobytes() != two.tobytes()  # two different codes, two colorizations


@pytest.mark.parametrize("command, extra", [
    (["train", "--dataset", "x"], "train"), (["export"], "torch"), (["eval"], "torch"), (["models"], "torch")])
def test_commands_that_need_torch_say_which_extra_installs_it(tmp_path, command, extra):
    result, err = colorize_without_torch(*command, cwd=tmp_path)
    assert result["code"] == 2
    assert f"needs torch, which is not installed: pip install 'colorize-cli[{extra}]'" in err
    assert len(err.strip().splitlines()) == 1, err


def test_the_torch_backend_without_torch_is_a_one_line_error(tmp_path):
    photo = make_photo(tmp_path / "p.png", mode="L")
    result, err = colorize_without_torch(photo, "--backend", "torch", "--quiet")
    assert result["code"] == 2
    assert err.strip().splitlines() == [
        "error: the torch backend needs torch, which is not installed: pip install 'colorize-cli[torch]'"]
    assert not (tmp_path / "p_color.png").exists()


def test_weights_by_path_need_torch_only_for_their_export_and_say_so(tmp_path):
    weights = tmp_path / "mine.safetensors"  # weights of one's own: no ONNX graph comes with them
    weights.write_bytes(bundled_path(read_weights_toml()["unet-sn"]).read_bytes())
    photo = make_photo(tmp_path / "p.png", mode="L")
    result, err = colorize_without_torch(photo, "--model", weights, "--quiet")
    assert result["code"] == 2
    line = (f"error: {weights}: weights that ship no ONNX graph are exported to ONNX once; that needs torch, "
            "which is not installed: pip install 'colorize-cli[torch]'")
    assert err.strip().splitlines() == [line]
