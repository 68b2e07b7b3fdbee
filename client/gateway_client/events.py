"""The events an assistant backend reads from `gw:inbox:<assistant>` and
`gw:history:<assistant>` (CONTRACT §2.1), typed.

`decode(raw)` gives one of the structs below, chosen by `kind`. Keys a struct does not name
(the gateway's extensions, or keys a newer gateway adds) are not lost: `Received.fields` is the
whole event as a dict. Nothing here imports the gateway: this package needs msgspec and redis
only.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Media(msgspec.Struct, kw_only=True):
    id: str | None = None
    """The provider's media id (WhatsApp), file_id (Telegram); null where only a URL exists."""
    mime_type: str | None = None
    filename: str | None = None
    url: str | None = None
    """Messenger, Instagram and Twilio give a URL instead of an id."""


class Location(msgspec.Struct, kw_only=True):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class Reply(msgspec.Struct, kw_only=True):
    """An interactive answer: the tapped button's or row's id and title."""

    id: str
    title: str | None = None


class ProviderError(msgspec.Struct, kw_only=True):
    code: int
    title: str | None = None


class _Event(msgspec.Struct, kw_only=True, tag_field="kind"):
    schema: int = 1
    event_id: str
    channel: str
    account_id: str
    contact_id: str | None = None
    conversation_id: str | None = None
    assistant_id: str = ""
    timestamp: int
    provider: str | None = None
    """"twilio" for a WhatsApp number reached through Twilio; null otherwise."""


class _MessageFields(_Event, kw_only=True):
    message_id: str
    type: str
    text: str | None = None
    reply: Reply | None = None
    media: Media | None = None
    location: Location | None = None
    reply_to: str | None = None
    contact_name: str | None = None
    edited: bool = False
    errors: list[ProviderError] = msgspec.field(default_factory=list)
    # Telegram extensions (null on other channels).
    thread_id: str | None = None
    """The forum topic (`message_thread_id`): give it back as a command's `thread_id` to
    answer in that topic."""
    command: str | None = None
    """The bot command the text starts with, without `/` and `@botname` ("start")."""
    args: str | None = None
    """With `command`: the rest of the text, stripped; for `/start` the deep-link payload."""
    media_group_id: str | None = None
    """The album a photo or video belongs to."""
    links: list[str] | None = None
    """The URLs in the text (url and text_link entities), without repeats."""


class Message(_MessageFields, kw_only=True, tag="message"):
    """A contact wrote. `ai_paused`: a human holds the conversation (handoff or an echo):
    an assistant should not answer."""

    ai_paused: bool = False


class Echo(_MessageFields, kw_only=True, tag="echo"):
    """The business wrote from the WhatsApp Business app (coexistence), or a Page's own
    message (Messenger, Instagram)."""


class History(_MessageFields, kw_only=True, tag="history"):
    """A synced past message (coexistence history)."""


class Status(_Event, kw_only=True, tag="status"):
    """sent / delivered / read / played / failed of an earlier outbound message."""

    message_id: str | None = None
    status: str
    errors: list[ProviderError] = msgspec.field(default_factory=list)
    command_id: str | None = None
    provider_title: str | None = None
    """A failed status: the first error's title, for people (a gateway extension)."""
    provider_detail: str | None = None
    """A failed status: the first error's longer explanation (WhatsApp `error_data`)."""
    fbtrace_id: str | None = None
    """Meta's trace id, for Meta support (null on statuses today)."""
    description: str | None = None
    """Telegram's description (Telegram has no statuses: null)."""


class Delivery(_Event, kw_only=True, tag="delivery"):
    """The gateway's result for one command (exactly one per command_id, plus one more with
    `duplicate` for each repeat)."""

    command_id: str
    outcome: str
    """`sent`, `rejected` or `failed`."""
    reason: str | None = None
    provider_code: int | None = None
    message_id: str | None = None
    duplicate: bool = False
    detail: str | None = None
    """Why a `failed` command failed, in words (a gateway extension)."""
    provider_title: str | None = None
    """The provider's own error text: Graph's `error.message`, Twilio's `message`."""
    provider_detail: str | None = None
    """Graph's `error.error_data.details`."""
    fbtrace_id: str | None = None
    """Graph's `error.fbtrace_id`: what Meta support asks for."""
    description: str | None = None
    """Telegram's `description`."""


class Contacts(_Event, kw_only=True, tag="contacts"):
    contact_name: str | None = None
    action: str


class Account(_Event, kw_only=True, tag="account"):
    event: str
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
    connected: bool | None = None


class Member(_Event, kw_only=True, tag="member"):
    """Telegram: the bot was blocked, unblocked, added to or removed from a chat."""

    status: str


Event = Message | Echo | History | Status | Delivery | Contacts | Account | Member
KINDS = ("message", "echo", "history", "status", "delivery", "contacts", "account", "member")

_DECODER: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


class Received(msgspec.Struct, frozen=True):
    """One stream entry: its id, the typed event, and every key of it (`fields`)."""

    entry_id: str
    event: Event
    fields: dict[str, Any]


def decode(raw: bytes | str) -> Event:
    """The event in an entry's `event` field; `msgspec.ValidationError` for one that is not
    an event of a known kind."""
    return _DECODER.decode(raw)


def received(entry_id: str, raw: bytes | str) -> Received:
    return Received(entry_id, decode(raw), msgspec.json.decode(raw))
