"""Inbound webhook load: the gateway against a bare aiohttp server, in one command.

By default this starts everything itself on 127.0.0.1: a throwaway redis-server, the gateway
(`python -m gateway serve --config <temp config.yaml>`, CONTRACT.md §5) and
`benchmarks/bare_server.py`. The gateway reaches that Redis over a Unix socket, as it reaches
its embedded Redis (`--redis-tcp`: over TCP loopback instead). It then sends the same signed
WhatsApp (or Telegram) webhooks to both from separate load processes, prints one table, and
stops what it started.

    .venv/bin/python benchmarks/inbound.py                      # 1-item WhatsApp, both targets
    .venv/bin/python benchmarks/inbound.py --items 100          # 100 messages per POST
    .venv/bin/python benchmarks/inbound.py --channel telegram
    .venv/bin/python benchmarks/inbound.py --channel messenger --targets gateway
    .venv/bin/python benchmarks/inbound.py --rate 2000          # open loop, 2000 req/s
    .venv/bin/python benchmarks/inbound.py --scenario full      # the whole comparison, ~2 min
    .venv/bin/python benchmarks/inbound.py --url http://127.0.0.1:8080 --app-secret S

See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from _loadgen import Merged, Workers, WorkerSpec, merge, percentile, split
from _payloads import (
    IG_ACCOUNT_ID,
    PAGE_ID,
    TWILIO_ACCOUNT,
    TWILIO_PUBLIC_URL,
    TWILIO_SENDER,
    Number,
    PayloadSpec,
)
from _procs import (
    GATEWAY_COMMAND,
    HOST,
    Service,
    StartError,
    bare_server,
    cpu_seconds,
    free_port,
    gateway,
    get_request,
    http_status,
    redis_calls,
    redis_reads,
    redis_server,
    redis_socket_url,
    wait_for_log,
)

NUMBERS = (
    Number("100200300400500", "+15550001111", "200300400500600"),  # coexistence, support
    Number("100200300400600", "+5511955550000", "200300400500600"),  # cloud_api, sales
)
# Fixed stand-ins: the benchmark gateway talks to no provider, and they must be reproducible.
BOT_TOKEN = "7000000001:AAHbenchtokenaaaaaaaaaaaaaaaaaaaaaa"
BOT_ID = BOT_TOKEN.split(":", 1)[0]
TELEGRAM_SECRET = "bench_secret"
APP_SECRET = "bench_app_secret"
VERIFY_TOKEN = "bench_verify_token"
NOWHERE = "http://127.0.0.1:9"  # provider API base: discard port, nothing leaves this host
READY_TIMEOUT_S = 30.0
LEFT = frozenset({0, 1})  # table columns that are text
RESULT_GRACE_S = 60.0


@dataclass(frozen=True)
class Target:
    """Something to load: where it listens and, when known, what to meter."""

    name: str  # "gateway" | "bare"
    host: str
    port: int
    pid: int | None
    redis_url: str | None
    app_secret: str
    service: Service | None = None
    redis_pid: int | None = None  # only for a redis-server this run started


@dataclass(frozen=True)
class Plan:
    """One run: a target under one load."""

    target: str
    channel: str
    items: int
    connections: int
    rate: float | None
    warmup_s: float
    duration_s: float

    @property
    def load(self) -> str:
        """Short description, e.g. `whatsapp x10 closed`."""
        mode = "closed" if self.rate is None else "open"
        return f"{self.channel} x{self.items} {mode}"

    @property
    def concurrency(self) -> str:
        """Connections (closed loop) or the offered rate (open loop)."""
        return f"{self.connections} conns" if self.rate is None else f"{self.rate:,.0f}/s"


@dataclass
class Row:
    """The measurements of one run."""

    plan: Plan
    rps: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    errors: int
    merged: Merged
    cpu_s_per_1k_events: float | None = None
    redis_cpu_s_per_1k_events: float | None = None
    redis_calls_per_webhook: float | None = None
    scripts_per_webhook: float | None = None
    round_trips_per_webhook: float | None = None
    redis_top: list[tuple[str, float]] = field(default_factory=list)
    client_cpu_pct: float = 0.0


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring for examples."""
    p = argparse.ArgumentParser(
        description="Inbound webhook load on the gateway and a bare aiohttp server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add(
        "--scenario",
        choices=["single", "full"],
        default="single",
        help="single: one load on each target; full: the whole comparison (README)",
    )
    add(
        "--channel",
        choices=["whatsapp", "telegram", "messenger", "instagram", "twilio"],
        default="whatsapp",
    )
    add("--items", type=int, default=1, help="WhatsApp messages per POST")
    add("--connections", type=int, default=64, help="keep-alive connections")
    add("--duration", type=float, default=10.0, help="measured seconds per run")
    add("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    add("--rate", type=float, help="open loop at this many requests/s; omitted: closed loop")
    add("--client-procs", type=int, default=1, help="load generator processes")
    add("--targets", choices=["both", "gateway", "bare"], default="both", help="what to load")
    add("--url", help="load this running gateway instead of starting one (http://host:port)")
    add(
        "--app-secret",
        help=f"WhatsApp app secret; needed with --url (a started gateway gets {APP_SECRET})",
    )
    add("--telegram-secret", default=TELEGRAM_SECRET)
    add("--bot-id", default=BOT_ID)
    add("--redis-url", help="Redis for the started gateway; with --url: only read for stats")
    add(
        "--redis-tcp",
        action="store_true",
        help="the started gateway reaches the started Redis over TCP, not its Unix socket",
    )
    add(
        "--embedded-redis",
        action="store_true",
        help="leave redis out of the config: the gateway starts its own (no Redis stats)",
    )
    add("--gateway-pid", type=int, help="with --url: pid whose CPU time to meter")
    add("--gateway-cmd", default=GATEWAY_COMMAND, help="how to start the gateway")
    add(
        "--workers",
        type=int,
        default=1,
        help="worker processes of the started gateway (server.workers, SO_REUSEPORT)",
    )
    add(
        "--pairs",
        type=int,
        default=1,
        help="with both targets: run the gateway and the bare server this many times, "
        "alternately, on the closed-loop load that compares them; the ratio printed is the "
        "median of the pairs (each gateway run over the bare run right after it)",
    )
    add(
        "--pin",
        action="store_true",
        help="server under test (gateway or bare) alone on CPU 0; Redis and the load "
        "generator on the other CPUs (a machine where Redis has cores of its own)",
    )
    add("--contacts", type=int, default=1000, help="distinct senders the messages rotate over")
    add("--pool-mb", type=int, default=384, help="memory for pre-generated requests per run")
    add("--drain", type=float, default=10.0, help="seconds to wait for late answers")
    add("--json", type=Path, help="also write the results to this file")
    add("--verbose", action="store_true", help="print the config and pool sizes")
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject combinations that cannot run."""
    if args.channel in ("telegram", "twilio") and args.items != 1:
        p.error("Telegram and Twilio send one message per POST: --items must be 1")
    if args.pin and (len(os.sched_getaffinity(0)) < 2 or args.workers > 1 or args.url):
        p.error("--pin needs two CPUs, one gateway worker and a gateway this run starts")
    if min(args.items, args.connections, args.client_procs, args.contacts, args.pairs) < 1:
        p.error("--items, --connections, --client-procs, --contacts and --pairs must be >= 1")
    if args.duration <= 0 or args.warmup < 0 or (args.rate is not None and args.rate <= 0):
        p.error("--duration and --rate must be > 0, --warmup >= 0")
    if args.url and args.targets != "bare" and not args.app_secret:
        p.error("--url needs --app-secret (the running gateway's WhatsApp app secret)")
    if args.workers < 1 or (args.url and args.workers != 1):
        p.error("--workers must be >= 1, and is for a started gateway (not with --url)")
    if args.url and urlsplit(args.url).scheme != "http":
        p.error("--url must be http://host:port (the load client speaks plain HTTP/1.1)")


# --- setting up the targets ----------------------------------------------------------------


def gateway_config(
    port: int, redis_url: str | None, app_secret: str, workers: int = 1
) -> dict[str, Any]:
    """config.yaml for the started gateway (CONTRACT.md §4); `server.workers` only when
    asked for, so `--gateway-cmd` can start a gateway that predates the key."""
    numbers = [
        {
            "phone_number_id": n.phone_number_id,
            "display_phone_number": n.display_phone_number,
            "waba_id": n.waba_id,
            "access_token": "bench-access-token",
            "mode": mode,
            "assistant": assistant,
        }
        for n, mode, assistant in zip(
            NUMBERS, ("coexistence", "cloud_api"), ("support", "sales"), strict=True
        )
    ]
    config: dict[str, Any] = {"server": {"host": HOST, "port": port}}
    if workers != 1:
        config["server"]["workers"] = workers
    if redis_url:
        config["redis"] = {"url": redis_url}
    config["whatsapp"] = {
        "app_secret": app_secret,
        "verify_token": VERIFY_TOKEN,
        "api_base": f"{NOWHERE}/v21.0",
        "numbers": numbers,
    }
    bot = {"token": BOT_TOKEN, "secret_token": TELEGRAM_SECRET, "assistant": "support"}
    config["telegram"] = {"api_base": NOWHERE, "bots": [bot]}
    # Messenger and Instagram signed with the same app secret (one Meta app), so one load
    # generator signs every Meta body alike.
    page = {"page_id": PAGE_ID, "access_token": "bench-page-token", "assistant": "support"}
    account = {"account_id": IG_ACCOUNT_ID, "access_token": "bench-ig-token", "assistant": "sales"}
    meta = {"app_secret": app_secret, "verify_token": VERIFY_TOKEN}
    config["messenger"] = {**meta, "api_base": f"{NOWHERE}/v21.0", "pages": [page]}
    config["instagram"] = {**meta, "api_base": f"{NOWHERE}/v21.0", "accounts": [account]}
    # Twilio's auth token is the same app secret, so one load generator signs every body.
    config["twilio"] = {
        "account_sid": TWILIO_ACCOUNT,
        "auth_token": app_secret,
        "public_url": TWILIO_PUBLIC_URL,
        "api_base": NOWHERE,
        "numbers": [{"number": TWILIO_SENDER, "assistant": "sales"}],
    }
    return config


def start_gateway(args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> Target:
    """Redis (unless given or embedded), config.yaml, then the gateway; ready on /readyz."""
    redis_url, redis_pid = args.redis_url, None
    if redis_url is None and not args.embedded_redis:
        redis = stack.enter_context(redis_server(work))
        redis_pid = redis.pid
        tcp = f"redis://{redis.host}:{redis.port}/0"
        redis_url = tcp if args.redis_tcp else redis_socket_url(work)
    port = free_port()
    secret = args.app_secret or APP_SECRET
    path = work / "config.yaml"
    config = gateway_config(port, redis_url, secret, args.workers)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    if args.verbose:
        print(f"--- {path}\n{path.read_text()}", file=sys.stderr)
    service = stack.enter_context(gateway(args.gateway_cmd, path, port, work, READY_TIMEOUT_S))
    if args.workers > 1:
        # /readyz answers once the first worker listens; connections opened before the
        # others listen would all stay with it. The supervisor logs when all of them do.
        wait_for_log(service, f"with {args.workers} workers", READY_TIMEOUT_S)
    return Target("gateway", HOST, port, service.pid, redis_url, secret, service, redis_pid)


def start_tuned_gateway(
    args: argparse.Namespace,
    stack: contextlib.ExitStack,
    work: Path,
    tune: Callable[[dict[str, Any]], None],
) -> Target:
    """A redis-server of its own and a gateway on gateway_config() as `tune` changes it, with
    no drain at the end; its stderr in work/gateway (where outbound.log_problems reads)."""
    redis_service = stack.enter_context(redis_server(work))
    redis_url = redis_socket_url(work)
    port = free_port()
    config = gateway_config(port, redis_url, APP_SECRET)
    config["server"]["drain_seconds"] = 0  # nothing to drain for at the end of a benchmark
    tune(config)
    gw_dir = work / "gateway"
    gw_dir.mkdir()
    path = gw_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    if args.verbose:
        print(f"--- {path}\n{path.read_text()}", file=sys.stderr)
    service = stack.enter_context(gateway(args.gateway_cmd, path, port, gw_dir, READY_TIMEOUT_S))
    return Target(
        "gateway", HOST, port, service.pid, redis_url, APP_SECRET, service, redis_service.pid
    )


def running_gateway(args: argparse.Namespace) -> Target:
    """--url: check /readyz (a server without one, like bare_server.py, is let through)."""
    parts = urlsplit(args.url)
    host, port = parts.hostname or HOST, parts.port or 80
    status = http_status(host, port, get_request(host, port, "/readyz"))
    if status is None or status == 503 or status >= 500:
        raise StartError(f"{args.url} is not ready (GET /readyz: {status})")
    if status != 200:
        print(f"note: {args.url}/readyz answered {status}; loading it anyway", file=sys.stderr)
    return Target("gateway", host, port, args.gateway_pid, args.redis_url, args.app_secret)


SERVER_CPUS = {min(os.sched_getaffinity(0))}
OTHER_CPUS = os.sched_getaffinity(0) - SERVER_CPUS
"""--pin: where the server under test runs, and where Redis and the load generator run."""


def pin(targets: dict[str, Target]) -> None:
    """--pin: each server (and any process it starts later) on SERVER_CPUS, Redis elsewhere."""
    for target in targets.values():
        if target.pid is not None:
            os.sched_setaffinity(target.pid, SERVER_CPUS)
        if target.redis_pid is not None:
            os.sched_setaffinity(target.redis_pid, OTHER_CPUS)


def setup(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, Target]:
    """Start (or find) every target of the run."""
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-bench-")))
    targets: dict[str, Target] = {}
    if args.targets in ("both", "gateway"):
        targets["gateway"] = running_gateway(args) if args.url else start_gateway(args, stack, work)
    if args.targets in ("both", "bare"):
        bare = stack.enter_context(bare_server(work, READY_TIMEOUT_S))
        targets["bare"] = Target("bare", bare.host, bare.port, bare.pid, None, APP_SECRET, bare)
    return targets


# --- one run -------------------------------------------------------------------------------


def worker_specs(plan: Plan, target: Target, args: argparse.Namespace) -> list[WorkerSpec]:
    """The run's load split over the client processes."""
    payload = PayloadSpec(
        channel=plan.channel,
        items=plan.items,
        host=target.host,
        port=target.port,
        app_secret=target.app_secret,
        numbers=NUMBERS,
        bot_id=args.bot_id,
        telegram_secret=args.telegram_secret,
        contacts=args.contacts,
    )
    procs = min(args.client_procs, plan.connections)
    rate = None if plan.rate is None else plan.rate / procs
    return [
        WorkerSpec(
            payload=payload,
            connections=conns,
            warmup_s=plan.warmup_s,
            duration_s=plan.duration_s,
            rate=rate,
            phase_s=0.0 if plan.rate is None else i / plan.rate,  # interleave the schedules
            pool_bytes=args.pool_mb * 2**20 // procs,
            drain_s=args.drain,
            unique=target.name != "bare",  # the bare server ignores ids: its pool starts over
        )
        for i, conns in enumerate(split(plan.connections, procs))
    ]


@dataclass
class Meters:
    """CPU seconds (server, Redis) and Redis calls, read before and after a run."""

    cpu_s: float | None
    redis_cpu_s: float | None
    calls: dict[str, int] | None
    reads: int | None

    @classmethod
    def read(cls, target: Target) -> Meters:
        """Read every meter of target now."""
        return cls(
            cpu_seconds(target.pid),
            cpu_seconds(target.redis_pid),
            redis_calls(target.redis_url),
            redis_reads(target.redis_url),
        )


def run(plan: Plan, target: Target, args: argparse.Namespace) -> Row:
    """Run one plan against its target and measure it."""
    specs = worker_specs(plan, target, args)
    workers = Workers(specs)
    if getattr(args, "pin", False):  # soak.py and history_flood.py have no --pin
        for proc in workers.procs:
            if proc.pid is not None:
                os.sched_setaffinity(proc.pid, OTHER_CPUS)
    try:
        workers.wait_ready()
        before = Meters.read(target)
        workers.start()
        results = workers.results(plan.warmup_s + plan.duration_s + args.drain + RESULT_GRACE_S)
        after = Meters.read(target)
    finally:
        workers.close()
    if target.service is not None:
        target.service.check_alive()
    return make_row(plan, merge(results), before, after)


def make_row(plan: Plan, merged: Merged, before: Meters, after: Meters) -> Row:
    """Throughput, latency percentiles and costs of one run."""
    lat = merged.latencies
    rps = len(lat) / plan.duration_s  # answers (any status) inside the window
    row = Row(
        plan=plan,
        rps=rps,
        events_per_s=rps * plan.items,
        p50_ms=percentile(lat, 0.50) * 1e3,
        p99_ms=percentile(lat, 0.99) * 1e3,
        p999_ms=percentile(lat, 0.999) * 1e3,
        errors=sum(merged.errors_window.values()),
        merged=merged,
        client_cpu_pct=100 * merged.client_cpu_s / plan.duration_s,
    )
    add_costs(row, before, after)
    return row


def per_1k(before: float | None, after: float | None, events: int) -> float | None:
    """CPU seconds per 1000 events, when both readings exist."""
    if before is None or after is None:
        return None
    return (after - before) / events * 1e3


def add_costs(row: Row, before: Meters, after: Meters) -> None:
    """CPU seconds per 1000 events and Redis calls per webhook, over the whole run."""
    webhooks = row.merged.answered_total
    if not webhooks:
        return
    row.cpu_s_per_1k_events = per_1k(before.cpu_s, after.cpu_s, webhooks * row.plan.items)
    row.redis_cpu_s_per_1k_events = per_1k(
        before.redis_cpu_s, after.redis_cpu_s, webhooks * row.plan.items
    )
    if before.reads is not None and after.reads is not None:
        # includes the few reads of our own INFO calls: noise over thousands of webhooks
        row.round_trips_per_webhook = (after.reads - before.reads) / webhooks
    if before.calls is not None and after.calls is not None:
        delta = {k: v - before.calls.get(k, 0) for k, v in after.calls.items()}
        row.redis_calls_per_webhook = sum(delta.values()) / webhooks
        scripts = delta.get("evalsha", 0) + delta.get("eval", 0)
        row.scripts_per_webhook = scripts / webhooks
        top = sorted(((k, v / webhooks) for k, v in delta.items()), key=lambda kv: -kv[1])
        row.redis_top = [(k, v) for k, v in top[:6] if v >= 0.005]


# --- scenarios -----------------------------------------------------------------------------


def base_plan(args: argparse.Namespace, target: str) -> Plan:
    """The load the command line describes, on one target."""
    return Plan(
        target, args.channel, args.items, args.connections, args.rate, args.warmup, args.duration
    )


def single_plans(args: argparse.Namespace, targets: dict[str, Target]) -> list[Plan]:
    """The command line's load on each target (`--pairs` times, alternately, on both)."""
    if set(targets) == {"gateway", "bare"}:
        return _pairs(base_plan(args, "gateway"), args.pairs)
    return [base_plan(args, name) for name in targets]


def full_plans(args: argparse.Namespace, targets: dict[str, Target]) -> list[Plan]:
    """1-item on both; 10 and 100 items, Telegram, Messenger and Instagram on the gateway (or
    the only target). The Messenger and Instagram bodies carry the same text as the WhatsApp
    ones, so their rows compare with the 1-item WhatsApp row of the same run."""
    main = "gateway" if "gateway" in targets else "bare"
    one = replace(base_plan(args, main), channel="whatsapp", items=1, rate=None)
    plans = _pairs(one, args.pairs) if main == "gateway" and "bare" in targets else [one]
    plans += [replace(one, items=10), replace(one, items=100), replace(one, channel="telegram")]
    plans += [replace(one, channel=c) for c in ("messenger", "instagram", "twilio")]
    return plans


def _pairs(gateway: Plan, pairs: int) -> list[Plan]:
    """Gateway, bare, gateway, bare...: each pair's two runs back to back, so a machine whose
    speed drifts moves both sides of a ratio alike."""
    return [replace(gateway, target=t) for _ in range(pairs) for t in ("gateway", "bare")]


def open_loop_plan(rows: list[Row]) -> Plan:
    """Open loop on the first run's target at half its measured 1-item peak (the median
    peak when that load ran several times)."""
    first = rows[0].plan
    peaks = sorted(r.rps for r in rows if r.plan == first)
    return replace(first, rate=max(1.0, round(peaks[len(peaks) // 2] / 2)))


def run_all(args: argparse.Namespace, targets: dict[str, Target]) -> list[Row]:
    """Every run of the scenario, with a progress line after each."""
    plans = (full_plans if args.scenario == "full" else single_plans)(args, targets)
    total = len(plans) + (args.scenario == "full")
    rows: list[Row] = []
    for plan in plans:
        rows.append(run(plan, targets[plan.target], args))
        progress(rows, total, args.verbose)
    if args.scenario == "full":
        plan = open_loop_plan(rows)
        rows.append(run(plan, targets[plan.target], args))
        progress(rows, total, args.verbose)
    return rows


def progress(rows: list[Row], total: int, verbose: bool) -> None:
    """One line on stderr for the run that just finished."""
    r = rows[-1]
    line = (
        f"[{len(rows)}/{total}] {r.plan.target} {r.plan.load} {r.plan.concurrency}: "
        f"{r.rps:,.0f} req/s, p99 {r.p99_ms:.2f} ms, {r.errors} errors"
    )
    if verbose:
        m = r.merged
        line += (
            f"\n      pool {m.pool_size:,} requests of {m.request_bytes:,} B, "
            f"built live {m.live_built:,}, sent {m.sent_total:,}"
        )
    print(line, file=sys.stderr)


# --- report --------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    """A number, or '-' when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def table(headers: list[str], lines: list[list[str]], left: frozenset[int] = LEFT) -> str:
    """Columns padded to width; the `left` ones left-aligned, numbers right-aligned."""
    widths = [max(len(x) for x in col) for col in zip(headers, *lines, strict=True)]

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([render(headers), render(["-" * w for w in widths]), *map(render, lines)])


def throughput_table(rows: list[Row]) -> str:
    """Target, load, req/s, events/s, latency percentiles, errors."""
    headers = [
        "target",
        "load",
        "conns/rate",
        "req/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
    ]
    lines = [
        [
            r.plan.target,
            r.plan.load,
            r.plan.concurrency,
            fmt(r.rps, ",.0f"),
            fmt(r.events_per_s, ",.0f"),
            fmt(r.p50_ms, ".2f"),
            fmt(r.p99_ms, ".2f"),
            fmt(r.p999_ms, ".2f"),
            str(r.errors),
        ]
        for r in rows
    ]
    return table(headers, lines)


def cost_table(rows: list[Row]) -> str:
    """Redis calls per webhook, server and client CPU."""
    headers = [
        "target",
        "load",
        "round trips/webhook",
        "scripts/webhook",
        "commands/webhook",
        "server CPU s/1k events",
        "Redis CPU s/1k events",
        "client CPU %",
        "top Redis commands per webhook",
    ]
    lines = [
        [
            r.plan.target,
            r.plan.load,
            fmt(r.round_trips_per_webhook, ".2f"),
            fmt(r.scripts_per_webhook, ".2f"),
            fmt(r.redis_calls_per_webhook, ".2f"),
            fmt(r.cpu_s_per_1k_events, ".3f"),
            fmt(r.redis_cpu_s_per_1k_events, ".3f"),
            fmt(r.client_cpu_pct, ".0f"),
            ", ".join(f"{k} {v:.2f}" for k, v in r.redis_top) or "-",
        ]
        for r in rows
    ]
    return table(headers, lines, LEFT | {8})


def ratios(rows: list[Row]) -> list[str]:
    """gateway/bare requests/s for every load both targets ran: each gateway run over the
    bare run of the same load that came right after it; the median when there are several."""
    pairs: dict[str, list[float]] = {}
    for gw, bare in itertools.pairwise(rows):
        paired = (gw.plan.target, bare.plan.target) == ("gateway", "bare")
        if paired and gw.plan.load == bare.plan.load and bare.rps:
            pairs.setdefault(gw.plan.load, []).append(gw.rps / bare.rps)
    out = []
    for load, values in pairs.items():
        if len(values) == 1:
            out.append(f"gateway/bare req/s, {load}: {values[0]:.2f}")
            continue
        each = ", ".join(f"{v:.2f}" for v in values)
        median = statistics.median(values)
        out.append(
            f"gateway/bare req/s, {load}: {median:.2f} (median of {len(values)} pairs: {each})"
        )
    return out


def lag_lines(rows: list[Row]) -> list[str]:
    """How late open-loop requests left the client (timer granularity, busy connections)."""
    return [
        f"open loop {r.plan.target} {r.plan.load} at {r.plan.concurrency}: requests left the "
        f"client {r.merged.lag_mean_s * 1e3:.2f} ms after their due time on average "
        f"(max {r.merged.lag_max_s * 1e3:.2f} ms); latencies count from the due time"
        for r in rows
        if r.plan.rate is not None
    ]


def error_lines(rows: list[Row]) -> list[str]:
    """Every non-200 answer or failure of the whole run (warm-up included), with a sample."""
    out = []
    for r in rows:
        for label, count in r.merged.errors_total.most_common():
            sample = r.merged.samples.get(label, b"")[:120]
            out.append(f"{r.plan.target} {r.plan.load}: {label} x{count}  {sample!r}")
    return out


def report(rows: list[Row], args: argparse.Namespace) -> str:
    """The whole printed report."""
    parts = [
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"uvloop {importlib.metadata.version('uvloop')}; "
        f"load: {args.client_procs} client process(es), "
        f"{args.warmup:g} s warm-up + {args.duration:g} s measured per run; "
        f"gateway: {args.workers} worker process(es), {redis_link(args)}; "
        + (
            f"servers pinned to CPU {fmt_cpus(SERVER_CPUS)}, Redis and the client to CPU "
            f"{fmt_cpus(OTHER_CPUS)}"
            if args.pin
            else "servers, Redis and the client share this machine"
        ),
        "",
        throughput_table(rows),
    ]
    notes = ratios(rows) + lag_lines(rows)
    parts += ["", *notes] if notes else []
    if any(r.plan.target == "gateway" for r in rows) or args.verbose:
        parts += ["", cost_table(rows)]
    errors = error_lines(rows)
    parts += ["", "errors (whole run, warm-up included):", *errors] if errors else []
    parts += live_build_notes(rows)
    return "\n".join(parts)


def fmt_cpus(cpus: set[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def redis_link(args: argparse.Namespace) -> str:
    """How the gateway reaches Redis, for the report's first line."""
    if args.url or args.redis_url:
        return "Redis as given"
    if args.embedded_redis:
        return "its embedded Redis"
    return "Redis over TCP loopback" if args.redis_tcp else "Redis over a Unix socket"


def live_build_notes(rows: list[Row]) -> list[str]:
    """Runs that outgrew their pre-generated requests (raise --pool-mb to avoid it)."""
    return [
        f"note: {r.plan.target} {r.plan.load}: {r.merged.live_built:,} of "
        f"{r.merged.sent_total:,} requests were built during the run, at some client CPU "
        "cost (--pool-mb pre-generates more)"
        for r in rows
        if r.merged.live_built > r.merged.sent_total // 10
    ]


def row_json(row: Row) -> dict[str, Any]:
    """A row as JSON-ready data (latency list and samples left out)."""
    m = row.merged
    data = {f.name: getattr(row, f.name) for f in fields(row) if f.name != "merged"}
    data["plan"] = {f.name: getattr(row.plan, f.name) for f in fields(row.plan)}
    data.update(
        errors_total=dict(m.errors_total),
        answered_total=m.answered_total,
        pool_size=m.pool_size,
        live_built=m.live_built,
        request_bytes=m.request_bytes,
    )
    return data


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Start the targets, run the scenario, print the report; 1 when something failed."""
    args = parse_args(argv)
    try:
        with contextlib.ExitStack() as stack:
            targets = setup(args, stack)
            if args.pin:
                pin(targets)
            rows = run_all(args, targets)
    except (StartError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(rows, args))
    if args.json:
        args.json.write_text(json.dumps([row_json(r) for r in rows], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
