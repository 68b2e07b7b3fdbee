"""Memory soak: the gateway under a steady open-loop load for minutes; does anything grow?

It starts a throwaway redis-server and the gateway (as inbound.py does) with small stream
bounds (`router.inbox_maxlen`, default 1000, the smallest the config allows) so that trimming
happens within seconds, measures a quick closed-loop peak, then sends signed 1-item WhatsApp
webhooks in open loop at half that peak (or `--rate`) for `--warmup` + `--duration` seconds.
Every `--interval` seconds it prints: gateway RSS (VmRSS of the process and its children),
Redis `used_memory`, the inbox streams' XLEN, keys with and without a TTL, a sample of
`gw:mk:*` dedup mark hashes and their TTLs, the interval's latency percentiles and errors. At the
end: RSS after the warm-up against the end, a full scan of the keys and their TTLs, one verdict
line per check; exit 1 when a check fails.

    .venv/bin/python benchmarks/soak.py                          # 10 minutes at half the peak
    .venv/bin/python benchmarks/soak.py --duration 120 --rate 1000
    .venv/bin/python benchmarks/soak.py --json soak.json

See benchmarks/README.md ("Soak") for what each number means.
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
from _loadgen import TickResult, Workers, merge, percentile
from _procs import (
    GATEWAY_COMMAND,
    StartError,
    cpu_seconds,
    rss_bytes,
)
from inbound import (
    BOT_ID,
    TELEGRAM_SECRET,
    Plan,
    Target,
    fmt,
    run,
    start_tuned_gateway,
    worker_specs,
)
from outbound import log_problems

from router.keys import DEADLETTER, inbox

INBOXES = (inbox("support"), inbox("sales"))  # NUMBERS[0] -> support, NUMBERS[1] -> sales
SAMPLE_KEYS = 200  # RANDOMKEY draws per interval (almost all keys are dedup marks)
SCAN_COUNT = 10_000
RESULT_GRACE_S = 60.0
MB = 2**20
MAX_LOG_LINES = 10
MAX_NO_TTL_NAMES = 50


@dataclass
class Reading:
    """What the meters said at one moment."""

    elapsed_s: float  # since the end of the warm-up
    rss: int | None
    gateway_cpu_s: float | None
    used_memory: int
    xlen: dict[str, int]
    deadletter: int
    keys: int
    keys_with_ttl: int
    dd_sampled: int
    dd_without_ttl: int  # sampled gw:mk:* keys whose TTL was not > 0


@dataclass
class Interval:
    """One slice of the measured window and the reading at its end."""

    reading: Reading
    answered: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: dict[str, int]
    gateway_cpu_pct: float | None


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring for examples."""
    p = argparse.ArgumentParser(
        description="Gateway memory soak: steady open-loop webhooks, meters every interval.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("--rate", type=float, help="webhooks/s, open loop; omitted: half the measured peak")
    add("--duration", type=float, default=600.0, help="measured seconds, after the warm-up")
    add("--warmup", type=float, default=30.0, help="seconds of load before RSS start is read")
    add("--interval", type=float, default=30.0, help="seconds between report lines")
    add("--connections", type=int, default=64, help="keep-alive connections")
    add("--peak-duration", type=float, default=5.0, help="seconds of the closed-loop peak run")
    add("--inbox-maxlen", type=int, default=1000, help="router.inbox_maxlen (min 1000)")
    add("--max-rss-growth", type=float, default=10.0, help="verdict: RSS growth limit, %%")
    add("--contacts", type=int, default=1000, help="distinct senders the messages rotate over")
    add("--pool-mb", type=int, default=384, help="memory for pre-generated requests")
    add("--drain", type=float, default=10.0, help="seconds to wait for late answers")
    add("--gateway-cmd", default=GATEWAY_COMMAND, help="how to start the gateway")
    add("--json", type=Path, help="also write the readings to this file")
    add("--verbose", action="store_true", help="print the generated config.yaml")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.interval <= 0 or args.warmup < 0 or args.peak_duration <= 0:
        p.error("--duration, --interval and --peak-duration must be > 0, --warmup >= 0")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be > 0")
    if args.inbox_maxlen < 1000 or min(args.connections, args.contacts) < 1:
        p.error("--inbox-maxlen must be >= 1000 (the config's minimum), --connections >= 1")
    # what inbound.worker_specs / run read
    args.client_procs, args.bot_id, args.telegram_secret = 1, BOT_ID, TELEGRAM_SECRET
    return args


# --- setup -----------------------------------------------------------------------------------


def start(args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> Target:
    """Redis, config.yaml (inbound.py's with small stream bounds), the gateway."""

    def tune(config: dict[str, Any]) -> None:
        config["router"] = {"inbox_maxlen": args.inbox_maxlen}

    return start_tuned_gateway(args, stack, work, tune)


def peak(args: argparse.Namespace, target: Target) -> float:
    """Closed-loop req/s of 1-item WhatsApp webhooks over --peak-duration seconds."""
    plan = Plan("gateway", "whatsapp", 1, args.connections, None, 1.0, args.peak_duration)
    row = run(plan, target, args)
    if row.errors:
        raise RuntimeError(f"the peak run had {row.errors} errors: {dict(row.merged.errors_total)}")
    return row.rps


# --- meters ----------------------------------------------------------------------------------


def read(client: redis.Redis, target: Target, elapsed_s: float) -> Reading:
    """Every meter, now. The sample costs SAMPLE_KEYS RANDOMKEYs and a TTL per dd key."""
    pipe = client.pipeline(transaction=False)
    pipe.info("memory")
    pipe.info("keyspace")
    for stream in (*INBOXES, DEADLETTER):
        pipe.xlen(stream)
    for _ in range(SAMPLE_KEYS):
        pipe.randomkey()
    memory, keyspace, *rest = pipe.execute()
    lengths, drawn = rest[: len(INBOXES) + 1], rest[len(INBOXES) + 1 :]
    sampled = sorted({k for k in drawn if k is not None and k.startswith(b"gw:mk:")})
    pipe = client.pipeline(transaction=False)
    for key in sampled:
        pipe.ttl(key)
    ttls = pipe.execute() if sampled else []
    db = keyspace.get("db0", {})
    return Reading(
        elapsed_s=elapsed_s,
        rss=rss_bytes(target.pid),
        gateway_cpu_s=cpu_seconds(target.pid),
        used_memory=int(memory["used_memory"]),
        xlen=dict(zip(INBOXES, map(int, lengths[:-1]), strict=True)),
        deadletter=int(lengths[-1]),
        keys=int(db.get("keys", 0)),
        keys_with_ttl=int(db.get("expires", 0)),
        dd_sampled=len(sampled),
        dd_without_ttl=sum(1 for t in ttls if not t > 0),
    )


@dataclass
class Scan:
    """A full SCAN of the keyspace at the end, with the TTL of every key."""

    dedup: int = 0  # gw:mk:* keys (hashes of dedup marks: router/keys.py)
    marks: int = 0  # their fields: one per event
    dedup_without_ttl: int = 0  # ... whose TTL is not > 0
    smallest_ttl: int = -1  # smallest TTL of a dedup key, s
    no_ttl: list[str] = field(default_factory=list)  # every other key without a TTL (names)


def scan(client: redis.Redis) -> Scan:
    """Every key and its TTL, pipelined in batches of SCAN_COUNT."""
    out = Scan()
    for batch in _batches(client.scan_iter(count=SCAN_COUNT), SCAN_COUNT):
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.ttl(key)
        for key, ttl in zip(batch, pipe.execute(), strict=True):
            if not key.startswith(b"gw:mk:"):
                if ttl < 0 and len(out.no_ttl) < MAX_NO_TTL_NAMES:
                    out.no_ttl.append(key.decode(errors="replace"))
                continue
            out.dedup += 1
            out.marks += int(client.hlen(key))
            if ttl > 0:
                out.smallest_ttl = ttl if out.smallest_ttl < 0 else min(out.smallest_ttl, ttl)
            else:
                out.dedup_without_ttl += 1
    out.no_ttl.sort()
    return out


def _batches(keys: Any, size: int) -> Any:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def interval_of(tick: TickResult, reading: Reading, last: Reading, span_s: float) -> Interval:
    """Latency figures of one slice and its reading."""
    lat = sorted(tick.latencies)
    cpu = None
    if reading.gateway_cpu_s is not None and last.gateway_cpu_s is not None:
        cpu = (
            100
            * (reading.gateway_cpu_s - last.gateway_cpu_s)
            / (reading.elapsed_s - last.elapsed_s)
        )
    return Interval(
        reading=reading,
        answered=tick.answered,
        rps=tick.answered / span_s,
        p50_ms=percentile(lat, 0.50) * 1e3,
        p99_ms=percentile(lat, 0.99) * 1e3,
        p999_ms=percentile(lat, 0.999) * 1e3,
        max_ms=max(lat, default=math.nan) * 1e3,
        errors=dict(tick.errors),
        gateway_cpu_pct=cpu,
    )


# --- the run ---------------------------------------------------------------------------------


def soak(
    args: argparse.Namespace, target: Target, client: redis.Redis, rate: float
) -> tuple[Reading, list[Interval], Any]:
    """The open-loop load with a report line per slice; (start reading, slices, merged)."""
    plan = Plan("gateway", "whatsapp", 1, args.connections, rate, args.warmup, args.duration)
    spec = replace(worker_specs(plan, target, args)[0], tick_s=args.interval)
    workers = Workers([spec])
    intervals: list[Interval] = []
    try:
        workers.wait_ready()
        begin = workers.start()
        w0 = begin + args.warmup
        time.sleep(max(0.0, w0 - time.monotonic()))
        first = last = read(client, target, time.monotonic() - w0)
        print_line(header_cells(), first, None)
        timeout = args.interval + args.warmup + args.drain + RESULT_GRACE_S
        while (tick := workers.tick(timeout)) is not None:
            end = min((tick.index + 1) * args.interval, args.duration)
            span = end - tick.index * args.interval
            reading = read(client, target, time.monotonic() - w0)
            intervals.append(interval_of(tick, reading, last, span))
            print_line(header_cells(), reading, intervals[-1])
            last = reading
            assert target.service is not None
            target.service.check_alive()
        results = workers.results(args.drain + RESULT_GRACE_S)
    finally:
        workers.close()
    return first, intervals, merge(results)


# --- report ----------------------------------------------------------------------------------


def header_cells() -> list[str]:
    """Column names of the per-interval lines."""
    return [
        "elapsed",
        "RSS MB",
        "Redis MB",
        *(f"XLEN {s.removeprefix('gw:inbox:')}" for s in INBOXES),
        "keys",
        "no TTL",
        "dd sampled / TTL<=0",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "gw CPU %",
    ]


def cells(reading: Reading, interval: Interval | None) -> list[str]:
    """One line: the reading and, after the first, its slice's latency figures."""
    r = reading
    mins, secs = divmod(round(r.elapsed_s), 60)
    out = [
        f"{mins}:{secs:02d}",
        fmt(None if r.rss is None else r.rss / MB, ".1f"),
        fmt(r.used_memory / MB, ".1f"),
        *(f"{r.xlen[s]:,}" for s in INBOXES),
        f"{r.keys:,}",
        f"{r.keys - r.keys_with_ttl:,}",
        f"{r.dd_sampled} / {r.dd_without_ttl}",
    ]
    if interval is None:
        return [*out, "(warm-up done)", "", "", "", "", "", ""]
    i = interval
    return [
        *out,
        fmt(i.rps, ",.0f"),
        fmt(i.p50_ms, ".2f"),
        fmt(i.p99_ms, ".2f"),
        fmt(i.p999_ms, ".2f"),
        fmt(i.max_ms, ".1f"),
        str(sum(i.errors.values())),
        fmt(i.gateway_cpu_pct, ".0f"),
    ]


def print_line(headers: list[str], reading: Reading, interval: Interval | None) -> None:
    """A per-interval line, padded to fixed widths so the lines form a table as they come."""
    widths = [max(len(h), 9) for h in headers]
    if interval is None:
        print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)), flush=True)
    row = cells(reading, interval)
    print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip(), flush=True)


