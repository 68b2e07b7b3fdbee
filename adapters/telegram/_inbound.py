"""Telegram Update bytes -> one common event (docs/mapping.md, Telegram section).

An Update is an object holding `update_id` and at most one payload key, and Telegram keeps
adding payload keys. Decoding therefore takes two steps, with decoders built once at import:

1. The envelope is decoded as ``dict[str, msgspec.Raw]``: only the top-level keys become
   Python objects, every value stays an undecoded slice of the body. This is the only place
   that asks "which key is present", so an unknown update key costs nothing and cannot fail.
2. The payload value is decoded with the private Struct for its key and mapped by one small
   handler. Structs list only the fields the mapping reads; msgspec skips the rest.

What can go wrong, and what the caller sees:

    ParseError        the envelope is unusable: not JSON, not an object, no int update_id
    Parsed.bad        update_id is fine, the payload does not fit its Struct (missing
                      `chat`, wrong types, an empty `photo` list): one BadItem malformed_item
    type unsupported  an unknown update key or unknown message content: a normal event

Bounds on ids, timestamps and coordinates keep every produced event encodable and decodable
with the common schema. Provider structs stay here: only `adapters.schema` crosses out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, NamedTuple

import msgspec

from adapters.schema import (
    AnyEvent,
    BadItem,
    Location,
    Media,
    MemberEvent,
    MessageEvent,
    MessageType,
    Parsed,
    ParseError,
    Reply,
    Routed,
    SharedContact,
)
from adapters.telegram import _entities

# Telegram ids have up to 52 significant bits; int64 bounds also stop absurd integers early.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
_Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]

# msgspec raises DecodeError (ValidationError is a subclass) for bad JSON and types, but a
# string with invalid UTF-8 surfaces as UnicodeDecodeError and deep nesting as RecursionError.
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)

# Message fields that describe a message rather than carry its content; the first key outside
# this set names the content of a message the mapping does not know (e.g. `dice`).
_MESSAGE_META_KEYS = frozenset(
    {
        "message_id",
        "message_thread_id",
        "direct_messages_topic",
        "from",
        "sender_chat",
        "sender_boost_count",
        "sender_business_bot",
        "sender_tag",
        "date",
        "business_connection_id",
        "chat",
        "forward_origin",
        "is_topic_message",
        "is_automatic_forward",
        "reply_to_message",
        "external_reply",
        "quote",
        "reply_to_story",
        "reply_to_checklist_task_id",
        "via_bot",
        "edit_date",
        "has_protected_content",
        "is_from_offline",
        "is_paid_post",
        "media_group_id",
        "author_signature",
        "paid_star_count",
        "entities",
        "caption_entities",
        "link_preview_options",
        "suggested_post_info",
        "effect_id",
        "show_caption_above_media",
        "has_media_spoiler",
        "reply_markup",
    }
)


class _Chat(msgspec.Struct):
    id: _Int64
    type: str
    title: str | None = None


class _User(msgspec.Struct):
    id: _Int64
    first_name: str = ""
    last_name: str | None = None


class _Ref(msgspec.Struct):
    id: _Int64


class _File(msgspec.Struct):
    """PhotoSize, Document, Voice, Audio, Video, VideoNote, Animation, Sticker."""

    file_id: str
    mime_type: str | None = None
    file_name: str | None = None


class _Location(msgspec.Struct):
    latitude: _Latitude
    longitude: _Longitude


class _Venue(msgspec.Struct):
    location: _Location
    title: str
    address: str


class _Contact(msgspec.Struct):
    phone_number: str
    first_name: str = ""
    last_name: str | None = None


class _Quoted(msgspec.Struct):
    message_id: _Int64


class _Message(msgspec.Struct):
    message_id: _Int64
    date: _Int64
    chat: _Chat
    from_: _User | None = msgspec.field(default=None, name="from")
    business_connection_id: str | None = None
    message_thread_id: _Int64 | None = None
    reply_to_message: _Quoted | None = None
    edit_date: _Int64 | None = None
    text: str | None = None
    caption: str | None = None
    # Raw (decoded in adapters.telegram._entities, one entity at a time); empty when absent.
    entities: msgspec.Raw = msgspec.Raw()
    caption_entities: msgspec.Raw = msgspec.Raw()
    media_group_id: str | None = None
    photo: Annotated[list[_File], msgspec.Meta(min_length=1)] | None = None
    animation: _File | None = None
    document: _File | None = None
    voice: _File | None = None
    audio: _File | None = None
    video: _File | None = None
    video_note: _File | None = None
    sticker: _File | None = None
    venue: _Venue | None = None
    location: _Location | None = None
    contact: _Contact | None = None


class _CallbackMessage(msgspec.Struct):
    """Message or InaccessibleMessage: both carry these."""

    message_id: _Int64
    chat: _Chat
    message_thread_id: _Int64 | None = None
    business_connection_id: str | None = None


class _CallbackQuery(msgspec.Struct):
    id: str
    from_: _User = msgspec.field(name="from")
    message: _CallbackMessage | None = None
    data: str | None = None


class _ReactionType(msgspec.Struct):
    """ReactionTypeEmoji, ReactionTypeCustomEmoji or ReactionTypePaid."""

    type: str
    emoji: str | None = None
    custom_emoji_id: str | None = None


class _MessageReaction(msgspec.Struct):
    chat: _Chat
    message_id: _Int64
    date: _Int64
    new_reaction: list[_ReactionType]
    user: _User | None = None
    actor_chat: _Chat | None = None


class _ChatMember(msgspec.Struct):
    status: str


class _ChatMemberUpdated(msgspec.Struct):
    chat: _Chat
    date: _Int64
    new_chat_member: _ChatMember
    old_chat_member: _ChatMember | None = None


class _Anyone(msgspec.Struct):
    """The parts of an unknown payload that may name a contact."""

    from_: _Ref | None = msgspec.field(default=None, name="from")
    chat: _Ref | None = None


class _Content(NamedTuple):
    type: MessageType
    text: str | None = None
    media: Media | None = None
    location: Location | None = None
    contacts: list[SharedContact] | None = None
    subtype: str | None = None


class _Ctx(NamedTuple):
    bot_id: str
    update_id: int
    key: str
    received_at: int


class _Out(NamedTuple):
    """A handler's event and how the router treats it (see `adapters.schema.Routed`)."""

    event: AnyEvent
    live: bool = True
    authored: bool = True
    """The contact itself acted in the chat: only then does a 403 opt-out end (CONTRACT §3)."""


