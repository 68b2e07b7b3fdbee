"""What outbound.py measured, and the printed report.

`Measured` holds the raw material of one run (the stand-in's request log, the delivery
events, meter readings); the functions below turn it into the figures of the report: outcome
counts, the aggregate send rate over the busy period, per number type the worst 1-second
window against the cap, the limiter's cost per send, and the XADD → stand-in latency of
each number's first command. See benchmarks/README.md ("Outbound") for what each one means.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from _loadgen import percentile
from inbound import fmt, table

MODES = ("coexistence", "cloud_api")


@dataclass(frozen=True)
class NumberSpec:
    """One configured WhatsApp number."""

    phone_number_id: str
    display_phone_number: str
    mode: str  # coexistence | cloud_api
    cap: int  # messages per second (CONTRACT §3 defaults: 20 coexistence, 80 cloud_api)
    token: str


@dataclass(frozen=True)
class Arrival:
    """One request the stand-in recorded."""

    number: str
    arrived: float  # time.monotonic() in the stand-in's process (system-wide clock)
    status: int
    accepted: bool  # a message send answered 200
    command_id: str | None
    code: int | None  # Graph error code of a non-200 answer

    @classmethod
    def from_row(cls, row: list[Any]) -> Arrival:
        """A row of the stand-in's `/_bench/requests` answer."""
        number, arrived, status, accepted, command_id, code = row
        return cls(str(number), float(arrived), int(status), bool(accepted), command_id, code)


@dataclass
class Measured:
    """The raw material of one run."""

    label: str  # scenario description for the header
    gateways: int
    numbers: list[NumberSpec]
    contacts: int
    commands: int
    push_s: float  # how long pushing every command took
    done_s: float | None  # first XADD → all deliveries seen; None on timeout
    wait_limit_s: float
    first_xadd: dict[str, tuple[str, float]]  # number → (its first command_id, XADD sent at)
    order: dict[str, tuple[str, int]]  # command_id → (conversation_id, push index)
    deliveries: list[dict[str, Any]]
    arrivals: list[Arrival]
    peaks: dict[str, int]  # the stand-in's own peak_per_second per number
    stand_in_lag_ms: list[float]  # the stand-in's loop lag while requests arrived
    meter_s: float  # wall seconds between the two meter readings
    gateway_cpu_s: float | None
    redis_cpu_s: float | None
    stand_in_cpu_s: float | None
    calls: dict[str, int] | None  # INFO commandstats delta, the benchmark's own calls removed
    finished_by_gateway: list[float | None] = field(default_factory=list)
    log_problems: list[str] = field(default_factory=list)
    single_number: str | None = None


# --- figures ---------------------------------------------------------------------------------


def outcome_counts(deliveries: Iterable[dict[str, Any]]) -> Counter[str]:
    """`sent`, `rejected/<reason>`, `failed/<reason> (<code>)`; duplicates counted apart."""
    out: Counter[str] = Counter()
    for d in deliveries:
        label = str(d.get("outcome"))
        if d.get("reason"):
            label += f"/{d['reason']}"
        if d.get("provider_code") is not None:
            label += f" ({d['provider_code']})"
        if d.get("duplicate"):
            label += " duplicate"
        out[label] += 1
    return out


def accepted(arrivals: Iterable[Arrival], numbers: set[str] | None = None) -> list[float]:
    """Sorted arrival times of accepted sends (of some numbers, or all)."""
    return sorted(
        a.arrived for a in arrivals if a.accepted and (numbers is None or a.number in numbers)
    )


def busy_rate(times: list[float]) -> tuple[float, float]:
    """(busy seconds from first to last accepted send, sends per second over them)."""
    if len(times) < 2:
        return 0.0, math.nan
    busy = times[-1] - times[0]
    return busy, (len(times) - 1) / busy if busy > 0 else math.nan


def per_second(times: list[float]) -> list[int]:
    """Counts in consecutive 1-second windows [t0 + k, t0 + k + 1), t0 = the first time."""
    if not times:
        return []
    counts = [0] * (int(times[-1] - times[0]) + 1)
    for t in times:
        counts[int(t - times[0])] += 1
    return counts


def first_latencies_ms(m: Measured) -> list[float]:
    """XADD → arrival at the stand-in of each number's first command, sorted, in ms."""
    arrived = {a.command_id: a.arrived for a in m.arrivals if a.accepted}
    return sorted(
        (arrived[cid] - sent) * 1e3 for cid, sent in m.first_xadd.values() if cid in arrived
    )


