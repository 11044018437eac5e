"""sRGB <-> CIELAB (D65) in torch, and the one place where L and ab are normalised.

Every function works on batched tensors shaped ``(N, 3, H, W)`` (or ``(3, H, W)``), on any device,
and is differentiable. The formulas and constants are those of ``skimage.color`` so that results
agree with it to 1e-4.
"""

from __future__ import annotations

import functools

import torch

# sRGB (linear) -> XYZ, as in skimage.color.colorconv.xyz_from_rgb
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# D65 white point, CIE 1931 2-degree observer (skimage's default illuminant)
_WHITE_D65 = (0.95047, 1.0, 1.08883)

# Network normalisation: L in [0, 100] -> [-1, 1], ab in about [-110, 110] -> [-1, 1]
L_CENTER = 50.0
L_SCALE = 50.0
AB_SCALE = 110.0

_EPS = 1e-12


def _matrix(device: torch.device, dtype: torch.dtype, inverse: bool = False) -> torch.Tensor:
    m = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64)
    if inverse:
        m = torch.linalg.inv(m)
    return m.to(device=device, dtype=dtype)


def _white(ref: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_WHITE_D65, device=ref.device, dtype=ref.dtype).view(3, 1, 1)


def _apply_matrix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # x: (..., 3, H, W); contract the channel axis with the 3x3 matrix
    return torch.einsum("ij,...jhw->...ihw", m, x)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Undo the sRGB transfer curve; ``rgb`` in [0, 1]."""
    low = rgb / 12.92
    high = ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb > 0.04045, high, low)


def linear_to_srgb(lin: torch.Tensor) -> torch.Tensor:
    """Apply the sRGB transfer curve (no clipping)."""
    low = lin * 12.92
    high = 1.055 * lin.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(lin > 0.0031308, high, low)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], shape ``(..., 3, H, W)`` -> CIELAB (L in [0, 100], a/b roughly +-110)."""
    xyz = _apply_matrix(_matrix(rgb.device, rgb.dtype), srgb_to_linear(rgb)) / _white(rgb)
    f_high = xyz.clamp(min=_EPS) ** (1 / 3)
    f = torch.where(xyz > 0.008856, f_high, 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(-3)
    lum = 116 * fy - 16
    a = 500 * (fx - fy)
    b = 200 * (fy - fz)
    return torch.stack([lum, a, b], dim=-3)


def lab_to_rgb(lab: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """CIELAB -> sRGB in [0, 1] (clipped unless ``clip=False``), like ``skimage.color.lab2rgb``."""
    lum, a, b = lab.unbind(-3)
    fy = (lum + 16) / 116
    fx = a / 500 + fy
    fz = (fy - b / 200).clamp(min=0)  # skimage clips negative z the same way
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, f**3, (f - 16 / 116) / 7.787) * _white(lab)
    rgb = linear_to_srgb(_apply_matrix(_matrix(lab.device, lab.dtype, inverse=True), xyz))
    return rgb.clamp(0, 1) if clip else rgb


def gray_to_l(gray: torch.Tensor) -> torch.Tensor:
    """Gray values in [0, 1] (any shape) -> CIELAB L of the neutral colour with that sRGB value."""
    y = srgb_to_linear(gray)  # for R=G=B the luminance Y equals the linear value
    f = torch.where(y > 0.008856, y.clamp(min=_EPS) ** (1 / 3), 7.787 * y + 16 / 116)
    return 116 * f - 16


def normalize_l(lum: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> network input in [-1, 1]."""
    return lum / L_SCALE - L_CENTER / L_SCALE


def denormalize_l(x: torch.Tensor) -> torch.Tensor:
    return (x + L_CENTER / L_SCALE) * L_SCALE


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """ab in Lab units -> network target in about [-1, 1]."""
    return ab / AB_SCALE


def denormalize_ab(x: torch.Tensor) -> torch.Tensor:
    return x * AB_SCALE


def rgb_to_model_input(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB batch in [0, 1] -> (normalised L ``(N,1,H,W)``, normalised ab ``(N,2,H,W)``)."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., :1, :, :]), normalize_ab(lab[..., 1:, :, :])


def model_output_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L and ab -> sRGB in [0, 1]."""
    lab = torch.cat([denormalize_l(l_norm), denormalize_ab(ab_norm)], dim=-3)
    return lab_to_rgb(lab)


# ----- fast full-resolution paths for inference (not differentiable) -----
# The pipeline converts every pixel of a photo twice (L in, RGB out). These versions do it with
# lookup tables for the transfer curves, which is several times faster than the exact formulas on
# a CPU: at every 16-bit linear level the 8-bit result is the exact curve's, or one level off where
# float32 lands on a rounding boundary (tests/test_guards.py, the gamma table's test).

_LUT_CACHE: dict[tuple, torch.Tensor] = {}
_GAMMA_LUT_SIZE = 1 << 16


def _lut(kind: str, size: int) -> torch.Tensor:
    key = (kind, size)
    if key not in _LUT_CACHE:
        if kind == "to_linear":  # code value (0..size-1) -> linear light
            _LUT_CACHE[key] = srgb_to_linear(torch.arange(size, dtype=torch.float64) / (size - 1)).float()
        elif kind == "gray_l":  # gray code value -> L
            _LUT_CACHE[key] = gray_to_l(torch.arange(size, dtype=torch.float64) / (size - 1)).float()
        elif kind == "to_srgb8":  # linear light sampled at size points -> 8-bit sRGB code value
            srgb = linear_to_srgb(torch.linspace(0, 1, size, dtype=torch.float64))
            _LUT_CACHE[key] = srgb.mul(255).round().to(torch.uint8)
    return _LUT_CACHE[key]


def _take(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for an int32 index tensor of any shape (index_select is ~3x faster on a CPU)."""
    return torch.index_select(table, 0, idx.reshape(-1)).view(idx.shape)


def pixels_to_l(pixels: torch.Tensor, maxval: int) -> torch.Tensor:
    """CIELAB L (H, W) of integer sRGB pixels, (H, W) gray or (H, W, 3), with code values 0..maxval."""
    idx = pixels.to(torch.int32)
    if pixels.ndim == 2:
        return _take(_lut("gray_l", maxval + 1), idx)
    lin = _lut("to_linear", maxval + 1)
    m = _XYZ_FROM_RGB[1]
    y = _take(lin, idx[..., 0]) * m[0] + _take(lin, idx[..., 1]) * m[1] + _take(lin, idx[..., 2]) * m[2]
    f = torch.where(y > 0.008856, y.clamp(min=_EPS) ** (1 / 3), 7.787 * y + 16 / 116)
    return 116 * f - 16


def lab_to_pixels(lum: torch.Tensor, ab: torch.Tensor, maxval: int) -> torch.Tensor:
    """L (H, W) and ab (2, H, W) -> integer sRGB pixels (H, W, 3) with code values 0..maxval."""
    fy = lum.add(16).div_(116)
    f = torch.empty((3, *lum.shape), dtype=torch.float32)
    torch.add(fy, ab[0], alpha=1 / 500, out=f[0])
    f[1] = fy
    torch.add(fy, ab[1], alpha=-1 / 200, out=f[2]).clamp_(min=0)
    xyz = f.pow(3)
    low = f <= 0.2068966  # the linear toe of the curve: rare (very dark or saturated pixels)
    if bool(low.any()):
        xyz[low] = (f[low] - 16 / 116) / 7.787
    xyz *= torch.tensor(_WHITE_D65, dtype=torch.float32).view(3, 1, 1)
    lin = (_matrix(xyz.device, torch.float32, inverse=True) @ xyz.view(3, -1)).clamp_(0, 1)
    if maxval <= 255:
        # a table of the curve at 65536 points, already in 8-bit code values: errs by < 0.06 levels
        idx = lin.mul_(_GAMMA_LUT_SIZE - 1).add_(0.5).to(torch.int32)
        out = _take(_lut("to_srgb8", _GAMMA_LUT_SIZE), idx)
    else:
        out = linear_to_srgb(lin).mul_(maxval).add_(0.5).to(torch.int32)
    return out.view(3, *lum.shape).permute(1, 2, 0)



@functools.lru_cache(maxsize=4)
def _ab_bins(step: float) -> torch.Tensor:
    levels = torch.linspace(0, 1, 48, dtype=torch.float64)
    rgb = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij")).reshape(3, -1, 1)
    ab = rgb_to_lab(rgb)[1:].reshape(2, -1)
    cells = torch.unique((ab / step).round().long().T, dim=0)
    return (cells.double() * step).float()


def ab_bins(step: float = 10.0) -> torch.Tensor:
    """Centres ``(Q, 2)`` (ab units, sorted) of the ``step``-spaced ab grid cells that hold colours of
    the sRGB gamut: Zhang et al.'s (2016) quantisation for classifying colours (Q = 313 for theirs).

    The gamut is sampled as a 48-level RGB cube, each colour goes to its nearest grid centre; cheap and
    deterministic, so models compute it (once per process) rather than store it."""
    return _ab_bins(float(step)).clone()
