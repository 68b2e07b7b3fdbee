"""The one interface every channel package implements, and the registry of them.

    Channel                 what `router/` may ask of a channel (and nothing else)
      .parse                webhook bytes -> Parsed (common events); raises only ParseError
      .request              Command + Account -> HttpRequest (full URL, headers, JSON body);
                            raises only InvalidCommand; the token never leaves the adapter
      .classify             provider answer -> SendResult; never raises
      .account_pace         spacing of the account's sends (its limiter)
      .recipient_pace       spacing of one recipient's sends (its limiter), and
      .paces_recipient      which command types take a slot of it
      .crosses_border       the cross-country rule, where the channel has one
      window, opt_out_ends_all, charges_inbound
                            the channel's conversation rules, as flags
    CHANNELS                name -> Channel; each package registers itself (`register`) when
                            `adapters` is imported

The router looks a channel up by the name in an account or a conversation id, and never
branches on the name itself: a new channel is a new package, and `router/` does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable

from adapters.account import Account
from adapters.schema import Command, Parsed, SendResult


class HttpRequest(NamedTuple):
    """One provider call: `POST url` with these headers and this JSON body."""

    url: str
    headers: Mapping[str, str]
    body: dict[str, Any]


class Pace(NamedTuple):
    """A GCRA limiter's parameters: one send per `interval_us`, with a burst allowance of
    `tolerance_us` (0: no burst)."""

    interval_us: int
    tolerance_us: int = 0


@runtime_checkable
class Channel(Protocol):
    """A channel as the router sees it. Implementations are stateless and shared."""

    name: str
    """The channel's name in accounts, conversation ids, keys and metric labels."""
    window: bool
    """Free-form messages only within 24 h of the contact's last message; outside it, only
    templates."""
    opt_out_ends_all: bool
    """A contact's opt-out refuses every command (true), or only marketing templates."""
    charges_inbound: bool
    """The provider counts the contact's messages against the account's throughput, so the
    inbound path takes a slot of the account's limiter for each."""

    def parse(self, body: bytes, path_key: str | None, received_at: int) -> Parsed:
        """One webhook body into events. `path_key`: the account named in the webhook's URL
        path, for channels that have one (None otherwise). Raises only `ParseError`."""
        ...

    def request(
        self,
        account: Account,
        api_base: str,
        command: Command,
        address: str,
        last_inbound: str | None,
        route: str | None,
    ) -> HttpRequest:
        """The provider call for `command` to `address`. `last_inbound`: the contact's last
        message (what typing/read refer to); `route`: the conversation's route as the last
        inbound message set it (`business_connection_id`). Raises only `InvalidCommand`."""
        ...

    def classify(self, status: int, body: bytes) -> SendResult:
        """The provider's answer to a `request`, classified; never raises."""
        ...

    def account_pace(self, account: Account, guard_ms: float) -> Pace:
        """The limiter of everything the account sends."""
        ...

    def recipient_pace(self, address: str, guard_ms: float) -> Pace:
        """The limiter of what the account sends to one recipient (or chat)."""
        ...

    def paces_recipient(self, command_type: str) -> bool:
        """Whether a command of this type takes a slot of the recipient's limiter."""
        ...

    def crosses_border(self, account: Account, address: str) -> bool | None:
        """None: the channel has no cross-country rule. Otherwise whether a business-initiated
        message from the account to `address` crosses a restricted border (known from the
        numbers alone; the provider's own blocks are learnt from its answers)."""
        ...


_REGISTRY: dict[str, Channel] = {}
CHANNELS: Mapping[str, Channel] = MappingProxyType(_REGISTRY)
"""Every registered channel, by name (read-only: channels join through `register`)."""


def register(channel: Channel) -> Channel:
    """Add a channel to `CHANNELS` (once per name); returns it."""
    if channel.name in _REGISTRY:
        raise ValueError(f"channel {channel.name!r} is registered twice")
    _REGISTRY[channel.name] = channel
    return channel
