"""The price table (shared/prices.py) as pure functions, and PriceBook on a temporary file:
parsing and refusing tables, lookups, tiers, exact costs, nano-USD, reloading."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import tomllib
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.prices import (
    MAX_FILE_BYTES,
    MAX_RATE,
    SETTLE_SECONDS,
    PriceBook,
    PriceFileError,
    PriceTable,
    cost_of,
    money_text,
    nano_usd,
    parse_table,
)
from shared.usage_split import CATEGORIES, MAX_TOKEN_COUNT, PRICED_CATEGORIES, split_usage

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "prices.example.toml"


def table(text: str) -> PriceTable:
    return parse_table(text.encode())


def split(**counts: int) -> dict[str, int]:
    return {name: counts.get(name, 0) for name in CATEGORIES}


def entry(t: PriceTable, model: str) -> str | None:
    """The table entry `model` is priced as; None when unpriced."""
    price = t.lookup(model)
    return None if price is None else price.name


def rates_of(t: PriceTable, model: str) -> dict[str, Decimal]:
    price = t.lookup(model)
    assert price is not None
    return dict(price.rates)


def exact(text: str) -> Fraction:
    """A cost's decimal text as an exact number (refusing floats' notation)."""
    assert "e" not in text.lower(), text
    return Fraction(Decimal(text))


def no_float(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(no_float(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(no_float(v) for v in value)
    return True


# -- parsing valid tables ---------------------------------------------------------------------


def test_rates_and_their_defaults() -> None:
    t = table('[models.m]\ninput = "3"\noutput = "15"\n')
    assert rates_of(t, "m") == {
        "input": Decimal(3),
        "output": Decimal(15),
        "cache_read": Decimal(3),  # an absent cache rate is the input rate: never free
        "cache_write_5m": Decimal(3),
        "cache_write_1h": Decimal(3),
    }
    t = table(
        '[models.m]\ninput = "3"\noutput = "15"\ncache_read = "0.30"\ncache_write_5m = "3.75"\n'
    )
    assert rates_of(t, "m")["cache_read"] == Decimal("0.30")
    assert rates_of(t, "m")["cache_write_1h"] == Decimal("3.75")  # the 5-minute rate
    t = table('[models.m]\ninput = "3"\noutput = "15"\ncache_write_1h = "6"\n')
    assert rates_of(t, "m")["cache_write_5m"] == Decimal(3)
    assert rates_of(t, "m")["cache_write_1h"] == Decimal(6)


def test_rates_are_exact_decimals_from_strings_or_integers() -> None:
    t = table('[models.m]\ninput = "0.000001"\noutput = 2\ncache_read = " 0.10 "\n')
    rates = rates_of(t, "m")
    assert rates["input"] == Decimal("0.000001") and isinstance(rates["input"], Decimal)
    assert rates["output"] == Decimal(2) and isinstance(rates["output"], Decimal)
    assert rates["cache_read"] == Decimal("0.10")
    assert table(f'[models.m]\ninput = "{MAX_RATE}"\noutput = "0"\n').lookup("m") is not None


def test_aliases_name_the_same_entry() -> None:
    t = table(
        '[models.gpt-4o]\ninput = "2.5"\noutput = "10"\naliases = ["gpt-4o-2024-08-06", "4o"]\n'
    )
    for name in ("gpt-4o", "gpt-4o-2024-08-06", "4o"):
        price = t.lookup(name)
        assert price is not None and price.name == "gpt-4o"
        assert cost_of(t, name, split(input=1))["priced_as"] == "gpt-4o"
    assert t.lookup("gpt-4o-mini") is None


def test_names_are_case_insensitive() -> None:
    t = table('[models."GPT-4.1"]\ninput = "2"\noutput = "8"\naliases = ["My-Alias", "Fam/*"]\n')
    for name in ("gpt-4.1", "GPT-4.1", "Gpt-4.1", "my-alias", "MY-ALIAS", "fam/X", "FAM/y"):
        price = t.lookup(name)
        assert price is not None and price.name == "GPT-4.1", name


def test_globs_match_in_file_order_after_exact_names() -> None:
    t = table(
        '[models."local/*"]\nfree = true\n'
        '[models."local/big-*"]\ninput = "1"\noutput = "1"\n'
        '[models."local/special"]\ninput = "2"\noutput = "2"\n'
    )
    assert entry(t, "local/big-model") == "local/*"
    assert entry(t, "local/special") == "local/special"
    t = table(
        '[models."local/big-*"]\ninput = "1"\noutput = "1"\n[models."local/*"]\nfree = true\n'
    )
    assert entry(t, "local/big-model") == "local/big-*"
    assert entry(t, "local/small") == "local/*"
    assert t.lookup("other/big-model") is None


def test_glob_forms() -> None:
    t = table(
        '[models."q?"]\ninput = "1"\noutput = "1"\n'
        '[models."v[12]-*"]\ninput = "2"\noutput = "2"\n'
        '[models.m]\ninput = "3"\noutput = "3"\naliases = ["m-*"]\n'
    )
    assert entry(t, "q1") == "q?"
    assert t.lookup("q12") is None
    assert entry(t, "v1-x") == "v[12]-*"
    assert t.lookup("v3-x") is None
    assert entry(t, "m-2025") == "m"
    assert t.lookup("m") is not None and t.lookup("mm") is None


@pytest.mark.parametrize("model", [None, "", "unknown"])
def test_lookup_of_no_name_or_an_unknown_one(model: str | None) -> None:
    assert table('[models.m]\ninput = "1"\noutput = "1"\n').lookup(model) is None


def test_empty_table_prices_nothing() -> None:
    t = parse_table(b"")
    assert t.lookup("m") is None
    assert cost_of(t, "m", split(input=5))["status"] == "unpriced"
    assert parse_table(b"[models]\n").lookup("m") is None


TIERED = """
[models.m]
input = "3"
output = "15"
cache_read = "0.30"
cache_write_5m = "3.75"
cache_write_1h = "6"

