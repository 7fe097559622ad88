"""Rate limits: leaky buckets of points, one per key.

A bucket holds up to `maximum` points and regains `restore_rate` points per second. `take(key,
cost)` removes `cost` points when the bucket holds them; when it does not, nothing is taken and
`retry_after` says in how many seconds it will (never, `inf`, for a cost above the maximum: the
cost limit refuses such queries first). `give_back` returns points, e.g. what a request did not
use, or a log-in attempt that succeeded.

Buckets live in the worker (`LocalBuckets`, the default) or, with `REDIS_URL`, in Redis
(`RedisBuckets`), where every worker shares them: one Lua script reads, refills and charges a
bucket atomically, on Redis's own clock, so concurrent requests of all workers never spend more
than the bucket holds. A bucket is stored only while it is not full, and expires when it would
be full again, so idle keys take no memory. In the worker, the dict of buckets is bounded: full
buckets are dropped when it grows past `max_keys`, then the least recently used ones.

When Redis cannot be reached (or answers an error), the limits fail open to the worker's own
buckets rather than refusing every request or stalling on it: each worker then applies the limit
alone, and Redis is tried again after `RETRY_REDIS_AFTER` seconds. The first failure is logged
as a warning (then at most once a minute), and the recovery too.

Log-in and sign-up (`AuthLimits`) have buckets of their own, per e-mail address and per client
address, against password guessing: each attempt takes one point of both before the password
is checked (concurrent attempts cannot get past the limit); a successful log-in gives them
back, so that people who type their password right are never limited by it. A successful
sign-up keeps them: it limits the accounts made from one address. E-mail addresses are keyed
by a hash (not kept in clear in Redis); IPv6 client addresses by their /64 network, which one
client usually holds whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphql import GraphQLError

from graph.errors import ApiError, ErrorCode

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from graph.settings import Settings

log = logging.getLogger(__name__)

# Seconds without trying Redis after it failed.
RETRY_REDIS_AFTER = 5.0
# Seconds between two warnings that Redis is unreachable.
WARN_EVERY = 60.0
# Seconds Redis may take to answer before the worker's buckets are used instead.
REDIS_TIMEOUT = 0.5
DEFAULT_MAX_KEYS = 100_000
KEY_PREFIX = "taskgraph:rate:"


@dataclass(frozen=True, slots=True)
class Rule:
    maximum: float
    # Points per second.
    restore_rate: float


@dataclass(frozen=True, slots=True)
class Throttle:
    allowed: bool
    currently_available: float
    # Seconds until the bucket holds the cost (0 when allowed; inf when it never will).
    retry_after: float
    maximum: float
    restore_rate: float


class LocalBuckets:
    """Buckets of one worker."""

    def __init__(
        self,
        rule: Rule,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rule = rule
        self.max_keys = max_keys
        self.clock = clock
        # key -> (points available, when); only buckets that are not full.
        self.levels: dict[str, tuple[float, float]] = {}

    def _available(self, key: str, now: float) -> float:
        state = self.levels.get(key)
        if state is None:
            return self.rule.maximum
        level, at = state
        return min(self.rule.maximum, level + max(0.0, now - at) * self.rule.restore_rate)

    def take(self, key: str, cost: float) -> Throttle:
        rule, now = self.rule, self.clock()
        available = self._available(key, now)
        if cost > available:
            retry = _retry_after(rule, cost, available)
            return Throttle(False, available, retry, rule.maximum, rule.restore_rate)
        self._store(key, available - cost, now)
        return Throttle(True, available - cost, 0.0, rule.maximum, rule.restore_rate)

    def give_back(self, key: str, points: float) -> float:
        now = self.clock()
        available = min(self.rule.maximum, self._available(key, now) + points)
        self._store(key, available, now)
        return available

    def _store(self, key: str, available: float, now: float) -> None:
        # Taken out and put back, so that the dict's order is the order of last use.
        self.levels.pop(key, None)
        if available >= self.rule.maximum:
            return
        self.levels[key] = (available, now)
        if len(self.levels) > self.max_keys:
            self._evict(now)

    def _evict(self, now: float) -> None:
        full = [k for k in self.levels if self._available(k, now) >= self.rule.maximum]
        for k in full:
            del self.levels[k]
        # Still too many active buckets: forget the least recently used (they are forgiven).
        excess = len(self.levels) - self.max_keys * 9 // 10
        if excess > 0:
            for k in list(itertools.islice(self.levels, excess)):
                del self.levels[k]


def _retry_after(rule: Rule, cost: float, available: float) -> float:
    if cost > rule.maximum:
        return math.inf
    return (cost - available) / rule.restore_rate


# Reads, refills and charges one bucket (a negative cost gives points back), on Redis's clock.
# Returns {allowed, available, retry after}; numbers as strings, as Redis would truncate them.
_TAKE = """
local maximum = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local available = maximum
local state = redis.call('HMGET', KEYS[1], 'available', 'at')
if state[1] then
  available = math.min(maximum, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
end
if cost > available then
  return {0, tostring(available), tostring((cost - available) / rate)}
end
available = math.min(maximum, available - cost)
if available >= maximum then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'available', available, 'at', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil((maximum - available) / rate * 1000))
end
return {1, tostring(available), '0'}
"""


class RedisHealth:
    """Whether Redis is usable now; shared by the buckets of one Redis client."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.down_until = -math.inf
        self.down = False
        self.warned_at = -math.inf

    def usable(self) -> bool:
        return self.clock() >= self.down_until

    def failed(self, problem: BaseException) -> None:
        now = self.clock()
        self.down_until = now + RETRY_REDIS_AFTER
        self.down = True
        if now - self.warned_at >= WARN_EVERY:
            self.warned_at = now
            log.warning(
                "Redis unreachable for the rate limits (%s: %s); each worker limits alone, "
                "Redis is tried again every %.0f s",
                type(problem).__name__,
                problem,
                RETRY_REDIS_AFTER,
            )

    def worked(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis reachable again for the rate limits")


class RedisBuckets:
    """Buckets in Redis, shared by every worker."""

    def __init__(self, client: Redis, rule: Rule, prefix: str) -> None:
        self.client = client
        self.rule = rule
        self.prefix = prefix
        self.script = client.register_script(_TAKE)

    async def _run(self, key: str, cost: float) -> tuple[bool, float, float]:
        rule = self.rule
        allowed, available, retry = await self.script(
            keys=[self.prefix + key], args=[rule.maximum, rule.restore_rate, cost]
        )
        return bool(allowed), float(available), float(retry)

    async def take(self, key: str, cost: float) -> Throttle:
        allowed, available, retry = await self._run(key, cost)
        rule = self.rule
        if not allowed:
            retry = _retry_after(rule, cost, available)
        return Throttle(allowed, available, retry, rule.maximum, rule.restore_rate)

    async def give_back(self, key: str, points: float) -> float:
        return (await self._run(key, -points))[1]


_REDIS_FAILURES: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError)
try:
    from redis.exceptions import RedisError

    _REDIS_FAILURES = (*_REDIS_FAILURES, RedisError)
