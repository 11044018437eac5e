"""Named datasets: real downloads over HTTP from a server the test starts on 127.0.0.1, serving tiny
archives in the real formats (CIFAR-10 python tarball, Places365 val_256.tar, Imagenette .tgz)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import re
import socket
import tarfile
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from colorize_cli.app import datasets
from colorize_cli.app.datasets import DatasetError, DatasetIntegrityError, UnsafeArchiveError, load_dataset
from colorize_cli.cli import app
from colorize_cli.io import download


# ----- a file server: Range requests, dropped connections, a log of what it was asked -----
class FileServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.drops: dict[str, list[int]] = {}  # file -> byte counts after which the next GETs hang up
        self.ranges = True  # False: ignore Range and answer 200, as some servers do
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((self.command, self.path, rng))
                data = server.files.get(name)
                if data is None:
                    return self._send(404, b"not found", {})
                status, headers = 200, {"Accept-Ranges": "bytes"}
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and server.ranges:
                    start = int(m[1])
                    if start >= len(data):
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    status, data = 206, data[start:]
                drops = server.drops.get(name)
                if drops:
                    n = drops.pop(0)
                    self.send_response(status)
                    for k, v in {**headers, "Content-Length": str(len(data))}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self._send(status, data, headers)

            def _send(self, status, body, headers):
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def gets(self) -> list[tuple[str, str | None]]:
        return [(path, rng) for method, path, rng in self.requests if method == "GET"]


@pytest.fixture
def server(tmp_path, monkeypatch):
    srv = FileServer().start()
    monkeypatch.setenv(datasets.MIRROR_ENV, srv.url)
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    monkeypatch.setattr(download, "CHUNK", 1024)  # small reads, so that a dropped connection leaves a partial file
    yield srv
    srv.stop()


# ----- tiny archives in the real formats -----
def _picture(seed: int, size: int = 32, gray: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([x, y, 1 - x], axis=-1) * 180 + rng.uniform(0, 60, 3)
    arr = np.clip(rgb, 0, 255).astype(np.uint8)
    return np.repeat(arr[..., :1], 3, axis=-1) if gray else arr


def _tar(members: dict[str, bytes], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _jpeg(arr: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "JPEG", quality=95)
    return buf.getvalue()


CIFAR_PER_BATCH = 3


def cifar_tarball() -> tuple[bytes, dict[str, np.ndarray]]:
    """The CIFAR-10 python layout: pickled dicts, ``data`` uint8 (N, 3072) of R, G, B planes. The first
    image of data_batch_1 is grayscale. Returns the archive and each batch's (N, 32, 32, 3) images."""
    members, images = {}, {}
    for b, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        ims = np.stack([_picture(10 * b + i, gray=(b == 0 and i == 0)) for i in range(CIFAR_PER_BATCH)])
        rows = ims.transpose(0, 3, 1, 2).reshape(len(ims), 3072)
        batch = {b"batch_label": name.encode(), b"labels": list(range(len(ims))), b"data": rows,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(len(ims))]}
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch, protocol=2)
        images[name] = ims
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"airplane"]}, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return _tar(members, gz=True), images


def places_val_tar(extra: dict[str, bytes] | None = None) -> bytes:
    """``val_256/Places365_val_0000000N.jpg``: three colour photos and a grayscale one."""
    members = {f"val_256/Places365_val_{i:08d}.jpg": _jpeg(_picture(i, 40)) for i in range(1, 4)}
    members["val_256/Places365_val_00000004.jpg"] = _jpeg(_picture(4, 40), mode="L")
    return _tar({**members, **(extra or {})})


def imagenette_tgz() -> bytes:
    """``imagenette2-160/{train,val}/<wnid>/*.JPEG``: 4 train photos (one grayscale), 2 val photos."""
    members = {}
    for i, wnid in enumerate(["n01440764", "n02102040"]):
        for j in range(2):
            members[f"imagenette2-160/train/{wnid}/{wnid}_{j}.JPEG"] = _jpeg(_picture(10 * i + j, 48),
                                                                            "L" if i == j == 1 else "RGB")
        members[f"imagenette2-160/val/{wnid}/ILSVRC2012_val_{i}.JPEG"] = _jpeg(_picture(99 - i, 48))
    members["imagenette2-160/noisy_imagenette.csv"] = b"path,noisy_labels_0\n"
    return _tar(members, gz=True)


def _pin(monkeypatch, name: str, filename: str, data: bytes, **changes) -> None:
    """Point the registry's size and checksums for ``filename`` of dataset ``name`` at the tiny ``data``."""
    dataset = datasets.DATASETS[name]
    splits = {}
    for split, part in dataset.splits.items():
        a = part.archive
        if a.filename == filename:
            a = replace(a, size=len(data), md5=hashlib.md5(data).hexdigest(),
                        head_md5=hashlib.md5(data[: download.HEAD_BYTES]).hexdigest() if a.head_md5 else None)
            a = replace(a, **changes)
        splits[split] = replace(part, archive=a)
    monkeypatch.setitem(datasets.DATASETS, name, replace(dataset, splits=splits))


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "datasets"


