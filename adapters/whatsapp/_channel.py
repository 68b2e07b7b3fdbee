"""WhatsApp Cloud API as a `Channel`: the Graph API's URL and bearer token, and Meta's pacing
and conversation rules (CONTRACT §3, PLATFORM §5 and §8)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from adapters import countries, meta
from adapters.account import Account, interval_us
from adapters.channel import (
    Action,
    ChannelDefaults,
    HttpRequest,
    Pace,
    ProviderCall,
    Subscription,
    SyncAnswer,
    SyncKind,
)
from adapters.media import MediaCall, MediaError, MediaRef, MediaSettings
from adapters.meta import MetaReceiver
from adapters.meta_apps import with_proof
from adapters.schema import Command, Parsed, SendResult
from adapters.whatsapp import _media, _sync, _webhooks
from adapters.whatsapp._config import WhatsAppSettings
from adapters.whatsapp._inbound import parse
from adapters.whatsapp._outbound import build_request, classify
from adapters.whatsapp._receive import WEBHOOK, receiver

PAIR_BUCKET: Final = 45
"""Pair rate: a bucket of 45 messages per (number, contact) ..."""
PAIR_REFILL_SECONDS: Final = 6.0
"""... refilled at one every 6 seconds (CONTRACT §3)."""
_PAIR_INTERVAL_US: Final = int(PAIR_REFILL_SECONDS * 1_000_000)
_PAIR: Final = Pace(_PAIR_INTERVAL_US, _PAIR_INTERVAL_US * (PAIR_BUCKET - 1))
_UNPACED: Final = frozenset({"typing", "read"})
"""Read receipts and typing indicators send no message to the contact: no pair slot."""


class WhatsAppRules(ChannelDefaults):
    """WhatsApp's pacing and cross-country rule (CONTRACT §3), whichever provider carries the
    number: the Cloud API (`WhatsApp`) and Twilio take them from here."""

    def account_pace(self, account: Account, guard_ms: float) -> Pace:
        """The number's throughput cap (`mps`)."""
        return Pace(interval_us(account.mps, guard_ms))

    def recipient_pace(self, address: str, guard_ms: float) -> Pace:
        """The pair rate: one every `PAIR_REFILL_SECONDS`, in a bucket of `PAIR_BUCKET`."""
        return _PAIR

    def paces_recipient(self, command_type: str) -> bool:
        """Every message but typing indicators and read receipts."""
        return command_type not in _UNPACED

    def crosses_border(self, account: Account, address: str) -> bool | None:
        """Brazil and Indonesia: business-initiated messages stay in the country."""
        return countries.crosses_restricted_border(account.country, countries.of_contact(address))


class WhatsApp(WhatsAppRules):
    """The Cloud API channel (`adapters.CHANNELS["whatsapp"]`)."""

    name = "whatsapp"
    channel = "whatsapp"
    window = True
    opt_out_ends_all = False  # 131050 refuses marketing templates only
    charges_inbound = True  # Meta counts inbound messages against the number's rate
    statuses_name_command = True  # biz_opaque_callback_data comes back
    redelivers = True  # a 5xx is retried

    webhook = WEBHOOK

    def classify(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> SendResult:
        """The Graph API's answer (its headers say nothing the body does not)."""
        return classify(status, body)

    def receiver(self, settings: WhatsAppSettings | None) -> MetaReceiver:
        """The webhook checks of the `whatsapp:` section (None: not configured)."""
        return receiver(settings)

    def parse(self, body: bytes, path_key: str | None, received_at: int) -> Parsed:
        """A Graph webhook body (the URL path names no account)."""
        return parse(body, received_at)

    def foreign(self, body: bytes) -> str | None:
        """A Messenger or Instagram body posted to the WhatsApp path."""
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
        """`POST {api_base}/{phone_number_id}/messages` with the number's bearer token (and
        its app's `appsecret_proof`, when the app asks for it)."""
        call = build_request(command, account.account_id, address, last_inbound)
        headers = {"Authorization": f"Bearer {account.token}"}
        url = with_proof(f"{api_base}{call.path}", account.token_proof)
        return HttpRequest(url, headers, call.body)

    def subscription_call(
        self, settings: WhatsAppSettings | None, account: Account, action: Action,
        public_url: str, drop_pending: bool,
    ) -> ProviderCall | None:  # fmt: skip
        """The number's WABA on its `subscribed_apps` edge (None: the number has no `waba_id`
        in the config); Meta keeps no pending updates to drop."""
        return _webhooks.subscription_call(settings, account, action)

    def subscription(
        self, settings: WhatsAppSettings | None, account: Account, action: Action,
        public_url: str, status: int, body: bytes,
    ) -> Subscription:  # fmt: skip
        """Graph's answer: done, or (`show`) whether this app is subscribed to the WABA."""
        return _webhooks.subscription(settings, account, action, public_url, status, body)

    def handshake_query(
        self, settings: WhatsAppSettings | None, challenge: str
    ) -> dict[str, str] | None:
        """Meta's `hub.*` verification query with the section's verify token."""
        return None if settings is None else _webhooks.handshake(settings.verify_token, challenge)

    def media(
        self, account: Account, api_base: str, ref: MediaRef, settings: MediaSettings
    ) -> MediaCall:
        """`GET {api_base}/{media_id}?phone_number_id=…` with the number's token."""
        return _media.lookup(account, api_base, ref)

    def media_found(self, account: Account, api_base: str, status: int, body: bytes) -> MediaCall:
        """Graph's `{url, mime_type, file_size}` → GET the URL with the same token."""
        return _media.found(account, status, body)

    def media_refused(self, status: int, body: bytes) -> MediaError:
        """The media URL's refusal (expired: 404)."""
        return _media.refused(status, body)

    def sync_call(
        self, settings: WhatsAppSettings | None, account: Account, kind: SyncKind
    ) -> ProviderCall | None:
        """A coexistence number's Business app contacts or chat history (`smb_app_data`)."""
        return _sync.sync_call(settings, account, kind)

    def sync_answer(
        self, settings: WhatsAppSettings | None, account: Account, kind: SyncKind, status: int,
        body: bytes,
    ) -> SyncAnswer:  # fmt: skip
        """Graph's answer: requested (its request id), already done (2593107), too late
        (2593108), or its error."""
        return _sync.sync_answer(account, kind, status, body)
