"""The gateway's `encrypted_content` envelope for reasoning items (§3, §2.3).

Stateless clients (Codex sends `store: false` with `include: ["reasoning.encrypted_content"]`)
hand reasoning back only as this opaque string, and DeepSeek/Kimi-style upstreams want their
thinking replayed as `reasoning_content` on tool-call turns. It is not encrypted: the client
already holds the text in the item's summary; the prefix only tells our envelope from OpenAI's.
"""

from __future__ import annotations

import base64

import orjson

_PREFIX = "gwr1:"


def seal(text: str) -> str:
    """The envelope for one reasoning text."""
    payload = orjson.dumps({"text": text})
    return _PREFIX + base64.urlsafe_b64encode(payload).decode("ascii")


def unseal(value: object) -> str | None:
    """The text inside our envelope; None for a foreign or damaged one (dropped, never a 400)."""
    if not isinstance(value, str) or not value.startswith(_PREFIX):
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(value[len(_PREFIX) :]))
    except ValueError:  # bad base64 (binascii.Error) or bad JSON
        return None
    text = payload.get("text") if isinstance(payload, dict) else None
    return text if isinstance(text, str) else None
