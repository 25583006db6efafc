"""The upstream's model list, held in memory and refreshed in the background.

Clients list models when they start (Claude Code's gateway model discovery, SDK users) and an
upstream's list seldom changes: the first request for a credential waits for the upstream, the
next ones are answered from memory, and one that finds the list older than TTL_SECONDS starts a
refresh in the background and is answered at once with what is held. A failed refresh keeps the
older list (stale, with a log line); a credential whose list never came gets none, and the route
lists the MODEL_MAP aliases alone.

Lists are held per credential the upstream sees: one for everybody with UPSTREAM_API_KEY, else
one per client key (hashed), because an upstream such as OpenAI lists an organisation's own
fine-tuned models, which another client's key must not be shown.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from proxy_service.convert.openai.model_list import NotAModelList, upstream_models
from proxy_service.errors import UpstreamFailure
from proxy_service.upstream import MODELS, Upstream
from shared.supervision import describe_failure

log = logging.getLogger(__name__)

TTL_SECONDS = 60.0
MAX_CREDENTIALS = 1000
"""Lists held at once (distinct client keys without UPSTREAM_API_KEY); the oldest goes first."""

Source = Literal["upstream", "stale", "aliases"]


@dataclass(frozen=True, slots=True)
class Listing:
    models: list[dict[str, Any]]
    source: Source
    """upstream: its last answer; stale: an older answer, the last refresh failed; aliases: no
    answer ever came (the list is empty)."""


@dataclass(slots=True)
class _Entry:
    models: list[dict[str, Any]] | None = None
    fetched_at: float = 0.0
    """When `models` came."""
    fresh: bool = False
    """Whether the last attempt succeeded."""
    attempted_at: float | None = None
    """When the last attempt ended; None until the first one did."""
    refresh: asyncio.Task[None] | None = field(default=None, repr=False)

    def listing(self) -> Listing:
        if self.models is None:
            return Listing([], "aliases")
        return Listing(self.models, "upstream" if self.fresh else "stale")


class ModelCatalog:
    """The model lists of this process, one per upstream credential (module docstring)."""

    def __init__(
        self,
        upstream: Upstream,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[bytes, _Entry] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def listing(self, client_key: str) -> Listing:
        """The list the upstream gives this client's credential, as held now; waits only for
        the very first answer (concurrent first requests share one upstream call)."""
        credential = self._upstream.credential(client_key)
        entry = self._entry(hashlib.sha256(credential).digest())
        due = entry.attempted_at is None or self._clock() - entry.attempted_at >= self._ttl
        if entry.refresh is None and due:
            entry.refresh = asyncio.get_running_loop().create_task(self._fetch(entry, client_key))
            self._tasks.add(entry.refresh)
            entry.refresh.add_done_callback(self._tasks.discard)
        if entry.attempted_at is None and entry.refresh is not None:
            await asyncio.shield(entry.refresh)  # a client leaving does not cancel the fetch
        return entry.listing()

    def _entry(self, name: bytes) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            if len(self._entries) >= MAX_CREDENTIALS:
                del self._entries[next(iter(self._entries))]
            entry = self._entries[name] = _Entry()
        return entry

    async def _fetch(self, entry: _Entry, client_key: str) -> None:
        try:
            reply = await self._upstream.get(MODELS, client_key)
            if reply.status >= 300:
                raise NotAModelList(f"HTTP {reply.status}")
            models = upstream_models(reply.body)
            entry.models, entry.fresh, entry.fetched_at = models, True, self._clock()
        except UpstreamFailure as failure:
            self._failed(entry, failure.message)
        except NotAModelList as refused:
            self._failed(entry, f"answered {refused}")
        except Exception as error:  # a bug: one line, and listing goes on
            self._failed(entry, describe_failure(error))
        finally:
            entry.attempted_at = self._clock()
            entry.refresh = None

    def _failed(self, entry: _Entry, reason: str) -> None:
        entry.fresh = False
        if entry.models is None:
            held = "the MODEL_MAP aliases alone"
        else:
            held = f"the list of {self._clock() - entry.fetched_at:.0f} s ago"
        log.warning("model list from the upstream failed (%s): serving %s", reason, held)

    async def aclose(self) -> None:
        """Stop refreshes in flight (shutdown: the upstream client closes next)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
