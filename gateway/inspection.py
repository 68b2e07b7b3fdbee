"""`gateway inspect`: what is waiting in the streams, the dead letters by reason, the state of
every configured account (and of coexistence numbers' own apps: silence, syncs), and
optionally one conversation, read from the gateway's Redis.

Read-only: it writes nothing to Redis. Times are Redis's clock (stream ids, the limiter).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import msgspec
from redis.exceptions import ResponseError

from adapters import countries
from adapters.channel import SYNC_KINDS, adapter_of
from gateway.app import directory_from
from gateway.config import Settings
from gateway.ops import ToolError, duration, redis_now_ms, table
from router import keys
from router.accounts import Directory
from router.client import RedisClient
from router.records import DeadLetter

_SCAN_COUNT = 1000


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else (None if value is None else str(value))


def _id_ms(entry_id: Any) -> int:
    return int((_text(entry_id) or "0").partition("-")[0])


def stream_names(directory: Directory) -> list[str]:
    """gw:outbox, gw:deadletter, and every configured assistant's inbox, history and own
    outbox."""
    assistants = sorted({a.assistant for a in directory.accounts.values()})
    names = [keys.OUTBOX, keys.DEADLETTER]
    for assistant in assistants:
        names += [keys.inbox(assistant), keys.history(assistant), keys.outbox(assistant)]
    return names


async def stream_info(redis: RedisClient, name: str, now_ms: int) -> dict[str, Any]:
    """Length, and each consumer group's consumers, lag, pending and oldest pending age."""
    length = int(await redis.xlen(name))
    groups: list[dict[str, Any]] = []
    try:
        found = await redis.xinfo_groups(name)
    except ResponseError:  # no such stream
        found = []
    for group in found:
        group_name = _text(group.get("name")) or ""
        pending = int(group.get("pending") or 0)
        oldest_ms: int | None = None
        if pending:
            summary = await redis.xpending(name, group_name)
            if summary.get("min") is not None:
                oldest_ms = max(now_ms - _id_ms(summary["min"]), 0)
        lag = group.get("lag")
        groups.append(
            {
                "name": group_name,
                "consumers": int(group.get("consumers") or 0),
                "pending": pending,
                "lag": None if lag is None else int(lag),
                "last_delivered_id": _text(group.get("last-delivered-id")),
                "oldest_pending_age_seconds": None if oldest_ms is None else oldest_ms / 1000,
            }
        )
    return {"stream": name, "length": length, "groups": groups}


async def deadletter_reasons(redis: RedisClient) -> dict[str, int]:
    """Dead letters counted by reason (an entry that is not a letter counts as `unreadable`)."""
    counts: Counter[str] = Counter()
    start = "-"
    while True:
        entries = await redis.xrange(keys.DEADLETTER, start, "+", count=_SCAN_COUNT)
        for _entry_id, fields in entries:
            try:
                letter = msgspec.json.decode(fields.get(b"event", b""), type=DeadLetter)
                counts[letter.reason] += 1
            except (msgspec.DecodeError, msgspec.ValidationError):
                counts["unreadable"] += 1
        if len(entries) < _SCAN_COUNT:
            return dict(sorted(counts.items()))
        start = "(" + _text(entries[-1][0])  # type: ignore[operator]


async def accounts_info(
    redis: RedisClient, directory: Directory, now_ms: int
) -> list[dict[str, Any]]:
    """Every configured account: enabled, halted (the provider code), disconnected (the
    account event), its send cap and its sends in the last second."""
    accounts = list(directory.accounts.values())
    pipe = redis.pipeline(transaction=False)
    for a in accounts:
        inbox = keys.inbox(a.assistant)
        pipe.hmget(keys.account_state(inbox, a.channel, a.account_id), ["halt", "disc"])
        window_start = (now_ms - 1000) * 1000
        pipe.zcount(keys.dispatch_log(inbox, a.channel, a.account_id), window_start, "+inf")
    rows = await pipe.execute()
    out = []
    for i, a in enumerate(accounts):
        halt, disc = rows[2 * i]
        out.append(
            {
                "channel": a.channel,
                "account": a.account_id,
                "assistant": a.assistant,
                "enabled": a.enabled,
                "halted": _text(halt),
                "disconnected": _text(disc),
                "mps": a.mps,
                "sent_last_second": int(rows[2 * i + 1]),
            }
        )
    return out


