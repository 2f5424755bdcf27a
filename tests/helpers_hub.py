"""A local stand-in for the Hugging Face hub's HTTP API, enough for ``huggingface_hub`` to create repositories,
commit to them and download from them (``HfApi.create_repo`` / ``create_branch`` / ``create_commit`` /
``list_repo_files``, ``snapshot_download``), on 127.0.0.1 in a background thread.

What it implements (the routes ``huggingface_hub`` 0.2x-2.x calls, with the answers it parses):

- ``POST /api/repos/create`` (409 with the repository's URL when it exists), ``POST /api/validate-yaml`` (the
  README front matter must be a YAML mapping), ``POST /api/models/R/branch/B``;
- ``POST /api/models/R/preupload/REV``: each file's upload mode, like the hub: LFS for ``*.safetensors``, ``*.onnx``,
  ``*.bin``, ``*.pkl`` and files of 10 MiB or more, regular (base64 inside the commit) for the rest;
- the LFS batch API (``POST /R.git/info/lfs/objects/batch``, "basic" transfer: one ``PUT`` per object, its sha256
  checked) and ``POST /api/models/R/commit/REV`` (NDJSON: header, file, lfsFile, deletedFile lines);
- ``GET /api/models/R[/revision/REV]`` (the commit sha and files), ``GET /api/models/R/tree/REV`` (files with their
  git blob id, and sha256 for LFS files), ``HEAD``/``GET /R/resolve/REV/PATH`` (X-Repo-Commit, ETag: git sha1 of a
  regular file, X-Linked-Etag: sha256 of an LFS file, as the hub sends them).

Revisions are branches or full commit shas; writes need ``Authorization: Bearer <token>``, and so do reads of
private repositories. Xet storage, pull requests, tags, pagination and redirects to a CDN are not implemented: the
uploading side must disable Xet (``huggingface_hub.constants.HF_HUB_DISABLE_XET``) so that LFS files go through
the LFS batch API.
"""
from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LFS_PATTERNS = ("*.safetensors", "*.onnx", "*.bin", "*.pkl")
LFS_MIN_SIZE = 10 * 2**20
GITATTRIBUTES = b"".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n".encode() for p in LFS_PATTERNS)


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode()


