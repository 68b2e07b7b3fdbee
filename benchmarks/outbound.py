"""Outbound load: commands in `gw:outbox` → gateway(s) → the stand-in Graph API, in one command.

It starts everything on 127.0.0.1: a throwaway redis-server, the stand-in Graph API
(gateway_demo/standins/graph_api.py) in a process of its own, and `--gateways G` gateway processes
(`python -m gateway serve --config <temp config.yaml>`, CONTRACT.md §5) sharing that Redis,
each configured with the same `--numbers N` WhatsApp numbers (half coexistence at 20/s, half
cloud_api at 80/s). It opens the 24-hour window of `--contacts C` contacts per number with
signed inbound webhooks, pushes `--commands K` text commands into `gw:outbox` as fast as
pipelined XADD goes, waits (bounded) for K delivery events, stops what it started and
prints: elapsed time, aggregate send rate, outcomes, per number type the worst 1-second
window against the cap (CONTRACT.md §3), and the limiter's cost per send.

    .venv/bin/python benchmarks/outbound.py                          # 10,000 commands, 50 numbers
    .venv/bin/python benchmarks/outbound.py --commands 2000          # a quicker run
    .venv/bin/python benchmarks/outbound.py --gateways 3             # three processes share it
    .venv/bin/python benchmarks/outbound.py --single-number          # 200 on one coexistence number
    .venv/bin/python benchmarks/outbound.py --single-number --gateways 3

See benchmarks/README.md ("Outbound") for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import redis
import yaml
from _outbound_report import Arrival, Measured, NumberSpec, report, to_json
from _procs import (
    GATEWAY_COMMAND,
    HOST,
    Service,
    StartError,
    _spawn,
    cpu_seconds,
    free_port,
    gateway,
    get_request,
    redis_calls,
    redis_server,
    redis_socket_url,
    running,
    wait_until,
)

from adapters.whatsapp import sign

APP_SECRET = "bench_app_secret"
VERIFY_TOKEN = "bench_verify_token"
WABA_ID = "200300400500600"
ASSISTANT = "bench"
INBOX = f"gw:inbox:{ASSISTANT}"
OUTBOX = "gw:outbox"
CAPS = {"coexistence": 20, "cloud_api": 80}  # CONTRACT.md §3 defaults
GUARD_MS = 25.0  # policy.limiter_guard_ms default: sends are (1 s + guard) / mps apart
GRAPH_MODULE = "benchmarks._outbound_graph"
CONTROL_PATH = "/_bench/requests"  # the same constant lives in _outbound_graph.py
READY_TIMEOUT_S = 30.0
WEBHOOK_BATCH = 250  # messages per inbound POST when opening windows
XADD_CHUNK = 1000  # commands per pipeline round trip
POLL_S = 0.05
HEAD_WAIT_S = 10.0  # how long the first command of each number may take before the rest go
SINGLE_NUMBER_COMMANDS = 200
PAIR_BUCKET = 45  # WhatsApp pair rate: beyond this per (number, contact) the pair limiter paces
_LOG_PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback|Error handling request")


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; see the module docstring for examples."""
    p = argparse.ArgumentParser(
        description="Outbound load: gw:outbox → gateway(s) → the stand-in Graph API."
    )
    add = p.add_argument
    add("--gateways", type=int, default=1, help="gateway processes sharing one Redis (1)")
    add("--numbers", type=int, default=50, help="WhatsApp numbers, alternately coex/cloud (50)")
    add("--contacts", type=int, default=20, help="contacts with an open window per number (20)")
    add("--commands", type=int, help="text commands (10000; 200 with --single-number)")
    add(
        "--spread",
        choices=["even", "by-cap"],
        default="even",
        help="even (default): the same count per number; by-cap: in proportion to the caps",
    )
    add(
        "--single-number",
        action="store_true",
        help="every command to ONE coexistence number; print its sends per second",
    )
    add(
        "--concurrency",
        type=int,
        default=None,
        help="outbound.concurrency per gateway (default: the gateway's, 256)",
    )
    add("--send-wait-max", type=float, default=600.0, help="policy.send_wait_max_seconds (600)")
    add("--guard-ms", type=float, help="policy.limiter_guard_ms (default: the gateway's, 25)")
    add("--redis-connections", type=int, help="redis.max_connections (default: the gateway's)")
    add(
        "--stand-in-nice",
        type=int,
        default=0,
        help="nice increment for the stand-in (e.g. -10 as root: its arrival times stay "
        "accurate while the gateways saturate the CPUs)",
    )
    add("--gateway-cmd", default=GATEWAY_COMMAND, help=f"how to start one ({GATEWAY_COMMAND})")
    add("--json", type=Path, help="also write the figures to this file")
    add("--verbose", action="store_true", help="print the generated config and progress")
    args = p.parse_args(argv)
    if args.commands is None:
        args.commands = SINGLE_NUMBER_COMMANDS if args.single_number else 10_000
    if min(args.gateways, args.numbers, args.contacts, args.commands) < 1:
        p.error("--gateways, --numbers, --contacts and --commands must be >= 1")
    if args.numbers > 9999 or args.contacts > 9999:
        p.error("--numbers and --contacts go up to 9999")
    return args


