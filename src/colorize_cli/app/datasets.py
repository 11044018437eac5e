"""Named training datasets: downloaded from their official URLs, verified, cached, read in their own formats.

``colorize train --dataset NAME[:SPLIT]`` accepts a folder of photos or one of :data:`DATASETS`
(docs/datasets.md). A named dataset is fetched once into ``datasets/`` of the colorize-cli cache
(``--cache-dir``, else ``$COLORIZE_CACHE``, else ``~/.cache/colorize-cli``; never in offline mode,
``HF_HUB_OFFLINE``: :mod:`colorize_cli.io.cache`): streamed into ``FILE.part`` with a progress bar, resumed with an
HTTP ``Range`` request after an interruption, checked against the checksum its publisher gives and
only then renamed into place. Tar archives of JPEGs are extracted once (a ``.complete`` marker says the
extraction finished, so an interrupted one is redone) and the archive is then deleted; CIFAR-10's
pickled arrays are read straight from its tarball. ``$COLORIZE_DATASETS_URL`` replaces the host and
path of every URL by a mirror root (``MIRROR/FILE``); the tests point it at a local server.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from colorize_cli.app.data import FolderData, load_folder
from colorize_cli.io.cache import CACHE_ENV, OFFLINE_WHY, cache_path, is_offline
from colorize_cli.io.download import (
    CHUNK,
    DownloadError,
    check_space,
    disk_error,
    download,
    human_size,
    log,
    progress_bar,
)
from colorize_cli.io.files import find_images
from colorize_cli.io.images import is_grayscale

MIRROR_ENV = "COLORIZE_DATASETS_URL"
COMPLETE = ".complete"


class DatasetError(DownloadError):
    """A dataset could not be downloaded, read or stored; the message says what to do."""


class DatasetIntegrityError(DatasetError):
    """A downloaded file is not the one its publisher describes (it has been deleted)."""


class UnsafeArchiveError(DatasetError):
    """An archive member would land outside the extraction folder (absolute path or ``..``)."""


@dataclass(frozen=True)
class Archive:
    filename: str
    url: str  # the official URL
    size: int | None  # bytes
    md5: str | None  # of the whole file; None: nothing published (a sha256 is recorded on first download)
    source: str  # who publishes the checksums
    head_md5: str | None = None  # md5 of the first MiB (fast.ai's own check)


@dataclass(frozen=True)
class Split:
    archive: Archive
    folder: str = ""  # the folder of the extracted archive that holds this split ("" = all of it)
    images: int = 0  # how many the publisher says it holds


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    homepage: str
    terms: str
    splits: dict[str, Split]
    reader: str = "folder"  # "folder": extract and decode the images; "cifar": the pickled arrays


_CIFAR10 = Archive("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                   170_498_071, "c58f30108f718f92721af3b95e74349a",
                   "md5 published on https://www.cs.toronto.edu/~kriz/cifar.html")
_PLACES = "http://data.csail.mit.edu/places/places365/"
_PLACES_SOURCE = "md5 published on the Places2 download page, places2.csail.mit.edu"
_FASTAI = "https://s3.amazonaws.com/fast-ai-imageclas/"
_FASTAI_SOURCE = ("size and first-MiB md5 from fast.ai's own download checks (fastai/data/checks.txt); "
                  "whole-file md5 as torchvision.datasets.Imagenette pins it")
_IMAGENET_TERMS = "a subset of ImageNet: ImageNet's terms of access (non-commercial research and education)"


def _imagenette(name: str, stem: str, size: int, head_md5: str, md5: str) -> Dataset:
    archive = Archive(f"{stem}.tgz", f"{_FASTAI}{stem}.tgz", size, md5, _FASTAI_SOURCE, head_md5)
    return Dataset(name, f"Imagenette ({stem}): 10 easy ImageNet classes", "https://github.com/fastai/imagenette",
                   _IMAGENET_TERMS, {"train": Split(archive, f"{stem}/train", 9469),
                                     "val": Split(archive, f"{stem}/val", 3925)})


DATASETS: dict[str, Dataset] = {d.name: d for d in [
    Dataset("cifar10", "CIFAR-10: 60,000 32x32 colour images", "https://www.cs.toronto.edu/~kriz/cifar.html",
            "free to use (the page asks to cite Krizhevsky 2009)",
            {"train": Split(_CIFAR10, "", 50000), "test": Split(_CIFAR10, "", 10000)}, reader="cifar"),
    Dataset("places365", "Places365-Standard, small images (256x256)", "http://places2.csail.mit.edu",
            "MIT CSAIL terms: non-commercial research and education only",
            {"train": Split(Archive("train_256_places365standard.tar",
                                    f"{_PLACES}train_256_places365standard.tar", 26_103_685_120,
                                    "53ca1c756c3d1e7809517cc47c5561c5", _PLACES_SOURCE), "", 1_803_460),
             "val": Split(Archive("val_256.tar", f"{_PLACES}val_256.tar", 525_158_400,
                                  "e27b17d8d44f4af9a78502beb927f808", _PLACES_SOURCE), "", 36_500)}),
    _imagenette("imagenette", "imagenette2-160", 99_003_388, "c475f8f7617a200ba35b9facc48443c3",
                "e793b78cc4c9e9a4ccc0c1155377a412"),
    _imagenette("imagenette-320", "imagenette2-320", 341_663_724, "1f1f74f133caff120e575856659b87a2",
                "3df6f0d01a2c9592104656642f5e78a3"),
    _imagenette("imagenette-full", "imagenette2", 1_557_161_267, "2c774ecb40005b35d7937d50f5d42336",
                "fe2fc210e6bb7c5664d602c3cd71e612"),
]}
SPLIT_ALIASES = {"val": "test", "test": "val", "validation": "val"}


# ----- names and places -----
def resolve(name: str, split: str = "train") -> tuple[Dataset, str]:
    """The dataset and split that ``NAME[:SPLIT]`` means (a split in the name wins over ``split``).

    Raises:
        KeyError: not a known name or split; the message lists what exists.
    """
    base, _, named_split = name.partition(":")
    dataset = DATASETS.get(base.lower())
    if dataset is None:
        raise KeyError(f"unknown dataset {base!r}; known: {', '.join(DATASETS)} (or a folder of photos)")
    split = named_split or split
    if split not in dataset.splits and SPLIT_ALIASES.get(split) in dataset.splits:
        split = SPLIT_ALIASES[split]
    if split not in dataset.splits:
        raise KeyError(f"dataset {dataset.name} has no split {split!r}; it has {', '.join(dataset.splits)}")
    return dataset, split


def is_dataset_name(text: str) -> bool:
    try:
        resolve(text)
    except KeyError:
        return False
    return True


def datasets_dir() -> Path:
    """``datasets/`` of the colorize-cli cache: ``--cache-dir``, else ``$COLORIZE_CACHE``, else
    ``$XDG_CACHE_HOME/colorize-cli`` (``~/.cache``) (:func:`colorize_cli.io.cache.cache_root`)."""
    return cache_path("datasets")


def archive_url(archive: Archive) -> str:
    """The official URL, or ``$COLORIZE_DATASETS_URL/FILE`` when a mirror is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    return f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url


