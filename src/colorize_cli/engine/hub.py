"""Weights from the Hugging Face Hub: pinned, verified, cached, offline-safe (docs/hub.md).

Every ``--model`` goes through :func:`resolve`:

    a path to a file               -> that file
    NAME (a weights.toml entry)    -> the bundled file -> the Hugging Face cache -> hf_hub_download at
                                      the pinned commit; the file's sha256 must match weights.toml
    hf://OWNER/REPO[@REV][/FILE]   -> the cache, else a download of FILE (default: the first
                                      .safetensors that the repo's config.json names, else
                                      model.safetensors)

Pickle checkpoints (.pt/.pth/.bin/.ckpt) from the Hub are refused unless the user trusts them. The
settings (offline, cache folder, pickle trust, progress bars) come from arguments, else from
:func:`hub_options` (what the CLI sets), else from the environment: ``HF_HUB_OFFLINE``,
``COLORIZE_CACHE``, ``HF_HUB_CACHE``/``HF_HOME``, ``HF_ENDPOINT`` (read when used, not at import).
Every failure is one line that says what to do, as a ``FileNotFoundError``, ``ValueError`` or
``RuntimeError`` subclass. Uploads (``colorize publish``, ``--push-to-hub``) are
:mod:`colorize_cli.app.publish`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from colorize_cli._version import __version__
from colorize_cli.engine.weights import (
    COMMIT,
    DEFAULT_MODEL,
    PICKLE_SUFFIXES,
    SHA256,
    WeightsEntry,
    bundled_path,
    read_weights_toml,
)
from colorize_cli.errors import OptionError, error_line
from colorize_cli.io.cache import cache_options, chosen_root, current_settings, is_offline
from colorize_cli.io.files import sha256_of

LIBRARY_NAME = "colorize-cli"
DEFAULT_FILE = "model.safetensors"
REPO_CONFIG = "config.json"
_URI = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<rev>[^/]+))?(?:/(?P<file>.+))?$")


class HubError(RuntimeError):
    """The Hub could not be reached, or refused a request."""


class WeightsNotFoundError(FileNotFoundError):
    """No such repository, revision or file; not published; or offline without a cached copy."""


class WeightsIntegrityError(ValueError):
    """A file's sha256 is not the one it was pinned to (the file has been deleted)."""


class UnsafeCheckpointError(OptionError):
    """A pickle checkpoint from the Hub, not trusted by the user (or an unsupported file type)."""


@dataclass(frozen=True)
class HubOptions:
    offline: bool | None = None  # None: $HF_HUB_OFFLINE (colorize_cli.io.cache.is_offline)
    cache_dir: Path | None = None  # the colorize-cli cache folder; None: $COLORIZE_CACHE (see hub_cache_dir)
    trust_remote_pickle: bool = False
    progress: bool = False  # huggingface_hub's download bar: the command line turns it on


_OPTIONS: ContextVar[HubOptions | None] = ContextVar("colorize_hub_options", default=None)  # pickles, progress


def _current() -> HubOptions:
    """The settings in force: offline and the cache folder from :mod:`colorize_cli.io.cache` (where every
    fetcher reads them), pickle trust and progress bars from :func:`hub_options`."""
    shared = current_settings()
    return replace(_OPTIONS.get() or HubOptions(), offline=shared.offline, cache_dir=shared.cache_dir)


@contextmanager
def hub_options(*, offline: bool | None = None, cache_dir: str | Path | None = None,
                trust_remote_pickle: bool | None = None,
                progress: bool | None = None) -> Iterator[HubOptions]:
    """Settings for every :func:`resolve` inside the ``with`` block (None keeps the current one).
    ``offline`` and ``cache_dir`` (``--offline``, ``--cache-dir``) hold for every other download and
    export too: they are set in :func:`colorize_cli.io.cache.cache_options`."""
    changes = {"trust_remote_pickle": trust_remote_pickle, "progress": progress}
    token = _OPTIONS.set(replace(_current(), **{k: v for k, v in changes.items() if v is not None}))
    try:
        with cache_options(offline=offline, cache_dir=cache_dir):
            yield _current()
    finally:
        _OPTIONS.reset(token)


def _options(offline: bool | None = None, cache_dir: str | Path | None = None,
             trust_remote_pickle: bool | None = None) -> HubOptions:
    opts = _current()
    return replace(opts, offline=is_offline(offline), cache_dir=hub_cache_dir(cache_dir),
                   trust_remote_pickle=opts.trust_remote_pickle if trust_remote_pickle is None
                   else trust_remote_pickle)


def endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT`` as it is now, else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where downloaded weights are cached (in the Hugging Face cache layout): ``CACHE/hub`` for the
    colorize-cli cache folder ``cache_dir``, ``--cache-dir`` or ``$COLORIZE_CACHE``
    (:func:`colorize_cli.io.cache.chosen_root`), which also holds ONNX exports, datasets and the
    perceptual metrics' weights; else the Hugging Face cache, shared with other tools (``$HF_HUB_CACHE``,
    ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``)."""
    from huggingface_hub import constants

    root = chosen_root(cache_dir)
    if root is not None:
        return root / "hub"
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


# ----- hf:// references -----
@dataclass(frozen=True)
class HubRef:
    """``hf://OWNER/REPO[@REVISION][/FILE]``; revision None = ``main``, filename None = the default."""

    repo_id: str
    revision: str | None = None
    filename: str | None = None

    def __str__(self) -> str:
        return (f"hf://{self.repo_id}" + (f"@{self.revision}" if self.revision else "")
                + (f"/{self.filename}" if self.filename else ""))


def parse_hf_uri(uri: str) -> HubRef:
    m = _URI.match(uri)
    if not m:
        raise OptionError(f"{{model}} {uri}: expected hf://OWNER/REPO[@REVISION][/FILE]")
    return HubRef(m["repo"], m["rev"], m["file"])


# ----- resolution -----
def resolve(model: str, *, offline: bool | None = None, cache_dir: str | Path | None = None,
            trust_remote_pickle: bool | None = None) -> Path:
    """Path of the weights for ``model`` (a file path, a weights.toml name, ``default`` or an ``hf://``
    reference), downloading them if needed.

    Raises:
        KeyError: an unknown name. WeightsNotFoundError, WeightsIntegrityError, UnsafeCheckpointError,
        HubError: see their docstrings; every message is one line that says what to do.
    """
    return locate(model, offline=offline, cache_dir=cache_dir, trust_remote_pickle=trust_remote_pickle)[0]


def locate(model: str, *, offline: bool | None = None, cache_dir: str | Path | None = None,
           trust_remote_pickle: bool | None = None) -> tuple[Path, str]:
    """Like :func:`resolve`, also saying where the file came from: ``file``, ``bundled``, ``cached``
    or ``downloaded``."""
    opts = _options(offline, cache_dir, trust_remote_pickle)
    if model.startswith("hf://"):
        return _locate_ref(parse_hf_uri(model), opts)
    p = Path(model)
    if p.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES) or p.exists():
        if not p.is_file():
            raise WeightsNotFoundError(f"{p}: weights file not found")
        return p, "file"
    entries = read_weights_toml()
    model = DEFAULT_MODEL if model == "default" else model
    if model not in entries:
        raise KeyError(f"unknown model {model!r}; available: {', '.join(sorted(entries)) or 'none'} "
                       "(or a .safetensors path, or hf://OWNER/REPO)")
    return _locate_entry(entries[model], opts)


def bundled_onnx(model: str) -> Path | None:
    """The ONNX graph bundled for a weights.toml name (checked against its ``onnx_sha256``), or None
    where the entry ships none (a file path, an ``hf://`` reference, a name without one)."""
    if model.startswith("hf://") or Path(model).suffix or Path(model).exists():
        return None
    model = DEFAULT_MODEL if model == "default" else model
    entry = read_weights_toml().get(model)
    if entry is None or not entry.bundled or not entry.info.get("onnx"):
        return None
    path = bundled_path(entry).with_name(str(entry.info["onnx"]))
    if not path.is_file():
        raise WeightsNotFoundError(f"model {model!r}: bundled file {path} is missing; reinstall colorize-cli")
    _verify(path, str(entry.info.get("onnx_sha256", "")), f"model {model!r} (ONNX)", delete=False)
    return path


def _locate_entry(entry: WeightsEntry, opts: HubOptions) -> tuple[Path, str]:
    label = f"model {entry.name!r}"
    bundled = bundled_path(entry)
    if entry.bundled and bundled.is_file():
        _verify(bundled, entry.sha256, label, delete=False)
        return bundled, "bundled"
    if not entry.published:
        if entry.bundled:
            raise WeightsNotFoundError(f"{label}: bundled file {bundled} is missing; reinstall colorize-cli")
        raise WeightsNotFoundError(f"{label} has no bundled weights and is not published on the Hub yet; "
                                   "train it (colorize train) and use its PATH.safetensors as the model")
    _check_file_type(entry.filename, label, entry.repo_id, opts.trust_remote_pickle)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(entry.repo_id, entry.filename, cache_dir=str(opts.cache_dir),
                                    revision=entry.revision)
    if isinstance(cached, str):
        _verify(Path(cached), entry.sha256, label, delete=True)
        return Path(cached), "cached"
    path = _download(entry.repo_id, entry.filename, entry.revision, opts, label, hint=entry.name)
    _verify(path, entry.sha256, label, delete=True)
    return path, "downloaded"


