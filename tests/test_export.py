"""ONNX export and the ONNX Runtime backend, on tiny untrained models made here, and the ONNX graphs
bundled with the trained models against torch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import make_photo
from PIL import Image
from typer.testing import CliRunner

from colorize_cli.cli import app
from colorize_cli.engine.backends import OnnxEngine
from colorize_cli.engine.export import export_onnx
from colorize_cli.engine.networks import export_generator, load_generator
from colorize_cli.engine.weights import bundled_path, read_weights_toml
from colorize_cli.io.images import Photo
from colorize_cli.models import create_model, get_spec, list_models


def _tiny_weights(name: str, path, seed: int = 0):
    """An exported ``name`` at width 4 whose BatchNorm statistics are random too, so that the
    folded BatchNorm (and not only the convolutions) is compared."""
    torch.manual_seed(seed)
    options = {"width": 4} if "width" in get_spec(name).options else {}
    model = create_model(name, **options).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return export_generator(model, name, path, options=options)


def _shapes(name: str) -> list[tuple[int, int, int]]:
    spec = get_spec(name)
    if spec.fixed_size:
        return [(1, spec.fixed_size, spec.fixed_size), (2, spec.fixed_size, spec.fixed_size)]
    m = spec.size_multiple
    return [(1, 2 * m, 3 * m), (2, 3 * m, m)]


@pytest.mark.parametrize("name", list_models())
def test_onnx_runtime_matches_torch_at_two_sizes(name, tmp_path):
    weights = _tiny_weights(name, tmp_path / f"{name}.safetensors")
    result = export_onnx(weights, tmp_path / f"{name}.onnx")
    net, _ = load_generator(weights)
    engine = OnnxEngine(result.path)
    for n, h, w in _shapes(name):
        x = (torch.rand(n, 1, h, w) * 2 - 1).numpy()
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        out = engine(x)
        assert out.dtype == np.float32 and out.shape == (n, 2, h, w)
        assert ref.std() > 1e-3  # a real colour map, not a constant
        assert np.abs(out - ref).max() < 1e-4
    assert result.max_diff < 1e-4 and result.precision == "fp32"


def test_export_passes_checker_with_dynamic_axes_and_metadata(tiny_weights, tmp_path):
    out = tmp_path / "sub" / "tiny.onnx"
    result = export_onnx(tiny_weights, out)
    assert result.path == out and out.stat().st_size == result.size_bytes
    assert list(out.parent.iterdir()) == [out]  # the temporary file was renamed, not left behind
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (outp,) = proto.graph.input, proto.graph.output
    assert (inp.name, outp.name) == ("l_norm", "ab_norm")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["arch"] == "unet-sn" and meta["size_multiple"] == "16" and meta["fixed_size"] == ""
    assert meta["normalization"] == "L/50-1, ab/110" and meta["precision"] == "fp32"
    assert json.loads(meta["config"])["options"]["width"] == 4
    assert {"colorize_cli_version", "weights_sha256", "model"} <= meta.keys()
    assert any(name == "astronaut" for name, *_ in result.checks)
    text = result.summary()
    assert "largest difference" in text and "MB" in text and f"colorize PHOTO --model {out}" in text


def test_static_size_fixes_height_and_width(tiny_weights, tmp_path):
    result = export_onnx(tiny_weights, tmp_path / "s.onnx", static_size=32)
    assert not result.dynamic and result.fixed_size == 32
    engine = OnnxEngine(result.path)
    assert engine.metadata["fixed_size"] == "32"
    assert engine(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 2, 32, 32)
    with pytest.raises(RuntimeError, match=r"\(1, 1, 48, 32\)"):
        engine(np.zeros((1, 1, 48, 32), np.float32))
    with pytest.raises(ValueError, match="multiple of 16"):
        export_onnx(tiny_weights, tmp_path / "bad.onnx", static_size=40)


def test_fp16_keeps_float32_input_and_output(tiny_weights, tmp_path):
    fp32 = export_onnx(tiny_weights, tmp_path / "a.onnx")
    half = export_onnx(tiny_weights, tmp_path / "b.onnx", fp16=True)
    proto = onnx.load(str(half.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.data_type for i in proto.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert half.size_bytes < 0.6 * fp32.size_bytes
    assert half.max_diff < 1e-2


def test_int8_export_runs(tiny_weights, tmp_path):
    result = export_onnx(tiny_weights, tmp_path / "q.onnx", quantize="int8")
    proto = onnx.load(str(result.path))
    assert "QuantizeLinear" in {n.op_type for n in proto.graph.node}
    out = OnnxEngine(result.path)((torch.rand(1, 1, 48, 64) * 2 - 1).numpy())
    assert out.shape == (1, 2, 48, 64) and np.isfinite(out).all()
    photo_diffs = [mean for name, _, _, mean in result.checks if name != "random"]
    assert max(photo_diffs) < 0.02  # mean error on a real photo, in normalised ab
    with pytest.raises(ValueError, match="int8"):
        export_onnx(tiny_weights, tmp_path / "x.onnx", quantize="int4")


def test_cuda_provider_runs_where_present_and_is_a_clear_error_where_absent(tiny_weights, tmp_path):
    path = export_onnx(tiny_weights, tmp_path / "t.onnx").path
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    result = CliRunner().invoke(app, [str(make_photo(tmp_path / "p.png")), "--model", str(path),
                                      "--device", "cuda", "-q"])
    if "CUDAExecutionProvider" in ort.get_available_providers():
        engine = OnnxEngine(path, providers=providers)
        assert engine.providers[0] == "CUDAExecutionProvider"  # it started: no silent CPU fallback
        x = (torch.rand(2, 1, 32, 48) * 2 - 1).numpy()
        assert np.abs(engine(x) - OnnxEngine(path)(x)).max() < 1e-3
        assert result.exit_code == 0, result.output
        assert Image.open(tmp_path / "p_color.png").size == (37, 29)
    else:
        with pytest.raises(RuntimeError, match="CUDAExecutionProvider"):
            OnnxEngine(path, providers=providers)
        assert result.exit_code == 2 and "CUDA" in result.output
        assert not (tmp_path / "p_color.png").exists()


def test_cli_backend_onnx_matches_torch_and_reuses_the_cache(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "cache"))
    src = make_photo(tmp_path / "in" / "p.png", size=(53, 37), mode="L")
    outputs, stamps = {}, []
    for backend in ("torch", "onnx", "onnx"):
        out_dir = tmp_path / backend
        result = CliRunner().invoke(app, [str(src), "--model", str(tiny_weights), "--backend", backend,
                                          "--output", str(out_dir), "--overwrite", "-q"])
        assert result.exit_code == 0, result.output
        outputs[backend] = np.asarray(Image.open(out_dir / "p_color.png").convert("RGB"), dtype=float)
        stamps.append([(p.name, p.stat().st_mtime_ns) for p in (tmp_path / "cache").rglob("*.onnx")])
    assert stamps[0] == [] and len(stamps[1]) == 1 and stamps[1][0][0].startswith("tiny-")
    assert stamps[2] == stamps[1]  # exported once, then reused
    assert np.abs(outputs["onnx"] - outputs["torch"]).mean() < 1.0
    assert outputs["torch"].std(axis=2).mean() > 0.5  # some colour came out


def test_export_command_and_onnx_model_path(tiny_weights, tmp_path):
    out = tmp_path / "tiny.onnx"
    result = CliRunner().invoke(app, ["export", "--model", str(tiny_weights), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "largest difference" in result.output and f"colorize PHOTO --model {out}" in result.output
    src = make_photo(tmp_path / "p.png")
    result = CliRunner().invoke(app, [str(src), "--model", str(out), "-q"])  # .onnx implies the backend
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p_color.png").exists()
    bad = CliRunner().invoke(app, ["export", "--model", str(tiny_weights), "--output", str(out), "--fp16",
                                   "--quantize", "int8"])
    assert bad.exit_code == 1 and "exclude each other" in bad.output


def test_onnx_file_without_metadata_is_refused(tmp_path):
    from colorize_cli.engine.colorizer import Colorizer

    path = tmp_path / "plain.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 2, "h", "w"])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Concat", ["x", "x"], ["y"], axis=1)], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="colorize export"):
        Colorizer(str(path))
    path.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="cannot load"):
        Colorizer(str(path))


def test_the_first_onnx_run_prints_no_library_warning(tmp_path):
    """The on-demand export of weights given by path says nothing of torch's exporter to the user (a real
    process: pytest would swallow the warnings of an in-process run)."""
    import os
    import shutil
    import subprocess
    import sys

    from colorize_cli.engine.weights import bundled_path, read_weights_toml

    src = make_photo(tmp_path / "p.png", size=(64, 48), mode="L")
    weights = shutil.copy(bundled_path(read_weights_toml()["efflite-unet-gan"]), tmp_path / "mine.safetensors")
    env = {**os.environ, "COLORIZE_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "colorize_cli", str(src), "--model", str(weights)],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))  # it did export
    assert "Warning" not in run.stderr and run.stderr.strip().splitlines() == [
        ln for ln in run.stderr.strip().splitlines() if ln.startswith("done:")]


BUNDLED = sorted(n for n, e in read_weights_toml().items() if e.bundled)


@pytest.mark.parametrize("name", BUNDLED)
def test_each_bundled_onnx_graph_colorizes_as_torch_does(name):
    """The ONNX graph that ships with a model (what colorizing runs) gives torch's pixels: the same
    pipeline on both backends, compared on a photo at the model's working size."""
    from textures import textured

    from colorize_cli.engine.colorizer import Colorizer

    entry = read_weights_toml()[name]
    assert bundled_path(entry).with_name(entry.info["onnx"]).is_file() and len(entry.info["onnx_sha256"]) == 64
    photo = Photo(textured(180, 260, seed=4))
    onnx_rgb = Colorizer(name, backend="onnx").colorize(photo).astype(np.int16)
    torch_rgb = Colorizer(name, backend="torch").colorize(photo).astype(np.int16)
    diff = np.abs(onnx_rgb - torch_rgb)
    assert diff.mean() < 0.01 and diff.max() <= 1, (name, diff.mean(), diff.max())
