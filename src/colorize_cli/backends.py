"""Inference engines: run a generator on normalised L and return normalised ab.

An engine is a callable ``engine(l_norm) -> ab_norm`` on float32 CPU tensors shaped
``(N, 1, h, w)`` -> ``(N, 2, h, w)``, with ``h, w`` already at the working size the network needs.
The :class:`~colorize_cli.inference.Colorizer` does everything else (colour conversion, resizing,
batching), so every backend gives the same pipeline.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class TorchEngine:
    """Eager PyTorch on CPU or CUDA; half precision only on a GPU."""

    name = "torch"

    def __init__(self, net: nn.Module, device: torch.device, half: bool = False):
        if half and device.type != "cuda":
            raise ValueError("half precision needs a GPU (--device cuda)")
        self.net = net.to(device).eval()
        self.device = device
        self.dtype = torch.float16 if half else torch.float32
        if half:
            self.net = self.net.half()

    @torch.no_grad()
    def __call__(self, l_norm: torch.Tensor) -> torch.Tensor:
        out = self.net(l_norm.to(self.device, self.dtype))
        return out.float().cpu()
