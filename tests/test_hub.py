"""Weights from the Hub, end to end: the real huggingface_hub client against tests/hub_server.py on
127.0.0.1 (downloads, cache, offline, integrity, resume, pickles, publish, push after training)."""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import make_photo
from hub_server import HubServer
from huggingface_hub import constants
from typer.testing import CliRunner

from colorize_cli.cli import app
from colorize_cli.engine import hub as hubmod
from colorize_cli.engine.weights import read_weights_toml, update_weights_toml, weights_toml_path
from colorize_cli.models import create_model

TOKEN = "hf_test_token"
REPO_WEIGHTS_TOML = weights_toml_path()


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [ln for ln in result.output.splitlines() if ln.startswith("error:")]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh Hub on 127.0.0.1, an empty Hugging Face home, and a token in HF_TOKEN.

    huggingface_hub reads HF_ENDPOINT at import into constants.ENDPOINT: colorize_cli.engine.hub reads the
    environment when it is used, and the constants are patched too for the library's own defaults.
    """
    server = HubServer(token=TOKEN).start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "COLORIZE_CACHE", "HF_HUB_OFFLINE", "COLORIZE_WEIGHTS_TOML"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("COLUMNS", "200")
    before = REPO_WEIGHTS_TOML.read_bytes()
    yield server
    server.stop()
    assert REPO_WEIGHTS_TOML.read_bytes() == before, "a test modified the repository's weights.toml"


def write_zoo(path: Path, **tables: dict) -> Path:
    lines = ["# a test zoo", ""]
    for name, t in tables.items():
        metrics = t.pop("metrics", None)
        lines.append(f"[models.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in t.items()]
        if metrics:
            lines += ["", f"[models.{name}.metrics]", *(f"{k} = {json.dumps(v)}" for k, v in metrics.items())]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def zoo(hub, tiny_weights, tmp_path, monkeypatch):
    """The tiny model published on the test Hub, pinned in a weights.toml copy in use via
    $COLORIZE_WEIGHTS_TOML; returns (commit, sha256, resolve path of the file on the server)."""
    data = tiny_weights.read_bytes()
    commit = hub.commit("colorize-cli/tiny", {
        "tiny.safetensors": data, "tiny.json": tiny_weights.with_suffix(".json").read_bytes(),
        "config.json": json.dumps({"arch": "unet-sn", "files": ["tiny.safetensors"]}).encode()})
    sha = hashlib.sha256(data).hexdigest()
    write_zoo(tmp_path / "weights.toml",
              tiny={"filename": "tiny.safetensors", "arch": "unet-sn", "sha256": sha, "size": len(data),
                    "bundled": False, "repo_id": "colorize-cli/tiny", "revision": commit, "published": True,
                    "license": "mit", "trained_on": "noise", "metrics": {"auc": 0.5}},
              unpub={"filename": "unpub.safetensors", "arch": "unet-sn", "sha256": "", "bundled": False,
                     "repo_id": "", "revision": "", "published": False})
    monkeypatch.setenv("COLORIZE_WEIGHTS_TOML", str(tmp_path / "weights.toml"))
    return commit, sha, f"/colorize-cli/tiny/resolve/{commit}/tiny.safetensors"


@pytest.fixture
def no_backoff(monkeypatch):
    """huggingface_hub's retry waits (up to 23 s) without the waiting; its code path is unchanged."""
    monkeypatch.setattr(time, "sleep", lambda s: None)


def test_hub_first_download_then_cache_with_the_server_stopped(zoo, hub, tmp_path):
    commit, sha, file_url = zoo
    photo = make_photo(tmp_path / "a.png", mode="L")
    result = run(photo, "--model", "tiny")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a_color.png").exists()
    gets = [r for r in hub.requests if r.path == file_url]
    assert [r.method for r in gets] == ["HEAD", "GET"]
    assert "colorize-cli/0.1.0" in gets[1].headers["user-agent"]
    cached = tmp_path / "hf" / "hub" / "models--colorize-cli--tiny" / "snapshots" / commit
    cached = cached / "tiny.safetensors"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha

    hub.stop()
    seen = len(hub.requests)
    result = run(tmp_path / "a.png", "--model", "tiny", "--overwrite")
    assert result.exit_code == 0, result.output
    assert hubmod.locate("tiny") == (cached, "cached")
    assert len(hub.requests) == seen


