"""Webhook subscriptions on Meta's Graph API, for `gateway webhooks` (`Channel.subscription_call`,
`.subscription`, `.handshake_query`): the WhatsApp side, and the reading of Graph answers that
Messenger and Instagram share (adapters/meta_messaging/_webhooks.py).

Meta delivers an account's webhooks to the app's callback URL (set in the App Dashboard, one
per app and product) only while the app is *subscribed* to that account, on its
`subscribed_apps` edge; Meta drops the subscription after about an hour of failed
deliveries (PLATFORM-MORE §1.2), so `show` is worth asking often.

    edge                                      set (POST)       show (GET)      delete (DELETE)
    {api_base}/{waba_id}/subscribed_apps      {"success": true} {"data": [...]} {"success": true}

    show, WABA: {"data": [{"whatsapp_business_api_data": {"id", "link", "name"}}]}
    any error:  {"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}

Shapes from Meta's "Manage webhooks" page for solution providers
(developers.facebook.com/documentation/business-messaging/whatsapp/solution-providers/
manage-webhooks: the POST, GET and DELETE samples) and the Graph API reference of
`whats-app-business-account/subscribed_apps`. A WABA reports no fields: WhatsApp's webhook
fields are chosen per app in the App Dashboard, so `fields` stays empty here. Every number
of a WABA shares its subscription: `set` or `delete` on one number does it for them all.

What an answer says is judged in one place (`answer`, then `judge` for `show`), never
raising: a Graph error body becomes "Graph <code>: <message> (fbtrace_id …)" (the message's
own "(#<code>) " prefix left out), anything else that is not the expected shape "HTTP
<status>: not a Graph API answer".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal, NamedTuple, TypeVar

import msgspec

from adapters.account import Account
from adapters.channel import Action, ProviderCall, Subscription
from adapters.meta_apps import DEFAULT_APP
from adapters.whatsapp._config import WhatsAppSettings
from adapters.whatsapp._receive import WEBHOOK

T = TypeVar("T")

METHODS: Final[dict[Action, Literal["GET", "POST", "DELETE"]]] = {
    "set": "POST",
    "show": "GET",
    "delete": "DELETE",
}
"""Each action's method on a `subscribed_apps` edge."""
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError)
"""What decoding arbitrary bytes may raise (invalid UTF-8 is a ValueError; msgspec raises
RecursionError for deeply nested JSON)."""
_DETAIL_MAX: Final = 300
_SPACES: Final = re.compile(r"\s+")
_NAMES_SHOWN: Final = 5


class SubscribedApp(NamedTuple):
    """One app on a `subscribed_apps` edge."""

    id: str
    name: str
    fields: tuple[str, ...] | None
    """Its `subscribed_fields` (Page, Instagram account; none listed: none subscribed), or
    None where Meta reports none (a WABA)."""


# --- Graph answers ---------------------------------------------------------------------------


class _GraphError(msgspec.Struct):
    message: str
    code: int
    fbtrace_id: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _GraphError


class _Done(msgspec.Struct):
    """The answer to POST and DELETE."""

    success: bool | str
    """`true`; some of Meta's samples print it as the string "true"."""


class _WabaApp(msgspec.Struct):
    id: str | None = None
    name: str | None = None


class _WabaRow(msgspec.Struct):
    whatsapp_business_api_data: _WabaApp | None = None


class _WabaApps(msgspec.Struct):
    data: list[_WabaRow]


_ERROR = msgspec.json.Decoder(_ErrorBody)
_DONE = msgspec.json.Decoder(_Done)
_WABA_APPS = msgspec.json.Decoder(_WabaApps)


def answer(
    status: int, body: bytes, decoder: msgspec.json.Decoder[T], token: str
) -> T | Subscription:
    """The decoded answer, or the failed `Subscription` that says what came instead: Graph's
    error (its code, message and trace id; the account's token, if Meta ever echoed it, cut
    out), or that the body is no Graph API answer of this shape. Never raises."""
    error = _graph_error(body)
    if error is not None:
        message = error.message.removeprefix(f"(#{error.code}) ")  # said once is enough
        detail = f"Graph {error.code}: {_one_line(message, token)}"
        trace = f" (fbtrace_id {_one_line(error.fbtrace_id, token)})" if error.fbtrace_id else ""
        return Subscription(False, detail + trace)
    if 200 <= status < 300:
        try:
            return decoder.decode(body)
        except _DECODE_ERRORS:
            pass
    return Subscription(False, f"HTTP {status}: not a Graph API answer")


def _graph_error(body: bytes) -> _GraphError | None:
    try:
        return _ERROR.decode(body).error
    except _DECODE_ERRORS:
        return None


def _one_line(text: str, token: str) -> str:
    if token:
        text = text.replace(token, "[REDACTED]")
    return _SPACES.sub(" ", text).strip()[:_DETAIL_MAX]


def done(status: int, body: bytes, token: str, what: str) -> Subscription:
    """A POST or DELETE answer: `what` happened when Graph says `success: true`."""
    result = answer(status, body, _DONE, token)
    if isinstance(result, Subscription):
        return result
    if result.success is True or result.success == "true":
        return Subscription(True, what)
    return Subscription(False, f"Graph answered success: {result.success!r}")


