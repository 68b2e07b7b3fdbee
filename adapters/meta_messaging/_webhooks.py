"""Webhook subscriptions of Pages and Instagram accounts, for `gateway webhooks`, and the
webhook fields the parser (`_inbound`) turns into events: the one list `set` asks for and
`show` checks.

    channel     edge (its section's api_base)                     token
    messenger   {graph.facebook.com/v…}/{page_id}/subscribed_apps  the Page's
    instagram   {graph.instagram.com/v…}/{account_id}/subscribed_apps
                                                                  the account's Instagram
                                                                  User token (Instagram Login)

    set    POST   ?subscribed_fields=a,b,…  → {"success": true}   (the list replaces the app's)
    show   GET                              → {"data": [{"id", "name", "subscribed_fields"}]}
    delete DELETE                           → {"success": true}

Shapes: Messenger's webhook setup guide (Page `subscribed_apps`: the POST with
`subscribed_fields`, and the GET sample `{"data": [{"category", "link", "name", "id",
"subscribed_fields"}]}`); Instagram's "Setup Webhooks Subscriptions" (Instagram Login:
graph.instagram.com, the account id; implementations print its GET as `{"data": [{"id",
"subscribed_fields"}]}`). The account id rather than `me`: one report has Instagram refusing
`POST me/subscribed_apps` ("Unsupported request - method type: post"). Graph's answers are
read by the WhatsApp adapter's helpers (adapters/whatsapp/_webhooks.py), shared by all three
Meta channels.

One unknown field fails the whole POST (Meta answers "(#100) Param subscribed_fields[0] must
be one of {…}"), so each channel asks only for fields Meta offers on it: Messenger's from the
Messenger Platform's webhook events reference, Instagram's from the set Meta's own error lists
for Instagram Login (`message_edit`, `messaging_handover`, `messaging_optins` and `standby`
among them; no delivery receipts, no account linking on Instagram).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from adapters.account import Account
from adapters.channel import Action, ProviderCall, Subscription
from adapters.meta_apps import DEFAULT_APP
from adapters.meta_messaging._config import InstagramSettings, MessengerSettings
from adapters.whatsapp._webhooks import SubscribedApp, answer, done, edge_call, judge

FIELDS: Final[Mapping[str, Mapping[str, str | None]]] = {
    "messenger": {
        "message": "messages",
        "is_echo": "message_echoes",  # `message` with `is_echo`: its own field on Messenger
        "message_edit": "message_edits",
        "postback": "messaging_postbacks",
        "reaction": "message_reactions",
        "read": "message_reads",
        "delivery": "message_deliveries",
        "referral": "messaging_referrals",
        "optin": "messaging_optins",
        "account_linking": "messaging_account_linking",
        "pass_thread_control": "messaging_handovers",
        "take_thread_control": "messaging_handovers",
        "request_thread_control": "messaging_handovers",
        "app_roles": "messaging_handovers",
        "standby": "standby",  # items in `standby[]`: threads another app owns
    },
    "instagram": {
        "message": "messages",
        "is_echo": "messages",  # Instagram's echoes come with `messages`
        "message_edit": "message_edit",
        "postback": "messaging_postbacks",
        "reaction": "message_reactions",
        "read": "messaging_seen",
        "delivery": None,  # Instagram sends no delivery receipts
        "referral": "messaging_referral",
        "optin": "messaging_optins",
        "account_linking": None,  # Messenger only
        "pass_thread_control": "messaging_handover",
        "take_thread_control": "messaging_handover",
        "request_thread_control": "messaging_handover",
        "app_roles": "messaging_handover",
        "standby": "standby",
    },
}
"""What the parser maps (an item's key, an echo, a `standby[]` item) → the webhook field that
brings it on each channel; None: the channel sends no such thing."""
SUBSCRIBED_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    channel: tuple(dict.fromkeys(field for field in keys.values() if field is not None))
    for channel, keys in FIELDS.items()
}
"""The fields `set` subscribes each channel's accounts to, and `show` expects: exactly those
that bring something the parser turns into events."""
_KINDS: Final = {"messenger": "Page", "instagram": "Instagram account"}

Settings = MessengerSettings | InstagramSettings | None


class _App(msgspec.Struct):
    id: str
    name: str | None = None
    subscribed_fields: list[str] | None = None
    """Missing on an app that is subscribed to no field (Meta then sends it nothing)."""


class _Apps(msgspec.Struct):
    data: list[_App]


_APPS = msgspec.json.Decoder(_Apps)


def subscription_call(
    channel: str, settings: Settings, account: Account, action: Action
) -> ProviderCall | None:
    """`action` on the Page's or account's `subscribed_apps` edge (None: no section)."""
    if settings is None:
        return None
    url = f"{settings.api_base.rstrip('/')}/{account.account_id}/subscribed_apps"
    params = {"subscribed_fields": ",".join(SUBSCRIBED_FIELDS[channel])} if action == "set" else {}
    return edge_call(action, url, account, params)


def subscription(
    channel: str, settings: Settings, account: Account, action: Action, status: int, body: bytes
) -> Subscription:
    """What Graph answered `subscription_call`; never raises."""
    where = f"{_KINDS[channel]} {account.account_id}"
    fields = SUBSCRIBED_FIELDS[channel]
    if action == "set":
        what = (
            f"{where}: app subscribed to {','.join(fields)} (Meta sends those of them also "
            "chosen for the app in the App Dashboard's Webhooks)"
        )
        return done(status, body, account.token, what)
    if action == "delete":
        return done(status, body, account.token, f"{where}: app unsubscribed: Meta sends nothing")
    result = answer(status, body, _APPS, account.token)
    if isinstance(result, Subscription):
        return result
    apps = [
        SubscribedApp(a.id, a.name or "", tuple(a.subscribed_fields or ())) for a in result.data
    ]
    app_id, setting = _app_id(channel, settings, account)
    return judge(apps, app_id, fields, where, setting)


def _app_id(channel: str, settings: Settings, account: Account) -> tuple[str | None, str]:
    """The id of the app the Page or account belongs to, and the config key that sets it."""
    if settings is None or account.account_id not in settings.owners():
        return None, f"{channel}.app_id"
    app = settings.app_of(account.account_id)
    if app.name == DEFAULT_APP:
        return app.app_id, f"{channel}.app_id"
    return app.app_id, f"{channel}.apps[{settings.apps.index(app)}].app_id"