except ImportError:  # pragma: no cover - redis is a dependency
    pass


class RateLimiter:
    """Buckets of one rule, in Redis when there is one (falling back to the worker's own)."""

    def __init__(
        self,
        rule: Rule,
        *,
        redis: Redis | None = None,
        name: str = "cost",
        prefix: str = KEY_PREFIX,
        health: RedisHealth | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        self.rule = rule
        self.local = LocalBuckets(rule, max_keys=max_keys)
        self.shared = RedisBuckets(redis, rule, f"{prefix}{name}:") if redis is not None else None
        self.health = health or RedisHealth()

    async def take(self, key: str, cost: float) -> Throttle:
        shared = self.shared
        if shared is not None and self.health.usable():
            try:
                found = await shared.take(key, cost)
            except _REDIS_FAILURES as exc:
                self.health.failed(exc)
            else:
                self.health.worked()
                return found
        return self.local.take(key, cost)

    async def give_back(self, key: str, points: float) -> float:
        if points <= 0:
            return self.rule.maximum
        shared = self.shared
        if shared is not None and self.health.usable():
            try:
                found = await shared.give_back(key, points)
            except _REDIS_FAILURES as exc:
                self.health.failed(exc)
            else:
                self.health.worked()
                return found
        return self.local.give_back(key, points)


def throttled_error(cost: float, throttle: Throttle) -> GraphQLError:
    """RATE_LIMITED, with `retryAfter` in seconds (rounded up to a tenth)."""
    retry = math.ceil(throttle.retry_after * 10) / 10
    return GraphQLError(
        f"Throttled: the query costs {cost:g} points and "
        f"{throttle.currently_available:.1f} are available; retry in {retry:g} seconds.",
        extensions={"code": ErrorCode.RATE_LIMITED.value, "retryAfter": retry},
    )


# Log-in and sign-up ------------------------------------------------------------------------


def email_key(email: str) -> str:
    normalised = email.strip().casefold()
    return hashlib.sha256(normalised.encode()).hexdigest()[:32]


def address_key(address: str | None) -> str:
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:100]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def client_address(request: object) -> str | None:
    """The client's address of a Starlette request (or WebSocket), None when not known.
    Behind a proxy this is the proxy's unless uvicorn is told to trust its headers
    (`--forwarded-allow-ips`)."""
    client = getattr(request, "client", None)
    return client.host if client is not None else None


