"""LPIPS and FID (colorize_cli.engine.perceptual): the pretrained-file downloader against a local HTTP server
on 127.0.0.1 serving files in the official format (torch state dicts with the official key names and
shapes, random values made here), the networks' properties, the Fréchet distance against closed
forms, and ``colorize eval --lpips/--fid``.

The official Inception file (95 MB) is never served: its architecture is checked on random init and
its state-dict layout against what the official file holds (566 entries, 95,628,359 bytes).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_photo
from typer.testing import CliRunner

from colorize_cli.cli import app
from colorize_cli.engine.perceptual import (
    ALEXNET,
    FID_INCEPTION,
    LPIPS_ALEX,
    AlexNetFeatures,
    FIDInceptionV3,
    WeightsUnavailable,
    evaluation,
    fetch_pretrained,
    fid,
    frechet,
    frechet_distance,
    lpips_distance,
    pretrained,
)
from colorize_cli.engine.perceptual import lpips as lpips_net


class FileServer:
    """Serves ``files[name]`` at ``/name`` on 127.0.0.1 and records the paths asked for."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []
        self.truncate: set[str] = set()  # names whose body is cut off halfway, the connection dropped
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                name = self.path.lstrip("/")
                body = server.files.get(name)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write((body or b"")[: len(body) // 2] if name in server.truncate else body or b"")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _torch_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lpips_files() -> dict[str, bytes]:
    """alexnet-owt-7be5be79.pth (the features part: torchvision's keys and shapes; the official file also
    holds classifier.*, which LPIPS ignores) and alex.pth (lin0..lin4.model.1.weight), random values."""
    g = torch.Generator().manual_seed(0)
    features = {k: torch.randn(v.shape, generator=g) * (0.05 if k.endswith("weight") else 0.01)
                for k, v in AlexNetFeatures().state_dict().items()}
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) * 0.1
            for i, c in enumerate(lpips_net.LPIPS.CHANNELS)}
    return {ALEXNET.filename: _torch_bytes(features), LPIPS_ALEX.filename: _torch_bytes(lins)}


