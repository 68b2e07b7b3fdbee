"""`gateway accounts clear-halt`: let a halted number or bot send again without a restart;
`gateway accounts sync`: ask the provider for the data of an account owner's own app.

A credential or account error (CONTRACT §3: Meta's 0, 190, 368, 131031; Telegram's 401;
Twilio's 20003 and the others `adapters/twilio` names) halts the account: every later command
to it ends `failed/provider_error` with that code, without a call, until the halt is cleared.
A restart clears every halt (a restart is how an operator says "fixed"); this clears one, or
all, while the gateway runs, once the account is fixed at the platform. It deletes the `halt`
field of the account's state hash (`gw:acct:*`), which every worker reads before each send,
so the next command goes; the running gateways' `gateway_account_halted` gauge follows within
`outbound.claim_idle_seconds` / 4. An account that is not halted is left as it is. Each
clearing is one audit line (`gateway.audit`, WARNING) naming the account and the code that
halted it.

If the cause is not fixed, the next send halts the account again, with the same code.

`sync` asks, for each coexistence number (or the accounts named), the contacts and then the
chat history of the owner's Business app (`--contacts`, `--history`: only that one), which
the provider then sends as webhooks (`contacts` events, the `gw:history:<assistant>`
stream). What to call and what the answer means is the adapter's (`Channel.sync_call`,
`.sync_answer`). Each kind works once per onboarding, within 24 hours of it: the answer says
requested (with the provider's request id), already done, too late, or the provider's
error. Each answer is recorded in the account's state hash (`sync:<kind>`), which `gateway
inspect` shows, and the run is one audit line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from adapters.channel import SYNC_KINDS, ProviderCall, SyncAnswer, SyncKind, adapter_of
from gateway.app import directory_from
from gateway.config import Settings, channel_sections
from gateway.ops import table
from router import keys
from router.accounts import Account
from router.client import RedisClient

audit = logging.getLogger("gateway.audit")


@dataclass(frozen=True)
class Cleared:
    """One configured account and the halt it had (None: it was not halted)."""

    channel: str
    account_id: str
    assistant: str
    halt: str | None

    @property
    def name(self) -> str:
        return f"{self.channel}:{self.account_id}"


def select(accounts: list[Account], wanted: list[str]) -> list[Account]:
    """The configured accounts named `channel:account_id` in `wanted` (all when empty);
    ValueError naming one that no configured account has."""
    by_name = {f"{a.channel}:{a.account_id}": a for a in accounts}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        known = ", ".join(sorted(by_name)) or "none"
        raise ValueError(f"no configured account {unknown[0]!r} (configured: {known})")
    return [by_name[name] for name in dict.fromkeys(wanted)] if wanted else list(accounts)


async def clear_halts(redis: RedisClient, accounts: list[Account]) -> list[Cleared]:
    """Clear the halt of each of `accounts` that has one; what each had."""
    found = []
    for a in accounts:
        key = keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id)
        halt = await redis.hget(key, "halt")  # type: ignore[misc]
        cleared = Cleared(a.channel, a.account_id, a.assistant, halt.decode() if halt else None)
        if halt is not None and await redis.hdel(key, "halt"):  # type: ignore[misc]
            audit.warning(
                "accounts clear-halt: %s (assistant %s) was halted by provider error %s; "
                "cleared, it sends again",
                cleared.name,
                a.assistant,
                cleared.halt,
            )
        found.append(cleared)
    return found


def render(cleared: list[Cleared]) -> str:
    """One line per account: cleared (and the code), or not halted."""
    lines = []
    for c in cleared:
        what = f"cleared (was halted by provider error {c.halt})" if c.halt else "not halted"
        lines.append(f"{c.name}  {what}")
    return "\n".join(lines)


def document(cleared: list[Cleared]) -> list[dict[str, str | bool | None]]:
    return [
        {"account": c.name, "assistant": c.assistant, "cleared": c.halt is not None, "halt": c.halt}
        for c in cleared
    ]


def accounts_of(settings: Settings) -> list[Account]:
    """Every configured number, Page, Instagram account, bot and Twilio sender."""
    return list(directory_from(settings).accounts.values())


# --- gateway accounts sync -----------------------------------------------------------------

SYNC_TIMEOUT_S = 30.0
"""Per provider call: no answer in this long is reported as a failure."""
_DONE = frozenset({"requested", "already_done"})
"""Outcomes after which the provider sends (or has sent) the data: the run did its job."""


@dataclass(frozen=True)
class Synced:
    """One sync request of one account, and what came of it."""

    account: Account
    kind: SyncKind
    answer: SyncAnswer
    at: int
    """Unix s of the request."""
    called: bool = True
    """False: no call was made (the account has no such data; `answer.detail` says why)."""

    @property
    def name(self) -> str:
        return f"{self.account.channel}:{self.account.account_id}"

    @property
    def done(self) -> bool:
        return self.answer.outcome in _DONE


class AppSync:
    """Runs `gateway accounts sync`: one provider call per account and kind, each answer
    recorded in the account's state hash."""

    def __init__(self, settings: Settings, redis: RedisClient, session: aiohttp.ClientSession):
        self._sections = channel_sections(settings)
        self._redis = redis
        self._session = session

    def syncable(self, accounts: Sequence[Account]) -> list[Account]:
        """The enabled accounts that have app data to sync (all coexistence numbers)."""
        return [a for a in accounts if a.enabled and self._has_data(a)]

    def _has_data(self, account: Account) -> bool:
        try:
            return self._call(account, SYNC_KINDS[0]) is not None
        except ValueError:  # not a coexistence number
            return False

    async def run(self, accounts: Sequence[Account], kinds: Sequence[SyncKind]) -> list[Synced]:
        """Each account's `kinds`, in order (contacts before history)."""
        return [await self.one(a, kind) for a in accounts for kind in kinds]

    async def one(self, account: Account, kind: SyncKind) -> Synced:
        now = int(time.time())
        if not account.enabled:
            refusal = "disabled in the config (enabled: false): not asked"
            return Synced(account, kind, SyncAnswer("failed", refusal), now, called=False)
        try:
            call = self._call(account, kind)
        except ValueError as exc:  # the account has no such data: the config key is named
            return Synced(account, kind, SyncAnswer("failed", str(exc)), now, called=False)
        if call is None:
            answer = adapter_of(account).sync_answer(None, account, kind, 0, b"")
            return Synced(account, kind, answer, now, called=False)
        answer = await self._answer(account, kind, call)
        synced = Synced(account, kind, answer, now)
        await self._record(synced)
        return synced

    def _call(self, account: Account, kind: SyncKind) -> ProviderCall | None:
        """The adapter's call (ValueError when the account has no such data)."""
        adapter = adapter_of(account)
        return adapter.sync_call(self._sections.get(adapter.name), account, kind)

    async def _answer(self, account: Account, kind: SyncKind, call: ProviderCall) -> SyncAnswer:
        adapter = adapter_of(account)
        try:
            async with self._session.request(
                call.method,
                call.url,
                params=dict(call.params),
                json=call.body,
                headers=dict(call.headers),
                timeout=aiohttp.ClientTimeout(total=SYNC_TIMEOUT_S),
            ) as resp:
                status, body = resp.status, await resp.read()
        except TimeoutError:
            return SyncAnswer("failed", f"{_host(call)}: no answer in {SYNC_TIMEOUT_S:g} s")
        except aiohttp.ClientError as exc:  # the host only: a URL may hold a token
            return SyncAnswer("failed", f"cannot reach {_host(call)}: {type(exc).__name__}")
        return adapter.sync_answer(self._sections.get(adapter.name), account, kind, status, body)

    async def _record(self, synced: Synced) -> None:
        """The answer, as `sync:<kind>` of the account's state hash (`gateway inspect`); an
        accepted request's record (its request id) is not replaced by "already done"."""
        a, answer = synced.account, synced.answer
        key = keys.account_state(keys.inbox(a.assistant), a.channel, a.account_id)
        if answer.outcome == "already_done":
            before = await self._redis.hget(key, keys.SYNC + synced.kind)  # type: ignore[misc]
            if before is not None and _outcome(before) == "requested":
                return
        record = {"at": synced.at, "outcome": answer.outcome, "request_id": answer.request_id,
                  "code": answer.code, "detail": answer.detail}  # fmt: skip
        await self._redis.hset(key, keys.SYNC + synced.kind, json.dumps(record))  # type: ignore[misc]


