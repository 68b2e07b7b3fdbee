"""Live webhooks during a coexistence history flood: live latency with and without, in one run.

The acceptance question: is a 3 MB history webhook with thousands of messages absorbed
without delaying live webhooks that arrive at the same time? This starts a throwaway
redis-server and the gateway on 127.0.0.1 (as inbound.py does), then runs two scenarios of
warm-up + measured seconds each:

1. **live only**: 1-item signed WhatsApp message webhooks, open loop at `--rate` req/s, from a
   load process of its own (inbound.py's generator: latency from each request's due time);
2. **live + flood**: the same live load, and in another process signed `history` webhooks
   (PLATFORM.md §4.3) of about `--history-mb` MB each, with unique wamids every time, sent
   back to back on `--flood-concurrency` connections (the next one when the previous is
   answered) from the start of the warm-up to the end of the measured window.

It prints the live latency of both scenarios, how the flood went (webhooks answered, MB/s,
history events/s, how long each history webhook took to be answered, how many history events
landed in Redis), and the verdict: live p99 with the flood / without. Everything it started is
stopped at the end; the whole run takes about 35 s.

    .venv/bin/python benchmarks/history_flood.py
    .venv/bin/python benchmarks/history_flood.py --rate 1000 --history-mb 1
    .venv/bin/python benchmarks/history_flood.py --flood-concurrency 2 --publish-chunk 200

See benchmarks/README.md ("History flood") for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from _loadgen import Merged, Workers, WorkerSpec, merge, percentile
from _payloads import HistoryShape, PayloadSpec
from _procs import GATEWAY_COMMAND, HOST, StartError
from inbound import (
    APP_SECRET,
    BOT_ID,
    NUMBERS,
    TELEGRAM_SECRET,
    Meters,
    Plan,
    Row,
    Target,
    fmt,
    make_row,
    start_tuned_gateway,
    table,
)
from outbound import log_problems

from router.keys import history as history_stream

ASSISTANT = "support"  # NUMBERS[0], the coexistence number the history belongs to
DEFAULT_MAX_BODY = 3 * 2**20  # server.max_body_bytes default (gateway/config.py)
RESULT_GRACE_S = 60.0
LANDED_WAIT_S = 3.0  # for events published after the answer (there should be none)
MAX_LOG_LINES = 10
MB = 1e6


@dataclass
class Scenario:
    """What one scenario measured."""

    name: str
    live: Row
    live_max_ms: float
    gateway_cpu_pct: float | None
    redis_cpu_pct: float | None
    elapsed_s: float
    flood: Merged | None = None
    history_landed: int = 0


@dataclass(frozen=True)
class Flood:
    """The history webhook every flood request is a copy of (with its own ids)."""

    shape: HistoryShape
    body_bytes: int
    messages: int

    @property
    def threads(self) -> int:
        """Threads per webhook."""
        return math.ceil(self.messages / self.shape.thread_messages)


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring for examples."""
    p = argparse.ArgumentParser(
        description="Live webhook latency with and without a concurrent history flood.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("--rate", type=float, default=500.0, help="live webhooks per second (open loop)")
    add("--connections", type=int, default=64, help="live keep-alive connections")
    add("--duration", type=float, default=10.0, help="measured seconds per scenario")
    add("--warmup", type=float, default=2.0, help="unmeasured seconds before each scenario")
    add("--history-mb", type=float, default=3.0, help="body size of one history webhook (1e6 B)")
    add("--thread-messages", type=int, default=100, help="messages per thread of a history body")
    add("--flood-concurrency", type=int, default=1, help="history webhooks in flight at once")
    add("--flood-pool-mb", type=int, default=256, help="memory for pre-built history webhooks")
    add(
        "--publish-chunk",
        type=int,
        help="router.publish_chunk_events of the gateway; omitted: the gateway's default",
    )
    add("--contacts", type=int, default=1000, help="distinct live senders")
    add("--gateway-cmd", default=GATEWAY_COMMAND, help="how to start the gateway")
    add("--drain", type=float, default=10.0, help="seconds to wait for late answers")
    add("--json", type=Path, help="also write the results to this file")
    add("--verbose", action="store_true", help="print the generated config.yaml")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.history_mb <= 0:
        p.error("--rate, --duration and --history-mb must be > 0, --warmup >= 0")
    if min(args.connections, args.thread_messages, args.flood_concurrency, args.contacts) < 1:
        p.error("--connections, --thread-messages, --flood-concurrency, --contacts must be >= 1")
    return args


# --- setup -----------------------------------------------------------------------------------


def measure_flood(args: argparse.Namespace) -> Flood:
    """Build one history webhook here to learn its size and message count."""
    shape = HistoryShape(round(args.history_mb * MB), args.thread_messages)
    factory = shape(payload(args, HOST, 0))
    return Flood(shape, len(factory.body(0)), factory.messages)


def payload(args: argparse.Namespace, host: str, port: int) -> PayloadSpec:
    """1-item WhatsApp webhooks to host:port, signed with the started gateway's secret."""
    return PayloadSpec(
        channel="whatsapp",
        items=1,
        host=host,
        port=port,
        app_secret=APP_SECRET,
        numbers=NUMBERS,
        bot_id=BOT_ID,
        telegram_secret=TELEGRAM_SECRET,
        contacts=args.contacts,
    )


def start(
    args: argparse.Namespace, flood: Flood, stack: contextlib.ExitStack, work: Path
) -> Target:
    """Redis, config.yaml (inbound.py's, plus body limit and chunk size), the gateway."""

    def tune(config: dict[str, Any]) -> None:
        if flood.body_bytes > DEFAULT_MAX_BODY:
            config["server"]["max_body_bytes"] = flood.body_bytes + 4096
        if args.publish_chunk is not None:
            config["router"] = {"publish_chunk_events": args.publish_chunk}

    return start_tuned_gateway(args, stack, work, tune)


# --- the scenarios -------------------------------------------------------------------------


def live_spec(args: argparse.Namespace, target: Target) -> WorkerSpec:
    """Open-loop 1-item WhatsApp webhooks at --rate, like inbound.py --rate."""
    return WorkerSpec(
        payload=payload(args, target.host, target.port),
        connections=args.connections,
        warmup_s=args.warmup,
        duration_s=args.duration,
        rate=args.rate,
        phase_s=0.0,
        pool_bytes=64 * 2**20,
        drain_s=args.drain,
        unique=True,
    )


def flood_spec(args: argparse.Namespace, target: Target, flood: Flood) -> WorkerSpec:
    """History webhooks back to back (closed loop) from the start of the warm-up."""
    return WorkerSpec(
        payload=payload(args, target.host, target.port),
        connections=args.flood_concurrency,
        warmup_s=args.warmup,
        duration_s=args.duration,
        rate=None,
        phase_s=0.0,
        pool_bytes=args.flood_pool_mb * 2**20,
        drain_s=args.drain,
        unique=True,
        factory=flood.shape,
    )


def history_len(url: str) -> int:
    """Entries in the history stream of the coexistence number's assistant."""
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    try:
        return int(client.xlen(history_stream(ASSISTANT)))  # type: ignore[arg-type]
    finally:
        client.close()  # type: ignore[no-untyped-call]


def run(name: str, args: argparse.Namespace, target: Target, flood: Flood | None) -> Scenario:
    """One scenario: the live load, with the flood next to it when given."""
    assert target.redis_url is not None
    specs = [live_spec(args, target)]
    if flood is not None:
        specs.append(flood_spec(args, target, flood))
    landed0 = history_len(target.redis_url)
    workers = Workers(specs)
    try:
        workers.wait_ready()
        before, t0 = Meters.read(target), time.monotonic()
        workers.start()
        results = workers.results(args.warmup + args.duration + args.drain + RESULT_GRACE_S)
        after, t1 = Meters.read(target), time.monotonic()
    finally:
        workers.close()
    assert target.service is not None
    target.service.check_alive()
    plan = Plan("gateway", "whatsapp", 1, args.connections, args.rate, args.warmup, args.duration)
    live = make_row(plan, merge(results[:1]), before, after)
    scenario = Scenario(
        name=name,
        live=live,
        live_max_ms=live.merged.latencies[-1] * 1e3 if live.merged.latencies else math.nan,
        gateway_cpu_pct=pct(before.cpu_s, after.cpu_s, t1 - t0),
        redis_cpu_pct=pct(before.redis_cpu_s, after.redis_cpu_s, t1 - t0),
        elapsed_s=t1 - t0,
    )
    if flood is not None:
        scenario.flood = merge(results[1:])
        expected = ok_answers(scenario.flood) * flood.messages
        scenario.history_landed = history_len(target.redis_url) - landed0
        for _ in range(int(LANDED_WAIT_S / 0.1)):
            if scenario.history_landed >= expected:
                break
            time.sleep(0.1)
            scenario.history_landed = history_len(target.redis_url) - landed0
    print(
        f"[{name}] live {live.rps:,.0f} req/s, p99 {live.p99_ms:.2f} ms, "
        f"max {scenario.live_max_ms:.2f} ms, {live.errors} errors",
        file=sys.stderr,
    )
    return scenario


def pct(before: float | None, after: float | None, elapsed_s: float) -> float | None:
    """CPU seconds between two readings in percent of one core."""
    if before is None or after is None or elapsed_s <= 0:
        return None
    return 100 * (after - before) / elapsed_s


def ok_answers(merged: Merged) -> int:
    """Answers with status 200 over the whole run (warm-up and drain included)."""
    non_200 = sum(n for label, n in merged.errors_total.items() if label.startswith("HTTP "))
    return merged.answered_total - non_200


# --- report --------------------------------------------------------------------------------


def live_table(scenarios: list[Scenario]) -> str:
    """Live latency per scenario."""
    headers = [
        "scenario",
        "live req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "gateway CPU %",
        "Redis CPU %",
    ]
    lines = [
        [
            s.name,
            fmt(s.live.rps, ",.1f"),
            fmt(s.live.p50_ms, ".2f"),
            fmt(s.live.p99_ms, ".2f"),
            fmt(s.live.p999_ms, ".2f"),
            fmt(s.live_max_ms, ".2f"),
            str(s.live.errors),
            fmt(s.gateway_cpu_pct, ".0f"),
            fmt(s.redis_cpu_pct, ".0f"),
        ]
        for s in scenarios
    ]
    return table(headers, lines, frozenset({0}))


@dataclass(frozen=True)
class FloodFigures:
    """The flood's figures: rates over the measured window, answer times of its answers."""

    sent: int
    ok: int
    in_window: int
    mb_per_s: float
    events_per_s: float
    answer_p50_ms: float
    answer_max_ms: float
    errors: int
    landed: int
    expected: int

    @classmethod
    def of(cls, s: Scenario, flood: Flood, duration_s: float) -> FloodFigures:
        """Figures of a scenario that had a flood."""
        m = s.flood
        assert m is not None
        lat = m.latencies  # answers that arrived inside the measured window
        return cls(
            sent=m.sent_total,
            ok=ok_answers(m),
            in_window=len(lat),
            mb_per_s=len(lat) * flood.body_bytes / MB / duration_s,
            events_per_s=len(lat) * flood.messages / duration_s,
            answer_p50_ms=percentile(lat, 0.5) * 1e3,
            answer_max_ms=(lat[-1] if lat else math.nan) * 1e3,
            errors=sum(m.errors_total.values()),
            landed=s.history_landed,
            expected=ok_answers(m) * flood.messages,
        )


def flood_table(f: FloodFigures) -> str:
    """The flood, one row."""
    headers = [
        "history webhooks sent",
        "answered 200",
        "in window",
        "MB/s",
        "history events/s",
        "answer p50 ms",
        "answer max ms",
        "errors",
        "events landed / expected",
    ]
    line = [
        f"{f.sent:,}",
        f"{f.ok:,}",
        f"{f.in_window:,}",
        fmt(f.mb_per_s, ".2f"),
        fmt(f.events_per_s, ",.0f"),
        fmt(f.answer_p50_ms, ",.1f"),
        fmt(f.answer_max_ms, ",.1f"),
        str(f.errors),
        f"{f.landed:,} / {f.expected:,}",
    ]
    return table(headers, [line], frozenset())


def verdict(scenarios: list[Scenario]) -> str:
    """live p99 with the flood / without."""
    without, with_flood = scenarios[0].live, scenarios[1].live
    ratio = with_flood.p99_ms / without.p99_ms if without.p99_ms else math.nan
    return (
        f"live p99 with flood / without: {with_flood.p99_ms:.2f} ms / "
        f"{without.p99_ms:.2f} ms = {ratio:.2f}x"
    )


def notes(scenarios: list[Scenario], flood: Flood) -> list[str]:
    """Open-loop lateness, errors with samples, pre-built requests that ran out."""
    out = []
    for s in scenarios:
        m = s.live.merged
        out.append(
            f"{s.name}: live requests left the client {m.lag_mean_s * 1e3:.2f} ms after their "
            f"due time on average (max {m.lag_max_s * 1e3:.2f} ms)"
        )
        for who, merged in (("live", m), ("flood", s.flood)):
            if merged is None:
                continue
            for label, count in merged.errors_total.most_common():
                sample = merged.samples.get(label, b"")[:120]
                out.append(f"{s.name}: {who} {label} x{count} (whole run)  {sample!r}")
            if who == "flood" and merged.live_built:
                out.append(
                    f"{s.name}: {merged.live_built} of {merged.sent_total} history webhooks were "
                    f"built during the run (the flood process's CPU; --flood-pool-mb)"
                )
    if scenarios[-1].flood is not None and flood.body_bytes > DEFAULT_MAX_BODY:
        out.append(f"server.max_body_bytes raised to {flood.body_bytes + 4096:,} for the flood")
    return out


def report(
    scenarios: list[Scenario], flood: Flood, args: argparse.Namespace, problems: list[str]
) -> str:
    """The whole printed report."""
    chunk = args.publish_chunk if args.publish_chunk is not None else "gateway default"
    parts = [
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"uvloop {importlib.metadata.version('uvloop')}; gateway, Redis and both load "
        "processes share it",
        f"live: open loop {args.rate:,.0f} req/s, 1-item WhatsApp webhooks, "
        f"{args.connections} connections; {args.warmup:g} s warm-up + {args.duration:g} s "
        "measured per scenario",
        f"flood: history webhooks of {flood.body_bytes / MB:.2f} MB, {flood.messages:,} "
        f"messages in {flood.threads} threads each, {args.flood_concurrency} in flight, "
        f"from the start of the warm-up; publish chunk: {chunk}",
        "",
        live_table(scenarios),
    ]
    with_flood = [s for s in scenarios if s.flood is not None]
    for s in with_flood:
        parts += ["", flood_table(FloodFigures.of(s, flood, args.duration))]
    if len(scenarios) == 2 and with_flood:
        parts += ["", verdict(scenarios)]
    parts += ["", *notes(scenarios, flood)]
    if problems:
        parts += ["", f"gateway log, WARNING and above: {len(problems)} lines"]
        parts += problems[:MAX_LOG_LINES]
    else:
        parts += ["", "gateway log: no lines at WARNING or above"]
    return "\n".join(parts)


def to_json(scenarios: list[Scenario], flood: Flood, args: argparse.Namespace) -> dict[str, Any]:
    """The figures as JSON-ready data."""
    out: dict[str, Any] = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "history_body_bytes": flood.body_bytes,
        "history_messages": flood.messages,
        "scenarios": [],
    }
    for s in scenarios:
        item: dict[str, Any] = {
            "name": s.name,
            "live_rps": s.live.rps,
            "live_p50_ms": s.live.p50_ms,
            "live_p99_ms": s.live.p99_ms,
            "live_p999_ms": s.live.p999_ms,
            "live_max_ms": s.live_max_ms,
            "live_errors": s.live.errors,
            "gateway_cpu_pct": s.gateway_cpu_pct,
            "redis_cpu_pct": s.redis_cpu_pct,
        }
        if s.flood is not None:
            item["flood"] = asdict(FloodFigures.of(s, flood, args.duration))
        out["scenarios"].append(item)
    return out


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Start Redis and the gateway, run both scenarios, print the report; 1 on failure."""
    args = parse_args(argv)
    flood = measure_flood(args)
    problems: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-flood-")))
            stack.callback(log_problems, work, problems)  # once the gateway has stopped
            target = start(args, flood, stack, work)
            scenarios = [run("live only", args, target, None)]
            scenarios.append(run("live + flood", args, target, flood))
    except (StartError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(scenarios, flood, args, problems))
    if args.json:
        args.json.write_text(json.dumps(to_json(scenarios, flood, args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
