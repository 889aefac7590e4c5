"""A minimal Hugging Face Hub on 127.0.0.1 for tests: standard library only, repos stored in a temporary folder.

It answers the endpoints that `huggingface_hub` calls to create a model repo, upload a folder and download it again:

| endpoint | used by |
|---|---|
| `POST /api/repos/create` | `create_repo` |
| `POST /api/validate-yaml` | `create_commit` when the commit has a README.md |
| `POST /api/models/{repo}/preupload/{rev}` | `create_commit`: every file is "regular" (no LFS, no Xet) |
| `POST /api/models/{repo}/commit/{rev}` | `create_commit`: the NDJSON commit |
| `GET /api/models/{repo}[/revision/{rev}]` | `model_info`, `repo_info`, `resolve_revision`, `snapshot_download` |
| `GET /api/models/{repo}/tree/{rev}[/{path}]` | `list_repo_tree`, `list_repo_files`, `snapshot_download` |
| `HEAD`, `GET /{repo}/resolve/{rev}/{path}` | `hf_hub_download` (ETag, X-Repo-Commit, Content-Length) |
| `GET /api/whoami-v2` | `whoami` |

Errors carry the `X-Error-Code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) from which
`huggingface_hub` raises its typed errors.

Code that talks to the server runs in another process, started with [`hub_env`]'s variables ([`HubWorker`] or a
plain subprocess): `huggingface_hub` reads `HF_ENDPOINT`, `HF_HUB_OFFLINE` and the cache folders when it is imported,
and copies of them live on in other modules (`HfApi` objects built at import, `from ... import` of the constants,
diffusers' own `HF_MODULES_CACHE`), so patching them in the test process, which has long imported it, would be
fragile. A fresh process reads them once, like a user's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

USER = "user"  # the account of the (dummy) token

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_REV = r"(?P<rev>[^/]+)"
_ROUTES = [
    ("GET", re.compile(rf"^/api/models/{_REPO}(?:/revision/{_REV})?$"), "model_info"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/tree/{_REV}(?:/(?P<path>.+))?$"), "tree"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/preupload/{_REV}$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/commit/{_REV}$"), "commit"),
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
    ("GET", re.compile(r"^/api/whoami-v2$"), "whoami"),
    ("GET", re.compile(rf"^/{_REPO}/resolve/{_REV}/(?P<path>.+)$"), "resolve"),
    ("HEAD", re.compile(rf"^/{_REPO}/resolve/{_REV}/(?P<path>.+)$"), "resolve"),
]


def git_hash(data: bytes) -> str:
    """The git blob id of `data`: what the Hub reports as `oid` and ETag of a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Commit:
    oid: str
    message: str
    files: dict[str, str]  # path -> git hash of the content (the blob's file name in the store)
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)  # oldest first; "main" is the last one

    def commit(self, revision: str) -> Commit:
        if revision == "main":
            return self.commits[-1]
        for commit in self.commits:
            if commit.oid == revision:
                return commit
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")


