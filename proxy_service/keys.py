"""`python -m proxy_service.keys`: the admin API's key calls from a shell, no curl needed.

    python -m proxy_service.keys create --user alice [--rpm 60] [--tpm 100000]
    python -m proxy_service.keys list
    docker compose exec proxy python -m proxy_service.keys create --user alice

It talks to a running proxy over HTTP, like any admin client. The proxy writes the key set and
the logger writes keys.json, so every replica gets the change. ADMIN_TOKEN comes from the
environment or `.env` (the same settings the proxy reads), and the proxy is reached on
127.0.0.1:PORT unless `--url` says otherwise. A created key is printed once, with what a client
needs; the proxy keeps only its hash.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx
import orjson

from shared.settings import get_settings

TIMEOUT_SECONDS = 15.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    headers = {"x-admin-token": settings.admin_token.get_secret_value()}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT_SECONDS) as client:
            _wait_until_up(client, args.wait)
            return _run(args, client, url)
    except httpx.HTTPError as error:
        print(f"cannot reach the proxy at {url}: {error}", file=sys.stderr)
        return 1


def _wait_until_up(client: httpx.Client, seconds: float) -> None:
    """A proxy started a moment ago (`python -m proxy_service &` on the line before) gets
    `seconds` to start listening; the last error is raised after that."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.get("/healthz")
            return
        except httpx.TransportError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _run(args: argparse.Namespace, client: httpx.Client, url: str) -> int:
    if args.command == "list":
        reply = client.get("/admin/keys")
        if reply.status_code != 200:
            return _refused(reply)
        for key in reply.json()["keys"]:
            state = "active" if key.get("active") else "inactive"
            print(f"{key['key_id']}  {key['user_id']}  {key.get('key_hint', '')}  {state}")
        return 0
    reply = client.post("/admin/keys", json=_new_key(args))
    if reply.status_code not in (200, 201, 202):
        return _refused(reply)
    created = reply.json()
    print(f"key for {created['user_id']} ({created['key_id']}), shown once:\n")
    print(f"    {created['api_key']}\n")
    print(f'OpenAI SDK:    OpenAI(base_url="{url}/v1", api_key="{created["api_key"]}")')
    print(f'Anthropic SDK: Anthropic(base_url="{url}", api_key="{created["api_key"]}")')
    if reply.status_code == 202:
        print("\n(in force now; keys.json will be written when the logger is back)")
    return 0


def _new_key(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {"user_id": args.user}
    if args.rpm is not None:
        fields["rpm_limit"] = args.rpm
    if args.tpm is not None:
        fields["tpm_limit"] = args.tpm
    return fields


def _refused(reply: httpx.Response) -> int:
    """The proxy's own error message, whichever shape it came in."""
    try:
        detail = orjson.loads(reply.content)
        message = (detail.get("error") or {}).get("message") or detail.get("detail") or detail
    except (orjson.JSONDecodeError, AttributeError):
        message = reply.text[:500]
    print(f"the proxy answered {reply.status_code}: {message}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proxy_service.keys",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="the proxy's base URL (default http://127.0.0.1:$PORT)")
    parser.add_argument(
        "--wait", type=float, default=20.0, help="seconds to wait for the proxy to listen"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="a new key for a user, printed once")
    create.add_argument("--user", required=True, help="who the key is for (user_id)")
    create.add_argument("--rpm", type=int, help="requests per minute (default: no limit)")
    create.add_argument("--tpm", type=int, help="tokens per minute (default: no limit)")
    commands.add_parser("list", help="every key: id, user, hint, state (never the key)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
