"""Fault injection under load: is an acknowledged webhook ever lost, a command sent twice?

    .venv/bin/python benchmarks/faults.py                  # the five faults, about 4 minutes
    .venv/bin/python benchmarks/faults.py --short          # the same, shortened (CI)
    .venv/bin/python benchmarks/faults.py --fault redis-kill --fsync always
    .venv/bin/python benchmarks/faults.py --fsync always --probe   # + the req/s cost of always
    .venv/bin/python benchmarks/faults.py --fsync waitaof \
        --redis-server .cache/valkey/usr/bin/valkey-server            # redis.wait_aof (>= 7.2)

For each fault a fresh stack on 127.0.0.1 (benchmarks/_faults_stack.py): a redis-server with
`appendonly yes` on a fixed port and data directory, the Graph API and Bot API stand-ins in a
process of their own, and `gateway serve --workers 2`. Against it: open-loop webhook load,
WhatsApp and Telegram mixed, a tenth of them redelivered (_faults_load.py), and an assistant
stub that answers every message with a command in its own outbox (_faults_stub.py). The run:
a warm-up, the fault, a recovery with the load still on, then the drain (load stopped, wait
until every command has its delivery, or nothing moves for a while, or a deadline), then the
count by unique id (_faults_count.py) and one table row per fault.

The faults, one at a time:

- `worker-kill`: kill -9 of one gateway worker (the supervisor restarts it);
- `redis-kill`: SIGKILL of redis-server, and a restart on the same append-only file;
- `redis-stop`: redis-server frozen (SIGSTOP) for 10 s (short: 3 s), then SIGCONT;
- `providers`: both stand-ins refuse every send for 20 s (short: 5 s), alternately with a 500
  and with no answer until after the gateway's request timeout, then 20 s (short: 4 s) of 429
  bursts (2 s on, 2 s off);
- `gateway-term`: SIGTERM to the whole gateway, and a restart once it has exited.

Verdict: PASS when lost, duplicates, twice, no-delivery and extra deliveries are all 0; a
Redis SIGKILL under `appendfsync everysec` may lose what the last second wrote, so that row
reports its loss as measured (MEASURED) instead; with `--fsync always` or `--fsync waitaof`
(everysec, and the gateway's `redis.wait_aof`: no answer before WAITAOF confirms the fsync;
Redis or Valkey >= 7.2, `--redis-server`) it must be 0 too. `--probe` measures what they
cost: a closed-loop capacity probe (1-item WhatsApp webhooks, as many as the gateway takes)
on a fresh stack, everysec, always and (on a server that has WAITAOF) waitaof in turn, three
times each.

Exit status: 0 when every row is PASS or MEASURED, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _faults_count import RECOVER_DEFINITION, Row, count, recover, scan_inboxes, table
from _faults_load import Load
from _faults_stack import (
    APP_SECRET,
    ASSISTANTS,
    GATEWAY_WORKERS,
    REQUEST_TIMEOUT_S,
    WABA_ID,
    Stack,
)
from _faults_stub import Stub
from _loadgen import Workers, WorkerSpec, merge
from _payloads import Number, PayloadSpec
from _procs import HOST, StartError, redis_binary

FAULTS = ("worker-kill", "redis-kill", "redis-stop", "providers", "gateway-term")


@dataclass(frozen=True)
class Timing:
    """How long each phase lasts."""

    warmup_s: float
    recovery_s: float
    freeze_s: float
    errors_s: float
    bursts_s: float
    redis_down_s: float
    drain_max_s: float
    drain_idle_s: float

    @classmethod
    def of(cls, short: bool) -> Timing:
        if short:
            return cls(3.0, 6.0, 3.0, 5.0, 4.0, 0.5, 40.0, 12.0)
        return cls(10.0, 20.0, 10.0, 20.0, 20.0, 1.0, 120.0, 20.0)


@dataclass
class Injected:
    """When the fault began and ended (time.monotonic()), and what happened."""

    began: float
    ended: float
    note: str


# --- the faults: each blocks until its fault is over (run in a thread) ----------------------


def _worker_kill(stack: Stack, timing: Timing) -> Injected:
    began = time.monotonic()
    pid = stack.kill_worker()
    back = stack.wait_workers(GATEWAY_WORKERS, 30.0)
    note = f"killed worker pid {pid}; " + ("restarted" if back else "NOT restarted in 30 s")
    return Injected(began, began, note)


def _redis_kill(stack: Stack, timing: Timing) -> Injected:
    began = time.monotonic()
    stack.kill_redis()
    time.sleep(timing.redis_down_s)
    stack.start_redis()
    return Injected(began, time.monotonic(), "redis-server SIGKILL, restarted on its AOF")


def _redis_stop(stack: Stack, timing: Timing) -> Injected:
    began = time.monotonic()
    stack.freeze_redis()
    try:
        time.sleep(timing.freeze_s)
    finally:
        stack.thaw_redis()
    return Injected(began, time.monotonic(), f"redis-server SIGSTOP for {timing.freeze_s:.0f} s")


def _providers(stack: Stack, timing: Timing) -> Injected:
    began = time.monotonic()
    hold_s = REQUEST_TIMEOUT_S + 1.5  # past the gateway's request timeout
    stack.providers_mode("error", timing.errors_s, hold_s, 2.0)
    time.sleep(timing.errors_s)
    stack.providers_mode("429", timing.bursts_s, hold_s, 2.0)
    time.sleep(timing.bursts_s)
    note = f"500/timeouts {timing.errors_s:.0f} s, then 429 bursts {timing.bursts_s:.0f} s"
    return Injected(began, time.monotonic(), note)


def _gateway_term(stack: Stack, timing: Timing) -> Injected:
    began = time.monotonic()
    code = stack.term_gateway(60.0)
    stack.start_gateway()
    return Injected(began, time.monotonic(), f"gateway SIGTERM: exit {code}, restarted")


INJECT: dict[str, Callable[[Stack, Timing], Injected]] = {
    "worker-kill": _worker_kill,
    "redis-kill": _redis_kill,
    "redis-stop": _redis_stop,
    "providers": _providers,
    "gateway-term": _gateway_term,
}


# --- one fault run -----------------------------------------------------------------------------


async def _drain(stub: Stub, timing: Timing) -> str:
    """Wait until every command has its delivery, nothing moved for drain_idle_s, or the
    deadline; how it ended."""
    deadline = time.monotonic() + timing.drain_max_s
    await asyncio.sleep(1.0)  # the last messages reach the stub, its commands the outbox
    while time.monotonic() < deadline:
        if stub.undelivered() == 0:
            return "all delivered"
        if time.monotonic() - stub.last_progress > timing.drain_idle_s:
            return f"no delivery for {timing.drain_idle_s:.0f} s"
        await asyncio.sleep(0.2)
    return f"drain deadline ({timing.drain_max_s:.0f} s)"


async def run_fault(
    fault: str, stack: Stack, rate: float, timing: Timing, seed: int, verbose: bool
) -> Row:
    """Load, fault, recovery, drain, count."""
    row = Row(fault, stack.fsync)
    load = Load(HOST, stack.port, stack.accounts, rate, 0.1, seed)
    stub = Stub(stack.redis_url, ASSISTANTS)
    load_task = asyncio.create_task(load.run(), name="faults-load")
    stub_task = asyncio.create_task(stub.run(), name="faults-stub")
    try:
        await asyncio.sleep(timing.warmup_s)
        injected = await asyncio.to_thread(INJECT[fault], stack, timing)
        row.fault_s = injected.ended - injected.began
        row.notes.append(injected.note)
        if verbose:
            print(f"  {fault}: {injected.note}", file=sys.stderr)
        await asyncio.sleep(timing.recovery_s)
        load_end = time.monotonic()
        load.stop.set()
        await load_task
        row.notes.append("drain: " + await _drain(stub, timing))
    finally:
        load.stop.set()
        stub.stop.set()
        for task in (load_task, stub_task):
            if not task.done():
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, 15.0)
    recover(row, load.sent, stub, injected.began, injected.ended, load_end)
    events = await asyncio.to_thread(scan_inboxes, stack.redis_url, ASSISTANTS)
    sends = await asyncio.to_thread(stack.sends)
    return count(row, load.sent, stub, events, sends)


def one(fault: str, args: argparse.Namespace, work: Path, seed: int) -> Row:
    """A fresh stack for `fault`, the run, and the stack stopped whatever happened."""
    stack = Stack(work / f"{fault}-{seed}", args.fsync, args.redis_server)
    try:
        stack.start()
        timing = Timing.of(args.short)
        return asyncio.run(run_fault(fault, stack, args.rate, timing, seed, args.verbose))
    finally:
        stack.close()


# --- the req/s cost of appendfsync always -------------------------------------------------------


def probe(fsync: str, work: Path, seconds: float, binary: str | None) -> float:
    """Closed-loop req/s of 1-item WhatsApp webhooks against a fresh stack. The disk is
    synced first and the stack's data removed after: an fsync on ext4 (data=ordered) also
    writes out other files' dirty pages, so an earlier round's AOF would slow this one's."""
    where = work / f"probe-{fsync}-{time.monotonic_ns()}"
    stack = Stack(where, fsync, binary)
    os.sync()
    try:
        stack.start()
        numbers = tuple(Number(pid, d, WABA_ID) for pid, d, _t in stack.accounts.numbers)
        bot_id, _token, secret = stack.accounts.bots[0]
        payload = PayloadSpec(
            "whatsapp", 1, HOST, stack.port, APP_SECRET, numbers, bot_id, secret, 100_000
        )
        spec = WorkerSpec(payload, 32, 1.0, seconds, None, 0.0, 64 * 2**20, 5.0, True)
        workers = Workers([spec])
        workers.wait_ready()
        workers.start()
        merged = merge(workers.results(seconds + 60))
        return len(merged.latencies) / seconds
    finally:
        stack.close()
        shutil.rmtree(where, ignore_errors=True)


