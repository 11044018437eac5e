"""Photos with texture made by the tests: noise, edges and gradients (smooth pictures hide errors that
textured ones show: a blurred luminance, a wrong channel weighting, a slow encoder)."""

from __future__ import annotations

import numpy as np


def textured(height: int, width: int, seed: int = 0, color: bool = True) -> np.ndarray:
    """uint8 (H, W, 3) or (H, W): gradients, hard-edged blocks of random colour and pixel noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([x, y, 1 - x * y], axis=-1) * 160 + 40
    cell = max(4, min(height, width) // 6)
    blocks = rng.uniform(-60, 60, (height // cell + 1, width // cell + 1, 3))
    base += blocks.repeat(cell, 0).repeat(cell, 1)[:height, :width]
    base += rng.normal(0, 18, (height, width, 3))
    arr = np.clip(base, 0, 255).astype(np.uint8)
    if color:
        return arr
    return (arr.astype(np.float64) @ [0.299, 0.587, 0.114]).round().clip(0, 255).astype(np.uint8)
