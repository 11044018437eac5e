"""ONNX export of a generator: one verified ``.onnx`` file that carries its own description.

    weights ─► torch module ─► torch.onnx.export (TorchScript exporter) ─► float32 graph
                                   ├─ fp16: weights in float16, input and output stay float32
                                   └─ int8: static QDQ quantisation calibrated on bundled photos
            ─► onnx.checker ─► ONNX Runtime vs torch on random and real inputs ─► atomic rename

The graph maps ``l_norm`` (N, 1, h, w) to ``ab_norm`` (N, 2, h, w), as the torch engine does; its
``metadata_props`` hold the arch, the size rule and the normalisation, so that
``Colorizer("model.onnx")`` needs nothing else.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colorize_cli._version import __version__
from colorize_cli.color import AB_SCALE, L_CENTER, L_SCALE, normalize_l, pixels_to_l
from colorize_cli.engine.backends import OnnxEngine
from colorize_cli.engine.hub import resolve
from colorize_cli.engine.networks import load_generator
from colorize_cli.errors import OptionError
from colorize_cli.io.atomic import atomic_write
from colorize_cli.io.cache import cache_path
from colorize_cli.io.files import sha256_of
from colorize_cli.models import get_spec

INPUT_NAME, OUTPUT_NAME = "l_norm", "ab_norm"
QUANTIZE_MODES = ("int8",)
# a float32 export must agree with torch to float rounding; fp16 and int8 are reported, not bounded
FP32_TOLERANCE = 1e-3
NORMALISATION = f"L/{L_SCALE:g}-{L_CENTER / L_SCALE:g}, ab/{AB_SCALE:g}"
# bundled with scikit-image (no download); astronaut is kept out of calibration to verify on it
CALIBRATION_PHOTOS = ("coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
CALIBRATION_SIZE = 256


@dataclass
class ExportResult:
    """What ``export_onnx`` wrote and how closely ONNX Runtime follows torch on it.

    ``checks`` holds ``(input, shape, largest and mean |ONNX - torch|)`` per verification input, in
    normalised ab (ab / 110); ``input`` is ``random`` (uniform L, harder than photos for int8) or a
    photo's name.
    """

    path: Path
    model: str
    arch: str
    precision: str
    opset: int
    size_bytes: int
    dynamic: bool
    fixed_size: int | None
    checks: list[tuple[str, tuple[int, ...], float, float]] = field(default_factory=list)

    @property
    def max_diff(self) -> float:
        """Largest absolute difference in normalised ab (ab / 110)."""
        return max(c[2] for c in self.checks)

    @property
    def max_diff_lab(self) -> float:
        """The same in CIELAB a/b units."""
        return self.max_diff * AB_SCALE

    @property
    def command(self) -> str:
        return f"colorize PHOTO --model {self.path}"

    def summary(self) -> str:
        axes = "dynamic batch/height/width" if self.dynamic else f"fixed {self.fixed_size}x{self.fixed_size}"
        size = f"{self.size_bytes / 1e6:.2f} MB"
        lines = [
            f"wrote {self.path} ({size}, {self.arch}, {self.precision}, opset {self.opset}, {axes})",
            f"largest difference ONNX Runtime vs torch: {self.max_diff:.2e} in normalised ab = "
            + f"{self.max_diff_lab:.2e} in Lab a/b units",
        ]
        for name, shape, largest, mean in self.checks:
            lines.append(f"  {name:<10} {'x'.join(map(str, shape)):<13} largest {largest:.2e} "
                         f"({largest * AB_SCALE:.2e} Lab), mean {mean:.2e} ({mean * AB_SCALE:.2e} Lab)")
        lines.append(f"use it: {self.command}")
        return "\n".join(lines)


def photo_l(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """8-bit RGB (or gray) photo -> normalised L ``(1, 1, height, width)`` as the Colorizer feeds it."""
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., :3] if rgb.ndim == 3 else rgb)).resize(
        (width, height), Image.Resampling.BILINEAR, reducing_gap=2.0))
    return normalize_l(pixels_to_l(small, 255))[None, None]


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def _verification_inputs(multiple: int, fixed: int | None) -> list[tuple[str, np.ndarray]]:
    """Random L at two shapes (one a batch of 2) and a real photo at two working sizes."""
    rng = np.random.default_rng(0)
    astronaut = _skimage_photo("astronaut")
    if fixed:
        shapes, photos = [(2, fixed, fixed)], [(astronaut, fixed, fixed)]
    else:
        shapes = [(2, 4 * multiple, 6 * multiple), (1, 7 * multiple, 3 * multiple)]
        side = max(multiple, CALIBRATION_SIZE // multiple * multiple)
        crop = astronaut[:320]  # 320 x 512, so that one check is not square
        photos = [(astronaut, side, side), (crop, max(multiple, side * 5 // 8 // multiple * multiple), side)]
    inputs = [("random", rng.uniform(-1, 1, (n, 1, h, w)).astype(np.float32)) for n, h, w in shapes]
    inputs += [("astronaut", photo_l(img, h, w)) for img, h, w in photos]
    return inputs


class _WithInputs(torch.nn.Module):
    """A generator with inputs beside L (the VAE's ``z``, the hint model's hints), exported with them as
    named graph inputs, in the order of its ``example_inputs``."""

    def __init__(self, net: torch.nn.Module, names: list[str]):
        super().__init__()
        self.net, self.names = net, names

    def forward(self, l_norm: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        return self.net(l_norm, **dict(zip(self.names, extra)))


def latent_dim(net: torch.nn.Module) -> int:
    return int(net.latent_dim) if hasattr(net, "sample_latents") else 0


def extra_inputs(net: torch.nn.Module, n: int, h: int, w: int) -> dict[str, torch.Tensor]:
    """The generator's inputs beside L (zeros: no code, no hint), by name; {} for most models."""
    example = getattr(net, "example_inputs", None)
    return dict(example(n, h, w)) if example is not None else {}


