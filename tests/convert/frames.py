"""What both stream translators' tests do with a translator: feed it upstream bytes cut at
given offsets, and read its frames back as events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import orjson

from shared.sse import SSEDecoder


class Translator(Protocol):
    def start(self) -> list[bytes]: ...
    def feed(self, chunk: bytes) -> list[bytes]: ...
    def finish(self) -> list[bytes]: ...


def run(translator: Translator, raw: bytes, cuts: Iterable[int] = ()) -> list[bytes]:
    """Every frame of `raw` fed in pieces split at `cuts`, from start to finish."""
    frames = translator.start()
    start = 0
    for cut in [*sorted(cuts), len(raw)]:
        frames += translator.feed(raw[start:cut])
        start = cut
    return frames + translator.finish()


def parse_frames(frames: list[bytes]) -> list[dict]:
    """Each frame is exactly one SSE event whose `event:` name equals its data `type`."""
    events = []
    for frame in frames:
        assert frame.startswith(b"event: ") and frame.endswith(b"\n\n"), frame
        decoded = SSEDecoder().feed(frame)
        assert len(decoded) == 1, frame
        data = orjson.loads(decoded[0].data)
        assert decoded[0].event == data["type"], frame
        events.append(data)
    return events
