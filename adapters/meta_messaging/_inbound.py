"""Messenger and Instagram webhook body → common events (docs/mapping.md is the table this
follows).

Both channels post Meta's envelope: `entry[]`, each with `messaging[]` and `standby[]` items
that say what happened by which key they carry (`message`, `postback`, `reaction`, `read`,
...), and on Instagram `changes[]` (comments, mentions) the gateway does not handle. Each
item is routed by its own ids: inbound items belong to the `recipient` (Page or Instagram
account) and come from the `sender`; echoes the other way round.

As the WhatsApp parser (adapters/whatsapp/_inbound.py), the usual body is decoded whole, in
one typed msgspec decode; any other body, and any body with something malformed or unknown in
it, is walked entry → item instead, each decoded on its own from `msgspec.Raw`, so a
malformed item becomes one `BadItem` with its exact bytes and every other item of the batch
is still published. Both ways build events with the same functions, so they give the same
events. A body nested too deep for the decoder is walked as a copy with its too deep parts
cut out (`adapters.whatsapp._depth`). Only a body that is not an envelope at all raises
`ParseError` (`ForeignBody` when its `object` is another channel's).

Echoes of the gateway's own sends are dropped here when they say so: every Messenger message
it sends carries `metadata: "gw:<command_id>"`, which Meta hands back on the echo. Instagram
documents no metadata; there the ledger marks each sent message's echo as seen
(`Channel.echo_identity`, finish.lua), so its echo (identity `e:<mid>`) is taken for a
redelivery. Anything else the business sent (Page Inbox, Instagram app, another app) is an
`echo`, which pauses the assistant.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final

import msgspec

from adapters.meta import check_object
from adapters.schema import (
    STATUS_RANK,
    BadItem,
    Channel,
    EchoEvent,
    Location,
    Media,
    MessageEvent,
    Parsed,
    ParseError,
    ProviderError,
    Reply,
    Routed,
    StatusEvent,
)
from adapters.whatsapp._depth import cut_outside, decode_cut

from . import _payload as p

_CHANNELS: Final[dict[str, Channel]] = {"messenger": "messenger", "instagram": "instagram"}
OWN_METADATA: Final = "gw:"
"""Prefix of the `metadata` the gateway puts on every message it sends (`gw:<command_id>`):
an echo carrying it is the gateway's own send, not a person writing from the inbox."""
MAX_NESTING: Final = 64
"""Levels of JSON nesting kept when a body is too deep for the decoder (as for WhatsApp)."""
MAX_FUTURE_SECONDS: Final = 86400
"""A provider time more than this after receipt (or now, if later) is no plausible time: the
item is dead-lettered, as WhatsApp's (a far-future time would hold a window open for good)."""
_ID = re.compile(r"[0-9]{1,32}")
"""Page ids, Instagram account ids, PSIDs and IGSIDs are decimal strings."""
_MEDIA_TYPES: Final = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "document",
    "sticker": "sticker",
}
_HANDOVER: Final = (
    "pass_thread_control",
    "take_thread_control",
    "request_thread_control",
    "app_roles",
)
_UNKNOWN: Final = "unsupported_item"
"""The dead letter's reason for what Meta sends that is no conversation's event."""
_TOO_DEEP: Final = f"nested deeper than {MAX_NESTING} levels"
# msgspec raises RecursionError for deeply nested JSON (even where it only skips a value);
# UnicodeDecodeError (a ValueError) for invalid UTF-8 in a string.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError)


class _ItemError(ValueError):
    """An item the payload structs accept but the mapping cannot use (no id, bad time, no
    key it knows); its `reason` names the dead letter."""

    def __init__(self, detail: str, reason: str = "malformed_item") -> None:
        super().__init__(detail)
        self.reason = reason


class _NoEvent(_ItemError):
    """An item with none of the keys the gateway maps."""

    def __init__(self) -> None:
        super().__init__("no messaging event this gateway handles", _UNKNOWN)


def parse(channel: str, body: bytes, received_at: int) -> Parsed:
    """Decode one webhook body of `channel` ("messenger" or "instagram"). Raises only
    `ParseError`: `ForeignBody` for another channel's `object`, else for no envelope."""
    ctx = _Ctx(_CHANNELS[channel], received_at)
    try:
        return _parse_whole(ctx, body)
    except _DECODE_ERRORS:  # malformed, unknown or dead-lettered somewhere: walk it
        return _parse_walk(ctx, body)