def _locate_ref(ref: HubRef, opts: HubOptions) -> tuple[Path, str]:
    label = str(ref)
    revision = ref.revision or "main"
    filename = ref.filename or _default_filename(ref.repo_id, revision, opts, label)
    _check_file_type(filename, label, ref.repo_id, opts.trust_remote_pickle)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref.repo_id, filename, cache_dir=str(opts.cache_dir), revision=revision)
    path = _download(ref.repo_id, filename, revision, opts, label, hint=str(ref))
    if PurePosixPath(filename).suffix.lower() in PICKLE_SUFFIXES:  # its config may sit beside it
        for extra in (str(PurePosixPath(filename).with_suffix(".json")), REPO_CONFIG):
            try:
                _download(ref.repo_id, extra, revision, opts, label, hint=str(ref))
            except (WeightsNotFoundError, HubError):
                pass
    # The Hub's ETag of an LFS file is its sha256, and the cache names the blob after it.
    blob = Path(os.path.realpath(path))
    if SHA256.fullmatch(blob.name):
        _verify(path, blob.name, label, delete=True)
    return path, "cached" if isinstance(cached, str) and Path(cached) == path else "downloaded"


def _default_filename(repo_id: str, revision: str, opts: HubOptions, label: str) -> str:
    """The first ``.safetensors`` named in the repo's config.json ``files``, else model.safetensors."""
    from huggingface_hub import try_to_load_from_cache

    if opts.offline or COMMIT.fullmatch(revision):
        cached = try_to_load_from_cache(repo_id, REPO_CONFIG, cache_dir=str(opts.cache_dir),
                                        revision=revision)
        if cached is not None and not isinstance(cached, str):  # known not to exist at this commit
            return DEFAULT_FILE
    try:
        path = _fetch(repo_id, REPO_CONFIG, revision, opts)
    except _remote_entry_error():
        return DEFAULT_FILE
    except Exception as exc:
        raise _explain(exc, label, repo_id, revision, REPO_CONFIG, opts,
                       f"colorize download {label}") from exc
    try:
        files = json.loads(Path(path).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{label}: {REPO_CONFIG} of {repo_id} is not a JSON object ({exc}); "
                         "name the file: hf://OWNER/REPO/FILE") from exc
    return next((f for f in files if isinstance(f, str) and f.endswith(".safetensors")), DEFAULT_FILE)


def _check_file_type(filename: str, label: str, repo_id: str, trust_pickle: bool) -> None:
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix == ".safetensors" or (suffix in PICKLE_SUFFIXES and trust_pickle):
        return
    if suffix in PICKLE_SUFFIXES:
        raise UnsafeCheckpointError(
            f"{label}: {filename} is a pickle checkpoint, which can run code when loaded, so it is refused; "
            f"use a .safetensors file, or pass {{trust_remote_pickle}} if you trust {repo_id} "
            "(it is then read with torch.load(weights_only=True))")
    raise UnsafeCheckpointError(f"{label}: {filename} is not a weights file colorize-cli reads "
                                f"(.safetensors, or {'/'.join(PICKLE_SUFFIXES)} with {{trust_remote_pickle}})")


def _verify(path: Path, expected: str, label: str, delete: bool) -> None:
    if not expected:
        raise WeightsIntegrityError(f"{label}: weights.toml has no sha256 for {path.name}; "
                                    "fill it in (sha256sum FILE) before this file can be used")
    digest = sha256_of(path)
    if digest == expected:
        return
    if not delete:
        raise WeightsIntegrityError(f"{path}: sha256 {digest[:12]}… does not match weights.toml "
                                    f"({expected[:12]}…); reinstall colorize-cli")
    blob = Path(os.path.realpath(path))
    for p in {Path(path), blob}:
        p.unlink(missing_ok=True)
    raise WeightsIntegrityError(f"{label}: {path.name} has sha256 {digest[:12]}…, not the pinned "
                                f"{expected[:12]}…; the file was deleted. Run the command again to "
                                "download it again; if this repeats, the Hub copy is not the one "
                                "weights.toml pins")


