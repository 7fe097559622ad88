"""The load generator: several client processes, each driving keep-alive HTTP/1.1 connections
on loopback with uvloop and raw sockets (no HTTP library in the hot loop), so that the client
costs little CPU per request. Each process reports its own CPU time, which the runner prints
beside the server's to show the client is not the bottleneck."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    client_cpu_seconds: float


def _raw(host: str, port: int, body: bytes, token: str) -> bytes:
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    host: str,
    port: int,
    payloads: list[bytes],
    start: int,
    until: float,
    out: dict[str, list[float]],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = start
    try:
        while time.perf_counter() < until:
            t0 = time.perf_counter()
            writer.write(payloads[i % len(payloads)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            chunked = False
            for line in head.split(b"\r\n"):
                lower = line.lower()
                if lower.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                elif lower.startswith(b"transfer-encoding:") and b"chunked" in lower:
                    chunked = True
            if chunked:
                body = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
                    chunk = await reader.readexactly(size + 2)
                    if size == 0:
                        break
                    body += chunk[:-2]
            else:
                body = await reader.readexactly(length)
            ok = head.startswith(b"HTTP/1.1 200") and b'"errors"' not in body[:200_000]
            (out["ok"] if ok else out["errors"]).append((time.perf_counter() - t0) * 1000)
    finally:
        writer.close()


def _process(
    host: str,
    port: int,
    payloads: list[bytes],
    connections: int,
    seconds: float,
    offset: int,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    import uvloop

    out: dict[str, list[float]] = {"ok": [], "errors": []}
    cpu0 = time.process_time()

    async def main() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(
            *(
                _connection(host, port, payloads, offset + c * 7, until, out)
                for c in range(connections)
            )
        )

    uvloop.run(main())
    queue.put((out["ok"], len(out["errors"]), time.process_time() - cpu0))


def run(
    host: str,
    port: int,
    requests: list[tuple[bytes, str]],
    *,
    concurrency: int,
    seconds: float,
    processes: int,
) -> LoadResult:
    payloads = [_raw(host, port, body, token) for body, token in requests]
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    per = [
        concurrency // processes + (1 if i < concurrency % processes else 0)
        for i in range(processes)
    ]
    workers = [
        multiprocessing.Process(
            target=_process, args=(host, port, payloads, n, seconds, i * 1000, queue)
        )
        for i, n in enumerate(per)
        if n
    ]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    results = [queue.get(timeout=seconds + 60) for _ in workers]
    for w in workers:
        w.join(timeout=10)
    elapsed = time.perf_counter() - t0
    latencies = sorted(x for r in results for x in r[0])
    return LoadResult(
        requests=len(latencies),
        errors=sum(r[1] for r in results),
        seconds=min(elapsed, seconds) if latencies else elapsed,
        latencies_ms=latencies,
        client_cpu_seconds=sum(r[2] for r in results),
    )


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]
