"""``colorize eval`` end to end on tiny photos, and the model cards with their comparison table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from conftest import make_photo
from PIL import Image
from typer.testing import CliRunner

from colorize_cli.app.evaluate import EVAL_SIZE
from colorize_cli.cli import app
from colorize_cli.engine import metrics

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
from model_cards import write_cards


def test_eval_scores_models_beside_gray_and_the_cards_compare_them(tmp_path, tiny_weights):
    for i in range(3):
        make_photo(tmp_path / "gt" / f"p{i}.jpg", size=(60, 40), seed=i)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "gt"), "--model", str(tiny_weights),
                                      "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(line) == {"gray", str(tiny_weights)}
    # the gray baseline by hand: the 256 px centre crop against its own luminance
    with Image.open(tmp_path / "gt" / "p0.jpg") as im:
        truth = np.asarray(im.convert("RGB").crop((10, 0, 50, 40)).resize((EVAL_SIZE, EVAL_SIZE),
                                                                          Image.Resampling.BICUBIC))
    gray = np.repeat(np.asarray(Image.fromarray(truth).convert("L"))[..., None], 3, axis=2)
    rows = [r for r in (out / "per_image.csv").read_text().splitlines() if r.startswith("gray,p0,")]
    assert len(rows) == 1
    assert abs(float(rows[0].split(",")[2]) - metrics.psnr(gray, truth)) < 1e-3
    assert line["gray"]["cf"] == 0 and line["gray"]["grayish"] == 1.0
    assert line[str(tiny_weights)]["n"] == 3
    assert (out / "sheet.png").exists() and "Command: `" in (out / "report.md").read_text()

    cards = tmp_path / "docs" / "models.md"
    write_cards(out, cards)
    text = cards.read_text()
    table = [r for r in text.splitlines() if r.startswith("| ")]
    assert table[0].startswith("| model | parameters | file | trained | train wall time | PSNR")
    assert any(r.startswith("| gray (L only") for r in table)
    model_row = next(r for r in table if r.startswith(f"| {tiny_weights} |"))
    assert "steps" in model_row and " M |" in model_row
    assert (tmp_path / "docs" / "img" / "tiny-strip.png").exists()


def test_the_card_of_a_fine_tuned_model_counts_both_phases(tmp_path):
    from colorize_cli.engine.networks import export_generator
    from colorize_cli.models import create_model

    torch.manual_seed(0)
    extra = {"step": 3, "train_batch": 2, "train_size": 32, "train_seconds": 60, "init": "the earlier tiny weights",
             "init_trained": "5 steps × 2 at 32 px on other photos", "init_train_seconds": 120}
    weights = export_generator(create_model("unet-sn", width=4).eval(), "unet-sn", tmp_path / "tuned.safetensors",
                               extra, options={"width": 4})
    make_photo(tmp_path / "gt" / "p0.jpg", size=(40, 40), seed=0)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--data", str(tmp_path / "gt"), "--model", str(weights),
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    write_cards(out, tmp_path / "models.md")
    text = (tmp_path / "models.md").read_text()
    row = next(r for r in text.splitlines() if r.startswith(f"| {weights} |"))
    assert "| 3 steps × 2 at 32 px after 5 steps × 2 at 32 px on other photos | 3 min |" in row
    assert "- Fine-tuned from: the earlier tiny weights" in text