def _expect(spec, data: bytes):
    """``spec`` expecting ``data`` (the tests' files are not the official bytes)."""
    return replace(spec, sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@pytest.fixture
def env(monkeypatch, tmp_path):
    """An empty cache, online, no models loaded yet."""
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv(pretrained.PRETRAINED_URL_ENV, raising=False)
    monkeypatch.setattr(pretrained, "_MODELS", {})
    monkeypatch.setattr(pretrained, "_VERIFIED", {})
    return tmp_path / "cache" / "pretrained"


@pytest.fixture
def served(env, monkeypatch, lpips_files):
    """The LPIPS files served on 127.0.0.1 through COLORIZE_PRETRAINED_URL, and expected by the loader."""
    server = FileServer(dict(lpips_files))
    monkeypatch.setenv(pretrained.PRETRAINED_URL_ENV, server.url)
    monkeypatch.setattr(lpips_net, "ALEXNET", _expect(ALEXNET, lpips_files[ALEXNET.filename]))
    monkeypatch.setattr(lpips_net, "LPIPS_ALEX", _expect(LPIPS_ALEX, lpips_files[LPIPS_ALEX.filename]))
    yield server
    server.stop()


# ----- the official files -----
def test_official_fid_and_lpips_urls_and_checksums_follow_the_filename_convention():
    for spec in (ALEXNET, FID_INCEPTION):  # torch hub names: FILE-<first 8 hex of sha256>.pth
        assert spec.url.endswith("/" + spec.filename)
        assert spec.filename.rsplit("-", 1)[1].removesuffix(".pth") == spec.sha256[:8]
    assert LPIPS_ALEX.url.endswith("/lpips/weights/v0.1/alex.pth")
    for spec in (ALEXNET, LPIPS_ALEX, FID_INCEPTION):
        assert spec.url.startswith("https://") and len(spec.sha256) == 64
        assert spec.source_url() == spec.url


# ----- the downloader -----
def test_lpips_weights_download_verified_then_used_from_cache_with_server_stopped(served, env, lpips_files):
    path = fetch_pretrained(lpips_net.ALEXNET, quiet=True)
    assert path == env / ALEXNET.filename
    assert path.read_bytes() == lpips_files[ALEXNET.filename]
    assert served.requests == [f"/{ALEXNET.filename}"]
    assert not list(env.glob("*.part"))
    served.stop()
    pretrained._VERIFIED.clear()  # re-hash the cached copy too
    assert fetch_pretrained(lpips_net.ALEXNET, quiet=True) == path
    assert served.requests == [f"/{ALEXNET.filename}"]


def test_lpips_checksum_mismatch_deletes_the_download_with_a_clear_error(served, env):
    served.files[ALEXNET.filename] = b"not the weights"
    with pytest.raises(WeightsUnavailable) as err:
        fetch_pretrained(lpips_net.ALEXNET, quiet=True)
    msg = str(err.value)
    assert "checksum mismatch" in msg and f"{served.url}/{ALEXNET.filename}" in msg
    assert ALEXNET.url in msg and str(env / ALEXNET.filename) in msg  # what to do: official URL -> path
    assert "\n" not in msg
    assert not env.exists() or not list(env.iterdir())


def test_lpips_corrupt_cached_file_is_deleted_and_fetched_again(served, env, lpips_files):
    env.mkdir(parents=True)
    (env / LPIPS_ALEX.filename).write_bytes(b"x" * len(lpips_files[LPIPS_ALEX.filename]))
    path = fetch_pretrained(lpips_net.LPIPS_ALEX, quiet=True)
    assert path.read_bytes() == lpips_files[LPIPS_ALEX.filename]
    assert served.requests == [f"/{LPIPS_ALEX.filename}"]


def test_lpips_offline_with_empty_cache_names_the_url_and_the_path(served, env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable) as err:
        fetch_pretrained(lpips_net.LPIPS_ALEX)
    msg = str(err.value)
    assert "offline" in msg and LPIPS_ALEX.url in msg and str(env / LPIPS_ALEX.filename) in msg
    assert served.requests == []  # no network attempt


def test_lpips_network_errors_are_weights_unavailable(served, env):
    del served.files[LPIPS_ALEX.filename]
    with pytest.raises(WeightsUnavailable, match="HTTP 404"):
        fetch_pretrained(lpips_net.LPIPS_ALEX, quiet=True)
    served.files[LPIPS_ALEX.filename] = b"weights" * 100
    served.truncate.add(LPIPS_ALEX.filename)
    with pytest.raises(WeightsUnavailable, match="IncompleteRead"):
        fetch_pretrained(lpips_net.LPIPS_ALEX, quiet=True)
    served.stop()
    with pytest.raises(WeightsUnavailable, match="network error"):
        fetch_pretrained(lpips_net.LPIPS_ALEX, quiet=True)
    assert not env.exists() or not list(env.iterdir())


def test_fid_weights_offline_are_unavailable_not_replaced(env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match="pt_inception-2015-12-05-6726825d.pth"):
        frechet.get_inception("cpu")
    assert pretrained._MODELS == {}


# ----- LPIPS -----
def _images(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g)


def test_lpips_distance_is_zero_symmetric_positive_and_differentiable(served):
    x, y = _images(seed=1), _images(seed=2)
    d_xx, d_xy, d_yx = lpips_distance(x, x), lpips_distance(x, y), lpips_distance(y, x)
    assert d_xx.shape == (2,)
    assert torch.allclose(d_xx, torch.zeros(2), atol=1e-7)
    assert torch.allclose(d_xy, d_yx, atol=1e-6)
    assert (d_xy > 1e-4).all()
    a = x.clone().requires_grad_(True)
    lpips_distance(a, y).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips_net.get_lpips("cpu").parameters())