def _stem(filename: str) -> str:
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def _paths(dataset: Dataset, archive: Archive) -> tuple[Path, Path]:
    """(where the archive is kept, where it is extracted)."""
    folder = datasets_dir() / dataset.name
    return folder / archive.filename, folder / _stem(archive.filename)


# ----- loading -----
def load_dataset(name_or_path: str, cache_size: int, cache_dir: Path | None = None, split: str = "train",
                 progress: bool = True) -> FolderData:
    """Every colour photo of a folder or a named dataset as an ``(N, S, S, 3)`` uint8 tensor.

    A folder (an existing one wins over a name) goes to :func:`~colorize_cli.app.data.load_folder`. A name
    (``cifar10``, ``places365``, ``imagenette``…, optionally ``NAME:SPLIT``) is downloaded and
    extracted first if it is not in the cache. Grayscale images are skipped and counted for every
    dataset. CIFAR-10 stays at its native 32 px when ``cache_size`` is larger (upsampling would only
    cost memory: the batch sampler resizes crops to the training size anyway).

    Raises:
        FileNotFoundError: neither a folder nor a known name. DatasetError (and its subclasses): the
        download, its verification or the extraction failed; the message says what to do.
    """

    path = Path(name_or_path)
    if path.is_dir():
        return load_folder(path, cache_size, cache_dir)
    try:
        dataset, split = resolve(name_or_path, split)
    except KeyError as exc:
        if ":" in name_or_path and name_or_path.partition(":")[0].lower() in DATASETS:
            raise
        raise FileNotFoundError(f"{name_or_path}: not a folder and not a known dataset name "
                                f"({', '.join(DATASETS)})") from exc
    part = dataset.splits[split]
    label = f"{dataset.name}:{split}"
    archive_path, extracted = _paths(dataset, part.archive)
    if dataset.reader == "cifar":
        return read_cifar10(fetch(dataset, part.archive, progress=progress), split, cache_size)
    if not (extracted / COMPLETE).is_file():
        archive = fetch(dataset, part.archive, progress=progress)
        with _locked(extracted.with_name(extracted.name + ".lock"), label):
            extract(archive, extracted, label, progress)
    archive_path.unlink(missing_ok=True)  # verified and extracted: keeping it would double the disk used
    folder = extracted / part.folder if part.folder else extracted
    if not folder.is_dir():
        raise DatasetError(f"{label}: {part.archive.filename} has no folder {part.folder}; delete {extracted} "
                           "and run the command again")
    return load_folder(folder, cache_size, cache_dir)