@dataclass
class Blob:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:  # what git stores: the file, or the LFS pointer to it
        return git_oid(lfs_pointer(self.data) if self.lfs else self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.body = status, message, code, headers or {}, body


class FakeHub:
    """The hub's state (repositories, commits, uploaded LFS objects) and a log of the requests it served."""

    def __init__(self, token: str = "hf_fake_token"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.commits: list[dict[str, Any]] = []  # each commit request: its header and what each line did
        self.validated: list[str] = []  # README contents sent to validate-yaml
        self.url = ""
        self._lock = threading.Lock()
        self._n = itertools.count()

    # -- state
    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return {p: b.data for p, b in repo.commits[self._resolve(repo, revision)].items()}

    def _resolve(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _commit(self, repo: Repo, branch: str, files: dict[str, Blob], summary: str) -> str:
        sha = hashlib.sha1(f"{next(self._n)}:{summary}:{sorted((p, b.oid) for p, b in files.items())}".encode()).hexdigest()
        repo.commits[sha] = files
        repo.branches[branch] = sha
        return sha

    # -- requests
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append((method, path))
            try:
                return self._route(method, path, headers, body)
            except HttpError as err:
                out = {"X-Error-Message": err.message, **err.headers}
                if err.code:
                    out["X-Error-Code"] = err.code
                return err.status, out, json.dumps(err.body or {"error": err.message}).encode()

    def _authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization", "") == f"Bearer {self.token}"

    def _need_auth(self, headers: dict[str, str]) -> None:
        if not self._authorized(headers):
            raise HttpError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str, headers: dict[str, str]) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized(headers)):
            raise HttpError(404 if repo is None else 401, "Repository not found", "RepoNotFound")
        return repo

    def _route(self, method: str, path: str, headers: dict[str, str], body: bytes):
        if method == "POST" and path == "/api/repos/create":
            return self._create(json.loads(body), headers)
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate(json.loads(body))
        if method == "PUT" and path.startswith("/_lfs/"):
            oid = path.rsplit("/", 1)[1]
            if hashlib.sha256(body).hexdigest() != oid:
                raise HttpError(400, "sha256 of the upload differs from its oid")
            self.lfs_objects[oid] = body
            return 200, {}, b""
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/(revision|tree|preupload|commit|branch)/(.+))?", path)
        if m:
            repo_id, op, rest = m.group(1), m.group(2), unquote(m.group(3) or "main")
            repo = self._repo(repo_id, headers)
            if method == "GET" and op in (None, "revision"):
                sha = self._resolve(repo, rest)
                return self._json({"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                                   "siblings": [{"rfilename": p} for p in sorted(repo.commits[sha])]})
            if method == "GET" and op == "tree":
                sha = self._resolve(repo, rest.split("/", 1)[0])
                return self._json([self._entry(p, b) for p, b in sorted(repo.commits[sha].items())])
            self._need_auth(headers)
            if method == "POST" and op == "preupload":
                return self._preupload(repo, rest, json.loads(body))
            if method == "POST" and op == "commit":
                return self._commit_request(repo_id, repo, rest, body)
            if method == "POST" and op == "branch":
                if rest in repo.branches:
                    raise HttpError(409, "Reference already exists")
                start = (json.loads(body or b"{}") or {}).get("startingPoint") or "main"
                sha = self._resolve(repo, start)
                repo.branches[rest] = sha
                return self._json({})
        m = re.fullmatch(r"/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path)
        if m and method == "POST":
            self._need_auth(headers)
            self._repo(m.group(1), headers)
            req = json.loads(body)
            objects = []
            for o in req["objects"]:
                entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
                if o["oid"] not in self.lfs_objects:
                    entry["actions"] = {"upload": {"href": f"{self.url}/_lfs/{o['oid']}"}}
                objects.append(entry)
            return self._json({"transfer": "basic", "objects": objects})
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if m and method in ("GET", "HEAD"):
            return self._resolve_file(m.group(1), unquote(m.group(2)), unquote(m.group(3)), headers)
        raise HttpError(404, f"the fake hub does not implement {method} {path}")

    @staticmethod
    def _json(value: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(value).encode()

    @staticmethod
    def _entry(path: str, blob: Blob) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
        if blob.lfs:
            out["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(lfs_pointer(blob.data))}
        return out

    def _create(self, req: dict[str, Any], headers: dict[str, str]):
        self._need_auth(headers)
        if req.get("type", "model") not in (None, "model"):
            raise HttpError(400, "only model repositories here")
        repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
        if repo_id in self.repos:
            raise HttpError(409, "You already created this model repo", body={"error": "You already created this model repo",
                                                                               "url": f"{self.url}/{repo_id}"})
        repo = self.repos[repo_id] = Repo(private=bool(req.get("private")) or req.get("visibility") == "private")
        self._commit(repo, "main", {".gitattributes": Blob(GITATTRIBUTES, False)}, "initial commit")
        return self._json({"url": f"{self.url}/{repo_id}", "name": repo_id})

    def _validate(self, req: dict[str, Any]):
        import yaml

        content = req["content"]
        self.validated.append(content)
        m = re.match(r"---\n(.*?)\n---\n", content, re.S)
        data = yaml.safe_load(m.group(1)) if m else {}
        if m and not isinstance(data, dict):
            return self._json({"errors": [{"message": "front matter is not a mapping"}]}, 400)
        return self._json({"warnings": [] if m else [{"message": "empty or missing yaml metadata"}]})

    def _preupload(self, repo: Repo, revision: str, req: dict[str, Any]):
        files = repo.commits[self._resolve(repo, revision)]
        out = []
        for f in req["files"]:
            lfs = any(fnmatch.fnmatch(f["path"], p) for p in LFS_PATTERNS) or f["size"] >= LFS_MIN_SIZE
            held = files.get(f["path"])
            oid = None if held is None else (held.sha256 if held.lfs else git_oid(held.data))
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return self._json({"files": out})

    def _commit_request(self, repo_id: str, repo: Repo, branch: str, body: bytes):
        if branch not in repo.branches:
            raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        files = dict(repo.commits[repo.branches[branch]])
        record: dict[str, Any] = {"repo": repo_id, "branch": branch, "lines": []}
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                record["header"] = value
                parent = value.get("parentCommit")
                if parent and parent != repo.branches[branch]:
                    raise HttpError(412, "parent commit is not the head of the branch")
            elif key == "file":
                files[value["path"]] = Blob(base64.b64decode(value["content"]), False)
                record["lines"].append(("file", value["path"]))
            elif key == "lfsFile":
                data = self.lfs_objects.get(value["oid"])
                if data is None or len(data) != value["size"]:
                    raise HttpError(422, f"LFS object {value['oid']} of {value['path']} was not uploaded")
                files[value["path"]] = Blob(data, True)
                record["lines"].append(("lfsFile", value["path"]))
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                del files[value["path"]]
                record["lines"].append(("deletedFile", value["path"]))
            else:
                raise HttpError(400, f"the fake hub does not implement commit lines of kind {key!r}")
        sha = self._commit(repo, branch, files, record.get("header", {}).get("summary", ""))
        record["commit"] = sha
        self.commits.append(record)
        return self._json({"success": True, "commitOid": sha, "commitUrl": f"{self.url}/{repo_id}/commit/{sha}"})

    def _resolve_file(self, repo_id: str, revision: str, path: str, headers: dict[str, str]):
        repo = self._repo(repo_id, headers)
        sha = self._resolve(repo, revision)
        blob = repo.commits[sha].get(path)
        if blob is None:
            raise HttpError(404, "Entry not found", "EntryNotFound", headers={"X-Repo-Commit": sha})
        out = {"X-Repo-Commit": sha, "ETag": f'"{blob.oid}"', "Content-Type": "application/octet-stream"}
        if blob.lfs:
            out |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))}
        data = blob.data
        start = re.fullmatch(r"bytes=(\d+)-", headers.get("range", ""))
        if start:
            data = data[int(start.group(1)):]
            out["Content-Range"] = f"bytes {start.group(1)}-{len(blob.data) - 1}/{len(blob.data)}"
            return 206, out, data
        return 200, out, data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out, data = self.hub.handle(self.command, urlsplit(self.path).path, headers, self._body())
        self.send_response(status)
        for k, v in out.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = _serve


class running_hub:
    """``with running_hub() as hub:`` a :class:`FakeHub` served on 127.0.0.1; ``hub.url`` is its endpoint."""

    def __init__(self, token: str = "hf_fake_token"):
        self.hub = FakeHub(token)

    def __enter__(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self.hub})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)
        self.thread.start()
        return self.hub

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
