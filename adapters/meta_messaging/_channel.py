"""Messenger and Instagram Direct as `Channel`s: one class, two registrations, since both are
Meta's Messenger Platform (same envelope, Send API, windows and errors; PLATFORM-MORE §1-4),
differing in name, webhook path, `object`, API host and a few payload details that
`_inbound` and `_outbound` take from the channel's name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from adapters import meta
from adapters.account import Account, interval_us
from adapters.channel import (
    NO_SYNC,
    Action,
    HttpRequest,
    Pace,
    ProviderCall,
    Subscription,
    SyncAnswer,
    SyncKind,
    Webhook,
)
from adapters.media import MediaCall, MediaError, MediaRef, MediaSettings
from adapters.meta import SIGNATURE_HEADER, MetaReceiver
from adapters.meta_apps import with_proof
from adapters.meta_messaging import _media, _webhooks
from adapters.meta_messaging._inbound import parse
from adapters.meta_messaging._outbound import build_request, classify
from adapters.schema import Command, Parsed, SendResult
from adapters.whatsapp._webhooks import handshake

HUMAN_AGENT: Final = "HUMAN_AGENT"
HUMAN_AGENT_SECONDS: Final = 7 * 24 * 3600
"""A human agent's message tagged `HUMAN_AGENT` may go up to 7 days after the contact's last
message (CONTRACT §6.3, PLATFORM-MORE §4.3)."""
RECIPIENT_BURST: Final = 10
RECIPIENT_PER_SECOND: Final = 5.0
"""Meta names no per-thread rate ("may be throttled", PLATFORM-MORE §4.4): the gateway's own
choice is a burst of 10 messages to one person, then 5 a second, more than an assistant
writes and less than a runaway loop would."""
_UNPACED: Final = frozenset({"typing", "read"})
"""Sender actions send no message: no slot of the recipient's limiter."""


