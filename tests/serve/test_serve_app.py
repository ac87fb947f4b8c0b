"""The service's routes over its state (audiovec.serve.app): named route functions, /v1/classify giving
the classifier module's own predictions (on the built-in model, whose label scores are spread), and the
counters the state keeps."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from audiovec.apps.classify import ZeroShotClassifier
from audiovec.cli.models import DEFAULT_MODEL
from audiovec.model import AudioTextEmbedder
from audiovec.serve import ServiceLimits, create_app
from audiovec.serve.app import ServiceState, classify, embeddings, health, models, search


def audio_item(path: Path) -> dict:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


@pytest.fixture(scope="module")
def model() -> AudioTextEmbedder:
    return AudioTextEmbedder.from_pretrained(DEFAULT_MODEL)


def test_routes_are_named_functions_over_one_state(model):
    guarded = create_app(model, limits=ServiceLimits(max_wait_ms=1))
    app = guarded.app
    assert isinstance(app.state.service, ServiceState) and app.state.batcher is app.state.service.batcher
    endpoints = {
        route.path: route.endpoint for route in app.routes if route.path.startswith(("/v1", "/health"))
    }
    assert endpoints == {
        "/health": health,
        "/v1/models": models,
        "/v1/embeddings": embeddings,
        "/v1/search": search,
        "/v1/classify": classify,
    }


def test_classify_gives_the_classifier_modules_predictions(model, fsdd_clips):
    labels = [
        "a dog barking",
        " a siren",
        "a man speaking",
        "rain falling",
    ]  # a label's own spelling comes back, spaces and all
    with TestClient(create_app(model, limits=ServiceLimits(max_wait_ms=1))) as client:
        body = {"input": [audio_item(c) for c in fsdd_clips[:3]], "labels": labels, "top_k": 3}
        response = client.post("/v1/classify", json=body)
        assert response.status_code == 200, response.text
        again = client.post("/v1/classify", json=body).json()  # label vectors from the cache
        state = client.app.app.state.service
        assert len(state.classifiers) == 1 and state.requests == 2 and state.errors == 0
        refused = client.post("/v1/classify", json={**body, "labels": ["rain", "rain "]})
        assert refused.status_code == 422 and state.errors == 1
    local = ZeroShotClassifier(model, labels).classify([str(c) for c in fsdd_clips[:3]])
    spelled = dict(zip(ZeroShotClassifier(model, labels).labels, labels))
    for got, cached, want in zip(response.json()["data"], again["data"], local):
        assert got == cached
        assert sorted(want.probs.values())[-1] - sorted(want.probs.values())[-2] > 1e-3  # a clear winner
        assert got["label"] == spelled[want.label]
        assert [t["label"] for t in got["top"]] == [spelled[name] for name, _ in want.top(3)]
        np.testing.assert_allclose([t["prob"] for t in got["top"]], [p for _, p in want.top(3)], atol=1e-5)
        np.testing.assert_allclose(
            [got["scores"][spelled[name]] for name in want.scores], list(want.scores.values()), atol=1e-5
        )