[[models.m.tiers]]
above_input_tokens = 200
input = "6"
output = "22.50"

[[models.m.tiers]]
above_input_tokens = 100
input = "4"
cache_read = "0.40"
"""


def test_tiers_highest_exceeded_threshold_wins() -> None:
    t = table(TIERED)
    price = t.lookup("m")
    assert price is not None
    assert price.rates_for(0) == (None, price.rates)
    assert price.rates_for(100) == (None, price.rates)  # not exceeded: the model's rates
    threshold, rates = price.rates_for(101)
    assert threshold == 100 and rates["input"] == Decimal(4)
    assert price.rates_for(200)[0] == 100
    assert price.rates_for(201)[0] == 200
    assert price.rates_for(MAX_TOKEN_COUNT)[0] == 200


def test_a_tiers_absent_rates_are_its_models() -> None:
    price = table(TIERED).lookup("m")
    assert price is not None
    _, above_100 = price.rates_for(150)
    assert above_100 == {
        "input": Decimal(4),
        "output": Decimal(15),
        "cache_read": Decimal("0.40"),
        "cache_write_5m": Decimal("3.75"),
        "cache_write_1h": Decimal(6),
    }
    _, above_200 = price.rates_for(250)
    assert above_200 == {
        "input": Decimal(6),
        "output": Decimal("22.50"),
        "cache_read": Decimal("0.30"),
        "cache_write_5m": Decimal("3.75"),
        "cache_write_1h": Decimal(6),
    }


def test_tiers_compare_with_the_total_input_including_the_cache() -> None:
    t = table(TIERED)
    # 10 uncached + 95 read + 0 written: 105 > 100, though the uncached input alone is not.
    cost = cost_of(t, "m", split(input=10, cache_read=95, output=1))
    assert cost["tier_above_input_tokens"] == 100
    assert exact(cost["usd"]) == Fraction(10 * 4 + 95 * Fraction("0.40") + 15, 10**6)
    cost = cost_of(t, "m", split(input=1, cache_read=50, cache_write_5m=100, cache_write_1h=50))
    assert cost["tier_above_input_tokens"] == 200  # 201 in all
    cost = cost_of(t, "m", split(input=100, output=10**6))
    assert "tier_above_input_tokens" not in cost  # output does not count
    assert exact(cost["usd"]) == Fraction(100 * 3, 10**6) + 15


def test_free_models() -> None:
    t = table('[models."local/*"]\nfree = true\naliases = ["ollama"]\n')
    for name in ("local/llama3", "ollama"):
        assert cost_of(t, name, split(input=10**9, output=10**9)) == {
            "usd": "0",
            "breakdown": {},
            "price_version": t.version,
            "status": "free",
            "priced_as": "local/*",
        }
    price = table('[models.m]\nfree = false\ninput = "1"\noutput = "2"\n').lookup("m")
    assert price is not None and price.free is False


def test_as_of_and_source_are_kept_for_the_reader() -> None:
    t = table('[models.m]\ninput = "1"\noutput = "2"\nas_of = "2025-10-01"\nsource = "https://x"\n')
    assert t.lookup("m") is not None
    dated = table('[models.m]\ninput = "1"\noutput = "2"\nas_of = 2025-10-01\n')  # a TOML date
    assert dated.lookup("m") is not None


# -- refusing bad tables ----------------------------------------------------------------------

M = '[models.m]\ninput = "3"\noutput = "15"\n'
BAD_TABLES = [
    ("float rate", '[models.m]\ninput = 3.0\noutput = "15"\n', "models.m.input", "string"),
    (
        "float rate in a tier",
        M + "[[models.m.tiers]]\nabove_input_tokens = 5\ninput = 0.5\n",
        "models.m.tiers.0.input",
        "string",
    ),
    ("negative string", '[models.m]\ninput = "-1"\noutput = "15"\n', "models.m.input", ""),
    ("negative integer", '[models.m]\ninput = -1\noutput = "15"\n', "models.m.input", ""),
    (
        "above 1000 per million",
        '[models.m]\ninput = "1000.01"\noutput = "15"\n',
        "models.m.input",
        "1000",
    ),
    ("integer above 1000", '[models.m]\ninput = "3"\noutput = 5000\n', "models.m.output", "1000"),
    (
        "tier above 1000",
        M + '[[models.m.tiers]]\nabove_input_tokens = 5\noutput = "2000"\n',
        "models.m.tiers.0.output",
        "",
    ),
    ("exponent", '[models.m]\ninput = "1e-6"\noutput = "15"\n', "models.m.input", "not a price"),
    ("a unit", '[models.m]\ninput = "$3"\noutput = "15"\n', "models.m.input", "not a price"),
    ("empty rate", '[models.m]\ninput = ""\noutput = "15"\n', "models.m.input", ""),
    ("NaN rate", '[models.m]\ninput = "NaN"\noutput = "15"\n', "models.m.input", ""),
    ("bool rate", '[models.m]\ninput = true\noutput = "15"\n', "models.m.input", ""),
    ("unknown model key", M + 'cache_raed = "1"\n', "models.m.cache_raed", ""),
    ("reasoning rate (not a category)", M + 'reasoning = "1"\n', "models.m.reasoning", ""),
    ("unknown top-level key", '[model.m]\ninput = "3"\noutput = "15"\n', "model", ""),
    ("unknown tier key", M + "[[models.m.tiers]]\nabove_tokens = 5\n", "models.m.tiers.0", ""),
    (
        "tier without threshold",
        M + '[[models.m.tiers]]\ninput = "1"\n',
        "models.m.tiers.0.above_input_tokens",
        "",
    ),
    (
        "tier threshold 0",
        M + "[[models.m.tiers]]\nabove_input_tokens = 0\n",
        "models.m.tiers.0.above_input_tokens",
        "",
    ),
    (
        "tier threshold true",
        M + "[[models.m.tiers]]\nabove_input_tokens = true\n",
        "models.m.tiers.0.above_input_tokens",
        "",
    ),
    (
        "tier threshold a string",
        M + '[[models.m.tiers]]\nabove_input_tokens = "200k"\n',
        "models.m.tiers.0.above_input_tokens",
        "",
    ),
    (
        "two tiers, one threshold",
        M + "[[models.m.tiers]]\nabove_input_tokens = 5\n" * 2,
        "models.m",
        "same input size",
    ),
    (
        "free with rates",
        '[models.m]\nfree = true\ninput = "1"\n',
        "models.m",
        "free model has no rates",
    ),
    (
        "free with a zero rate",
        '[models.m]\nfree = true\noutput = "0"\n',
        "models.m",
        "free model has no rates",
    ),
    (
        "free with tiers",
        "[models.m]\nfree = true\n[[models.m.tiers]]\nabove_input_tokens = 5\n",
        "models.m",
        "free model has no rates",
    ),
    ("free not a bool", '[models.m]\nfree = "yes"\n', "models.m.free", ""),
    ("missing output", '[models.m]\ninput = "3"\n', "models.m", "give input and output"),
    ("missing input", '[models.m]\noutput = "3"\n', "models.m", "give input and output"),
    ("nothing at all", "[models.m]\n", "models.m", "give input and output"),
    (
        "alias names another model",
        M + '[models.n]\ninput = "1"\noutput = "1"\naliases = ["M"]\n',
        "models.n",
        "named twice",
    ),
    (
        "names differing in case",
        M + '[models.M]\ninput = "1"\noutput = "1"\n',
        "models.M",
        "named twice",
    ),
    (
        "an alias twice",
        '[models.m]\ninput = "1"\noutput = "1"\naliases = ["a", "A"]\n',
        "models.m",
        "named twice",
    ),
    (
        "alias equal to its own name",
        '[models.m]\ninput = "1"\noutput = "1"\naliases = ["m"]\n',
        "models.m",
        "named twice",
    ),
    (
        "a glob twice",
        '[models."x/*"]\nfree = true\n[models.y]\ninput = "1"\noutput = "1"\naliases = ["X/*"]\n',
        "models.y",
        "named twice",
    ),
    (
        "aliases not a list",
        '[models.m]\ninput = "1"\noutput = "1"\naliases = "m2"\n',
        "models.m.aliases",
        "",
    ),
    ("models not a table", "models = 3\n", "models", ""),
    ("a model not a table", 'models = { m = "3" }\n', "models.m", ""),
    ("not TOML", '[models.m\ninput = "3"\n', "not TOML", ""),
    ("duplicate TOML key", M + 'input = "4"\n', "not TOML", ""),
    ("not UTF-8", b'[models.m]\ninput = "3"\noutput = "\xff"\n', "not TOML", "utf-8"),
]


@pytest.mark.parametrize(
    ("content", "where", "why"),
    [case[1:] for case in BAD_TABLES],
    ids=[case[0] for case in BAD_TABLES],
)
def test_bad_tables_are_refused_saying_where(content: str | bytes, where: str, why: str) -> None:
    raw = content if isinstance(content, bytes) else content.encode()
    with pytest.raises(PriceFileError) as raised:
        parse_table(raw)
    message = str(raised.value)
    assert message.startswith(where), message
    assert why in message, message
    assert isinstance(raised.value, ValueError)


def test_a_refusal_counts_the_other_problems() -> None:
    with pytest.raises(PriceFileError, match=r"^models\.a\.input: .*\(and 2 more\)$"):
        parse_table(
            b'[models.a]\ninput = 1.5\noutput = 2.5\n[models.b]\ninput = "-1"\noutput = "1"\n'
        )


# -- cost_of ----------------------------------------------------------------------------------

PRICED = table(
    '[models.m]\ninput = "3"\noutput = "15"\ncache_read = "0.30"\n'
    'cache_write_5m = "3.75"\ncache_write_1h = "6"\n'
    '[models.tiny]\ninput = "0.000001"\noutput = "0.000001"\n'
    '[models."local/*"]\nfree = true\n'
)


def test_cost_is_exact_and_its_breakdown_adds_up() -> None:
    tokens = split(input=1000, cache_read=20000, cache_write_5m=300, cache_write_1h=400, output=50)
    cost = cost_of(PRICED, "m", tokens)
    assert cost == {
        "usd": "0.013275",
        "breakdown": {
            "input": "0.003",
            "cache_read": "0.006",
            "cache_write_5m": "0.001125",
            "cache_write_1h": "0.0024",
            "output": "0.00075",
        },
        "price_version": PRICED.version,
        "status": "priced",
        "priced_as": "m",
    }
    assert sum(Decimal(v) for v in cost["breakdown"].values()) == Decimal(cost["usd"])


def test_reasoning_is_part_of_output_and_not_priced_again() -> None:
    with_reasoning = cost_of(PRICED, "m", split(output=100, reasoning=80))
    assert with_reasoning == cost_of(PRICED, "m", split(output=100))
    assert set(with_reasoning["breakdown"]) == {"output"}


def test_one_token_at_the_smallest_rate() -> None:
    cost = cost_of(PRICED, "tiny", split(input=1))
    assert cost["usd"] == "0.000000000001"
    assert cost["breakdown"] == {"input": "0.000000000001"}
    assert nano_usd(cost) == 0  # below half a nano-dollar: rounded (half-even) in aggregates


def test_the_largest_count_is_exact() -> None:
    big = MAX_TOKEN_COUNT  # 2**53
    cost = cost_of(PRICED, "m", split(input=big, output=big - 1))
    assert exact(cost["usd"]) == Fraction(big * 3 + (big - 1) * 15, 10**6)
    assert cost["usd"] == "162129586585.337841"
    cost = cost_of(PRICED, "tiny", split(input=big, cache_read=big - 3))
    assert exact(cost["usd"]) == Fraction(2 * big - 3, 10**12)


def test_rates_with_many_decimals_are_exact() -> None:
    """Past the default decimal context's 28 digits: the sum must not be rounded either."""
    t = table('[models.m]\ninput = "1.123456789123"\noutput = "2.123456789127"\n')
    tokens = split(input=MAX_TOKEN_COUNT - 1, output=MAX_TOKEN_COUNT - 7)
    cost = cost_of(t, "m", tokens)
    expected = (
        Fraction("1.123456789123") * (MAX_TOKEN_COUNT - 1)
        + Fraction("2.123456789127") * (MAX_TOKEN_COUNT - 7)
    ) / 10**6
    assert exact(cost["usd"]) == expected
    assert sum(exact(v) for v in cost["breakdown"].values()) == expected