def test_hub_offline_with_an_empty_cache_is_one_clear_line_and_exit_2(zoo, hub, tmp_path, monkeypatch):
    photo = make_photo(tmp_path / "a.png", mode="L")
    result = run(photo, "--model", "tiny", "--offline")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "offline" in line and "colorize download tiny" in line and "Traceback" not in result.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run(photo, "--model", "tiny")
    assert result.exit_code == 2 and len(error_lines(result)) == 1
    assert hub.requests == []  # offline means not one request

    monkeypatch.delenv("HF_HUB_OFFLINE")
    result = run("download", "tiny")
    assert result.exit_code == 0 and "tiny: downloaded" in result.output
    assert run(photo, "--model", "tiny", "--offline").exit_code == 0


def test_hub_cache_dir_option_and_colorize_cache_move_the_cache(zoo, hub, tmp_path, monkeypatch):
    commit = zoo[0]
    result = run("download", "tiny", "--cache-dir", tmp_path / "mine")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "hub" / "models--colorize-cli--tiny" / "snapshots" / commit).is_dir()
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "mine"))
    assert hubmod.locate("tiny", offline=True)[1] == "cached"
    assert not (tmp_path / "hf" / "hub").exists()


def test_hub_sha256_mismatch_deletes_the_file_and_is_a_clear_error(zoo, hub, tmp_path):
    commit = zoo[0]
    toml = tmp_path / "weights.toml"
    toml.write_text(toml.read_text().replace(zoo[1], hashlib.sha256(b"another file").hexdigest()))
    with pytest.raises(hubmod.WeightsIntegrityError, match="sha256 .* not the pinned .*deleted"):
        hubmod.resolve("tiny")
    repo = tmp_path / "hf" / "hub" / "models--colorize-cli--tiny"
    assert not (repo / "snapshots" / commit / "tiny.safetensors").exists()
    assert list((repo / "blobs").iterdir()) == []
    result = run(make_photo(tmp_path / "a.png"), "--model", "tiny")
    assert result.exit_code == 2 and "sha256" in error_lines(result)[0]


def test_hub_interrupted_download_resumes_with_a_range_request(zoo, hub, monkeypatch, no_backoff):
    _, sha, file_url = zoo
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)  # bytes reach the disk before the drop
    hub.drops[file_url] = [20000]
    path, how = hubmod.locate("tiny")
    assert how == "downloaded" and hashlib.sha256(path.read_bytes()).hexdigest() == sha
    gets = [r for r in hub.requests if r.path == file_url and r.method == "GET"]
    assert len(gets) == 2 and "range" not in gets[0].headers
    start = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 20000


def test_hub_download_that_keeps_failing_is_a_clear_error(zoo, hub, tmp_path, no_backoff):
    hub.drops[zoo[2]] = [1000] * 10
    result = run(make_photo(tmp_path / "a.png"), "--model", "tiny")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "downloading tiny.safetensors from colorize-cli/tiny failed" in line
    assert "run the command again" in line
    assert list((tmp_path / "hf" / "hub" / "models--colorize-cli--tiny" / "blobs").iterdir()) == []


def test_hub_network_failure_is_one_clear_line(zoo, hub, tmp_path, monkeypatch, no_backoff):
    hub.stop()  # nothing listens there any more: connections are refused
    result = run(make_photo(tmp_path / "a.png"), "--model", "tiny")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "cannot reach the Hub" in line and "HF_ENDPOINT" in line


