"""One account the gateway serves (a WhatsApp number, a Telegram bot), as the adapters and
the router see it.

The gateway builds accounts from its config; the adapter of the account's channel is the only
code that reads its token, to build a provider request. Tokens are kept out of `repr` so they
never reach a log line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from adapters import countries

SECTION_STRUCT: Final[dict[str, Any]] = {"frozen": True, "forbid_unknown_fields": True,
                                         "kw_only": True}  # fmt: skip
"""msgspec options of every config struct: immutable, and a misspelt key is an error."""
_ASSISTANT: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")

DEFAULT_MPS = 30.0
"""Sends per second of an account whose config gives none (a Telegram bot's limit)."""


class AppIdle(NamedTuple):
    """How long the owner's app may stay silent on an account (`Account.app_idle`)."""

    warn_s: int
    """Silent this long: an `account` event warns, once per stretch of silence."""
    cutoff_s: int
    """Silent this long: the provider cuts the account off."""


@dataclass(frozen=True)
class Account:
    """A number or bot: where its traffic goes (`assistant`) and how it may send."""

    channel: str
    account_id: str
    assistant: str
    token: str = field(repr=False)
    enabled: bool = True
    mps: float = DEFAULT_MPS
    """Sends per second across all processes: the number's cap, or the bot's."""
    display_phone_number: str | None = None
    mode: str | None = None
    provider: str | None = None
    """The registry name of the adapter that serves this account when it is not its channel's
    own (a WhatsApp number reached through Twilio: "twilio"); None: `channel`'s."""
    callback_url: str | None = None
    """Where the provider is told to post the status callbacks of this account's sends
    (Twilio: `twilio.public_url`); None: the provider's own subscription decides."""
    token_proof: str | None = field(default=None, repr=False)
    """Sent beside the token on every provider call when its app requires it (Meta's
    `appsecret_proof`, computed from the token and the app secret at config time); None:
    nothing is sent."""
    app_idle: AppIdle | None = None
    """The owner's own app on the account's phone must show signs of life (WhatsApp
    coexistence: the Business app opened within about 14 days, or the number is cut off);
    the router watches how long it has been silent. None: no such rule."""

    @property
    def adapter_name(self) -> str:
        """Its adapter's key in `adapters.CHANNELS`."""
        return self.provider or self.channel

    @property
    def country(self) -> str | None:
        """ISO region of the account's phone number, if it has one (cross-country rule)."""
        if self.display_phone_number is None:
            return None
        return countries.of_contact(self.display_phone_number.lstrip("+"))


def interval_us(mps: float, guard_ms: float) -> int:
    """Spacing between two sends so that no 1-second window (plus a guard against network
    jitter) ever holds more than `mps` of them."""
    return int((1_000_000 + guard_ms * 1000) / mps)


class Secret(NamedTuple):
    """A credential in a channel's config section, for the gateway's exposed-secret check."""

    key: str
    """Where it is, as config errors name it (`whatsapp.app_secret`)."""
    value: str
    authenticates: bool
    """It authenticates webhooks, so it must be long (tokens are the platform's own)."""


def check_assistant(name: str, where: str) -> None:
    """ValueError naming `where` unless `name` is safe in a stream key."""
    if not _ASSISTANT.fullmatch(name):
        raise ValueError(f"{where}: use 1-64 characters of A-Z a-z 0-9 _ . - (it names streams)")
