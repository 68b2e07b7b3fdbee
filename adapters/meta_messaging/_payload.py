"""Private msgspec structs for Messenger and Instagram webhook bodies (PLATFORM-MORE §1.3,
§2, §3).

Only the keys the gateway reads are declared; msgspec skips the rest while decoding, so new
provider keys never break parsing. The items of `messaging[]` and `standby[]` are kept as
`msgspec.Raw` at first and decoded one by one: one malformed item then costs only itself, and
its exact bytes go to the dead-letter stream. The `Whole*` structs at the end decode a usual
body in one pass instead, and refuse anything the one-by-one walk would not take cleanly.
Ids are strings and times integer milliseconds on the wire (Meta's Graph webhooks).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Raw, Struct, field


class Envelope(Struct):
    entry: list[Raw]
    object: str | None = None


class Entry(Struct):
    messaging: list[Raw] = field(default_factory=list)
    standby: list[Raw] = field(default_factory=list)
    """Items of threads another app owns (Conversation Routing): the same shapes."""
    changes: list[Raw] = field(default_factory=list)
    """Instagram comments, mentions, story insights, the dashboard's test payload."""


class Change(Struct):
    field: str | None = None


class Party(Struct):
    id: str | None = None


class Coordinates(Struct):
    lat: float
    long: float


class Payload(Struct):
    url: str | None = None
    sticker_id: int | str | None = None
    coordinates: Coordinates | None = None
    """A legacy `location` attachment's pin."""


class Attachment(Struct):
    type: str
    payload: Payload | None = None
    """Missing or null on some `fallback` shares."""
    title: str | None = None
    url: str | None = None
    url_upper: str | None = field(name="URL", default=None)
    """A `fallback` attachment (a shared link) carries its link here, not in the payload;
    Meta's reference spells the key `URL`, its echo examples `url`."""


class Story(Struct):
    id: str | None = None
    url: str | None = None


class ReplyTo(Struct):
    mid: str | None = None
    story: Story | None = None
    """Instagram: the message answers the business's story."""


class QuickReply(Struct):
    payload: str | None = None


class Message(Struct, kw_only=True):
    mid: str = ""
    text: str | None = None
    is_echo: bool = False
    is_deleted: bool = False
    """Instagram: the contact unsent the message `mid`; nothing else is in it."""
    is_unsupported: bool = False
    metadata: str | None = None
    """On an echo: the `metadata` string of the Send API call that sent it."""
    quick_reply: QuickReply | None = None
    reply_to: ReplyTo | None = None
    attachments: list[Attachment] | None = None
    referral: dict[str, Any] | None = None


class MessageEdit(Struct):
    mid: str = ""
    text: str | None = None
    num_edit: int | str | None = None
    """An integer in Meta's table, a string in its example: both are taken."""


class Postback(Struct):
    mid: str | None = None
    title: str | None = None
    payload: str | None = None
    """Absent on postbacks delivered in `standby`."""
    referral: dict[str, Any] | None = None


class Reaction(Struct):
    mid: str | None = None
    """The message reacted to."""
    action: str | None = None
    reaction: str | None = None
    emoji: str | None = None


class Read(Struct):
    watermark: int | None = None
    """Messenger: everything sent before this time (ms) was read."""
    mid: str | None = None
    """Instagram (`messaging_seen`): the message read."""


class Delivery(Struct):
    mids: list[str] | None = None
    watermark: int | None = None


class Optin(Struct):
    ref: str | None = None
    user_ref: str | None = None
    payload: str | None = None
    """Marketing-message opt-ins carry their payload here instead of a ref."""


class AccountLinking(Struct):
    status: str | None = None


class Item(Struct, kw_only=True):
    """One `messaging[]` or `standby[]` item: the key present says what happened."""

    sender: Party | None = None
    recipient: Party | None = None
    timestamp: int | None = None
    message: Message | None = None
    message_edit: MessageEdit | None = None
    postback: Postback | None = None
    reaction: Reaction | None = None
    read: Read | None = None
    delivery: Delivery | None = None
    referral: dict[str, Any] | None = None
    optin: Optin | None = None
    account_linking: AccountLinking | None = None
    pass_thread_control: dict[str, Any] | None = None
    take_thread_control: dict[str, Any] | None = None
    request_thread_control: dict[str, Any] | None = None
    app_roles: dict[str, Any] | None = None


# The whole body in one typed decode, for the usual webhook (messaging and standby items,
# no `changes`). Every struct here accepts only what the item-by-item structs above accept,
# so a body this decodes is one the walk would decode without a bad item as far as types go;
# what the mapping refuses makes the whole way give up too (adapters/meta_messaging/_inbound.py).

_Empty = Annotated[list[None], msgspec.Meta(max_length=0)]
"""A list that must be empty here: `changes` are dead-lettered, which only the walk does."""


class WholeEntry(Struct):
    messaging: list[Item] = field(default_factory=list)
    standby: list[Item] = field(default_factory=list)
    changes: _Empty = field(default_factory=list)


class WholeEnvelope(Struct):
    entry: list[WholeEntry]
    object: str | None = None


def decoder(kind: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(kind)


ENVELOPE = decoder(Envelope)
ENTRY = decoder(Entry)
CHANGE = decoder(Change)
ITEM = decoder(Item)
KEYS = decoder(dict[str, Raw])
WHOLE_ENVELOPE = decoder(WholeEnvelope)
