"""Telegram's Bot API as a `Channel`: the token in the URL path, and the Bot API's pacing
(per bot, per private chat, per group)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from adapters.account import Account, interval_us
from adapters.channel import Action, ChannelDefaults, HttpRequest, Pace, ProviderCall, Subscription
from adapters.media import MediaCall, MediaError, MediaRef, MediaSettings
from adapters.schema import Command, Parsed, SendResult
from adapters.telegram import _media
from adapters.telegram._config import TelegramSettings
from adapters.telegram._inbound import parse_update
from adapters.telegram._outbound import build_request, classify
from adapters.telegram._receive import WEBHOOK, TelegramReceiver
from adapters.telegram._webhooks import subscription, subscription_call

PRIVATE_CHAT_MPS: Final = 1.0
GROUP_MPS: Final = 20.0 / 60.0
_UNPACED: Final = frozenset({"typing", "read", "reaction"})
"""Chat actions, callback answers and reactions post no message into the chat."""


class Telegram(ChannelDefaults):
    """The Bot API channel (`adapters.CHANNELS["telegram"]`)."""

    name = "telegram"
    channel = "telegram"
    window = False
    opt_out_ends_all = True  # 403: the contact blocked the bot
    charges_inbound = False
    statuses_name_command = True  # no statuses at all
    redelivers = True  # a 5xx is retried

    webhook = WEBHOOK

    def classify(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> SendResult:
        """The Bot API's answer (its headers say nothing the body does not)."""
        return classify(status, body)

    def receiver(self, settings: TelegramSettings | None) -> TelegramReceiver:
        """The webhook checks of the `telegram:` section (None: not configured)."""
        return TelegramReceiver(settings)

    def parse(self, body: bytes, path_key: str | None, received_at: int) -> Parsed:
        """One Update; `path_key` is the bot id in the webhook's path."""
        return parse_update(body, path_key or "", received_at)

    def request(
        self,
        account: Account,
        api_base: str,
        command: Command,
        address: str,
        last_inbound: str | None,
        route: str | None,
    ) -> HttpRequest:
        """`POST {api_base}/bot{token}/{method}`; `route` is the business connection the
        contact last wrote through, so the reply goes back through the business account."""
        call = build_request(command, address, route)
        return HttpRequest(f"{api_base}/bot{account.token}{call.path}", {}, call.body)

    def account_pace(self, account: Account, guard_ms: float) -> Pace:
        """The bot's broadcast limit (`mps`)."""
        return Pace(interval_us(account.mps, guard_ms))

    def recipient_pace(self, address: str, guard_ms: float) -> Pace:
        """One message a second in a private chat, 20 a minute in a group (negative ids)."""
        mps = GROUP_MPS if address.startswith("-") else PRIVATE_CHAT_MPS
        return Pace(interval_us(mps, guard_ms))

    def paces_recipient(self, command_type: str) -> bool:
        """Messages only: not chat actions, callback answers or reactions."""
        return command_type not in _UNPACED

    def crosses_border(self, account: Account, address: str) -> bool | None:
        """No cross-country rule."""
        return None

    def subscription_call(
        self,
        settings: TelegramSettings,
        account: Account,
        action: Action,
        public_url: str,
        drop_pending: bool,
    ) -> ProviderCall | None:
        """setWebhook (this bot's keyed path, its secret token, the kinds the parser maps),
        getWebhookInfo or deleteWebhook, with the token in the URL path."""
        return subscription_call(settings, account, action, public_url, drop_pending)

    def subscription(
        self,
        settings: TelegramSettings,
        account: Account,
        action: Action,
        public_url: str,
        status: int,
        body: bytes,
    ) -> Subscription:
        """The Bot API's answer, the webhook's state for `show`; never raises."""
        return subscription(account, action, public_url, status, body)

    def handshake_query(self, settings: TelegramSettings, challenge: str) -> dict[str, str] | None:
        """None: Telegram has no GET handshake; the secret token proves each update."""
        return None

    def media(
        self, account: Account, api_base: str, ref: MediaRef, settings: MediaSettings
    ) -> MediaCall:
        """`getFile?file_id=…` with the bot's token in the path."""
        return _media.lookup(account, api_base, ref)

    def media_found(self, account: Account, api_base: str, status: int, body: bytes) -> MediaCall:
        """getFile's `file_path` → `{api_base}/file/bot<token>/<file_path>`."""
        return _media.found(account, api_base, status, body)

    def media_refused(self, status: int, body: bytes) -> MediaError:
        """The file URL's refusal (404: expired)."""
        return _media.refused(status, body)
