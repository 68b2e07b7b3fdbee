"""`gateway accounts clear-halt`: let a halted number or bot send again without a restart.

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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.app import directory_from
from gateway.config import Settings
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
