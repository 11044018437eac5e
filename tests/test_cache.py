"""One cache folder and one offline switch (colorize_cli.io.cache) for every fetcher: Hub weights, ONNX
exports, datasets, encoder weights, the perceptual metrics' weights. ``--cache-dir`` and ``--offline``
(``hub_options``, what the CLI sets) hold for each of them; servers are the other tests' ones, on
127.0.0.1."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_photo
from huggingface_hub import constants
from test_datasets import _pin, cifar_tarball, server  # noqa: F401 - dataset archives served on 127.0.0.1
from test_hub import hub, run, zoo  # noqa: F401 - a Hub on 127.0.0.1 with the tiny model published
from test_perceptual import env, lpips_files, served  # noqa: F401 - LPIPS files served on 127.0.0.1

from colorize_cli.app.datasets import DatasetError, datasets_dir, load_dataset
from colorize_cli.engine import export
from colorize_cli.engine import hub as hubmod
from colorize_cli.engine.hub import hub_cache_dir, hub_options
from colorize_cli.engine.perceptual import WeightsUnavailable, fetch_pretrained, pretrained_cache_dir
from colorize_cli.engine.perceptual import lpips as lpips_net
from colorize_cli.io.cache import cache_options, cache_root, is_offline
from colorize_cli.models import encoders

KINDS = ("datasets", "encoders", "onnx", "pretrained")


def _folders() -> dict[str, Path]:
    """Where each fetcher puts its files now."""
    return {"datasets": datasets_dir(), "encoders": encoders._cache_dir(), "onnx": export.cache_dir(),
            "pretrained": pretrained_cache_dir()}


# ----- the folder and the switch -----
def test_every_kind_keeps_its_documented_folder_and_cache_dir_moves_them_all(monkeypatch, tmp_path):
    for var in ("COLORIZE_CACHE", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tmp_path / "home" / ".cache" / "colorize-cli"  # docs/datasets.md, docs/perceptual.md, --backend
    assert _folders() == {k: default / k for k in KINDS}
    assert hub_cache_dir() == Path(constants.HF_HUB_CACHE)  # the Hugging Face cache, as docs/hub.md says
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _folders() == {k: tmp_path / "xdg" / "colorize-cli" / k for k in KINDS}
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "env"))
    assert _folders() == {k: tmp_path / "env" / k for k in KINDS}
    assert hub_cache_dir() == tmp_path / "env" / "hub"
    with hub_options(cache_dir=tmp_path / "option"):  # --cache-dir wins over $COLORIZE_CACHE, for all
        assert _folders() == {k: tmp_path / "option" / k for k in KINDS}
        assert hub_cache_dir() == tmp_path / "option" / "hub"
        assert cache_root() == tmp_path / "option"
    assert cache_root() == tmp_path / "env"


def test_offline_is_the_option_else_hf_hub_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not is_offline()
    with hub_options(offline=True):
        assert is_offline() and hubmod._options().offline
        with cache_options(offline=False):  # an inner block overrides
            assert not is_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert is_offline() and not is_offline(False)


# ----- each fetcher -----
def test_onnx_export_goes_under_cache_dir(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "env-cache"))
    photo = make_photo(tmp_path / "p.png", mode="L")
    result = run(photo, "--model", tiny_weights, "--backend", "onnx", "--cache-dir", tmp_path / "mine", "-q")
    assert result.exit_code == 0, result.output
    (exported,) = (tmp_path / "mine").rglob("*.onnx")
    assert exported.parent == tmp_path / "mine" / "onnx" and exported.name.startswith("tiny-")
    assert not (tmp_path / "env-cache").exists()


def test_hub_weights_follow_the_one_cache_dir_and_offline_switch(zoo, hub, tmp_path):  # noqa: F811
    photo = make_photo(tmp_path / "a.png", mode="L")
    # the switch every fetcher reads, set here without hub_options
    with cache_options(offline=True), pytest.raises(hubmod.WeightsNotFoundError, match="offline"):
        hubmod.locate("tiny")
    assert hub.requests == []
    with cache_options(cache_dir=tmp_path / "mine"):
        assert hubmod.locate("tiny")[1] == "downloaded"
    assert (tmp_path / "mine" / "hub" / "models--colorize-cli--tiny").is_dir()
    result = run(photo, "--model", "tiny", "--backend", "onnx", "--cache-dir", tmp_path / "mine", "-q")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "mine" / "onnx").glob("tiny-*.onnx"))) == 1  # the export beside the weights
    hub.stop()
    result = run(photo, "--model", "tiny", "--cache-dir", tmp_path / "mine", "--offline", "--overwrite", "-q")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "hf" / "hub").exists()  # nothing went to the Hugging Face cache


def test_perceptual_weights_obey_offline_and_cache_dir(served, env, tmp_path):  # noqa: F811
    with hub_options(offline=True), pytest.raises(WeightsUnavailable) as err:
        fetch_pretrained(lpips_net.ALEXNET, quiet=True)
    message = str(err.value)
    assert "\n" not in message and "offline mode is on (--offline or HF_HUB_OFFLINE)" in message
    assert lpips_net.ALEXNET.url in message  # what to fetch by hand
    assert served.requests == []  # not downloaded
    with hub_options(cache_dir=tmp_path / "mine"):
        path = fetch_pretrained(lpips_net.ALEXNET, quiet=True)
    assert path == tmp_path / "mine" / "pretrained" / lpips_net.ALEXNET.filename and path.is_file()
    assert not env.exists()  # $COLORIZE_CACHE/pretrained: untouched


def test_datasets_obey_offline_and_cache_dir(server, tmp_path, monkeypatch):  # noqa: F811
    data, _ = cifar_tarball()
    server.files["cifar-10-python.tar.gz"] = data
    _pin(monkeypatch, "cifar10", "cifar-10-python.tar.gz", data)
    for switch in ("option", "environment"):
        with pytest.raises(DatasetError) as err:
            if switch == "option":
                with hub_options(offline=True):
                    load_dataset("cifar10", cache_size=32, progress=False)
            else:
                monkeypatch.setenv("HF_HUB_OFFLINE", "1")
                load_dataset("cifar10", cache_size=32, progress=False)
        assert "\n" not in str(err.value) and "offline mode is on" in str(err.value)
    assert server.gets() == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with hub_options(cache_dir=tmp_path / "mine"):
        got = load_dataset("cifar10", cache_size=32, progress=False)
    assert len(got.images) and (tmp_path / "mine" / "datasets" / "cifar10" / "cifar-10-python.tar.gz").is_file()
    assert not (tmp_path / "cache").exists()  # the fixture's $COLORIZE_CACHE
    with hub_options(cache_dir=tmp_path / "mine", offline=True):  # cached: offline is no obstacle
        assert len(load_dataset("cifar10", cache_size=32, progress=False).images) == len(got.images)


def test_encoder_weights_are_looked_for_under_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "env-cache"))
    real = encoders.ENCODERS["efficientnet-lite0"]
    mine = tmp_path / "mine" / "encoders"
    mine.mkdir(parents=True)
    shutil.copy(encoders.resolve_weights("efficientnet-lite0"), mine / real.filename)
    monkeypatch.setitem(encoders.ENCODERS, "efficientnet-lite0", replace(real, package="no-such-weights-package"))
    with pytest.raises(encoders.EncoderWeightsError):  # not installed, not in $COLORIZE_CACHE/encoders
        encoders.resolve_weights("efficientnet-lite0")
    with hub_options(cache_dir=tmp_path / "mine"):
        assert encoders.resolve_weights("efficientnet-lite0") == mine / real.filename


def test_train_and_eval_take_offline_and_cache_dir_on_the_command_line(server, served, env, tiny_weights,  # noqa: F811
                                                                       tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from colorize_cli.cli import app

    data, _ = cifar_tarball()
    server.files["cifar-10-python.tar.gz"] = data
    _pin(monkeypatch, "cifar10", "cifar-10-python.tar.gz", data)
    train = ["train", "--model", "unet-sn", "--model-option", "width=4", "--dataset", "cifar10", "--steps", "1",
             "--batch-size", "2", "--size", "32", "--output", str(tmp_path / "run")]
    result = CliRunner().invoke(app, [*train, "--offline"])
    assert result.exit_code == 1 and "offline mode is on" in result.output and server.gets() == []
    result = CliRunner().invoke(app, [*train, "--cache-dir", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "datasets" / "cifar10" / "cifar-10-python.tar.gz").is_file()
    photos = tmp_path / "photos"
    make_photo(photos / "a.png", size=(48, 40))
    evaluate = ["eval", "--model", str(tiny_weights), "--data", str(photos), "--output", str(tmp_path / "report"),
                "--lpips", "--strict-perceptual"]
    result = CliRunner().invoke(app, [*evaluate, "--offline"])
    assert result.exit_code == 1 and "offline mode is on" in result.output and served.requests == []
    result = CliRunner().invoke(app, [*evaluate, "--cache-dir", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "pretrained" / lpips_net.ALEXNET.filename).is_file()
