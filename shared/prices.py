"""The price table (`prices.toml`) and what a request's tokens cost under it. Pure but for
PriceBook, which reloads the file when it changes.

Prices are USD per million tokens, written as decimal strings (as provider pages print them; a
float or a per-token figure is the unit slip of LiteLLM #20615), per category of
shared/usage_split.py. A table entry is a model name, with `aliases` and glob patterns
(`"local/*"`) as other names for it, optional `tiers` (the rates once a request's total input
exceeds `above_input_tokens`, for every category, as the providers bill long contexts), or
`free = true` for a model that costs nothing (self-hosted). A model the table does not name is
*unpriced*: its cost is unknown (null), never $0.

Costs are exact decimals; aggregates add them as integer nano-USD (`nano_usd`), exact whenever
rates have at most three decimals per million tokens (every list price we know), else rounded
half-even per record.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import fnmatch
import hashlib
import logging
import re
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from shared.usage_split import PRICED_CATEGORIES, total_input

log = logging.getLogger(__name__)

MAX_RATE = Decimal(1000)
"""USD per million tokens no real model charges: a higher figure is a unit slip, refused."""
MAX_FILE_BYTES = 4 << 20
"""A price file larger than this is refused (it is read whole on every check)."""
SETTLE_SECONDS = 0.1
"""How long changed content must stay the same to be loaded: an editor or `cat >` that
truncates the file and then writes it shows an empty or partial file for a moment, and a table
read then (an empty one prices nothing) would price records until the next check."""
MONEY_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)
"""Enough digits for any count (2**53) times any rate of up to 40 decimals, and for the sum of a
record's categories, so no cost is ever rounded (list prices have at most a few decimals)."""
NANO = Decimal(10) ** 9
PER_MILLION = Decimal(10) ** 6
Status = Literal["priced", "free", "unpriced"]


def _rate_text(value: Any) -> Any:
    """A rate as written: a decimal string or an integer, never a float (0.1 is not exact)."""
    if isinstance(value, float):
        raise ValueError('write prices as strings, e.g. "3.75" (a float is not exact)')
    if isinstance(value, str) and not re.fullmatch(r"\d+(\.\d+)?", value.strip()):
        raise ValueError(f'{value!r} is not a price in USD per million tokens, e.g. "3.75"')
    return value


Rate = Annotated[Decimal, BeforeValidator(_rate_text), Field(ge=0, le=MAX_RATE)]


class RateEntry(BaseModel):
    """Rates of one table entry or tier; an absent cache rate is the input rate (the cache is
    then priced like plain input: never free by omission), an absent 1-hour write rate the
    5-minute one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Rate | None = None
    output: Rate | None = None
    cache_read: Rate | None = None
    cache_write_5m: Rate | None = None
    cache_write_1h: Rate | None = None


class TierEntry(RateEntry):
    above_input_tokens: int = Field(ge=1, strict=True)
    """A TOML integer: `true` or `"200k"` is refused, not read as 1 or 200."""


class ModelEntry(RateEntry):
    free: bool = Field(default=False, strict=True)
    aliases: list[str] = Field(default_factory=list)
    tiers: list[TierEntry] = Field(default_factory=list)
    as_of: str | datetime.date | None = None
    """When the prices were copied from `source` (kept for the reader, not used)."""
    source: str | None = None


class PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelEntry] = Field(default_factory=dict)


Rates = Mapping[str, Decimal]
"""Category -> USD per million tokens."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    name: str
    """The table's entry: what a record says it was priced as."""
    free: bool
    rates: Rates
    tiers: tuple[tuple[int, Rates], ...] = ()
    """(above_input_tokens, rates), highest threshold first."""

    def rates_for(self, input_tokens: int) -> tuple[int | None, Rates]:
        for threshold, rates in self.tiers:
            if input_tokens > threshold:
                return threshold, rates
        return None, self.rates