# ----- the three formats -----
def test_cifar10_dataset_downloads_verifies_reads_batches_and_then_works_offline(server, tmp_path, monkeypatch,
                                                                                 caplog):
    caplog.set_level(logging.INFO, logger="colorize_cli")  # the package logs its download lines
    data, images = cifar_tarball()
    server.files["cifar-10-python.tar.gz"] = data
    _pin(monkeypatch, "cifar10", "cifar-10-python.tar.gz", data)
    got = load_dataset("cifar10", cache_size=40)
    err = caplog.text
    n = 5 * CIFAR_PER_BATCH
    assert got.files == n and got.skipped == {"grayscale": 1}
    assert tuple(got.images.shape) == (n - 1, 32, 32, 3)  # native 32 px, not upsampled to 40
    # the R, G, B planes land where they belong: the first colour image is data_batch_1's second
    assert torch.equal(got.images[0], torch.from_numpy(images["data_batch_1"][1]))
    assert "verified (size, md5" in err and "cifar-10-python.tar.gz" in err and "kB" in err  # progress bar
    record = json.loads((_cache(tmp_path) / "cifar10" / "cifar-10-python.tar.gz.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest()

    server.stop()  # from now on, the cache only
    again = load_dataset("cifar10", cache_size=40)
    assert torch.equal(again.images, got.images)
    test = load_dataset("cifar10:test", cache_size=16)
    assert tuple(test.images.shape) == (CIFAR_PER_BATCH, 16, 16, 3) and test.files == CIFAR_PER_BATCH
    assert len(server.gets()) == 1


def test_places365_val_dataset_extracts_once_redoes_an_interrupted_extraction_and_skips_gray(
        server, tmp_path, monkeypatch):
    data = places_val_tar()
    server.files["val_256.tar"] = data
    _pin(monkeypatch, "places365", "val_256.tar", data)
    dataset, split = datasets.resolve("places365:val")
    archive = datasets.fetch(dataset, dataset.splits[split].archive)
    server.stop()
    extracted = _cache(tmp_path) / "places365" / "val_256"
    (extracted / "val_256").mkdir(parents=True)
    (extracted / "val_256" / "half-written.jpg").write_bytes(b"\xff\xd8")  # an extraction cut short

    got = load_dataset("places365", cache_size=32, cache_dir=tmp_path / "npz", split="val")
    assert got.files == 4 and len(got.images) == 3 and got.skipped == {"grayscale": 1}
    assert (extracted / ".complete").is_file() and not (extracted / "val_256" / "half-written.jpg").exists()
    assert not archive.exists()  # extracted, so deleted; its record stays
    assert json.loads(archive.with_name("val_256.tar.json").read_text())["md5"] == hashlib.md5(data).hexdigest()
    again = load_dataset("places365:val", cache_size=32)
    assert torch.equal(again.images, got.images)


def test_imagenette_dataset_tgz_train_and_val_splits_with_fastai_checks(server, monkeypatch):
    data = imagenette_tgz()
    server.files["imagenette2-160.tgz"] = data
    _pin(monkeypatch, "imagenette", "imagenette2-160.tgz", data)
    train = load_dataset("imagenette", cache_size=32)
    assert train.files == 4 and len(train.images) == 3 and train.skipped == {"grayscale": 1}
    val = load_dataset("imagenette", cache_size=32, split="val")
    assert val.files == 2 and len(val.images) == 2
    assert len(server.gets()) == 1  # one archive for both splits


# ----- downloads -----
@pytest.mark.parametrize("ranges", [True, False], ids=["server-resumes", "server-ignores-range"])
def test_dataset_download_resumes_a_partial_file(server, tmp_path, monkeypatch, caplog, ranges):
    caplog.set_level(logging.INFO, logger="colorize_cli")
    data = places_val_tar()
    server.files["val_256.tar"], server.ranges = data, ranges
    _pin(monkeypatch, "places365", "val_256.tar", data)
    part = _cache(tmp_path) / "places365" / "val_256.tar.part"
    part.parent.mkdir(parents=True)
    half = len(data) // 2
    part.write_bytes(data[:half])
    got = load_dataset("places365:val", cache_size=32)
    assert len(got.images) == 3
    assert server.gets() == [("/val_256.tar", f"bytes={half}-")]
    err = caplog.text
    assert ("resuming" in err) if ranges else ("does not resume" in err)
    assert "verified" in err and not part.exists()


def test_dataset_download_resumes_by_itself_after_a_dropped_connection(server, monkeypatch):
    data = imagenette_tgz()
    server.files["imagenette2-160.tgz"] = data
    server.drops["imagenette2-160.tgz"] = [len(data) // 3]
    _pin(monkeypatch, "imagenette", "imagenette2-160.tgz", data)
    assert len(load_dataset("imagenette:val", cache_size=32).images) == 2
    ranges = [rng for _path, rng in server.gets()]
    assert len(ranges) == 2 and ranges[0] is None
    assert re.fullmatch(r"bytes=\d+-", ranges[1]) and int(ranges[1][6:-1]) > 0  # the second GET: the rest only


def test_dataset_checksum_mismatch_deletes_the_file_and_says_so(server, tmp_path, monkeypatch):
    data, _ = cifar_tarball()
    server.files["cifar-10-python.tar.gz"] = data
    _pin(monkeypatch, "cifar10", "cifar-10-python.tar.gz", data, md5="0" * 32)
    with pytest.raises(DatasetIntegrityError) as exc:
        load_dataset("cifar10", cache_size=32)
    msg = str(exc.value)
    assert f"has md5 {hashlib.md5(data).hexdigest()}, not the published {'0' * 32}" in msg
    assert "the file was deleted" in msg and "\n" not in msg
    assert not any(p.name.startswith("cifar-10-python") for p in (_cache(tmp_path) / "cifar10").iterdir()
                   if not p.name.endswith(".lock"))


def test_dataset_without_published_checksum_records_sha256_and_holds_later_downloads_to_it(
        server, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="colorize_cli")
    data, _ = cifar_tarball()
    server.files["cifar-10-python.tar.gz"] = data
    _pin(monkeypatch, "cifar10", "cifar-10-python.tar.gz", data, md5=None, size=None)
    load_dataset("cifar10", cache_size=32)
    sha = hashlib.sha256(data).hexdigest()
    assert f"no published checksum; recorded sha256 {sha}" in caplog.text
    (_cache(tmp_path) / "cifar10" / "cifar-10-python.tar.gz").unlink()
    server.files["cifar-10-python.tar.gz"] = data[:-1] + bytes([data[-1] ^ 1])  # the server's copy changed
    with pytest.raises(DatasetIntegrityError, match=f"not the {sha} recorded when it was first downloaded"):
        load_dataset("cifar10", cache_size=32)


def test_dataset_http_404_is_a_clear_error(server):
    with pytest.raises(DatasetError) as exc:
        load_dataset("places365:val", cache_size=32)
    assert str(exc.value) == (f"places365: {server.url}/val_256.tar answered HTTP 404 Not Found; the file has "
                              "moved, or the mirror lacks it; docs/datasets.md lists the official URLs")


def test_dataset_unreachable_server_is_a_clear_error(server):
    server.stop()
    with pytest.raises(DatasetError, match=r"cannot download .*val_256\.tar \(.*refused.*\); check the network"):
        load_dataset("places365:val", cache_size=32)


def test_dataset_not_enough_disk_space_is_a_clear_error(server, monkeypatch):
    data = places_val_tar()
    server.files["val_256.tar"] = data
    _pin(monkeypatch, "places365", "val_256.tar", data)

    class Usage:
        free = 100

    monkeypatch.setattr(datasets.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(DatasetError, match=r"not enough disk space in .*: [\d.]+ kB needed, 100 B free; free"):
        load_dataset("places365:val", cache_size=32)


@pytest.mark.parametrize("evil", ["../evil.jpg", "/tmp/colorize-evil.jpg", "val_256/../../evil.jpg"])
def test_dataset_tar_with_path_traversal_is_refused(tmp_path, evil):
    archive = tmp_path / "val_256.tar"
    archive.write_bytes(places_val_tar({evil: _jpeg(_picture(7))}))
    dest = tmp_path / "out" / "val_256"
    with pytest.raises(UnsafeArchiveError, match="would be written outside the extraction folder"):
        datasets.extract(archive, dest, "places365:val", progress=False)
    assert not dest.exists() and not (tmp_path / "evil.jpg").exists() and not (tmp_path / "out/evil.jpg").exists()
    assert not Path("/tmp/colorize-evil.jpg").exists()


# ----- the command line -----
def test_cli_train_dataset_cifar10_end_to_end(server, tmp_path, monkeypatch):
    data, _ = cifar_tarball()
    server.files["cifar-10-python.tar.gz"] = data
    _pin(monkeypatch, "cifar10", "cifar-10-python.tar.gz", data)
    out = tmp_path / "run"
    args = ["train", "--dataset", "cifar10", "--steps", "2", "--size", "32", "--batch-size", "2",
            "--output", str(out), "--checkpoint-every", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "dataset cifar10: 14 colour photos of 15 files (skipped: 1 grayscale)" in result.output
    assert (out / "unet-sn.safetensors").is_file()


def test_cli_train_dataset_neither_folder_nor_name_fails_clearly(tmp_path):
    result = CliRunner().invoke(app, ["train", "--dataset", str(tmp_path / "nope"), "--output", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a folder and not a known dataset name (cifar10, places365, imagenette" in result.output


def test_cli_datasets_lists_names_official_urls_and_cache_state(server, tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.MIRROR_ENV)
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in lines["cifar10:train"]
    assert "http://data.csail.mit.edu/places/places365/val_256.tar" in lines["places365:val"]
    assert "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz" in lines["imagenette:train"]
    assert all("not downloaded" in line for line in lines.values())
