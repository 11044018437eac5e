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
``RuntimeError`` subclass.
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
    PICKLE_SUFFIXES,
    WeightsEntry,
    bundled_path,
    read_weights_toml,
    update_weights_toml,
)
from colorize_cli.io.files import sha256_of
from colorize_cli.models import get_spec
from colorize_cli.models.describe import pretrained_parts

LIBRARY_NAME = "colorize-cli"
DEFAULT_FILE = "model.safetensors"
REPO_CONFIG = "config.json"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_URI = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)(?:@(?P<rev>[^/]+))?(?:/(?P<file>.+))?$")


class HubError(RuntimeError):
    """The Hub could not be reached, or refused a request."""


class WeightsNotFoundError(FileNotFoundError):
    """No such repository, revision or file; not published; or offline without a cached copy."""


class WeightsIntegrityError(ValueError):
    """A file's sha256 is not the one it was pinned to (the file has been deleted)."""


class UnsafeCheckpointError(ValueError):
    """A pickle checkpoint from the Hub, not trusted by the user (or an unsupported file type)."""


@dataclass(frozen=True)
class HubOptions:
    offline: bool | None = None  # None: $HF_HUB_OFFLINE
    cache_dir: Path | None = None  # the colorize-cli cache folder; None: $COLORIZE_CACHE (see hub_cache_dir)
    trust_remote_pickle: bool = False
    progress: bool = True


_OPTIONS: ContextVar[HubOptions | None] = ContextVar("colorize_hub_options", default=None)


def _current() -> HubOptions:
    return _OPTIONS.get() or HubOptions()


@contextmanager
def hub_options(*, offline: bool | None = None, cache_dir: str | Path | None = None,
                trust_remote_pickle: bool | None = None,
                progress: bool | None = None) -> Iterator[HubOptions]:
    """Settings for every :func:`resolve` inside the ``with`` block (None keeps the current one)."""
    changes = {"offline": offline, "cache_dir": Path(cache_dir) if cache_dir else None,
               "trust_remote_pickle": trust_remote_pickle, "progress": progress}
    token = _OPTIONS.set(replace(_current(), **{k: v for k, v in changes.items() if v is not None}))
    try:
        yield _current()
    finally:
        _OPTIONS.reset(token)


def _options(offline: bool | None = None, cache_dir: str | Path | None = None,
             trust_remote_pickle: bool | None = None) -> HubOptions:
    opts = _current()
    return replace(opts, offline=is_offline(offline if offline is not None else opts.offline),
                   cache_dir=hub_cache_dir(cache_dir or opts.cache_dir),
                   trust_remote_pickle=opts.trust_remote_pickle if trust_remote_pickle is None
                   else trust_remote_pickle)


def endpoint() -> str:
    """The Hub's address: ``$HF_ENDPOINT`` as it is now, else huggingface_hub's default."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``$HF_HUB_OFFLINE`` is on."""
    if offline is not None:
        return offline
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return env in ("1", "true", "yes", "on") or (not env and constants.HF_HUB_OFFLINE)


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where downloaded weights are cached (in the Hugging Face cache layout): ``CACHE/hub`` for the
    colorize-cli cache folder ``cache_dir`` (``--cache-dir``) or ``$COLORIZE_CACHE``, which also hold
    ONNX exports; else the Hugging Face cache, shared with other tools (``$HF_HUB_CACHE``,
    ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``)."""
    from huggingface_hub import constants

    root = cache_dir or os.environ.get("COLORIZE_CACHE")
    if root:
        return Path(root).expanduser() / "hub"
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
        raise ValueError(f"--model {uri}: expected hf://OWNER/REPO[@REVISION][/FILE]")
    return HubRef(m["repo"], m["rev"], m["file"])


# ----- resolution -----
def resolve(model: str, *, offline: bool | None = None, cache_dir: str | Path | None = None,
            trust_remote_pickle: bool | None = None) -> Path:
    """Path of the weights for ``model`` (a file path, a weights.toml name or an ``hf://`` reference),
    downloading them if needed.

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
    if model not in entries:
        raise KeyError(f"unknown model {model!r}; available: {', '.join(sorted(entries)) or 'none'} "
                       "(or a .safetensors path, or hf://OWNER/REPO)")
    return _locate_entry(entries[model], opts)


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
                                   "train it (colorize train) and pass --model PATH.safetensors")
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
    if _SHA256.fullmatch(blob.name):
        _verify(path, blob.name, label, delete=True)
    return path, "cached" if isinstance(cached, str) and Path(cached) == path else "downloaded"