@dataclass(frozen=True, slots=True)
class PriceTable:
    version: str
    """`sha256:` and the start of the file's digest: which table priced a record."""
    names: Mapping[str, ModelPrice] = field(default_factory=dict)
    """Lower-cased names and aliases."""
    patterns: tuple[tuple[str, ModelPrice], ...] = ()
    """Glob patterns, lower-cased, in file order: the first match wins."""

    def lookup(self, model: str | None) -> ModelPrice | None:
        if not model:
            return None
        name = model.lower()
        found = self.names.get(name)
        if found is not None:
            return found
        return next((p for pattern, p in self.patterns if fnmatch.fnmatchcase(name, pattern)), None)


class PriceFileError(ValueError):
    """A price file that cannot be used: says where and why, quoting no more than a name."""


def parse_table(content: bytes) -> PriceTable:
    """The table a file's bytes hold; raises PriceFileError naming the first problem."""
    try:
        raw = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PriceFileError(f"not TOML: {error}") from None
    try:
        parsed = PriceFile.model_validate(raw)
    except ValidationError as error:
        issue = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(map(str, issue["loc"]))
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise PriceFileError(f"{where}: {issue['msg']}{more}") from None
    names: dict[str, ModelPrice] = {}
    patterns: list[tuple[str, ModelPrice]] = []
    for name, entry in parsed.models.items():
        price = _model_price(name, entry)
        for written in [name, *entry.aliases]:
            key = written.lower()
            if key in names or any(key == pattern for pattern, _ in patterns):
                raise PriceFileError(f"models.{name}: {written!r} is named twice")
            if re.search(r"[*?\[]", key):
                patterns.append((key, price))
            else:
                names[key] = price
    digest = hashlib.sha256(content).hexdigest()
    return PriceTable(f"sha256:{digest[:16]}", names, tuple(patterns))


def _model_price(name: str, entry: ModelEntry) -> ModelPrice:
    if entry.free:
        if entry.tiers or any(getattr(entry, c) is not None for c in PRICED_CATEGORIES):
            raise PriceFileError(f"models.{name}: a free model has no rates")
        return ModelPrice(name, True, {})
    if entry.input is None or entry.output is None:
        raise PriceFileError(f"models.{name}: give input and output (or free = true)")
    base = _rates(entry, None)
    tiers = sorted(
        ((tier.above_input_tokens, _rates(tier, base)) for tier in entry.tiers), reverse=True
    )
    if len({threshold for threshold, _ in tiers}) < len(tiers):
        raise PriceFileError(f"models.{name}: two tiers start above the same input size")
    return ModelPrice(name, False, base, tuple(tiers))


def _rates(entry: RateEntry, base: Rates | None) -> Rates:
    """An entry's rates with the defaults filled in (a tier's from its model's)."""

    def rate(category: str, fallback: Decimal) -> Decimal:
        value = getattr(entry, category)
        if value is not None:
            return value
        return base[category] if base is not None else fallback

    input_rate = rate("input", Decimal(0))
    write_5m = rate("cache_write_5m", input_rate)
    return {
        "input": input_rate,
        "output": rate("output", Decimal(0)),
        "cache_read": rate("cache_read", input_rate),
        "cache_write_5m": write_5m,
        "cache_write_1h": rate("cache_write_1h", write_5m),
    }


def cost_of(table: PriceTable | None, model: str | None, split: Mapping[str, int] | None) -> dict:
    """The record's `cost`: `usd` (exact, a decimal string; null when unpriced), `breakdown`
    per category, `price_version`, `status` and, when priced, the entry (`priced_as`) and tier
    (`tier_above_input_tokens`) used. A model without a price is unpriced even with no tokens
    (a refused request): it is in use, and has no price."""
    version = table.version if table is not None else None
    price = table.lookup(model) if table is not None else None
    if price is None:
        return {"usd": None, "breakdown": None, "price_version": version, "status": "unpriced"}
    if price.free:
        return {
            "usd": "0",
            "breakdown": {},
            "price_version": version,
            "status": "free",
            "priced_as": price.name,
        }
    split = split or {}
    tier, rates = price.rates_for(total_input(split))
    breakdown = {
        category: MONEY_CONTEXT.divide(
            MONEY_CONTEXT.multiply(Decimal(split.get(category, 0)), rates[category]), PER_MILLION
        )
        for category in PRICED_CATEGORIES
    }
    total = Decimal(0)
    for value in breakdown.values():  # in MONEY_CONTEXT: the default context rounds at 28 digits
        total = MONEY_CONTEXT.add(total, value)
    cost = {
        "usd": money_text(total),
        "breakdown": {c: money_text(v) for c, v in breakdown.items() if split.get(c)},
        "price_version": version,
        "status": "priced",
        "priced_as": price.name,
    }
    if tier is not None:
        cost["tier_above_input_tokens"] = tier
    return cost