async def business_apps(
    redis: RedisClient, directory: Directory, now_s: float
) -> list[dict[str, Any]]:
    """The owner's own app of each account that has one (coexistence numbers) and any state
    for it: its last sign of life and silence against the account's rule (router/upkeep.py),
    the stretch warned of, and the last sync request of each kind (`gateway accounts sync`)."""
    accounts = list(directory.accounts.values())
    fields = [keys.SEEN, keys.WARNED, *(keys.SYNC + kind for kind in SYNC_KINDS)]
    pipe = redis.pipeline(transaction=False)
    for a in accounts:
        pipe.hmget(keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id), fields)
    out = []
    for a, (seen, warned, *syncs) in zip(accounts, await pipe.execute(), strict=True):
        if seen is None and not any(syncs):
            continue  # never watched, never synced
        rule = a.app_idle
        seen_s = _int(_text(seen)) if seen is not None else None
        out.append(
            {
                "channel": a.channel,
                "account": a.account_id,
                "assistant": a.assistant,
                "last_seen": seen_s,
                "idle_seconds": None if seen_s is None else max(0.0, now_s - seen_s),
                "warn_days": rule.warn_s / 86400 if rule else None,
                "cutoff_days": rule.cutoff_s / 86400 if rule else None,
                "warned": warned is not None and warned == seen,
                "sync": {k: _record(v) for k, v in zip(SYNC_KINDS, syncs, strict=True)},
            }
        )
    return out


def _record(value: Any) -> dict[str, Any] | None:
    """A `sync:<kind>` record as `gateway accounts sync` wrote it; None if none (or unreadable)."""
    try:
        found = json.loads(value) if value is not None else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


async def conversation_info(
    redis: RedisClient, directory: Directory, conversation: str, now_ms: int
) -> dict[str, Any]:
    """One conversation (`channel:account:contact`): window, pause, opt-out, last inbound
    message, country block, and the limiter keys of its number and contact."""
    channel, _, rest = conversation.partition(":")
    account_id, _, contact = rest.partition(":")
    if not contact:
        raise ToolError(
            f"--conversation: expected <channel>:<account>:<contact>, got {conversation!r}"
        )
    account = directory.get(channel, account_id)
    if account is None:
        raise ToolError(f"--conversation: {channel}:{account_id} is not a configured account")
    inbox = keys.inbox(account.assistant)
    conv_key = keys.conversation(inbox, conversation)
    limiter_keys = {
        "account": keys.limiter(inbox, channel, account_id),
        "contact": keys.limiter(inbox, channel, account_id, contact),
    }
    # Only channels with a cross-country rule keep country blocks (the adapter says so).
    ruled = adapter_of(account).crosses_border(account, contact) is not None
    country = countries.of_contact(contact) if ruled else None
    block_key = keys.country_block(inbox, account_id, country) if country else None
    log_key = keys.dispatch_log(inbox, channel, account_id)
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(conv_key)
    pipe.ttl(conv_key)
    for key in limiter_keys.values():
        pipe.get(key)
        pipe.pttl(key)
    pipe.zcard(log_key)
    pipe.pttl(log_key)
    if block_key:
        pipe.ttl(block_key)
    rows = await pipe.execute()
    state = {_text(k): _text(v) for k, v in rows[0].items()}
    now_s = now_ms / 1000
    last = _int(state.get("t"))
    paused = _int(state.get("p"))
    window_until = last + keys.WINDOW_SECONDS if last else None
    limiters: dict[str, Any] = {}
    for i, (name, key) in enumerate(limiter_keys.items()):
        tat = _int(_text(rows[2 + 2 * i]))
        ttl_ms = int(rows[3 + 2 * i])
        limiters[name] = {
            "key": key,
            "exists": ttl_ms != -2,
            "next_slot_in_seconds": max(tat / 1e6 - now_s, 0.0) if tat else None,
            "expires_in_seconds": ttl_ms / 1000 if ttl_ms >= 0 else None,
        }
    limiters["dispatch_log"] = {
        "key": log_key,
        "exists": int(rows[7]) != -2,
        "entries": int(rows[6]),
        "expires_in_seconds": int(rows[7]) / 1000 if int(rows[7]) >= 0 else None,
    }
    block_ttl = int(rows[8]) if block_key else -2
    return {
        "conversation": conversation,
        "assistant": account.assistant,
        "key": conv_key,
        "exists": bool(state),
        "last_inbound_at": last,
        "last_inbound_message_id": state.get("m"),
        "window_open_until": window_until if window_until and window_until > now_s else None,
        "paused_until": paused if paused and paused > now_s else None,
        "paused_why": _paused_why(state, paused, now_s),
        "opted_out": state.get("oo"),
        "renamed_to": state.get("alias"),
        "country_blocked": (
            None
            if block_key is None
            else {"country": country, "blocked": block_ttl != -2, "expires_in_seconds": block_ttl}
        ),
        "limiters": limiters,
        "state_expires_in_seconds": int(rows[1]) if int(rows[1]) >= 0 else None,
    }


def _paused_why(state: dict[str | None, str | None], paused: int, now_s: float) -> str | None:
    why = []
    if state.get("h") == "1":
        why.append("handoff")
    if paused and paused > now_s:
        why.append("echo")
    return " and ".join(why) or None


def _int(value: str | None) -> int:
    try:
        return int(float(value)) if value else 0
    except ValueError:
        return 0


