"""Model weights on disk: exported fp16 safetensors with their config, and ``weights.toml``.

An exported model is ``NAME.safetensors`` (fp16 tensors; the safetensors header metadata holds
``arch`` and the JSON ``options`` the builder needs) plus ``NAME.json`` beside it with the same
config, readable without torch. A model *name* is resolved through ``weights.toml`` by
``colorize_cli.engine.hub``: a local path, the file bundled inside the package, the Hugging Face cache, or a
download pinned to a Hub commit and checked against the sha256 written here (docs/hub.md).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib
from safetensors import safe_open

from colorize_cli.errors import error_line
from colorize_cli.io.atomic import write_text

DEFAULT_MODEL = "efflite-unet-gan"
HINT_MODEL = "efflite-unet-hints"  # what --hint, --hints and --reference use without --model
WEIGHTS_TOML_ENV = "COLORIZE_WEIGHTS_TOML"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
COMMIT = re.compile(r"[0-9a-f]{40}")  # a git commit (a pinned Hub revision)
SHA256 = re.compile(r"[0-9a-f]{64}")
_CORE_KEYS = ("filename", "sha256", "arch", "bundled")


@dataclass
class WeightsEntry:
    """One ``[models.NAME]`` table of weights.toml; keys other than the core four are in ``info``."""

    name: str
    filename: str
    sha256: str
    arch: str
    bundled: bool
    info: dict[str, Any] = field(default_factory=dict)

    repo_id = property(lambda self: str(self.info.get("repo_id", "")))
    revision = property(lambda self: str(self.info.get("revision", "")),
                        doc='The Hub commit hash the file was published at; "" while unpublished.')
    license = property(lambda self: str(self.info.get("license", "")))
    trained_on = property(lambda self: str(self.info.get("trained_on", "")))

    @property
    def published(self) -> bool:
        return bool(self.info.get("published", bool(self.revision)))

    @property
    def size(self) -> int:
        return int(self.info.get("size", 0) or 0)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.info.get("metrics", {}))


def _package_file(name: str) -> Path:
    return Path(str(resources.files("colorize_cli") / name))


def weights_toml_path() -> Path:
    """The weights.toml in use: ``$COLORIZE_WEIGHTS_TOML`` if set, else the installed one (a wheel
    carries a copy inside the package; a source checkout or editable install reads the one at the
    repository root)."""
    if os.environ.get(WEIGHTS_TOML_ENV):
        return Path(os.environ[WEIGHTS_TOML_ENV])
    inside = _package_file("weights.toml")
    return inside if inside.exists() else Path(__file__).resolve().parents[3] / "weights.toml"


def _check_entry(where: str, entry: WeightsEntry) -> None:
    if entry.published:
        if not entry.repo_id or not COMMIT.fullmatch(entry.revision) or not SHA256.fullmatch(entry.sha256):
            raise ValueError(f"{where}: a published model needs repo_id, a 40-hex commit hash as revision "
                             "(never a branch) and the file's sha256; run 'colorize publish' to write them")
    elif entry.revision:
        raise ValueError(f"{where}: revision {entry.revision!r} is set but published = false; "
                         'set revision = "" until the weights are published')


def read_weights_toml(path: Path | None = None) -> dict[str, WeightsEntry]:
    """Entries of weights.toml (``path``, default :func:`weights_toml_path`), checked for consistency."""
    path = Path(path) if path else weights_toml_path()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the weights list ({exc})") from exc
    entries = {}
    for name, t in data.get("models", {}).items():
        where = f"{path}: [models.{name}]"
        missing = [k for k in ("filename", "arch") if not t.get(k)]
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        info = {k: v for k, v in t.items() if k not in _CORE_KEYS}
        bundled = bool(t.get("bundled", False))
        entry = WeightsEntry(name, t["filename"], t.get("sha256", ""), t["arch"], bundled, info)
        _check_entry(where, entry)
        entries[name] = entry
    return entries


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string for the values we write
    raise TypeError(f"cannot write {value!r} to weights.toml")


def _split_comment(line: str) -> tuple[str, str]:
    """``key = value  # note`` -> ("key = value", "  # note"), for one-line scalar values."""
    body = line.rstrip("\r\n")
    for i, ch in enumerate(body):
        if ch == "#":
            try:
                tomllib.loads(body[:i])
            except tomllib.TOMLDecodeError:
                continue
            return body[:i].rstrip(), body[len(body[:i].rstrip()):]
    return body, ""


def update_weights_toml(name: str, values: dict[str, Any], path: Path | None = None) -> Path:
    """Set ``values`` in the ``[models.NAME]`` table of weights.toml, leaving every other line alone.

    Keys already in the table are rewritten in place (keeping their trailing comments); new keys go
    after the table's last key; a missing table is appended. The result is parsed back and checked
    before it atomically replaces the file. Returns the path written.
    """
    path = Path(path) if path else weights_toml_path()
    text = path.read_text()
    before = tomllib.loads(text)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    header = re.compile(r'^\s*\[\s*models\s*\.\s*("?)' + re.escape(name) + r'\1\s*\]\s*(#.*)?$')
    start = next((i for i, ln in enumerate(lines) if header.match(ln)), None)
    if start is None:
        lines += ["\n", f"[models.{name}]\n"] + [f"{k} = {_toml_value(v)}\n" for k, v in values.items()]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        last_key = start
        todo = dict(values)
        for i in range(start + 1, end):
            m = re.match(r'^(\s*)"?([A-Za-z0-9_-]+)"?\s*=', lines[i])
            if not m:
                continue
            last_key = i
            if m[2] in todo:
                body, comment = _split_comment(lines[i])
                try:
                    tomllib.loads(body)
                except tomllib.TOMLDecodeError as exc:
                    raise ValueError(f"{path}:{i + 1}: {m[2]} is not a one-line value; "
                                     "edit it by hand") from exc
                lines[i] = f"{m[1]}{m[2]} = {_toml_value(todo.pop(m[2]))}{comment}\n"
        new = [f"{k} = {_toml_value(v)}\n" for k, v in todo.items()]
        lines[last_key + 1:last_key + 1] = new
    result = "".join(lines)
    after = tomllib.loads(result)
    expected = {**before, "models": {**before.get("models", {}),
                                     name: {**before.get("models", {}).get(name, {}), **values}}}
    if after != expected:
        raise RuntimeError(f"{path}: rewriting [models.{name}] would change other values; edit it by hand")
    write_text(path, result)
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def read_weights_config(path: Path) -> dict[str, Any]:
    """The config of exported ``.safetensors`` weights (the JSON in their header metadata), read
    without their tensors; a one-line ``ValueError`` for a file that is not such weights."""
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types
        reason = error_line(exc, with_type=True)
        raise ValueError(f"{path}: not a readable .safetensors file ({reason})") from exc
    if "config" not in meta:
        raise ValueError(f"{path}: not a colorize-cli weights file (no config in its metadata); "
                         "export it with colorize train")
    return json.loads(meta["config"])


def bundled_path(entry: WeightsEntry) -> Path:
    """Where the package keeps ``entry``'s file when it is bundled."""
    return _package_file(f"weights/{entry.filename}")

