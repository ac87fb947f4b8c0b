"""The HTTP service over a real socket: OpenAI client parity, audio parity, batching, limits, auth, paths."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from audiovec.apps.classify import ZeroShotClassifier
from audiovec.apps.index import AudioIndex
from audiovec.audio import SAMPLE_RATE, load_audio
from audiovec.cli import main
from audiovec.data.fsdd import bundled_files as fsdd_files
from audiovec.errors import ConfigError
from audiovec.model import AudioTextEmbedder
from audiovec.serve import ServiceLimits, check_bind, create_app, uvicorn_config
from helpers.servers import running

KEY = "test-key-5f2c"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = ServiceLimits(
    max_body_bytes=400_000, max_audio_seconds=4.0, body_read_timeout_s=0.5, max_wait_ms=100, max_batch=64
)


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def db(model, fsdd_clips, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve-db")
    AudioIndex(folder).add(model, fsdd_clips[:6])
    return folder


@pytest.fixture(scope="module")
def url(model, db) -> Iterator[str]:
    with running(create_app(model, db=db, api_key=KEY, limits=LIMITS, model_name="tiny")) as base:
        yield base


def b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def audio_item(path: Path) -> dict:
    return {"type": "input_audio", "input_audio": {"data": b64(path), "format": "wav"}}


def post(url: str, path: str, **kw) -> httpx.Response:
    kw.setdefault("headers", AUTH)
    return httpx.post(url + path, timeout=60, **kw)


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def test_openai_client_returns_encode_text_vectors(url, model):
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    texts = ["a dog barking in the rain", "hello", "a man saying seven"]
    expected = model.encode_text(texts)
    as_floats = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    got = np.array([d.embedding for d in sorted(as_floats.data, key=lambda d: d.index)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    as_base64 = client.embeddings.create(model="tiny", input=texts, encoding_format="base64")
    raw = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in as_base64.data]
    np.testing.assert_allclose(np.array(raw), expected, atol=1e-5)
    default = client.embeddings.create(model="tiny", input="hello")  # the client's own default format
    np.testing.assert_allclose(default.data[0].embedding, model.encode_text("hello"), atol=1e-5)
    assert default.usage.prompt_tokens > 0


def test_audio_over_http_equals_library(url, model, fsdd_clips, tmp_path):
    joined = tmp_path / "joined.flac"  # several windows' worth is not needed; FLAC exercises another codec
    sf.write(joined, np.concatenate([load_audio(f) for f in fsdd_clips[:5]]), SAMPLE_RATE)
    sources = [fsdd_clips[0], fsdd_clips[3], joined]
    inputs = [audio_item(sources[0]), f"data:audio/wav;base64,{b64(sources[1])}", audio_item(joined)]
    response = post(url, "/v1/embeddings", json={"input": inputs, "model": "tiny"})
    assert response.status_code == 200, response.text
    got = np.array([d["embedding"] for d in response.json()["data"]])
    np.testing.assert_allclose(got, model.encode_audio([str(s) for s in sources]), atol=1e-5)
    mixed = post(url, "/v1/embeddings", json={"input": ["hello", audio_item(sources[0])]}).json()["data"]
    np.testing.assert_allclose(mixed[0]["embedding"], model.encode_text("hello"), atol=1e-5)
    np.testing.assert_allclose(mixed[1]["embedding"], got[0], atol=1e-5)


def test_concurrent_requests_share_forward_passes(url, model):
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    texts = [f"a man saying {w}" for w in words] * 2
    before = health(url)["forward_passes"]
    barrier = threading.Barrier(len(texts))
    results: dict[int, list[float]] = {}

    def client(i: int) -> None:
        barrier.wait(timeout=30)
        response = post(url, "/v1/embeddings", json={"input": texts[i]})
        results[i] = response.json()["data"][0]["embedding"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    passes = health(url)["forward_passes"] - before
    assert len(results) == len(texts)
    assert 1 <= passes < len(texts)
    np.testing.assert_allclose(
        np.array([results[i] for i in range(len(texts))]), model.encode_text(texts), atol=1e-5
    )


class _ThreadRecordingTokenizer:
    """Wraps a tokenizer and records which thread called it."""

    def __init__(self, inner) -> None:
        self.inner, self.threads = inner, set()

    def __call__(self, *args, **kwargs):
        self.threads.add(threading.current_thread().name)
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_tokenizer_is_only_used_by_the_batcher_thread(tiny_model_dir):
    """A fast tokenizer's padding state is shared: a second thread calling it made padded batches ragged (500s
    under load). Every call, usage counting included, must come from the one worker thread."""
    model = AudioTextEmbedder.from_pretrained(tiny_model_dir)
    model.tokenizer = _ThreadRecordingTokenizer(model.tokenizer)
    texts = ["a dog", "a man saying seven in a large hall", "rain"]
    bodies = [{"input": texts[: 1 + i % 3]} for i in range(24)]
    with running(create_app(model, api_key=KEY)) as base, concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda b: post(base, "/v1/embeddings", json=b), bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert model.tokenizer.threads == {"audiovec-batcher"}
    expected = sum(len(model.tokenizer.inner(t)["input_ids"]) for t in texts)
    assert responses[2].json()["usage"]["prompt_tokens"] == expected


def test_api_key_required_everywhere_but_health(url):
    assert httpx.get(url + "/health").status_code == 200
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": KEY},
        {"Authorization": f"Basic {KEY}"},
    ):
        response = post(url, "/v1/embeddings", json={"input": "hi"}, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    assert httpx.get(url + "/v1/models").status_code == 401
    assert httpx.get(url + "/v1/models", headers=AUTH).json()["data"][0]["id"] == "tiny"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 422),
        (b'{"inputs": "typo"}', 422),
        (b'{"input": []}', 400),
        (b'{"input": [1, 2, 3]}', 400),
        (b'{"input": "   "}', 400),
        (b'{"input": "hi", "encoding_format": "int8"}', 422),
        (b'{"input": "hi", "dimensions": 100000}', 400),
        (b'{"input": "hi", "dimensions": 0}', 400),
        (b'{"input": "hi", "dimensions": "8"}', 400),
        (b'{"input": [{"type": "input_audio", "input_audio": {"data": "%%%not base64%%%"}}]}', 400),
        (b'{"input": [{"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlvIGF0IGFsbA=="}}]}', 400),
        (b'{"input": [{"type": "input_audio", "input_audio": {"data": 42}}]}', 422),
        (b'{"input": ["data:audio/wav;base64,!!!"]}', 400),
        (b'{"input": [{"type": "image", "image": "x"}]}', 422),
    ],
)
def test_malformed_requests_get_json_4xx(url, body, status):
    response = post(url, "/v1/embeddings", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_size_and_duration_limits(url, tmp_path):
    big = {"input": "x" * (LIMITS.max_body_bytes + 10)}
    assert post(url, "/v1/embeddings", json=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        yield b'{"input": "'
        for _ in range(LIMITS.max_body_bytes // 10_000 + 2):
            yield b"y" * 10_000
        yield b'"}'

    assert post(url, "/v1/embeddings", content=chunks()).status_code == 413
    long = tmp_path / "long.wav"  # 6 s of real speech at 8 kHz: small body, over the 4 s limit
    sf.write(long, np.concatenate([sf.read(f)[0] for f in fsdd_files(16)])[: 6 * 8000], 8000)
    response = post(url, "/v1/embeddings", json={"input": [audio_item(long)]})
    assert response.status_code == 413 and response.json()["error"]["code"] == "audio_too_long"


def test_slow_client_is_timed_out(url):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"input": '
        )
        reply = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while b"\r\n\r\n" not in reply:
                part = conn.recv(4096)
                if not part:
                    break
                reply += part
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


HEAD_LIMITS = ServiceLimits(header_timeout_s=0.5)
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
SLOW_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 400  # never finished


@pytest.fixture(scope="module")
def head_url(model) -> Iterator[str]:
    """A server with a 0.5 s request-head timeout and a 2 s keep-alive."""
    with running(create_app(model, limits=HEAD_LIMITS), limits=HEAD_LIMITS, timeout_keep_alive=2) as base:
        yield base


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def dribble(conn: socket.socket, data: bytes, gap: float = 0.05, limit: float = 15.0) -> tuple[float, bytes]:
    """Send ``data`` a byte every ``gap`` s (then nothing) until the server closes the connection.

    Returns the seconds from the first byte to the close, and what the server sent."""
    start, received = time.monotonic(), b""
    pending = list(data)
    while time.monotonic() - start < limit:
        if pending:
            try:
                conn.sendall(bytes([pending.pop(0)]))
            except OSError:
                break
        if select.select([conn], [], [], gap)[0]:
            try:
                part = conn.recv(65536)
            except OSError:
                break
            if not part:
                break
            received += part
    else:
        pytest.fail(f"connection still open after {limit} s; received {received[:200]!r}")
    return time.monotonic() - start, received


def read_response(conn: socket.socket) -> bytes:
    """One whole response (head + ``Content-Length`` body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        part = conn.recv(65536)
        assert part, f"closed mid-response: {data!r}"
        data += part
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def assert_head_timeout(reply: bytes) -> None:
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408 "), reply[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_slow_request_head_is_cut_off_while_other_clients_are_served(head_url):
    """Slowloris: a head sent a byte every 50 ms gets a 408 and a closed connection after ~0.5 s; a
    connection that sends nothing is closed too; meanwhile clients on other connections are served."""
    results: dict[str, tuple[float, bytes]] = {}

    def attack(name: str, data: bytes) -> None:
        with connect(head_url) as conn:
            results[name] = dribble(conn, data)

    threads = [threading.Thread(target=attack, args=a) for a in (("slow", SLOW_HEAD), ("silent", b""))]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=head_url, timeout=10) as client:
        while any(t.is_alive() for t in threads):
            assert client.get("/health").status_code == 200  # one kept-alive connection, many requests
            time.sleep(0.05)
        embedded = client.post("/v1/embeddings", json={"input": "a dog barking"})
        assert embedded.status_code == 200
    for thread in threads:
        thread.join(timeout=30)
    elapsed, reply = results["slow"]
    assert 0.45 <= elapsed < 3.0, elapsed
    assert_head_timeout(reply)
    elapsed, reply = results["silent"]
    assert 0.45 <= elapsed < 3.0 and reply == b"", (elapsed, reply[:200])