def _export_float32(net: torch.nn.Module, path: Path, opset: int, size: int | None, multiple: int,
                    fold: bool = True) -> None:
    side = size or 4 * multiple
    axes = {0: "batch"} if size else {0: "batch", 2: "height", 3: "width"}
    args, names, dynamic = (torch.zeros(1, 1, side, side),), [INPUT_NAME], {INPUT_NAME: axes, OUTPUT_NAME: axes}
    extra = extra_inputs(net, 1, side, side)
    if extra:
        net = _WithInputs(net, list(extra)).eval()  # a new module is in training mode, and the exporter follows it
        for name, example in extra.items():
            args += (example,)
            names.append(name)
            dynamic[name] = axes if example.ndim == 4 else {0: "batch"}
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in torch >= 2.9 but needs no onnxscript, and is exact here
        warnings.simplefilter("ignore", DeprecationWarning)
        # its notes on constant folding of Slice are for torch's developers: the graph is checked against
        # torch below either way, and a user's first --backend onnx run should not print them
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(net, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=[OUTPUT_NAME], dynamic_axes=dynamic, do_constant_folding=fold)


def store_fp16(model):
    """Float weights stored in float16, each cast back to float32 where the graph reads it: the file is
    half the size and computes in float32 as before. Made for the bundled graphs, whose weights are
    float16 values already (the ``.safetensors`` files store them so): exported without constant
    folding, every weight is a parameter of the network, so nothing is lost (ONNX Runtime folds the
    casts and the BatchNorms when it loads the graph). Returns the same ``ModelProto``."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    keep = {n.input[i] for n in graph.node for i in _FLOAT32_INPUTS.get(n.op_type, ()) if i < len(n.input)}
    casts = []
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep and len(init.dims):
            name = init.name
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{name}_fp16"))
            casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT, name=f"cast_{name}"))
    for i, cast in enumerate(casts):
        graph.node.insert(i, cast)
    return model


# inputs that the ONNX spec wants in float32 whatever the data type (Resize's roi and scales)
_FLOAT32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}


def to_fp16(model):
    """Weights and constants in float16, with casts at the edges so that the input and output stay
    float32 (callers and the engine interface are unchanged). Returns the same ``ModelProto``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    keep = {n.input[i] for n in graph.node for i in _FLOAT32_INPUTS.get(n.op_type, ()) if i < len(n.input)}

    def half(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)

    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            init.CopyFrom(half(init))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in keep:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(half(attr.t))
    for value, cast_to in ((graph.input[0], TensorProto.FLOAT16), (graph.output[0], TensorProto.FLOAT)):
        inner = f"{value.name}_fp16"
        for node in graph.node:
            for seq in (node.input, node.output):
                for i, name in enumerate(seq):
                    if name == value.name:
                        seq[i] = inner
        src, dst = (value.name, inner) if cast_to == TensorProto.FLOAT16 else (inner, value.name)
        cast = helper.make_node("Cast", [src], [dst], to=cast_to, name=f"cast_{dst}")
        if cast_to == TensorProto.FLOAT16:
            graph.node.insert(0, cast)
        else:
            graph.node.append(cast)
    del graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:  # onnx raises its own InferenceError types
        raise OptionError(f"{{fp16}}: this model's graph does not convert to float16 ({exc}); "
                           "export it in float32") from exc