def count_images(name_or_path: str, split: str = "train") -> int:
    """How many images a folder holds, or a named dataset's split holds by its publisher's count."""

    if Path(name_or_path).is_dir():
        return len(find_images(Path(name_or_path)))
    dataset, split = resolve(name_or_path, split)
    return dataset.splits[split].images


# ----- CIFAR-10 -----
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a pickle cannot run code through it."""

    def find_class(self, module: str, name: str) -> Any:
        import numpy as np

        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                   ("_codecs", "encode"): __import__("codecs").encode}
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[(mod, "_reconstruct")] = np.zeros(0).__reduce__()[0]
        for mod in ("numpy.core.numeric", "numpy._core.numeric"):
            allowed[(mod, "_frombuffer")] = np.zeros(0).__reduce_ex__(5)[0]
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return allowed[(module, name)]


def read_cifar10(archive: Path, split: str, cache_size: int = 32) -> FolderData:
    """CIFAR-10's ``train`` (``data_batch_1..5``) or ``test`` (``test_batch``) images, read from the
    python tarball: each batch is a pickled dict whose ``data`` is uint8 ``(N, 3072)``, rows holding
    the R, G and B planes of a 32x32 image. Grayscale images (R = G = B) are skipped and counted."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for name in names:
                if name not in members:
                    raise DatasetError(f"{archive}: no cifar-10-batches-py/{name} in it; not the CIFAR-10 "
                                       "python archive? delete it and run the command again")
                batch = _ArrayUnpickler(tar.extractfile(members[name]), encoding="bytes").load()
                data = np.asarray(batch.get(b"data", batch.get("data")), dtype=np.uint8)
                if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                    raise DatasetError(f"{archive}: {name} holds data of shape {data.shape}, not (N, 3072)")
                batches.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    except (tarfile.TarError, pickle.UnpicklingError, EOFError, OSError, AttributeError) as exc:
        raise DatasetError(f"{archive}: cannot read the CIFAR-10 batches ({exc.__class__.__name__}: {exc}); "
                           "delete the file and run the command again") from exc
    images = np.concatenate(batches)
    colour = np.array([not is_grayscale(im) for im in images], dtype=bool)
    skipped = {"grayscale": int((~colour).sum())} if not colour.all() else {}
    kept = torch.from_numpy(np.ascontiguousarray(images[colour]))
    if cache_size < 32 and len(kept):
        x = F.interpolate(kept.permute(0, 3, 1, 2).float(), size=(cache_size, cache_size), mode="bilinear",
                          antialias=True, align_corners=False)
        kept = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    if not len(kept):
        raise ValueError(f"{archive}: none of the {len(images)} images is a colour photo")
    return FolderData(kept, skipped, len(images))


