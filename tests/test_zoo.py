"""The model zoo of the four studies: every registered model builds, colorizes any size through its
size rule, and trains a step of its recipe; the recipes' losses are what the studies say.

Models are built at width 4 (``create_model`` overrides) and trained on tiny random batches. The
LPIPS network (colorize_cli.engine.perceptual) is replaced by a stand-in where these tests check the
trainer's wiring of the perceptual term; one test trains with the real one, its weights (test-made)
fetched from a server on 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_photo
from test_perceptual import env, lpips_files, served  # noqa: F401 - LPIPS files served on 127.0.0.1
from torch import nn
from typer.testing import CliRunner

from colorize_cli.app.train import TrainConfig, Trainer, TrainSetupError
from colorize_cli.cli import app
from colorize_cli.engine.colorizer import Colorizer
from colorize_cli.engine.networks import export_generator
from colorize_cli.engine.perceptual import ALEXNET, LPIPS_ALEX
from colorize_cli.io.images import read_image
from colorize_cli.models import create_discriminator, create_model, get_spec, list_models
from colorize_cli.models.colorspace import model_output_to_rgb
from colorize_cli.models.inputs import gaussian_blur
from colorize_cli.models.losses import adversarial_loss, gradient_penalty, kl_divergence
from colorize_cli.preprocess import equalize_histogram

TINY = {"width": 4}
STUDY_MODELS = ["resnet-patchgan", "pix2pix", "pix2pix-lpips", "pix2pix-wgangp", "pix2pix-wgangp-lpips",
                "regression", "autoencoder", "vae"]


def _train_size(name: str) -> int:
    spec = get_spec(name)
    return spec.fixed_size or max(32, spec.size_multiple)


def _config(name: str, tmp_path, **kw) -> TrainConfig:
    """A tiny run of ``name``: width-4 generator, width-8 discriminator, the smallest size it takes."""
    options = {"width": 8} if get_spec(name).recipe.discriminator else None
    kw.setdefault("size", _train_size(name))
    return TrainConfig(model=name, dataset="", output=str(tmp_path / "run"), model_options=dict(TINY),
                       discriminator_options=options, **kw)


def _batch(size: int, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.rand(n, 2, size, size, generator=g) * 0.6 - 0.3


@pytest.fixture
def stand_in_lpips(monkeypatch):
    """Replace colorize_cli.engine.perceptual by a stand-in; returns the list of the (a, b) pairs it was given.
    ``stand_in_lpips.fail = True`` makes it behave as when the pretrained weights cannot be had."""
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    module = types.ModuleType("colorize_cli.engine.perceptual")

    class WeightsUnavailable(RuntimeError):
        pass

    def lpips_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if module.fail:
            raise WeightsUnavailable("alex.pth: not in /cache/pretrained and HF_HUB_OFFLINE=1;\n"
                                     "copy it there or go online")
        calls.append((a, b))
        return ((a - b) ** 2).flatten(1).mean(1)

    module.WeightsUnavailable, module.lpips_distance, module.fail = WeightsUnavailable, lpips_distance, False
    monkeypatch.setitem(sys.modules, "colorize_cli.engine.perceptual", module)
    return module, calls


def _count_steps(monkeypatch, optimizer, counts: dict, key: str) -> None:
    step = optimizer.step

    def counted(*args, **kwargs):
        counts[key] += 1
        return step(*args, **kwargs)

    monkeypatch.setattr(optimizer, "step", counted)


# ----- every model -----

def test_the_zoo_of_issue_4_is_registered_with_study_and_description():
    assert set(STUDY_MODELS) | {"unet-sn", "unet-bn"} <= set(list_models())
    for name in STUDY_MODELS:
        spec = get_spec(name)
        assert spec.study and len(spec.description) > 60, name


@pytest.mark.parametrize("name", list_models())
def test_colorizer_runs_every_model_on_odd_sizes_through_its_size_rule(name, tmp_path):
    weights = export_generator(create_model(name, **TINY).eval(), name, tmp_path / f"{name}.safetensors",
                               options=TINY)
    colorizer = Colorizer(str(weights), size=64)
    spec = get_spec(name)
    for w, h in [(45, 31), (23, 70)]:
        photo = read_image(make_photo(tmp_path / f"p{w}.png", size=(w, h)))
        wh, ww = colorizer.working_shape(photo)
        if spec.fixed_size:
            assert (wh, ww) == (spec.fixed_size, spec.fixed_size)
        else:
            assert wh % spec.size_multiple == 0 and ww % spec.size_multiple == 0
        ab = colorizer.predict(colorizer.working_input(photo))
        assert ab.shape == (1, 2, wh, ww) and np.isfinite(ab).all()
        assert colorizer.finish(photo, ab[0]).shape == (h, w, 3)


@pytest.mark.parametrize("name", list_models())
def test_each_model_trains_a_step_of_its_recipe(name, tmp_path, monkeypatch, stand_in_lpips):
    trainer = Trainer(_config(name, tmp_path))
    recipe = trainer.recipe
    counts = {"g": 0, "d": 0}
    _count_steps(monkeypatch, trainer.opt_g, counts, "g")
    if trainer.opt_d is not None:
        _count_steps(monkeypatch, trainer.opt_d, counts, "d")
    g_before = [p.detach().clone() for p in trainer.generator.parameters()]
    d_before = [p.detach().clone() for p in trainer.discriminator.parameters()] if trainer.discriminator else []

    logs = trainer.train_step(*_batch(trainer.config.size))

    assert all(np.isfinite(v) for v in logs.values()), logs
    # critic_steps discriminator updates per generator update
    assert counts == {"g": 1, "d": recipe.critic_steps if recipe.discriminator else 0}
    assert any(not torch.equal(a, b) for a, b in zip(g_before, trainer.generator.parameters()))
    if d_before:
        assert any(not torch.equal(a, b) for a, b in zip(d_before, trainer.discriminator.parameters()))
    # the generator's loss is the recipe's weighted sum, and only its terms are there
    assert ("loss_adv" in logs) == (recipe.discriminator is not None)
    assert ("loss_gp" in logs) == (recipe.gan_loss == "wgangp" and recipe.discriminator is not None)
    assert ("loss_perceptual" in logs) == (recipe.perceptual_weight > 0)
    assert ("loss_kl" in logs) == (recipe.kl_weight > 0)
    recon = logs[{"mse": "loss_mse", "ce": "loss_ce"}.get(recipe.recon_loss, "loss_l1")]
    expected = (recipe.recon_weight * recon + logs.get("loss_adv", 0.0)
                + recipe.perceptual_weight * logs.get("loss_perceptual", 0.0) + recipe.kl_weight * logs.get("loss_kl", 0.0))
    assert logs["loss_g"] == pytest.approx(expected, rel=1e-4)


# ----- the recipes of the studies -----

def test_recipes_are_those_of_the_studies():
    p = get_spec("pix2pix").recipe
    assert (p.discriminator, p.gan_loss, p.recon_loss, p.recon_weight, p.critic_steps) == ("patch", "bce", "l1", 100, 1)
    assert p.discriminator_options == {"norm": "batch", "width": 32, "init": "normal"} and p.perceptual_weight == 0
    assert p.lr == 2e-4 and p.betas == (0.5, 0.999)
    assert get_spec("pix2pix-lpips").recipe.perceptual_weight == 50
    for name in ("pix2pix-wgangp", "pix2pix-wgangp-lpips"):
        r = get_spec(name).recipe
        assert (r.gan_loss, r.critic_steps, r.gp_weight, r.recon_weight) == ("wgangp", 5, 10, 100)
        assert r.discriminator_options["norm"] == "none" and r.discriminator_options["output"] == "linear"
    assert get_spec("pix2pix-wgangp-lpips").recipe.perceptual_weight == 50
    r = get_spec("resnet-patchgan").recipe
    assert r.discriminator == "patch"
    assert r.discriminator_options == {"norm": "spectral", "width": 32, "init": "xavier"}
    for name in ("regression", "autoencoder"):
        r = get_spec(name).recipe
        assert (r.discriminator, r.recon_loss, r.kl_weight, r.perceptual_weight) == (None, "mse", 0, 0)
    v = get_spec("vae").recipe
    assert v.discriminator is None and v.kl_weight > 0 and v.recon_loss == "l1"
    # one U-Net family: pix2pix is an option set of the class unet-sn uses
    assert get_spec("pix2pix").builder is get_spec("unet-sn").builder
    assert get_spec("pix2pix").options == {"width": 16, "depth": 7, "dropout": 0.5, "init": "normal"}
    assert get_spec("autoencoder").fixed_size == 224


def test_pix2pix_generator_has_gaussian_init_and_dropout_only_in_training():
    torch.manual_seed(0)
    g = create_model("pix2pix")
    conv = g.downs[2].block[0].weight.detach()
    assert abs(float(conv.std()) - 0.02) < 0.002 and abs(float(conv.mean())) < 0.002
    bn = g.downs[2].block[1].weight.detach()
    assert abs(float(bn.mean()) - 1) < 0.01 and 0.01 < float(bn.std()) < 0.03
    dropped = [any(isinstance(m, nn.Dropout) for m in up.modules()) for up in g.ups]
    assert dropped == [True, True, True] + [False] * 4
    small = create_model("pix2pix", width=4).eval()
    x = torch.rand(1, 1, 128, 128) * 2 - 1
    assert torch.equal(small(x), small(x))  # eval: no dropout noise


def test_resnet_patchgan_is_xavier_initialised():
    g = create_model("resnet-patchgan")
    w = g.net[0].weight.detach()  # 7x7 stem, 1 -> 32
    bound = (6 / (1 * 49 + 32 * 49)) ** 0.5
    assert float(w.abs().max()) <= bound and abs(float(w.std()) - bound / 3**0.5) < 0.1 * bound
    assert isinstance(g.net[-1], nn.Tanh)
    params = sum(p.numel() for p in g.parameters())
    assert 1e6 < params < 3e6  # a width that trains on a CPU, not the study's 10 M


def test_patch_discriminator_is_a_70x70_patchgan():
    d = create_discriminator("patch", width=8).eval()
    assert d.receptive_field == 70
    x = torch.zeros(1, 1, 256, 256, requires_grad=True)
    score = d(x, torch.zeros(1, 2, 256, 256))
    assert score.shape == (1, 1, 30, 30)  # Cano & Moncada's 30x30 labels at 256 px
    (grad,) = torch.autograd.grad(score[0, 0, 15, 15], x)
    rows, cols = grad[0, 0].abs().sum(1).nonzero(), grad[0, 0].abs().sum(0).nonzero()
    assert int(rows.max() - rows.min()) + 1 <= 70 and int(cols.max() - cols.min()) + 1 <= 70
    names = [type(m).__name__ for m in d.net]
    assert names[:2] == ["Conv2d", "LeakyReLU"] and names[-1] == "Tanh" and "BatchNorm2d" in names
    critic = create_discriminator("patch", **get_spec("pix2pix-wgangp").recipe.discriminator_options)
    kinds = {type(m) for m in critic.modules()}
    assert nn.Tanh not in kinds and not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    sn = create_discriminator("patch", norm="spectral", init="xavier")
    assert sum(hasattr(m, "parametrizations") for m in sn.modules()) == 3


def test_gradient_penalty_is_the_squared_distance_of_the_gradient_norm_from_one():
    class Linear(nn.Module):  # critic(L, ab) = <w, ab>: its gradient is w, whatever the input
        def __init__(self, w):
            super().__init__()
            self.w = nn.Parameter(w)

        def forward(self, l_norm, ab):
            return (ab * self.w).sum(dim=(1, 2, 3))

    w = torch.randn(2, 8, 8)
    w = w * (3 / w.norm())  # ‖∇‖ = 3
    l_norm, real, fake = torch.zeros(4, 1, 8, 8), torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8)
    assert float(gradient_penalty(Linear(w), l_norm, real, fake).detach()) == pytest.approx(4.0, rel=1e-5)
    unit = w / 3
    assert float(gradient_penalty(Linear(unit), l_norm, real, fake).detach()) == pytest.approx(0.0, abs=1e-8)


def test_wgangp_critic_loss_is_wasserstein_plus_ten_times_the_penalty(tmp_path):
    class Linear(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = nn.Parameter(w)

        def forward(self, l_norm, ab):
            return (ab * self.w).sum(dim=(1, 2, 3))

    trainer = Trainer(_config("pix2pix-wgangp", tmp_path))
    size = trainer.config.size
    w = torch.randn(2, size, size)
    w = w * (3 / w.norm())
    trainer.discriminator = Linear(w)
    trainer.opt_d = torch.optim.SGD(trainer.discriminator.parameters(), lr=0.0)  # the critic stays put
    fakes = []
    trainer.generator.register_forward_hook(lambda m, i, out: fakes.append(out.detach()))
    l_norm, ab = _batch(size)
    logs = trainer.train_step(l_norm, ab)
    wasserstein = float((fakes[0] * w).sum(dim=(1, 2, 3)).mean() - (ab * w).sum(dim=(1, 2, 3)).mean())
    assert logs["loss_gp"] == pytest.approx(4.0, rel=1e-4)
    assert logs["loss_d"] == pytest.approx(wasserstein + 10 * 4.0, rel=1e-4)
    assert logs["loss_adv"] == pytest.approx(-float((fakes[0] * w).sum(dim=(1, 2, 3)).mean()), rel=1e-4)


def test_lsgan_is_mean_squared_error_on_the_patch_probabilities():
    score = torch.rand(2, 1, 6, 6) * 2 - 1
    p = (score + 1) / 2
    assert float(adversarial_loss(score, True, "lsgan")) == pytest.approx(float(F.mse_loss(p, torch.ones_like(p))))
    assert float(adversarial_loss(score, False, "lsgan")) == pytest.approx(float(F.mse_loss(p, torch.zeros_like(p))))
    bce = F.binary_cross_entropy(p, torch.ones_like(p))
    assert float(adversarial_loss(score, True, "bce")) == pytest.approx(float(bce), rel=1e-5)


def test_gan_loss_option_overrides_the_recipe_and_its_discriminator(tmp_path):
    lsgan = Trainer(_config("pix2pix", tmp_path, gan_loss="lsgan"))
    assert lsgan.recipe.gan_loss == "lsgan" and lsgan.recipe.critic_steps == 1
    assert isinstance(lsgan.discriminator.net[-1], nn.Tanh)
    wgan = Trainer(_config("pix2pix", tmp_path, gan_loss="wgangp"))
    assert (wgan.recipe.gan_loss, wgan.recipe.critic_steps, wgan.recipe.gp_weight) == ("wgangp", 5, 10)
    kinds = {type(m) for m in wgan.discriminator.modules()}
    assert nn.Tanh not in kinds and nn.BatchNorm2d not in kinds
    back = Trainer(_config("pix2pix-wgangp", tmp_path, gan_loss="bce"))
    assert back.recipe.critic_steps == 1 and isinstance(back.discriminator.net[-1], nn.Tanh)
    assert get_spec("unet-sn").recipe.with_gan_loss("lsgan").discriminator_options["norm"] == "spectral"
    with pytest.raises(ValueError, match="without a discriminator"):
        Trainer(_config("regression", tmp_path, gan_loss="lsgan"))
    with pytest.raises(ValueError, match="use bce, lsgan, wgangp"):
        Trainer(_config("pix2pix", tmp_path, gan_loss="hinge"))


def test_training_size_must_fit_the_network(tmp_path):
    with pytest.raises(TrainSetupError, match="multiple of 128"):
        Trainer(_config("pix2pix", tmp_path, size=64))
    with pytest.raises(TrainSetupError, match="224 px only"):
        Trainer(_config("autoencoder", tmp_path, size=128))


# ----- the conditional VAE -----

def test_kl_matches_the_closed_form_of_torch_distributions():
    mu, logvar = torch.randn(5, 8), torch.randn(5, 8)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5, 8), torch.ones(5, 8))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert float(kl_divergence(mu, logvar)) == pytest.approx(float(expected), rel=1e-5)
    assert float(kl_divergence(torch.zeros(3, 8), torch.zeros(3, 8))) == 0.0


def test_vae_samples_differ_by_code_and_repeat_by_seed():
    torch.manual_seed(0)
    vae = create_model("vae", **TINY).eval()
    l_norm = torch.rand(2, 1, 32, 32) * 2 - 1
    mean = vae(l_norm)
    assert torch.equal(mean, vae(l_norm, torch.zeros(2, vae.latent_dim)))  # z = 0 by default
    z1 = vae.sample_latents(2, torch.Generator().manual_seed(7))
    assert torch.equal(z1, vae.sample_latents(2, torch.Generator().manual_seed(7)))
    # code k does not depend on how many are drawn: sample 2 of four is sample 2 of two
    assert torch.equal(vae.sample_latents(4, torch.Generator().manual_seed(7))[:2], z1)
    z2 = vae.sample_latents(2, torch.Generator().manual_seed(8))
    a, b = vae(l_norm, z1), vae(l_norm, z2)
    assert (a - b).abs().mean() > 1e-4 and (a - mean).abs().mean() > 1e-4
    ab = torch.rand(2, 2, 32, 32) * 0.4 - 0.2
    pred, mu, logvar = vae.reconstruct(l_norm, ab)
    assert pred.shape == ab.shape and mu.shape == logvar.shape == (2, vae.latent_dim)


# ----- preprocessing: --blur and --equalize -----

def test_blur_is_a_5x5_gaussian_of_sigma_0_7():
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1
    x = torch.arange(-2, 3, dtype=torch.float64)
    k = torch.exp(-(x**2) / (2 * 0.7**2))
    k = k / k.sum()
    out = gaussian_blur(impulse)[0, 0].double()
    assert torch.allclose(out[2:7, 2:7], torch.outer(k, k), atol=1e-7)
    assert float(out.sum()) == pytest.approx(1.0) and float(out[:2].abs().sum()) == 0
    flat = torch.full((1, 1, 6, 6), 0.3)
    assert torch.allclose(gaussian_blur(flat), flat)


def test_equalize_spreads_a_dark_low_contrast_l_evenly():
    import skimage.exposure

    rng = np.random.default_rng(0)
    dark = (rng.random((1, 1, 64, 64)) * 0.4 - 0.9).astype(np.float32)  # L between 5 and 25: dark, low contrast
    eq = equalize_histogram(dark)
    # each pixel becomes its mid-rank among the image's 256 levels, stretched to [-1, 1]
    levels = np.rint((dark.ravel() + 1) * 127.5)
    below = (levels[None, :] < levels[:, None]).sum(1) + (levels[None, :] == levels[:, None]).sum(1) / 2
    assert np.allclose(eq.ravel(), below / levels.size * 2 - 1, atol=1e-6)
    # so the tones keep their order and fill the range evenly
    order = dark.ravel().argsort()
    assert (np.diff(eq.ravel()[order]) >= 0).all()
    quantiles = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    assert np.allclose(np.quantile(eq.ravel(), quantiles), 2 * quantiles - 1, atol=0.05)
    assert abs(float(eq.mean())) < 1e-3 and float(eq.std()) == pytest.approx(1 / 3**0.5, abs=0.02)
    reference = skimage.exposure.equalize_hist(dark[0, 0], nbins=256) * 2 - 1
    assert np.abs(reference - eq[0, 0]).mean() < 0.03
    flat = np.full((1, 1, 5, 5), 0.2, np.float32)
    assert np.array_equal(equalize_histogram(flat), flat)


@pytest.mark.parametrize("blur,equalize", [(False, False), (True, False), (False, True), (True, True)])
def test_trainer_feeds_the_generator_the_preprocessed_l(blur, equalize, tmp_path):
    trainer = Trainer(_config("unet-sn", tmp_path, blur=blur, equalize=equalize))
    seen = []
    trainer.generator.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    l_norm, ab = _batch(32)
    trainer.train_step(l_norm, ab)
    expected = gaussian_blur(l_norm) if blur else l_norm
    expected = torch.from_numpy(equalize_histogram(expected.numpy())) if equalize else expected
    assert torch.allclose(seen[0], expected)
    trainer.predict(l_norm)  # validation and inference: equalised if trained so, never blurred
    assert torch.allclose(seen[1], torch.from_numpy(equalize_histogram(l_norm.numpy())) if equalize else l_norm)


def test_colorizer_equalizes_l_for_weights_trained_with_equalize(tmp_path):
    model = create_model("unet-sn", **TINY).eval()
    plain = export_generator(model, "unet-sn", tmp_path / "a.safetensors", options=TINY)
    equalized = export_generator(model, "unet-sn", tmp_path / "b.safetensors", {"equalize_l": True}, TINY)
    photo = read_image(make_photo(tmp_path / "p.png", size=(40, 30)))
    l_plain = Colorizer(str(plain)).working_input(photo)
    assert np.allclose(Colorizer(str(equalized)).working_input(photo), equalize_histogram(l_plain))


# ----- the perceptual term -----

def test_lpips_term_compares_the_photos_in_srgb_with_gradients(tmp_path, stand_in_lpips):
    _, calls = stand_in_lpips
    trainer = Trainer(_config("pix2pix-lpips", tmp_path))
    calls.clear()  # the check made when the trainer starts
    l_norm, ab = _batch(trainer.config.size)
    trainer.train_step(l_norm, ab)
    (fake_rgb, real_rgb), = calls
    assert fake_rgb.shape == real_rgb.shape == (2, 3, *l_norm.shape[-2:]) and fake_rgb.requires_grad
    assert torch.allclose(real_rgb, model_output_to_rgb(l_norm, ab))
    assert 0 <= float(fake_rgb.detach().min()) and float(fake_rgb.detach().max()) <= 1


def test_unavailable_lpips_weights_stop_training_at_once_with_one_line(tmp_path, stand_in_lpips):
    # asked for by name (--perceptual lpips); auto falls back to the encoder distance (test_perceptual_trunks)
    module, _ = stand_in_lpips
    module.fail = True
    with pytest.raises(TrainSetupError, match="LPIPS") as info:
        Trainer(_config("pix2pix-wgangp-lpips", tmp_path, perceptual="lpips"))
    assert "\n" not in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["train", "--model", "pix2pix-lpips", "--dataset", str(empty), "--size", "128",
                                      "--output", str(tmp_path / "run"), "--perceptual", "lpips"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "LPIPS" in errors[0] and "pretrained weights are unavailable" in errors[0]
    assert "no image files" not in result.output  # it stopped before looking at the data


def test_lpips_trains_with_its_weights_fetched_and_verified(served, tmp_path):  # noqa: F811
    # the LPIPS files (random values, their own sha256) come from a server on 127.0.0.1 through the
    # real downloader: the test runs everywhere, the official files (245 MB) are never needed
    trainer = Trainer(_config("pix2pix-lpips", tmp_path))
    logs = trainer.train_step(*_batch(trainer.config.size))
    assert np.isfinite(logs["loss_perceptual"]) and logs["loss_perceptual"] > 0
    assert trainer.perceptual_name == "lpips"
    assert sorted(served.requests) == sorted(f"/{spec.filename}" for spec in (ALEXNET, LPIPS_ALEX))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_colorizer_samples_several_colorizations_of_a_vae(tmp_path, backend, monkeypatch):
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    weights = export_generator(create_model("vae", **TINY).eval(), "vae", tmp_path / "vae.safetensors",
                               options=TINY)
    colorizer = Colorizer(str(weights), backend=backend)
    l_norm = colorizer.working_input(read_image(make_photo(tmp_path / "p.png", size=(40, 30))))
    z = colorizer.sample_latents(3, seed=5)
    assert np.array_equal(z, colorizer.sample_latents(3, seed=5))
    assert np.array_equal(z[:2], colorizer.sample_latents(2, seed=5))  # code k depends on the seed and k only
    samples = [colorizer.predict(l_norm, z[i:i + 1]) for i in range(3)]
    assert np.abs(samples[0] - samples[1]).mean() > 1e-3
    assert np.allclose(colorizer.predict(l_norm), colorizer.predict(l_norm, np.zeros((1, 8), np.float32)), atol=1e-5)
    if backend == "onnx":  # the ONNX graph's sampled colorizations are torch's
        reference = Colorizer(str(weights), backend="torch")
        assert np.abs(reference.predict(l_norm, z[1:2]) - samples[1]).max() < 1e-3
    unet = export_generator(create_model("unet-sn", **TINY).eval(), "unet-sn", tmp_path / "u.safetensors",
                            options=TINY)
    with pytest.raises(ValueError, match="no latent code"):
        Colorizer(str(unet)).sample_latents(2, seed=0)


def test_cli_samples_writes_n_different_colorizations_reproducibly(tmp_path):
    torch.manual_seed(0)
    weights = export_generator(create_model("vae", **TINY).eval(), "vae", tmp_path / "vae.safetensors",
                               options=TINY)
    make_photo(tmp_path / "in" / "p.png", size=(40, 30), mode="L")
    runner = CliRunner()

    def colorize(*args):
        return runner.invoke(app, [str(tmp_path / "in"), "--model", str(weights), "--quiet", *args])

    result = colorize("--samples", "3", "--seed", "4", "--output", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    outs = [np.asarray(read_image(tmp_path / "a" / f"p_color-{k}.png").pixels) for k in (1, 2, 3)]
    assert all(o.shape == (30, 40, 3) for o in outs)
    # different codes, different colours (an untrained decoder on a pretrained trunk: by little)
    assert np.abs(outs[0].astype(int) - outs[1]).mean() > 0.1
    assert colorize("--samples", "3", "--seed", "4", "--output", str(tmp_path / "b")).exit_code == 0
    for k in (1, 2, 3):  # the same seed gives the same pictures
        assert (tmp_path / "a" / f"p_color-{k}.png").read_bytes() == (tmp_path / "b" / f"p_color-{k}.png").read_bytes()
    assert colorize("--samples", "3", "--seed", "5", "--output", str(tmp_path / "c")).exit_code == 0
    assert (tmp_path / "a" / "p_color-1.png").read_bytes() != (tmp_path / "c" / "p_color-1.png").read_bytes()
    # outputs of an earlier run are recognised, not colorized again; a finished photo is skipped
    result = colorize("--samples", "3", "--seed", "4", "--json")
    assert result.exit_code == 0 and (tmp_path / "in" / "p_color-3.png").exists()
    again = runner.invoke(app, [str(tmp_path / "in"), "--model", str(weights), "--samples", "3", "--json"])
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["skipped_existing"] == 1 and summary["skipped_own_outputs"] == 3
    # a model without a latent code: a usage error that says so
    unet = export_generator(create_model("unet-sn", **TINY).eval(), "unet-sn", tmp_path / "u.safetensors",
                            options=TINY)
    result = runner.invoke(app, [str(tmp_path / "in" / "p.png"), "--model", str(unet), "--samples", "2"])
    assert result.exit_code == 2 and "no latent code" in result.output


def test_cli_train_takes_gan_loss_blur_and_equalize(tmp_path):
    import json

    for i in range(3):
        make_photo(tmp_path / "data" / f"p{i}.png", size=(40, 40), seed=i)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--model", "unet-sn", "--dataset", str(tmp_path / "data"),
                                      "--output", str(out), "--steps", "2", "--batch-size", "2", "--size", "32",
                                      "--gan-loss", "lsgan", "--blur", "--equalize"])
    assert result.exit_code == 0, result.output
    config = torch.load(out / "checkpoint.pt", weights_only=False)["config"]
    assert (config["gan_loss"], config["blur"], config["equalize"]) == ("lsgan", True, True)
    assert json.loads((out / "unet-sn.json").read_text())["equalize_l"] is True
