"""Prometheus metrics, served at /metrics (graph/app.py) in Prometheus' text format.

What is measured, per worker and added up over every worker of a server:

- `taskgraph_graphql_requests_total{operation_type, operation_name, status}`: requests to
  /graphql by operation and HTTP status;
- `taskgraph_graphql_request_duration_seconds{operation_type, operation_name}`: their latency;
- `taskgraph_graphql_request_statements{operation_type, operation_name}`: SQL statements per
  request;
- `taskgraph_graphql_errors_total{code}`: errors answered, by `extensions.code`;
- `taskgraph_db_connections{state}`: the pool's connections `in_use` and `idle`;
  `taskgraph_db_requests_waiting`: requests queued for a connection (graph/app.py's gate);
  `taskgraph_db_pool_size`: connections the pools keep (POOL_SIZE per worker);
- `taskgraph_websocket_connections` and `taskgraph_graphql_subscriptions`: open WebSocket
  connections and active subscriptions.

Label values are bounded, so that no client can grow the registry (every label value is a
time series in each worker's file and in Prometheus): `operation_type` is `query`, `mutation`,
`subscription`, or `none` for a request refused before an operation was chosen (bad JSON, a
document that does not parse); `operation_name` is the name of the operation that ran, for the
first `METRICS_OPERATION_NAMES` (100) distinct names a worker meets, `(other)` for names after
those or longer than 100 characters, `(anonymous)` for unnamed operations and `(none)` with
`none`. Parentheses cannot occur in GraphQL names, so none of these is some operation's name.
A name is taken only from a document that parsed, never from the request's `operationName`
alone. `status` is the HTTP status; `code` one of graph/errors.py's codes (else `OTHER`).

Several workers: served by `taskgraph serve`, each worker writes its values to files in
`PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode; the command makes the
folder and removes it afterwards, graph/cli.py), and a scrape, answered by whichever worker
gets it, reads every worker's files. Counters and histograms add up over all workers, those
that ended included; gauges add up over the live workers only (a worker that stopped cleanly
is forgotten at once, one that died at the next scrape). Without that variable (an app built
in-process, as in the tests) the values are the app's own.

For the WebSocket transport: wrap each connection in `resources.metrics.websocket()` and each
subscription in `resources.metrics.subscription()` (context managers; no-ops when metrics are
off), so that the two gauges count them while they are open.

With METRICS=off nothing of this exists: no metric, no file, and the calls cost a test of a
flag.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from db import prepared
from graph.errors import ErrorCode

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from graph.request_log import Entry
    from graph.settings import Settings

ANONYMOUS = "(anonymous)"
OTHER = "(other)"
NONE = "(none)"
# Longer names are labelled (other): a label value is kept in every series that carries it.
MAX_NAME_CHARS = 100
_CODES = frozenset(code.value for code in ErrorCode)
_TYPES = frozenset({"query", "mutation", "subscription"})

# Seconds. Compiled reads take about a millisecond; the pool waits up to POOL_TIMEOUT (10 s).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A compiled read is one statement; the resolvers' reads are one per relationship and level.
STATEMENT_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89)

_NOTHING = nullcontext()
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


class Metrics:
    """One app's metrics; `enabled` False (METRICS=off): every method does nothing."""

    def __init__(self, *, enabled: bool, operation_names: int = 100, pool_size: int = 0) -> None:
        self.enabled = enabled
        self.directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        if not enabled:
            return
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

        if (self.directory is not None) != (values.ValueClass is not values.MutexValue):
            # prometheus-client chooses where values live when it is first imported.
            raise RuntimeError(
                "PROMETHEUS_MULTIPROC_DIR was set or unset after prometheus_client was imported"
            )
        # Multiprocess values live in the folder's files, read by every scrape: no registry.
        self.registry = None if self.directory else CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.names: set[str] = set()
        self.max_names = operation_names
        operation = ["operation_type", "operation_name"]
        self.requests = Counter(
            "taskgraph_graphql_requests",
            "Requests to /graphql, by operation and HTTP status.",
            [*operation, "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "taskgraph_graphql_request_duration_seconds",
            "Time from a request's arrival to its answer, by operation.",
            operation,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.statements = Histogram(
            "taskgraph_graphql_request_statements",
            "SQL statements a request sent, by operation.",
            operation,
            buckets=STATEMENT_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "taskgraph_graphql_errors",
            "Errors answered, by extensions.code.",
            ["code"],
            registry=registry,
        )
        connections = Gauge(
            "taskgraph_db_connections",
            "Database connections of the pools, in use by a request or idle.",
            ["state"],
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.in_use = connections.labels("in_use")
        self.idle = connections.labels("idle")
        self.waiting = Gauge(
            "taskgraph_db_requests_waiting",
            "Requests waiting for a database connection.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        pool = Gauge(
            "taskgraph_db_pool_size",
            "Database connections the pools keep for requests (POOL_SIZE per worker).",
            multiprocess_mode="livesum",
            registry=registry,
        )
        pool.set(pool_size)
        self.websockets = Gauge(
            "taskgraph_websocket_connections",
            "Open WebSocket connections.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.subscriptions = Gauge(
            "taskgraph_graphql_subscriptions",
            "Active GraphQL subscriptions.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        # Labelled children by their labels: `labels()` costs a lock and a tuple per call.
        self._operations: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._opened = 0
        self._in_use = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Metrics:
        return cls(
            enabled=settings.metrics_access != "off",
            operation_names=settings.metrics_operation_names,
            pool_size=settings.pool_size,
        )

    # Requests.
    def measured(self, entry: Entry) -> AbstractContextManager[Any]:
        """Counts the request of `entry` when the block ends."""
        return self._measured(entry) if self.enabled else _NOTHING

    @contextmanager
    def _measured(self, entry: Entry) -> Iterator[None]:
        try:
            yield
        finally:
            self.observe(entry, time.perf_counter() - entry.started)

    def observe(self, entry: Entry, seconds: float) -> None:
        labels = self._labels(entry.operation_type, entry.operation_name)
        children = self._operations.get(labels)
        if children is None:
            children = self._operations[labels] = (
                self.duration.labels(*labels),
                self.statements.labels(*labels),
            )
        children[0].observe(seconds)
        children[1].observe(entry.statements)
        key = (*labels, entry.status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(*labels, str(entry.status))
        counter.inc()
        for code in entry.errors:
            self.errors.labels(code if code in _CODES else "OTHER").inc()

    def _labels(self, kind: str | None, name: str | None) -> tuple[str, str]:
        if kind not in _TYPES:
            return "none", NONE
        if name is None:
            return kind, ANONYMOUS
        names = self.names
        if name in names:
            return kind, name
        if len(names) < self.max_names and len(name) <= MAX_NAME_CHARS:
            names.add(name)
            return kind, name
        return kind, OTHER

    # The pool and its gate (graph/app.py).
    def queued(self) -> AbstractContextManager[Any]:
        """Counts a request waiting for a connection while the block runs."""
        return _gauged(self.waiting) if self.enabled else _NOTHING

    def watch_pool(self, engine: AsyncEngine) -> None:
        """Keep the connection gauges from the pool's events (an engine the app made: the
        listeners last as long as the engine)."""
        if not self.enabled:
            return
        from sqlalchemy import event

        pool = engine.sync_engine
        event.listen(pool, "connect", self._connected)
        event.listen(pool, "close", self._closed)
        event.listen(pool, "close_detached", self._closed)
        event.listen(pool, "checkout", self._checked_out)
        event.listen(pool, "checkin", self._checked_in)
        # The reserve's idle connections are checked out of the pool, but idle.
        prepared.reserve(engine).on_change = self._reserved

    def _connected(self, *_: Any) -> None:
        self._opened += 1
        self._pool_changed()

    def _closed(self, *_: Any) -> None:
        self._opened -= 1
        self._pool_changed()

    def _checked_out(self, *_: Any) -> None:
        self._in_use += 1
        self._pool_changed()

    def _checked_in(self, *_: Any) -> None:
        self._in_use -= 1
        self._pool_changed()

    def _reserved(self, idle: int) -> None:
        self._in_use -= idle
        self._pool_changed()

    def _pool_changed(self) -> None:
        self.in_use.set(self._in_use)
        # A connection invalidated while in use is closed before it is checked in.
        self.idle.set(max(0, self._opened - self._in_use))

    # WebSockets (the subscription transport).
    def websocket(self) -> AbstractContextManager[Any]:
        """Counts an open WebSocket connection while the block runs."""
        return _gauged(self.websockets) if self.enabled else _NOTHING

    def subscription(self) -> AbstractContextManager[Any]:
        """Counts an active subscription while the block runs."""
        return _gauged(self.subscriptions) if self.enabled else _NOTHING

    # Exposition.
    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The text a scrape gets, in the format its `Accept` asks for, and its media type."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder

        encoder, media_type = choose_encoder(accept or "")
        if self.directory is None:
            return encoder(self.registry), media_type
        from prometheus_client.multiprocess import MultiProcessCollector

        forget_dead_workers(self.directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)
        return encoder(registry), media_type

    def close(self) -> None:
        """This worker stops: its gauges leave the sums now."""
        if self.enabled and self.directory is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.directory)


NO_METRICS = Metrics(enabled=False)


@contextmanager
def _gauged(gauge: Any) -> Iterator[None]:
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def forget_dead_workers(directory: str) -> None:
    """Drop the gauge files of workers that died without stopping (uvicorn starts another):
    their last values would stay in the sums."""
    from prometheus_client import multiprocess

    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        found = _LIVE_GAUGE_FILE.search(path)
        if found is None:
            continue
        pid = int(found.group(1))
        if not _alive(pid):
            with contextlib.suppress(FileNotFoundError):
                multiprocess.mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