# --- numbers, config, processes --------------------------------------------------------------


def make_numbers(count: int) -> list[NumberSpec]:
    """Even indexes coexistence, odd cloud_api; US display numbers (no cross-country rule)."""
    modes = ("coexistence", "cloud_api")
    return [
        NumberSpec(
            phone_number_id=f"1002003{i:08d}",
            display_phone_number=f"+1555000{i:04d}",
            mode=modes[i % 2],
            cap=CAPS[modes[i % 2]],
            token=f"bench-token-{i:04d}",
        )
        for i in range(count)
    ]


def make_contacts(count: int) -> list[str]:
    """US wa_ids: 1415555xxxx."""
    return [f"1415555{j:04d}" for j in range(count)]


def gateway_config(
    port: int, redis_url: str, api_base: str, numbers: list[NumberSpec], args: argparse.Namespace
) -> dict[str, Any]:
    """config.yaml of one gateway process (CONTRACT.md §4); only the port differs."""
    redis_cfg: dict[str, Any] = {"url": redis_url}
    if args.redis_connections:
        redis_cfg["max_connections"] = args.redis_connections
    wa_numbers = [
        {
            "phone_number_id": n.phone_number_id,
            "display_phone_number": n.display_phone_number,
            "waba_id": WABA_ID,
            "access_token": n.token,
            "mode": n.mode,
            "assistant": ASSISTANT,
        }
        for n in numbers
    ]
    policy: dict[str, Any] = {"send_wait_max_seconds": args.send_wait_max}
    if args.guard_ms is not None:
        policy["limiter_guard_ms"] = args.guard_ms
    return {
        "server": {"host": HOST, "port": port, "drain_seconds": 0},
        "redis": redis_cfg,
        "policy": policy,
        "outbound": {} if args.concurrency is None else {"concurrency": args.concurrency},
        "whatsapp": {
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base": api_base,
            "numbers": wa_numbers,
        },
    }


@contextlib.contextmanager
def graph_stand_in(workdir: Path, numbers: list[NumberSpec], nice: int) -> Iterator[Service]:
    """The stand-in Graph API in its own process, ready when its control route answers."""
    port = free_port()
    tokens = workdir / "tokens.json"
    tokens.write_text(json.dumps({n.phone_number_id: n.token for n in numbers}))
    cmd = [sys.executable, "-m", GRAPH_MODULE, "--port", str(port), "--tokens", str(tokens)]
    cmd += ["--nice", str(nice)]
    err = workdir / "graph.stderr"
    proc = _spawn(cmd, err)
    service = Service("graph-stand-in", HOST, port, proc.pid, proc, err)
    with running(service):
        wait_until(service, get_request(HOST, port, CONTROL_PATH), READY_TIMEOUT_S)
        yield service


