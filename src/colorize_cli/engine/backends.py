"""Inference engines: run a generator on normalised L and return normalised ab.

An engine is a callable ``engine(l_norm, **inputs) -> ab_norm`` on float32 NumPy arrays shaped
``(N, 1, h, w)`` -> ``(N, 2, h, w)``, with ``h, w`` already at the working size the network needs;
``inputs`` are the network's other inputs by name, where it has them: ``z`` (the latent codes of the
VAE), ``hint_ab``, ``hint_mask``, ``hint_hist``, ``hint_saturation`` (the hint model's,
:mod:`colorize_cli.hints`). An input not given is zeros: the default colorization, no hint. The
:class:`~colorize_cli.engine.colorizer.Colorizer` does everything else (colour conversion, resizing,
batching) in NumPy, so every backend gives the same pipeline. ONNX Runtime's engine is here; torch's
is :class:`colorize_cli.engine.networks.TorchEngine`, in a module of its own so that colorizing with
ONNX Runtime never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from colorize_cli.errors import error_line


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads only slow convolutions down)."""
    try:
        cpus = os.sched_getaffinity(0)
        topology = Path("/sys/devices/system/cpu")
        cores = {
            ((topology / f"cpu{c}/topology/physical_package_id").read_text().strip(),
             (topology / f"cpu{c}/topology/core_id").read_text().strip())
            for c in cpus
        }
        return max(1, len(cores))
    except (AttributeError, OSError):
        return max(1, (os.cpu_count() or 2) // 2)


def default_threads() -> int:
    """Intra-op threads for ONNX Runtime: ``OMP_NUM_THREADS`` if set (the knob that limits torch
    too), else the physical cores."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else physical_cores()


class OnnxEngine:
    """ONNX Runtime on an exported ``.onnx`` file (see :mod:`colorize_cli.engine.export`).

    Args:
        path: the ``.onnx`` file.
        providers: ONNX Runtime execution providers, names or ``(name, options)`` pairs, in order
            of preference. Each one named here must be available and must start: a CUDA request
            on a machine without it is an error, never a silent run on the CPU.
        threads: intra-op threads (default: :func:`default_threads`).
    """

    name = "onnx"

    def __init__(self, path: str | Path, providers: list | None = None, threads: int | None = None):
        import onnxruntime as ort

        providers = list(providers or ["CPUExecutionProvider"])
        wanted = [p if isinstance(p, str) else p[0] for p in providers]
        available = ort.get_available_providers()
        for name in wanted:
            if name not in available:
                raise RuntimeError(f"ONNX Runtime has no {name} on this machine (available: "
                                   f"{', '.join(available)}); for CUDA install onnxruntime-gpu, "
                                   "or use --device cpu")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # idle ORT threads must not spin: torch converts the full-size image right after each run,
        # and spinning threads would take the cores it needs (measured: 0.5x the torch pipeline)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: ORT warns about every node placed on the CPU
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{path}: ONNX file not found")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime's own error types derive from Exception only
            raise RuntimeError(f"{path}: ONNX Runtime cannot load it: {error_line(exc)}") from exc
        started = self.session.get_providers()
        for name in wanted:
            if name not in started:
                raise RuntimeError(f"{name} failed to start (ONNX Runtime fell back to "
                                   f"{', '.join(started)}); check the CUDA/cuDNN libraries, "
                                   "or use --device cpu")
        self.providers = started
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        graph_inputs = self.session.get_inputs()
        self.input_name = graph_inputs[0].name
        self.output_name = self.session.get_outputs()[0].name
        # the inputs beside L: z (a model with latent codes), the hint model's hints; zeros when not given
        self.extra = {i.name: list(i.shape) for i in graph_inputs[1:]}
        self.latent_dim = int(self.extra["z"][1]) if "z" in self.extra else 0
        self.hint_bins = int(self.extra["hint_hist"][1]) if "hint_hist" in self.extra else 0

    def __call__(self, l_norm: np.ndarray, **inputs: np.ndarray | None) -> np.ndarray:
        x = np.ascontiguousarray(l_norm, np.float32)
        unknown = sorted(k for k, v in inputs.items() if v is not None and k not in self.extra)
        if unknown:
            raise ValueError(f"{self.path}: this graph takes no {', '.join(unknown)}")
        sizes = {"batch": x.shape[0], "height": x.shape[2], "width": x.shape[3]}
        feeds = {self.input_name: x}
        for name, shape in self.extra.items():
            given = inputs.get(name)
            feeds[name] = np.ascontiguousarray(given, np.float32) if given is not None else \
                np.zeros([sizes.get(d, d) if isinstance(d, str) else d for d in shape], np.float32)
        try:
            (out,) = self.session.run([self.output_name], feeds)
        except Exception as exc:
            raise RuntimeError(f"{self.path}: input {tuple(x.shape)}: {error_line(exc)}") from exc
        return out