def _parse_whole(ctx: _Ctx, body: bytes) -> Parsed:
    """The usual body in one decode; raises a decode error (or `_ItemError`) for anything
    else, having built nothing that outlives the call."""
    envelope: p.WholeEnvelope = p.WHOLE_ENVELOPE.decode(body)
    check_object(ctx.channel, envelope.object)
    events: list[Routed] = []
    for entry in envelope.entry:
        for items in (entry.messaging, entry.standby):
            for item in items:
                events += _item(ctx, item)
    return Parsed(events)


def _parse_walk(ctx: _Ctx, body: bytes) -> Parsed:
    """Entry → item, each decoded on its own: one malformed item costs only itself."""
    try:
        envelope = p.ENVELOPE.decode(body)
    except RecursionError:
        return _parse_cut(ctx, body)
    except _DECODE_ERRORS as exc:
        raise ParseError(f"not a {ctx.channel} webhook envelope: {exc}") from None
    return _walk(ctx, envelope)


def _parse_cut(ctx: _Ctx, body: bytes) -> Parsed:
    """A body too deep for the decoder: walk a copy with the too deep parts cut out, and
    dead-letter the items that held one (a cut outside every entry: the whole body)."""
    what = f"{ctx.channel} webhook envelope"
    envelope, ctx.deep = decode_cut(body, MAX_NESTING, p.ENVELOPE.decode, what, _DECODE_ERRORS)
    return _walk(ctx, envelope)


def _walk(ctx: _Ctx, envelope: p.Envelope) -> Parsed:
    check_object(ctx.channel, envelope.object)
    out = Parsed()
    for i, raw in enumerate(envelope.entry):
        _guarded(out, raw, f"entry[{i}]", partial(_entry, ctx, out, f"entry[{i}]"))
    return out


def _guarded(
    out: Parsed, raw: msgspec.Raw, where: str, step: Callable[[msgspec.Raw], Iterable[Routed]]
) -> None:
    """Run one step on one item; a malformed item becomes a dead letter, not an exception."""
    try:
        routed = list(step(raw))
    except _DECODE_ERRORS as exc:
        reason = exc.reason if isinstance(exc, _ItemError) else "malformed_item"
        detail = _TOO_DEEP if isinstance(exc, RecursionError) else str(exc)
        out.bad.append(BadItem(reason, bytes(raw), f"{where}: {detail}"))
        return
    out.events += routed


def _entry(ctx: _Ctx, out: Parsed, where: str, raw: msgspec.Raw) -> list[Routed]:
    entry = p.ENTRY.decode(raw)
    if cut_outside(ctx.deep, raw, [*entry.messaging, *entry.standby, *entry.changes]):
        raise _ItemError(_TOO_DEEP)
    for name, items in (("messaging", entry.messaging), ("standby", entry.standby)):
        for i, item in enumerate(items):
            _guarded(out, item, f"{where}.{name}[{i}]", partial(_walked_item, ctx))
    for i, change in enumerate(entry.changes):
        _guarded(out, change, f"{where}.changes[{i}]", partial(_change, ctx))
    return []


def _leaf(marker: bytes | None, raw: msgspec.Raw) -> None:
    """An item is dead-lettered whole when a part of it was too deep."""
    if marker is not None and marker in bytes(raw):
        raise _ItemError(_TOO_DEEP)


def _change(ctx: _Ctx, raw: msgspec.Raw) -> list[Routed]:
    """Instagram `changes[]` (comments, mentions, story insights, the dashboard's test
    payload): nothing a conversation carries, but kept whole for an operator."""
    _leaf(ctx.deep, raw)
    field = p.CHANGE.decode(raw).field
    name = repr(field[:40]) if field is not None else "(none)"
    raise _ItemError(f"changes[] field {name} is not a messaging event", _UNKNOWN)


def _walked_item(ctx: _Ctx, raw: msgspec.Raw) -> list[Routed]:
    _leaf(ctx.deep, raw)
    try:
        return _item(ctx, p.ITEM.decode(raw))
    except _NoEvent as exc:
        keys = sorted(k[:40] for k in p.KEYS.decode(raw))
        shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
        raise _ItemError(f"{exc} (keys: {shown})", _UNKNOWN) from None