def test_head_timeout_spares_bodies_and_kept_alive_idle_connections(head_url):
    """The deadline ends with the head: a body dribbled over 1.5 s is served. Between requests a kept-alive
    connection idles under keep-alive (2 s), not the 0.5 s head deadline, which restarts with the next
    request's first byte."""
    body = json.dumps({"input": "a dog barking"}).encode()
    with connect(head_url) as conn:
        conn.sendall(
            f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(0, len(body), len(body) // 5 + 1):
            time.sleep(0.3)
            conn.sendall(body[i : i + len(body) // 5 + 1])
        assert read_response(conn).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.2)  # idle: past the head timeout, within keep-alive
        conn.sendall(HEALTH)
        assert read_response(conn).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.3)
        elapsed, reply = dribble(conn, SLOW_HEAD)  # the next request's head, too slow
        assert 0.45 <= elapsed < 3.0, elapsed
        assert_head_timeout(reply)
    with connect(head_url) as conn:
        conn.sendall(HEALTH)
        assert read_response(conn).startswith(b"HTTP/1.1 200 ")
        elapsed, reply = dribble(conn, b"")  # idle after a complete request: keep-alive closes it
        assert 1.5 <= elapsed < 5.0 and reply == b"", (elapsed, reply[:200])


def test_header_timeout_flag_and_limit(tiny_model_dir, monkeypatch):
    import audiovec.serve

    seen = {}
    monkeypatch.setattr(audiovec.serve, "serve", lambda *a, **kw: seen.update(kw))
    assert main(["serve", str(tiny_model_dir), "--header-timeout", "3"]) == 0
    assert seen["limits"].header_timeout_s == 3.0
    assert ServiceLimits().header_timeout_s == 10.0
    assert uvicorn_config(None, limits=ServiceLimits(header_timeout_s=3)).http.header_timeout_s == 3.0
    with pytest.raises(ConfigError, match="header timeout"):
        uvicorn_config(None, limits=ServiceLimits(header_timeout_s=0))


def test_no_request_makes_the_server_open_a_path(url, fsdd_clips, tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(Path(fsdd_clips[0]).read_bytes())
    opened: list[str] = []
    watching = threading.Event()

    def hook(event: str, args: tuple) -> None:
        if watching.is_set() and event == "open" and str(tmp_path) in str(args[0]):
            opened.append(str(args[0]))

    sys.addaudithook(hook)  # the server runs in this process: any open() of the file would be seen
    attempts = [
        str(secret),
        f"file://{secret}",
        f"http://127.0.0.1/{secret.name}",
        "../" * 8 + str(secret).lstrip("/"),
        {"type": "input_audio", "input_audio": {"data": str(secret), "format": "wav"}},
        {"type": "input_audio", "input_audio": {"data": f"file://{secret}"}},
        {"type": "input_audio", "input_audio": {"path": str(secret)}},
        {"type": "input_audio", "input_audio": {"url": f"file://{secret}"}},
        {"type": "audio_url", "audio_url": {"url": f"file://{secret}"}},
        {"type": "input_audio", "path": str(secret)},
        f"data:audio/wav;base64,{secret}",
    ]
    watching.set()
    try:
        statuses = []
        for item in attempts:
            response = post(url, "/v1/embeddings", json={"input": [item]})
            statuses.append(response.status_code)
        search = post(
            url, "/v1/search", json={"query": {"type": "input_audio", "input_audio": {"path": str(secret)}}}
        )
    finally:
        watching.clear()
    assert opened == []
    assert statuses[:4] == [200] * 4  # plain strings are text: embedded as words, never opened
    assert all(400 <= s < 500 for s in statuses[4:]), statuses
    assert search.status_code == 400


def test_search_and_classify_endpoints_match_the_library(url, model, db, fsdd_clips):
    response = post(url, "/v1/search", json={"query": "a woman saying two", "k": 3})
    assert response.status_code == 200, response.text
    expected = AudioIndex.open(db).search_text(model, "a woman saying two", k=3)
    got = response.json()["data"]
    assert [h["score"] for h in got] == pytest.approx([h.score for h in expected], abs=1e-4)
    by_audio = post(url, "/v1/search", json={"query": audio_item(fsdd_clips[2]), "k": 1}).json()["data"][0]
    assert by_audio["score"] == pytest.approx(1.0, abs=1e-4) and {"path", "start", "end"} <= set(by_audio)
    assert post(url, "/v1/search", json={"query": "x", "k": 0}).status_code == 422

    labels = ["dog", "siren", "speech"]
    response = post(
        url, "/v1/classify", json={"input": [audio_item(fsdd_clips[1])], "labels": labels, "top_k": 2}
    )
    assert response.status_code == 200, response.text
    result = response.json()["data"][0]
    local = ZeroShotClassifier(model, labels).classify([str(fsdd_clips[1])])[0]
    assert result["label"] == local.label and len(result["top"]) == 2
    assert result["scores"] == pytest.approx(local.scores, abs=1e-4)
    assert post(url, "/v1/classify", json={"input": ["hello"], "labels": labels}).status_code == 422


def test_search_without_index_is_a_json_404(model):
    with running(create_app(model, limits=LIMITS)) as base:
        response = httpx.post(base + "/v1/search", json={"query": "x"}, timeout=30)
        assert response.status_code == 404 and response.json()["error"]["code"] == "no_index"
        assert httpx.post(base + "/v1/embeddings", json={"input": "x"}, timeout=30).status_code == 200


def test_binding_rules(tiny_model_dir, monkeypatch):
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "key")
    check_bind("0.0.0.0", None, insecure_no_auth=True)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        with pytest.raises(ConfigError, match="API key"):
            check_bind(host, None)
    monkeypatch.delenv("AUDIOVEC_API_KEY", raising=False)
    assert main(["serve", str(tiny_model_dir), "--host", "0.0.0.0", "--port", "1"]) == 1


def test_min_seconds_model_serves_encode_audio_and_index_vectors(fsdd_clips, tmp_path):
    """With silence padding of short clips (min_seconds), the batcher pools only the clip's own tokens, as
    encode_audio and the index do: the same vector from all three, and an audio search scores 1.0."""
    from audiovec.tiny import tiny_embedder

    model = tiny_embedder(min_seconds=3.0)
    short = fsdd_clips[2]
    assert sf.info(short).duration < 3.0
    expected = model.encode_audio(str(short))
    db = tmp_path / "db"
    AudioIndex(db).add(model, [short])
    (row,) = AudioIndex(db).rows(["vector"]).to_pylist()
    np.testing.assert_allclose(row["vector"], expected, atol=1e-5)
    with running(create_app(model, db=db, limits=LIMITS)) as base:
        response = httpx.post(base + "/v1/embeddings", json={"input": [audio_item(short)]}, timeout=60)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["data"][0]["embedding"], expected, atol=1e-5)
        found = httpx.post(base + "/v1/search", json={"query": audio_item(short), "k": 1}, timeout=60)
        assert found.status_code == 200, found.text
        hit = found.json()["data"][0]
        assert hit["path"] == str(short) and hit["score"] == pytest.approx(1.0, abs=1e-5)