def _outcome(record: bytes) -> str | None:
    try:
        found = json.loads(record)
    except ValueError:
        return None
    return found.get("outcome") if isinstance(found, dict) else None


def _host(call: ProviderCall) -> str:
    return urlsplit(call.url).netloc or "the provider"


def sync_kinds(contacts: bool, history: bool) -> list[SyncKind]:
    """The kinds asked for (neither flag: both), in the order they are asked."""
    wanted = {"contacts": contacts, "history": history}
    return [k for k in SYNC_KINDS if wanted[k]] or list(SYNC_KINDS)


def sync_document(rows: Sequence[Synced]) -> list[dict[str, Any]]:
    return [
        {"account": r.name, "assistant": r.account.assistant, "kind": r.kind,
         "outcome": r.answer.outcome, "request_id": r.answer.request_id, "code": r.answer.code,
         "detail": r.answer.detail, "called": r.called, "at": r.at}
        for r in rows
    ]  # fmt: skip


_SAID = {
    "requested": "requested",
    "already_done": "already done",
    "window_passed": "TOO LATE",
    "failed": "FAILED",
}


def sync_render(rows: Sequence[Synced]) -> str:
    """A table (account, kind, result, request id), then one detail line per request."""
    lines = [(r.name, r.kind, _SAID[r.answer.outcome], r.answer.request_id) for r in rows]
    details = [f"{r.name} {r.kind}: {r.answer.detail}" for r in rows]
    return "\n".join([table(("ACCOUNT", "KIND", "RESULT", "REQUEST ID"), lines), "", *details])


def sync_audit(rows: Sequence[Synced]) -> None:
    """The run changes what the provider sends: one audit line."""
    asked = [f"{r.name} {r.kind} {r.answer.outcome}" for r in rows if r.called]
    audit.warning("accounts sync: %s", "; ".join(asked) or "nothing asked")
