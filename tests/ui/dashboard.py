"""Signing in to a running system's dashboard over plain HTTP (no browser), as tests need."""

from __future__ import annotations

import re

import httpx

from tests.processes import ADMIN_TOKEN

ADMIN_COOKIE = "__Host-b23_admin"
ME_COOKIE = "__Host-b23_me"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


def cookie_of(response: httpx.Response, name: str) -> str:
    """The value a Set-Cookie of `response` gives `name` (httpx keeps no Secure cookie over
    plain HTTP, so tests carry it by hand, as a browser on localhost would)."""
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(name + "="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise AssertionError(f"no {name} cookie in {response.headers.get_list('set-cookie')}")


class Dashboard:
    """An httpx client of one proxy's /ui and /me with a session cookie once signed in."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, follow_redirects=False, timeout=10)
        self.cookies: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()

    def headers(self, **extra: str) -> dict[str, str]:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return {"Origin": self.url, **({"Cookie": cookie} if cookie else {}), **extra}

    def login(self, token: str = ADMIN_TOKEN) -> httpx.Response:
        response = self.client.post("/ui/login", data={"token": token}, headers=self.headers())
        if response.status_code == 303:
            self.cookies[ADMIN_COOKIE] = cookie_of(response, ADMIN_COOKIE)
        return response

    def login_me(self, api_key: str) -> httpx.Response:
        response = self.client.post("/me/login", data={"api_key": api_key}, headers=self.headers())
        if response.status_code == 303:
            self.cookies[ME_COOKIE] = cookie_of(response, ME_COOKIE)
        return response

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.client.get(path, headers=self.headers(**headers))

    def csrf(self, path: str = "/ui/keys") -> str:
        page = self.get(path)
        assert page.status_code == 200, page.text
        match = CSRF_FIELD.search(page.text)
        assert match, "no CSRF field on " + path
        return match[1]

    def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        return self.client.post(path, data=data, headers=self.headers(**headers))