def verdicts(
    args: argparse.Namespace,
    first: Reading,
    intervals: list[Interval],
    keys: Scan,
    node_entries: int,
) -> list[tuple[bool, str]]:
    """(passed, line) per check."""
    out: list[tuple[bool, str]] = []
    end = intervals[-1].reading
    if first.rss and end.rss:
        growth = 100 * (end.rss - first.rss) / first.rss
        mid = intervals[(len(intervals) - 1) // 2].reading
        mid_growth = 100 * (end.rss - mid.rss) / mid.rss if mid.rss else math.nan
        out.append(
            (
                growth < args.max_rss_growth,
                f"gateway RSS {first.rss / MB:.1f} MB after the warm-up -> {end.rss / MB:.1f} MB "
                f"at the end: {growth:+.1f} % (limit {args.max_rss_growth:g} %; second half "
                f"{mid_growth:+.1f} %)",
            )
        )
    bound = args.inbox_maxlen + node_entries
    longest = max(r.reading.xlen[s] for r in intervals for s in INBOXES)
    out.append(
        (
            longest <= bound,
            f"inbox streams bounded: longest XLEN seen {longest:,} <= inbox_maxlen "
            f"{args.inbox_maxlen:,} + one stream node ({node_entries}) = {bound:,}",
        )
    )
    total, without, smallest = keys.dedup, keys.dedup_without_ttl, keys.smallest_ttl
    sampled = sum(r.reading.dd_sampled for r in intervals)
    sampled_bad = sum(r.reading.dd_without_ttl for r in intervals)
    out.append(
        (
            total > 0 and without == 0 and sampled_bad == 0,
            f"dedup keys carry a TTL: {total:,} gw:mk:* keys ({keys.marks:,} marks) at the end, "
            f"{without} without a TTL "
            f"> 0 (smallest {smallest:,} s); during the run {sampled_bad} of {sampled:,} sampled",
        )
    )
    no_ttl = sorted({r.reading.keys - r.reading.keys_with_ttl for r in intervals})
    out.append(
        (
            no_ttl[-1] - no_ttl[0] == 0,
            f"keys without a TTL stay put: {no_ttl[0]}..{no_ttl[-1]} over the run; at the "
            f"end: {', '.join(keys.no_ttl) or 'none'}",
        )
    )
    errors = sum(sum(i.errors.values()) for i in intervals)
    out.append((errors == 0, f"errors in the window: {errors}"))
    return out


def summary(
    args: argparse.Namespace,
    rate: float,
    peak_rps: float | None,
    first: Reading,
    intervals: list[Interval],
    merged: Any,
) -> list[str]:
    """Whole-window figures and what Redis memory grew by."""
    lat = merged.latencies
    end = intervals[-1].reading
    accepted = merged.answered_total - sum(
        n for label, n in merged.errors_total.items() if label.startswith("HTTP")
    )
    peak_text = f"half the closed-loop peak of {peak_rps:,.0f}" if peak_rps else "--rate"
    return [
        f"load: {rate:,.0f} webhooks/s open loop ({peak_text}), {args.connections} connections, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured; {accepted:,} answered 200 "
        f"(warm-up included)",
        f"whole window: p50 {percentile(lat, 0.5) * 1e3:.2f} ms, p99 "
        f"{percentile(lat, 0.99) * 1e3:.2f} ms, p99.9 {percentile(lat, 0.999) * 1e3:.2f} ms, "
        f"max {lat[-1] * 1e3 if lat else math.nan:.2f} ms; requests left the client "
        f"{merged.lag_mean_s * 1e3:.2f} ms late on average (max {merged.lag_max_s * 1e3:.2f} ms)",
        f"Redis used_memory {first.used_memory / MB:.1f} -> {end.used_memory / MB:.1f} MB; keys "
        f"{first.keys:,} -> {end.keys:,} (the dedup marks are fields of at most 2 x "
        "router.dedup_shards hashes per stream: the key count stays put)",
        f"dead letters: {end.deadletter}",
    ]


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Start, measure the peak, soak, report; 1 when a check fails."""
    args = parse_args(argv)
    problems: list[str] = []
    load = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="gw-soak-") as tmp, contextlib.ExitStack() as stack:
            work = Path(tmp)
            target = start(args, stack, work)
            assert target.redis_url is not None
            client = redis.Redis.from_url(target.redis_url, socket_timeout=30.0)
            stack.callback(client.close)
            peak_rps = None if args.rate else peak(args, target)
            rate = args.rate or max(1.0, round((peak_rps or 0) / 2))
            print(
                f"machine: {os.cpu_count()} CPUs, load average {load:.2f}, Python "
                f"{platform.python_version()}, uvloop {importlib.metadata.version('uvloop')}; "
                f"gateway, Redis and the client share this machine",
                flush=True,
            )
            if peak_rps:
                print(f"closed-loop peak: {peak_rps:,.0f} req/s; soak at {rate:,.0f}/s", flush=True)
            print(flush=True)
            first, intervals, merged = soak(args, target, client, rate)
            keys = scan(client)
            node_entries = int(
                client.config_get("stream-node-max-entries")["stream-node-max-entries"]
            )
            stack.close()  # stop the gateway, so its log is complete
            log_problems(work, problems)
    except (StartError, RuntimeError, redis.RedisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    checks = verdicts(args, first, intervals, keys, node_entries)
    lines = ["", *summary(args, rate, peak_rps, first, intervals, merged)]
    end = intervals[-1].reading
    per_mark = (end.used_memory - first.used_memory) / keys.marks if keys.marks else math.nan
    lines += [
        f"dedup marks at the end: {keys.marks:,} in {keys.dedup:,} hashes; Redis memory per "
        f"mark {per_mark:,.0f} B (used_memory growth over the measured window / marks)",
        "",
    ]
    lines += [f"{'PASS' if ok else 'FAIL'}  {text}" for ok, text in checks]
    if problems:
        lines += ["", f"gateway log lines at WARNING or above: {len(problems)}"]
        lines += problems[:MAX_LOG_LINES]
    print("\n".join(lines))
    if args.json:
        data = {
            "rate": rate,
            "peak_rps": peak_rps,
            "first": asdict(first),
            "intervals": [asdict(i) for i in intervals],
            "scan": asdict(keys),
            "checks": [{"passed": ok, "text": text} for ok, text in checks],
        }
        args.json.write_text(json.dumps(data, indent=2))
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
