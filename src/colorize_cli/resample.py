"""Resampling of small float planes in NumPy, with the conventions of torch's ``F.interpolate``.

The pipeline resamples chroma (the network's ab, at the working size, up to the photo or the film
frame) and, for films, luminance; every one of these is here once, used by the Colorizer, the film
writer and the motion search of :mod:`colorize_cli.engine.temporal`.
"""

from __future__ import annotations

import numpy as np


def bilinear_weights(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear resampling ``n_in`` -> ``n_out`` samples with half-pixel
    centres (``align_corners=False``): out[i] = in[i0] * (1 - t) + in[i1] * t."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0)
    i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``x`` (..., h, w) resampled to (..., H, W) bilinearly (``F.interpolate(mode="bilinear",
    align_corners=False)``), float32."""
    x = np.asarray(x, np.float32)
    r0, r1, rt = bilinear_weights(size[0], x.shape[-2])
    c0, c1, ct = bilinear_weights(size[1], x.shape[-1])
    # np.take, not x[..., idx]: fancy indexing of the last axis gives a strided array, and every later
    # pass over it (the Lab -> RGB conversion of a whole photo) runs 1.8x slower
    rows = np.take(x, r0, axis=-2)
    rows += (np.take(x, r1, axis=-2) - rows) * rt[:, None]
    out = np.take(rows, c0, axis=-1)
    out += (np.take(rows, c1, axis=-1) - out) * ct
    return out


def resize_area(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``x`` (..., H, W) averaged down to (..., h, w) over the source cells each output covers
    (``F.interpolate(mode="area")``: cell i spans floor(i H / h) to ceil((i + 1) H / h)), float64."""
    out = np.asarray(x, np.float64)
    for axis, n_out in ((-2, size[0]), (-1, size[1])):
        n_in = out.shape[axis]
        i = np.arange(n_out)
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        sums = np.cumsum(out, axis=axis)
        sums = np.concatenate([np.zeros_like(np.take(sums, [0], axis=axis)), sums], axis=axis)
        out = (np.take(sums, end, axis=axis) - np.take(sums, start, axis=axis))
        out /= (end - start).reshape((-1,) + (1,) * (-axis - 1))
    return out


def pool2(x: np.ndarray) -> np.ndarray:
    """``x`` (..., H, W) averaged over 2 x 2 cells, a last odd row or column over what it has
    (``F.avg_pool2d(x, 2, ceil_mode=True)``), float32."""
    x = np.asarray(x, np.float32)
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (x.ndim - 2) + [(0, h % 2), (0, w % 2)]
        x = np.pad(x, pad, mode="edge")  # the mean of a clipped cell equals that of the cell padded by its edge
    return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])