# ----- downloads -----
@contextmanager
def _locked(path: Path, label: str) -> Iterator[None]:
    """One process at a time downloads a file; the others wait, then find it done."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log(f"{label}: waiting for another colorize process that is downloading {path.stem}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fetch(dataset: Dataset, archive: Archive, progress: bool = True) -> Path:
    """The verified archive in the cache, downloading (or resuming) it if needed; in offline mode
    (:func:`colorize_cli.io.cache.is_offline`) a missing one is a :class:`DatasetError`, with no request."""
    dest, _ = _paths(dataset, archive)
    if dest.is_file():
        return dest
    if is_offline():
        raise DatasetError(f"{dataset.name}: {archive.filename} is not in the cache {dest.parent} and {OFFLINE_WHY}; "
                           f"run the command once online, or point {CACHE_ENV} at a cache that holds it "
                           "(docs/datasets.md)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    label = dataset.name
    with _locked(dest.with_name(dest.name + ".lock"), label):
        if dest.is_file():
            return dest
        part = dest.with_name(dest.name + ".part")
        record = dest.with_name(dest.name + ".json")
        url = archive_url(archive)
        digests = download(url, part, archive.size, label, progress, error=DatasetError,
                           mirror_env=MIRROR_ENV, docs="docs/datasets.md")
        verified = _verify(archive, part, digests, label, record)
        part.replace(dest)
        record.write_text(json.dumps({"url": url, "bytes": dest.stat().st_size, **digests,
                                      "verified": verified}, indent=2) + "\n")
    return dest


def _verify(archive: Archive, part: Path, digests: dict[str, str], label: str, record: Path) -> list[str]:
    """Check the download against what its publisher gives; delete it if it does not match.

    Returns the checks that passed."""
    got = part.stat().st_size
    recorded = json.loads(record.read_text()).get("sha256") if record.is_file() else None
    problem, checks = "", []
    if archive.size is not None:
        problem = problem or (f"is {got} bytes, not {archive.size}" if got != archive.size else "")
        checks.append("size")
    if archive.head_md5:
        problem = problem or (f"has a first MiB with md5 {digests['head_md5']}, not {archive.head_md5}"
                              if digests["head_md5"] != archive.head_md5 else "")
        checks.append("head_md5")
    if archive.md5:
        problem = problem or (f"has md5 {digests['md5']}, not the published {archive.md5}"
                              if digests["md5"] != archive.md5 else "")
        checks.append("md5")
    elif recorded:
        problem = problem or (f"has sha256 {digests['sha256']}, not the {recorded} recorded when it was first "
                              "downloaded" if digests["sha256"] != recorded else "")
        checks.append("recorded sha256")
    if problem:
        part.unlink(missing_ok=True)
        raise DatasetIntegrityError(
            f"{label}: {archive.filename} {problem} ({archive.source}); the file was deleted. Run the "
            "command again to download it again; if this repeats, the server's copy is not the one the "
            "publisher describes (docs/datasets.md)")
    if archive.md5:
        log(f"{label}: {archive.filename} verified ({', '.join(checks)}; {archive.source}); "
             f"sha256 {digests['sha256']} recorded in {record}")
    elif not recorded:
        log(f"{label}: {archive.filename}: no published checksum; recorded sha256 {digests['sha256']} in "
             f"{record}; later downloads must match it")
    return checks


# ----- extraction -----
def member_path(name: str) -> PurePosixPath:
    """The relative path of a tar member; refuses absolute paths and ``..``."""
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if (posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\"))
            or ".." in posix.parts or ".." in windows.parts):
        raise UnsafeArchiveError(f"member {name!r} would be written outside the extraction folder")
    return PurePosixPath(*[p for p in posix.parts if p not in ("", ".")])


class _CountingReader:
    def __init__(self, f: Any, advance: Callable[[int], None]):
        self.f, self.advance = f, advance

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.advance(len(data))
        return data


def extract(archive: Path, dest: Path, label: str, progress: bool = True) -> Path:
    """Extract the regular files and folders of a tar (plain or gzip) into ``dest``, then write the
    ``.complete`` marker; links are not created. A member with an absolute path or ``..`` (or one that
    the stdlib's ``data`` filter refuses, where it has one) refuses the whole archive and nothing is
    left. A ``dest`` without the marker is an interrupted extraction: it is redone."""
    if (dest / COMPLETE).is_file():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    check_space(dest, archive.stat().st_size, label, DatasetError)
    files = 0
    try:
        with (open(archive, "rb") as raw,
              progress_bar(f"extract {archive.name}", archive.stat().st_size, 0, progress) as advance,
              tarfile.open(fileobj=_CountingReader(raw, advance), mode="r|*") as tar):
            for member in tar:
                rel = member_path(member.name)
                if hasattr(tarfile, "data_filter"):  # the stdlib's own checks too, where it has them
                    try:
                        tarfile.data_filter(member, str(dest))
                    except tarfile.FilterError as exc:
                        raise UnsafeArchiveError(f"member {member.name!r} refused ({exc})") from exc
                target = dest.joinpath(*rel.parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile() and rel.parts:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                    files += 1
    except UnsafeArchiveError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise UnsafeArchiveError(f"{label}: {archive} is refused: {exc}; nothing was extracted") from None
    except tarfile.TarError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise DatasetError(f"{label}: {archive} is not a readable tar archive ({exc}); delete it and run the "
                           "command again") from exc
    except OSError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise disk_error(exc, dest, label, DatasetError) from exc
    (dest / COMPLETE).write_text(json.dumps({"archive": archive.name, "files": files}) + "\n")
    log(f"{label}: extracted {files} files to {dest}")
    return dest


# ----- listing -----
def status(dataset: Dataset, split: str) -> str:
    """``extracted``, ``downloaded``, ``partial (N %)`` or ``not downloaded``."""
    archive = dataset.splits[split].archive
    path, extracted = _paths(dataset, archive)
    if (extracted / COMPLETE).is_file():
        return "extracted"
    if path.is_file():
        return "downloaded"
    part = path.with_name(path.name + ".part")
    if part.is_file() and archive.size:
        return f"partial ({100 * part.stat().st_size / archive.size:.0f} %)"
    return "not downloaded"


def describe() -> list[dict[str, str]]:
    """One row per named dataset split, for ``colorize datasets``."""
    rows = []
    for dataset in DATASETS.values():
        for split, part in dataset.splits.items():
            a = part.archive
            rows.append({"name": f"{dataset.name}:{split}", "images": f"{part.images:,}", "url": archive_url(a),
                         "size": human_size(a.size) if a.size else "?",
                         "checksum": "md5" if a.md5 else "recorded sha256",
                         "status": status(dataset, split), "terms": dataset.terms})
    return rows
