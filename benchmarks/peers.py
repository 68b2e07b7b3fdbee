"""The gateway against pywa and aiogram: same machine, same load, same payloads, one command.

Issue #5 asks the gateway to accept at least 2.5x the webhooks per second of pywa (WhatsApp)
and 3x those of aiogram (Telegram). This measures exactly that, on 127.0.0.1:

1. a virtualenv of its own for the peers (`benchmarks/.peers-venv`, git-ignored), made from
   `benchmarks/peers/requirements.txt` on first use (or when that file changes), so pywa,
   aiogram, FastAPI and uvicorn never enter the project's dependencies;
2. the gateway as inbound.py starts it (a throwaway redis-server, a temporary config), pywa 4
   on FastAPI + uvicorn (`peers/pywa_server.py`, sync and async flavours) and aiogram 3 with
   its aiohttp `SimpleRequestHandler` (`peers/aiogram_server.py`), each with a no-op handler;
3. one probe per target (a real 200, and the handler or the stream saw it), then the same
   closed-loop load on each in turn from inbound.py's generator: signed 1-item WhatsApp
   webhooks for the gateway and pywa, Telegram updates with the secret-token header for the
   gateway and aiogram;
4. after each run, the count of what the target really handled (pywa / aiogram: calls of the
   no-op handler; gateway: events in its inbox streams) against the 200s it answered.

It prints one table and the ratios, and exits 1 when any target answered anything but 200 or
handled fewer messages than it acknowledged (a comparison against a peer that rejects or
drops our payloads would be fake).

    .venv/bin/python benchmarks/peers.py
    .venv/bin/python benchmarks/peers.py --rounds 3 --json peers.json
    .venv/bin/python benchmarks/peers.py --targets pywa aiogram --duration 5

See benchmarks/README.md ("Peers") for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from _payloads import TELEGRAM_PATH, WHATSAPP_PATH, RequestFactory
from _procs import (
    GATEWAY_COMMAND,
    HOST,
    StartError,
    free_port,
    get_request,
    http_status,
    script_server,
)
from inbound import (
    APP_SECRET,
    BOT_ID,
    BOT_TOKEN,
    TELEGRAM_SECRET,
    VERIFY_TOKEN,
    Plan,
    Row,
    Target,
    fmt,
    run,
    start_gateway,
    table,
    worker_specs,
)

from router.keys import inbox

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
REQUIREMENTS = PEERS_DIR / "requirements.txt"
DEFAULT_VENV = HERE / ".peers-venv"
STAMP = ".requirements.sha256"
PEER_READY_TIMEOUT_S = 60.0  # importing aiogram or FastAPI takes a few seconds on a busy box
INBOXES = (inbox("support"), inbox("sales"))  # every stream the bench config publishes to
HANDLED_WAIT_S = 60.0  # for handlers still working through acknowledged webhooks
HANDLED_IDLE_S = 3.0  # ... but stop waiting when nothing moves for this long
PROBE_WAIT_S = 10.0
TARGETS = ("gateway-whatsapp", "pywa", "pywa-async", "gateway-telegram", "aiogram")
GOALS = {"pywa": 2.5, "aiogram": 3.0}  # issue #5: gateway req/s >= goal x the peer's
VERSIONS = ("pywa", "aiogram", "fastapi", "starlette", "uvicorn", "aiohttp", "uvloop", "httptools")


@dataclass(frozen=True)
class Spec:
    """One target of the comparison: what serves, on which channel."""

    key: str  # command-line name, e.g. "pywa-async"
    server: str  # "gateway" | "pywa" | "pywa-async" | "aiogram"
    channel: str  # "whatsapp" | "telegram"


SPECS = {
    "gateway-whatsapp": Spec("gateway-whatsapp", "gateway", "whatsapp"),
    "pywa": Spec("pywa", "pywa", "whatsapp"),
    "pywa-async": Spec("pywa-async", "pywa-async", "whatsapp"),
    "gateway-telegram": Spec("gateway-telegram", "gateway", "telegram"),
    "aiogram": Spec("aiogram", "aiogram", "telegram"),
}


@dataclass
class Result:
    """One load on one target, with what the target really did with it."""

    spec: Spec
    row: Row
    ok: int  # 200 answers over the whole run, warm-up included
    handled: int  # handler calls (peers) or inbox events (gateway) for this run
    backlog: int  # 200s not yet handled when the load stopped
    problems: int  # WARNING+ log records of the peer during the run
    failures: list[str] = field(default_factory=list)

    @property
    def handled_rps(self) -> float:
        """Messages handled per second while the load ran (warm-up + window), about."""
        plan = self.row.plan
        return (self.ok - self.backlog) / (plan.warmup_s + plan.duration_s)


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring for examples."""
    p = argparse.ArgumentParser(
        description="The gateway against pywa and aiogram under the same webhook load.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("--targets", nargs="+", choices=TARGETS, default=list(TARGETS), help="what to load")
    add("--connections", type=int, default=64, help="keep-alive connections (closed loop)")
    add("--duration", type=float, default=10.0, help="measured seconds per run")
    add("--warmup", type=float, default=2.0, help="unmeasured seconds before each run")
    add("--rounds", type=int, default=1, help="repeat every run; ratios use the median req/s")
    add("--client-procs", type=int, default=1, help="load generator processes")
    add("--contacts", type=int, default=1000, help="distinct senders the messages rotate over")
    add("--pool-mb", type=int, default=384, help="memory for pre-generated requests per run")
    add("--drain", type=float, default=10.0, help="seconds to wait for late answers")
    add("--venv", type=Path, default=DEFAULT_VENV, help="the peers' virtualenv")
    add("--reinstall", action="store_true", help="recreate the peers' virtualenv first")
    add("--gateway-cmd", default=GATEWAY_COMMAND, help="how to start the gateway")
    add("--json", type=Path, help="also write the results to this file")
    add("--verbose", action="store_true", help="print the gateway config and progress detail")
    args = p.parse_args(argv)
    if min(args.connections, args.client_procs, args.contacts, args.rounds) < 1:
        p.error("--connections, --client-procs, --contacts and --rounds must be >= 1")
    if args.duration <= 0 or args.warmup < 0:
        p.error("--duration must be > 0, --warmup >= 0")
    # what inbound.start_gateway / worker_specs / run read
    args.items, args.rate, args.workers = 1, None, 1
    args.redis_url, args.embedded_redis, args.app_secret = None, False, None
    args.bot_id, args.telegram_secret = BOT_ID, TELEGRAM_SECRET
    args.redis_tcp, args.pin = False, False  # Redis over its Unix socket, as inbound.py
    return args


# --- the peers' virtualenv -------------------------------------------------------------------


def ensure_venv(venv: Path, reinstall: bool) -> Path:
    """The peers' Python, after (re)creating its virtualenv from requirements.txt if needed."""
    python = venv / "bin" / "python"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = venv / STAMP
    if not reinstall and python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    print(f"creating {venv} from {REQUIREMENTS.name} (a minute or two) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(want)
    return python


def peer_versions(python: Path) -> dict[str, str]:
    """Installed versions of the peers' frameworks and servers."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(python), "-c", code, *VERSIONS], check=True, capture_output=True, text=True
    )
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


# --- setting up the targets ------------------------------------------------------------------


def peer_command(server: str, python: Path, port: int) -> list[str]:
    """How to start one peer server."""
    if server == "aiogram":
        return [
            str(python),
            str(PEERS_DIR / "aiogram_server.py"),
            *("--host", HOST, "--port", str(port), "--token", BOT_TOKEN),
            *("--secret-token", TELEGRAM_SECRET, "--path", TELEGRAM_PATH.format(bot_id=BOT_ID)),
        ]
    flavor = "async" if server == "pywa-async" else "sync"
    return [
        str(python),
        str(PEERS_DIR / "pywa_server.py"),
        *("--host", HOST, "--port", str(port), "--flavor", flavor),
        *("--app-secret", APP_SECRET, "--verify-token", VERIFY_TOKEN, "--path", WHATSAPP_PATH),
    ]


def setup(
    args: argparse.Namespace, python: Path | None, stack: contextlib.ExitStack
) -> dict[str, Target]:
    """Start every server the chosen targets need (the gateway once for both channels)."""
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-peers-")))
    servers = {SPECS[key].server for key in args.targets}
    targets: dict[str, Target] = {}
    if "gateway" in servers:
        targets["gateway"] = start_gateway(args, stack, work)
    for server in sorted(servers - {"gateway"}):
        assert python is not None
        port = free_port()
        ready = get_request(HOST, port, "/_bench/count")
        cmd = peer_command(server, python, port)
        service = stack.enter_context(
            script_server(server, cmd, port, ready, work, PEER_READY_TIMEOUT_S)
        )
        targets[server] = Target(server, HOST, port, service.pid, None, APP_SECRET, service)
    return targets


# --- what a target handled -------------------------------------------------------------------


def counts(target: Target) -> tuple[int, int]:
    """(messages handled so far, problems logged so far) of one target."""
    if target.name == "gateway":
        assert target.redis_url is not None
        client = redis.Redis.from_url(target.redis_url, socket_timeout=5.0)
        try:
            pipe = client.pipeline(transaction=False)
            for stream in INBOXES:
                pipe.xlen(stream)
            return sum(pipe.execute()), 0
        finally:
            client.close()  # type: ignore[no-untyped-call]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    with opener.open(f"http://{target.host}:{target.port}/_bench/count", timeout=5.0) as resp:
        data = json.load(resp)
    return int(data["handled"]), int(data["problems"])


def wait_handled(target: Target, base: int, expected: int, limit_s: float) -> int:
    """Handled since `base`, once it reaches `expected` or stops moving (bounded wait)."""
    last, moved = counts(target)[0] - base, time.monotonic()
    deadline = moved + limit_s
    while last < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        now = counts(target)[0] - base
        if now != last:
            last, moved = now, time.monotonic()
        elif time.monotonic() - moved > HANDLED_IDLE_S:
            break
    return last


def probe(spec: Spec, target: Target, args: argparse.Namespace) -> None:
    """One request of the run's kind: it must answer 200 and be handled; StartError if not."""
    plan = Plan(spec.server, spec.channel, 1, 1, None, 0.0, 1.0)
    factory = RequestFactory(worker_specs(plan, target, args)[0].payload)
    before = counts(target)[0]
    status = http_status(target.host, target.port, factory.build(0), timeout_s=5.0)
    tail = target.service.stderr_tail() if target.service else ""
    if status != 200:
        raise StartError(f"{spec.key}: the probe request got {status}, not 200\n{tail}")
    if wait_handled(target, before, 1, PROBE_WAIT_S) < 1:
        raise StartError(f"{spec.key}: answered 200 but never handled the probe\n{tail}")


# --- the runs --------------------------------------------------------------------------------


def measure(spec: Spec, target: Target, args: argparse.Namespace) -> Result:
    """One closed-loop load on one target, and what it handled of it."""
    plan = Plan(spec.server, spec.channel, 1, args.connections, None, args.warmup, args.duration)
    handled0, problems0 = counts(target)
    row = run(plan, target, args)
    at_end = counts(target)[0] - handled0
    merged = row.merged
    http_errors = sum(n for label, n in merged.errors_total.items() if label.startswith("HTTP"))
    ok = merged.answered_total - http_errors
    handled = wait_handled(target, handled0, ok, HANDLED_WAIT_S)
    problems = counts(target)[1] - problems0
    result = Result(spec, row, ok, handled, max(0, ok - at_end), problems)
    errors = sum(merged.errors_total.values())
    if errors:
        samples = "; ".join(
            f"{label} x{n} {merged.samples.get(label, b'')[:100]!r}"
            for label, n in merged.errors_total.most_common(3)
        )
        result.failures.append(f"{spec.key}: {errors} answers other than 200 ({samples})")
    if handled < ok:
        result.failures.append(f"{spec.key}: answered 200 {ok:,} times but handled {handled:,}")
    if problems:
        result.failures.append(f"{spec.key}: logged {problems} warnings or errors (stderr)")
    if not ok:
        result.failures.append(f"{spec.key}: no request answered")
    return result


def run_all(args: argparse.Namespace, targets: dict[str, Target]) -> list[Result]:
    """Probe every target, then every run of every round, with a progress line each."""
    for key in args.targets:
        probe(SPECS[key], targets[SPECS[key].server], args)
    results: list[Result] = []
    total = len(args.targets) * args.rounds
    for _ in range(args.rounds):
        for key in args.targets:
            spec = SPECS[key]
            results.append(measure(spec, targets[spec.server], args))
            r = results[-1]
            print(
                f"[{len(results)}/{total}] {key}: {r.row.rps:,.0f} req/s, "
                f"p99 {r.row.p99_ms:.2f} ms, {r.row.errors} errors, "
                f"handled {r.handled:,} of {r.ok:,}",
                file=sys.stderr,
            )
    return results


# --- report ----------------------------------------------------------------------------------


def framework(spec: Spec, versions: dict[str, str]) -> str:
    """What serves the target, with versions."""
    v = versions.get
    if spec.server == "gateway":
        own = importlib.metadata.version
        return f"gateway (aiohttp {own('aiohttp')}, httptools {own('httptools')}) + Redis"
    if spec.server == "aiogram":
        return f"aiogram {v('aiogram')}, aiohttp {v('aiohttp')}"
    flavor = "pywa_async" if spec.server == "pywa-async" else "pywa"
    return f"{flavor} {v('pywa')}, FastAPI {v('fastapi')}, uvicorn {v('uvicorn')}"


def results_table(results: list[Result], versions: dict[str, str]) -> str:
    """One line per run."""
    headers = [
        "target",
        "framework",
        "load",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "handled / 200s",
        "backlog",
        "handled/s",
        "CPU s/1k req",
    ]
    lines = [
        [
            r.spec.key,
            framework(r.spec, versions),
            f"{r.spec.channel} x1 closed {r.row.plan.connections}",
            fmt(r.row.rps, ",.0f"),
            fmt(r.row.p50_ms, ".2f"),
            fmt(r.row.p99_ms, ".2f"),
            fmt(r.row.p999_ms, ".2f"),
            str(sum(r.row.merged.errors_total.values())),
            f"{r.handled:,} / {r.ok:,}",
            f"{r.backlog:,}",
            fmt(r.handled_rps, ",.0f"),
            fmt(r.row.cpu_s_per_1k_events, ".3f"),
        ]
        for r in results
    ]
    return table(headers, lines, frozenset({0, 1, 2}))


def median_rps(results: list[Result], key: str) -> float | None:
    """Median req/s of one target over the rounds."""
    values = [r.row.rps for r in results if r.spec.key == key]
    return statistics.median(values) if values else None


def ratio_lines(results: list[Result]) -> list[str]:
    """gateway/peer median req/s for every peer that ran, against issue #5's goal."""
    out = []
    pairs = (
        ("gateway-whatsapp", "pywa", "pywa", "WhatsApp"),
        ("gateway-whatsapp", "pywa-async", "pywa", "WhatsApp"),
        ("gateway-telegram", "aiogram", "aiogram", "Telegram"),
    )
    for ours, theirs, goal_key, channel in pairs:
        gw, peer = median_rps(results, ours), median_rps(results, theirs)
        if gw is None or not peer:
            continue
        ratio, goal = gw / peer, GOALS[goal_key]
        out.append(
            f"gateway/{theirs} req/s ({channel}): {gw:,.0f} / {peer:,.0f} = {ratio:.2f}x; "
            f"goal >= {goal:g}x: {'met' if ratio >= goal else 'NOT met'}"
        )
    return out


def report(
    results: list[Result], versions: dict[str, str], args: argparse.Namespace, load: list[float]
) -> str:
    """The whole printed report."""
    rounds = f", {args.rounds} rounds (ratios from the median req/s)" if args.rounds > 1 else ""
    parts = [
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} before / {load[1]:.2f} "
        f"after, Python {platform.python_version()}; closed loop, {args.connections} "
        f"connections, {args.client_procs} client process(es), {args.warmup:g} s warm-up + "
        f"{args.duration:g} s measured per run{rounds}; servers, Redis and the client share "
        "this machine",
        "",
        results_table(results, versions),
        "",
        *ratio_lines(results),
    ]
    failures = [f for r in results for f in r.failures]
    if failures:
        parts += ["", "FAILED: these figures do not compare like with like:", *failures]
    return "\n".join(parts)


def result_json(r: Result) -> dict[str, Any]:
    """A result as JSON-ready data."""
    m = r.row.merged
    return {
        "target": r.spec.key,
        "channel": r.spec.channel,
        "rps": r.row.rps,
        "p50_ms": r.row.p50_ms,
        "p99_ms": r.row.p99_ms,
        "p999_ms": r.row.p999_ms,
        "errors_total": dict(m.errors_total),
        "ok": r.ok,
        "handled": r.handled,
        "backlog": r.backlog,
        "handled_rps": r.handled_rps,
        "cpu_s_per_1k": r.row.cpu_s_per_1k_events,
        "failures": r.failures,
    }


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Prepare the peers, start everything, run, print; 1 when a figure cannot be trusted."""
    args = parse_args(argv)
    peers = any(SPECS[key].server != "gateway" for key in args.targets)
    try:
        python = ensure_venv(args.venv, args.reinstall) if peers else None
        versions = peer_versions(python) if python else {}
        load_before = os.getloadavg()[0]
        with contextlib.ExitStack() as stack:
            targets = setup(args, python, stack)
            results = run_all(args, targets)
    except (StartError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report(results, versions, args, [load_before, os.getloadavg()[0]]))
    if args.json:
        data = {"versions": versions, "results": [result_json(r) for r in results]}
        args.json.write_text(json.dumps(data, indent=2))
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
