"""One account the gateway serves (a WhatsApp number, a Telegram bot), as the adapters and
the router see it.

The gateway builds accounts from its config; the adapter of the account's channel is the only
code that reads its token, to build a provider request. Tokens are kept out of `repr` so they
never reach a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters import countries

DEFAULT_MPS = 30.0
"""Sends per second of an account whose config gives none (a Telegram bot's limit)."""


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
