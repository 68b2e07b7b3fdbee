"""WhatsApp through Twilio as a `Channel`: the adapter "twilio", whose numbers and events are
channel "whatsapp" with `provider: "twilio"` (CONTRACT §6.2), so every WhatsApp rule holds for
them (window, cross-country, the number's `mps` shared with its inbound messages, the pair
rate, opt-outs: CONTRACT §6.3); only the wire differs (PLATFORM-MORE §5-6)."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.account import Account
from adapters.channel import HttpRequest
from adapters.media import MediaCall, MediaError, MediaRef, MediaSettings
from adapters.schema import Command, Parsed, SendResult
from adapters.twilio import _media
from adapters.twilio._config import TwilioSettings
from adapters.twilio._inbound import parse
from adapters.twilio._outbound import build_request, classify
from adapters.twilio._receive import WEBHOOK, TwilioReceiver
from adapters.whatsapp import WhatsAppRules


class Twilio(WhatsAppRules):
    """WhatsApp senders on Twilio (`adapters.CHANNELS["twilio"]`): every WhatsApp rule of
    CONTRACT §3 (`WhatsAppRules`: throughput, pair rate, cross-country)."""

    name = "twilio"
    channel = "whatsapp"
    window = True
    opt_out_ends_all = False  # as WhatsApp's: a marketing opt-out refuses marketing only
    charges_inbound = True  # Meta counts the sender's inbound messages against its rate
    statuses_name_command = False  # status callbacks name the MessageSid only
    redelivers = False  # one retry, on connection failure only: a 5xx loses the message

    webhook = WEBHOOK

    def receiver(self, settings: TwilioSettings | None) -> TwilioReceiver:
        """The webhook checks of the `twilio:` section (None: not configured)."""
        return TwilioReceiver(settings)

    def parse(self, body: bytes, path_key: str | None, received_at: int) -> Parsed:
        """A form-encoded inbound message or status callback."""
        return parse(body, received_at)

    def request(
        self,
        account: Account,
        api_base: str,
        command: Command,
        address: str,
        last_inbound: str | None,
        route: str | None,
    ) -> HttpRequest:
        """`POST {api_base}/2010-04-01/Accounts/{AC}/Messages.json`, form-encoded, Basic auth;
        `StatusCallback` is `twilio.public_url`, so every status comes back."""
        return build_request(
            account, api_base, command, address, account.callback_url or "", last_inbound
        )

    def classify(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> SendResult:
        """The Messages API's answer."""
        return classify(status, body, headers)

    def media(
        self, account: Account, api_base: str, ref: MediaRef, settings: MediaSettings
    ) -> MediaCall:
        """The event's `MediaUrl`, with Basic auth, once it is this account's media URL."""
        return _media.download(account, api_base, ref)

    def media_refused(self, status: int, body: bytes) -> MediaError:
        """Twilio's refusal (20404: the media is gone)."""
        return _media.refused(status, body)
