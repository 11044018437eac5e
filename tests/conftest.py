"""Shared fixtures: tiny photos and tiny models made by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorize_cli.engine.networks import export_generator
from colorize_cli.models import create_model


def make_photo(path: Path, size=(37, 29), seed: int = 0, mode: str = "RGB") -> Path:
    """A small smooth colour picture (gradients + a blob) saved at ``path``."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([x, y, 1 - x], axis=-1) * 200 + rng.uniform(0, 40, 3)
    blob = np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) * 20)[..., None] * np.array([50, -40, 30])
    arr = np.clip(base + blob, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).convert(mode).save(path)
    return path


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    """An exported, untrained unet-sn of width 4 (fast), as ``colorize --model PATH`` loads it."""
    torch.manual_seed(0)
    model = create_model("unet-sn", width=4)
    # make its output non-trivial: random weights with BN in eval mode give a real colour map
    return export_generator(model.eval(), "unet-sn", tmp_path / "tiny.safetensors", options={"width": 4})