def _calibration_reader(height: int, width: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.inputs = iter([{INPUT_NAME: photo_l(_skimage_photo(n), height, width)}
                                for n in CALIBRATION_PHOTOS])

        def get_next(self):
            return next(self.inputs, None)

    return Photos()


def quantize_int8(src: Path, dst: Path, height: int, width: int) -> None:
    """Static int8 quantisation (QDQ, per-channel weights, min-max activation ranges) calibrated on
    a few bundled photos. Dynamic quantisation was 2-3x slower than float32 on convolutions
    (ConvInteger kernels) and no more accurate, so it is not offered."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = dst.with_name(dst.stem + ".prep.onnx")
    # folds BatchNorm into the convolutions first, so that fewer tensors are quantised
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(dst), _calibration_reader(height, width),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax)


def _example_hints(net: torch.nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """Hints for checking a hint model's export: a few points and a spread-out global distribution."""
    n, _, h, w = x.shape
    rng = np.random.default_rng(2)
    hint_ab = np.zeros((n, 2, h, w), np.float32)
    mask = np.zeros((n, 1, h, w), np.float32)
    for i in range(n):
        for _ in range(5):
            y, c = rng.integers(0, h), rng.integers(0, w)
            hint_ab[i, :, y, c] = rng.uniform(-0.5, 0.5, 2)
            mask[i, 0, y, c] = 1
    hist = rng.random((n, net.hint_bins)).astype(np.float32)
    return {"hint_ab": hint_ab, "hint_mask": mask, "hint_hist": hist / hist.sum(1, keepdims=True),
            "hint_saturation": np.full((n, 1), 0.2, np.float32)}


def _verify(path: Path, net: torch.nn.Module, multiple: int, fixed: int | None) -> list:
    try:
        engine = OnnxEngine(path)
    except Exception as exc:  # onnxruntime raises its own error types for unsupported graphs
        raise RuntimeError(f"ONNX Runtime (CPU) cannot load the exported model: {exc}") from exc
    checks = []
    variants: list[tuple[str, dict]] = [("", {})]
    if latent_dim(net):  # the zero code (the default colorization) and a sampled one
        variants.append(("+z", {"z": np.random.default_rng(1).standard_normal((1, latent_dim(net))).astype(np.float32)}))
    if getattr(net, "hints", False):  # no hint, and points with a reference's distribution
        variants.append(("+hints", "hints"))
    for name, x in _verification_inputs(multiple, fixed):
        for tag, given in variants:
            if given == "hints":
                given = _example_hints(net, x)
            extra = {k: np.repeat(v, len(x), axis=0) if v.shape[0] == 1 else v for k, v in given.items()}
            with torch.no_grad():
                ref = net(torch.from_numpy(x), **{k: torch.from_numpy(v) for k, v in extra.items()}).numpy()
            out = engine(x, **extra)
            if out.shape != ref.shape:
                raise RuntimeError(f"ONNX Runtime gave shape {tuple(out.shape)} for input {tuple(x.shape)}, "
                                   f"torch {tuple(ref.shape)}")
            diff = np.abs(out - ref)
            checks.append((name + tag, tuple(x.shape), float(diff.max()), float(diff.mean())))
    return checks


def export_onnx(model: str | Path, output: Path, opset: int = 17, static_size: int | None = None,
                fp16: bool = False, quantize: str | None = None, compact: bool = False) -> ExportResult:
    """Export a generator to ONNX, check it with onnx.checker, compare ONNX Runtime with torch, and
    only then move it to ``output`` (atomically).

    Args:
        model: a name from weights.toml or a ``.safetensors`` path (see :func:`hub.resolve`).
        output: the ``.onnx`` file to write.
        opset: ONNX opset version.
        static_size: fix height and width to this many pixels (batch stays dynamic); default:
            dynamic batch, height and width, unless the model only runs at a fixed size.
        fp16: store the weights in float16 (half the file); input and output stay float32. ONNX
            Runtime's CPU provider casts back to float32 around convolutions (measured ~30% slower
            than the float32 file on this 2-core CPU), so this is for GPUs and for download size.
        quantize: ``"int8"`` for static int8 quantisation (about a quarter of the file).
        compact: store the weights in float16 and compute in float32 (:func:`store_fp16`): the same
            outputs as float32 in half the file; how the bundled graphs are made.

    Returns:
        An :class:`ExportResult` with the file, its size and the largest difference from torch.
    """
    import onnx

    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise OptionError(f"{{quantize}} {quantize}: supported: {', '.join(QUANTIZE_MODES)}")
    if sum([fp16, bool(quantize), compact]) > 1:
        raise OptionError("{fp16}, {quantize} and {compact} exclude each other: pick one")
    if Path(model).suffix == ".onnx":
        raise ValueError(f"{model}: already an ONNX file; export from .safetensors weights or a model name")
    weights = resolve(str(model))
    net, config = load_generator(weights, "cpu")
    spec = get_spec(config["arch"])
    multiple, fixed = spec.size_multiple, spec.fixed_size
    if static_size is not None:
        if fixed and static_size != fixed:
            raise OptionError(f"{{static_size}} {static_size}: {spec.name} only runs at {fixed} px")
        if static_size <= 0 or static_size % multiple:
            raise OptionError(f"{{static_size}} {static_size}: {spec.name} needs a multiple of {multiple}")
        fixed = static_size
    precision = "int8" if quantize else "fp16" if fp16 else "fp32"  # compact computes in fp32
    name = Path(model).stem if Path(model).suffix or Path(model).exists() else str(model)

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="colorize-export-") as work:
        fp32_path = Path(work) / "fp32.onnx"
        _export_float32(net, fp32_path, opset, fixed, multiple, fold=not compact)
        if quantize:
            side = fixed or CALIBRATION_SIZE // multiple * multiple
            built_path = Path(work) / "int8.onnx"
            quantize_int8(fp32_path, built_path, side, side)
            proto = onnx.load(str(built_path))
        else:
            proto = onnx.load(str(fp32_path))
            if fp16:
                proto = to_fp16(proto)
            elif compact:
                proto = store_fp16(proto)
        meta = {"model": name, "arch": config["arch"], "colorize_cli_version": __version__,
                "normalization": NORMALISATION, "size_multiple": str(multiple),
                "fixed_size": str(fixed or ""), "precision": precision + ("-stored-fp16" if compact else ""),
                "weights_sha256": sha256_of(weights), "config": json.dumps(config)}
        del proto.metadata_props[:]
        onnx.helper.set_model_props(proto, meta)
        proto.producer_name, proto.producer_version = "colorize-cli", __version__
        proto.doc_string = (f"{name} ({config['arch']}): {INPUT_NAME} (N,1,h,w) -> {OUTPUT_NAME} (N,2,h,w); "
                            f"normalisation {NORMALISATION}")
        onnx.checker.check_model(proto, full_check=True)

        with atomic_write(output) as f:  # verified before it gets its name
            onnx.save(proto, f)
            f.flush()
            checks = _verify(f.temp, net, multiple, fixed)
            if precision == "fp32" and max(c[2] for c in checks) > FP32_TOLERANCE:
                worst = max(checks, key=lambda c: c[2])
                raise RuntimeError(f"ONNX Runtime differs from torch by {worst[2]:.2e} on {worst[0]} "
                                   f"{worst[1]} (tolerance {FP32_TOLERANCE:g}); {output} not written")
            if not all(np.isfinite(c[2]) for c in checks):
                raise RuntimeError(f"ONNX Runtime gave non-finite outputs; {output} not written")
    return ExportResult(output, name, config["arch"], precision, opset, output.stat().st_size,
                        dynamic=not fixed, fixed_size=fixed, checks=checks)


def cache_dir() -> Path:
    """Where ONNX files exported on demand live: ``onnx/`` of the colorize-cli cache (``--cache-dir``,
    else ``$COLORIZE_CACHE``, else ``~/.cache/colorize-cli``: :func:`colorize_cli.io.cache.cache_root`)."""
    return cache_path("onnx")


def cached_onnx(weights: Path) -> Path:
    """The ONNX export of ``weights``, made once per weights file (keyed by its sha256) and reused."""
    weights = Path(weights)
    path = cache_dir() / f"{weights.stem}-{sha256_of(weights)[:16]}-{__version__}.onnx"
    if not path.exists():
        export_onnx(weights, path)
    return path