def test_hub_uri_default_file_and_missing_repo_revision_file(hub, tiny_weights, tmp_path):
    data = tiny_weights.read_bytes()
    config = json.dumps({"files": ["notes.txt", "best.safetensors"]}).encode()
    hub.commit("someone/named", {"best.safetensors": data, "config.json": config})
    plain = hub.commit("someone/plain", {"model.safetensors": data})
    assert hubmod.resolve("hf://someone/named").name == "best.safetensors"
    assert hubmod.resolve(f"hf://someone/plain@{plain}").name == "model.safetensors"
    assert hubmod.resolve(f"hf://someone/plain@{plain}/model.safetensors", offline=True).is_file()
    for uri, msg in [("hf://someone/missing", "no repository someone/missing"),
                     (f"hf://someone/plain@{'f' * 40}", "has no revision"),
                     ("hf://someone/plain/nope.safetensors", "has no file nope.safetensors")]:
        with pytest.raises(hubmod.WeightsNotFoundError, match=msg):
            hubmod.resolve(uri)
    result = run(make_photo(tmp_path / "a.png"), "--model", "hf://someone/missing")
    assert result.exit_code == 2 and len(error_lines(result)) == 1
    result = run(tmp_path / "a.png", "--model", "hf://someone/named")
    assert result.exit_code == 0, result.output


def test_hub_refuses_a_pickle_checkpoint_unless_trusted(hub, tmp_path):
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(create_model("unet-sn", width=4).state_dict(), buf)
    config = {"arch": "unet-sn", "options": {"width": 4}}
    hub.commit("someone/pickled", {"model.pt": buf.getvalue(), "model.json": json.dumps(config).encode()})
    photo = make_photo(tmp_path / "a.png", mode="L")
    result = run(photo, "--model", "hf://someone/pickled/model.pt")
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "pickle" in line and "--trust-remote-pickle" in line
    assert not [r for r in hub.requests if r.path.endswith("model.pt")]  # refused before any download
    result = run(photo, "--model", "hf://someone/pickled/model.pt", "--trust-remote-pickle")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a_color.png").exists()