def principal_key(user_id: int | None, api_key_id: int | None, address: str | None) -> str:
    """The bucket of a request: its user's, its API key's, or, anonymous, its address's."""
    if user_id is not None:
        return f"user:{user_id}"
    if api_key_id is not None:
        return f"key:{api_key_id}"
    return f"address:{address_key(address)}"


class AuthLimits:
    def __init__(self, per_email: RateLimiter, per_address: RateLimiter) -> None:
        self.per_email = per_email
        self.per_address = per_address

    async def attempt(self, email: str, address: str | None) -> Throttle:
        """Take one attempt of both buckets, or none (then the refusal with its wait)."""
        by_address = address_key(address)
        throttle = await self.per_address.take(by_address, 1)
        if not throttle.allowed:
            return throttle
        by_email = await self.per_email.take(email_key(email), 1)
        if not by_email.allowed:
            await self.per_address.give_back(by_address, 1)
        return by_email

    async def check_login(self, email: str, address: str | None) -> Throttle:
        return await self.attempt(email, address)

    async def check_sign_up(self, email: str, address: str | None) -> Throttle:
        return await self.attempt(email, address)

    async def logged_in(self, email: str, address: str | None) -> None:
        """A successful log-in costs nothing: its attempt is given back."""
        await self.per_address.give_back(address_key(address), 1)
        await self.per_email.give_back(email_key(email), 1)


def auth_error(throttle: Throttle) -> ApiError:
    """RATE_LIMITED for a log-in or sign-up, with `retryAfter` in whole seconds."""
    retry = max(1, math.ceil(throttle.retry_after))
    return ApiError(
        f"Too many attempts; try again in {retry} seconds.",
        ErrorCode.RATE_LIMITED,
        retryAfter=retry,
    )


@dataclass(slots=True)
class Limiters:
    """The rate limits of one app: by query cost per principal (`enabled`: the RATE_LIMITS
    setting, for the caller to honour), and for log-in and sign-up (always on). `aclose` closes
    the Redis client, if any, at the app's shutdown."""

    cost: RateLimiter
    auth: AuthLimits
    enabled: bool = True
    redis: Redis | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiters:
        client = None
        if settings.redis_url:
            from redis.asyncio import Redis

            client = Redis.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
            )
        return cls.build(
            cost=Rule(settings.rate_limit_maximum, settings.rate_limit_restore_rate),
            attempts_per_email=settings.login_attempts_per_email,
            attempts_per_address=settings.login_attempts_per_address,
            window_seconds=settings.login_window_seconds,
            redis=client,
            enabled=settings.rate_limits,
        )

    @classmethod
    def build(
        cls,
        *,
        cost: Rule,
        attempts_per_email: int,
        attempts_per_address: int,
        window_seconds: float,
        redis: Redis | None = None,
        prefix: str = KEY_PREFIX,
        enabled: bool = True,
    ) -> Limiters:
        health = RedisHealth()

        def limiter(rule: Rule, name: str) -> RateLimiter:
            return RateLimiter(rule, redis=redis, name=name, prefix=prefix, health=health)

        def attempts(count: int) -> Rule:
            return Rule(float(count), count / window_seconds)

        return cls(
            cost=limiter(cost, "cost"),
            auth=AuthLimits(
                limiter(attempts(attempts_per_email), "login-email"),
                limiter(attempts(attempts_per_address), "login-address"),
            ),
            enabled=enabled,
            redis=redis,
        )

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