def probe_all(
    work: Path, seconds: float, rounds: int, binary: str | None
) -> dict[str, list[float]]:
    """everysec, always and (when the server has WAITAOF) waitaof and always+waitaof in turn,
    `rounds` times each."""
    waits = ["waitaof", "always+waitaof"] if has_waitaof(binary) else []
    modes = ["everysec", "always", *waits]
    out: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for fsync in modes:
            out[fsync].append(probe(fsync, work, seconds, binary))
    return out


def has_waitaof(binary: str | None) -> bool:
    """Whether this redis-server (or valkey-server) is 7.2 or later."""
    done = subprocess.run(
        [binary or redis_binary(), "--version"], capture_output=True, text=True, check=False
    )
    found = re.search(r"v=(\d+)\.(\d+)", done.stdout)
    return found is not None and (int(found[1]), int(found[2])) >= (7, 2)


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="every fault shortened (CI: ~1.5 min)")
    p.add_argument("--rate", type=float, default=300.0, help="webhooks per second (300)")
    p.add_argument("--fault", action="append", choices=FAULTS, help="only this fault (repeatable)")
    p.add_argument(
        "--fsync", choices=("everysec", "always", "waitaof", "always+waitaof"), default="everysec"
    )
    p.add_argument("--redis-server", help="the redis-server or valkey-server to run")
    p.add_argument("--repeat", type=int, default=1, help="run the faults this many times (1)")
    p.add_argument("--probe", action="store_true", help="also measure the req/s of always")
    p.add_argument("--probe-only", action="store_true", help="only the probe, no faults")
    p.add_argument("--probe-seconds", type=float, default=5.0)
    p.add_argument("--json", type=Path, help="also write the rows to this file")
    p.add_argument("--keep", type=Path, help="keep each stack's logs and data under this dir")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if not 1 <= args.rate <= 5000:
        p.error("--rate: between 1 and 5000")
    if not 1 <= args.repeat <= 10:
        p.error("--repeat: between 1 and 10")
    if "waitaof" in args.fsync and not has_waitaof(args.redis_server):
        p.error("--fsync waitaof: needs a Redis or Valkey >= 7.2 (--redis-server)")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds: every stack is closed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    faults = [] if args.probe_only else args.fault or list(FAULTS)
    rows: list[Row] = []
    cost: dict[str, list[float]] | None = None
    with tempfile.TemporaryDirectory(prefix="gw-faults-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        try:
            for round_ in range(args.repeat):
                for i, fault in enumerate(faults):
                    started = time.monotonic()
                    rows.append(one(fault, args, work, seed=round_ * 100 + i))
                    if args.verbose:
                        print(f"{fault}: {time.monotonic() - started:.0f} s", file=sys.stderr)
            if args.probe or args.probe_only:
                cost = probe_all(work, args.probe_seconds, 3, args.redis_server)
        except StartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(report(rows, args, cost))
    if args.json:
        doc = {"rows": [r.to_json() for r in rows], "rate": args.rate, "short": args.short,
               "fsync_cost": cost, "recover_definition": RECOVER_DEFINITION}  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=1))
    judged = [r.verdict for r in rows]
    return 0 if all(v in ("PASS", "MEASURED") for v in judged) else 1


