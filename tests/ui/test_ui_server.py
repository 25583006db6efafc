"""The dashboard's server side through real proxy and logger processes over HTTP: sessions,
login throttling, CSRF and origin checks, the headers on every response, /me's binding to one
key, and the Usage downloads equal to GET /admin/usage."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import httpx
import pytest
import redis

from proxy_service.ui.security import CONTENT_SECURITY_POLICY
from shared.redis_names import UI_SESSION_PREFIX
from tests.processes import ADMIN_TOKEN, wait_until
from tests.system import System, running_system
from tests.ui.dashboard import ADMIN_COOKIE, ME_COOKIE, Dashboard

OTHER_TOKEN = "a-different-admin-token-0123456789"
FAILURES_ALLOWED = 3


@pytest.fixture(scope="module")
def system(redis_url, fake_upstream_url, tmp_path_factory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("ui-server")
    settings = {"UI_LOGIN_FAILURES_PER_MINUTE": str(FAILURES_ALLOWED)}
    with running_system(redis_url, fake_upstream_url, root, 2, **settings) as running:
        yield running


@pytest.fixture
def ui(system) -> Iterator[Dashboard]:
    redis.Redis.from_url(system.env["REDIS_URL"]).delete(
        *redis.Redis.from_url(system.env["REDIS_URL"]).keys("b23:ui:login-failures:*") or ["-"]
    )
    dashboard = Dashboard(system.url)
    yield dashboard
    dashboard.close()


def new_key(system: System, **settings) -> dict:
    response = httpx.post(
        system.url + "/admin/keys",
        headers={"x-admin-token": ADMIN_TOKEN},
        json={"user_id": "ui-user", **settings},
    )
    assert response.status_code == 201, response.text
    return response.json()


def chat(system: System, api_key: str, model: str = "fake-model") -> httpx.Response:
    return httpx.post(
        system.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {api_key}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
    )


def test_login_sets_a_host_only_secure_http_only_strict_cookie(ui):
    response = ui.login()
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    (header,) = [h for h in response.headers.get_list("set-cookie") if h.startswith(ADMIN_COOKIE)]
    parts = {p.strip().split("=")[0].lower() for p in header.split(";")}
    assert {"secure", "httponly", "path", "samesite"} <= parts and "domain" not in parts
    assert "samesite=strict" in header.lower() and "path=/;" in header.lower() + ";"
    assert ui.get("/ui/").status_code == 200


def test_the_session_lives_in_redis_under_a_hash_never_the_id(system, ui):
    ui.login()
    session_id = ui.cookies[ADMIN_COOKIE]
    store = redis.Redis.from_url(system.env["REDIS_URL"])
    keys = store.keys(UI_SESSION_PREFIX + "*")
    assert keys and all(session_id.encode() not in k for k in keys)
    assert all(session_id.encode() not in store.get(k) for k in keys)
    assert ADMIN_TOKEN.encode() not in b"".join(store.get(k) for k in keys)


def test_a_session_opened_on_one_replica_works_on_the_other(system, ui):
    ui.login()
    other = Dashboard(system.proxy_urls[1])
    other.cookies = dict(ui.cookies)
    assert other.get("/ui/keys").status_code == 200
    other.close()


def test_logout_ends_the_session_and_the_old_cookie_is_refused(ui):
    ui.login()
    old = dict(ui.cookies)
    response = ui.post("/ui/logout", {"csrf": ui.csrf()})
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    ui.cookies = old
    replay = ui.get("/ui/keys")
    assert replay.status_code == 303 and replay.headers["location"].startswith("/ui/login")
    assert ui.post("/ui/keys", {"csrf": "x", "user_id": "u"}).status_code == 401


@pytest.mark.parametrize(
    "case",
    ["no token", "wrong token", "other origin", "cross-site fetch", "no origin at all"],
)
def test_a_post_without_the_csrf_token_or_from_elsewhere_is_refused(system, ui, case):
    ui.login()
    token = ui.csrf()
    before = len(
        httpx.get(system.url + "/admin/keys", headers={"x-admin-token": ADMIN_TOKEN}).json()["keys"]
    )
    data = {"user_id": f"csrf-{case}", "csrf": token}
    headers: dict[str, str] = {}
    if case == "no token":
        del data["csrf"]
    elif case == "wrong token":
        data["csrf"] = token[:-2] + "xx"
    elif case == "other origin":
        headers["Origin"] = "http://evil.example"
    elif case == "cross-site fetch":
        headers["Sec-Fetch-Site"] = "cross-site"
    response = (
        ui.post("/ui/keys", data, **headers)
        if case != "no origin at all"
        else (
            ui.client.post(
                "/ui/keys",
                data=data,
                headers={"Cookie": f"{ADMIN_COOKIE}={ui.cookies[ADMIN_COOKIE]}"},
            )
        )
    )
    assert response.status_code == 403, response.text
    after = httpx.get(system.url + "/admin/keys", headers={"x-admin-token": ADMIN_TOKEN}).json()
    assert len(after["keys"]) == before
    assert ui.post("/ui/keys", {"user_id": f"ok-{case}", "csrf": token}).status_code == 200


def test_failed_logins_are_throttled_across_replicas_and_never_log_the_secret(system, ui):
    guesses = [f"wrong-guess-number-{n}-abcdef" for n in range(FAILURES_ALLOWED)]
    for guess in guesses:
        assert ui.login(guess).status_code == 401
    other = Dashboard(system.proxy_urls[1])
    refused = other.login(ADMIN_TOKEN)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) <= 60
    assert ui.login_me("bsk-not-a-key-at-all-0000000000000").status_code == 429
    other.close()
    logs = system.logs()
    assert "login failed from 127.0.0.1" in logs
    assert not any(secret in logs for secret in [*guesses, ADMIN_TOKEN])


def test_changing_the_admin_token_ends_every_session(system, ui):
    ui.login()
    rotated_url = system.start_proxy(ADMIN_TOKEN=OTHER_TOKEN)
    rotated = Dashboard(rotated_url)
    rotated.cookies = dict(ui.cookies)
    refused = rotated.get("/ui/")
    assert refused.status_code == 303 and refused.headers["location"].startswith("/ui/login")
    # ended for good, not just on that replica: the session is gone from Redis
    assert ui.get("/ui/").status_code == 303
    assert rotated.login(ADMIN_TOKEN).status_code == 401
    assert rotated.login(OTHER_TOKEN).status_code == 303
    rotated.close()
    system.proxies.pop().stop()
    system.proxy_urls.pop()


def test_me_shows_one_key_and_ends_when_the_key_is_revoked(system, ui):
    mine, theirs = new_key(system), new_key(system, user_id="someone-else")
    assert chat(system, mine["api_key"], "model-of-mine").status_code == 200
    assert chat(system, theirs["api_key"], "model-of-theirs").status_code == 200
    wait_until(lambda: len(system.events()) >= 2, 10, what="records")
    assert ui.login_me(mine["api_key"]).status_code == 303
    page = wait_until(
        lambda: (p := ui.get("/me/")).status_code == 200 and "model-of-mine" in p.text and p,
        10,
        what="my request on /me",
    )
    assert mine["key_id"] in page.text
    assert theirs["key_id"] not in page.text and "model-of-theirs" not in page.text
    assert mine["api_key"] not in page.text
    assert ui.get("/ui/").status_code == 303, "a key holder's session is no admin session"
    httpx.delete(
        system.url + f"/admin/keys/{mine['key_id']}", headers={"x-admin-token": ADMIN_TOKEN}
    )
    wait_until(lambda: ui.get("/me/").status_code == 303, 5, what="/me refused")
    assert ui.get("/me/").headers["location"].startswith("/me/login")


def test_an_admin_session_does_not_open_me(ui):
    ui.login()
    ui.cookies[ME_COOKIE] = ui.cookies[ADMIN_COOKIE]
    assert ui.get("/me/").status_code == 303


def test_me_login_refuses_a_wrong_or_inactive_key(system, ui):
    key = new_key(system, active=False)
    assert ui.login_me(key["api_key"]).status_code == 401
    assert ui.login_me(key["api_key"] + "x").status_code == 401


PAGES = [
    "/ui/",
    "/ui/keys",
    "/ui/usage",
    "/ui/usage?group_by=model,user",
    "/ui/requests",
    "/ui/models",
]


@pytest.mark.parametrize(
    "path,signed_in,status",
    [
        *[(p, True, 200) for p in PAGES],
        *[(p, False, 303) for p in PAGES],
        ("/ui/login", False, 200),
        ("/me/login", False, 200),
        ("/me/", False, 303),
        ("/ui/keys/no-such-key", True, 404),
        ("/ui/no-such-page", True, 404),
        ("/ui/usage?since=yesterday-ish", True, 400),
        ("/ui/requests?before=not-a-cursor", True, 400),
        ("/ui/usage.csv", True, 200),
        ("/ui/usage.json", True, 200),
        ("/ui/static/app.css", False, 200),
        ("/ui/static/app.js", False, 200),
        ("/ui/static/vendor/uPlot.iife.min.js", False, 200),
        ("/ui/static/missing.js", False, 404),
    ],
)
def test_every_ui_response_carries_the_security_headers(ui, path, signed_in, status):
    if signed_in:
        ui.login()
    response = ui.get(path)
    assert response.status_code == status, response.text[:300]
    headers = response.headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    static = path.startswith("/ui/static/")
    assert headers["cache-control"] == ("public, max-age=3600" if static else "no-store")


def test_posted_pages_and_refusals_carry_the_headers_too(ui):
    for response in (
        ui.post("/ui/login", {"token": "wrong-but-long-enough-token"}),
        ui.post("/ui/keys", {"user_id": "x"}),
        ui.post("/me/login", {"api_key": "nope"}),
    ):
        assert response.status_code in (401, 403, 429)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["cache-control"] == "no-store"


def test_the_rest_of_the_gateway_is_unchanged_by_the_dashboard(system):
    response = httpx.get(system.url + "/admin/keys", headers={"x-admin-token": ADMIN_TOKEN})
    assert "content-security-policy" not in response.headers
    assert httpx.get(system.url + "/nope").json()["error"]["code"]


def test_a_big_form_is_refused_without_harm(ui):
    ui.login()
    response = ui.post("/ui/keys", {"csrf": ui.csrf(), "user_id": "x" * 70_000})
    assert response.status_code == 413
    assert ui.get("/ui/keys").status_code == 200


def test_a_bad_limit_shows_the_form_again_with_the_reason(ui):
    ui.login()
    response = ui.post("/ui/keys", {"csrf": ui.csrf(), "user_id": "bad", "rpm_limit": "lots"})
    assert response.status_code == 400
    assert "rpm_limit" in response.text and 'value="lots"' in response.text


@pytest.mark.parametrize("group_by", ["day", "model", "user,key", "model,client_app", "key,day"])
def test_the_csv_download_equals_the_admin_usage_json(system, ui, group_by):
    key = new_key(system)
    for model in ("csv-model-a", "csv-model-b", "=SUM(A1)"):
        assert chat(system, key["api_key"], model).status_code == 200
    wait_until(
        lambda: (
            httpx.get(
                system.url + "/admin/usage",
                params={"since": "1d", "key_id": key["key_id"]},
                headers={"x-admin-token": ADMIN_TOKEN},
            ).json()["totals"]["requests"]
            == 3
        ),
        10,
        what="usage counted",
    )
    ui.login()
    params = {"since": "1d", "group_by": group_by}
    expected = httpx.get(
        system.url + "/admin/usage", params=params, headers={"x-admin-token": ADMIN_TOKEN}
    ).json()
    as_json = ui.client.get("/ui/usage.json", params=params, headers=ui.headers()).json()
    assert as_json == expected
    text = ui.client.get("/ui/usage.csv", params=params, headers=ui.headers()).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(expected["groups"])
    for row, group in zip(rows, expected["groups"], strict=True):
        for name, value in group["key"].items():
            shown = row[name]
            assert (shown[1:] if shown.startswith("'=") else shown) == (value or "")
        for counter in ("requests", "errors", "input_tokens", "output_tokens", "cost_usd"):
            assert row[counter] == str(group[counter])
    assert not any(row.get("model", "").startswith("=") for row in rows), "formula not quoted"


def test_redis_down_is_a_503_page_with_the_headers_not_a_crash(
    private_redis, fake_upstream_url, tmp_path
):
    with running_system(private_redis.url, fake_upstream_url, tmp_path / "system") as system:
        dashboard = Dashboard(system.url)
        assert dashboard.login().status_code == 303
        private_redis.stop()
        try:
            down = dashboard.get("/ui/keys")
            assert down.status_code == 503 and "Redis does not answer" in down.text
            assert down.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        finally:
            private_redis.start()
        # Redis came back empty: the session went with it; signing in again works
        wait_until(lambda: dashboard.login().status_code == 303, 15, what="sign-in again")
        assert dashboard.get("/ui/keys").status_code == 200
        dashboard.close()