def money_text(value: Decimal) -> str:
    """A decimal as plain digits (no exponent, no trailing zeros): `0.0000331`, `12`."""
    if value == 0:
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd_text(nano: int) -> str:
    """Integer nano-USD (an aggregate) as an exact decimal string of dollars."""
    return money_text(Decimal(nano).scaleb(-9))


def nano_usd(cost: Mapping[str, Any] | None) -> int | None:
    """A record's cost in integer nano-USD, as aggregates add it; None when not priced (or not
    a usable amount)."""
    usd = cost.get("usd") if isinstance(cost, Mapping) else None
    if not isinstance(usd, str):
        return None
    try:
        value = Decimal(usd)
    except decimal.InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    try:
        nano = MONEY_CONTEXT.multiply(value, NANO)
    except decimal.Overflow:  # no cost the table can give: a record written by something else
        return None
    return int(nano.to_integral_value(decimal.ROUND_HALF_EVEN))


class PriceBook:
    """The table in force for one process: the file at `path`, read again when its content
    changes (read and hashed on every `refresh`: a stat can miss an edit in place that keeps
    the size within one mtime tick), and loaded once it reads the same SETTLE_SECONDS later
    (`wait` waits them). A file that cannot be used keeps the last good table in force, is
    logged once (per content) and shows in `error` and `load_errors`."""

    def __init__(self, path: Path | None, wait: Callable[[float], None] = time.sleep) -> None:
        self.path = path
        self._wait = wait
        self.table: PriceTable | None = None
        self.error: str | None = None
        """Why the file at the path is not the table in force; None when it is."""
        self.load_errors = 0
        self.checked_at: float | None = None
        """Unix time of the last look at the file."""
        self._seen_digest: str | None = None
        self._failed_digest: str | None = None

    def refresh(self) -> bool:
        """Load the file if it changed since the last call; True when a new table is in force."""
        if self.path is None:
            return False
        self.checked_at = time.time()
        try:
            content = self._read(self.path)
            digest = hashlib.sha256(content).hexdigest()
            if digest == self._seen_digest:
                return False
            self._wait(SETTLE_SECONDS)
            if self._read(self.path) != content:
                return False  # still being written: read again at the next check
        except OSError as error:
            self._seen_digest = None
            hint = " (copy config/prices.example.toml there)" if not self.path.exists() else ""
            self._fail(f"cannot read {self.path}: {error.strerror or error}{hint}", str(error))
            return False
        self._seen_digest = digest
        try:
            if len(content) > MAX_FILE_BYTES:
                raise PriceFileError(f"larger than {MAX_FILE_BYTES} bytes")
            table = parse_table(content)
        except PriceFileError as error:
            self._fail(f"{self.path}: {error}", digest)
            return False
        changed = self.table is None or table.version != self.table.version
        self.table, self.error, self._failed_digest = table, None, None
        if changed:
            names = len(table.names) + len(table.patterns)
            log.info("price table %s in force (%s, %d names)", table.version, self.path, names)
        return changed

    @staticmethod
    def _read(path: Path) -> bytes:
        with path.open("rb") as file:
            return file.read(MAX_FILE_BYTES + 1)

    def _fail(self, why: str, digest: str) -> None:
        if digest == self._failed_digest:
            return
        self._failed_digest = digest
        self.error = why
        self.load_errors += 1
        kept = f"keeping {self.table.version}" if self.table else "no table: every model unpriced"
        log.error("price table not loaded: %s (%s)", why, kept)

    async def run(self, every_seconds: float) -> None:
        """Follow the file forever (a supervised task); the stat and parse run off the loop."""
        while True:
            await asyncio.sleep(every_seconds)
            await asyncio.to_thread(self.refresh)
