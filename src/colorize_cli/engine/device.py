"""Where the network runs: one reading of a device name (``cpu``, ``cuda``, ``cuda:N``, ``auto``) for
both backends, torch (:func:`torch_device`) and ONNX Runtime (:func:`onnx_providers`). A CUDA device asked
for by name is never optional: where there is none it is an error, not a silent run on the CPU."""

from __future__ import annotations

import re
from dataclasses import dataclass

from colorize_cli.errors import OptionError

_DEVICE = re.compile(r"(cpu|auto|cuda)(?::(\d+))?")


@dataclass(frozen=True)
class Device:
    kind: str  # cpu, cuda or auto
    index: int | None = None  # cuda:N


def parse_device(name: str) -> Device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; anything else is a ValueError that says so."""
    match = _DEVICE.fullmatch(str(name).strip())
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise OptionError(f"{{device}} {name}: not a device; use cpu, cuda, cuda:N or auto")
    return Device(match.group(1), None if match.group(2) is None else int(match.group(2)))


def torch_device(name: str):
    """The torch device for ``name``: ``auto`` is CUDA where present, else the CPU."""
    import torch

    device = parse_device(name)
    if device.kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OptionError(f"{{device}} {name}: CUDA is not available on this machine (use {{device}} cpu)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise OptionError(f"{{device}} {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return torch.device("cuda", device.index) if device.index is not None else torch.device("cuda")


def onnx_providers(name: str) -> list:
    """ONNX Runtime execution providers for ``name``, in order of preference."""
    import onnxruntime as ort

    device = parse_device(name)
    if device.kind == "cpu":
        return ["CPUExecutionProvider"]
    if device.kind == "auto":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
