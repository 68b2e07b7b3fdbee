"""The accounts the gateway serves (WhatsApp numbers, Telegram bots), as the router needs them.

The gateway builds a `Directory` from its config; the router never reads config itself.
Tokens are kept out of `repr` so they never reach a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from router import countries

TELEGRAM_BOT_MPS = 30.0
TELEGRAM_PRIVATE_CHAT_MPS = 1.0
TELEGRAM_GROUP_MPS = 20.0 / 60.0
PAIR_BUCKET = 45
"""WhatsApp pair rate: a bucket of 45 messages per (number, contact) ..."""
PAIR_REFILL_SECONDS = 6.0
"""... refilled at one every 6 seconds (CONTRACT §3)."""


@dataclass(frozen=True)
class Account:
    channel: str
    account_id: str
    assistant: str
    token: str = field(repr=False)
    enabled: bool = True
    mps: float = TELEGRAM_BOT_MPS
    """Sends per second across all processes: the number's cap, or the bot's."""
    display_phone_number: str | None = None
    mode: str | None = None

    @property
    def country(self) -> str | None:
        """ISO region of a WhatsApp number (drives the cross-country rule)."""
        if self.display_phone_number is None:
            return None
        return countries.of_contact(self.display_phone_number.lstrip("+"))


@dataclass(frozen=True)
class Directory:
    accounts: Mapping[tuple[str, str], Account]
    """(channel, account_id) → account."""
    wabas: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """WhatsApp WABA id → its configured phone_number_ids, in config order."""

    def get(self, channel: str, account_id: str) -> Account | None:
        return self.accounts.get((channel, account_id))

    def assistant(self, channel: str, account_id: str) -> str | None:
        account = self.accounts.get((channel, account_id))
        return account.assistant if account else None


def interval_us(mps: float, guard_ms: float) -> int:
    """Spacing between two sends so that no 1-second window (plus a guard against network
    jitter) ever holds more than `mps` of them."""
    return int((1_000_000 + guard_ms * 1000) / mps)
