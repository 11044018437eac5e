"""sRGB <-> CIELAB (D65) in NumPy for colorizing, and the one place where L and ab are normalised.

Colorizing converts every pixel of a photo twice (L in, RGB out), on the CPU, with or without torch:
:func:`pixels_to_l` and :func:`lab_to_pixels` take and give integer code values and use lookup tables
for the transfer curves, several times faster than the exact formulas; at every 16-bit linear level
the 8-bit result is the exact curve's, or one level off where float32 lands on a rounding boundary
(tests/test_guards.py, the gamma table's test). :func:`rgb_to_lab` and :func:`lab_to_rgb` are the exact
float conversions, channel-first ``(3, ...)``. The formulas and constants are those of
``skimage.color``, so results agree with it to 1e-4.

Training needs the same conversions differentiable and on its device: that is
:mod:`colorize_cli.models.colorspace` (torch), built on the constants here and tested against these.
"""

from __future__ import annotations

import functools

import numpy as np

# sRGB (linear) -> XYZ, as in skimage.color.colorconv.xyz_from_rgb
XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# D65 white point, CIE 1931 2-degree observer (skimage's default illuminant)
WHITE_D65 = (0.95047, 1.0, 1.08883)
# the CIE f(t) curve: cube root above T_KNEE, the linear toe 7.787 t + 16/116 below (F_KNEE = f(T_KNEE))
T_KNEE, F_KNEE = 0.008856, 0.2068966
EPS = 1e-12

# Network normalisation: L in [0, 100] -> [-1, 1], ab in about [-110, 110] -> [-1, 1]
L_CENTER = 50.0
L_SCALE = 50.0
AB_SCALE = 110.0

_GAMMA_LUT_SIZE = 1 << 16
_STRIP = 1 << 15  # pixels per chunk of lab_to_pixels: its temporaries stay in the CPU's cache


def normalize_l(lum):
    """L in [0, 100] -> network input in [-1, 1] (NumPy arrays and torch tensors alike)."""
    return lum / L_SCALE - L_CENTER / L_SCALE


def denormalize_l(x):
    return (x + L_CENTER / L_SCALE) * L_SCALE


def normalize_ab(ab):
    """ab in Lab units -> network target in about [-1, 1]."""
    return ab / AB_SCALE


def denormalize_ab(x):
    return x * AB_SCALE


def srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve; ``rgb`` in [0, 1]."""
    rgb = np.asarray(rgb)
    return np.where(rgb > 0.04045, ((np.maximum(rgb, 0.04045) + 0.055) / 1.055) ** 2.4, rgb / 12.92)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve (no clipping)."""
    lin = np.asarray(lin)
    return np.where(lin > 0.0031308, 1.055 * np.maximum(lin, 0.0031308) ** (1 / 2.4) - 0.055, lin * 12.92)


def _f(t: np.ndarray) -> np.ndarray:
    return np.where(t > T_KNEE, np.cbrt(np.maximum(t, EPS)), 7.787 * t + 16 / 116)


