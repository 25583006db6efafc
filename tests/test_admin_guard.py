"""The throttle of failed admin authentication, on an injected clock. Pure."""

from __future__ import annotations

import logging

import pytest

from proxy_service.admin_guard import AdminGuard, AdminThrottled

ROUTE = "/admin/keys"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(clock: Clock) -> AdminGuard:
    return AdminGuard(allowed=10, window=60.0, max_addresses=100, clock=clock)


def fail(guard: AdminGuard, address: str, times: int) -> None:
    for _ in range(times):
        guard.check(address)
        guard.failed(address, ROUTE)


def retry_after(guard: AdminGuard, address: str) -> int:
    with pytest.raises(AdminThrottled) as caught:
        guard.check(address)
    assert caught.value.status == 429
    return int(caught.value.headers["retry-after"])


def test_ten_failures_pass_then_the_address_is_throttled(guard: AdminGuard):
    fail(guard, "10.0.0.1", 10)
    assert retry_after(guard, "10.0.0.1") == 6
    guard.check("10.0.0.2")


def test_the_allowance_refills_evenly_over_the_window(guard: AdminGuard, clock: Clock):
    fail(guard, "10.0.0.1", 10)
    clock.now += 5.9
    assert retry_after(guard, "10.0.0.1") == 1
    clock.now += 0.1
    fail(guard, "10.0.0.1", 1)
    assert retry_after(guard, "10.0.0.1") == 6
    clock.now += 60
    fail(guard, "10.0.0.1", 10)
    retry_after(guard, "10.0.0.1")


def test_checks_without_failures_cost_nothing(guard: AdminGuard):
    for _ in range(1000):
        guard.check("10.0.0.1")
    fail(guard, "10.0.0.1", 10)


def test_the_number_of_addresses_is_bounded_the_oldest_forgotten(clock: Clock):
    guard = AdminGuard(allowed=1, window=60.0, max_addresses=3, clock=clock)
    for index in range(4):
        fail(guard, f"10.0.0.{index}", 1)
    guard.check("10.0.0.0")
    for index in (1, 2, 3):
        retry_after(guard, f"10.0.0.{index}")


def test_one_line_per_failure_and_one_when_throttled(guard: AdminGuard, caplog):
    caplog.set_level(logging.WARNING, logger="proxy_service.admin_guard")
    fail(guard, "10.0.0.1", 10)
    for _ in range(5):
        retry_after(guard, "10.0.0.1")
    lines = [record.getMessage() for record in caplog.records]
    assert sum("admin authentication failed from 10.0.0.1 on /admin/keys" in x for x in lines) == 10
    assert sum("10.0.0.1 throttled" in line for line in lines) == 1 and len(lines) == 11
