"""Private msgspec structs for the WhatsApp Cloud API webhook payload (PLATFORM.md §1–§4).

Only the keys the gateway reads are declared; msgspec skips the rest while decoding, so new
provider keys never break parsing. Lists of items are kept as `msgspec.Raw` at first and
decoded one by one: one malformed item then costs only itself, and its exact bytes go to
the dead-letter stream. The `Whole*` structs at the end decode a usual body in one pass
instead, and refuse anything the one-by-one walk would not take cleanly. Timestamps and ids
are strings on the wire (PLATFORM §1.3).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Raw, Struct, field


class Envelope(Struct):
    entry: list[Raw]
    object: str | None = None


class Entry(Struct):
    changes: list[Raw] = field(default_factory=list)
    id: str = ""
    time: int | None = None


class Change(Struct):
    field: str
    value: Raw


class Metadata(Struct):
    phone_number_id: str
    display_phone_number: str = ""


class Profile(Struct):
    name: str | None = None
    username: str | None = None


class Contact(Struct):
    wa_id: str | None = None
    user_id: str | None = None
    profile: Profile | None = None


class ErrorItem(Struct):
    code: int
    title: str | None = None
    message: str | None = None
    error_data: Any = None
    """`{"details": ...}` as Meta sends it; anything else is ignored (never a decode error)."""


class MessagesValue(Struct):
    """`value` of a `messages`, `smb_message_echoes` or `history` change."""

    metadata: Metadata | None = None
    contacts: list[Contact] = field(default_factory=list)
    messages: list[Raw] = field(default_factory=list)
    statuses: list[Raw] = field(default_factory=list)
    message_echoes: list[Raw] = field(default_factory=list)
    history: list[Raw] = field(default_factory=list)
    state_sync: list[Raw] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    """Out-of-band errors, kept as sent: they go into an `account` event's detail."""


class Text(Struct):
    body: str = ""


class MediaPart(Struct):
    id: str = ""
    mime_type: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool = False
    link: str | None = None


class LocationPart(Struct):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class ContactName(Struct):
    formatted_name: str | None = None


class ContactPhone(Struct):
    phone: str | None = None
    wa_id: str | None = None


class SharedContactPart(Struct):
    name: ContactName | None = None
    phones: list[ContactPhone] = field(default_factory=list)


class ReplyPart(Struct):
    id: str = ""
    title: str | None = None


class NfmReply(Struct):
    name: str | None = None
    body: str | None = None
    response_json: str | None = None


class Interactive(Struct):
    type: str = ""
    button_reply: ReplyPart | None = None
    list_reply: ReplyPart | None = None
    nfm_reply: NfmReply | None = None


class Button(Struct):
    payload: str | None = None
    text: str | None = None


class Reaction(Struct):
    message_id: str | None = None
    emoji: str | None = None


class Order(Struct):
    text: str | None = None


class System(Struct):
    body: str | None = None
    type: str | None = None
    wa_id: str | None = None
    user_id: str | None = None


class Unsupported(Struct):
    type: str | None = None


class Context(Struct):
    id: str | None = None


class Revoke(Struct):
    original_message_id: str | None = None


class HistoryContext(Struct):
    status: str | None = None


class Message(Struct, kw_only=True):
    """One `messages[]`, `message_echoes[]` or history thread message."""

    id: str = ""
    timestamp: str | int = ""
    """Both required at the top level; an edit's inner message carries neither."""
    type: str = "unknown"
    from_: str | None = field(name="from", default=None)
    from_user_id: str | None = None
    group_id: str | None = None
    """Set on a message in a WhatsApp group (Groups API): the gateway does not serve groups."""
    to: str | None = None
    to_user_id: str | None = None
    from_me: bool | None = None
    text: Text | None = None
    image: MediaPart | None = None
    audio: MediaPart | None = None
    voice: MediaPart | None = None
    """On-Premises API shape of a voice note (`type: voice`); Cloud API sends `audio.voice`."""
    video: MediaPart | None = None
    document: MediaPart | None = None
    sticker: MediaPart | None = None
    location: LocationPart | None = None
    contacts: list[SharedContactPart] | None = None
    interactive: Interactive | None = None
    button: Button | None = None
    reaction: Reaction | None = None
    order: dict[str, Any] | None = None
    system: System | None = None
    unsupported: Unsupported | None = None
    context: Context | None = None
    referral: dict[str, Any] | None = None
    errors: list[ErrorItem] = field(default_factory=list)
    revoke: Revoke | None = None
    edit: Edit | None = None
    history_context: HistoryContext | None = None


class Edit(Struct):
    original_message_id: str | None = None
    message: Message | None = None


class Status(Struct):
    id: str
    status: str
    timestamp: str | int
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    recipient_type: str | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[ErrorItem] = field(default_factory=list)
    pricing: dict[str, Any] | None = None


class HistoryMeta(Struct):
    phase: int | None = None
    chunk_order: int | None = None
    progress: int | None = None


class Thread(Struct):
    id: str
    messages: list[Raw] = field(default_factory=list)


class HistoryItem(Struct):
    metadata: HistoryMeta | None = None
    threads: list[Raw] = field(default_factory=list)
    """Decoded one by one: a 3 MB history item is then many small decodes (each releases
    nothing, but between them a live request's thread can take the GIL), and one malformed
    thread costs only itself."""
    errors: list[dict[str, Any]] = field(default_factory=list)


class StateContact(Struct):
    phone_number: str
    full_name: str | None = None
    first_name: str | None = None


class StateMeta(Struct):
    timestamp: str | int | None = None


class StateSync(Struct):
    action: str
    type: str = "contact"
    contact: StateContact | None = None
    metadata: StateMeta | None = None


# The whole body in one typed decode, for the usual webhook (messages, statuses, echoes,
# state sync). Every struct here accepts only what the item-by-item structs above accept, so
# a body this decodes is one the item-by-item walk would decode without a bad item; a body
# it refuses is walked item by item (adapters/whatsapp/_inbound.py).

_Empty = Annotated[list[None], msgspec.Meta(max_length=0)]
"""A list that must be empty here: a history sync or out-of-band errors take the walk. (Items
typed `None` make the decode stop at the first one, rather than build a 3 MB history first
and only then find the list too long.)"""


class WholeValue(Struct):
    """`MessagesValue`, items decoded."""

    metadata: Metadata | None = None
    contacts: list[Contact] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    message_echoes: list[Message] = field(default_factory=list)
    history: _Empty = field(default_factory=list)
    state_sync: list[StateSync] = field(default_factory=list)
    errors: _Empty = field(default_factory=list)


class WholeChange(Struct):
    field: Literal["messages", "smb_message_echoes", "smb_app_state_sync"]
    value: WholeValue


class WholeEntry(Struct):
    changes: list[WholeChange] = field(default_factory=list)
    id: str = ""
    time: int | None = None


class WholeEnvelope(Struct):
    entry: list[WholeEntry]
    object: str | None = None


def decoder(kind: type[Any]) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(kind)


ENVELOPE = decoder(Envelope)
ENTRY = decoder(Entry)
CHANGE = decoder(Change)
MESSAGES_VALUE = decoder(MessagesValue)
MESSAGE = decoder(Message)
STATUS = decoder(Status)
HISTORY_ITEM = decoder(HistoryItem)
THREAD = decoder(Thread)
STATE_SYNC = decoder(StateSync)
WHOLE_ENVELOPE = decoder(WholeEnvelope)
OBJECT = decoder(dict[str, Any])