def _f_inverse(f: np.ndarray) -> np.ndarray:
    return np.where(f > F_KNEE, f**3, (f - 16 / 116) / 7.787)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1], shape ``(3, ...)`` -> CIELAB (L in [0, 100], a/b roughly +-110), same shape."""
    rgb = np.asarray(rgb)
    dtype = rgb.dtype if rgb.dtype in (np.float32, np.float64) else np.float64
    lin = srgb_to_linear(rgb.astype(dtype, copy=False))
    xyz = np.tensordot(np.asarray(XYZ_FROM_RGB, dtype), lin, axes=1) / np.asarray(WHITE_D65, dtype).reshape(
        (3,) + (1,) * (rgb.ndim - 1))
    fx, fy, fz = _f(xyz)
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)]).astype(dtype, copy=False)


def lab_to_linear(lum: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """L ``(...)`` and ab ``(2, ...)`` -> linear sRGB ``(3, ...)``, not clipped (float32 in, float32 out)."""
    fy = (lum + 16) / 116
    f = np.stack([fy + ab[0] / 500, fy, np.maximum(fy - ab[1] / 200, 0)])  # skimage clips negative z too
    xyz = _f_inverse(f) * np.asarray(WHITE_D65, f.dtype).reshape((3,) + (1,) * fy.ndim)
    return np.tensordot(_rgb_from_xyz(f.dtype), xyz, axes=1)


def lab_to_rgb(lab: np.ndarray, clip: bool = True) -> np.ndarray:
    """CIELAB ``(3, ...)`` -> sRGB in [0, 1] (clipped unless ``clip=False``), like ``skimage.color.lab2rgb``."""
    lab = np.asarray(lab)
    rgb = linear_to_srgb(lab_to_linear(lab[0], lab[1:]))
    return np.clip(rgb, 0, 1) if clip else rgb


def gray_to_l(gray: np.ndarray) -> np.ndarray:
    """Gray values in [0, 1] (any shape) -> CIELAB L of the neutral colour with that sRGB value."""
    return 116 * _f(srgb_to_linear(gray)) - 16  # for R=G=B the luminance Y equals the linear value


@functools.lru_cache(maxsize=2)
def _rgb_from_xyz(dtype) -> np.ndarray:
    return np.linalg.inv(np.asarray(XYZ_FROM_RGB, np.float64)).astype(dtype)


@functools.lru_cache(maxsize=8)
def _lut(kind: str, size: int) -> np.ndarray:
    """Tables of the transfer curves, computed in float64 once per process."""
    codes = np.arange(size, dtype=np.float64) / (size - 1)
    if kind == "to_linear":  # code value (0..size-1) -> linear light
        return srgb_to_linear(codes).astype(np.float32)
    if kind == "gray_l":  # gray code value -> L
        return gray_to_l(codes).astype(np.float32)
    if kind == "to_srgb8":  # linear light sampled at size points -> 8-bit sRGB code value
        return np.floor(linear_to_srgb(codes) * 255 + 0.5).astype(np.uint8)
    raise ValueError(kind)


def pixels_to_l(pixels: np.ndarray, maxval: int) -> np.ndarray:
    """CIELAB L (H, W) float32 of integer sRGB pixels, (H, W) gray or (H, W, 3), code values 0..maxval."""
    if pixels.ndim == 2:
        return np.take(_lut("gray_l", maxval + 1), pixels)
    lin = _lut("to_linear", maxval + 1)
    m = np.asarray(XYZ_FROM_RGB[1], np.float32)
    t_knee = np.float32(T_KNEE)
    flat = pixels.reshape(-1, 3)
    out = np.empty(len(flat), np.float32)
    y, low = np.empty(_STRIP, np.float32), np.empty(_STRIP, np.float32)
    for i in range(0, len(flat), _STRIP):
        k = min(_STRIP, len(flat) - i)
        chunk, yk, lk = np.take(lin, flat[i:i + k]), y[:k], low[:k]
        np.matmul(chunk, m, out=yk)
        # cbrt above the knee, the linear toe below it (its tangent there): no branch
        np.minimum(yk, t_knee, out=lk)
        lk -= t_knee
        lk *= 7.787
        np.maximum(yk, t_knee, out=yk)
        np.cbrt(yk, out=yk)
        yk += lk
        np.multiply(yk, 116, out=out[i:i + k])
        out[i:i + k] -= 16
    return out.reshape(pixels.shape[:2])


def lab_to_pixels(lum: np.ndarray, ab: np.ndarray, maxval: int) -> np.ndarray:
    """L (H, W) and ab (2, H, W), float32 -> integer sRGB pixels (H, W, 3) with code values 0..maxval
    (uint8 for maxval 255, else uint16).

    Runs in chunks of ``_STRIP`` pixels whose temporaries stay in the CPU's cache (2.3x faster than
    whole-image passes on a 2 MP photo); the curve's linear toe is taken without a branch."""
    shape = lum.shape
    lum, ab = lum.reshape(-1), ab.reshape(2, -1)
    n = lum.size
    out = np.empty((n, 3), np.uint8 if maxval <= 255 else np.uint16)
    # the white point folded into the matrix: linear RGB (N, 3) = (white * f^3) (N, 3) @ m
    m = np.ascontiguousarray((_rgb_from_xyz(np.float32) * np.asarray(WHITE_D65, np.float32)).T)
    knee = np.float32(F_KNEE)
    f, toe = np.empty((3, _STRIP), np.float32), np.empty((3, _STRIP), np.float32)
    lin, idx = np.empty((_STRIP, 3), np.float32), np.empty((_STRIP, 3), np.int32)
    for i in range(0, n, _STRIP):
        k = min(_STRIP, n - i)
        fk, tk, lk, ik = f[:, :k], toe[:, :k], lin[:k], idx[:k]
        fy = fk[1]
        np.add(lum[i:i + k], 16, out=fy)
        fy *= 1 / 116
        np.multiply(ab[0, i:i + k], 1 / 500, out=fk[0])
        fk[0] += fy
        np.multiply(ab[1, i:i + k], -1 / 200, out=fk[2])
        fk[2] += fy
        np.maximum(fk[2], 0, out=fk[2])  # skimage clips negative z the same way
        # f^3 above the knee, the linear toe below it: the toe is the tangent of f^3 at the knee, so
        # max(f, knee)^3 + (min(f, knee) - knee) / 7.787 is either, with no branch
        np.minimum(fk, knee, out=tk)
        tk -= knee
        tk *= 1 / 7.787
        np.maximum(fk, knee, out=fk)
        xyz = fk * fk
        xyz *= fk
        xyz += tk
        np.matmul(xyz.T, m, out=lk)
        np.clip(lk, 0, 1, out=lk)
        if maxval <= 255:
            # a table of the curve at 65536 points, already in 8-bit code values: errs by < 0.06 levels
            lk *= _GAMMA_LUT_SIZE - 1
            lk += 0.5
            np.copyto(ik, lk, casting="unsafe")
            np.take(_lut("to_srgb8", _GAMMA_LUT_SIZE), ik, out=out[i:i + k])
        else:
            out[i:i + k] = np.floor(linear_to_srgb(lk) * maxval + 0.5)
    return out.reshape(*shape, 3)


