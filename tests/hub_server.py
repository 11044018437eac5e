"""A small Hugging Face Hub on 127.0.0.1 for the tests: the part of the Hub's protocol that
``huggingface_hub`` 2.4 speaks when it downloads one file and when ``HfApi`` commits files.

Files (what ``hf_hub_download`` calls):
    HEAD/GET /{owner}/{repo}/resolve/{revision}/{path}  -> ``X-Repo-Commit``, ``ETag`` (the sha256),
        ``Content-Length``, ``Accept-Ranges``; ``Range: bytes=N-`` answers 206 with ``Content-Range``.
        Errors carry ``X-Error-Code`` (RepoNotFound, RevisionNotFound, EntryNotFound) as the Hub does.
Uploads (what ``HfApi.create_repo`` and ``HfApi.create_commit`` call):
    POST /api/repos/create                              -> {"url": ...}, 409 if it exists
    POST /api/validate-yaml                             -> {} (the model card's front matter)
    POST /api/models/{owner}/{repo}/preupload/{rev}     -> every file "regular" (so no LFS/Xet storage)
    POST /api/models/{owner}/{repo}/commit/{rev}        -> NDJSON of base64 files; {"commitOid": ...}

Not a mock of the client: the client runs its own code, over real HTTP, against this server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
API_REPO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/(?P<rev>[^/]+)$")


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit hash -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch -> commit hash


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


class HubServer:
    """The fake Hub: ``start()``, put files with ``commit()``, read ``requests``, ``stop()``.

    ``drops[path] = [n, ...]``: each of the next GETs of that file sends the next ``n`` bytes of its
    body, then drops the connection, like a network that fails mid-download.
    """

    def __init__(self, token: str | None = None):
        self.repos: dict[str, Repo] = {}
        self.requests: list[Seen] = []
        self.drops: dict[str, list[int]] = {}
        self.token = token
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None

    # ----- state -----
    def commit(self, repo_id: str, files: dict[str, bytes], message: str = "upload",
               branch: str = "main") -> str:
        """Add ``files`` on top of ``branch`` of ``repo_id`` (created if needed); returns the commit hash."""
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo())
            parent = repo.refs.get(branch, "")
            digest = hashlib.sha1(f"{repo_id}\0{parent}\0{message}".encode())
            for path in sorted(files):
                digest.update(path.encode() + b"\0" + files[path])
            oid = digest.hexdigest()
            repo.commits[oid] = {**repo.commits.get(parent, {}), **files}
            repo.refs[branch] = oid
            return oid

    def paths(self, method: str | None = None) -> list[str]:
        return [r.path for r in self.requests if method is None or r.method == method]

    # ----- lifecycle -----
    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        serve = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        serve.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection (the client's keep-alive ones too)."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            for s in list(self._sockets):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._httpd = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubServer

    def log_message(self, format, *args):  # quiet test output
        pass

    def setup(self):
        super().setup()
        with self.server_hub._lock:
            self.server_hub._sockets.add(self.connection)

    def finish(self):
        with self.server_hub._lock:
            self.server_hub._sockets.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # ----- helpers -----
    def _record(self) -> str:
        path = unquote(urlsplit(self.path).path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server_hub.requests.append(Seen(self.command, path, headers))
        return path

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json(status, {"error": message}, headers)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        token = self.server_hub.token
        if token is None or self.headers.get("Authorization") == f"Bearer {token}":
            return True
        self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        return False

    # ----- files -----
    def do_HEAD(self):
        self._resolve(self._record())

    def do_GET(self):
        self._resolve(self._record())

    def _resolve(self, path: str) -> None:
        hub = self.server_hub
        m = RESOLVE.match(path)
        if not m:
            return self._error(404, "NotFound", f"no route {path}")
        repo = hub.repos.get(m["repo"])
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        commit = repo.refs.get(m["rev"], m["rev"] if m["rev"] in repo.commits else None)
        if commit is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        data = repo.commits[commit].get(m["path"])
        if data is None:
            return self._error(404, "EntryNotFound", "Entry not found", commit)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                   "Accept-Ranges": "bytes"}
        start, status = 0, 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start, end = int(rng[1]), int(rng[2]) if rng[2] else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        drop = hub.drops[path].pop(0) if self.command == "GET" and hub.drops.get(path) else None
        if drop is None:
            return self._send(status, data, headers, "application/octet-stream")
        self.send_response(status)
        for k, v in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data[:drop])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # ----- uploads -----
    def do_POST(self):
        path = self._record()
        body = self._body()
        hub = self.server_hub
        if path == "/api/validate-yaml":
            return self._json(200, {})
        if not self._authorized():
            return None
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            if repo_id in hub.repos:
                return self._json(409, {"error": "You already created this model repo", "url": ""})
            hub.repos[repo_id] = Repo()
            host, port = self.server.server_address[:2]
            return self._json(200, {"url": f"http://{host}:{port}/{repo_id}"})
        m = API_REPO.match(path)
        if not m:
            return self._error(404, "NotFound", f"no route {path}")
        if m["repo"] not in hub.repos:
            return self._error(404, "RepoNotFound", "Repository not found")
        if m["op"] == "preupload":
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self._json(200, {"files": modes})
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        files = {}
        for item in lines:
            if item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] != "header":
                return self._error(400, "BadRequest", f"this test Hub does not support {item['key']}")
        oid = hub.commit(m["repo"], files, header["summary"], branch=unquote(m["rev"]))
        host, port = self.server.server_address[:2]
        return self._json(200, {"commitUrl": f"http://{host}:{port}/{m['repo']}/commit/{oid}",
                                "commitOid": oid, "pullRequestUrl": None})
