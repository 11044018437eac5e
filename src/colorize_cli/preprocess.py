"""Histogram equalisation of the L input (Cano & Moncada §IV), in NumPy.

``colorize train --equalize`` equalises the training inputs; since the network then expects equalised
L, the exported weights record it (``equalize_l`` in their config) and the Colorizer equalises photos
the same way, with this function (training calls it too, so both see the same L). The Gaussian blur
that only training applies is in :mod:`colorize_cli.models.inputs`.
"""

from __future__ import annotations

import numpy as np

EQUALIZE_BINS = 256


def equalize_histogram(l_norm: np.ndarray, bins: int = EQUALIZE_BINS) -> np.ndarray:
    """Histogram-equalise each image of a normalised L batch ``(N, 1, H, W)`` (float32).

    Each pixel becomes its rank in its image: the fraction of the image's pixels darker than it plus
    half of those at its level (over ``bins`` levels), stretched to L in [0, 100]. The output's
    levels are spread evenly over the range, with mean L = 50, whatever the photo's exposure and
    contrast. An image of a single level is returned unchanged.
    """
    n = l_norm.shape[0]
    flat = l_norm.reshape(n, -1)
    idx = np.rint((np.clip(flat, -1, 1) + 1) * ((bins - 1) / 2)).astype(np.int64)
    out = np.empty_like(flat)
    for i in range(n):
        hist = np.bincount(idx[i], minlength=bins).astype(np.float64)
        if np.count_nonzero(hist) < 2:
            out[i] = flat[i]
            continue
        lut = (np.cumsum(hist) - hist / 2) / flat.shape[1]
        out[i] = lut[idx[i]] * 2 - 1
    return out.reshape(l_norm.shape)
