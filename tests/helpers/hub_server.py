"""A local HTTP endpoint speaking the part of the Hugging Face Hub API that ``create_repo`` and
``create_commit`` use (repo creation, README metadata validation, pre-upload, ndjson commit), writing each
repository's files under a local folder, so uploads are tested with the real ``huggingface_hub`` client and
no network. Files are answered as "regular" (inline, base64) uploads, except those whose names end in one of
``lfs_suffixes``: those take the Git LFS path (batch API, basic PUT transfer, verify, ``lfsFile`` commit
lines), as the Hub does for weights. Xet storage is not spoken: tests of the LFS path switch it off."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


class HubState:
    def __init__(self, root: Path, lfs_suffixes: tuple[str, ...] = ()) -> None:
        self.root = root
        self.lfs_suffixes = lfs_suffixes
        self.requests: list[dict[str, Any]] = []  # method, path, authorization, json (when JSON)
        self.repos: dict[str, dict[str, Any]] = {}
        self.commits: list[dict[str, Any]] = []
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content, as PUT by the client
        self.lfs_verified: list[str] = []


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:  # noqa: N802 - the LFS basic transfer: the object's bytes
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = self.path.split("?")[0]
            state.requests.append({"method": "PUT", "path": path, "authorization": None})
            oid = path.rsplit("/", 1)[-1]
            if not path.startswith("/lfs-upload/") or hashlib.sha256(raw).hexdigest() != oid:
                return self._reply(400, {"error": f"PUT {path}: content does not hash to the object id"})
            state.lfs_objects[oid] = raw
            self._reply(200, {})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = self.path.split("?")[0]
            record: dict[str, Any] = {
                "method": "POST",
                "path": path,
                "authorization": self.headers.get("Authorization"),
            }
            state.requests.append(record)
            base = f"http://{self.server.server_address[0]}:{self.server.server_address[1]}"
            if path.endswith(".git/info/lfs/objects/batch"):
                body = record["json"] = json.loads(raw)
                objects = []
                for obj in body["objects"]:
                    entry = {"oid": obj["oid"], "size": obj["size"]}
                    if obj["oid"] not in state.lfs_objects:  # already stored: no actions, no upload
                        entry["actions"] = {
                            "upload": {"href": f"{base}/lfs-upload/{obj['oid']}"},
                            "verify": {"href": f"{base}/lfs-verify"},
                        }
                    objects.append(entry)
                return self._reply(200, {"transfer": "basic", "objects": objects})
            if path == "/lfs-verify":
                body = record["json"] = json.loads(raw)
                stored = state.lfs_objects.get(body["oid"])
                if stored is None or len(stored) != body["size"]:
                    return self._reply(404, {"error": f"LFS object {body['oid']} not uploaded"})
                state.lfs_verified.append(body["oid"])
                return self._reply(200, {})
            if path == "/api/repos/create":
                body = record["json"] = json.loads(raw)
                repo_id = (
                    f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
                )
                if repo_id in state.repos:
                    return self._reply(
                        409, {"error": "You already created this model repo", "url": f"{base}/{repo_id}"}
                    )
                state.repos[repo_id] = {
                    "visibility": body.get("visibility"),
                    "type": body.get("type", "model"),
                }
                return self._reply(200, {"url": f"{base}/{repo_id}", "name": repo_id})
            if path == "/api/validate-yaml":
                body = record["json"] = json.loads(raw)
                text = body["content"]
                try:
                    assert text.startswith("---\n")
                    meta = yaml.safe_load(text[4 : text.index("\n---", 4)])
                    assert isinstance(meta, dict)
                except (AssertionError, ValueError, yaml.YAMLError):
                    return self._reply(400, {"errors": [{"message": "README.md metadata is not YAML"}]})
                record["metadata"] = meta
                return self._reply(200, {"errors": [], "warnings": []})
            parts = path.strip("/").split("/")  # api, models, ns, name, preupload|commit, revision
            if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
                repo_id = f"{parts[2]}/{parts[3]}"
                if repo_id not in state.repos:
                    return self._reply(404, {"error": f"Repository {repo_id} not found"})
                if parts[4] == "preupload":
                    body = record["json"] = json.loads(raw)
                    files = [
                        {
                            "path": f["path"],
                            "uploadMode": "lfs" if f["path"].endswith(state.lfs_suffixes) else "regular",
                            "shouldIgnore": False,
                            "oid": None,
                        }
                        for f in body["files"]
                    ]
                    return self._reply(200, {"files": files})
                lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                files = [line["value"] for line in lines if line["key"] == "file"]
                lfs = [line["value"] for line in lines if line["key"] == "lfsFile"]
                missing = [f["path"] for f in lfs if f["oid"] not in state.lfs_objects]
                if missing:
                    return self._reply(422, {"error": f"LFS objects of {missing} were never uploaded"})
                target = state.root / repo_id
                contents = [(f["path"], base64.b64decode(f["content"])) for f in files]
                for path_in_repo, content in [
                    *contents,
                    *((f["path"], state.lfs_objects[f["oid"]]) for f in lfs),
                ]:
                    dest = target / path_in_repo
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(content)
                oid = hashlib.sha1(raw).hexdigest()
                state.commits.append({"repo_id": repo_id, "revision": parts[5], "header": header,
                                      "paths": [f["path"] for f in files], "oid": oid,
                                      "lfs_paths": [f["path"] for f in lfs]})  # fmt: skip
                return self._reply(
                    200,
                    {"commitUrl": f"{base}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None},
                )
            self._reply(404, {"error": f"no route for POST {path}"})

    return Handler


@contextmanager
def local_hub(root: Path, lfs_suffixes: tuple[str, ...] = ()) -> Iterator[tuple[str, HubState]]:
    """``(endpoint URL, state)`` of a local Hub serving from ``root`` for the duration of the block; files
    ending in ``lfs_suffixes`` are asked for through Git LFS."""
    import huggingface_hub.constants as hub_constants

    state = HubState(root, lfs_suffixes)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    offline = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = False  # a loopback server is not the network (CI sets HF_HUB_OFFLINE=1)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        hub_constants.HF_HUB_OFFLINE = offline
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