@functools.lru_cache(maxsize=4)
def _ab_bins(step: float) -> np.ndarray:
    levels = np.linspace(0, 1, 48)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij")).reshape(3, -1)
    ab = rgb_to_lab(rgb)[1:]
    cells = np.unique(np.round(ab / step).astype(np.int64).T, axis=0)
    return (cells * step).astype(np.float32)


def ab_bins(step: float = 10.0) -> np.ndarray:
    """Centres ``(Q, 2)`` (ab units, sorted) of the ``step``-spaced ab grid cells that hold colours of
    the sRGB gamut: Zhang et al.'s (2016) quantisation for classifying colours (Q = 313 for theirs).

    The gamut is sampled as a 48-level RGB cube, each colour goes to its nearest grid centre; cheap and
    deterministic, so models compute it (once per process) rather than store it."""
    return _ab_bins(float(step)).copy()


@functools.lru_cache(maxsize=4)
def _bin_table(step: float) -> tuple[np.ndarray, int]:
    cells = np.round(_ab_bins(step) / step).astype(np.int64)
    offset = int(np.abs(cells).max()) + 1
    table = np.full((2 * offset + 1, 2 * offset + 1), -1, np.int64)
    table[cells[:, 0] + offset, cells[:, 1] + offset] = np.arange(len(cells))
    return table, offset


def ab_bin_table(step: float = 10.0) -> tuple[np.ndarray, int]:
    """A lookup table from an ab grid cell to its index in :func:`ab_bins`: ``table[round(a / step) +
    offset, round(b / step) + offset]``, -1 for a cell outside the gamut. Returns (table, offset)."""
    table, offset = _bin_table(float(step))
    return table.copy(), offset


def ab_histogram(ab: np.ndarray, step: float = 10.0) -> np.ndarray:
    """The distribution of colours ``ab`` (2, ...) in Lab units over :func:`ab_bins` (float32, sums
    to 1; colours in no bin are left out)."""
    table, offset = _bin_table(float(step))
    cells = np.clip(np.rint(np.asarray(ab, np.float64).reshape(2, -1) / step).astype(np.int64) + offset,
                    0, len(table) - 1)
    index = table[cells[0], cells[1]]
    counts = np.bincount(index[index >= 0], minlength=int(table.max()) + 1).astype(np.float32)
    return counts / max(float(counts.sum()), 1.0)


def in_gamut(lum: np.ndarray, ab: np.ndarray, tolerance: float = 1e-3) -> np.ndarray:
    """Whether each Lab colour (L (...), ab (2, ...)) lies inside the sRGB gamut (linear RGB within
    [0, 1] up to ``tolerance``)."""
    lin = lab_to_linear(np.asarray(lum, np.float32), np.asarray(ab, np.float32))
    return ((lin >= -tolerance) & (lin <= 1 + tolerance)).all(axis=0)


def saturate(ab: np.ndarray, lum: np.ndarray, factor: float, steps: int = 12) -> np.ndarray:
    """Chroma ``ab`` (2, ...) scaled by ``factor`` at lightness ``lum`` (...), hue kept: 0 gives gray,
    1 the colours as they are. Above 1 each colour grows only as far as the sRGB gamut allows at its
    lightness (found by bisection), so that a more colourful picture needs no clipping, which would
    shift hues; a colour already outside the gamut is not pushed further out."""
    ab = np.asarray(ab, np.float32)
    if factor <= 1:
        return ab * np.float32(max(factor, 0.0))
    lum = np.asarray(lum, np.float32)
    low = np.ones(lum.shape, np.float32)  # the colours as predicted
    high = np.full(lum.shape, factor, np.float32)
    inside = in_gamut(lum, ab * high)
    low[inside] = factor
    todo = ~inside & in_gamut(lum, ab)  # between 1 (inside) and factor (outside)
    for _ in range(steps):
        mid = (low + high) / 2
        ok = in_gamut(lum, ab * mid) & todo
        low = np.where(ok, mid, low)
        high = np.where(todo & ~ok, mid, high)
    return ab * low


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk colourfulness on 0-255 RGB (..., 3): what EVAL.md's CF column reports."""
    x = np.asarray(rgb, np.float64)
    rg = np.abs(x[..., 0] - x[..., 1])
    yb = np.abs(0.5 * (x[..., 0] + x[..., 1]) - x[..., 2])
    return float(np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))
