"""A small closed-loop HTTP/1.1 load generator (stdlib asyncio only): the fallback when ``wrk`` is absent.

Needs: nothing beyond the Python standard library.

Each of ``--concurrency`` connections sends a GET, reads the whole response (Content-Length or chunked),
records the latency and sends the next one, keep-alive, until ``--seconds`` have passed. Prints one JSON
object on stdout, with the same keys ``record_overhead.py`` reads from its wrk script::

    python benchmarks/loadgen.py http://127.0.0.1:8000/empty --seconds 10 --concurrency 16

With ``--rate R`` the connections are paced to R requests per second in total (latency is measured from the
actual send, so a server that falls behind is not charged for queueing: compare at rates it sustains).

It targets loopback servers only (it refuses any other host). It is slower than wrk (roughly 5-10k req/s on
one core), which is plenty for a single uvicorn worker, but the generator's own CPU use competes with the
server on a 2-core machine: compare ratios measured with the same generator, never absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def percentile(sorted_values: list[int], pct: float) -> int:
    if not sorted_values:
        return 0
    rank = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return (status, keep_alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            keep_alive = False
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()
        keep_alive = False
    return status, keep_alive


async def _worker(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    latencies: list[int],
    counters: dict[str, int],
    interval: float = 0.0,
    offset: float = 0.0,
) -> None:
    reader = writer = None
    next_send = time.monotonic() + offset
    while time.monotonic() < deadline:
        if interval:
            # Paced: this connection sends at most one request per ``interval`` (late requests go at once).
            delay = next_send - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_send = max(next_send + interval, time.monotonic() - interval)
            if time.monotonic() >= deadline:
                break
        if writer is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                counters["connect_errors"] += 1
                await asyncio.sleep(0.01)
                continue
        assert reader is not None
        started = time.perf_counter_ns()
        try:
            writer.write(request)
            status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout=10)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            counters["read_errors"] += 1
            writer.close()
            writer = None
            continue
        latencies.append((time.perf_counter_ns() - started) // 1000)
        counters["requests"] += 1
        if not 200 <= status < 400:
            counters["status_errors"] += 1
        if not keep_alive:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def run(url: str, seconds: float, concurrency: int, rate: float = 0.0) -> dict[str, float | int]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host not in _LOOPBACK:
        raise SystemExit(f"loadgen: refusing to load {host!r}; only loopback addresses are allowed")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: timetracer-loadgen\r\n\r\n".encode()
    latencies: list[int] = []
    counters = {"requests": 0, "connect_errors": 0, "read_errors": 0, "status_errors": 0}
    started = time.monotonic()
    deadline = started + seconds
    interval = concurrency / rate if rate > 0 else 0.0
    await asyncio.gather(
        *(
            _worker(host, port, request, deadline, latencies, counters, interval, interval * n / concurrency)
            for n in range(concurrency)
        )
    )
    duration = time.monotonic() - started
    latencies.sort()
    return {
        **counters,
        "write_errors": 0,
        "timeouts": 0,
        "duration_us": int(duration * 1_000_000),
        "p50_us": percentile(latencies, 50),
        "p90_us": percentile(latencies, 90),
        "p99_us": percentile(latencies, 99),
        "mean_us": sum(latencies) / len(latencies) if latencies else 0.0,
        "max_us": latencies[-1] if latencies else 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="target req/s over all connections (0: as fast as possible)"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, args.seconds, args.concurrency, args.rate))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