CUSTOM_EMOJI_PREFIX = "custom_emoji:"
"""`text` of a custom emoji reaction: this prefix, then its custom_emoji_id."""
PAID_REACTION = "\u2b50"
"""`text` of a paid (Telegram Star) reaction: the star the clients show."""
# my_chat_member statuses: the bot was shut out of the chat, and is in it again.
_SHUT_OUT = frozenset({"kicked", "left"})
_ADMITTED = frozenset({"member", "administrator"})

_ENVELOPE = msgspec.json.Decoder(dict[str, msgspec.Raw])
_UPDATE_ID = msgspec.json.Decoder(_Int64)
_MESSAGE = msgspec.json.Decoder(_Message)
_CALLBACK = msgspec.json.Decoder(_CallbackQuery)
_REACTION = msgspec.json.Decoder(_MessageReaction)
_MEMBER = msgspec.json.Decoder(_ChatMemberUpdated)
_ANYONE = msgspec.json.Decoder(_Anyone)


def parse_update(body: bytes, bot_id: str, received_at: int) -> Parsed:
    """Map one Telegram Update to exactly one event, or one BadItem.

    Raises `ParseError` (and nothing else) when `body` is not a JSON object with an integer
    `update_id`. `received_at` (unix seconds) stamps events for which Telegram gives no time.
    """
    fields = _decode_envelope(body)
    update_id = _decode_update_id(fields)
    key = _payload_key(fields)
    if key is None:
        return _bad(body, "update carries no payload key")
    ctx = _Ctx(bot_id, update_id, key, received_at)
    try:
        out = _HANDLERS.get(key, _on_unknown)(fields[key], ctx)
    except _DECODE_ERRORS as exc:
        return _bad(body, f"{key}: {exc}")
    routed = Routed(out.event, f"tg:{update_id}", live=out.live, authored=out.authored)
    return Parsed(events=[routed])


def _decode_envelope(body: bytes) -> dict[str, msgspec.Raw]:
    try:
        return _ENVELOPE.decode(body)
    except _DECODE_ERRORS as exc:
        raise ParseError(f"not a Telegram update: {exc}") from exc


def _decode_update_id(fields: dict[str, msgspec.Raw]) -> int:
    raw = fields.get("update_id")
    if raw is None:
        raise ParseError("not a Telegram update: no update_id")
    try:
        return _UPDATE_ID.decode(raw)
    except _DECODE_ERRORS as exc:
        raise ParseError(f"not a Telegram update: update_id: {exc}") from exc


def _payload_key(fields: dict[str, msgspec.Raw]) -> str | None:
    """The payload key; a known one wins should a future update carry several."""
    for key in fields:
        if key in _HANDLERS:
            return key
    return next((key for key in fields if key != "update_id"), None)


def _bad(body: bytes, detail: str) -> Parsed:
    return Parsed(bad=[BadItem(reason="malformed_item", raw=body, detail=detail[:300])])


