"""Pieces shared by the model families: weight initialisation schemes."""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

INIT_SCHEMES = ("default", "normal", "xavier")


def init_weights(module: nn.Module, scheme: str = "default") -> nn.Module:
    """Initialise every convolution, transposed convolution and linear layer of ``module``.

    Args:
        module: the network (changed in place).
        scheme: ``default`` (PyTorch's own, leaves the module alone); ``normal``: weights N(0, 0.02),
            batch-norm scales N(1, 0.02), biases 0, as pix2pix (Isola et al.) does; ``xavier``: uniform
            Xavier (Glorot & Bengio) weights, biases 0, batch-norm scale 1 (Ehrenberg §1.1).

    Returns:
        ``module``.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init {scheme!r}: use {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return module
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            # a spectral-normalised layer keeps its free weight as parametrizations.weight.original
            weight = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            if scheme == "normal":
                nn.init.normal_(weight, 0.0, 0.02)
            else:
                nn.init.xavier_uniform_(weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            if scheme == "normal":
                nn.init.normal_(m.weight, 1.0, 0.02)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module