def test_hub_publish_uploads_and_pins_the_returned_commit_in_a_weights_toml_copy(
        hub, tiny_weights, tmp_path, monkeypatch):
    toml = write_zoo(tmp_path / "weights.toml",
                     other={"filename": "other.safetensors", "arch": "unet-bn", "sha256": "",
                            "bundled": False, "published": False, "metrics": {"auc": 1.0}},
                     tiny={"filename": "tiny.safetensors", "arch": "unet-sn", "sha256": "", "size": 0,
                           "bundled": False, "repo_id": "", "revision": "", "published": False,
                           "license": "mit", "metrics": {"psnr": 20.0}})
    toml.write_text(toml.read_text().replace('revision = ""', 'revision = ""  # filled by publish')
                    + "# the end\n")
    original = toml.read_text()
    monkeypatch.setenv("COLORIZE_WEIGHTS_TOML", str(toml))
    result = run("publish", "tiny", "--repo", "me/tiny-colorizer", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output

    commit = hub.repos["me/tiny-colorizer"].refs["main"]
    files = hub.repos["me/tiny-colorizer"].commits[commit]
    assert files["tiny.safetensors"] == tiny_weights.read_bytes()
    assert json.loads(files["config.json"])["files"] == ["tiny.safetensors"]
    assert json.loads(files["tiny.json"])["options"]["width"] == 4
    assert b"library_name: colorize-cli" in files["README.md"]
    posts = [r for r in hub.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/api/repos/create", "/api/validate-yaml",
                                       "/api/models/me/tiny-colorizer/preupload/main",
                                       "/api/models/me/tiny-colorizer/commit/main"]
    assert posts[-1].headers["authorization"] == f"Bearer {TOKEN}"

    entry = read_weights_toml()["tiny"]
    sha = hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    assert (entry.repo_id, entry.revision, entry.published) == ("me/tiny-colorizer", commit, True)
    assert entry.sha256 == sha
    assert entry.size == tiny_weights.stat().st_size and commit in result.output
    removed = [ln[2:] for ln in difflib.ndiff(original.splitlines(), toml.read_text().splitlines())
               if ln.startswith("- ")]
    changed = sorted(ln.split(" =")[0] for ln in removed)
    assert changed == ["published", "repo_id", "revision", "sha256", "size"]
    assert f'revision = "{commit}"  # filled by publish' in toml.read_text()
    # what was published resolves, pinned and verified, from the Hub
    assert hubmod.locate("tiny")[1] == "downloaded"


def test_hub_publish_needs_a_token_and_says_where_it_comes_from(hub, tiny_weights, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    write_zoo(tmp_path / "weights.toml", tiny={"filename": "tiny.safetensors", "arch": "unet-sn"})
    monkeypatch.setenv("COLORIZE_WEIGHTS_TOML", str(tmp_path / "weights.toml"))
    result = run("publish", "tiny", "--repo", "me/x", "--weights", tiny_weights)
    assert result.exit_code == 1
    (line,) = error_lines(result)
    assert "HF_TOKEN" in line and "hf auth login" in line
    assert hub.requests == []


def test_hub_weights_toml_writer_appends_and_refuses_to_break_the_file(tmp_path):
    toml = write_zoo(tmp_path / "w.toml", a={"filename": "a.safetensors", "arch": "unet-sn", "sha256": ""})
    update_weights_toml("b", {"filename": "b.safetensors", "arch": "unet-bn"}, toml)
    update_weights_toml("a", {"sha256": "ab" * 32, "published": False}, toml)
    entries = read_weights_toml(toml)
    assert entries["a"].sha256 == "ab" * 32 and entries["b"].arch == "unet-bn"
    assert toml.read_text().startswith("# a test zoo\n")
    update_weights_toml("a", {"revision": "main", "published": True}, toml)
    with pytest.raises(ValueError, match="40-hex commit hash as revision"):
        read_weights_toml(toml)


def test_hub_models_and_download_all(zoo, hub):
    result = run("models")
    assert result.exit_code == 0, result.output
    rows = {ln.split("│")[1].strip(): ln for ln in result.output.splitlines() if ln.count("│") > 3}
    assert "remote" in rows["tiny"] and "auc 0.5" in rows["tiny"] and "0.1 MB" in rows["tiny"]
    assert "not published" in rows["unpub"]
    result = run("download", "--all")
    assert result.exit_code == 0, result.output
    assert "tiny: downloaded" in result.output and "unpub: not published, skipped" in result.output
    assert "cached" in {ln.split("│")[1].strip(): ln for ln in run("models").output.splitlines()
                        if ln.count("│") > 3}["tiny"]


def test_hub_train_push_to_hub_uploads_the_finished_run(hub, tmp_path):
    for i in range(2):
        make_photo(tmp_path / "data" / f"{i}.png", size=(40, 40), seed=i)
    result = run("train", "--model", "unet-sn", "--dataset", tmp_path / "data", "--output", tmp_path / "run",
                 "--steps", "1", "--batch-size", "2", "--size", "32", "--push-to-hub", "me/my-run")
    assert result.exit_code == 0, result.output
    commit = hub.repos["me/my-run"].refs["main"]
    assert f"hf://me/my-run@{commit}/unet-sn.safetensors" in result.output
    files = hub.repos["me/my-run"].commits[commit]
    assert files["unet-sn.safetensors"] == (tmp_path / "run" / "unet-sn.safetensors").read_bytes()
    assert hubmod.resolve("hf://me/my-run").name == "unet-sn.safetensors"


def test_hub_in_fresh_processes_that_read_the_environment_at_import(zoo, hub, tmp_path):
    """As users run it: HF_ENDPOINT / HF_HUB_OFFLINE set before huggingface_hub is imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "colorize_cli"]
    done = subprocess.run([*cmd, "download", "tiny"], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    hub.stop()
    photo = make_photo(tmp_path / "a.png", mode="L")
    done = subprocess.run([*cmd, photo, "--model", "tiny"], env={**env, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a_color.png").exists()