def test_rates_with_forty_decimals_are_exact_at_the_largest_count() -> None:
    rate = "999." + "7" * 40
    t = table("[models.m]\n" + "".join(f'{c} = "{rate}"\n' for c in PRICED_CATEGORIES))
    tokens = split(**{c: MAX_TOKEN_COUNT - 1 for c in PRICED_CATEGORIES})
    cost = cost_of(t, "m", tokens)
    assert exact(cost["usd"]) == 5 * (MAX_TOKEN_COUNT - 1) * Fraction(rate) / 10**6


def rate_texts(max_decimals: int) -> st.SearchStrategy[str]:
    """A rate as a price file writes it: 0 to 999 with up to `max_decimals` decimals."""
    decimals = st.integers(0, max_decimals).flatmap(
        lambda n: st.text("0123456789", min_size=n, max_size=n)
    )
    return st.builds(
        lambda whole, d: f"{whole}.{d}" if d else str(whole), st.integers(0, 999), decimals
    )


RATE = rate_texts(12)
RATE_3 = rate_texts(3)
SPLIT = st.fixed_dictionaries(
    {name: st.integers(0, MAX_TOKEN_COUNT // 4) for name in CATEGORIES}
).map(lambda s: {**s, "reasoning": min(s["reasoning"], s["output"])})


@given(st.fixed_dictionaries({c: RATE for c in PRICED_CATEGORIES}), SPLIT)
def test_cost_is_the_exact_sum_of_tokens_times_rates(rates: dict[str, str], tokens: dict) -> None:
    t = table("[models.m]\n" + "".join(f'{c} = "{r}"\n' for c, r in rates.items()))
    cost = cost_of(t, "m", tokens)
    expected = sum(Fraction(tokens[c]) * Fraction(rates[c]) for c in PRICED_CATEGORIES) / 10**6
    assert exact(cost["usd"]) == expected
    assert sum(exact(v) for v in cost["breakdown"].values()) == expected
    assert set(cost["breakdown"]) == {c for c in PRICED_CATEGORIES if tokens[c]}
    for category, text in cost["breakdown"].items():
        assert exact(text) == Fraction(tokens[category]) * Fraction(rates[category]) / 10**6
    assert no_float(cost)
    assert isinstance(cost["usd"], str)


@given(st.fixed_dictionaries({c: RATE_3 for c in PRICED_CATEGORIES}), SPLIT)
def test_nano_usd_is_exact_for_rates_with_three_decimals(
    rates: dict[str, str], tokens: dict
) -> None:
    t = table("[models.m]\n" + "".join(f'{c} = "{r}"\n' for c, r in rates.items()))
    cost = cost_of(t, "m", tokens)
    nano = nano_usd(cost)
    assert type(nano) is int
    assert Fraction(nano) == exact(cost["usd"]) * 10**9


def test_costs_of_many_records_add_up_in_nano_usd_to_the_exact_total() -> None:
    records = [
        cost_of(PRICED, "m", split(input=n, cache_read=7 * n, cache_write_1h=n // 3, output=n // 2))
        for n in range(1, 500)
    ]
    assert sum(nano_usd(c) for c in records) == sum(exact(c["usd"]) for c in records) * 10**9


def test_unpriced_is_never_zero() -> None:
    for model, tokens in (("unknown", split(input=10)), ("unknown", None), (None, split(input=1))):
        cost = cost_of(PRICED, model, tokens)
        assert cost == {
            "usd": None,
            "breakdown": None,
            "price_version": PRICED.version,
            "status": "unpriced",
        }
        assert nano_usd(cost) is None
    assert cost_of(None, "m", split(input=10)) == {
        "usd": None,
        "breakdown": None,
        "price_version": None,
        "status": "unpriced",
    }


def test_a_priced_model_without_tokens_costs_zero() -> None:
    for tokens in (None, {}, split()):
        cost = cost_of(PRICED, "m", tokens)
        assert cost["status"] == "priced" and cost["usd"] == "0" and cost["breakdown"] == {}
        assert nano_usd(cost) == 0


def test_a_partial_split_prices_what_is_there() -> None:
    cost = cost_of(PRICED, "m", {"input": 10**6, "output": 10**6})
    assert cost["usd"] == "18"
    assert cost["breakdown"] == {"input": "3", "output": "15"}


def test_cost_of_the_split_of_real_usage() -> None:
    """Claude Code's usage priced per category: reads at the read rate, writes at theirs."""
    usage = {
        "input_tokens": 4,
        "cache_read_input_tokens": 30940,
        "cache_creation_input_tokens": 1200,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 1000},
        "output_tokens": 200,
    }
    cost = cost_of(PRICED, "m", split_usage(usage))
    expected = (
        4 * Fraction(3)
        + 30940 * Fraction("0.30")
        + 200 * Fraction("3.75")
        + 1000 * Fraction(6)
        + 200 * Fraction(15)
    ) / 10**6
    assert exact(cost["usd"]) == expected


def test_price_version_follows_the_content() -> None:
    a = parse_table(M.encode())
    assert a.version == parse_table(M.encode()).version
    assert a.version.startswith("sha256:") and len(a.version) == len("sha256:") + 16
    int(a.version.removeprefix("sha256:"), 16)
    assert parse_table((M + "# a comment\n").encode()).version != a.version
    assert parse_table(M.replace('"15"', '"16"').encode()).version != a.version
    assert cost_of(a, "m", split(input=1))["price_version"] == a.version


# -- nano_usd and money_text ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usd", "nano"),
    [
        ("0", 0),
        ("12", 12_000_000_000),
        ("0.000000001", 1),
        ("0.123456789", 123_456_789),
        ("0.0000000005", 0),  # half-even: to the even 0
        ("0.0000000015", 2),  # to the even 2
        ("0.0000000025", 2),
        ("0.00000000250001", 3),
        ("0.0000000004999", 0),
        ("162129586585.337856", 162_129_586_585_337_856_000),
    ],
)
def test_nano_usd(usd: str, nano: int) -> None:
    assert nano_usd({"usd": usd}) == nano


@pytest.mark.parametrize(
    "cost",
    [
        None,
        {},
        "0.1",
        {"usd": None},
        {"usd": 0.5},
        {"usd": 1},
        {"usd": "abc"},
        {"usd": ""},
        {"usd": "NaN"},
        {"usd": "sNaN"},
        {"usd": "Infinity"},
        {"usd": "-1"},
        {"usd": "1e999999"},
    ],
)
def test_nano_usd_of_no_usable_cost(cost: Any) -> None:
    assert nano_usd(cost) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal(0), "0"),
        (Decimal("0.000"), "0"),
        (Decimal("-0"), "0"),
        (Decimal("0E-30"), "0"),
        (Decimal(12), "12"),
        (Decimal(10), "10"),
        (Decimal("100.0"), "100"),
        (Decimal("12.500"), "12.5"),
        (Decimal("1E+3"), "1000"),
        (Decimal("0.0000331"), "0.0000331"),
        (Decimal("3.31E-5"), "0.0000331"),
        (Decimal("1E-12"), "0.000000000001"),
        (Decimal("162129586585.337856"), "162129586585.337856"),
    ],
)
def test_money_text(value: Decimal, text: str) -> None:
    assert money_text(value) == text


