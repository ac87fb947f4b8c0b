"""A local HTTP endpoint speaking the part of the Hugging Face Hub API that ``create_repo`` and
``create_commit`` use (repo creation, README metadata validation, pre-upload, ndjson commit), writing each
repository's files under a local folder, so uploads are tested with the real ``huggingface_hub`` client and
no network. Every file is answered as a "regular" (inline, base64) upload; no LFS."""

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
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[dict[str, Any]] = []  # method, path, authorization, json (when JSON)
        self.repos: dict[str, dict[str, Any]] = {}
        self.commits: list[dict[str, Any]] = []


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
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                        for f in body["files"]
                    ]
                    return self._reply(200, {"files": files})
                lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
                header = next(line["value"] for line in lines if line["key"] == "header")
                files = [line["value"] for line in lines if line["key"] == "file"]
                target = state.root / repo_id
                for f in files:
                    dest = target / f["path"]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(base64.b64decode(f["content"]))
                oid = hashlib.sha1(raw).hexdigest()
                state.commits.append({"repo_id": repo_id, "revision": parts[5], "header": header,
                                      "paths": [f["path"] for f in files], "oid": oid})  # fmt: skip
                return self._reply(
                    200,
                    {"commitUrl": f"{base}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None},
                )
            self._reply(404, {"error": f"no route for POST {path}"})

    return Handler


@contextmanager
def local_hub(root: Path) -> Iterator[tuple[str, HubState]]:
    """``(endpoint URL, state)`` of a local Hub serving from ``root`` for the duration of the block."""
    import huggingface_hub.constants as hub_constants

    state = HubState(root)
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