class Planned(NamedTuple):
    """One command of the run, ready for XADD."""

    command_id: str
    number: NumberSpec
    conversation_id: str
    raw: bytes  # the `command` field's value


@dataclass(frozen=True)
class Pushed:
    """When the commands went out."""

    start: float  # monotonic, just before the first XADD round trip
    seconds: float  # until the last XADD was answered
    first: dict[str, tuple[str, float]]  # number → (its first command_id, XADD sent at)
    polls: int  # XLEN calls made waiting for the first commands' deliveries


@dataclass
class Stack:
    """Everything one run started."""

    work: Path
    redis_url: str
    redis: Service
    graph: Service
    gateways: list[Service]


def start_all(
    args: argparse.Namespace,
    numbers: list[NumberSpec],
    stack: contextlib.ExitStack,
    problems: list[str],
) -> Stack:
    """Redis, the stand-in, then the gateways one by one (each ready on /readyz). Their logs'
    problem lines go into `problems` once they have stopped."""
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gw-outbound-")))
    stack.callback(log_problems, work, problems)  # LIFO: after the processes stop
    rds = stack.enter_context(redis_server(work))
    redis_url = redis_socket_url(work)
    graph = stack.enter_context(graph_stand_in(work, numbers, args.stand_in_nice))
    api_base = f"http://{HOST}:{graph.port}/v21.0"
    gateways = []
    for i in range(args.gateways):
        gw_dir = work / f"gateway{i}"
        gw_dir.mkdir()
        port = free_port()
        config = gateway_config(port, redis_url, api_base, numbers, args)
        path = gw_dir / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        if args.verbose and i == 0:
            print(f"--- {path}\n{path.read_text()}", file=sys.stderr)
        gateways.append(
            stack.enter_context(gateway(args.gateway_cmd, path, port, gw_dir, READY_TIMEOUT_S))
        )
    return Stack(work, redis_url, rds, graph, gateways)


# --- opening windows -------------------------------------------------------------------------


def inbound_change(number: NumberSpec, contact: str, wamid: str, ts: str) -> dict[str, Any]:
    """One live text message from `contact` to `number`, as a `changes[]` item."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": number.display_phone_number.lstrip("+"),
            "phone_number_id": number.phone_number_id,
        },
        "contacts": [{"profile": {"name": "Bench"}, "wa_id": contact}],
        "messages": [
            {"from": contact, "id": wamid, "timestamp": ts, "type": "text", "text": {"body": "hi"}}
        ],
    }
    return {"field": "messages", "value": value}


def post_webhook(gw: Service, changes: list[dict[str, Any]]) -> None:
    """One signed WhatsApp webhook carrying `changes`; raises unless answered 200."""
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": changes}],
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(body, APP_SECRET.encode()),
    }
    url = f"http://{gw.host}:{gw.port}/webhooks/whatsapp"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        if resp.status != 200:
            raise RuntimeError(f"inbound webhook answered {resp.status}")


def open_windows(gw: Service, numbers: list[NumberSpec], contacts: list[str]) -> int:
    """Every contact writes to every number (a minute ago): their windows are open."""
    ts, nonce = str(int(time.time()) - 60), secrets.token_hex(4)
    changes = [
        inbound_change(n, c, f"wamid.bench.{nonce}.{k}", ts)
        for k, (n, c) in enumerate((n, c) for n in numbers for c in contacts)
    ]
    for start in range(0, len(changes), WEBHOOK_BATCH):
        post_webhook(gw, changes[start : start + WEBHOOK_BATCH])
    return len(changes)


def inbound_charge_s(numbers: list[NumberSpec], contacts: int, guard_ms: float) -> float:
    """How far the inbound messages pushed the numbers' send budgets into the future
    (CONTRACT §3 charges inbound to the same budget): wait this long before measuring."""
    return max(contacts * (1 + guard_ms / 1e3) / n.cap for n in numbers)


# --- commands --------------------------------------------------------------------------------


def slot_order(numbers: list[NumberSpec], spread: str) -> list[NumberSpec]:
    """One round of the weighted round robin: every number once first, then the faster ones
    again (by-cap: cap / smallest cap times per round)."""
    if spread == "even":
        return list(numbers)
    low = min(n.cap for n in numbers)
    weights = {n.phone_number_id: max(1, round(n.cap / low)) for n in numbers}
    rounds = max(weights.values())
    return [n for r in range(rounds) for n in numbers if weights[n.phone_number_id] > r]


def plan_commands(
    numbers: list[NumberSpec], contacts: list[str], count: int, spread: str
) -> list[Planned]:
    """Every command, in push order; each number's commands rotate over its contacts."""
    order = slot_order(numbers, spread)
    used: dict[str, int] = {}
    nonce = secrets.token_hex(4)
    out = []
    for i in range(count):
        number = order[i % len(order)]
        k = used.get(number.phone_number_id, 0)
        used[number.phone_number_id] = k + 1
        command_id = f"bench-{nonce}-{i}"
        conversation = f"whatsapp:{number.phone_number_id}:{contacts[k % len(contacts)]}"
        command = {
            "schema": 1,
            "command_id": command_id,
            "conversation_id": conversation,
            "type": "text",
            "text": f"Reply {i}: your order has shipped and arrives on Tuesday.",
        }
        out.append(Planned(command_id, number, conversation, json.dumps(command).encode()))
    return out