def judge(
    apps: Sequence[SubscribedApp], app_id: str | None, needed: Sequence[str], where: str,
    setting: str,
) -> Subscription:  # fmt: skip
    """`show`: whether Meta delivers `where`'s webhooks to this gateway's app. With `app_id`
    (the config key `setting`), that app must be listed; without it, any app counts (the
    detail names them). Where Meta lists an app's fields, every field in `needed` must be
    among them, or Meta does not send those webhooks: then not subscribed either."""
    if app_id is not None:
        mine = next((a for a in apps if a.id == app_id), None)
        if mine is None:
            return Subscription(
                True,
                f"{where}: app {app_id} is not subscribed (subscribed: {_names(apps)}): Meta "
                "sends it nothing; `gateway webhooks set` subscribes it",
                subscribed=False,
            )
        return _verdict(mine, needed, f"{where}: app {_label(mine)}")
    if not apps:
        return Subscription(
            True,
            f"{where}: no app is subscribed: Meta sends it nothing; `gateway webhooks set` "
            "subscribes it",
            subscribed=False,
        )
    best = min(apps, key=lambda a: len(_missing(a, needed)))
    verdict = _verdict(best, needed, f"{where}: app {_label(best)}")
    others = [a for a in apps if a is not best]
    hint = f"; other apps: {_names(others)}" if others else ""
    hint += f"; any app counts until `{setting}` names this gateway's"
    return verdict._replace(detail=verdict.detail + hint)


def _verdict(app: SubscribedApp, needed: Sequence[str], who: str) -> Subscription:
    missing = _missing(app, needed)
    fields = app.fields or ()
    if missing:
        detail = (
            f"{who} is subscribed, but not to {', '.join(missing)}: Meta does not send those; "
            "`gateway webhooks set` adds them"
        )
        return Subscription(True, detail, subscribed=False, fields=fields)
    what = f" to the {len(needed)} fields the gateway reads" if app.fields is not None else ""
    return Subscription(True, f"{who} is subscribed{what}", subscribed=True, fields=fields)


def _missing(app: SubscribedApp, needed: Sequence[str]) -> list[str]:
    if app.fields is None:
        return []
    return [field for field in needed if field not in app.fields]


def _label(app: SubscribedApp) -> str:
    return f"{app.name!r} ({app.id})" if app.name else app.id


def _names(apps: Sequence[SubscribedApp]) -> str:
    if not apps:
        return "none"
    shown = ", ".join(_label(a) for a in apps[:_NAMES_SHOWN])
    more = len(apps) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def edge_call(
    action: Action, url: str, account: Account, params: dict[str, str] | None = None
) -> ProviderCall:
    """`action` on a `subscribed_apps` edge, with the account's token as a bearer token (and
    its app's `appsecret_proof`, when the app asks for it)."""
    headers = {"Authorization": f"Bearer {account.token}"}
    params = dict(params or {})
    if account.token_proof is not None:
        params["appsecret_proof"] = account.token_proof
    return ProviderCall(METHODS[action], url, headers, params)


def handshake(verify_token: str, challenge: str) -> dict[str, str]:
    """The query Meta sends to a callback URL to verify it (PLATFORM §1.1)."""
    return {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}


# --- WhatsApp --------------------------------------------------------------------------------


def waba_of(settings: WhatsAppSettings | None, phone_number_id: str) -> str | None:
    """The WABA a number belongs to, as `whatsapp.numbers[].waba_id` says (None: not set)."""
    if settings is None:
        return None
    number = next((n for n in settings.numbers if n.phone_number_id == phone_number_id), None)
    return number.waba_id if number is not None else None


def subscription_call(
    settings: WhatsAppSettings | None, account: Account, action: Action
) -> ProviderCall | None:
    """`action` on the number's WABA (`{api_base}/{waba_id}/subscribed_apps`). ValueError when
    the number has no `waba_id` in the config (its WABA is not known)."""
    if settings is None:
        return None
    waba = waba_of(settings, account.account_id)
    if waba is None:
        index = next(
            (i for i, n in enumerate(settings.numbers) if n.phone_number_id == account.account_id),
            0,
        )
        raise ValueError(
            f"whatsapp.numbers[{index}].waba_id is not set: the number's WhatsApp Business "
            "Account is what Meta subscribes the app to"
        )
    return edge_call(action, f"{settings.api_base.rstrip('/')}/{waba}/subscribed_apps", account)


def subscription(
    settings: WhatsAppSettings | None, account: Account, action: Action, public_url: str,
    status: int, body: bytes,
) -> Subscription:  # fmt: skip
    """What Graph answered `subscription_call`; never raises."""
    where = f"WABA {waba_of(settings, account.account_id) or '?'}"
    if action == "set":
        callback = f"{public_url}{WEBHOOK.path}"
        what = (
            f"{where}: app subscribed (every number of the WABA); Meta posts to the app's "
            f"callback URL, which should be {callback}, with the fields chosen in the App Dashboard"
        )
        return done(status, body, account.token, what)
    if action == "delete":
        what = f"{where}: app unsubscribed (every number of the WABA): Meta sends it nothing"
        return done(status, body, account.token, what)
    result = answer(status, body, _WABA_APPS, account.token)
    if isinstance(result, Subscription):
        return result
    app_id, setting = _app_id(settings, account)
    return judge(_waba_apps(result), app_id, (), where, setting)


def _app_id(settings: WhatsAppSettings | None, account: Account) -> tuple[str | None, str]:
    """The id of the app the number belongs to, and the config key that sets it."""
    if settings is None or not any(n.phone_number_id == account.account_id
                                   for n in settings.numbers):  # fmt: skip
        return None, "whatsapp.app_id"
    app = settings.app_of(account.account_id)
    if app.name == DEFAULT_APP:
        return app.app_id, "whatsapp.app_id"
    index = settings.apps.index(app)
    return app.app_id, f"whatsapp.apps[{index}].app_id"


def _waba_apps(listed: _WabaApps) -> list[SubscribedApp]:
    apps = []
    for row in listed.data:
        app = row.whatsapp_business_api_data
        if app is not None and app.id:
            apps.append(SubscribedApp(app.id, app.name or "", None))
    return apps
