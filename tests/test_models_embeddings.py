"""End to end: GET /v1/models, POST /v1/embeddings and unknown routes, through real processes
(Redis, a logger, proxies, the scripted fake upstream) and the official openai and anthropic SDKs.

MODEL_MAP has two plain names (listed as aliases) and two globs (never listed). Without
UPSTREAM_API_KEY each client key has its own cached list, so each test uses its own key and
counts the upstream's GET /v1/models calls for that key alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fake_upstream import EMBEDDING_DIMENSIONS, EMBEDDING_USAGE, EMBEDDING_VECTOR, MODELS
from tests.processes import ADMIN_TOKEN, free_port
from tests.system import System, running_system

MODEL_MAP = "claude-sonnet-4-5=fake-model,claude-haiku-*=fake-model,gpt-4o=fake-model,*=fake-model"
ALIASES = ["claude-sonnet-4-5", "gpt-4o"]
UPSTREAM_IDS = [model["id"] for model in MODELS]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("e2e-models-embeddings")
    with running_system(redis_url, fake_upstream_url, root, 1, MODEL_MAP=MODEL_MAP) as system:
        yield system


def key_for(system: System, name: str, url: str | None = None) -> str:
    key = f"bsk-{name}-0000000001"
    assert system.upsert(key, name, url=url).status_code == 200
    return key


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def model_list_calls(fake_upstream, key: str) -> int:
    """GET /v1/models calls the fake upstream received with `key`."""
    return sum(
        1
        for entry in fake_upstream.received()
        if entry["path"] == "/v1/models" and entry["headers"]["authorization"] == f"Bearer {key}"
    )


def metric(url: str, name: str, **labels: str) -> float:
    """A sample of /metrics, 0 when absent."""
    wanted = ",".join(f'{label}="{value}"' for label, value in sorted(labels.items()))
    for line in httpx.get(url + "/metrics").text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def no_new_events(system: System, before: int) -> None:
    time.sleep(0.5)
    assert len(system.events()) == before


# GET /v1/models


def test_openai_sdk_lists_aliases_then_upstream_models_from_one_upstream_call(
    system: System, fake_upstream
):
    key = key_for(system, "lister")
    before = len(system.events())
    client = sdk(system.url, key)
    for _ in range(3):
        models = client.models.list().data
        assert [model.id for model in models] == ALIASES + UPSTREAM_IDS
    by_id = {model.id: model for model in models}
    assert by_id["gpt-4o"].owned_by == "b23-llm-proxy" and by_id["gpt-4o"].object == "model"
    assert by_id["fake-model"].owned_by == "fake" and by_id["fake-model"].created == 1700000000
    plain = httpx.get(system.url + "/models", headers={"authorization": f"Bearer {key}"})
    assert plain.status_code == 200 and plain.json()["object"] == "list"
    assert "models" not in plain.json()
    assert model_list_calls(fake_upstream, key) == 1, "later lists must come from the cache"
    assert metric(system.url, "b23_model_list_requests_total", shape="openai", source="upstream")
    no_new_events(system, before)


def test_lists_are_cached_per_upstream_credential(system: System, fake_upstream):
    """Client keys forwarded upstream: one list per key (an upstream may list one org's own
    models). With UPSTREAM_API_KEY: one list for every client."""
    first, second = key_for(system, "cache-a"), key_for(system, "cache-b")
    for key in (first, second, first, second):
        assert sdk(system.url, key).models.list().data
    assert model_list_calls(fake_upstream, first) == model_list_calls(fake_upstream, second) == 1
    shared = system.start_proxy(UPSTREAM_API_KEY="sk-upstream-models-0001")
    for key in (first, second, first):
        assert sdk(shared, key).models.list().data
    assert model_list_calls(fake_upstream, "sk-upstream-models-0001") == 1


def test_anthropic_sdk_lists_models_in_anthropic_shape_page_by_page(system: System):
    key = key_for(system, "claude-lister")
    client = anthropic.Anthropic(base_url=system.url, api_key=key, max_retries=0)
    models = list(client.models.list(limit=3))  # the SDK follows `after_id` to page 2
    assert [model.id for model in models] == ALIASES + UPSTREAM_IDS
    assert all(model.type == "model" and model.display_name == model.id for model in models)
    created = {model.id: model.created_at.timestamp() for model in models}
    assert created["fake-model"] == 1700000000 and created["claude-sonnet-4-5"] == 0
    page = client.models.list(limit=3)
    assert page.has_more is True and page.first_id == "claude-sonnet-4-5"
    assert page.last_id == UPSTREAM_IDS[0]


def test_claude_code_gateway_discovery_sees_the_claude_aliases(system: System):
    """The request Claude Code 2.1.332 sends with CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1
    (it keeps the ids containing `claude`)."""
    key = key_for(system, "discovery")
    headers = {"x-api-key": key, "user-agent": "claude-code/2.1.332", **ANTHROPIC_HEADERS}
    reply = httpx.get(system.url + "/v1/models?limit=1000", headers=headers)
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"data", "has_more", "first_id", "last_id"}
    assert [m["id"] for m in body["data"] if "claude" in m["id"]] == ["claude-sonnet-4-5"]
    assert body["has_more"] is False and body["last_id"] == UPSTREAM_IDS[-1]
    assert set(body["data"][0]) == {"type", "id", "display_name", "created_at"}
    assert body["data"][0]["created_at"] == "1970-01-01T00:00:00Z"
    bad = httpx.get(system.url + "/v1/models?limit=5000", headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert metric(system.url, "b23_model_list_requests_total", shape="anthropic", source="upstream")


def test_client_version_query_adds_the_codex_manifest_key(system: System):
    key = key_for(system, "codex-lister")
    reply = httpx.get(
        system.url + "/v1/models",
        params={"client_version": "0.130.0"},
        headers={"authorization": f"Bearer {key}"},
    )
    assert reply.status_code == 200 and reply.json()["models"] == []
    assert [model["id"] for model in reply.json()["data"]] == ALIASES + UPSTREAM_IDS


def test_model_list_needs_a_client_key_in_the_callers_shape(system: System):
    before = len(system.events())
    for headers in ({}, {"authorization": "Bearer bsk-nobody-00000001"}):
        reply = httpx.get(system.url + "/v1/models", headers=headers)
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
        reply = httpx.get(system.url + "/v1/models", headers={**headers, **ANTHROPIC_HEADERS})
        assert reply.status_code == 401
        assert reply.json()["type"] == "error"
        assert reply.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        sdk(system.url, "bsk-nobody-00000001").models.list()
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=system.url, api_key="bsk-nobody-00000001", max_retries=0
        ).models.list()
    no_new_events(system, before)


def test_upstream_that_never_answers_the_list_gives_the_aliases_alone(
    system: System, fake_upstream
):
    dead = system.start_proxy(UPSTREAM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    key = key_for(system, "dead-lister", url=dead)
    assert [model.id for model in sdk(dead, key).models.list().data] == ALIASES
    client = anthropic.Anthropic(base_url=dead, api_key=key, max_retries=0)
    assert [model.id for model in client.models.list()] == ALIASES
    assert "model list from the upstream failed (upstream unreachable)" in system.logs()
    assert metric(dead, "b23_model_list_requests_total", shape="openai", source="aliases") == 1

    failing = key_for(system, "failing-lister")
    fake_upstream.script({"status": 500, "json": {"error": {"message": "boom"}}})
    for _ in range(2):  # the failure is held for the cache's lifetime: no retry per request
        assert [model.id for model in sdk(system.url, failing).models.list().data] == ALIASES
    assert model_list_calls(fake_upstream, failing) == 1
    assert "model list from the upstream failed (answered HTTP 500)" in system.logs()


# POST /v1/embeddings


def test_openai_sdk_embeddings_pass_through_and_are_metered_once(system: System, fake_upstream):
    key = key_for(system, "embedder")
    before = len(system.events())
    requests = ("b23_requests_total", {"protocol": "openai_embeddings", "status": "200"})
    overhead = ("b23_proxy_overhead_seconds_count", {"protocol": "openai_embeddings"})
    counted = [metric(system.url, name, **labels) for name, labels in (requests, overhead)]
    client = sdk(system.url, key)
    reply = client.embeddings.create(model="fake-embedding", input=["one", "two"])  # base64
    assert [item.embedding for item in reply.data] == [EMBEDDING_VECTOR, EMBEDDING_VECTOR]
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == EMBEDDING_USAGE["total_tokens"]
    floats = client.embeddings.create(model="fake-embedding", input="x", encoding_format="float")
    assert floats.data[0].embedding == EMBEDDING_VECTOR
    raw = httpx.post(
        system.url + "/embeddings",
        json={"model": "fake-embedding", "input": [1, 2, 3]},
        headers={"authorization": f"Bearer {key}"},
    )
    assert raw.status_code == 200 and raw.headers["x-request-id"].startswith("req_")
    sent = [
        entry["body"] for entry in fake_upstream.received() if entry["path"] == "/v1/embeddings"
    ]
    assert sent[0] == {
        "model": "fake-embedding",
        "input": ["one", "two"],
        "encoding_format": "base64",
    }
    assert sent[2] == {"model": "fake-embedding", "input": [1, 2, 3]}

    events = system.wait_events(before + 3)[before:]
    assert [e["protocol"] for e in events] == ["openai_embeddings"] * 3
    assert [e["prompt"] for e in events] == sent
    assert all(e["status_code"] == 200 and e["error"] is None for e in events)
    assert all(e["model"] == "fake-embedding" and e["user_id"] == "embedder" for e in events)
    assert all(e["client_app"] == "openai-python-sdk" for e in events[:2])
    assert all(
        e["usage"] == {**EMBEDDING_USAGE, "completion_tokens": 0, "cached_tokens": 0}
        for e in events
    )
    first = events[0]["response"]
    assert first["usage"] == EMBEDDING_USAGE and first["model"] == "fake-embedding"
    assert first["data"] == [
        {"object": "embedding", "index": i, "embedding": EMBEDDING_DIMENSIONS} for i in range(2)
    ]
    assert events[1]["response"]["data"][0]["embedding"] == EMBEDDING_DIMENSIONS
    after = [metric(system.url, name, **labels) for name, labels in (requests, overhead)]
    assert after == [counted[0] + 3, counted[1] + 3]


def test_embedding_failures_pass_through_and_are_recorded(system: System, fake_upstream):
    key = key_for(system, "embed-fail")
    before = len(system.events())
    client = sdk(system.url, key)
    limited = {"error": {"message": "slow down", "type": "rate_limit", "code": "rate_limit"}}
    unknown = {"error": {"message": "no such model", "type": "invalid_request_error"}}
    fake_upstream.script(
        {"status": 429, "json": limited},
        {"status": 404, "json": unknown},
        {"status": 502, "body": "<html>bad gateway</html>", "content_type": "text/html"},
    )
    with pytest.raises(openai.RateLimitError) as raised:
        client.embeddings.create(model="fake-embedding", input="x")
    assert raised.value.body == limited["error"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.InternalServerError) as raised:
        client.embeddings.create(model="fake-embedding", input="x")
    assert raised.value.response.status_code == 502
    assert raised.value.response.text == "<html>bad gateway</html>"
    dead = system.start_proxy(UPSTREAM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(openai.InternalServerError) as raised:
        sdk(dead, key).embeddings.create(model="fake-embedding", input="x")
    assert raised.value.response.status_code == 502

    events = system.wait_events(before + 4)[before:]
    assert [e["status_code"] for e in events] == [429, 404, 502, 502]
    assert [e["error"] for e in events] == [
        "slow down",
        "no such model",
        "502",
        "upstream unreachable",
    ]
    assert events[0]["response"] == limited and events[2]["response"] == "<html>bad gateway</html>"
    assert all(e["usage"] is None and e["protocol"] == "openai_embeddings" for e in events)


def test_embeddings_without_a_key_are_refused_and_not_metered(system: System):
    before = len(system.events())
    reply = httpx.post(system.url + "/v1/embeddings", json={"model": "m", "input": "x"})
    assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    no_new_events(system, before)


# Unknown routes


@pytest.mark.parametrize(
    ("method", "path", "headers", "shape", "status"),
    [
        ("POST", "/v1/audio/speech", {}, "openai", 404),
        ("GET", "/v1/files", ANTHROPIC_HEADERS, "anthropic", 404),
        ("POST", "/v1/messages/batches", {}, "anthropic", 404),
        ("GET", "/v1/embeddings", {}, "openai", 405),
        ("DELETE", "/v1/models", ANTHROPIC_HEADERS, "anthropic", 405),
    ],
)
def test_unknown_routes_answer_in_the_callers_shape_and_are_counted(
    system: System, method: str, path: str, headers: dict, shape: str, status: int
):
    counted = metric(system.url, "b23_unknown_route_requests_total", method=method, path=path)
    reply = httpx.request(method, system.url + path, headers={"x-api-key": "bsk-x", **headers})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert path in error["message"]
    if shape == "openai":
        assert error["code"] == ("not_found" if status == 404 else "method_not_allowed")
        assert error["type"] == "invalid_request_error"
    else:
        assert reply.json()["type"] == "error"
        assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    if status == 405:
        assert reply.headers["allow"]
    after = metric(system.url, "b23_unknown_route_requests_total", method=method, path=path)
    assert after == counted + 1


def test_unknown_route_paths_are_bounded_in_metrics(system: System):
    url = system.start_proxy()
    for n in range(120):
        assert httpx.get(f"{url}/v1/scan/{n}").status_code == 404
    assert httpx.request("PROPFIND", f"{url}/v1/scan/0").status_code == 404
    lines = [
        line
        for line in httpx.get(url + "/metrics").text.splitlines()
        if line.startswith("b23_unknown_route_requests_total{")
    ]
    paths = {re.search(r'path="([^"]*)"', line).group(1) for line in lines}
    assert len(paths) == 101 and "other" in paths
    assert metric(url, "b23_unknown_route_requests_total", method="GET", path="other") == 20
    assert metric(url, "b23_unknown_route_requests_total", method="other", path="/v1/scan/0") == 1
    assert system.logs().count("which this proxy does not serve") >= 100


def test_framework_errors_carry_a_code_for_their_status(system: System):
    headers = {"x-admin-token": ADMIN_TOKEN}
    reply = httpx.get(system.url + "/admin/keys/key_0000000000000000", headers=headers)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    reply = httpx.post(system.url + "/admin/keys/upsert", content=b"nope", headers=headers)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_request"