def reordered(m: Measured) -> tuple[int, int]:
    """(consecutive command pairs of one conversation that arrived in the wrong order, all
    such pairs), over the accepted sends."""
    arrived = {a.command_id: a.arrived for a in m.arrivals if a.accepted}
    by_conv: dict[str, list[tuple[int, float]]] = {}
    for cid, (conv, index) in m.order.items():
        if cid in arrived:
            by_conv.setdefault(conv, []).append((index, arrived[cid]))
    swapped = pairs = 0
    for sends in by_conv.values():
        sends.sort()
        pairs += len(sends) - 1
        swapped += sum(b[1] < a[1] for a, b in itertools.pairwise(sends))
    return swapped, pairs


@dataclass(frozen=True)
class TypeRow:
    """One number type: its sends, rate and worst 1-second window against the cap."""

    mode: str
    numbers: int
    cap: int
    sent: int
    busy_s: float
    rate: float
    worst_peak: int
    at_cap: int  # numbers whose peak equals the cap
    over_cap: list[str]  # "phone_number_id (peak)" for every number above its cap


def type_rows(m: Measured) -> list[TypeRow]:
    """One row per number type that has numbers with traffic."""
    rows = []
    for mode in MODES:
        specs = [n for n in m.numbers if n.mode == mode and m.peaks.get(n.phone_number_id)]
        if not specs:
            continue
        ids = {n.phone_number_id for n in specs}
        times = accepted(m.arrivals, ids)
        busy, rate = busy_rate(times)
        peaks = {n.phone_number_id: (m.peaks[n.phone_number_id], n.cap) for n in specs}
        over = [f"{i} ({p}/{c})" for i, (p, c) in peaks.items() if p > c]
        rows.append(
            TypeRow(
                mode=mode,
                numbers=len(specs),
                cap=max(n.cap for n in specs),
                sent=len(times),
                busy_s=busy,
                rate=rate,
                worst_peak=max(p for p, _ in peaks.values()),
                at_cap=sum(p == c for p, c in peaks.values()),
                over_cap=over,
            )
        )
    return rows


def sent_count(m: Measured) -> int:
    """Accepted sends at the stand-in."""
    return sum(a.accepted for a in m.arrivals)


# --- report ----------------------------------------------------------------------------------


def report(m: Measured) -> str:
    """The whole printed report."""
    parts = [header(m), "", summary(m), "", type_table(type_rows(m))]
    over = [o for r in type_rows(m) for o in r.over_cap]
    parts.append(
        "every number within its cap in every 1-second window"
        if not over
        else f"OVER CAP ({len(over)} numbers): " + ", ".join(over)
    )
    parts += worst_window_lines(m, over)
    if m.single_number:
        parts += ["", *single_number_lines(m)]
    else:
        parts += ["", *timeline_lines(m)]
    parts += ["", *overhead_lines(m), *stand_in_lines(m), "", *process_lines(m)]
    return "\n".join(parts)


def header(m: Measured) -> str:
    """What ran, on what machine."""
    modes = Counter(n.mode for n in m.numbers)
    caps = {n.mode: n.cap for n in m.numbers}
    configured = ", ".join(f"{modes[x]} {x} @{caps[x]}/s" for x in MODES if modes[x])
    return (
        f"outbound: {m.label}; {m.gateways} gateway process(es), {len(m.numbers)} numbers "
        f"configured ({configured}), {m.contacts} contacts per number\n"
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; gateways, "
        "Redis, the stand-in and this client share it"
    )


