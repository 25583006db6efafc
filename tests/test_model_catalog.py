"""ModelCatalog over a scripted upstream and a hand-moved clock: what end-to-end tests cannot
wait for (a list older than the 60 s TTL, refreshed in the background, served stale when the
refresh fails), plus the shared first fetch."""

from __future__ import annotations

import asyncio
import logging

import orjson

from proxy_service.errors import UpstreamFailure
from proxy_service.model_catalog import TTL_SECONDS, ModelCatalog
from proxy_service.upstream import MODELS, UpstreamReply

OLD = [{"id": "old-model", "object": "model", "created": 1, "owned_by": "up"}]
NEW = [{"id": "new-model", "object": "model", "created": 2, "owned_by": "up"}]


class ScriptedUpstream:
    """Answers each GET with the next scripted outcome, once `release` is set."""

    def __init__(self, *outcomes: list[dict] | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    def credential(self, client_key: str) -> bytes:
        return client_key.encode()

    async def get(self, endpoint: str, client_key: str) -> UpstreamReply:
        assert endpoint == MODELS
        self.calls += 1
        await self.release.wait()
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        body = orjson.dumps({"object": "list", "data": outcome})
        return UpstreamReply(200, "application/json", body, None, {}, 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ids(listing) -> list[str]:
    return [model["id"] for model in listing.models]


async def settled() -> None:
    """Let background refreshes run to their end."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_old_lists_refresh_in_the_background_and_stay_served_when_that_fails(caplog):
    upstream = ScriptedUpstream(OLD, UpstreamFailure("upstream unreachable"), NEW)
    clock = Clock()
    catalog = ModelCatalog(upstream, clock=clock)  # type: ignore[arg-type]
    first = await catalog.listing("key-a")
    assert (ids(first), first.source) == (["old-model"], "upstream")

    clock.now += TTL_SECONDS - 1
    assert ids(await catalog.listing("key-a")) == ["old-model"] and upstream.calls == 1

    clock.now += 2  # past the TTL: answered at once, refreshed behind the answer
    upstream.release.clear()
    due = await catalog.listing("key-a")
    await settled()  # the refresh now waits on the upstream
    assert (ids(due), due.source, upstream.calls) == (["old-model"], "upstream", 2)
    assert ids(await catalog.listing("key-a")) == ["old-model"] and upstream.calls == 2
    with caplog.at_level(logging.WARNING):
        upstream.release.set()
        await settled()
    stale = await catalog.listing("key-a")
    assert (ids(stale), stale.source, upstream.calls) == (["old-model"], "stale", 2)
    assert "model list from the upstream failed (upstream unreachable)" in caplog.text
    assert "serving the list of 61 s ago" in caplog.text

    clock.now += TTL_SECONDS
    await catalog.listing("key-a")
    await settled()
    back = await catalog.listing("key-a")
    assert (ids(back), back.source, upstream.calls) == (["new-model"], "upstream", 3)


async def test_concurrent_first_requests_share_one_upstream_call():
    upstream = ScriptedUpstream(OLD)
    upstream.release.clear()
    catalog = ModelCatalog(upstream, clock=Clock())  # type: ignore[arg-type]
    waiting = [asyncio.ensure_future(catalog.listing("key-a")) for _ in range(5)]
    await settled()
    upstream.release.set()
    listings = await asyncio.gather(*waiting)
    assert upstream.calls == 1 and all(ids(listing) == ["old-model"] for listing in listings)


async def test_a_list_that_never_came_is_empty_and_retried_after_the_ttl(caplog):
    upstream = ScriptedUpstream(ValueError("a bug"), OLD)
    clock = Clock()
    catalog = ModelCatalog(upstream, clock=clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        empty = await catalog.listing("key-a")
    assert (empty.models, empty.source) == ([], "aliases")
    assert "ValueError: a bug" in caplog.text and "the MODEL_MAP aliases alone" in caplog.text
    assert (await catalog.listing("key-a")).source == "aliases" and upstream.calls == 1
    clock.now += TTL_SECONDS
    await catalog.listing("key-a")
    await settled()
    assert ids(await catalog.listing("key-a")) == ["old-model"] and upstream.calls == 2


async def test_shutdown_cancels_a_refresh_in_flight():
    upstream = ScriptedUpstream(OLD, NEW)
    clock = Clock()
    catalog = ModelCatalog(upstream, clock=clock)  # type: ignore[arg-type]
    await catalog.listing("key-a")
    clock.now += TTL_SECONDS
    upstream.release.clear()
    await catalog.listing("key-a")
    await catalog.aclose()
    assert ids(await catalog.listing("key-a")) == ["old-model"]