def wait_limit_s(plan: list[Planned]) -> float:
    """Bounded wait for the deliveries: twice the slowest number's ideal time (or twice the
    time at the sum of the caps, whichever is longer), plus 30 s."""
    per_number: dict[str, float] = {}
    for c in plan:
        key = c.number.phone_number_id
        per_number[key] = per_number.get(key, 0.0) + 1 / c.number.cap
    caps = sum({c.number.phone_number_id: c.number.cap for c in plan}.values())
    return max(max(per_number.values()), len(plan) / caps) * 2 + 30


def xadd_all(client: redis.Redis, part: list[Planned]) -> float:
    """XADD `part` in pipelined round trips of XADD_CHUNK; when the first one left."""
    first_sent = 0.0
    for lo in range(0, len(part), XADD_CHUNK):
        pipe = client.pipeline(transaction=False)
        for c in part[lo : lo + XADD_CHUNK]:
            pipe.xadd(OUTBOX, {"command": c.raw})
        first_sent = first_sent or time.monotonic()
        pipe.execute()  # type: ignore[no-untyped-call]
    return first_sent


def push(client: redis.Redis, plan: list[Planned], baseline: int) -> Pushed:
    """The first command of every number alone, then (once those are delivered, so each
    first command found its number idle) all the others as fast as pipelining goes."""
    head = len({c.number.phone_number_id for c in plan})  # the plan starts one per number
    start = xadd_all(client, plan[:head])
    first = {c.number.phone_number_id: (c.command_id, start) for c in plan[:head]}
    _done, polls = wait_deliveries(client, baseline, head, start, HEAD_WAIT_S)
    xadd_all(client, plan[head:])
    return Pushed(start, time.monotonic() - start, first, polls)


def inbox_length(client: redis.Redis) -> int:
    """Entries in the assistant's inbox (inbound messages plus delivery events)."""
    length = client.xlen(INBOX)
    assert isinstance(length, int)  # the sync client answers values, not awaitables
    return length


def wait_deliveries(
    client: redis.Redis, baseline: int, count: int, start: float, limit_s: float
) -> tuple[float | None, int]:
    """Poll the inbox until `count` delivery events are in it: (seconds since `start`, or
    None on timeout; how many XLEN polls that took)."""
    polls = 0
    while time.monotonic() - start < limit_s:
        polls += 1
        if inbox_length(client) - baseline >= count:
            return time.monotonic() - start, polls
        time.sleep(POLL_S)
    return None, polls


