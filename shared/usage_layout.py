"""Where the usage aggregates live in Redis: the logger writes this layout, the proxy reads it.

Every cell is kept per hour and again per UTC day, so a month-long report reads ~30 buckets and
only a range's ragged ends read hours:

    b23:{usage}:hour:2024-05-01T13          set of the group ids with requests that hour
    b23:{usage}:hour:2024-05-01T13:<gid>    hash of that group's Tally fields
    b23:{usage}:day:2024-05-01              the same per day
    b23:{usage}:day:2024-05-01:<gid>

Each event shard has its own (`b23:{usage:<k>}:...` for shard k > 0, shared/redis_names.py),
counted from its own files; a reader adds up the shards' cells. One small hash per bucket and
group stays in Redis's compact encoding. usage_groups(shard) maps a group id (a digest of the
group) back to its dimensions. Pure.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from shared.redis_names import usage_prefix
from shared.usage import HOUR_MS, Cell, Group, Tally

Bucket = tuple[str, int]
"""("hour", hours since the epoch) or ("day", days since the epoch)."""
PROJECTIONS: dict[str, tuple[int, ...]] = {
    "day-total": (),
    "day-user": (0,),
    "day-key": (1,),
    "day-model": (2,),
    "day-app": (3,),
}
"""Day buckets of cells reduced to one dimension (or none): the same days' counts with every
other dimension None, so a month's totals, or its top keys, read a few cells a day rather than
one per group (7,200 a day where 200 keys use 12 models from 3 apps). Written with the day
cells, in the same transaction; read for a question about at most one dimension."""
HOURS = {"hour": 1, "day": 24, **dict.fromkeys(PROJECTIONS, 24)}
NAME_FORMATS = {"hour": "%Y-%m-%dT%H", **dict.fromkeys(["day", *PROJECTIONS], "%Y-%m-%d")}


def buckets_of(hour: int) -> tuple[Bucket, Bucket]:
    return ("hour", hour), ("day", hour // 24)


def first_hour(bucket: Bucket) -> int:
    kind, index = bucket
    return index * HOURS[kind]


def end_ms(bucket: Bucket) -> int:
    kind, index = bucket
    return (index + 1) * HOURS[kind] * HOUR_MS


@functools.cache
def bucket_key(bucket: Bucket, shard: int = 0) -> str:
    kind, _ = bucket
    moment = datetime.fromtimestamp(first_hour(bucket) * 3600, UTC)
    return f"{usage_prefix(shard)}{kind}:{moment.strftime(NAME_FORMATS[kind])}"


def cell_key(bucket: Bucket, gid: str, shard: int = 0) -> str:
    return f"{bucket_key(bucket, shard)}:{gid}"


def encode_group(group: Group) -> bytes:
    return orjson.dumps(group)


def decode_group(raw: bytes | str) -> Group:
    return tuple(orjson.loads(raw))


def group_id(group: Group) -> str:
    return hashlib.blake2b(encode_group(group), digest_size=8).hexdigest()


def covering(first: int, end: int, current_hour: int | None = None) -> list[Bucket]:
    """The fewest buckets covering hours [first, end): whole days as days, the rest as hours.
    With `current_hour`, a day whose hours past `end` are all later than it (today, in a range
    that ends now) is read as its day bucket too: nothing is counted in hours yet to come, so
    the day holds exactly its hours so far, and one bucket replaces up to 24."""
    buckets: list[Bucket] = []
    hour = first
    while hour < end:
        day_so_far = current_hour is not None and end > current_hour >= hour
        if hour % 24 == 0 and (hour + 24 <= end or day_so_far):
            buckets.append(("day", hour // 24))
            hour += 24
        else:
            buckets.append(("hour", hour))
            hour += 1
    return buckets


def by_bucket(
    cells: Mapping[Cell, Tally], projections: bool = False
) -> dict[tuple[Bucket, Group], Tally]:
    """Each cell added to its hour bucket and to its day bucket, and with `projections` to each
    of PROJECTIONS' day buckets as its projected group."""
    out: dict[tuple[Bucket, Group], Tally] = {}

    def add(bucket: Bucket, group: Group, tally: Tally) -> None:
        target = out.get((bucket, group))
        if target is None:
            target = out[(bucket, group)] = Tally()
        target.add(tally)

    for (hour, group), tally in cells.items():
        for bucket in buckets_of(hour):
            add(bucket, group, tally)
        if projections:
            for kind, kept in PROJECTIONS.items():
                add((kind, hour // 24), project(group, kept), tally)
    return out


def project(group: Group, kept: tuple[int, ...]) -> Group:
    """The group with only the dimensions at `kept`, the others None."""
    return tuple(value if index in kept else None for index, value in enumerate(group))


def projection_of(dimensions: frozenset[int]) -> str | None:
    """The projection that answers a question about these dimensions (indexes into
    DIMENSIONS: grouped by or filtered on); None when it needs whole groups."""
    for kind, kept in PROJECTIONS.items():
        if dimensions == frozenset(kept):
            return kind
    return None
