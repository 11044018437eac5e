"""The torch side of the engine: a generator built from its weights file, saved to one, and run.

Everything here imports torch, which colorizing with ONNX Runtime never does: the
:class:`~colorize_cli.engine.colorizer.Colorizer` imports this module only for ``backend="torch"``,
and training, export and evaluation import it for the networks they make or measure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save
from torch import nn

from colorize_cli._version import __version__
from colorize_cli.engine.device import torch_device
from colorize_cli.engine.weights import PICKLE_SUFFIXES, read_json, read_weights_config
from colorize_cli.errors import OptionError, error_line
from colorize_cli.io.atomic import write_bytes, write_text
from colorize_cli.models import create_model, get_spec, saved_options


def export_generator(model: nn.Module, arch: str, path: Path, extra: dict[str, Any] | None = None,
                     options: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights as fp16 safetensors with its config, atomically; returns the path."""
    path = Path(path)
    spec = get_spec(arch)
    config = {"arch": arch, "options": {**spec.options, **(options or {})},
              "colorize_cli_version": __version__, **(extra or {})}
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu()
               for k, v in model.state_dict().items()}
    write_bytes(path, save(tensors, metadata={"config": json.dumps(config)}))
    write_text(path.with_suffix(".json"), json.dumps(config, indent=2) + "\n")
    return path


def _load_pickle(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A pickle checkpoint, read with ``torch.load(weights_only=True)`` (tensors and plain containers
    only, never arbitrary objects): a state dict, or a dict holding one under ``generator``, ``model``
    or ``state_dict``. The config comes from the checkpoint's ``config`` (with ``arch``), else from
    ``STEM.json`` or ``config.json`` beside the file."""
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: cannot be loaded safely with torch.load(weights_only=True) ({error_line(exc)}); "
                         "convert it to .safetensors") from exc
    state = obj
    if isinstance(obj, dict):
        keys = ("generator", "model", "state_dict")
        state = next((obj[k] for k in keys if isinstance(obj.get(k), dict)), obj)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no state dict of tensors in this checkpoint")
    config = obj.get("config") if isinstance(obj, dict) and isinstance(obj.get("config"), dict) else None
    for candidate in (config, read_json(path.with_suffix(".json")), read_json(path.parent / "config.json")):
        if candidate and "arch" in candidate:
            return state, candidate
    raise ValueError(f"{path}: no config with 'arch' in the checkpoint, {path.stem}.json or config.json")


def load_generator(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the generator described by exported ``.safetensors`` weights (or, for a checkpoint the
    user chose to trust, a pickle: see :func:`_load_pickle`) and load its weights."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        state, config = _load_pickle(path)
    else:
        config = read_weights_config(path)
        state = load_file(str(path))
    model = create_model(config["arch"], **saved_options(config["arch"], config.get("options")))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.to(device).eval(), config


class TorchEngine:
    """Eager PyTorch on CPU or CUDA; half precision only on a GPU. Takes and returns NumPy float32
    arrays, as :class:`~colorize_cli.engine.backends.OnnxEngine` does."""

    name = "torch"

    def __init__(self, net: nn.Module, device: torch.device, half: bool = False):
        if half and device.type != "cuda":
            raise OptionError("{half} precision needs a GPU ({device} cuda)")
        self.net = net.to(device).eval()
        self.device = device
        self.dtype = torch.float16 if half else torch.float32
        self.latent_dim = int(getattr(net, "latent_dim", 0)) if hasattr(net, "sample_latents") else 0
        self.hint_bins = int(net.hint_bins) if getattr(net, "hints", False) else 0
        if half:
            self.net = self.net.half()

    @torch.no_grad()
    def __call__(self, l_norm: np.ndarray, **inputs: np.ndarray | None) -> np.ndarray:
        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(self.device, self.dtype)

        extra = {k: tensor(v) for k, v in inputs.items() if v is not None}
        return self.net(tensor(l_norm), **extra).float().cpu().numpy()


def torch_engine(weights: Path, device: str, half: bool = False) -> tuple[TorchEngine, dict[str, Any], Any]:
    """The torch engine on ``weights``, its config and its architecture's spec (the size rule)."""
    net, config = load_generator(weights, torch_device(device))
    return TorchEngine(net, torch_device(device), half=half), config, get_spec(config["arch"])
