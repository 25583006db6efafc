"""The proxy tunes its garbage collector once the app is up: start-up's objects frozen out of
every later collection, young collections rarer (proxy_service/gc_tuning.py; the pauses it
removes are measured in bench/README.md, "Real sizes")."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from proxy_service.app import create_app
from proxy_service.gc_tuning import GEN0_THRESHOLD
from shared.settings import Settings


@pytest.fixture
def interpreter_defaults() -> Iterator[None]:
    """The collector as a fresh interpreter has it, and as this test process had it after."""
    before = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


async def test_the_app_start_freezes_what_it_built_and_raises_the_young_threshold(
    interpreter_defaults, redis_url
):
    settings = Settings(_env_file=None, admin_token="t" * 24, redis_url=redis_url)
    app = create_app(settings)
    assert gc.get_freeze_count() == 0
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the imported framework, the routes, the app state
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # garbage made after start-up is still collected
        assert gc.get_freeze_count() == frozen
