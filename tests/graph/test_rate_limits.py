"""The buckets of graph/rate_limits.py: in the worker (with a clock of the test's own), in the
real Redis (shared by clients as by workers, under concurrent takes), and without Redis.

The Redis tests use TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of
their own, removed afterwards. When nothing answers there they are skipped with that reason
(shown in the summary, `-ra`), unless TEST_REDIS=required, which makes that a failure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from graph.rate_limits import (
    KEY_PREFIX,
    Limiters,
    LocalBuckets,
    RateLimiter,
    RedisBuckets,
    RedisHealth,
    Rule,
    address_key,
    email_key,
    principal_key,
    throttled_error,
)
from graph.settings import Settings

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# In the worker ---------------------------------------------------------------------------


def test_take_until_empty_then_refuse_without_taking() -> None:
    clock = Clock()
    buckets = LocalBuckets(Rule(2000.0, 100.0), clock=clock)
    first = buckets.take("user:1", 1500)
    assert (first.allowed, first.currently_available, first.retry_after) == (True, 500.0, 0.0)
    refused = buckets.take("user:1", 700)
    assert (refused.allowed, refused.currently_available) == (False, 500.0)
    assert refused.retry_after == pytest.approx(2.0)
    # Nothing was taken by the refusal.
    assert buckets.take("user:1", 500).allowed
    assert buckets.take("user:1", 1).allowed is False
    # Other keys have buckets of their own.
    assert buckets.take("user:2", 2000).currently_available == 0.0


def test_points_come_back_at_the_restore_rate_up_to_the_maximum() -> None:
    clock = Clock()
    buckets = LocalBuckets(Rule(2000.0, 100.0), clock=clock)
    buckets.take("k", 2000)
    clock.now += 2.5
    assert buckets.take("k", 0).currently_available == pytest.approx(250.0)
    clock.now += 1000
    assert buckets.take("k", 0).currently_available == 2000.0
    # A full bucket is not kept.
    assert buckets.levels == {}


def test_a_cost_over_the_maximum_never_passes() -> None:
    buckets = LocalBuckets(Rule(10.0, 1.0), clock=Clock())
    refused = buckets.take("k", 11)
    assert refused.allowed is False and refused.retry_after == math.inf


def test_give_back() -> None:
    clock = Clock()
    buckets = LocalBuckets(Rule(10.0, 1.0), clock=clock)
    buckets.take("k", 8)
    assert buckets.give_back("k", 3) == 5.0
    assert buckets.give_back("k", 100) == 10.0
    assert "k" not in buckets.levels


def test_memory_is_bounded_full_buckets_go_first() -> None:
    clock = Clock()
    buckets = LocalBuckets(Rule(10.0, 1.0), max_keys=100, clock=clock)
    for i in range(100):
        buckets.take(f"idle{i}", 5)
    clock.now += 10  # all of them full again
    buckets.take("busy0", 5)
    assert set(buckets.levels) == {"busy0"}
    buckets.take("busy1", 5)
    assert set(buckets.levels) == {"busy0", "busy1"}
    # Only active buckets: the least recently used are dropped, down to nine tenths.
    for i in range(2, 100):
        buckets.take(f"busy{i}", 5)
    buckets.take("busy0", 1)
    buckets.take("busy100", 5)
    assert len(buckets.levels) == 90
    assert {"busy0", "busy100"} <= set(buckets.levels)
    assert "busy1" not in buckets.levels


def test_keys_for_log_in() -> None:
    assert email_key(" Ada@Example.com ") == email_key("ada@example.com")
    assert "ada" not in email_key("ada@example.com")
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("10.0.0.1") == "10.0.0.1"
    assert address_key(None) == "unknown"


def test_principal_keys() -> None:
    assert principal_key(7, None, "10.0.0.1") == "user:7"
    assert principal_key(None, 3, "10.0.0.1") == "key:3"
    assert principal_key(None, None, "2001:db8::1") == "address:2001:db8::/64"


def test_throttled_error() -> None:
    limiter = LocalBuckets(Rule(100.0, 10.0), clock=Clock())
    limiter.take("k", 95)
    throttle = limiter.take("k", 20)
    error = throttled_error(20, throttle)
    assert error.message == (
        "Throttled: the query costs 20 points and 5.0 are available; retry in 1.5 seconds."
    )
    assert error.extensions == {"code": "RATE_LIMITED", "retryAfter": 1.5}


async def test_without_redis_the_worker_s_buckets_are_used_and_it_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on port 1: connections are refused at once.
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    health = RedisHealth()
    limiter = RateLimiter(Rule(10.0, 1.0), redis=client, health=health)
    try:
        with caplog.at_level(logging.WARNING, logger="graph.rate_limits"):
            first = await limiter.take("k", 6)
            second = await limiter.take("k", 6)
    finally:
        await client.aclose()
    assert first.allowed and first.currently_available == pytest.approx(4.0, abs=0.01)
    assert second.allowed is False
    assert health.down and not health.usable()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # Once, not per request.
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()


def test_limiters_from_settings() -> None:
    base = {"database_url": "postgresql://x/y"}
    limiters = Limiters.from_settings(Settings(**base))  # type: ignore[arg-type]
    assert limiters.redis is None and limiters.enabled
    assert limiters.cost.rule == Rule(2000.0, 100.0)
    assert limiters.auth.per_email.rule == Rule(10.0, 10 / 900)
    assert limiters.auth.per_address.rule == Rule(30.0, 30 / 900)
    with pytest.raises(ValueError, match="MAX_QUERY_COST"):
        Settings(**base, max_query_cost=3000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Redis URL"):
        Settings(**base, redis_url="http://x")  # type: ignore[arg-type]


# In Redis --------------------------------------------------------------------------------


async def _client() -> Redis:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        await client.ping()
    except (RedisConnectionError, OSError) as exc:
        await client.aclose()
        if os.environ.get("TEST_REDIS") == "required":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable ({exc}) and TEST_REDIS=required")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); TEST_REDIS=required fails")
    return client


@pytest.fixture
async def redis_clients() -> AsyncIterator[tuple[Redis, Redis]]:
    """Two clients of their own, as two workers would have."""
    one, two = await _client(), await _client()
    yield one, two
    await one.aclose()
    await two.aclose()


@pytest.fixture
async def prefix(redis_clients: tuple[Redis, Redis]) -> AsyncIterator[str]:
    prefix = f"taskgraph-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis_clients[0]
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)


async def test_redis_take_refuse_and_give_back(
    redis_clients: tuple[Redis, Redis], prefix: str
) -> None:
    client = redis_clients[0]
    buckets = RedisBuckets(client, Rule(10.0, 1.0), prefix)
    first = await buckets.take("k", 7)
    assert first.allowed and first.currently_available == pytest.approx(3.0, abs=0.05)
    refused = await buckets.take("k", 5)
    assert refused.allowed is False
    assert refused.retry_after == pytest.approx(2.0, abs=0.05)
    assert (await buckets.take("k", 3)).allowed
    assert (await buckets.take("k", 11)).retry_after == math.inf
    # The key lives until the bucket would be full again.
    ttl = await client.pttl(prefix + "k")
    assert 9_000 < ttl <= 10_000
    assert await buckets.give_back("k", 100) == 10.0
    assert await client.exists(prefix + "k") == 0


async def test_redis_buckets_refill(redis_clients: tuple[Redis, Redis], prefix: str) -> None:
    buckets = RedisBuckets(redis_clients[0], Rule(10.0, 50.0), prefix)
    assert (await buckets.take("k", 10)).allowed
    await asyncio.sleep(0.1)
    again = await buckets.take("k", 0)
    assert 4.0 <= again.currently_available <= 10.0


async def test_two_workers_share_a_bucket(redis_clients: tuple[Redis, Redis], prefix: str) -> None:
    one, two = (
        RateLimiter(Rule(10.0, 0.01), redis=client, prefix=prefix) for client in redis_clients
    )
    assert (await one.take("user:1", 6)).allowed
    seen = await two.take("user:1", 5)
    assert seen.allowed is False and seen.currently_available == pytest.approx(4.0, abs=0.01)
    assert (await two.take("user:1", 4)).allowed
    assert (await one.take("user:1", 1)).allowed is False
    # Not the worker's own buckets: those are untouched.
    assert one.local.levels == {} and two.local.levels == {}


async def test_concurrent_takes_never_overspend(
    redis_clients: tuple[Redis, Redis], prefix: str
) -> None:
    workers = [
        RateLimiter(Rule(50.0, 0.001), redis=client, prefix=prefix) for client in redis_clients
    ]
    takes = [workers[i % 2].take("shared", 1) for i in range(300)]
    results = await asyncio.gather(*takes)
    assert sum(r.allowed for r in results) == 50
    assert min(r.currently_available for r in results) >= 0


async def test_the_script_is_loaded_when_redis_does_not_know_it(
    redis_clients: tuple[Redis, Redis], prefix: str
) -> None:
    client = redis_clients[0]
    buckets = RedisBuckets(client, Rule(10.0, 1.0), prefix)
    assert (await buckets.take("k", 1)).allowed
    # As after a restart or SCRIPT FLUSH (not done here: the server is shared): EVALSHA of
    # an unknown script answers NOSCRIPT, and the script is loaded and run.
    buckets.script.sha = "0" * 40
    assert (await buckets.take("k", 1)).currently_available == pytest.approx(8.0, abs=0.05)


async def test_limiters_with_redis_url_share_buckets_in_redis(
    redis_clients: tuple[Redis, Redis],
) -> None:
    settings = Settings(database_url="postgresql://x/y", redis_url=REDIS_URL)
    limiters = Limiters.from_settings(settings)
    key = f"test-{uuid.uuid4().hex}"
    try:
        assert limiters.redis is not None
        assert (await limiters.cost.take(key, 100)).allowed
        stored: dict[Any, Any] = await redis_clients[0].hgetall(f"{KEY_PREFIX}cost:{key}")
        assert float(stored[b"available"]) == pytest.approx(1900.0, abs=1)
    finally:
        await redis_clients[0].delete(f"{KEY_PREFIX}cost:{key}")
        await limiters.aclose()
