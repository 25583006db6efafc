"""What the usage record keeps of an embeddings request and its answer. Pure.

The answer goes to the client unchanged; the record keeps its shape with each vector replaced by
its number of dimensions: vectors are nearly all of an answer's bytes (6 KB of base64 or 20 KB
of JSON floats per 1,536-dimension input) and tell a reader of events.jsonl nothing.
"""

from __future__ import annotations

import math
from typing import Any

from proxy_service.convert.anthropic.token_count import estimate_text


def logged_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` with every `data[].embedding` (a list of floats, or base64 of float32s, as
    `encoding_format` asked) replaced by its dimension count."""
    data = answer.get("data")
    if not isinstance(data, list):
        return answer
    return {**answer, "data": [_without_vector(item) for item in data]}


def _without_vector(item: Any) -> Any:
    vector = item.get("embedding") if isinstance(item, dict) else None
    if isinstance(vector, list):
        return {**item, "embedding": len(vector)}
    if isinstance(vector, str):
        decoded_bytes = len(vector) * 3 // 4 - vector[-2:].count("=")
        return {**item, "embedding": decoded_bytes // 4}
    return item


def estimate(body: dict[str, Any], _relayed: bytes) -> tuple[int, int]:
    """(input, 0) tokens when the upstream reported no usage: `input` is a string, a list of
        strings, or token ids (a list of them, or a list of such lists); the answer (vectors, whose
    size says nothing of what they cost) counts no tokens."""
    inputs = body.get("input")
    total = 0.0
    for item in inputs if isinstance(inputs, list) else [inputs]:
        if isinstance(item, str):
            total += estimate_text(item)
        elif isinstance(item, list):
            total += len(item)
        elif isinstance(item, int):
            total += 1
    return max(1, math.ceil(total)), 0
