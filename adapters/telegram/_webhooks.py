"""`gateway webhooks` for Telegram: each bot's setWebhook, getWebhookInfo and deleteWebhook,
and what their answers say.

A bot's webhook is `<public_url>/webhooks/telegram/<bot_id>`, set with the bot's secret token
and with `allowed_updates` exactly the kinds the parser maps (`HANDLED_UPDATES`): Telegram
sends `chat_member` and `message_reaction` only when asked, and any other kind asked for would
only become an `unsupported` event.

The Bot API's answers (tdlib/telegram-bot-api at 01a3679c: telegram-bot-api/Query.h `JsonQueryOk`,
`JsonQueryError`; Client.cpp `JsonWebhookInfo`, `process_set_webhook_query`):

    {"ok": true, "result": true, "description": "Webhook was set"}   set, delete: ok
    {"ok": true, "result": {"url": "", "pending_update_count": 0}}  getWebhookInfo: ok
    {"ok": false, "error_code": N, "description": "..."}            "Telegram N: ..."
    anything else (a proxy's HTML page, cut JSON)                   "HTTP S: not a Bot API answer"

getWebhookInfo leaves out `last_error_*` until a delivery failed, `max_connections` when no
webhook is set, and `allowed_updates` while it is Telegram's default (every kind but
`chat_member`, `message_reaction` and `message_reaction_count`).

The token is in every call's URL path, and a webhook someone else set may carry it in its own
path (bot frameworks put it there): every text the operator reads goes through `_redact`.
"""

from __future__ import annotations

import time
from typing import Final

import msgspec

from adapters.account import Account
from adapters.channel import Action, ProviderCall, Subscription
from adapters.telegram._config import TelegramBot, TelegramSettings
from adapters.telegram._inbound import HANDLED_UPDATES
from adapters.telegram._receive import WEBHOOK

OFF_BY_DEFAULT: Final = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
"""The kinds Telegram leaves out of its default `allowed_updates` (Client.h,
`DEFAULT_ALLOWED_UPDATE_TYPES`; the Bot API docs of setWebhook say the same)."""
_DETAIL_MAX: Final = 600
"""Longest detail line; provider texts are free-form and may be long."""
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class _Head(msgspec.Struct):
    ok: bool


class _Refusal(msgspec.Struct):
    error_code: int
    description: str


class _Done(msgspec.Struct):
    """setWebhook's and deleteWebhook's success: `result` true, and what happened."""

    result: bool
    description: str = ""


class _WebhookInfo(msgspec.Struct):
    url: str
    pending_update_count: int | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None
    max_connections: int | None = None
    allowed_updates: list[str] | None = None


class _Info(msgspec.Struct):
    result: _WebhookInfo


_HEAD = msgspec.json.Decoder(_Head)
_REFUSAL = msgspec.json.Decoder(_Refusal)
_DONE = msgspec.json.Decoder(_Done)
_INFO = msgspec.json.Decoder(_Info)


def callback_url(public_url: str, bot_id: str) -> str:
    """Where Telegram is told to post the bot's updates: its keyed webhook path."""
    return f"{public_url.rstrip('/')}{WEBHOOK.path}/{bot_id}"


def subscription_call(
    settings: TelegramSettings,
    account: Account,
    action: Action,
    public_url: str,
    drop_pending: bool,
) -> ProviderCall | None:
    """The Bot API call for `action`; None when the bot is not in `settings` (it always is
    when the config is consistent: its accounts come from there)."""
    bot = _bot(settings, account.account_id)
    if bot is None:
        return None
    base = f"{settings.api_base.rstrip('/')}/bot{account.token}"
    if action == "set":
        body = _set_body(bot, callback_url(public_url, account.account_id), drop_pending)
        return ProviderCall("POST", f"{base}/setWebhook", {}, body=body)
    if action == "show":
        return ProviderCall("GET", f"{base}/getWebhookInfo", {})
    return ProviderCall(
        "POST", f"{base}/deleteWebhook", {}, body={"drop_pending_updates": drop_pending}
    )


def _bot(settings: TelegramSettings, bot_id: str) -> TelegramBot | None:
    return next((bot for bot in settings.bots if bot.bot_id == bot_id), None)


def _set_body(bot: TelegramBot, url: str, drop_pending: bool) -> dict[str, object]:
    return {
        "url": url,
        "secret_token": bot.secret_token,
        "allowed_updates": list(HANDLED_UPDATES),
        "drop_pending_updates": drop_pending,
    }


def subscription(
    account: Account,
    action: Action,
    public_url: str,
    status: int,
    body: bytes,
    now: float | None = None,
) -> Subscription:
    """What the Bot API's answer to `subscription_call` says; never raises. `now` (unix
    seconds, default the clock) dates the last delivery error."""
    expected = callback_url(public_url, account.account_id)
    said = _read(action, expected, status, body, time.time() if now is None else now)
    return _redacted(said, account.token)


