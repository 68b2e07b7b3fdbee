"""Slow clients (slowloris) against the gateway: does honest webhook traffic still flow?

Starts a throwaway redis-server and the gateway (`server.*` at their defaults unless given)
on 127.0.0.1, then measures honest, signed 1-item WhatsApp webhooks sent at a fixed rate
over a few keep-alive connections, twice for `--seconds` each:

1. alone;
2. while `--slow` other connections trickle a byte every `--every` seconds (jittered), half
   of them a request head, half a body after a complete, signed-looking head; each one cut
   by the gateway is opened again at once, so the number stays up.

The slow connections run in a child process, so their own work does not skew the honest
client's clock. Prints, per phase: honest webhooks p50/p99/max latency (from the scheduled
send time, so a stall is not hidden), answers per status, the gateway's peak RSS and open
file descriptors, and how many slow connections the gateway cut. Loopback only; bounded in
time (about 2 × --seconds + the ramp-up).

    .venv/bin/python benchmarks/slowclients.py                         # 2,000 slow, 20 s
    .venv/bin/python benchmarks/slowclients.py --head-timeout 5 --body-timeout 5   # churn
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvloop
import yaml
from _loadgen import parse_response, percentile
from _payloads import PayloadSpec, RequestFactory
from _procs import GATEWAY_COMMAND, HOST, free_port, gateway, redis_server, redis_socket_url
from _procs import rss_bytes as _rss_bytes
from inbound import APP_SECRET, BOT_ID, NUMBERS, READY_TIMEOUT_S, TELEGRAM_SECRET, gateway_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slow", type=int, default=2000, help="slow connections (default 2000)")
    p.add_argument("--every", type=float, default=3.0, help="seconds between their bytes")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    p.add_argument("--rate", type=float, default=500.0, help="honest webhooks per second")
    p.add_argument("--conns", type=int, default=8, help="honest keep-alive connections")
    p.add_argument("--head-timeout", type=float, help="server.head_timeout_seconds")
    p.add_argument("--body-timeout", type=float, help="server.body_timeout_seconds")
    return p.parse_args(argv)


def raise_fd_limit() -> int:
    """NOFILE soft limit up to the hard one (inherited by the gateway and the children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- slow clients (child process) ----------------------------------------------------------


@dataclass
class SlowStats:
    open: int = 0
    cut: int = 0
    """Connections the gateway closed (then opened again)."""
    failed: int = 0
    """Connection attempts that failed."""


def slow_main(port: int, count: int, every: float, link: Connection) -> None:
    """The child process: keep `count` slow connections open until the parent says stop;
    report SlowStats (as a tuple) once a second."""
    uvloop.run(_slow_all(port, count, every, link))


async def _slow_all(port: int, count: int, every: float, link: Connection) -> None:
    stats = SlowStats()
    head = (f"POST /webhooks/whatsapp HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\nX-Hub-Signature-256: sha256=" + "0" * 64 +
            "\r\nContent-Length: 100000\r\n\r\n").encode()  # fmt: skip
    tasks = []
    for i in range(count):
        # Even ones trickle the head; odd ones send the head, then trickle the body.
        first, trickled = (b"", head) if i % 2 == 0 else (head, b"{" * 100_000)
        tasks.append(asyncio.create_task(_slow_one(port, first, trickled, every, stats)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # a ramp, not a SYN flood on the backlog
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(link.fileno(), stop.set)
    while not stop.is_set():
        link.send((stats.open, stats.cut, stats.failed))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _slow_one(
    port: int, first: bytes, trickled: bytes, every: float, stats: SlowStats
) -> None:
    rng = random.Random()
    while True:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            stats.failed += 1
            await asyncio.sleep(1.0)
            continue
        stats.open += 1
        try:
            await _trickle(reader, writer, first, trickled, every, rng)
        finally:
            stats.open -= 1
            writer.close()
        stats.cut += 1


async def _trickle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    first: bytes,
    trickled: bytes,
    every: float,
    rng: random.Random,
) -> None:
    """Send `first`, then a byte of `trickled` every ~`every` s, until the gateway closes."""
    closed = asyncio.ensure_future(reader.read())  # b"" (or an error) once it is cut
    try:
        writer.write(first)
        await asyncio.sleep(rng.uniform(0, every))  # spread over the interval
        for byte in trickled:
            writer.write(bytes([byte]))
            done, _ = await asyncio.wait({closed}, timeout=every * rng.uniform(0.8, 1.2))
            if done:
                return
    except OSError:
        return
    finally:
        closed.cancel()


# --- honest load -----------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    rss_peak: int = 0
    fds_peak: int = 0
    slow_open: int = 0
    slow_cut: int = 0


async def honest(port: int, args: argparse.Namespace, phase: Phase, pid: int) -> None:
    """`args.rate` signed webhooks a second over `args.conns` connections for
    `args.seconds`; latency from each request's scheduled time to its whole answer."""
    spec = PayloadSpec("whatsapp", 1, HOST, port, APP_SECRET, NUMBERS, BOT_ID,
                       TELEGRAM_SECRET, 1000)  # fmt: skip
    factory = RequestFactory(spec)
    interval = args.conns / args.rate
    start = time.perf_counter() + 0.1
    meter = asyncio.create_task(_meter(pid, phase, args.seconds))
    await asyncio.gather(*(
        _honest_conn(port, factory, i, start + i * interval / args.conns, interval,
                     start + args.seconds, phase)
        for i in range(args.conns)
    ))  # fmt: skip
    await meter


async def _honest_conn(
    port: int,
    factory: RequestFactory,
    index: int,
    first: float,
    interval: float,
    end: float,
    phase: Phase,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    buf = bytearray()
    k = 0
    scheduled = first
    while scheduled < end:
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        writer.write(factory.build(index * 10_000_000 + k))
        k += 1
        while (parsed := parse_response(buf)) is None:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("the gateway closed an honest connection")
            buf += chunk
        status, _, stop, _ = parsed
        del buf[:stop]
        phase.latencies.append(time.perf_counter() - scheduled)
        phase.statuses[str(status)] = phase.statuses.get(str(status), 0) + 1
        scheduled += interval
    writer.close()


async def _meter(pid: int, phase: Phase, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        phase.rss_peak = max(phase.rss_peak, _rss_bytes(pid) or 0)
        with contextlib.suppress(OSError):
            phase.fds_peak = max(phase.fds_peak, len(os.listdir(f"/proc/{pid}/fd")))
        await asyncio.sleep(0.5)


# --- the run ---------------------------------------------------------------------------------


def start(args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> tuple[int, int]:
    """redis-server and the gateway: (port, gateway pid)."""
    stack.enter_context(redis_server(work))
    redis_url = redis_socket_url(work)
    port = free_port()
    config: dict[str, Any] = gateway_config(port, redis_url, APP_SECRET)
    config["server"]["drain_seconds"] = 0
    config["outbound"] = {"enabled": False}
    if args.head_timeout is not None:
        config["server"]["head_timeout_seconds"] = args.head_timeout
    if args.body_timeout is not None:
        config["server"]["body_timeout_seconds"] = args.body_timeout
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    service = stack.enter_context(gateway(GATEWAY_COMMAND, path, port, work, READY_TIMEOUT_S))
    assert service.pid is not None
    return port, service.pid


def report(phase: Phase) -> str:
    lat = sorted(phase.latencies)
    ms = [percentile(lat, q) * 1000 for q in (0.5, 0.99)] if lat else [0.0, 0.0]
    worst = lat[-1] * 1000 if lat else 0.0
    return (
        f"{phase.name:<22} webhooks {len(lat):>6}  p50 {ms[0]:6.2f} ms  p99 {ms[1]:6.2f} ms  "
        f"max {worst:7.2f} ms  statuses {phase.statuses}  gateway RSS peak "
        f"{phase.rss_peak / 2**20:6.1f} MiB  fds peak {phase.fds_peak}  "
        f"slow open {phase.slow_open}  slow cut {phase.slow_cut}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    limit = raise_fd_limit()
    if limit < args.slow + 200:
        print(f"NOFILE limit {limit} is below {args.slow} slow connections", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="slowclients-") as tmp, contextlib.ExitStack() as st:
        port, pid = start(args, st, Path(tmp))
        alone = Phase("honest alone")
        uvloop.run(honest(port, args, alone, pid))
        print(report(alone), flush=True)
        loaded = Phase(f"with {args.slow} slow")
        ours, theirs = multiprocessing.Pipe()
        child = multiprocessing.get_context("spawn").Process(
            target=slow_main, args=(port, args.slow, args.every, theirs), daemon=True
        )
        child.start()
        try:
            stats = _wait_open(ours, args.slow)
            uvloop.run(honest(port, args, loaded, pid))
            while ours.poll():
                stats = ours.recv()
            loaded.slow_open, loaded.slow_cut = stats[0], stats[1]
        finally:
            ours.send(b"stop")
            child.join(10)
            if child.is_alive():
                child.kill()
        print(report(loaded), flush=True)
        ratio = _p99(loaded) / max(_p99(alone), 1e-9)
        print(f"p99 with slow clients / alone: {ratio:.2f}")
    return 0


def _wait_open(link: Connection, count: int, timeout: float = 60.0) -> tuple[int, int, int]:
    """Until the child reports `count` slow connections open (or the timeout)."""
    end = time.monotonic() + timeout
    stats = (0, 0, 0)
    while time.monotonic() < end:
        if link.poll(1.0):
            stats = link.recv()
            if stats[0] >= count:
                break
    print(f"slow connections open {stats[0]}, cut {stats[1]}, failed {stats[2]}", flush=True)
    return stats


def _p99(phase: Phase) -> float:
    return percentile(sorted(phase.latencies), 0.99) if phase.latencies else 0.0


if __name__ == "__main__":
    sys.exit(main())
