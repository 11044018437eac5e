"""sRGB <-> CIELAB (D65) in torch, for training: batched, on any device, differentiable.

Every function works on tensors shaped ``(N, 3, H, W)`` (or ``(3, H, W)``). The formulas and constants
are :mod:`colorize_cli.color`'s (those of ``skimage.color``), which colorizing uses in NumPy; tests hold
the two to each other and to skimage within 1e-4.
"""

from __future__ import annotations

import torch

from colorize_cli.color import EPS as _EPS
from colorize_cli.color import F_KNEE, T_KNEE, denormalize_ab, denormalize_l, normalize_ab, normalize_l
from colorize_cli.color import WHITE_D65 as _WHITE_D65
from colorize_cli.color import XYZ_FROM_RGB as _XYZ_FROM_RGB


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
    f = torch.where(xyz > T_KNEE, f_high, 7.787 * xyz + 16 / 116)
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
    xyz = torch.where(f > F_KNEE, f**3, (f - 16 / 116) / 7.787) * _white(lab)
    rgb = linear_to_srgb(_apply_matrix(_matrix(lab.device, lab.dtype, inverse=True), xyz))
    return rgb.clamp(0, 1) if clip else rgb


def rgb_to_model_input(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB batch in [0, 1] -> (normalised L ``(N,1,H,W)``, normalised ab ``(N,2,H,W)``)."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[..., :1, :, :]), normalize_ab(lab[..., 1:, :, :])


def model_output_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L and ab -> sRGB in [0, 1]."""
    lab = torch.cat([denormalize_l(l_norm), denormalize_ab(ab_norm)], dim=-3)
    return lab_to_rgb(lab)