def deliveries(client: redis.Redis) -> list[dict[str, Any]]:
    """Every delivery event in the inbox."""
    entries = client.xrange(INBOX)
    assert isinstance(entries, list)
    events = (json.loads(fields[b"event"]) for _id, fields in entries)
    return [e for e in events if e.get("kind") == "delivery"]


# --- meters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Meters:
    """CPU seconds (gateways summed, Redis) and Redis calls per command."""

    at: float  # monotonic
    gateway_cpu_s: float | None
    redis_cpu_s: float | None
    stand_in_cpu_s: float | None
    calls: dict[str, int] | None

    @classmethod
    def read(cls, stack: Stack) -> Meters:
        """Every meter, now."""
        cpus = [cpu_seconds(g.pid) for g in stack.gateways]
        gateway_cpu = None if None in cpus else sum(c or 0.0 for c in cpus)
        return cls(
            time.monotonic(),
            gateway_cpu,
            cpu_seconds(stack.redis.pid),
            cpu_seconds(stack.graph.pid),
            redis_calls(stack.redis_url),
        )


def delta(before: float | None, after: float | None) -> float | None:
    """after - before when both are known."""
    return None if before is None or after is None else after - before


def calls_delta(before: Meters, after: Meters, own: dict[str, int]) -> dict[str, int] | None:
    """Redis calls made during the run, minus the benchmark's own (XADD, XLEN polls)."""
    if before.calls is None or after.calls is None:
        return None
    out = {k: v - before.calls.get(k, 0) - own.get(k, 0) for k, v in after.calls.items()}
    return {k: v for k, v in out.items() if v > 0}


def finished_by(gw: Service) -> float | None:
    """Commands this gateway finished, from its /metrics (gateway_sends_total)."""
    try:
        with urllib.request.urlopen(f"http://{gw.host}:{gw.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_sends_total{")
    )


@dataclass(frozen=True)
class StandInLog:
    """What the stand-in recorded."""

    arrivals: list[Arrival]
    peaks: dict[str, int]  # its own peak_per_second, per number
    lag_ms: list[float]  # its event loop's lag while requests arrived

    @classmethod
    def fetch(cls, graph: Service) -> StandInLog:
        """GET the control route."""
        url = f"http://{graph.host}:{graph.port}{CONTROL_PATH}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            data = json.loads(resp.read())
        arrivals = [Arrival.from_row(r) for r in data["requests"]]
        return cls(arrivals, dict(data["peaks"]), list(data["lag_ms"]))


def log_problems(work: Path, into: list[str]) -> None:
    """Lines at WARNING or above (and tracebacks) of the stand-in's and gateways' stderr."""
    for path in [work / "graph.stderr", *sorted(work.glob("gateway*/gateway.stderr"))]:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if _LOG_PROBLEM.search(line):
                into.append(f"{path.parent.name}/{path.name}: {line[:200]}")


# --- one run ---------------------------------------------------------------------------------


def prepare(
    args: argparse.Namespace, stack: Stack, numbers: list[NumberSpec], contacts: list[str]
) -> tuple[redis.Redis, int]:
    """Open the windows (on the first gateway) and let the inbound charge pass."""
    client = redis.Redis.from_url(stack.redis_url, socket_timeout=30)
    opened = open_windows(stack.gateways[0], numbers, contacts)
    baseline = inbox_length(client)
    if baseline != opened:
        raise RuntimeError(f"{opened} inbound messages posted but {baseline} in {INBOX}")
    guard_ms = GUARD_MS if args.guard_ms is None else args.guard_ms
    pause = inbound_charge_s(numbers, len(contacts), guard_ms) + 0.25
    if args.verbose:
        print(
            f"{opened} windows open; waiting {pause:.2f} s for the inbound charge", file=sys.stderr
        )
    time.sleep(pause)
    return client, baseline