def _redacted(said: Subscription, token: str) -> Subscription:
    """Every text of `said` that quotes Telegram (or a URL someone set) without the token."""
    url = _redact(said.url, token) if said.url is not None else None
    error = _redact(said.last_error, token) if said.last_error is not None else None
    return said._replace(detail=_cap(_redact(said.detail, token)), url=url, last_error=error)


def _read(action: Action, expected: str, status: int, body: bytes, now: float) -> Subscription:
    try:
        if not _HEAD.decode(body).ok:
            return _refused(_REFUSAL.decode(body))
        if action == "show":
            return _shown(_INFO.decode(body).result, expected, now)
        done = _DONE.decode(body)
    except _DECODE_ERRORS:
        return _not_bot_api(status)
    if not done.result:
        return _not_bot_api(status)
    return _set(done, expected) if action == "set" else _deleted(done)


def _refused(refusal: _Refusal) -> Subscription:
    return Subscription(False, f"Telegram {refusal.error_code}: {_line(refusal.description)}")


def _not_bot_api(status: int) -> Subscription:
    return Subscription(False, f"HTTP {status}: not a Bot API answer")


def _set(done: _Done, expected: str) -> Subscription:
    what = _line(done.description) or "Webhook was set"
    detail = f"{what}: {expected} ({len(HANDLED_UPDATES)} update kinds)"
    return Subscription(True, detail, url=expected, fields=HANDLED_UPDATES)


def _deleted(done: _Done) -> Subscription:
    what = _line(done.description) or "Webhook was deleted"
    return Subscription(True, f"{what}: updates wait for getUpdates")


def _shown(info: _WebhookInfo, expected: str, now: float) -> Subscription:
    fields = tuple(info.allowed_updates or ())
    return Subscription(
        ok=True,
        detail=_show_detail(info, expected, now),
        subscribed=info.url == expected,
        url=info.url or None,
        fields=fields,
        pending=info.pending_update_count,
        last_error=info.last_error_message,
        last_error_at=info.last_error_date,
        max_connections=info.max_connections,
    )


def _show_detail(info: _WebhookInfo, expected: str, now: float) -> str:
    """One line: where updates go, what waits and the last error, then any gap between the
    kinds Telegram sends and the kinds the parser maps."""
    notes = (
        [f"{info.pending_update_count} pending"] if info.pending_update_count is not None else []
    )
    if info.last_error_message or info.last_error_date:
        when = f" {_ago(info.last_error_date, now)}" if info.last_error_date else ""
        message = _line(info.last_error_message or "") or "unknown"
        notes.append(f"last error '{message}'{when}")
    line = _where(_line(info.url), expected) + (f" ({'; '.join(notes)})" if notes else "")
    gap = _updates_gap(info.allowed_updates)
    return f"{line}; {gap}" if gap else line


def _where(url: str, expected: str) -> str:
    if not url:
        return "no webhook set: updates wait for getUpdates"
    if url == expected:
        return f"webhook {url}"
    return f"webhook is another's: {url}, not {expected}"


def _updates_gap(reported: list[str] | None) -> str | None:
    """How the kinds Telegram sends differ from `HANDLED_UPDATES`; None when they match. No
    list (or an empty one) is Telegram's default."""
    if not reported:
        off = [kind for kind in HANDLED_UPDATES if kind in OFF_BY_DEFAULT]
        return (
            f"allowed_updates: Telegram's default (lacks {', '.join(off)}; adds kinds not parsed)"
        )
    missing = [kind for kind in HANDLED_UPDATES if kind not in reported]
    extra = [kind for kind in reported if kind not in HANDLED_UPDATES]
    parts = [f"missing: {', '.join(missing)}"] if missing else []
    parts += [f"not parsed: {', '.join(_line(kind) for kind in extra)}"] if extra else []
    return f"allowed_updates differ: {'; '.join(parts)}" if parts else None


def _ago(at: int, now: float) -> str:
    """`at` (unix seconds) as an age: "40 s ago", "4 min ago", "3 h ago", "2 d ago"."""
    seconds = int(now) - at
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _line(text: str) -> str:
    """Provider text fit for one line: every whitespace run (line breaks too) one space."""
    return " ".join(text.split())


def _cap(detail: str) -> str:
    """At most `_DETAIL_MAX` characters; cut only once redacted, so no part of a token stays."""
    return detail if len(detail) <= _DETAIL_MAX else f"{detail[: _DETAIL_MAX - 1]}…"


def _redact(text: str, token: str) -> str:
    """`text` without the bot's token, nor its secret half on its own."""
    secret = token.partition(":")[2]
    text = text.replace(token, "<token>") if token else text
    return text.replace(secret, "<token>") if secret else text
