"""Publishing weights on the Hugging Face Hub: ``colorize publish`` and ``colorize train --push-to-hub``.

An upload is one commit of four files to the model repository (created if missing): the
``.safetensors`` weights, their config as ``NAME.json``, ``config.json`` (the config and ``files``,
the weights colorize-cli loads by default) and a model card (README.md). :func:`publish` then pins
the commit, sha256 and size in the model's weights.toml table, so that :mod:`colorize_cli.engine.hub`
resolves the name to exactly that file. The token comes from ``HF_TOKEN`` or the huggingface_hub
login, never from the command line; every failure is one line that says what to do (docs/hub.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from colorize_cli._version import __version__
from colorize_cli.engine.hub import (
    LIBRARY_NAME,
    REPO_CONFIG,
    HubError,
    WeightsNotFoundError,
    _is_transport_error,
    _locate_entry,
    _options,
    endpoint,
    is_offline,
    where,
)
from colorize_cli.engine.weights import (
    WeightsEntry,
    bundled_path,
    read_weights_config,
    read_weights_toml,
    update_weights_toml,
)
from colorize_cli.errors import error_line
from colorize_cli.io.files import sha256_of
from colorize_cli.models import get_spec
from colorize_cli.models.describe import pretrained_parts


@dataclass
class Published:
    """What an upload made: the commit the Hub returned, and the file's name, sha256 and size."""

    repo_id: str
    commit: str
    filename: str
    sha256: str
    size: int

    @property
    def uri(self) -> str:
        return f"hf://{self.repo_id}@{self.commit}/{self.filename}"


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
    config = read_weights_config(weights)
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
    """One clear line for a failed upload: refused (a token without write access to ``repo_id``),
    another HTTP status, or no connection; any other error as it is."""
    from huggingface_hub import errors

    response = exc.response if isinstance(exc, errors.HfHubHTTPError) else None
    status = response.status_code if response is not None else None
    if status in (401, 403):
        return HubError(f"the Hub refused the upload to {repo_id} (HTTP {status}); use a token with "
                        "write access to it (HF_TOKEN, or hf auth login)")
    reason = error_line(exc, with_type=True)
    if status is not None:
        return HubError(f"upload to {repo_id} failed: the Hub at {endpoint()} answered HTTP {status} "
                        f"({reason}); try again later")
    if _is_transport_error(exc):
        return HubError(f"upload to {repo_id} failed: cannot reach the Hub at {endpoint()} ({reason}); "
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
    config = read_weights_config(Path(weights))
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