def run(
    args: argparse.Namespace,
    stack: Stack,
    numbers: list[NumberSpec],
    targets: list[NumberSpec],
    label: str,
) -> Measured:
    """Windows, push, wait, measure."""
    contacts = make_contacts(args.contacts)
    client, baseline = prepare(args, stack, targets, contacts)
    try:
        return measure(args, stack, client, baseline, numbers, targets, contacts, label)
    finally:
        client.close()  # type: ignore[no-untyped-call]


def measure(
    args: argparse.Namespace,
    stack: Stack,
    client: redis.Redis,
    baseline: int,
    numbers: list[NumberSpec],
    targets: list[NumberSpec],
    contacts: list[str],
    label: str,
) -> Measured:
    """Push the commands, wait for their deliveries, read every meter and log."""
    plan = plan_commands(targets, contacts, args.commands, args.spread)
    limit = wait_limit_s(plan)
    before = Meters.read(stack)
    pushed = push(client, plan, baseline)
    done_s, polls = wait_deliveries(client, baseline, len(plan), pushed.start, limit)
    after = Meters.read(stack)
    log = StandInLog.fetch(stack.graph)
    for g in stack.gateways:
        g.check_alive()
    return Measured(
        label=label,
        gateways=len(stack.gateways),
        numbers=numbers,
        contacts=len(contacts),
        commands=len(plan),
        push_s=pushed.seconds,
        done_s=done_s,
        wait_limit_s=limit,
        first_xadd=pushed.first,
        order={c.command_id: (c.conversation_id, i) for i, c in enumerate(plan)},
        deliveries=deliveries(client),
        arrivals=log.arrivals,
        peaks=log.peaks,
        stand_in_lag_ms=log.lag_ms,
        meter_s=after.at - before.at,
        gateway_cpu_s=delta(before.gateway_cpu_s, after.gateway_cpu_s),
        redis_cpu_s=delta(before.redis_cpu_s, after.redis_cpu_s),
        stand_in_cpu_s=delta(before.stand_in_cpu_s, after.stand_in_cpu_s),
        calls=calls_delta(before, after, {"xadd": len(plan), "xlen": polls + pushed.polls}),
        finished_by_gateway=[finished_by(g) for g in stack.gateways],
        single_number=targets[0].phone_number_id if args.single_number else None,
    )


def describe(args: argparse.Namespace, targets: list[NumberSpec]) -> str:
    """The scenario in a few words."""
    if args.single_number:
        number = targets[0].phone_number_id
        return f"{args.commands:,} text commands to ONE coexistence number ({number})"
    return f"{args.commands:,} text commands spread {args.spread} over {len(targets)} numbers"


def warn_pair_rate(args: argparse.Namespace, targets: list[NumberSpec]) -> None:
    """More than 45 commands per (number, contact) meet the pair limiter, not the number's."""
    per_pair = args.commands / (len(targets) * args.contacts)
    if per_pair > PAIR_BUCKET:
        print(
            f"note: about {per_pair:.0f} commands per (number, contact) pair: beyond "
            f"{PAIR_BUCKET} the pair rate (1 per 6 s) paces them; raise --contacts",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    """Start everything, run the scenario, stop everything, print the report."""
    args = parse_args(argv)
    numbers = make_numbers(args.numbers)
    targets = numbers[:1] if args.single_number else numbers
    warn_pair_rate(args, targets)
    problems: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            started = start_all(args, numbers, stack, problems)
            measured = run(args, started, numbers, targets, describe(args, targets))
    except (StartError, RuntimeError, OSError, redis.RedisError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    measured.log_problems = problems
    print(report(measured))
    if args.json:
        args.json.write_text(to_json(measured))
    return 0 if measured.done_s is not None else 1


if __name__ == "__main__":
    sys.exit(main())
