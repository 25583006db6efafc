"""Steady requests through a running gateway, to measure what clients see during a restart.

    .venv/bin/python scripts/probe_requests.py --key bsk-... --seconds 40

One chat completion every `--every` seconds, one at a time; at the end, how many failed (by
status or error) and the longest span in which every request failed.
"""

from __future__ import annotations

import argparse
import collections
import time

import httpx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8866")
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--every", type=float, default=0.02)
    args = parser.parse_args()
    body = {"model": args.model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {args.key}"}
    outcomes: list[tuple[float, int | str]] = []
    end = time.monotonic() + args.seconds
    with httpx.Client(timeout=5) as client:
        while (started := time.monotonic()) < end:
            try:
                status: int | str = client.post(
                    f"{args.url}/v1/chat/completions", json=body, headers=headers
                ).status_code
            except httpx.HTTPError as error:
                status = type(error).__name__
            outcomes.append((started, status))
            time.sleep(max(0.0, args.every - (time.monotonic() - started)))
    failed = collections.Counter(str(status) for _, status in outcomes if status != 200)
    longest, since = 0.0, None
    for at, status in outcomes:
        if status != 200:
            since = at if since is None else since
        elif since is not None:
            longest, since = max(longest, at - since), None
    print(f"requests {len(outcomes)}, failed {sum(failed.values())} {dict(failed)}")
    print(f"longest failing span {longest:.2f} s")


if __name__ == "__main__":
    main()