class _Ctx:
    """What every item of one body shares: its channel and the receipt time."""

    __slots__ = ("channel", "deep", "latest")

    def __init__(self, channel: Channel, received_at: int) -> None:
        self.channel = channel
        self.latest = received_at + MAX_FUTURE_SECONDS
        self.deep: bytes | None = None
        """The marker of the parts cut out of a too deep body (`_parse_cut`), else None."""


def _item(ctx: _Ctx, item: p.Item) -> list[Routed]:
    """The events of one item, by the first key it carries that the gateway maps (in this
    order when, oddly, several are present); raises `_ItemError` for one it cannot use."""
    if item.message is not None:
        return _message(ctx, item, item.message)
    if item.message_edit is not None:
        return [_edit(ctx, item, item.message_edit)]
    if item.postback is not None:
        return [_postback(ctx, item, item.postback)]
    if item.reaction is not None:
        return [_reaction(ctx, item, item.reaction)]
    if item.read is not None:
        return [_read(ctx, item, item.read)]
    if item.delivery is not None:
        return _delivery(ctx, item, item.delivery)
    if item.referral is not None:
        return [_entry_point(ctx, item, "referral", referral=item.referral)]
    if item.optin is not None:
        optin = item.optin
        data = optin.ref or optin.user_ref or optin.payload
        return [_entry_point(ctx, item, "optin", data=data)]
    if item.account_linking is not None:
        return [_entry_point(ctx, item, "account_linking", data=item.account_linking.status)]
    for key in _HANDOVER:
        value: dict[str, Any] | None = getattr(item, key)
        if value is not None:
            return [_handover(ctx, item, key, value)]
    raise _NoEvent


def _id(party: p.Party | None, role: str) -> str:
    if party is None or not party.id:
        raise _ItemError(f"{role}.id is missing")
    if not _ID.fullmatch(party.id):
        raise _ItemError(f"{role}.id {party.id[:40]!r} is not a numeric id")
    return party.id


def _inbound_ids(item: p.Item) -> tuple[str, str]:
    """(account, contact) of an item the contact caused: the recipient is the business."""
    return _id(item.recipient, "recipient"), _id(item.sender, "sender")


def _timestamp(ms: int | None, ctx: _Ctx, what: str = "timestamp") -> int:
    """Integer milliseconds → unix seconds, at most `MAX_FUTURE_SECONDS` after receipt (or
    now, if later: a body replayed later)."""
    if ms is None:
        raise _ItemError(f"{what} is missing")
    seconds = ms // 1000
    if ms >= 0 and (seconds <= ctx.latest or seconds <= int(time.time()) + MAX_FUTURE_SECONDS):
        return seconds
    raise _ItemError(f"{what} {str(ms)[:40]!r} is not plausible unix milliseconds")


def _message(ctx: _Ctx, item: p.Item, m: p.Message) -> list[Routed]:
    if m.is_echo and m.metadata is not None and m.metadata.startswith(OWN_METADATA):
        return []  # the gateway's own send coming back: its delivery event says it all
    if not m.mid:
        raise _ItemError("message.mid is missing")
    stamp = _timestamp(item.timestamp, ctx)
    if m.is_echo:
        # The business wrote: the sender is the Page or account, the recipient the contact.
        account, contact = _id(item.sender, "sender"), _id(item.recipient, "recipient")
    else:
        account, contact = _inbound_ids(item)
    content = _deleted(m) if m.is_deleted else _content(m, item.referral)
    ids: dict[str, Any] = {
        "channel": ctx.channel,
        "account_id": account,
        "contact_id": contact,
        "timestamp": stamp,
        "message_id": m.mid,
    }
    if m.is_echo:
        return [Routed(EchoEvent(**ids, **content), f"{'d' if m.is_deleted else 'e'}:{m.mid}")]
    event = MessageEvent(**ids, **content)
    if m.is_deleted:
        # The contact unsent it: still their act, but no new message (no window).
        return [Routed(event, f"d:{m.mid}", live=True, authored=False)]
    return [Routed(event, f"m:{m.mid}", live=True)]


def _deleted(m: p.Message) -> dict[str, Any]:
    return {
        "type": "system",
        "subtype": "deleted",
        "reply_to": m.mid,
        "original_message_id": m.mid,
    }


