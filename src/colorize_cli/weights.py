"""Model weights on disk: exported fp16 safetensors with their config, and ``weights.toml``.

An exported model is ``NAME.safetensors`` (fp16 tensors; the safetensors header metadata holds
``arch`` and the JSON ``options`` the builder needs) plus ``NAME.json`` beside it with the same
config, readable without torch. Resolution of a model *name* goes through ``weights.toml``: a local
path, else the file bundled inside the package.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from colorize_cli import __version__
from colorize_cli.models import create_model, get_spec

DEFAULT_MODEL = "unet-sn"


@dataclass
class WeightsEntry:
    """One ``[models.NAME]`` table of weights.toml."""

    name: str
    filename: str
    sha256: str
    arch: str
    bundled: bool
    info: dict[str, Any] = field(default_factory=dict)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_file(name: str) -> Path:
    return Path(str(resources.files("colorize_cli") / name))


def weights_toml_path() -> Path:
    """The installed weights.toml (a wheel carries a copy inside the package; a source checkout
    or editable install reads the one at the repository root)."""
    inside = _package_file("weights.toml")
    return inside if inside.exists() else Path(__file__).resolve().parents[2] / "weights.toml"


def read_weights_toml() -> dict[str, WeightsEntry]:
    """Entries of the ``weights.toml`` installed with the package."""
    data = tomllib.loads(weights_toml_path().read_text())
    entries = {}
    for name, t in data.get("models", {}).items():
        known = {"filename", "sha256", "arch", "bundled"}
        entries[name] = WeightsEntry(
            name, t["filename"], t["sha256"], t["arch"], bool(t.get("bundled", False)),
            {k: v for k, v in t.items() if k not in known},
        )
    return entries


def export_generator(model: nn.Module, arch: str, path: Path, extra: dict[str, Any] | None = None,
                     options: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights as fp16 safetensors with its config, atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = get_spec(arch)
    config = {"arch": arch, "options": {**spec.options, **(options or {})},
              "colorize_cli_version": __version__, **(extra or {})}
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu()
               for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"config": json.dumps(config)})
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_generator(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the generator described by an exported ``.safetensors`` file and load its weights."""
    path = Path(path)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: not a colorize-cli weights file (no config in its metadata)")
    config = json.loads(meta["config"])
    model = create_model(config["arch"], **config.get("options", {}))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.to(device).eval(), config


def resolve(model: str) -> Path:
    """Path of the weights for ``model``: an existing file path, or a name from weights.toml."""
    p = Path(model)
    if p.suffix == ".safetensors" or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"{p}: weights file not found")
        return p
    entries = read_weights_toml()
    if model not in entries:
        raise KeyError(f"unknown model {model!r}; available: {', '.join(sorted(entries)) or 'none'}")
    entry = entries[model]
    if not entry.bundled:
        raise FileNotFoundError(f"model {model!r} has no bundled weights in this installation")
    path = _package_file(f"weights/{entry.filename}")
    if not path.exists():
        raise FileNotFoundError(f"model {model!r}: bundled file {path} is missing; reinstall colorize-cli")
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise ValueError(f"{path}: sha256 {digest[:12]}… does not match weights.toml ({entry.sha256[:12]}…)")
    return path