@given(
    st.decimals(min_value=0, max_value=10**15, allow_nan=False, allow_infinity=False, places=None)
)
def test_money_text_is_plain_digits_of_the_same_value(value: Decimal) -> None:
    text = money_text(value)
    assert Decimal(text) == value
    assert all(ch.isdigit() or ch == "." for ch in text), text
    assert text == "0" or not text.startswith("0") or text.startswith("0.")
    assert "." not in text or not text.endswith(("0", "."))


# -- PriceBook on a file ----------------------------------------------------------------------

GOOD = b'[models.m]\ninput = "3"\noutput = "15"\n'
GOOD_2 = b'[models.m]\ninput = "4"\noutput = "15"\n'
BAD = b'[models.m]\ninput = 3.0\noutput = "15"\n'
BAD_2 = b'[models.m]\ninput = "3"\n'


def write(path: Path, content: bytes) -> None:
    """Write and make the change visible to a stat even within the clock's granularity."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(content)
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The price table errors logged so far."""
    caplog.set_level(logging.INFO, logger="shared.prices")
    return lambda: [
        r.getMessage()
        for r in caplog.records
        if r.name == "shared.prices" and r.levelno >= logging.ERROR
    ]


def test_book_without_a_path() -> None:
    book = PriceBook(None)
    assert book.refresh() is False
    assert book.table is None and book.error is None and book.load_errors == 0


