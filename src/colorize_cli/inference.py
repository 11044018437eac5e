"""The ``Colorizer``: full-resolution luminance kept, chroma predicted at a working size.

    photo RGB ─► L (full res) ─► L at working size ─► model ─► ab ─► ab upsampled (bilinear) ─┐
                 └──────────────────────────────────────────────────────────────────────────┴► Lab ─► RGB
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from colorize_cli.backends import TorchEngine
from colorize_cli.color import denormalize_ab, lab_to_rgb, normalize_l, rgb_to_lab
from colorize_cli.models import get_spec
from colorize_cli.weights import DEFAULT_MODEL, load_generator, resolve

# The bundled models learned on photos shown at 64-128 px; predicting chroma at a long side of
# 256 px keeps objects near the scale they were trained at (docs/quality.md measures 128-512
# on bsds500/val) and costs ~0.1 s on a laptop CPU, whatever the photo's size.
DEFAULT_WORKING_SIZE = 256


def working_shape(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """(h, w) with the long side ``size`` (never upscaling), each side rounded to ``multiple``."""
    scale = min(1.0, size / max(height, width))
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if present else cpu; asking for CUDA where there is none is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return dev


class Colorizer:
    """Colorize photos with one model.

    Args:
        model: a name from weights.toml, ``default``, or a path to exported ``.safetensors`` weights.
        device: ``cpu``, ``cuda[:N]`` or ``auto``.
        size: working size (long side in pixels); None = the default for the model.
    """

    def __init__(self, model: str = "default", device: str = "cpu", size: int | None = None):
        self.device = resolve_device(device)
        name = DEFAULT_MODEL if model == "default" else model
        self.weights_path = resolve(name)
        net, self.config = load_generator(self.weights_path, self.device)
        self.engine = TorchEngine(net, self.device)
        self.spec = get_spec(self.config["arch"])
        self.size = size or self.spec.fixed_size or DEFAULT_WORKING_SIZE
        self.multiple = self.spec.size_multiple

    @property
    def name(self) -> str:
        return self.config["arch"] if self.weights_path.suffix else str(self.weights_path)

    @torch.no_grad()
    def predict_ab(self, l_full: torch.Tensor) -> torch.Tensor:
        """Lab L ``(N, 1, H, W)`` at full size -> predicted ab ``(N, 2, H, W)`` in Lab units."""
        _n, _, height, width = l_full.shape
        if self.spec.fixed_size:
            h = w = self.spec.fixed_size
        else:
            h, w = working_shape(height, width, self.size, self.multiple)
        small = F.interpolate(l_full, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        ab = self.engine(normalize_l(small))
        return F.interpolate(denormalize_ab(ab), size=(height, width), mode="bilinear", align_corners=False)

    def colorize_tensor(self, rgb: torch.Tensor) -> torch.Tensor:
        """sRGB ``(N, 3, H, W)`` in [0, 1] -> colorized sRGB; the input's L is kept exactly."""
        lum = rgb_to_lab(rgb)[:, :1]
        ab = self.predict_ab(lum)
        return lab_to_rgb(torch.cat([lum, ab], dim=1))

    def colorize_array(self, rgb: np.ndarray) -> np.ndarray:
        """One photo as float ``(H, W, 3)`` in [0, 1] -> colorized float ``(H, W, 3)``."""
        t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
        return self.colorize_tensor(t)[0].permute(1, 2, 0).numpy()
