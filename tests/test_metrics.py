"""/metrics as the README's table says it: every name exposed exactly as written, and the counts
behind the new ones (tokens by direction, upstream latency, limit refusals) right after real
requests through a real proxy."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import USAGE
from tests.processes import ROOT, wait_until
from tests.system import System, running_system

KEY = "bsk-metrics-0001"
LIMITED = "bsk-metrics-limited-0001"
SECTION = "### Health and metrics"


@pytest.fixture(scope="module")
def system(redis_url: str, fake_upstream_url: str, tmp_path_factory) -> Iterator[System]:
    with running_system(redis_url, fake_upstream_url, tmp_path_factory.mktemp("metrics")) as s:
        assert s.upsert(KEY, "mia").status_code == 200
        assert s.upsert(LIMITED, "lim", rpm_limit=1).status_code == 200
        yield s


def chat(system: System, key: str) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {key}"}
    return httpx.post(system.url + "/v1/chat/completions", json=body, headers=headers)


def samples(system: System) -> dict[str, list]:
    """Sample name -> its samples, from one scrape."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(httpx.get(system.url + "/metrics").text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def readme_names() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) : readme.index("## Data files")]
    return set(re.findall(r"`(b23_[a-z_]+)", section))


def exposed_names(system: System) -> set[str]:
    """What a scrape names: its samples, and the families that have none yet, as they will be
    named (a counter's samples end in `_total`; a histogram is named by its family)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(httpx.get(system.url + "/metrics").text):
        names.update(sample.name for sample in family.samples)
        names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def test_every_name_in_the_readme_is_exposed_as_written(system: System) -> None:
    assert chat(system, KEY).status_code == 200
    exposed = exposed_names(system)
    names = readme_names()
    assert len(names) >= 18
    assert names <= exposed, f"in the README, not on /metrics: {sorted(names - exposed)}"
    ours = {
        name
        for name in exposed
        if name.startswith("b23_") and not name.endswith(("_bucket", "_count", "_sum", "_created"))
    }
    assert ours <= names, f"on /metrics, not in the README: {sorted(ours - names)}"


def value(found: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in found.get(name, []) if labels.items() <= s.labels.items())


def test_tokens_by_direction_and_the_upstream_wait_are_counted(system: System) -> None:
    before = samples(system)
    assert chat(system, KEY).status_code == 200
    after = samples(system)
    for direction, field in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
        added = value(after, "b23_tokens_total", protocol="openai_chat", direction=direction)
        added -= value(before, "b23_tokens_total", protocol="openai_chat", direction=direction)
        assert added == USAGE[field]
    waits = value(after, "b23_upstream_seconds_count", protocol="openai_chat")
    assert waits - value(before, "b23_upstream_seconds_count", protocol="openai_chat") == 1


def test_a_limit_refusal_is_counted_by_limit(system: System) -> None:
    before = value(samples(system), "b23_limit_refusals_total", limit="rpm_limit")
    statuses = [chat(system, LIMITED).status_code for _ in range(3)]
    assert statuses[0] == 200 and statuses.count(429) == 2
    after = value(samples(system), "b23_limit_refusals_total", limit="rpm_limit")
    assert after - before == 2


def test_a_refused_request_is_recorded_with_its_prompt_and_model(system: System) -> None:
    """A 429 comes before the body is needed, but its record still shows what was asked."""
    key = "bsk-metrics-refused-0001"
    assert system.upsert(key, "rex", rpm_limit=1).status_code == 200
    statuses = [chat(system, key).status_code for _ in range(2)]
    assert statuses == [200, 429]

    def refused() -> dict | None:
        matches = [e for e in system.events() if e["user_id"] == "rex" and e["status_code"] == 429]
        return matches[0] if matches else None

    record = wait_until(refused, 10, what="the 429's record")
    assert record["model"] == "m"
    assert record["prompt"] == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
