"""Key set lifecycle across processes: readiness, persistence confirmation, Redis loss."""

from __future__ import annotations

import time

import httpx
import orjson
import redis

from shared.redis_names import KEYS_HASH
from tests.processes import START_TIMEOUT, free_port, proxy_process, wait_http, wait_until
from tests.system import System


def test_readiness_persistence_and_reload_from_keys_json(redis_url, fake_upstream_url, tmp_path):
    redis.Redis.from_url(redis_url).flushdb()
    system = System(redis_url, fake_upstream_url, tmp_path, PERSIST_CONFIRM_TIMEOUT="0.5")
    system.keys_path.write_bytes(
        orjson.dumps(
            {"keys": [{"api_key": "bsk-from-file-0001", "user_id": "olga", "active": True}]}
        )
    )
    port = free_port()
    proxy = proxy_process("proxy-early", port, system.env, tmp_path).start()
    system.proxies.append(proxy)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/readyz", proxy, status=503)
        assert httpx.get(url + "/readyz").json()["keys_loaded"] is False
        assert httpx.get(url + "/healthz").status_code == 200
        system.start_logger()
        wait_http(url + "/readyz", proxy, status=200)
        headers = {"x-api-key": "bsk-from-file-0001"}
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        assert (
            httpx.post(url + "/v1/chat/completions", json=body, headers=headers).status_code == 200
        )

        system.logger.stop()
        reply = system.upsert("bsk-while-down-01", "pat", url=url)
        assert reply.status_code == 202 and "keys.json was not confirmed" in reply.json()["message"]
        headers_pat = {"x-api-key": "bsk-while-down-01"}
        assert (
            httpx.post(url + "/v1/chat/completions", json=body, headers=headers_pat).status_code
            == 200
        )
        system.start_logger()
        deadline = time.monotonic() + START_TIMEOUT  # the logger's start included
        while "pat" not in system.keys_path.read_text():
            assert time.monotonic() < deadline, (
                "key upserted while the logger was down not persisted"
            )
            time.sleep(0.05)

        redis.Redis.from_url(redis_url).flushdb()  # Redis lost everything
        client = redis.Redis.from_url(redis_url)
        restored = lambda: client.hlen(KEYS_HASH) == 2  # noqa: E731
        wait_until(restored, 10, what="the logger restoring the key set from keys.json")
        for key_headers in (headers, headers_pat):
            assert (
                httpx.post(url + "/v1/chat/completions", json=body, headers=key_headers).status_code
                == 200
            )
    finally:
        system.stop()
