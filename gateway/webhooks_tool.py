"""`gateway webhooks set | show | delete | verify`: the webhook subscriptions of every
configured account, at the providers, from the same config the gateway runs on.

- `set` registers each account with its provider so that its updates come to
  `<server.public_url>/webhooks/<channel>` (Telegram `setWebhook` with the bot's secret token
  and exactly the update kinds the gateway parses; Meta: subscribes the app to each WhatsApp
  Business Account, Page and Instagram account with the fields the gateway parses).
- `show` asks each provider what it has now: where it delivers, pending updates, the last
  delivery error and its age, whether the account is subscribed.
- `delete` unsubscribes (with `--yes`).
- `verify` checks the way in: for each channel with a GET handshake (Meta's), it fetches
  the gateway's own handshake through the public URL, as the platform would, and checks that
  the challenge comes back; for the others it runs `show` and checks that the provider
  delivers to this gateway.

What to call and what the answer means is each adapter's (`Channel.subscription_call`,
`Channel.subscription`, `Channel.handshake_query`); gateway/subscriptions.py makes the calls,
one at a time and each identical call once, and this module reports.
An account whose provider has no such API (Twilio: the sender's webhook URL is set in its
console) is listed with where to point it. Exit 0 when every call did what was asked (and,
for `show` and `verify`, every account is subscribed); 1 otherwise; 2 for a usage or config
error. Tokens never appear in the output: Telegram's is in its URL path, which is not shown.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from adapters import Action
from adapters.account import Account
from gateway import accounts_tool
from gateway.config import Settings
from gateway.ops import duration, table
from gateway.subscriptions import Row, Webhooks

_audit = logging.getLogger("gateway.audit")


def select(settings: Settings, wanted: Sequence[str]) -> list[Account]:
    """The configured accounts named `channel:account_id` (all when none given); ValueError
    for a name no account has."""
    return accounts_tool.select(accounts_tool.accounts_of(settings), list(wanted))


def public_base(settings: Settings) -> str:
    """`server.public_url` without a trailing slash; ValueError when it is not set."""
    if settings.server.public_url is None:
        raise ValueError(
            "server.public_url is not set: the providers must be told the gateway's public "
            "URL (e.g. https://gateway.example.com)"
        )
    return settings.server.public_url.rstrip("/")


async def execute(
    settings: Settings, action: Action | str, wanted: Sequence[str], drop_pending: bool
) -> list[Row]:
    """What `gateway webhooks <action>` does; ValueError for a usage problem."""
    accounts = select(settings, wanted)
    base = public_base(settings)
    async with aiohttp.ClientSession() as session:
        tool = Webhooks(settings, session)
        if action == "verify":
            return await tool.verify(accounts, base)
        assert action in ("set", "show", "delete")
        return await tool.run(action, accounts, base, drop_pending)  # type: ignore[arg-type]


def document(rows: Sequence[Row], action: str, now_s: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now_s is None else now_s
    docs = []
    for r in rows:
        o = r.outcome
        docs.append(
            {
                "account": r.name,
                "adapter": r.adapter,
                "ok": r.good(action),
                "supported": r.supported,
                "subscribed": o.subscribed,
                "url": o.url,
                "fields": list(o.fields),
                "pending": o.pending,
                "last_error": o.last_error,
                "last_error_age_seconds": None if o.last_error_at is None
                else max(0, int(now - o.last_error_at)),
                "max_connections": o.max_connections,
                "detail": o.detail,
            }
        )  # fmt: skip
    return docs


def render(rows: Sequence[Row], action: str, now_s: float | None = None) -> str:
    """A table: account, result, subscribed, pending, last error and its age, then details."""
    docs = document(rows, action, now_s)
    lines = []
    for d in docs:
        result = "ok" if d["ok"] else "FAILED"
        if not d["supported"]:
            result = "no API"
        age = duration(d["last_error_age_seconds"])
        error = f"{d['last_error'][:40]} ({age} ago)" if d["last_error"] else None
        subscribed = None if d["subscribed"] is None else ("yes" if d["subscribed"] else "NO")
        lines.append((d["account"], result, subscribed, d["pending"], error, d["max_connections"]))
    header = ("ACCOUNT", "RESULT", "SUBSCRIBED", "PENDING", "LAST ERROR", "MAX CONN")
    details = [f"{d['account']}: {d['detail']}" for d in docs]
    return "\n".join([table(header, lines), "", *details])


def all_good(rows: Sequence[Row], action: str) -> bool:
    return all(r.good(action) for r in rows)


def audit(rows: Sequence[Row], action: str) -> None:
    """`set` and `delete` change what the providers do: one audit line each."""
    if action not in ("set", "delete"):
        return
    done = [r.name for r in rows if r.supported and r.outcome.ok]
    failed = [r.name for r in rows if r.supported and not r.outcome.ok]
    _audit.warning(
        "webhooks %s: done for %s; failed for %s",
        action,
        ", ".join(done) or "none",
        ", ".join(failed) or "none",
    )