def _default_filename(repo_id: str, revision: str, opts: HubOptions, label: str) -> str:
    """The first ``.safetensors`` named in the repo's config.json ``files``, else model.safetensors."""
    from huggingface_hub import try_to_load_from_cache

    if opts.offline or _COMMIT.fullmatch(revision):
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
            f"use a .safetensors file, or pass --trust-remote-pickle if you trust {repo_id} "
            "(it is then read with torch.load(weights_only=True))")
    raise UnsafeCheckpointError(f"{label}: {filename} is not a weights file colorize-cli reads "
                                f"(.safetensors, or {'/'.join(PICKLE_SUFFIXES)} with --trust-remote-pickle)")


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
    return hf_hub_download(repo_id, filename, revision=revision, cache_dir=str(opts.cache_dir),
                           library_name=LIBRARY_NAME, library_version=__version__,
                           local_files_only=bool(opts.offline), endpoint=endpoint(), tqdm_class=tqdm_class)


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


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0]}" if text else exc.__class__.__name__


def _explain(exc: Exception, label: str, repo_id: str, revision: str, filename: str, opts: HubOptions,
             download_cmd: str) -> Exception:
    """One clear line for what went wrong while fetching ``filename``."""
    from huggingface_hub import errors

    rev = revision[:8] if _COMMIT.fullmatch(revision) else revision
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
        return HubError(f"{label}: downloading {filename} from {repo_id} failed ({_short(exc)}); "
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


# ----- uploads -----
@dataclass
class Published:
    repo_id: str
    commit: str
    filename: str
    sha256: str
    size: int

    @property
    def uri(self) -> str:
        return f"hf://{self.repo_id}@{self.commit}/{self.filename}"


def _weights_config(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a readable .safetensors file ({_short(exc)})") from exc
    if "config" not in meta:
        raise ValueError(f"{path}: not a colorize-cli weights file (no config in its metadata); "
                         "export it with colorize train")
    return json.loads(meta["config"])


def _json_bytes(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def model_card(name: str, repo_id: str, filename: str, config: dict[str, Any], sha256: str,
               entry: WeightsEntry | None = None) -> str:
    """README.md for the Hub repository: front matter, how to use it, what it is, its numbers."""

    arch = config.get("arch", "?")
    try:
        study = get_spec(arch).study
    except (KeyError, ValueError):
        study = ""
    license_ = entry.license if entry else ""
    trained_on = (entry.trained_on if entry else "") or str(config.get("trained_on", ""))
    slug = license_ if re.fullmatch(r"[a-z0-9.-]+", license_) else "other"
    lines = ["---", f"library_name: {LIBRARY_NAME}", *([f"license: {slug}"] if license_ else []),
             "pipeline_tag: image-to-image",
             "tags:", "- image-colorization", "- colorize-cli", "- safetensors", "---", "",
             f"# {name}", "", f"A `{arch}` image colorization generator for colorize-cli"
             + (f": {study}." if study else "."), "",
             "```bash", f"colorize --model hf://{repo_id}/{filename} photo.jpg", "```", "",
             "Pin a commit with `hf://OWNER/REPO@COMMIT/FILE`; see docs/hub.md of colorize-cli.", "",
             "| file | what |", "|---|---|",
             f"| `{filename}` | fp16 weights, config in the safetensors metadata (sha256 `{sha256}`) |",
             f"| `{PurePosixPath(filename).stem}.json` | the same config, readable without torch |",
             f"| `{REPO_CONFIG}` | the config and `files`: the weights colorize-cli loads by default |", ""]
    if trained_on:
        lines += [f"Trained on: {trained_on}.", ""]
    if study:  # which pretrained networks stand in for the study's (trunk, perceptual loss)

        parts = pretrained_parts(arch, config)
        lines += [*parts, ""] if parts else []
    if license_ and slug != license_:
        lines += [f"License: {license_}.", ""]
    metrics = entry.metrics if entry else {}
    if metrics:
        lines += ["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in metrics.items()), ""]
    return "\n".join(lines)


def check_can_push(repo_id: str) -> None:
    """Fail early, with what to do, if an upload to ``repo_id`` cannot work from here."""
    from huggingface_hub import get_token

    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise ValueError(f"{repo_id}: a Hub repository is OWNER/REPO")
    if is_offline():
        raise HubError("uploading needs the network, and offline mode is on (HF_HUB_OFFLINE); unset it")
    if not get_token():
        raise HubError("no Hugging Face token: set HF_TOKEN or log in with 'hf auth login' "
                       "(colorize never takes a token on its command line)")


def upload_weights(weights: Path, repo_id: str, *, name: str, filename: str | None = None,
                   entry: WeightsEntry | None = None, private: bool = False) -> Published:
    """Commit ``weights`` (exported ``.safetensors``), its ``.json`` config, ``config.json`` and a
    model card to ``repo_id`` (created if missing) with ``HfApi``; the token comes from ``HF_TOKEN``
    or the huggingface_hub login. Returns the commit the Hub made."""
    from huggingface_hub import CommitOperationAdd, HfApi

    weights = Path(weights)
    if not weights.is_file():
        raise WeightsNotFoundError(f"{weights}: weights file not found")
    if weights.suffix != ".safetensors":
        raise ValueError(f"{weights}: only .safetensors weights are published")
    check_can_push(repo_id)
    filename = filename or weights.name
    config = _weights_config(weights)
    sha256, size = sha256_of(weights), weights.stat().st_size
    card = model_card(name, repo_id, filename, config, sha256, entry)
    ops = [CommitOperationAdd(filename, weights),
           CommitOperationAdd(str(PurePosixPath(filename).with_suffix(".json")), _json_bytes(config)),
           CommitOperationAdd(REPO_CONFIG, _json_bytes({**config, "files": [filename]})),
           CommitOperationAdd("README.md", card.encode())]
    api = HfApi(endpoint=endpoint(), library_name=LIBRARY_NAME, library_version=__version__)
    try:
        api.create_repo(repo_id, exist_ok=True, private=private or None)
        info = api.create_commit(repo_id, ops, commit_message=f"Upload {name} ({LIBRARY_NAME} {__version__})")
    except Exception as exc:
        raise _explain_upload(exc, repo_id) from exc
    return Published(repo_id, info.oid, filename, sha256, size)


def _explain_upload(exc: Exception, repo_id: str) -> Exception:
    from huggingface_hub import errors

    if isinstance(exc, errors.HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return HubError(f"the Hub refused the upload to {repo_id} (HTTP {status}); use a token with "
                            "write access to it (HF_TOKEN, or hf auth login)")
        return HubError(f"upload to {repo_id} failed: the Hub at {endpoint()} answered HTTP {status} "
                        f"({_short(exc)}); try again later")
    if _is_transport_error(exc):
        return HubError(f"upload to {repo_id} failed: cannot reach the Hub at {endpoint()} ({_short(exc)}); "
                        "check the network (or HF_ENDPOINT) and run the command again")
    return exc


def push_run(weights: Path, repo_id: str, private: bool = False) -> Published:
    """Upload the weights a training run exported (``colorize train --push-to-hub``)."""
    return upload_weights(Path(weights), repo_id, name=repo_id.split("/")[-1], private=private)


def publish(name: str, repo_id: str, weights: Path | None = None, toml_path: Path | None = None,
            private: bool = False) -> Published:
    """Upload model ``name``'s weights to ``repo_id`` and write the commit, sha256 and size into its
    weights.toml table (only that table changes).

    Args:
        weights: the file to publish; default the bundled one, else the cached one.
        toml_path: the weights.toml to read and update (default: the one in use).
    """
    entries = read_weights_toml(toml_path)
    if name not in entries:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(entries)) or 'none'}")
    entry = entries[name]
    bundled = bundled_path(entry)
    if weights is None:
        weights = bundled if bundled.is_file() else None
    if weights is None and entry.published and where(entry) == "cached":
        weights = _locate_entry(entry, _options())[0]
    if weights is None:
        raise WeightsNotFoundError(f"model {name!r}: no local weights to publish; "
                                   "pass --weights PATH.safetensors")
    config = _weights_config(Path(weights))
    if config.get("arch") != entry.arch:
        raise ValueError(f"{weights}: holds a {config.get('arch')!r} model, but weights.toml says "
                         f"{name} is {entry.arch!r}")
    if entry.bundled and bundled.is_file() and sha256_of(weights) != sha256_of(bundled):
        raise ValueError(f"{weights} differs from the bundled {bundled}; publish the bundled file, or copy "
                         "the new one over it (and its sha256 into weights.toml) first")
    result = upload_weights(Path(weights), repo_id, name=name, filename=entry.filename, entry=entry,
                            private=private)
    update_weights_toml(name, {"repo_id": result.repo_id, "revision": result.commit, "sha256": result.sha256,
                               "size": result.size, "published": True}, toml_path)
    return result