def _content(m: p.Message, item_referral: dict[str, Any] | None) -> dict[str, Any]:
    """The type-dependent keys of a message or echo."""
    out: dict[str, Any] = {}
    reply_to = m.reply_to
    if reply_to is not None and reply_to.story is not None:
        story = reply_to.story
        out.update(reply_to=story.id, subtype="story_reply", data=story.url)
    elif reply_to is not None and reply_to.mid:
        out["reply_to"] = reply_to.mid
    referral = m.referral if m.referral is not None else item_referral
    if referral is not None:
        out["referral"] = referral
    out.update(_typed(m))
    return out


def _typed(m: p.Message) -> dict[str, Any]:
    if m.is_unsupported:
        return _unsupported("is_unsupported", m.text, None)
    if m.quick_reply is not None:
        payload = m.quick_reply.payload or ""
        return {
            "type": "interactive",
            "text": m.text,
            "subtype": "quick_reply",
            "reply": Reply(payload, m.text),
        }
    attachments = _without_sticker_twins(m.attachments or [])
    if attachments:
        return _attached(m.text, attachments)
    if m.text is not None:
        return {"type": "text", "text": m.text}
    return {"type": "unsupported"}  # no text, no attachment: nothing to show


def _without_sticker_twins(attachments: list[p.Attachment]) -> list[p.Attachment]:
    """During Meta's transition (changelog of 1 Jun 2026, announced to end 30 Aug 2026) a
    Messenger sticker comes as a `sticker` attachment *and* as an `image` one: one sticker,
    not two attachments. Once only `sticker` comes, this keeps everything."""
    if any(a.type == "sticker" for a in attachments):
        return [a for a in attachments if a.type != "image"]
    return attachments


def _attached(text: str | None, attachments: list[p.Attachment]) -> dict[str, Any]:
    """The first attachment decides the type; every one is listed when there are several."""
    first = attachments[0]
    media = [_media(a) for a in attachments]
    out: dict[str, Any] = {"attachments": media if len(media) > 1 else None}
    payload = first.payload
    kind = _MEDIA_TYPES.get(first.type)
    if first.type == "image" and payload is not None and payload.sticker_id is not None:
        kind = "sticker"  # the older shape of a sticker (e.g. the thumbs-up "like")
    if kind is not None:
        out.update(type=kind, text=text, media=media[0])
    elif first.type == "location" and payload is not None and payload.coordinates is not None:
        out.update(_location(first, payload.coordinates))
    else:
        out.update(_unsupported(first.type, text, media[0] if media[0].url else None))
    return out


def _media(a: p.Attachment) -> Media:
    payload = a.payload
    sticker = payload.sticker_id if payload is not None else None
    url = payload.url if payload is not None else None
    if url is None and a.type == "fallback":
        url = a.url or a.url_upper  # a shared link: the link is the content
    return Media(str(sticker) if sticker is not None else None, None, None, url)


def _location(a: p.Attachment, pin: p.Coordinates) -> dict[str, Any]:
    return {"type": "location", "text": a.title, "location": Location(pin.lat, pin.long, a.title)}


def _unsupported(kind: str, text: str | None, media: Media | None) -> dict[str, Any]:
    """A share, story mention, reel, template...: its raw type, and its URL when it has one."""
    return {
        "type": "unsupported",
        "subtype": kind,
        "text": text,
        "media": media,
        "errors": [ProviderError(0, kind)],
    }


def _edit(ctx: _Ctx, item: p.Item, edit: p.MessageEdit) -> Routed:
    if not edit.mid:
        raise _ItemError("message_edit.mid is missing")
    account, contact = _inbound_ids(item)
    event = MessageEvent(
        channel=ctx.channel,
        account_id=account,
        contact_id=contact,
        timestamp=_timestamp(item.timestamp, ctx),
        message_id=edit.mid,
        type="text",
        text=edit.text,
        edited=True,
        original_message_id=edit.mid,
    )
    # Each edit is its own event; without a count, its time tells two edits apart.
    nth = edit.num_edit if edit.num_edit is not None else f"t{item.timestamp}"
    return Routed(event, f"x:{edit.mid}:{nth}", live=True, authored=False)


def _postback(ctx: _Ctx, item: p.Item, pb: p.Postback) -> Routed:
    """A tapped button, Get Started or ice breaker: the contact's own act, which opens the
    window (PLATFORM-MORE §4.3)."""
    account, contact = _inbound_ids(item)
    stamp = _timestamp(item.timestamp, ctx)
    message_id = pb.mid or f"postback:{contact}:{item.timestamp}"
    event = MessageEvent(
        channel=ctx.channel,
        account_id=account,
        contact_id=contact,
        timestamp=stamp,
        message_id=message_id,
        type="interactive",
        text=pb.title,
        subtype="postback",
        reply=Reply(pb.payload or "", pb.title),
        referral=pb.referral,
    )
    return Routed(event, f"m:{message_id}", live=True)