# ----- downloads -----
def _fetch(repo_id: str, filename: str, revision: str, opts: HubOptions) -> str:
    from huggingface_hub import hf_hub_download

    tqdm_class = None
    if not opts.progress:
        from huggingface_hub.utils import tqdm as hf_tqdm

        class Silent(hf_tqdm):
            def __init__(self, *args: Any, **kwargs: Any):
                super().__init__(*args, **{**kwargs, "disable": True})

        tqdm_class = Silent
    with _library_offline(bool(opts.offline)):
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=str(opts.cache_dir),
                               library_name=LIBRARY_NAME, library_version=__version__,
                               local_files_only=bool(opts.offline), endpoint=endpoint(), tqdm_class=tqdm_class)


@contextmanager
def _library_offline(offline: bool) -> Iterator[None]:
    """huggingface_hub's own offline flag on while ``offline`` (``--offline``): the library reads it from
    the environment once, at import, and without it even a ``local_files_only`` call contacts the Hub
    (huggingface_hub 2.x fetches its agent registry when it builds the request headers)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _download(repo_id: str, filename: str, revision: str, opts: HubOptions, label: str, hint: str) -> Path:
    try:
        return Path(_fetch(repo_id, filename, revision, opts))
    except Exception as exc:
        raise _explain(exc, label, repo_id, revision, filename, opts, f"colorize download {hint}") from exc


def _remote_entry_error() -> type[Exception]:
    from huggingface_hub import errors

    return getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError)  # renamed in 1.0


def _is_transport_error(exc: BaseException) -> bool:
    """An OSError, or an error of the HTTP client huggingface_hub uses (httpx or requests)."""
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "requests")


def _explain(exc: Exception, label: str, repo_id: str, revision: str, filename: str, opts: HubOptions,
             download_cmd: str) -> Exception:
    """One clear line for what went wrong while fetching ``filename``."""
    from huggingface_hub import errors

    rev = revision[:8] if COMMIT.fullmatch(revision) else revision
    if isinstance(exc, errors.GatedRepoError):
        return WeightsNotFoundError(f"{label}: {repo_id} is gated; accept its conditions on the Hub, "
                                    "then log in (hf auth login, or set HF_TOKEN)")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return WeightsNotFoundError(f"{label}: no repository {repo_id} on {endpoint()}; check the name (a "
                                    "private repository needs a token: hf auth login, or HF_TOKEN)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return WeightsNotFoundError(f"{label}: {repo_id} has no revision {revision}; check the commit hash "
                                    "or branch")
    if isinstance(exc, _remote_entry_error()):
        return WeightsNotFoundError(f"{label}: {repo_id}@{rev} has no file {filename}; "
                                    f"name the file that holds the weights: hf://{repo_id}@{revision}/FILE")
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        if opts.offline:
            return WeightsNotFoundError(
                f"{label}: {filename} is not in the cache {opts.cache_dir} and offline mode is on "
                f"(--offline or HF_HUB_OFFLINE); run '{download_cmd}' once online, or point --cache-dir "
                "(COLORIZE_CACHE) at a cache that has it")
        return HubError(f"{label}: cannot reach the Hub at {endpoint()} and {filename} is not in the cache "
                        f"{opts.cache_dir}; check the network (or HF_ENDPOINT) and run the command again")
    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return HubError(f"{label}: the Hub refused access to {repo_id} (HTTP {status}); log in with a "
                            "token that may read it (hf auth login, or HF_TOKEN)")
        return HubError(f"{label}: the Hub at {endpoint()} answered HTTP {status} for {filename}; "
                        "try again later")
    if _is_transport_error(exc):
        return HubError(f"{label}: downloading {filename} from {repo_id} failed ({error_line(exc, with_type=True)}); "
                        "run the command again to retry")
    return exc


def where(entry: WeightsEntry, cache_dir: str | Path | None = None) -> str:
    """``bundled``, ``cached``, ``remote`` or ``not published`` (or ``missing``, a bundled file that
    is not there): where ``entry``'s file is now."""
    if entry.bundled and bundled_path(entry).is_file():
        return "bundled"
    if not entry.published:
        return "missing" if entry.bundled else "not published"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(entry.repo_id, entry.filename, cache_dir=str(hub_cache_dir(cache_dir)),
                                    revision=entry.revision)
    return "cached" if isinstance(cached, str) else "remote"

