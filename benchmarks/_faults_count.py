"""Counting one fault run by unique id, and the table faults.py prints.

Every figure comes from the ids the harness chose: a webhook's token (in its text), a
command's id `c-<token>`.

- webhooks, not-2xx: requests sent (redeliveries included), and those not answered 2xx;
- answered: tokens answered 2xx at least once (a redelivery of the same body counts once);
- published: tokens with a `message` event in any inbox (read back whole after the drain);
- lost: answered 2xx and in no inbox;
- duplicates: `message` events beyond the first for one token;
- twice: command ids the stand-ins accepted more than once (Graph and Bot API together);
- no delivery: commands the stub wrote (its XADD answered) with no `delivery` event;
- extra: commands with more than one delivery that is not marked `duplicate: true`.
- recover: see RECOVER_DEFINITION.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from _faults_load import Sent
from _faults_stub import Stub, token_of

SLOW_ANSWER_S = 2.0
SLOW_DELIVERY_S = 5.0
RECOVER_DEFINITION = (
    "recover = seconds from the end of the fault (worker killed, Redis answering PING again, "
    "SIGCONT sent, stand-ins back to normal, restarted gateway ready) until the last 'bad' "
    f"moment: the due time of a webhook not answered 2xx within {SLOW_ANSWER_S:.0f} s, or the "
    "time the delivery of a command written after the fault began was read, when it came "
    f"more than {SLOW_DELIVERY_S:.0f} s after the command was written (the backlog cleared); "
    "0 when nothing was bad after the fault ended; '>N' when a command has no delivery or a "
    f"bad webhook lies in the last {SLOW_ANSWER_S:.0f} s of the load (not recovered in the run)"
)
_SCAN = 5000


@dataclass
class Row:
    """One fault's figures."""

    fault: str
    fsync: str
    requests: int = 0
    refused: int = 0
    answered: int = 0
    published: int = 0
    lost: int = 0
    duplicates: int = 0
    commands: int = 0
    twice: int = 0
    missing: int = 0
    extra: int = 0
    recover_s: float | None = None
    recovered: bool = True
    fault_s: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def measured_only(self) -> bool:
        """A Redis SIGKILL under everysec may lose the last second: reported, not judged."""
        return self.fault == "redis-kill" and self.fsync == "everysec"

    @property
    def verdict(self) -> str:
        clean = not (self.lost or self.duplicates or self.twice or self.missing or self.extra)
        if self.measured_only:
            return "MEASURED" if clean or not self.duplicates else "FAIL"
        return "PASS" if clean and self.answered > 0 else "FAIL"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict
        return out


def scan_inboxes(url: str, assistants: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every event of every inbox, oldest first per inbox."""
    client = redis.Redis.from_url(url, socket_timeout=30)
    events: list[dict[str, Any]] = []
    try:
        for assistant in assistants:
            start = "-"
            while True:
                entries = client.xrange(f"gw:inbox:{assistant}", start, "+", count=_SCAN)
                assert isinstance(entries, list)
                events += [json.loads(fields[b"event"]) for _id, fields in entries]
                if len(entries) < _SCAN:
                    break
                start = "(" + entries[-1][0].decode()
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return events


def count(
    row: Row, sent: list[Sent], stub: Stub, events: list[dict[str, Any]], sends: dict[str, Any]
) -> Row:
    """Fill `row` from the load's records, the stub, the inboxes and the stand-ins."""
    answered = {s.token for s in sent if s.ok}
    messages = Counter(t for e in events if e.get("kind") == "message" if (t := token_of(e)))
    row.requests = len(sent)
    row.refused = sum(1 for s in sent if not s.ok)
    row.answered = len(answered)
    row.published = len(messages)
    lost = sorted(answered - set(messages))
    row.lost = len(lost)
    row.duplicates = sum(n - 1 for n in messages.values())
    accepted = Counter(c for c in [*sends["graph"], *sends["bot"]] if c)
    twice = sorted(c for c, n in accepted.items() if n > 1)
    row.twice = len(twice)
    deliveries = [e for e in events if e.get("kind") == "delivery"]
    firsts = Counter(e["command_id"] for e in deliveries if not e.get("duplicate"))
    any_delivery = {e["command_id"] for e in deliveries}
    missing = sorted(c for c in stub.written if c not in any_delivery)
    row.commands = len(stub.written)
    row.missing = len(missing)
    extra = sorted(c for c, n in firsts.items() if n > 1)
    row.extra = len(extra)
    row.outcomes = dict(
        Counter(f"{e['outcome']}/{e.get('reason')}" for e in deliveries if not e.get("duplicate"))
    )
    row.outcomes["duplicate-deliveries"] = sum(1 for e in deliveries if e.get("duplicate"))
    for command_id in [*twice[:5], *extra[:5]]:
        row.details[command_id] = [e for e in deliveries if e["command_id"] == command_id]
    dups = sorted(t for t, n in messages.items() if n > 1)
    row.examples = {
        k: v[:10]
        for k, v in {
            "lost": lost, "duplicates": dups, "twice": twice, "missing": missing, "extra": extra,
        }.items()
        if v
    }  # fmt: skip
    return row


def recover(
    row: Row, sent: list[Sent], stub: Stub, began: float, ended: float, load_end: float
) -> None:
    """Set `row.recover_s` and `row.recovered` (RECOVER_DEFINITION)."""
    bad = [s.due for s in sent if s.due >= began and not _answered_in_time(s)]
    row.recovered = not bad or max(bad) < load_end - SLOW_ANSWER_S
    for command_id, written in stub.written.items():
        if written.at < began:
            continue
        got = stub.delivered.get(command_id)
        if not got:
            row.recovered = False
        elif got[0] - written.at > SLOW_DELIVERY_S:
            bad.append(got[0])
    row.recover_s = max(0.0, max(bad, default=ended) - ended)


def _answered_in_time(sent: Sent) -> bool:
    return sent.ok and sent.ended - sent.due <= SLOW_ANSWER_S


def fmt_recover(row: Row) -> str:
    if row.recover_s is None:
        return "-"
    text = f"{row.recover_s:.1f}"
    return text if row.recovered else f">{text}"


HEADER = (
    "fault", "fsync", "webhooks", "not-2xx", "2xx ids", "published", "lost", "dups",
    "commands", "twice", "no-dlv", "extra", "fault s", "recover s", "verdict",
)  # fmt: skip


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    cells = [list(HEADER)] + [
        [
            r.fault, r.fsync, str(r.requests), str(r.refused), str(r.answered),
            str(r.published), str(r.lost), str(r.duplicates), str(r.commands), str(r.twice),
            str(r.missing), str(r.extra),
            f"{r.fault_s:.1f}", fmt_recover(r), r.verdict,
        ]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = ["  ".join(c[i].rjust(widths[i]) for i in range(len(c))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