def _reaction(ctx: _Ctx, item: p.Item, r: p.Reaction) -> Routed:
    if not r.mid:
        raise _ItemError("reaction.mid (the message reacted to) is missing")
    account, contact = _inbound_ids(item)
    stamp = _timestamp(item.timestamp, ctx)
    message_id = f"reaction:{r.mid}:{contact}:{item.timestamp}"
    # `""` means removed (CONTRACT §2.1); a reaction without its emoji keeps its name.
    text = "" if r.action == "unreact" else r.emoji or r.reaction or ""
    event = MessageEvent(
        channel=ctx.channel,
        account_id=account,
        contact_id=contact,
        timestamp=stamp,
        message_id=message_id,
        type="reaction",
        text=text,
        reply_to=r.mid,
        subtype=r.action,
        data=r.reaction,
    )
    return Routed(event, f"m:{message_id}", live=True)


def _status(ctx: _Ctx, item: p.Item, status: str, mid: str | None, watermark: int | None) -> Routed:
    """A delivered or read status: of one message (ranked by its mid, as WhatsApp's), or of
    everything before `watermark` (one event per watermark)."""
    account, contact = _inbound_ids(item)
    stamp = _timestamp(item.timestamp, ctx)
    event = StatusEvent(
        channel=ctx.channel,
        account_id=account,
        contact_id=contact,
        timestamp=stamp,
        message_id=mid,
        status=status,
        watermark=watermark if mid is None else None,
    )
    dedup = f"s:{mid}" if mid is not None else f"w:{status}:{contact}:{watermark}"
    return Routed(event, dedup, rank=STATUS_RANK[status])


def _read(ctx: _Ctx, item: p.Item, read: p.Read) -> Routed:
    if read.mid:  # Instagram's messaging_seen names the message
        return _status(ctx, item, "read", read.mid, None)
    _timestamp(read.watermark, ctx, "read.watermark")
    return _status(ctx, item, "read", None, read.watermark)


def _delivery(ctx: _Ctx, item: p.Item, delivery: p.Delivery) -> list[Routed]:
    if delivery.mids:
        if not all(delivery.mids):
            raise _ItemError("delivery.mids holds an empty mid")
        return [_status(ctx, item, "delivered", mid, None) for mid in delivery.mids]
    _timestamp(delivery.watermark, ctx, "delivery.watermark")
    return [_status(ctx, item, "delivered", None, delivery.watermark)]


def _entry_point(ctx: _Ctx, item: p.Item, key: str, **extra: Any) -> Routed:
    """A referral (ad, m.me / ig.me link), an opt-in or an account (un)linking: the contact's
    act, which opens the window (PLATFORM-MORE §4.3), though no message was written."""
    account, contact = _inbound_ids(item)
    stamp = _timestamp(item.timestamp, ctx)
    message_id = f"{key}:{contact}:{item.timestamp}"
    event = MessageEvent(
        channel=ctx.channel,
        account_id=account,
        contact_id=contact,
        timestamp=stamp,
        message_id=message_id,
        type="system",
        subtype=key,
        **extra,
    )
    return Routed(event, f"m:{message_id}", live=True)


def _handover(ctx: _Ctx, item: p.Item, key: str, value: dict[str, Any]) -> Routed:
    """Conversation Routing (handover protocol): who owns the thread now. Published for the
    assistant to see, but nobody wrote: no window (`authored` false)."""
    account = _id(item.recipient, "recipient")
    # `app_roles` concerns the Page, not a conversation: Meta sends it without a sender.
    contact = None if key == "app_roles" and item.sender is None else _id(item.sender, "sender")
    stamp = _timestamp(item.timestamp, ctx)
    message_id = f"{key}:{contact or ''}:{item.timestamp}"
    event = MessageEvent(
        channel=ctx.channel,
        account_id=account,
        contact_id=contact,
        timestamp=stamp,
        message_id=message_id,
        type="system",
        subtype=key,
        data=msgspec.json.encode(value).decode(),
    )
    return Routed(event, f"h:{message_id}", live=True, authored=False)


__all__ = ["parse"]