class HubServer:
    """The Hub on `http://127.0.0.1:<free port>`; use as a context manager or call `start` and `stop`.

    Args:
        root (`str` or `Path`): Folder for the stored file contents (one file per blob, named by its git hash).
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ repository content

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The files of `repo_id` at `revision`, path -> content."""
        commit = self._repo(repo_id).commit(revision)
        return {path: self._blob(oid) for path, oid in commit.files.items()}

    def _repo(self, repo_id: str) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return repo

    def _blob(self, oid: str) -> bytes:
        return (self.root / oid).read_bytes()

    def _store(self, data: bytes) -> str:
        oid = git_hash(data)
        (self.root / oid).write_bytes(data)
        return oid

    # ------------------------------------------------------------------ endpoints

    def create_repo(self, body: dict, **_) -> tuple[int, dict]:
        if body.get("type", "model") != "model":
            raise HubError(400, None, f"This test Hub only stores model repos, not {body.get('type')!r}.")
        namespace = body.get("organization") or USER
        repo_id = f"{namespace}/{body['name']}"
        with self.lock:
            if repo_id in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            repo = Repo(repo_id, private=body.get("private") or body.get("visibility") == "private")
            repo.commits.append(Commit(_oid(repo_id, "initial commit"), "initial commit", {}, _now()))
            self.repos[repo_id] = repo
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": repo_id}

    def validate_yaml(self, body: dict, **_) -> tuple[int, dict]:
        content = body.get("content", "")
        if content.startswith("---") and content.count("\n---") < 1:
            return 400, {"errors": [{"message": "the metadata block of README.md is not closed with ---"}]}
        return 200, {}

    def whoami(self, **_) -> tuple[int, dict]:
        return 200, {"type": "user", "name": USER, "fullname": USER, "orgs": [], "auth": {"type": "access_token"}}

    def model_info(self, repo: str, rev: str | None, **_) -> tuple[int, dict]:
        repo_obj = self._repo(repo)
        commit = repo_obj.commit(unquote(rev or "main"))
        siblings = [{"rfilename": path} for path in sorted(commit.files)]
        return 200, {
            "_id": repo,
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo_obj.commits[0].date,
            "private": repo_obj.private,
            "gated": False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }

    def tree(self, repo: str, rev: str, path: str | None, query: dict, **_) -> tuple[int, list]:
        commit = self._repo(repo).commit(unquote(rev))
        prefix = unquote(path).strip("/") + "/" if path else ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries: dict[str, dict] = {}
        for file_path, oid in sorted(commit.files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "oid": _oid(folder), "path": folder})
            if recursive or len(parts) == 1:
                size = (self.root / oid).stat().st_size
                entries[file_path] = {"type": "file", "oid": oid, "size": size, "path": file_path}
        if prefix and not entries:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {rev}")
        return 200, list(entries.values())

    def preupload(self, repo: str, rev: str, body: dict, **_) -> tuple[int, dict]:
        files = self._repo(repo).commit(unquote(rev)).files
        # Every file goes inline in the commit ("regular"), so no LFS or Xet storage is needed.
        return 200, {
            "files": [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": files.get(f["path"])}
                for f in body["files"]
            ],
            "commitOid": self._repo(repo).commit(unquote(rev)).oid,
        }

    def commit(self, repo: str, rev: str, raw_body: bytes, **_) -> tuple[int, dict]:
        with self.lock:
            repo_obj = self._repo(repo)
            if unquote(rev) != "main":
                raise HubError(400, None, f"This test Hub commits to 'main' only, not {unquote(rev)!r}.")
            files = dict(repo_obj.commits[-1].files)
            summary = ""
            for line in raw_body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    summary = value.get("summary", "")
                elif key == "file":
                    if value.get("encoding") != "base64":
                        raise HubError(400, None, f"unsupported encoding {value.get('encoding')!r}")
                    files[value["path"]] = self._store(base64.b64decode(value["content"]))
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: o for p, o in files.items() if not p.startswith(folder)}
                else:  # "lfsFile": never asked for, since preupload says "regular"
                    raise HubError(400, None, f"This test Hub does not store {key!r} operations.")
            oid = _oid(repo, repo_obj.commits[-1].oid, summary, json.dumps(files, sort_keys=True))
            repo_obj.commits.append(Commit(oid, summary, files, _now()))
        return 200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}

    def resolve(self, repo: str, rev: str, path: str, **_) -> tuple[int, dict, bytes]:
        commit = self._repo(repo).commit(unquote(rev))
        path = unquote(path)
        if path not in commit.files:
            raise HubError(404, "EntryNotFound", f"Entry not found: {path}")
        oid = commit.files[path]
        headers = {"ETag": f'"{oid}"', "X-Repo-Commit": commit.oid, "Content-Type": "application/octet-stream"}
        return 200, headers, self._blob(oid)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def _oid(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


def _handler_class(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # quiet: the request log is `hub.requests`
            pass

        def do_GET(self):
            self._dispatch("GET")

        def do_HEAD(self):
            self._dispatch("HEAD")

        def do_POST(self):
            self._dispatch("POST")

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _dispatch(self, method: str) -> None:
            split = urlsplit(self.path)
            raw_body = self._read_body() if method == "POST" else b""
            with hub.lock:
                hub.requests.append((method, split.path))
            for route_method, pattern, name in _ROUTES:
                match = pattern.match(split.path) if route_method == method else None
                if match is None:
                    continue
                kwargs = dict(match.groupdict(), query=parse_qs(split.query), raw_body=raw_body)
                is_json = self.headers.get("Content-Type", "").startswith("application/json")
                kwargs["body"] = json.loads(raw_body) if raw_body and is_json else {}
                try:
                    result = getattr(hub, name)(**kwargs)
                except HubError as error:
                    self._send(error.status, {"error": error.message}, error_code=error.code, head=method == "HEAD")
                    return
                if name == "resolve":
                    status, headers, data = result
                    self._send_bytes(status, headers, data, head=method == "HEAD")
                else:
                    self._send(*result)
                return
            self._send(404, {"error": f"This test Hub does not answer {method} {split.path}"}, head=method == "HEAD")

        def _send(self, status: int, payload, error_code: str | None = None, head: bool = False) -> None:
            headers = {"Content-Type": "application/json"}
            if error_code is not None:
                headers["X-Error-Code"] = error_code
                headers["X-Error-Message"] = payload["error"]
            self._send_bytes(status, headers, json.dumps(payload).encode(), head=head)

        def _send_bytes(self, status: int, headers: dict, data: bytes, head: bool = False) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

    return Handler


def hub_env(server: HubServer, home: str | Path) -> dict[str, str]:
    """Environment variables that point `huggingface_hub` (and diffusers) at `server`, with caches under `home`.

    They must be set before `huggingface_hub` is imported: it reads `HF_ENDPOINT` and the cache folders at import time.
    """
    home = Path(home)
    return {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_MODULES_CACHE": str(home / "modules"),
        "HF_TOKEN": "hf_test_token_for_the_local_hub",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


class HubWorker:
    """One Python process started with [`hub_env`]'s environment: `call(function, ...)` runs a module-level function
    there and returns its result (exceptions are re-raised here with the worker's traceback attached).

    One process serves many calls, so torch, diffusers and transformers are imported once.
    """

    def __init__(self, server: HubServer, home: str | Path, timeout: float = 300):
        self.env = {**hub_env(server, home), "OMP_NUM_THREADS": "1"}
        self.timeout = timeout
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> HubWorker:
        saved = {key: os.environ.get(key) for key in self.env}
        os.environ.update(self.env)  # a spawned process inherits the environment it is started with
        try:
            self._executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            self._executor.submit(os.getpid).result(timeout=self.timeout)  # start it now, with this environment
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        return self

    def call(self, function, *args, **kwargs):
        return self._executor.submit(function, *args, **kwargs).result(timeout=self.timeout)

    def __exit__(self, *exc_info) -> None:
        self._executor.shutdown(cancel_futures=True)
