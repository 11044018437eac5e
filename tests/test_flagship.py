"""The flagship colorizer: colour classification, training phases, and the multi-source sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_photo
from typer.testing import CliRunner

from colorize_cli.app.data import BatchSampler, FolderData, load_folder, mix_sources, parse_source
from colorize_cli.app.train import TrainConfig, Trainer
from colorize_cli.cli import app
from colorize_cli.color import AB_SCALE, ab_bins
from colorize_cli.engine.networks import load_generator
from colorize_cli.models import create_model
from colorize_cli.models.colorspace import lab_to_rgb
from colorize_cli.models.losses import color_classification_loss


def _folder(root: Path, sources: dict[str, int], size=(40, 40)) -> Path:
    for name, n in sources.items():
        for i in range(n):
            make_photo(root / name / f"p{i}.png", size=size, seed=hash((name, i)) % 1000)
    return root


def test_ab_bins_are_the_in_gamut_cells_of_a_10_unit_grid():
    bins = torch.from_numpy(ab_bins())
    assert 250 <= len(bins) <= 320  # Zhang et al. count 313 with a looser test of the gamut
    assert torch.equal(bins, bins.round(decimals=-1)) and bins.abs().max() <= 110
    # every cell centre holds a colour that some L renders inside sRGB (with a half-cell margin)
    lum = torch.linspace(5, 95, 19)
    lab = torch.stack([lum[:, None].expand(-1, len(bins)), *bins.T[:, None, :].expand(2, len(lum), -1)])
    rgb = lab_to_rgb(lab, clip=False)  # (3, L, Q)
    inside = ((rgb > -0.15) & (rgb < 1.15)).all(0).any(0)
    assert inside.float().mean() > 0.97


def test_classification_loss_is_lowest_for_the_true_colour_and_flows():
    bins = torch.from_numpy(ab_bins())
    ab = torch.full((1, 2, 4, 4), 0.0)
    ab[:, 0], ab[:, 1] = 30 / AB_SCALE, -20 / AB_SCALE
    near = ((bins - torch.tensor([30.0, -20.0])) ** 2).sum(1).argmin()
    far = ((bins - torch.tensor([-60.0, 60.0])) ** 2).sum(1).argmin()
    right = torch.zeros(1, len(bins), 4, 4)
    right[:, near] = 8.0
    wrong = torch.zeros(1, len(bins), 4, 4)
    wrong[:, far] = 8.0
    assert color_classification_loss(right, ab, bins) < color_classification_loss(wrong, ab, bins)
    logits = torch.zeros(1, len(bins), 4, 4, requires_grad=True)
    color_classification_loss(logits, ab, bins).backward()
    assert logits.grad[0, near].sum() < 0  # the true colour's score is pushed up


def test_temperature_moves_the_annealed_mean_from_the_mean_to_the_mode():
    model = create_model("efflite-unet", width=1).eval()
    scores = torch.zeros(1, len(model.bins), 1, 1)
    gray = ((model.bins**2).sum(1)).argmin()
    vivid = ((model.bins - torch.tensor([0.5, 0.5])) ** 2).sum(1).argmin()
    scores[0, gray], scores[0, vivid] = 2.0, 2.5
    chroma = {}
    for t in (1.0, 0.38, 0.05):
        model.temperature = t
        chroma[t] = float(model.decode(scores, (1, 1)).norm())
    assert chroma[1.0] < chroma[0.38] < chroma[0.05]
    assert chroma[0.05] == pytest.approx(float(model.bins[vivid].norm()), rel=0.02)


def test_a_few_flagship_steps_lower_the_loss(tmp_path):
    images = load_folder(_folder(tmp_path / "data", {"a": 4, "b": 4}, size=(64, 64)), 64).images
    l_norm, ab = BatchSampler(images, 64, 8, torch.Generator().manual_seed(0)).next()
    trainer = Trainer(TrainConfig(model="efflite-unet", dataset="", output=str(tmp_path / "run"), size=64,
                                  model_options={"width": 1}, lr=3e-3))
    first = trainer.train_step(l_norm, ab)
    for _ in range(30):
        last = trainer.train_step(l_norm, ab)
    assert last["loss_ce"] < 0.85 * first["loss_ce"]
    assert last["loss_l1"] < first["loss_l1"]


def test_a_frozen_encoder_stays_as_published_and_its_rate_is_its_own(tmp_path):
    images = load_folder(_folder(tmp_path / "data", {"a": 4}, size=(64, 64)), 64).images
    l_norm, ab = BatchSampler(images, 64, 4, torch.Generator().manual_seed(0)).next()
    frozen = Trainer(TrainConfig(model="efflite-unet", dataset="", output=str(tmp_path / "f"), size=64,
                                 model_options={"width": 1}, freeze_encoder=True))
    enc = {k: v.clone() for k, v in frozen.encoder.state_dict().items()}
    head = frozen.generator.head.weight.detach().clone()
    frozen.train_step(l_norm, ab)
    assert all(torch.equal(enc[k], v) for k, v in frozen.encoder.state_dict().items())  # incl. BN statistics
    assert not torch.equal(head, frozen.generator.head.weight)
    tuned = Trainer(TrainConfig(model="efflite-unet", dataset="", output=str(tmp_path / "t"), size=64,
                                model_options={"width": 1}, lr=1e-3, encoder_lr=0.1))
    assert [g["lr"] for g in tuned.opt_g.param_groups] == [pytest.approx(1e-3), pytest.approx(1e-4)]


def test_parse_source_reads_an_optional_weight_after_the_last_colon():
    assert parse_source("photos/train") == ("photos/train", 1.0)
    assert parse_source("photos/train:2") == ("photos/train", 2.0)
    assert parse_source("places365:val") == ("places365:val", 1.0)
    assert parse_source("places365:val:0.5") == ("places365:val", 0.5)
    with pytest.raises(ValueError, match="positive"):
        parse_source("photos:0")


def _data(counts: dict[str, int]) -> FolderData:
    n = sum(counts.values())
    of = torch.cat([torch.full((c,), i) for i, c in enumerate(counts.values())])
    return FolderData(torch.zeros(n, 4, 4, 3, dtype=torch.uint8), {}, n, list(counts), of)


@pytest.mark.parametrize("balance", [0.0, 0.5, 1.0])
def test_the_multi_source_sampler_draws_each_source_as_often_as_asked(balance):
    big = _data({"huge": 3000, "small": 30, "tiny": 3})
    other = _data({".": 200})
    mix = mix_sources([("big", big, 3.0), ("other", other, 1.0)], balance)
    sizes = torch.tensor([3000.0, 30.0, 3.0]) ** balance
    asked = torch.cat([0.75 * sizes / sizes.sum(), torch.tensor([0.25])])
    assert [s for _, _, s in mix.shares] == pytest.approx(asked.tolist())
    labels = torch.cat([big.source_of, torch.full((200,), 3)])
    sampler = BatchSampler(mix.images, 4, 20000, torch.Generator().manual_seed(0), probabilities=mix.probabilities)
    drawn = torch.multinomial(sampler.probabilities, 40000, replacement=True, generator=sampler.generator)
    freq = torch.bincount(labels[drawn], minlength=4).double() / 40000
    assert torch.allclose(freq, asked.double(), atol=0.01)
    # within a source every image is as likely: "tiny"'s 3 images each get a third of its share
    p = mix.probabilities[: len(big.images)][big.source_of == 2]
    assert torch.allclose(p, p[0].expand_as(p))


def test_load_folder_records_the_source_folder_of_each_photo(tmp_path):
    root = _folder(tmp_path / "d", {"alpha": 3, "beta": 2})
    make_photo(root / "top.png", size=(40, 40))
    data = load_folder(root, 32, tmp_path / "cache")
    assert data.sources == [".", "alpha", "beta"] and data.source_counts() == [1, 3, 2]
    again = load_folder(root, 32, tmp_path / "cache")  # from the cache
    assert again.sources == data.sources and torch.equal(again.source_of, data.source_of)


def test_cli_trains_on_two_weighted_folders_and_logs_the_shares(tmp_path):
    a = _folder(tmp_path / "a", {"s1": 3, "s2": 2}, size=(48, 48))
    b = _folder(tmp_path / "b", {"t": 3}, size=(48, 48))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--model", "unet-sn", "--dataset", f"{a}:3", "--dataset", str(b),
                                      "--output", str(out), "--size", "32", "--batch-size", "4", "--steps", "2",
                                      "--checkpoint-every", "2"])
    assert result.exit_code == 0, result.output
    assert f"draws: {a} 75.0% (5 photos in 2 source folders, 33.7%-41.3% each); {b} 25.0% (3 photos)" in result.output
    _, config = load_generator(out / "unet-sn.safetensors")
    assert config["trained_on"] == f"{a}:3 + {b}"
    bad = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "missing"), "--output", str(out)])
    assert bad.exit_code == 2 and "not a folder" in bad.output