def _on_message(raw: msgspec.Raw, ctx: _Ctx) -> _Out:
    msg = _MESSAGE.decode(raw)
    edited = ctx.key.startswith("edited_")
    content = _content(msg, raw)
    found = _read_entities(msg)
    event = MessageEvent(
        channel="telegram",
        account_id=ctx.bot_id,
        contact_id=str(msg.chat.id),
        timestamp=msg.edit_date if edited and msg.edit_date is not None else msg.date,
        message_id=str(msg.message_id),
        type=content.type,
        text=content.text,
        media=content.media,
        location=content.location,
        contacts=content.contacts,
        subtype=content.subtype,
        reply_to=_opt_str(msg.reply_to_message.message_id if msg.reply_to_message else None),
        contact_name=_sender_name(msg, channel=ctx.key.endswith("channel_post")),
        edited=edited,
        original_message_id=str(msg.message_id) if edited else None,
        chat_type=msg.chat.type,
        thread_id=_opt_str(msg.message_thread_id),
        business_connection_id=msg.business_connection_id,
        command=found.command.name if found.command else None,
        args=found.command.args if found.command else None,
        media_group_id=msg.media_group_id,
        links=found.links,
    )
    return _Out(event, authored=not _business_side(msg))


def _read_entities(msg: _Message) -> _entities.Found:
    """The command and links of the text, or of the caption of a media message."""
    if msg.text is not None:
        return _entities.read(msg.text, msg.entities)
    return _entities.read(msg.caption, msg.caption_entities)


def _business_side(msg: _Message) -> bool:
    """A business chat's own side wrote (the owner, an employee or a bot acting for them):
    Telegram sends a bot both sides of a business chat. The chat of a business message is
    the private chat with the customer, whose id is the customer's user id."""
    return msg.business_connection_id is not None and (
        msg.from_ is not None and msg.from_.id != msg.chat.id
    )


def _content(msg: _Message, raw: msgspec.Raw) -> _Content:
    if msg.text is not None:
        return _Content("text", text=msg.text)
    if msg.photo:
        return _Content("image", text=msg.caption, media=_media(msg.photo[-1]))
    media = _file_content(msg)
    if media is not None:
        return media
    if msg.venue is not None:  # a venue message also carries `location`: check it first
        venue = msg.venue
        place = _location(venue.location, name=venue.title, address=venue.address)
        return _Content("location", text=venue.title, location=place)
    if msg.location is not None:
        return _Content("location", location=_location(msg.location))
    if msg.contact is not None:
        return _contact(msg.contact)
    return _Content("unsupported", subtype=_content_key(raw))


def _file_content(msg: _Message) -> _Content | None:
    files: tuple[tuple[MessageType, _File | None], ...] = (
        ("video", msg.animation),  # before document: Telegram sends a GIF as both
        ("document", msg.document),
        ("voice", msg.voice),
        ("audio", msg.audio),
        ("video", msg.video),
        ("video", msg.video_note),
        ("sticker", msg.sticker),
    )
    for type_, file in files:
        if file is not None:
            return _Content(type_, text=msg.caption, media=_media(file))
    return None


def _media(file: _File) -> Media:
    return Media(id=file.file_id, mime_type=file.mime_type, filename=file.file_name)


def _location(point: _Location, name: str | None = None, address: str | None = None) -> Location:
    return Location(point.latitude, point.longitude, name=name, address=address)


def _contact(contact: _Contact) -> _Content:
    name = _full_name(contact.first_name, contact.last_name)
    shared = SharedContact(name=name, phones=[contact.phone_number], wa_ids=[])
    return _Content("contacts", text=name, contacts=[shared])


def _content_key(raw: msgspec.Raw) -> str | None:
    # Only reached for content the mapping does not know, so the second decode is rare.
    keys = _ENVELOPE.decode(raw)
    return next((key for key in keys if key not in _MESSAGE_META_KEYS), None)


def _sender_name(msg: _Message, *, channel: bool) -> str | None:
    if channel or msg.from_ is None:
        return msg.chat.title
    return _full_name(msg.from_.first_name, msg.from_.last_name)


def _on_callback(raw: msgspec.Raw, ctx: _Ctx) -> _Out:
    query = _CALLBACK.decode(raw)
    origin = query.message
    event = MessageEvent(
        channel="telegram",
        account_id=ctx.bot_id,
        contact_id=str(origin.chat.id if origin else query.from_.id),
        timestamp=ctx.received_at,
        message_id=query.id,
        type="interactive",
        reply=Reply(id=query.data) if query.data is not None else None,
        reply_to=str(origin.message_id) if origin else None,
        contact_name=_full_name(query.from_.first_name, query.from_.last_name),
        subtype="callback_query",
        chat_type=origin.chat.type if origin else None,
        thread_id=_opt_str(origin.message_thread_id if origin else None),
        business_connection_id=origin.business_connection_id if origin else None,
    )
    return _Out(event)