def report(rows: list[Row], args: argparse.Namespace, cost: dict[str, list[float]] | None) -> str:
    """The table, the notes and findings under it, the definitions."""
    lines = [
        f"faults at {args.rate:.0f} webhooks/s (WhatsApp and Telegram, 10 % redelivered), "
        f"gateway --workers {GATEWAY_WORKERS}, Redis appendfsync {args.fsync}"
        + (" (short)" if args.short else ""),
        "",
        table(rows),
        "",
    ]
    for r in rows:
        lines.append(f"{r.fault}: {'; '.join(r.notes)}")
        lines.append(f"  outcomes: {json.dumps(r.outcomes, sort_keys=True)}")
        for kind, ids in r.examples.items():
            lines.append(f"  {kind}: {', '.join(ids)}")
        for command_id, found in r.details.items():
            lines.append(f"  deliveries of {command_id}: {json.dumps(found)}")
    if any(r.measured_only for r in rows):
        lines.append(
            "MEASURED: under appendfsync everysec the redis-kill row reports what a SIGKILL of "
            "Redis lost instead of judging it. Redis writes the AOF (write(2)) before it "
            "answers, so a killed process loses nothing the kernel holds; everysec risks the "
            "last second only on a power cut or kernel crash, which this harness cannot "
            "inject. --fsync always (fsync before answering) closes that too."
        )
    if cost:
        base = statistics.median(cost["everysec"])
        modes = [
            f"{mode} {', '.join(f'{x:,.0f}' for x in found)} req/s"
            + (
                ""
                if mode == "everysec"
                else f" (median / everysec's {statistics.median(found) / base:.2f})"
            )
            for mode, found in cost.items()
        ]
        lines.append(
            "durability cost (closed-loop probe, 1-item WhatsApp webhooks, 32 connections): "
            + "; ".join(modes)
        )
    lines.append(RECOVER_DEFINITION)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