def summary(m: Measured) -> str:
    """Commands, elapsed, aggregate rate, outcomes, stand-in answers."""
    times = accepted(m.arrivals)
    busy, rate = busy_rate(times)
    caps = sum(n.cap for n in m.numbers if m.peaks.get(n.phone_number_id))
    done = (
        f"{fmt(m.done_s, '.2f')} s from the first XADD to the last delivery event"
        if m.done_s is not None
        else f"TIMEOUT: {len(m.deliveries):,} of {m.commands:,} deliveries "
        f"after {m.wait_limit_s:.0f} s"
    )
    answers = Counter(f"HTTP {a.status}" + (f" ({a.code})" if a.code else "") for a in m.arrivals)
    swapped, pairs = reordered(m)
    lines = [
        ["commands", f"{m.commands:,} (pushed in {m.push_s:.2f} s, pipelined XADD)"],
        ["elapsed", done],
        [
            "aggregate rate",
            f"{fmt(rate, ',.1f')} sends/s over the {busy:.2f} s busy period "
            f"(first to last accepted send; the busy numbers' caps add up to {caps:,}/s)",
        ],
        ["outcomes", counter_text(outcome_counts(m.deliveries))],
        ["stand-in answers", counter_text(answers) + f" ({len(times):,} accepted sends)"],
        [
            "order",
            f"{swapped:,} of {pairs:,} consecutive commands of one conversation "
            "reached the stand-in before the command pushed just ahead of them",
        ],
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def counter_text(counts: Counter[str]) -> str:
    """`a 3, b 1`, most common first; `none` when empty."""
    return ", ".join(f"{k} {v:,}" for k, v in counts.most_common()) or "none"


def type_table(rows: list[TypeRow]) -> str:
    """Per number type: sends, rate over its busy period, worst 1 s window vs cap."""
    headers = ["type", "numbers", "cap/s", "sent", "busy s", "sends/s", "per number/s"]
    headers += ["worst 1 s peak", "numbers at cap", "over cap"]
    lines = [
        [
            r.mode,
            str(r.numbers),
            str(r.cap),
            f"{r.sent:,}",
            f"{r.busy_s:.2f}",
            fmt(r.rate, ",.1f"),
            fmt(r.rate / r.numbers, ".2f"),
            f"{r.worst_peak} / {r.cap}",
            str(r.at_cap),
            str(len(r.over_cap)),
        ]
        for r in rows
    ]
    return table(headers, lines, frozenset({0}))


def timeline_lines(m: Measured) -> list[str]:
    """Accepted sends per consecutive second of the run, all numbers and per type."""
    start = min((a.arrived for a in m.arrivals if a.accepted), default=0.0)
    lines = ["sends per consecutive 1 s window from the first accepted send:"]
    for mode in (None, *MODES):
        ids = {n.phone_number_id for n in m.numbers if mode in (None, n.mode)}
        times = [t for t in accepted(m.arrivals, ids) if t >= start]
        if times:
            counts = per_second([start, *times])
            counts[0] -= 1  # the anchor
            lines.append(f"  {mode or 'all':<12} {counts}")
    return lines


def single_number_lines(m: Measured) -> list[str]:
    """The one number's sends per consecutive second and its sliding 1-second peak."""
    number = m.single_number or ""
    spec = next(n for n in m.numbers if n.phone_number_id == number)
    counts = per_second(accepted(m.arrivals, {number}))
    peak = m.peaks.get(number, 0)
    verdict = "within" if peak <= spec.cap else "OVER"
    return [
        f"number {number} ({spec.mode}, cap {spec.cap}/s), {m.gateways} gateway process(es):",
        f"  sends per consecutive 1 s window from the first arrival: {counts}",
        f"  peak in any sliding 1 s window: {peak} ({verdict} the cap of {spec.cap})",
    ]


def worst_window(times: list[float]) -> list[float]:
    """The sorted times inside the fullest half-open 1-second window [t, t + 1)."""
    best: tuple[int, int] = (0, 0)
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        if end - start + 1 > best[1] - best[0]:
            best = (start, end + 1)
    return times[best[0] : best[1]]


def worst_window_lines(m: Measured, over: list[str]) -> list[str]:
    """For the first number over its cap: the arrivals of its fullest window, so bunching
    (a late worker, a stalled stand-in) shows."""
    if not over:
        return []
    number = over[0].split(" ", 1)[0]
    times = accepted(m.arrivals, {number})
    window = worst_window(times)
    offsets = ", ".join(f"{(t - window[0]) * 1e3:.0f}" for t in window)
    return [
        f"  fullest window of {number} ({window[0] - times[0]:.2f} s after its first send),"
        f" ms after its first arrival: {offsets}"
    ]


def stand_in_lines(m: Measured) -> list[str]:
    """How busy the stand-in was: its arrival times are only as good as its loop's lag."""
    lag = sorted(m.stand_in_lag_ms)
    return [
        f"  stand-in: {fmt(cpu_pct(m.stand_in_cpu_s, m.meter_s), '.0f')} % of one core; "
        f"its loop lag while requests arrived p50 {fmt(percentile(lag, 0.5), '.1f')} ms, "
        f"p99 {fmt(percentile(lag, 0.99), '.1f')} ms, max {fmt(lag[-1] if lag else None, '.1f')}"
        " ms (arrival times are taken when its handler runs)"
    ]


def overhead_lines(m: Measured) -> list[str]:
    """Redis commands and CPU per send, first-command latency."""
    sends = max(sent_count(m), 1)
    lat = first_latencies_ms(m)
    lines = ["limiter overhead (from the first XADD to the last delivery, all processes):"]
    if m.calls is not None:
        total = sum(m.calls.values())
        top = sorted(m.calls.items(), key=lambda kv: -kv[1])[:8]
        lines += [
            f"  Redis commands per send: {total / sends:.2f} (Lua-internal calls included), "
            f"evalsha {m.calls.get('evalsha', 0) / sends:.2f} per send",
            "    top: " + ", ".join(f"{k} {v / sends:.2f}" for k, v in top),
            f"  presend.lua runs per send: {m.calls.get('zcard', 0) / sends:.2f} (ZCARD runs "
            "only there; above 1 means sends found the number's 1 s dispatch log full and "
            "waited once more)",
        ]
    busy, _rate = busy_rate(accepted(m.arrivals))
    lines += [
        f"  gateway CPU s per 1000 sends: {fmt(per_1k(m.gateway_cpu_s, sends), '.3f')} "
        f"(all gateways; {fmt(cpu_pct(m.gateway_cpu_s, busy), '.0f')} % of one core over the "
        f"{busy:.1f} s busy period, {fmt(cpu_pct(m.gateway_cpu_s, m.meter_s), '.0f')} % over "
        f"the {m.meter_s:.1f} s measured)",
        f"  Redis CPU s per 1000 sends: {fmt(per_1k(m.redis_cpu_s, sends), '.3f')} "
        f"({fmt(cpu_pct(m.redis_cpu_s, m.meter_s), '.0f')} % of one core)",
        f"  XADD → stand-in, first command of each number ({len(lat)} numbers): "
        f"p50 {fmt(percentile(lat, 0.5), '.1f')} ms, p99 {fmt(percentile(lat, 0.99), '.1f')} ms, "
        f"max {fmt(lat[-1] if lat else None, '.1f')} ms",
    ]
    return lines


def per_1k(cpu_s: float | None, sends: int) -> float | None:
    """CPU seconds per 1000 sends."""
    return None if cpu_s is None else cpu_s / sends * 1e3


def cpu_pct(cpu_s: float | None, elapsed_s: float | None) -> float | None:
    """CPU seconds over wall seconds, in percent of one core."""
    if cpu_s is None or not elapsed_s:
        return None
    return 100 * cpu_s / elapsed_s


def process_lines(m: Measured) -> list[str]:
    """How the commands split over the gateways, and what their logs said."""
    split = ", ".join(fmt(x, ",.0f") for x in m.finished_by_gateway)
    lines = [f"commands finished per gateway process (gateway_sends_total): {split or '-'}"]
    if m.log_problems:
        lines.append(f"gateway / stand-in log lines at WARNING or above: {len(m.log_problems)}")
        lines += [f"  {line}" for line in m.log_problems[:10]]
    else:
        lines.append("gateway / stand-in logs: nothing at WARNING or above")
    return lines


def to_json(m: Measured) -> str:
    """Every figure of the report plus the raw per-number peaks, as JSON."""
    times = accepted(m.arrivals)
    busy, rate = busy_rate(times)
    lat = first_latencies_ms(m)
    data = {
        "label": m.label,
        "gateways": m.gateways,
        "commands": m.commands,
        "push_s": m.push_s,
        "done_s": m.done_s,
        "sent": len(times),
        "busy_s": busy,
        "aggregate_rate": rate,
        "outcomes": dict(outcome_counts(m.deliveries)),
        "reordered_pairs": reordered(m),
        "types": [asdict(r) for r in type_rows(m)],
        "peaks": m.peaks,
        "redis_calls": m.calls,
        "gateway_cpu_s": m.gateway_cpu_s,
        "stand_in_cpu_s": m.stand_in_cpu_s,
        "meter_s": m.meter_s,
        "redis_cpu_s": m.redis_cpu_s,
        "first_latency_ms": {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99)},
        "finished_by_gateway": m.finished_by_gateway,
        "per_second": per_second(accepted(m.arrivals, {m.single_number}))
        if m.single_number
        else None,
        "log_problems": m.log_problems,
    }
    return json.dumps(data, indent=2, default=str)