def test_book_loads_and_picks_up_edits(tmp_path: Path, logged: Callable[[], list[str]]) -> None:
    path = tmp_path / "prices.toml"
    write(path, GOOD)
    book = PriceBook(path)
    assert book.refresh() is True
    assert book.table is not None and book.table.version == parse_table(GOOD).version
    assert book.error is None and book.load_errors == 0
    assert book.refresh() is False  # unchanged: a stat, no read

    write(path, GOOD_2)  # same size, new mtime
    assert len(GOOD_2) == len(GOOD)
    assert book.refresh() is True
    assert book.table.version == parse_table(GOOD_2).version
    assert book.table.lookup("m").rates["input"] == Decimal(4)

    write(path, GOOD_2 + b"# longer\n")
    assert book.refresh() is True

    replacement = tmp_path / "prices.toml.new"  # an atomic replace: a new inode
    replacement.write_bytes(GOOD)
    os.replace(replacement, path)
    assert book.refresh() is True
    assert book.table.version == parse_table(GOOD).version
    assert len(logged()) == 0


@pytest.mark.parametrize("cut", [0, 1, len(GOOD_2) // 2, len(GOOD_2) - 1])
def test_book_never_loads_a_file_caught_mid_write(tmp_path: Path, cut: int) -> None:
    """An edit that truncates the file and writes it (`cat >`, many editors), caught between
    the two: the first read sees the first `cut` bytes, the file is whole by the settle read,
    so nothing is loaded then; the next check loads the whole file. Never the part: an empty
    table would price nothing, a cut one only some models."""
    path = tmp_path / "prices.toml"
    write(path, GOOD)
    waits: list[float] = []
    written_meanwhile: list[bytes] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if written_meanwhile:
            write(path, written_meanwhile.pop())

    book = PriceBook(path, wait=wait)
    assert book.refresh() is True
    good = book.table

    write(path, GOOD_2[:cut])
    written_meanwhile.append(GOOD_2)
    assert book.refresh() is False
    assert book.table is good and book.error is None and book.load_errors == 0
    assert book.refresh() is True
    assert book.table is not None and book.table.version == parse_table(GOOD_2).version
    assert waits == [SETTLE_SECONDS] * 3


def test_book_touched_but_unchanged_keeps_its_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    write(path, GOOD)
    book = PriceBook(path)
    book.refresh()
    table_in_force = book.table
    assert table_in_force is not None
    write(path, GOOD)
    assert book.refresh() is False  # read again, same version: no new table
    assert book.table is not None and book.table.version == table_in_force.version


def test_book_sees_an_edit_in_place_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[models.m]\ninput = "3"\noutput = "15"\n')
    book = PriceBook(path)
    book.refresh()
    before = path.stat()
    path.write_text('[models.m]\ninput = "4"\noutput = "15"\n')  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same mtime tick
    assert book.refresh() is True
    assert book.table is not None and book.table.lookup("m").rates["input"] == Decimal(4)


def test_book_refuses_a_file_too_large_to_read_every_check(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    book = PriceBook(path)
    assert book.refresh() is False and book.table is None
    assert book.error is not None and "larger than" in book.error


def test_book_keeps_the_last_good_table_on_a_bad_edit(
    tmp_path: Path, logged: Callable[[], list[str]]
) -> None:
    path = tmp_path / "prices.toml"
    write(path, GOOD)
    book = PriceBook(path)
    book.refresh()
    good = book.table
    assert good is not None

    write(path, BAD)
    assert book.refresh() is False
    assert book.table is good
    assert book.error is not None and str(path) in book.error and "models.m.input" in book.error
    assert book.load_errors == 1
    assert len(logged()) == 1
    assert "models.m.input" in logged()[0] and good.version in logged()[0]

    for _ in range(3):  # the same bad content, touched again: not logged or counted again
        write(path, BAD)
        assert book.refresh() is False
    assert book.load_errors == 1 and len(logged()) == 1

    write(path, BAD_2)  # another bad content: once more
    assert book.refresh() is False
    assert book.table is good
    assert book.load_errors == 2 and len(logged()) == 2
    assert "give input and output" in (book.error or "")

    write(path, GOOD_2)  # fixed
    assert book.refresh() is True
    assert book.table.version == parse_table(GOOD_2).version
    assert book.error is None
    assert book.load_errors == 2 and len(logged()) == 2

    write(path, BAD_2)  # broken again after the fix, as before: a new failure, said again
    assert book.refresh() is False
    assert book.table.version == parse_table(GOOD_2).version
    assert book.load_errors == 3 and len(logged()) == 3


def test_book_fixed_back_to_the_table_in_force_clears_the_error(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    write(path, GOOD)
    book = PriceBook(path)
    book.refresh()
    write(path, BAD)
    book.refresh()
    assert book.error is not None
    write(path, GOOD)
    assert book.refresh() is False  # the table in force did not change
    assert book.error is None


def test_book_with_a_missing_file_at_start(tmp_path: Path, logged: Callable[[], list[str]]) -> None:
    path = tmp_path / "prices.toml"
    book = PriceBook(path)
    assert book.refresh() is False
    assert book.table is None
    assert book.error is not None and "cannot read" in book.error and str(path) in book.error
    assert book.load_errors == 1 and len(logged()) == 1
    assert "every model unpriced" in logged()[0]
    assert book.refresh() is False  # still missing: not logged or counted again
    assert book.load_errors == 1 and len(logged()) == 1

    write(path, GOOD)  # appears
    assert book.refresh() is True
    assert book.table is not None and book.error is None


def test_book_with_a_bad_file_at_start(tmp_path: Path, logged: Callable[[], list[str]]) -> None:
    path = tmp_path / "prices.toml"
    write(path, b"\xff\xfe not text")
    book = PriceBook(path)
    assert book.refresh() is False
    assert book.table is None and "not TOML" in (book.error or "")
    assert book.load_errors == 1 and len(logged()) == 1


def test_book_keeps_its_table_when_the_file_is_removed(
    tmp_path: Path, logged: Callable[[], list[str]]
) -> None:
    path = tmp_path / "prices.toml"
    write(path, GOOD)
    book = PriceBook(path)
    book.refresh()
    good = book.table
    path.unlink()
    assert book.refresh() is False
    assert book.table is good
    assert book.error is not None and "cannot read" in book.error
    assert book.load_errors == 1 and len(logged()) == 1
    assert book.refresh() is False
    assert book.load_errors == 1

    write(path, GOOD_2)  # back
    assert book.refresh() is True
    assert book.table.version == parse_table(GOOD_2).version
    assert book.error is None


def test_book_run_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    write(path, GOOD)
    book = PriceBook(path)
    book.refresh()

    async def follow() -> str:
        task = asyncio.create_task(book.run(0.01))
        try:
            write(path, GOOD_2)
            for _ in range(500):
                await asyncio.sleep(0.01)
                if book.table is not None and book.table.version != parse_table(GOOD).version:
                    return book.table.version
            raise AssertionError("the edit was not picked up")
        finally:
            task.cancel()

    assert asyncio.run(follow()) == parse_table(GOOD_2).version


# -- the example file -------------------------------------------------------------------------


def test_example_file_parses_and_every_list_price_says_when_and_where_from() -> None:
    content = EXAMPLE.read_bytes()
    t = parse_table(content)
    raw = tomllib.loads(content.decode())["models"]
    assert raw, "the example names no model"
    priced = {name: written for name, written in raw.items() if not written.get("free")}
    assert priced
    for name, written in priced.items():
        assert "as_of" in written and "source" in written, name
        datetime.date.fromisoformat(written["as_of"])
        assert written["source"].startswith("https://"), name
        assert entry(t, name) == name


def test_example_file_prices_claude_code_traffic() -> None:
    t = parse_table(EXAMPLE.read_bytes())
    assert entry(t, "claude-sonnet-4-5-20250929") == "claude-sonnet-4-5"
    local = t.lookup("local/llama3")
    assert local is not None and local.free
    assert cost_of(t, "no-such-model", split(input=1))["status"] == "unpriced"
    for name in ("claude-sonnet-4-5", "claude-haiku-4-5"):
        rates = rates_of(t, name)  # Anthropic's ratios: read 0.1x, 5 min 1.25x, 1 h 2x input
        assert rates["cache_read"] == rates["input"] / 10
        assert rates["cache_write_5m"] == rates["input"] * Decimal("1.25")
        assert rates["cache_write_1h"] == rates["input"] * 2
    long = cost_of(t, "claude-sonnet-4-5", split(input=1000, cache_read=199_001, output=1))
    assert long["tier_above_input_tokens"] == 200000