def _on_reaction(raw: msgspec.Raw, ctx: _Ctx) -> _Out:
    reaction = _REACTION.decode(raw)
    text, kind, custom_id = _reaction_text(reaction.new_reaction)
    event = MessageEvent(
        channel="telegram",
        account_id=ctx.bot_id,
        contact_id=str(reaction.chat.id),
        timestamp=reaction.date,
        message_id=str(ctx.update_id),
        type="reaction",
        text=text,
        reply_to=str(reaction.message_id),
        contact_name=_reactor_name(reaction),
        chat_type=reaction.chat.type,
        subtype=kind,
        data=custom_id,
    )
    return _Out(event)


def _reaction_text(reactions: list[_ReactionType]) -> tuple[str, str | None, str | None]:
    """(text, subtype, data) of the reaction now set: `""` only when it was removed, which is
    what the contract reserves `""` for. A plain emoji wins, else the first reaction: a
    custom emoji is `custom_emoji:<id>` (the id also in `data`; a `reaction` command with
    that text sets it back), a paid star reaction is `⭐`, a future type is its name."""
    if not reactions:
        return "", None, None
    chosen = next((r for r in reactions if r.type == "emoji" and r.emoji), reactions[0])
    if chosen.type == "emoji":
        return chosen.emoji or "emoji", None, None
    if chosen.type == "custom_emoji" and chosen.custom_emoji_id:
        return f"{CUSTOM_EMOJI_PREFIX}{chosen.custom_emoji_id}", chosen.type, chosen.custom_emoji_id
    if chosen.type == "paid":
        return PAID_REACTION, chosen.type, None
    return chosen.type or "unknown", chosen.type or None, None


def _reactor_name(reaction: _MessageReaction) -> str | None:
    if reaction.user is not None:
        return _full_name(reaction.user.first_name, reaction.user.last_name)
    return reaction.actor_chat.title if reaction.actor_chat else None


def _on_member(raw: msgspec.Raw, ctx: _Ctx) -> _Out:
    update = _MEMBER.decode(raw)
    event = MemberEvent(
        channel="telegram",
        account_id=ctx.bot_id,
        contact_id=str(update.chat.id),
        timestamp=update.date,
        status=update.new_chat_member.status,
        chat_type=update.chat.type,
    )
    readmitted = ctx.key == "my_chat_member" and _readmitted(update)
    return _Out(event, live=readmitted, authored=readmitted)


def _readmitted(update: _ChatMemberUpdated) -> bool:
    """The bot is back in a chat that had shut it out: the user unblocked (or restarted) it,
    or a group re-added it. That is the contact's own doing, so it ends a 403 opt-out."""
    old = update.old_chat_member.status if update.old_chat_member else None
    return old in _SHUT_OUT and update.new_chat_member.status in _ADMITTED


def _on_unknown(raw: msgspec.Raw, ctx: _Ctx) -> _Out:
    event = MessageEvent(
        channel="telegram",
        account_id=ctx.bot_id,
        contact_id=_opt_str(_someone(raw)),
        timestamp=ctx.received_at,
        message_id=str(ctx.update_id),
        type="unsupported",
        subtype=ctx.key,
    )
    # Boosts, polls, deleted business messages, reaction counts...: nobody wrote to the
    # bot, so a 403 opt-out of that chat stays (CONTRACT §3 "until the contact writes").
    return _Out(event, authored=False)


def _someone(raw: msgspec.Raw) -> int | None:
    """`from.id`, else `chat.id`, of a payload whose shape is unknown; never fails."""
    try:
        anyone = _ANYONE.decode(raw)
    except _DECODE_ERRORS:
        return None
    ref = anyone.from_ or anyone.chat
    return ref.id if ref else None


def _full_name(first: str, last: str | None) -> str | None:
    """The non-empty parts, space-separated; None when both are empty."""
    if first and last:
        return f"{first} {last}"
    return first or last or None


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


_HANDLERS: dict[str, Callable[[msgspec.Raw, _Ctx], _Out]] = {
    "message": _on_message,
    "edited_message": _on_message,
    "channel_post": _on_message,
    "edited_channel_post": _on_message,
    "business_message": _on_message,
    "edited_business_message": _on_message,
    "callback_query": _on_callback,
    "message_reaction": _on_reaction,
    "my_chat_member": _on_member,
    "chat_member": _on_member,
}

HANDLED_UPDATES: tuple[str, ...] = tuple(_HANDLERS)
"""The update kinds the parser maps to events, in `_HANDLERS` order: the `allowed_updates` the
gateway asks Telegram for (`setWebhook`). Any other kind would only become an `unsupported`
event; `chat_member` and `message_reaction` are not sent at all unless asked for."""