def test_lpips_matches_a_functional_reference(served, lpips_files):
    """The same formula written out with F.conv2d on the served state dicts: ScalingLayer, taps after
    each ReLU, unit-normalised channels, lin layers, spatial mean, sum over layers."""
    feats = torch.load(io.BytesIO(lpips_files[ALEXNET.filename]), weights_only=True)
    lins = torch.load(io.BytesIO(lpips_files[LPIPS_ALEX.filename]), weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(x):
        x = (2 * x - 1 - shift) / scale
        out = []
        for i, (conv, stride, pad, pool) in enumerate([(0, 4, 2, True), (3, 1, 2, True), (6, 1, 1, False),
                                                       (8, 1, 1, False), (10, 1, 1, False)]):
            x = F.relu(F.conv2d(x, feats[f"features.{conv}.weight"], feats[f"features.{conv}.bias"], stride, pad))
            out.append(x)
            if pool:
                x = F.max_pool2d(x, 3, 2)
        return out

    x, y = _images(seed=3), _images(seed=4)
    ref = sum((F.conv2d((a / (a.norm(dim=1, keepdim=True) + 1e-10) - b / (b.norm(dim=1, keepdim=True) + 1e-10)) ** 2,
                        lins[f"lin{i}.model.1.weight"])).mean(dim=(1, 2, 3))
              for i, (a, b) in enumerate(zip(taps(x), taps(y))))
    assert torch.allclose(lpips_distance(x, y), ref, rtol=1e-4, atol=1e-7)


# ----- FID -----
def test_fid_inception_state_dict_is_the_official_files_layout():
    state = FIDInceptionV3().state_dict()
    assert len(state) == 566  # 94 conv+BN units x 6 entries, fc.weight, fc.bias
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Conv2d_4a_3x3.bn.running_var"] == (192,)
    assert shapes["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert shapes["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["Mixed_7b.branch3x3_2b.conv.weight"] == (384, 384, 3, 1)
    assert shapes["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["fc.weight"] == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in state)
    tensor_bytes = sum(v.numel() * v.element_size() for v in state.values())
    assert 0.998 < tensor_bytes / FID_INCEPTION.size < 1.0  # the rest is the file's pickle/zip overhead


def test_fid_inception_forward_gives_pool3_features():
    torch.manual_seed(0)
    model = FIDInceptionV3().eval()
    with torch.no_grad():
        feats = frechet.inception_features(torch.rand(2, 3, 40, 40), model=model)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and (feats >= 0).all()  # after ReLU and average pooling


def test_frechet_distance_closed_form_for_1d_and_diagonal_gaussians():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) == \
        pytest.approx(9 + 1)
    rng = np.random.default_rng(0)
    m1, m2, v1, v2 = rng.normal(size=5), rng.normal(size=5), rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    closed = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(closed, rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))  # the same rotation of both: the distance is unchanged
    assert frechet_distance(q @ m1, q @ np.diag(v1) @ q.T, q @ m2, q @ np.diag(v2) @ q.T) == \
        pytest.approx(closed, rel=1e-9)


def test_fid_trace_term_matches_the_eigenvalues_of_the_product_for_general_covariances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(0)).sum()  # independent: non-symmetric eig
    zero = np.zeros(6)
    assert frechet_distance(zero, s1, zero, s2) == pytest.approx(np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)
    assert frechet_distance(zero, s1, zero, s1) == pytest.approx(0, abs=1e-9)


def test_fid_of_samples_uses_mean_and_unbiased_covariance():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 3)), rng.normal(1.0, 2.0, size=(60, 3))
    expected = frechet_distance(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T))
    assert fid(a, b) == pytest.approx(expected)
    assert fid(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError):
        fid(a[:1], b)


# ----- colorize eval -----
def _eval_data(tmp_path: Path) -> Path:
    for i in range(3):
        make_photo(tmp_path / "gt" / f"p{i}.png", size=(40, 32), seed=i)
    return tmp_path / "gt"


def test_eval_lpips_fid_unavailable_goes_on_with_one_clear_line(env, tmp_path, tiny_weights, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "report"
    args = ["eval", "--data", str(_eval_data(tmp_path)), "--model", str(tiny_weights), "--output", str(out),
            "--lpips", "--fid", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "unavailable" in line]
    assert len(warnings) == 2 and all(ALEXNET.filename in w or FID_INCEPTION.filename in w for w in warnings)
    report = (out / "report.md").read_text()
    assert "LPIPS: unavailable (" in report and "FID: unavailable (" in report
    assert "lpips" not in json.loads((out / "metrics.json").read_text())["gray"]
    assert "lpips" not in (out / "per_image.csv").read_text().splitlines()[0]

    strict = CliRunner().invoke(app, [*args, "--strict-perceptual"])
    assert strict.exit_code == 1 and "error:" in strict.stderr and "offline" in strict.stderr


def test_eval_reports_lpips_and_fid_when_weights_are_had(served, tmp_path, tiny_weights, monkeypatch):
    # FID's wiring only: a random-init Inception stands in for the official one (95 MB, not served)
    torch.manual_seed(0)
    monkeypatch.setattr(evaluation, "get_inception", lambda device, **kw: FIDInceptionV3().eval().to(device))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--data", str(_eval_data(tmp_path)), "--model", str(tiny_weights),
                                      "--output", str(out), "--lpips", "--fid", "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["gray"]["lpips"] > 0 and line["gray"]["fid"] >= 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics[str(tiny_weights)]["fid_n"] == 3 and metrics[str(tiny_weights)]["lpips"] > 0
    header, *rows = (out / "per_image.csv").read_text().splitlines()
    assert header.endswith(",lpips") and len(rows) == 6
    report = (out / "report.md").read_text()
    assert "LPIPS ↓" in report and "FID ↓" in report and "n = 3" in report and "unavailable" not in report
