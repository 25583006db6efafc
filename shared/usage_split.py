"""A request's tokens split into the categories prices apply to, from any usage shape. Pure.

Upstreams report usage in two conventions: OpenAI's `prompt_tokens` (and the Responses API's
`input_tokens` with `input_tokens_details`) *include* the cached part, reported as a subset;
Anthropic's `input_tokens` *excludes* cache reads and writes, reported beside it. Peers that
price one convention as the other bill cache reads as plain input, or twice (LiteLLM #11364,
#11973). Every record's split comes from `split_usage`, for every protocol, streamed or not, so
the two can never disagree:

- `input`: uncached input; `cache_read`; `cache_write_5m` and `cache_write_1h` (a write total
  without the TTL split counts as 5 minutes, never as zero); `output`; `reasoning`, the part of
  output spent reasoning (shown, never priced apart).
- The input categories add up to the upstream's total input: `prompt_tokens` in OpenAI's
  convention, `input_tokens` plus both cache counts in Anthropic's. One exception: an
  OpenAI-shaped usage whose cache counts exceed `prompt_tokens` cannot include them, so it is
  read in Anthropic's convention. The total is clamped to MAX_TOKEN_COUNT like each count
  (cache reads kept first, then writes, then uncached input).
- Where an upstream reports one count under several names (DeepSeek's `prompt_cache_hit_tokens`,
  LiteLLM's top-level `cache_read_input_tokens` beside a `cached_tokens` of 0), the largest is
  taken: a 0 in one field beside the real figure in another is a placeholder, not a fact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_TOKEN_COUNT = 2**53
"""Larger reported counts are clamped to this, and so is a split's total input: exact as JSON
numbers and in Redis' Lua (doubles), and far inside orjson's 64-bit integers, so no sum of counts
can make an event unserialisable."""
INPUT_CATEGORIES = ("input", "cache_read", "cache_write_5m", "cache_write_1h")
PRICED_CATEGORIES = (*INPUT_CATEGORIES, "output")
CATEGORIES = (*PRICED_CATEGORIES, "reasoning")
"""The keys of a split, in the order records show them."""


def token_count(value: Any) -> int | None:
    """A reported count as an int in [0, MAX_TOKEN_COUNT]; None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return min(max(int(value), 0), MAX_TOKEN_COUNT)


def largest_count(*values: object) -> int:
    """The largest of `values` that is a count, else 0."""
    return max((count for value in values if (count := token_count(value)) is not None), default=0)


def split_usage(usage: Mapping[str, Any] | None) -> dict[str, int]:
    """The split of one usage object as the upstream sent it, or as a record keeps it (the
    normalised figures of `normalised_usage`); all zeros for none."""
    if not isinstance(usage, Mapping):
        usage = {}
    prompt_details = _details(usage, "prompt_tokens_details", "input_tokens_details")
    output_details = _details(usage, "completion_tokens_details", "output_tokens_details")
    ttl = _details(usage, "cache_creation")
    read = largest_count(
        prompt_details.get("cached_tokens"),
        usage.get("cached_tokens"),  # a record's normalised figures
        usage.get("prompt_cache_hit_tokens"),  # DeepSeek
        usage.get("cache_read_input_tokens"),  # Anthropic, and LiteLLM's chat usage
    )
    write_1h = largest_count(
        ttl.get("ephemeral_1h_input_tokens"), usage.get("cache_write_1h_tokens")
    )
    write_5m_stated = largest_count(ttl.get("ephemeral_5m_input_tokens"))
    write_total = largest_count(
        prompt_details.get("cache_write_tokens"),
        prompt_details.get("cache_creation_tokens"),
        usage.get("cache_write_tokens"),
        usage.get("cache_creation_input_tokens"),
        write_5m_stated + write_1h,
    )
    stated_input = token_count(usage.get("prompt_tokens"))
    if stated_input is None:
        stated_input = token_count(usage.get("input_tokens")) or 0
        includes_cache = not _anthropic_shaped(usage)
    else:
        includes_cache = True
    cached = read + write_total
    uncached = stated_input - cached if includes_cache and cached <= stated_input else stated_input
    # Anthropic's convention adds three counts: keep their sum within the bound too, so the
    # record's prompt_tokens (the sum) is exact and splits back into these same categories.
    write_total = min(write_total, MAX_TOKEN_COUNT - read)
    write_1h = min(write_1h, write_total)
    write_5m = write_total - write_1h
    uncached = min(uncached, MAX_TOKEN_COUNT - read - write_total)
    output = largest_count(usage.get("completion_tokens"), usage.get("output_tokens"))
    reasoning = min(
        largest_count(output_details.get("reasoning_tokens"), usage.get("reasoning_tokens")), output
    )
    return {
        "input": uncached,
        "cache_read": read,
        "cache_write_5m": write_5m,
        "cache_write_1h": write_1h,
        "output": output,
        "reasoning": reasoning,
    }


def total_input(split: Mapping[str, int]) -> int:
    """Every input token, cached or not: what price tiers compare with."""
    return sum(split.get(name, 0) for name in INPUT_CATEGORIES)


def normalised_usage(usage: Mapping[str, Any] | None) -> dict[str, int] | None:
    """A usage object in the names records use (OpenAI's, with `prompt_tokens` the total input
    whatever the upstream's convention); None when there is none. Cache-write and reasoning
    counts appear only when non-zero. `split_usage` of the result equals `split_usage` of the
    argument."""
    if not isinstance(usage, Mapping):
        return None
    split = split_usage(usage)
    prompt = min(total_input(split), MAX_TOKEN_COUNT)
    completion = split["output"]
    figures = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": token_count(usage.get("total_tokens"))
        or min(prompt + completion, MAX_TOKEN_COUNT),
        "cached_tokens": split["cache_read"],
    }
    writes = split["cache_write_5m"] + split["cache_write_1h"]
    for name, value in (
        ("cache_write_tokens", writes),
        ("cache_write_1h_tokens", split["cache_write_1h"]),
        ("reasoning_tokens", split["reasoning"]),
    ):
        if value:
            figures[name] = value
    return figures


def _details(usage: Mapping[str, Any], *names: str) -> Mapping[str, Any]:
    for name in names:
        value = usage.get(name)
        if isinstance(value, Mapping):
            return value
    return {}


def _anthropic_shaped(usage: Mapping[str, Any]) -> bool:
    """`input_tokens` that excludes the cache: Anthropic's names and no Responses details."""
    if isinstance(usage.get("input_tokens_details"), Mapping):
        return False
    return any(
        name in usage
        for name in ("cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation")
    )