class MetaMessaging:
    """Messenger (`object: page`) or Instagram Direct (`object: instagram`)."""

    window = True
    opt_out_ends_all = True  # a person who blocked the Page or turned messages off: all
    charges_inbound = False  # the Send API's limits count calls, not the contact's messages
    statuses_name_command = False  # deliveries and reads name the mid only
    redelivers = True  # a 5xx is retried

    def __init__(self, name: str) -> None:
        self.name = name
        self.channel = name
        self.webhook = Webhook(f"/webhooks/{name}", handshake=True, headers=(SIGNATURE_HEADER,))

    def receiver(self, settings: Any) -> MetaReceiver:
        """The webhook checks of the channel's section (None: not configured)."""
        return MetaReceiver(self.name, settings)

    def parse(self, body: bytes, path_key: str | None, received_at: int) -> Parsed:
        """A Messenger Platform webhook body (the URL path names no account)."""
        return parse(self.name, body, received_at)

    def foreign(self, body: bytes) -> str | None:
        """A body of another Meta channel posted to this channel's path."""
        other = meta.channel_of(body)
        return other if other != self.name else None

    def request(
        self,
        account: Account,
        api_base: str,
        command: Command,
        address: str,
        last_inbound: str | None,
        route: str | None,
    ) -> HttpRequest:
        """`POST {api_base}/{page or account id}/messages` with the account's bearer token (and
        its app's `appsecret_proof`, when the app asks for it)."""
        call = build_request(self.name, command, account.account_id, address, last_inbound)
        headers = {"Authorization": f"Bearer {account.token}"}
        url = with_proof(f"{api_base}{call.path}", account.token_proof)
        return HttpRequest(url, headers, call.body)

    def control(
        self, account: Account, api_base: str, command: Command, address: str
    ) -> HttpRequest | None:
        """With the handover protocol (`handover: true`, `Account.mode` = the Page Inbox's app
        id): `handoff` passes the thread to that app, `handback` takes it back
        (`POST /{id}/pass_thread_control`, `/take_thread_control`, answered `{"success":
        true}`); the assistant is paused and resumed as on every channel. `escalate` calls
        nothing: it only notifies the staff."""
        if account.mode is None or command.type not in ("handoff", "handback"):
            return None
        body: dict[str, Any] = {
            "recipient": {"id": address},
            "metadata": f"gw:{command.command_id}",
        }
        if command.type == "handoff":
            edge = "pass_thread_control"
            body["target_app_id"] = account.mode
        else:
            edge = "take_thread_control"
        headers = {"Authorization": f"Bearer {account.token}"}
        url = with_proof(f"{api_base}/{account.account_id}/{edge}", account.token_proof)
        return HttpRequest(url, headers, body)

    def classify(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> SendResult:
        """The Send API's answer; its headers may say when a throttled Page may call again."""
        return classify(status, body, headers)

    def echo_identity(self, message_id: str) -> str | None:
        """Meta echoes every message a Page or account sends (`message_echoes`, `is_echo`);
        the parser gives an echo the identity `e:<mid>`. (Messenger's echoes of our sends
        are also recognised by their `metadata`; Instagram's carry none, PLATFORM-MORE §2.)"""
        return f"e:{message_id}"

    def account_pace(self, account: Account, guard_ms: float) -> Pace:
        """The Page's or account's `mps`."""
        return Pace(interval_us(account.mps, guard_ms))

    def recipient_pace(self, address: str, guard_ms: float) -> Pace:
        """`RECIPIENT_PER_SECOND`, in a burst of `RECIPIENT_BURST`."""
        interval = interval_us(RECIPIENT_PER_SECOND, guard_ms)
        return Pace(interval, interval * (RECIPIENT_BURST - 1))

    def paces_recipient(self, command_type: str) -> bool:
        """Every message but typing indicators and mark-seen."""
        return command_type not in _UNPACED

    def human_window(self, command: Command) -> int:
        """7 days for a human agent's message tagged `HUMAN_AGENT`; else nothing outside the
        24-hour window."""
        if command.tag == HUMAN_AGENT and command.author == "human":
            return HUMAN_AGENT_SECONDS
        return 0

    def crosses_border(self, account: Account, address: str) -> bool | None:
        """No cross-country rule on these channels."""
        return None

    def subscription_call(
        self, settings: _webhooks.Settings, account: Account, action: Action, public_url: str,
        drop_pending: bool,
    ) -> ProviderCall | None:  # fmt: skip
        """The Page's or account's `subscribed_apps` edge, `set` with the fields the parser
        reads (`_webhooks.SUBSCRIBED_FIELDS`); Meta keeps no pending updates to drop."""
        return _webhooks.subscription_call(self.name, settings, account, action)

    def subscription(
        self, settings: _webhooks.Settings, account: Account, action: Action, public_url: str,
        status: int, body: bytes,
    ) -> Subscription:  # fmt: skip
        """Graph's answer: done, or (`show`) whether this app is subscribed to every field."""
        return _webhooks.subscription(self.name, settings, account, action, status, body)

    def handshake_query(
        self, settings: _webhooks.Settings, challenge: str
    ) -> dict[str, str] | None:
        """Meta's `hub.*` verification query with the section's verify token."""
        return None if settings is None else handshake(settings.verify_token, challenge)

    def media(
        self, account: Account, api_base: str, ref: MediaRef, settings: MediaSettings
    ) -> MediaCall:
        """The event's CDN URL, fetched without credentials, on an allowed host only."""
        return _media.download(ref, settings)

    def media_found(self, account: Account, api_base: str, status: int, body: bytes) -> MediaCall:
        """Never asked: the URL is the file itself, no lookup."""
        raise MediaError("provider", "this channel has no media lookups")

    def media_refused(self, status: int, body: bytes) -> MediaError:
        """The CDN's refusal (403: the URL's signature expired)."""
        return _media.refused(status, body)

    def sync_call(self, settings: Any, account: Account, kind: SyncKind) -> ProviderCall | None:
        """Pages and Instagram accounts have no owner's app data to sync."""
        return None

    def sync_answer(
        self, settings: Any, account: Account, kind: SyncKind, status: int, body: bytes
    ) -> SyncAnswer:
        return NO_SYNC