async def inspect(
    redis: RedisClient, settings: Settings, conversation: str | None
) -> dict[str, Any]:
    """Everything `gateway inspect` shows, as the `--json` document."""
    directory = directory_from(settings)
    now_ms = await redis_now_ms(redis)
    report: dict[str, Any] = {
        "redis_time": now_ms / 1000,
        "streams": [await stream_info(redis, name, now_ms) for name in stream_names(directory)],
        "deadletters_by_reason": await deadletter_reasons(redis),
        "accounts": await accounts_info(redis, directory, now_ms),
    }
    apps = await business_apps(redis, directory, now_ms / 1000)
    if apps:  # only once the gateway has watched one, or a sync was asked
        report["business_apps"] = apps
    if conversation is not None:
        report["conversation"] = await conversation_info(redis, directory, conversation, now_ms)
    return report


def render(report: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(report, indent=2, sort_keys=True)
    parts = ["STREAMS", _streams_table(report["streams"]), "", "DEAD LETTERS BY REASON"]
    reasons = report["deadletters_by_reason"]
    parts.append(table(["reason", "count"], sorted(reasons.items())) if reasons else "(none)")
    parts += ["", "ACCOUNTS", _accounts_table(report["accounts"])]
    if "business_apps" in report:
        parts += ["", "BUSINESS APPS (own app on the phone)", _apps_table(report["business_apps"])]
    if "conversation" in report:
        parts += ["", "CONVERSATION", _conversation_text(report["conversation"], report)]
    return "\n".join(parts)


def _streams_table(streams: list[dict[str, Any]]) -> str:
    rows: list[list[object]] = []
    for s in streams:
        if not s["groups"]:
            rows.append([s["stream"], s["length"], "(no group)", None, None, None])
        for g in s["groups"]:
            age = g["oldest_pending_age_seconds"]
            rows.append(
                [s["stream"], s["length"], g["name"], g["lag"], g["pending"],
                 None if age is None else duration(age)]
            )  # fmt: skip
    return table(["stream", "length", "group", "lag", "pending", "oldest pending"], rows)


def _accounts_table(accounts: list[dict[str, Any]]) -> str:
    rows = [
        [
            a["channel"],
            a["account"],
            a["assistant"],
            "yes" if a["enabled"] else "no",
            f"code {a['halted']}" if a["halted"] else "no",
            a["disconnected"] or "no",
            f"{a['sent_last_second']}/{a['mps']:g}",
        ]
        for a in accounts
    ]
    headers = ["channel", "account", "assistant", "enabled", "halted", "disconnected", "sent/s"]
    return table(headers, rows)


def _apps_table(apps: list[dict[str, Any]]) -> str:
    rows = []
    for a in apps:
        idle, warn, cutoff = a["idle_seconds"], a["warn_days"], a["cutoff_days"]
        silent = None if idle is None else duration(idle)
        if silent is not None and cutoff is not None:
            silent += f" (warn {warn:g}d, cut off {cutoff:g}d{', WARNED' if a['warned'] else ''})"
        rows.append(
            [a["channel"], a["account"], silent, *(_sync_cell(a["sync"][k]) for k in SYNC_KINDS)]
        )
    return table(["channel", "account", "silent for", *(f"{k} sync" for k in SYNC_KINDS)], rows)


def _sync_cell(record: dict[str, Any] | None) -> str | None:
    if record is None:
        return None
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.get("at") or 0))
    said = str(record.get("outcome"))
    if record.get("request_id"):
        said += f" {record['request_id']}"
    elif record.get("code"):
        said += f" (code {record['code']})"
    return f"{said} at {stamp}"


def _when(epoch: float | None, now: float) -> str | None:
    if epoch is None:
        return None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    return f"{stamp} (in {duration(epoch - now)})"


def _conversation_text(c: dict[str, Any], report: dict[str, Any]) -> str:
    now = report["redis_time"]
    blocked = c["country_blocked"]
    rows: list[list[object]] = [
        ["conversation", c["conversation"]],
        ["assistant", c["assistant"]],
        ["known", "yes" if c["exists"] else "no (no state in Redis)"],
        ["window open until", _when(c["window_open_until"], now) or "closed"],
        ["paused until", _when(c["paused_until"], now)],
        ["paused why", c["paused_why"]],
        ["opted out", f"code {c['opted_out']}" if c["opted_out"] else "no"],
        ["last inbound message", c["last_inbound_message_id"]],
        ["renamed to", c["renamed_to"]],
    ]
    if blocked is not None:
        state = (
            f"yes (for {duration(blocked['expires_in_seconds'])})" if blocked["blocked"] else "no"
        )
        rows.append([f"country block ({blocked['country']})", state])
    for name, lim in c["limiters"].items():
        if not lim["exists"]:
            state = "idle (no key)"
        elif name == "dispatch_log":
            state = f"{lim['entries']} dispatches logged"
        else:
            state = f"next slot in {lim['next_slot_in_seconds'] or 0:.3f}s"
        rows.append([f"limiter {name}", f"{state}  {lim['key']}"])
    return table(["field", "value"], rows)
