"""The dashboard's pure parts, with no server: what its cards and tables compute from the
usage cells (the same as GET /admin/usage for the same window), the price stub it offers, where
a login may send the browser, the form-to-settings mapping, the CSV cell quoting, the Requests
filters, and that every template autoescapes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from proxy_service.key_admin import CreateKey, PatchKey
from proxy_service.ui import overview
from proxy_service.ui.access import safe_next
from proxy_service.ui.pages import _csv_cell, notice_of
from proxy_service.ui.recent import recent_filter
from proxy_service.ui.render import environment
from proxy_service.ui.views import key_status, matches, near_limits, setting_fields
from shared.prices import parse_table
from shared.usage import Tally, tally_records
from tests.usage_data import HOUR, random_records

NOW = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def cells_of(records):
    tallies: dict = {}
    tally_records(records, tallies)
    return list(tallies.items())


RECORDS = random_records(3000, seed=3, start_ms=NOW_MS - 40 * 24 * HOUR, hours=40 * 24)
CELLS = cells_of(RECORDS)


def plain_count(since_ms: int, **match) -> tuple[int, int]:
    """(requests, errors) of the records from since_ms to now matching, counted one by one."""
    chosen = [
        r
        for r in RECORDS
        if isinstance(r.get("started_at_ms"), int)
        and since_ms // HOUR * HOUR <= r["started_at_ms"] <= NOW_MS
        and all(r.get(k) == v for k, v in match.items())
    ]
    tally = Tally()
    for record in chosen:
        tally.add_record(record)
    return tally.counts["requests"], tally.counts["errors"]


@pytest.mark.parametrize(
    "filters", [{}, {"user_id": "alice"}, {"key_id": "key_b1"}, {"model": "gpt-4o"}]
)
def test_the_cards_count_what_the_records_hold_in_each_window(filters):
    for card, (label, since) in zip(
        overview.cards(CELLS, NOW, filters), overview.window_starts(NOW), strict=True
    ):
        assert card["label"] == label
        requests, errors = plain_count(since * 1000, **filters)
        assert (card["requests"], card["errors"]) == (requests, errors)
        rate = f"{100 * errors / requests:.1f}%" if requests else "–"
        assert card["error_rate"] == rate


def test_today_starts_at_utc_midnight_and_the_windows_are_7_and_30_days():
    starts = dict(overview.window_starts(NOW))
    assert starts["Today"] == int(datetime(2026, 3, 10, tzinfo=UTC).timestamp())
    assert starts["7 days"] == int(datetime(2026, 3, 4, tzinfo=UTC).timestamp())
    assert starts["30 days"] == int(datetime(2026, 2, 9, tzinfo=UTC).timestamp())
    assert overview.month_start(NOW) == starts["30 days"]


def test_daily_rows_have_every_day_including_empty_ones_and_add_up():
    since = overview.month_start(NOW)
    sparse = [c for c in CELLS if datetime.fromtimestamp(c[0][0] * 3600, UTC).day % 3]
    rows = overview.daily(sparse, NOW, since)
    assert len(rows) == 30 and rows[0]["day"] == "2026-02-09" and rows[-1]["day"] == "2026-03-10"
    assert any(row["requests"] == 0 for row in rows)
    total = overview.report(sparse, overview.query(since, NOW, "day"))["totals"]["requests"]
    assert sum(row["requests"] for row in rows) == total
    chart = overview.chart(rows, overview.CHART_TOKENS)
    assert len(chart["x"]) == 30 and chart["x"] == sorted(chart["x"])
    assert [s["label"] for s in chart["series"]] == [label for _, label in overview.CHART_TOKENS]
    spend = overview.spend_chart(rows)
    assert spend["series"][0]["values"] == [float(row["cost_usd"]) for row in rows]


@pytest.mark.parametrize("by,name", [("key", "key_id"), ("user", "user_id"), ("model", "model")])
def test_top_groups_are_the_busiest_first_and_at_most_ten(by, name):
    since = overview.month_start(NOW)
    top = overview.top(CELLS, NOW, since, by)
    assert 0 < len(top) <= overview.TOP
    counts = [g["requests"] for g in top]
    assert counts == sorted(counts, reverse=True)
    most = max(plain_count(since * 1000, **{name: v})[0] for v in {r.get(name) for r in RECORDS})
    assert top[0]["requests"] == most


def test_unpriced_models_are_those_with_unpriced_requests():
    since = overview.month_start(NOW)
    found = overview.unpriced_models(CELLS, NOW, since)
    assert found and all(g["unpriced_requests"] > 0 for g in found)
    priced = {g["key"]["model"] for g in found}
    assert "local-llm" not in priced, "a free model is priced, not unpriced"


@given(st.text(min_size=1, max_size=80))
def test_the_price_stub_parses_and_prices_exactly_that_model(model):
    table = parse_table(overview.price_stub(model).encode())
    assert table.lookup(model) is not None
    assert table.lookup(model + "x") is None, "a stub prices that model only"


@pytest.mark.parametrize(
    "role,value,expected",
    [
        ("admin", None, "/ui/"),
        ("admin", "/ui/keys?q=a", "/ui/keys?q=a"),
        ("admin", "https://evil.example/ui/", "/ui/"),
        ("admin", "//evil.example", "/ui/"),
        ("admin", "/ui/\\evil", "/ui/"),
        ("admin", "/me/", "/ui/"),
        ("me", "/ui/keys", "/me/"),
        ("me", "/me/", "/me/"),
        ("me", "javascript:alert(1)", "/me/"),
    ],
)
def test_after_login_the_browser_goes_only_to_a_page_of_its_area(role, value, expected):
    assert safe_next(role, value) == expected


def test_an_empty_field_is_left_out_on_create_and_clears_on_edit():
    form = {"rpm_limit": "1,000", "tpm_limit": "", "budget_usd_daily": "2.50", "csrf": "x"}
    created = setting_fields(form, clear_empty=False)
    assert created == {"rpm_limit": "1000", "budget_usd_daily": "2.50"}
    assert CreateKey.model_validate({"user_id": "u", **created}).rpm_limit == 1000
    edited = setting_fields(form, clear_empty=True)
    assert edited["tpm_limit"] is None
    assert PatchKey.model_validate(edited).model_fields_set >= {"tpm_limit", "rpm_limit"}


@pytest.mark.parametrize(
    "view,status",
    [
        ({"active": True, "expires_at": None}, "active"),
        ({"active": False, "expires_at": None}, "inactive"),
        ({"active": True, "expires_at": "2020-01-01T00:00:00Z"}, "expired"),
        ({"active": True, "expires_at": "2099-01-01T00:00:00+00:00"}, "active"),
    ],
)
def test_key_status(view, status):
    assert key_status(view) == status


def test_near_limits_lists_each_limit_and_budget_at_or_over_the_warning():
    view = {
        "key_id": "k",
        "user_id": "u",
        "budgets": {"budget_usd_daily": {"percent": 80.0}, "budget_usd_monthly": {"percent": 79.9}},
    }
    limits = {"rpm_limit": {"limit": 10, "used": 10}, "tpm_limit": {"limit": 1000, "used": 10}}
    rows = near_limits(view, limits, 80)
    assert [(r["label"], r["percent"]) for r in rows] == [
        ("requests/min", 100.0),
        ("spend today", 80.0),
    ]


def test_search_is_case_blind_over_id_user_hint_and_metadata():
    view = {
        "key_id": "key_1",
        "user_id": "Alice",
        "key_hint": "bsk-…xyz",
        "metadata": {"team": "Data"},
    }
    assert all(matches(view, text) for text in ("", "alice", "KEY_1", "xyz", "data"))
    assert not matches(view, "bob")


@pytest.mark.parametrize(
    "value,shown",
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "'+1"),
        ("-x", "'-x"),
        ("@a", "'@a"),
        ("gpt", "gpt"),
        (None, ""),
    ],
)
def test_a_csv_cell_that_a_spreadsheet_would_run_is_quoted(value, shown):
    assert _csv_cell(value) == shown


def test_a_notice_comes_from_a_code_never_from_the_url_text():
    assert notice_of("saved", "0") == "Saved."
    assert "not yet confirmed" in notice_of("saved", "1")
    assert notice_of("Your key leaked: go to evil.example", "0") == ""


@pytest.mark.parametrize(
    "status,kept",
    [
        ("4xx", (4, None)),
        ("5", (5, None)),
        ("2XX", (2, None)),
        ("client_aborted", (None, "client_aborted")),
    ],
)
def test_the_requests_status_filter(status, kept):
    chosen = recent_filter({"status": status})
    assert (chosen.status_class, chosen.outcome) == kept


@pytest.mark.parametrize("status", ["42", "6xx", "ok", "<b>"])
def test_a_bad_status_filter_is_an_error(status):
    with pytest.raises(ValueError):
        recent_filter({"status": status})


def test_every_template_autoescapes_what_it_is_given():
    assert environment.autoescape is True
    attack = "<img src=x onerror=alert(1)>"
    html = environment.from_string("{{ value }} {{ data|json_attribute }}").render(
        value=attack, data={"label": attack}
    )
    assert "<img" not in html and "&lt;img" in html
    assert isinstance(environment.filters["json_attribute"]({"a": "<"}), Markup)


def test_a_day_and_model_report_stacks_the_largest_models_and_groups_the_rest():
    since = overview.month_start(NOW)
    groups = overview.report(CELLS, overview.query(since, NOW, "day,model"))["groups"]
    rows, columns, chart = overview.stacked_by(groups, "model")
    models = {g["key"]["model"] for g in groups}
    assert len(columns) == min(len(models), overview.STACKED_SERIES) + (
        len(models) > overview.STACKED_SERIES
    )
    for row in rows:
        day_groups = [g for g in groups if g["key"]["day"] == row["day"]]
        assert sum(row[name] for name, _ in columns) == sum(map(overview.group_tokens, day_groups))
    assert [s["label"] for s in chart["series"]] == [label for _, label in columns]
    assert "(none)" in {label for _, label in columns}, "a request without a model is a series"


def test_more_values_than_series_fold_into_other():
    groups = [
        {
            "key": {"day": "2026-03-01", "user_id": f"u{n}"},
            **dict.fromkeys([name for name, _ in overview.CHART_TOKENS], n),
        }
        for n in range(12)
    ]
    rows, columns, _ = overview.stacked_by(groups, "user_id")
    assert columns[-1] == ("other", "other") and len(columns) == overview.STACKED_SERIES + 1
    assert columns[0][1] == "u11", "largest first"
    tokens = len(overview.CHART_TOKENS)
    assert rows[0]["other"] == tokens * sum(range(4)), "u0..u3 are the smallest"


def test_the_requests_time_filter_takes_ages_and_instants():
    now_ms = 1_800_000_000_000
    chosen = recent_filter({"since": "2h", "until": "1h"}, now_ms)
    assert (chosen.since_ms, chosen.until_ms) == (now_ms - 7_200_000, now_ms - 3_600_000)
    assert recent_filter({"since": "2026-12-01T00:00:00Z"}, now_ms).since_ms == 1_796_083_200_000
    with pytest.raises(ValueError, match="since"):
        recent_filter({"since": "last tuesday"}, now_ms)
