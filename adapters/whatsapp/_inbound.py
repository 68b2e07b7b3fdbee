"""WhatsApp webhook body → common events (docs/mapping.md is the table this follows).

The usual body (messages, statuses, echoes, state sync, all well formed) is decoded whole, in
one typed msgspec decode. Any other body, and any body with something malformed in it, is
walked entry → change → item instead, each level decoded on its own from `msgspec.Raw`, so a
malformed item becomes one `BadItem` with its exact bytes and every other item of the batch
is still published. Both ways give the same events: the whole decode accepts only what the
walk would accept without a bad item, and both build events with the same functions. A body
nested too deep for the decoder is walked as a copy with its parts deeper than `MAX_NESTING`
cut out (`_depth.cut_deep`): the items that held such a part are dead-lettered, the others
published. Only a body that is not an envelope at all (or too deep outside any entry) raises
`ParseError`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Final

import msgspec

from adapters.meta import check_object
from adapters.schema import (
    EFFECT_VERDICTS,
    STATUS_RANK,
    AccountEvent,
    AnyEvent,
    BadItem,
    ContactsEvent,
    EchoEvent,
    HistoryEvent,
    Location,
    Media,
    MessageEvent,
    Parsed,
    ParseError,
    ProviderError,
    Reply,
    Routed,
    SharedContact,
    StatusEvent,
    Verdict,
)

from . import _payload as p
from ._depth import cut_outside, decode_cut
from ._outbound import TITLE_MAX, verdict_for_code

CHANNEL: Final = "whatsapp"
HISTORY_DECLINED_CODE = 2593109
_OBJECT: Final = "whatsapp_business_account"
_DISCONNECTING = frozenset(
    {"PARTNER_REMOVED", "DISABLED_UPDATE", "ACCOUNT_DELETED", "ACCOUNT_OFFBOARDED"}
)
_ONBOARDED: Final = "PARTNER_ADDED"
_RECONNECTING = frozenset({_ONBOARDED, "ACCOUNT_RECONNECTED"})
_BAN_STATES: dict[str, bool | None] = {
    "DISABLE": False,
    "SCHEDULE_FOR_DISABLE": None,
    "REINSTATE": True,
}
"""`DISABLED_UPDATE` by `ban_info.waba_ban_state`: a ban only scheduled changes nothing yet,
a reinstated account sends again; a missing or unknown state disconnects, as the event's name
says (the conservative reading: a send to a banned number fails anyway)."""
MAX_NESTING: Final = 64
"""Levels of JSON nesting kept when a body is too deep for the decoder; real webhooks use
about 12. Deeper items are dead-lettered, the rest of the body is published."""
MAX_FUTURE_SECONDS: Final = 86400
"""A provider timestamp more than this after receipt (or now, if later) is no plausible time:
the item is dead-lettered (a far-future time would hold a 24-hour window open for good)."""
_BSUID = re.compile(r"[A-Z]{2}(?:\.ENT)?\.[A-Za-z0-9]{1,128}")
"""Business-scoped user id: ISO country, optional `ENT` (parent id), up to 128 alphanumerics."""
# msgspec raises RecursionError for deeply nested JSON (even where it only skips a value);
# UnicodeDecodeError (a ValueError) for invalid UTF-8 in a string.
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError)


class _ItemError(ValueError):
    """An item the payload structs accept but the mapping cannot use (no id, bad time); its
    `reason` names the dead letter."""

    def __init__(self, detail: str, reason: str = "malformed_item") -> None:
        super().__init__(detail)
        self.reason = reason


_TOO_DEEP: Final = f"nested deeper than {MAX_NESTING} levels"


class _Walk(Exception):
    """The body is not one the whole decode handles: walk it item by item."""


def parse(body: bytes, received_at: int) -> Parsed:
    """Decode one webhook body. Raises only `ParseError`, for a body that is no envelope."""
    try:
        return _parse_whole(body, received_at)
    except (_Walk, *_DECODE_ERRORS):
        return _parse_walk(body, received_at)


def _parse_whole(body: bytes, received_at: int) -> Parsed:
    """The usual body in one decode; raises (`_Walk` or a decode error) for anything else,
    having built nothing that outlives the call."""
    envelope: p.WholeEnvelope = p.WHOLE_ENVELOPE.decode(body)
    if envelope.object != _OBJECT:
        check_object("whatsapp", envelope.object)
    events: list[Routed] = []
    append = events.append
    for entry in envelope.entry:
        for change in entry.changes:
            value = change.value
            if value.metadata is None:
                raise _Walk  # a bad item: the walk dead-letters this change
            ctx = _Ctx(value.metadata, value.contacts, received_at)
            # The walk's order: messages, statuses, echoes, state sync.
            for m in value.messages:
                append(_live_event(ctx, m))
            for s in value.statuses:
                append(_status_event(ctx, s))
            for m in value.message_echoes:
                append(_echo_event(ctx, m))
            for item in value.state_sync:
                append(_state_sync_event(ctx, item))
    return Parsed(events)


class _Walked(Parsed):
    """The walk's result, plus the marker of the parts cut out of a too deep body."""

    deep: bytes | None = None


def _parse_walk(body: bytes, received_at: int) -> Parsed:
    """Entry → change → item, each decoded on its own: one malformed item costs only itself."""
    try:
        envelope = p.ENVELOPE.decode(body)
    except RecursionError:
        return _parse_cut(body, received_at)
    except _DECODE_ERRORS as exc:
        raise ParseError(f"not a WhatsApp webhook envelope: {exc}") from None
    return _walk(_Walked(), envelope, received_at)


def _parse_cut(body: bytes, received_at: int) -> Parsed:
    """A body too deep for the decoder: walk a copy with the too deep parts cut out, and
    dead-letter the items that held one (a cut outside every entry: the whole body)."""
    what = "WhatsApp webhook envelope"
    envelope, marker = decode_cut(body, MAX_NESTING, p.ENVELOPE.decode, what, _DECODE_ERRORS)
    return _walk(_Walked(deep=marker), envelope, received_at)


def _walk(out: _Walked, envelope: p.Envelope, received_at: int) -> Parsed:
    check_object("whatsapp", envelope.object)
    for i, raw in enumerate(envelope.entry):
        _guarded(out, raw, f"entry[{i}]", partial(_entry, out, f"entry[{i}]", received_at))
    return Parsed(out.events, out.bad)


def _guarded(
    out: Parsed, raw: msgspec.Raw, where: str, step: Callable[[msgspec.Raw], Routed | None]
) -> None:
    """Run one step on one item; a malformed item becomes a dead letter, not an exception."""
    try:
        routed = step(raw)
    except _DECODE_ERRORS as exc:
        reason = exc.reason if isinstance(exc, _ItemError) else "malformed_item"
        detail = _TOO_DEEP if isinstance(exc, RecursionError) else str(exc)
        out.bad.append(BadItem(reason, bytes(raw), f"{where}: {detail}"))
        return
    if routed is not None:
        out.events.append(routed)


def _entry(out: _Walked, where: str, received_at: int, raw: msgspec.Raw) -> None:
    entry = p.ENTRY.decode(raw)
    if cut_outside(out.deep, raw, entry.changes):
        raise _ItemError(_TOO_DEEP)
    for i, raw_change in enumerate(entry.changes):
        at = f"{where}.changes[{i}]"
        _guarded(out, raw_change, at, partial(_change, out, entry, at, received_at))


def _change(out: _Walked, entry: p.Entry, where: str, received_at: int, raw: msgspec.Raw) -> None:
    change = p.CHANGE.decode(raw)
    match change.field:
        case "messages" | "smb_message_echoes" | "history" | "smb_app_state_sync":
            value = p.MESSAGES_VALUE.decode(change.value)
            if cut_outside(out.deep, raw, _item_lists(value)):
                raise _ItemError(_TOO_DEEP)
            if value.metadata is None:
                raise _ItemError("value.metadata.phone_number_id is missing")
            ctx = _Ctx(value.metadata, value.contacts, received_at, out.deep)
            _messages_value(out, change.field, value, ctx, f"{where}.value", raw)
        case "account_update":
            _leaf(out.deep, raw)
            fields = p.OBJECT.decode(change.value)
            out.events.append(_account_update(entry, fields, received_at))
        case _:
            _leaf(out.deep, raw)
            fields = p.OBJECT.decode(change.value)
            out.events.append(_other_field(entry, change.field, fields, received_at))


def _item_lists(value: p.MessagesValue) -> Iterable[msgspec.Raw]:
    """The items of a value, each checked for cuts on its own."""
    for items in (
        value.messages,
        value.statuses,
        value.message_echoes,
        value.history,
        value.state_sync,
    ):
        yield from items


def _leaf(marker: bytes | None, raw: msgspec.Raw) -> None:
    """An item is dead-lettered whole when a part of it was too deep."""
    if marker is not None and marker in bytes(raw):
        raise _ItemError(_TOO_DEEP)


def _messages_value(
    out: Parsed, field: str, value: p.MessagesValue, ctx: _Ctx, where: str, raw: msgspec.Raw
) -> None:
    if field == "history":
        _history(out, value, ctx, where, raw)
        return
    items: list[tuple[str, list[msgspec.Raw], Callable[[_Ctx, msgspec.Raw], Routed]]] = [
        ("messages", value.messages, _live_message),
        ("statuses", value.statuses, _status),
        ("message_echoes", value.message_echoes, _echo),
        ("state_sync", value.state_sync, _state_sync),
    ]
    for name, raws, build in items:
        for i, item in enumerate(raws):
            _guarded(out, item, f"{where}.{name}[{i}]", partial(build, ctx))
    if value.errors:
        out.events.append(_errors_event(ctx, value.errors, raw))


class _Ctx:
    """What the items of one change share: the receiving number and the contacts block."""

    __slots__ = ("account_id", "business", "contacts", "deep", "latest", "received_at")

    def __init__(
        self,
        metadata: p.Metadata,
        contacts: list[p.Contact],
        received_at: int,
        deep: bytes | None = None,
    ) -> None:
        self.contacts = contacts
        self.account_id = metadata.phone_number_id
        self.business = metadata.display_phone_number.lstrip("+")
        self.received_at = received_at
        self.latest = received_at + MAX_FUTURE_SECONDS
        self.deep = deep
        """The marker of the parts cut out of a too deep body (`_parse_cut`), else None."""

    def contact(self, wa_id: str | None, user_id: str | None) -> p.Contact | None:
        contacts = self.contacts
        for c in contacts:
            if (wa_id and c.wa_id == wa_id) or (user_id and c.user_id == user_id):
                return c
        return contacts[0] if len(contacts) == 1 else None


def _timestamp(value: str | int, ctx: _Ctx) -> int:
    """Unix seconds, at most `MAX_FUTURE_SECONDS` after receipt (or now, if later)."""
    if type(value) is str:
        # At most 12 digits (year 33658): a 30-digit string is refused before int() sees it.
        seconds = int(value) if value.isdigit() and value.isascii() and len(value) <= 12 else -1
    else:
        seconds = value if type(value) is int else -1
    # Judged by receipt, or by now when later (a body parsed again later, a replay): the
    # clock is read only for a time past the first bound.
    if 0 <= seconds <= ctx.latest or 0 <= seconds <= int(time.time()) + MAX_FUTURE_SECONDS:
        return seconds
    raise _ItemError(f"timestamp {str(value)[:40]!r} is not plausible unix seconds")


def _check_message(message: p.Message) -> None:
    """What every message-like item needs: an id, and no group."""
    if not message.id:
        raise _ItemError("message id is missing")
    if message.group_id is not None:
        # Published as a 1:1 message, the assistant's answer would go privately to the
        # sender; the contract has no group conversations, so an operator gets it instead.
        raise _ItemError(
            f"message in WhatsApp group {message.group_id[:80]!r}: groups are not supported",
            "unsupported_group",
        )


def _contact_id(wa_id: str | None, user_id: str | None, role: str) -> str:
    """A contact id the contract allows: a wa_id (digits) or, without one, a BSUID."""
    if wa_id:
        if wa_id.isdigit() and wa_id.isascii() and len(wa_id) <= 20:
            return wa_id
        raise _ItemError(f"{role} {wa_id[:40]!r} is not a wa_id (digits)")
    if user_id:
        if _BSUID.fullmatch(user_id):
            return user_id
        raise _ItemError(f"{role} user id {user_id[:40]!r} is not a business-scoped user id")
    raise _ItemError(f"{role} is missing")


def _live_message(ctx: _Ctx, raw: msgspec.Raw) -> Routed:
    _leaf(ctx.deep, raw)
    return _live_event(ctx, p.MESSAGE.decode(raw))


def _live_event(ctx: _Ctx, m: p.Message) -> Routed:
    _check_message(m)
    contact = ctx.contact(m.from_, m.from_user_id)
    user_id = m.from_user_id or (contact.user_id if contact else None)
    wa_id = m.from_
    if not wa_id and not user_id and m.type == "system" and m.system is not None:
        wa_id, user_id = m.system.wa_id, m.system.user_id  # a number change names it here
    contact_id = _contact_id(wa_id, user_id, "sender (from)")
    event = MessageEvent(
        channel=CHANNEL,
        account_id=ctx.account_id,
        contact_id=contact_id,
        timestamp=_timestamp(m.timestamp, ctx),
        message_id=m.id,
        user_id=user_id,
        contact_name=contact.profile.name if contact and contact.profile else None,
        **_content(m),
    )
    return Routed(event, f"m:{m.id}", live=True, renamed_to=_new_number(m, contact_id))


_NUMBER_CHANGES = frozenset({"user_changed_number", "customer_changed_number"})


def _new_number(m: p.Message, contact_id: str | None) -> str | None:
    system = m.system
    if m.type != "system" or system is None or system.type not in _NUMBER_CHANGES:
        return None
    new = system.wa_id
    return new if new and new.isdigit() and new != contact_id else None


def _echo(ctx: _Ctx, raw: msgspec.Raw) -> Routed:
    _leaf(ctx.deep, raw)
    return _echo_event(ctx, p.MESSAGE.decode(raw))


def _echo_event(ctx: _Ctx, m: p.Message) -> Routed:
    _check_message(m)
    user_id = m.to_user_id
    event = EchoEvent(
        channel=CHANNEL,
        account_id=ctx.account_id,
        contact_id=_contact_id(m.to, user_id, "recipient (to)"),
        timestamp=_timestamp(m.timestamp, ctx),
        message_id=m.id,
        user_id=user_id,
        **_content(m),
    )
    return Routed(event, f"e:{m.id}", alive=True)  # the owner wrote from the Business app


def _content(m: p.Message) -> dict[str, Any]:
    """The type-dependent keys of a message-like event."""
    out: dict[str, Any] = {"errors": _errors(m.errors)}
    if m.context is not None and m.context.id:
        out["reply_to"] = m.context.id
    if m.referral is not None:
        out["referral"] = m.referral
    if m.type == "edit" and m.edit is not None and m.edit.message is not None:
        inner = _content(m.edit.message)
        inner.update(edited=True, original_message_id=m.edit.original_message_id)
        inner.setdefault("reply_to", out.get("reply_to"))
        return inner
    out.update(_typed(m))
    return out


def _typed(m: p.Message) -> dict[str, Any]:
    match m.type:
        case "text":
            return {"type": "text", "text": m.text.body if m.text else ""}
        case "image" | "video" | "document" | "sticker" | "audio" | "voice":
            return _media(m)
        case "location" if m.location is not None:
            loc = m.location
            return {
                "type": "location",
                "text": loc.name,
                "location": Location(loc.latitude, loc.longitude, loc.name, loc.address),
            }
        case "contacts" if m.contacts:
            return _shared_contacts(m.contacts)
        case "interactive" if m.interactive is not None:
            return _interactive(m.interactive)
        case "button" if m.button is not None:
            b = m.button
            return {
                "type": "interactive",
                "text": b.text,
                "data": b.payload,
                "subtype": "button",
                "reply": Reply(b.payload or "", b.text),
            }
        case "reaction" if m.reaction is not None:
            return {
                "type": "reaction",
                "text": m.reaction.emoji or "",
                "reply_to": m.reaction.message_id,
            }
        case "order" if m.order is not None:
            text = m.order.get("text")
            return {
                "type": "order",
                "text": text if isinstance(text, str) else None,
                "order": m.order,
            }
        case "system" if m.system is not None:
            return {"type": "system", "text": m.system.body, "subtype": m.system.type}
        case "revoke":
            original = m.revoke.original_message_id if m.revoke else None
            return {"type": "unsupported", "subtype": "revoke", "original_message_id": original}
        case "unsupported" | "unknown":
            kind = m.unsupported.type if m.unsupported else None
            return {"type": "unsupported", "subtype": kind}
        case other:
            return {"type": "unsupported", "subtype": other}


def _media(m: p.Message) -> dict[str, Any]:
    part: p.MediaPart | None = getattr(m, m.type)
    if part is None:
        return {"type": "unsupported", "subtype": m.type}
    kind = "voice" if m.type == "audio" and part.voice else m.type
    media = Media(part.id or part.link or "", part.mime_type, part.filename)
    return {"type": kind, "text": part.caption, "media": media}


def _shared_contacts(contacts: list[p.SharedContactPart]) -> dict[str, Any]:
    shared = [
        SharedContact(
            name=c.name.formatted_name if c.name else None,
            phones=[ph.phone for ph in c.phones if ph.phone],
            wa_ids=[ph.wa_id for ph in c.phones if ph.wa_id],
        )
        for c in contacts
    ]
    return {"type": "contacts", "text": shared[0].name, "contacts": shared}


def _interactive(i: p.Interactive) -> dict[str, Any]:
    picked = i.button_reply if i.type == "button_reply" else i.list_reply
    if i.type in ("button_reply", "list_reply") and picked is not None:
        return {
            "type": "interactive",
            "text": picked.title,
            "subtype": i.type,
            "reply": Reply(picked.id, picked.title),
        }
    if i.type == "nfm_reply" and i.nfm_reply is not None:
        nfm = i.nfm_reply
        return {
            "type": "interactive",
            "text": nfm.body,
            "subtype": "nfm_reply",
            "reply": Reply(nfm.name or "", nfm.body),
            "data": nfm.response_json,
        }
    return {"type": "interactive", "subtype": i.type or None}


def _errors(items: list[p.ErrorItem]) -> list[ProviderError]:
    return [ProviderError(e.code, e.title or e.message or "") for e in items]


def _status(ctx: _Ctx, raw: msgspec.Raw) -> Routed:
    _leaf(ctx.deep, raw)
    return _status_event(ctx, p.STATUS.decode(raw))


def _status_event(ctx: _Ctx, s: p.Status) -> Routed:
    if not s.id:
        raise _ItemError("status id is missing")
    rank = STATUS_RANK.get(s.status, 0)
    if not rank:
        # The contract's statuses only; anything else (the On-Premises `deleted`, `warning`)
        # is kept for an operator rather than handed to backends that cannot rank it.
        raise _ItemError(f"status {s.status[:40]!r} is not one of {_STATUSES}", "unknown_status")
    event = StatusEvent(
        channel=CHANNEL,
        account_id=ctx.account_id,
        contact_id=s.recipient_id or s.recipient_user_id,
        timestamp=_timestamp(s.timestamp, ctx),
        message_id=s.id,
        status=s.status,
        errors=_errors(s.errors),
        pricing=s.pricing,
        recipient_type=s.recipient_type,
        command_id=s.biz_opaque_callback_data,
    )
    if s.errors:
        event.provider_title, event.provider_detail = _failure_words(s.errors[0])
    return Routed(event, f"s:{s.id}", rank=rank, verdict=_failure_verdict(s))


def _failure_words(error: p.ErrorItem) -> tuple[str | None, str | None]:
    """An error's title (else its message) and its `error_data.details`."""
    details = error.error_data.get("details") if isinstance(error.error_data, dict) else None
    title = error.title or error.message
    return (
        title[:TITLE_MAX] if title else None,
        details[:TITLE_MAX] if isinstance(details, str) and details else None,
    )


def _failure_verdict(s: p.Status) -> Verdict | None:
    """A failed status's first error, classified as the same code in an answer would be; only
    verdicts that leave a mark matter (`EFFECT_VERDICTS`)."""
    if s.status != "failed" or not s.errors:
        return None
    verdict = verdict_for_code(s.errors[0].code)
    return verdict if verdict in EFFECT_VERDICTS else None


_STATUSES: Final = ", ".join(STATUS_RANK)


def _state_sync(ctx: _Ctx, raw: msgspec.Raw) -> Routed:
    _leaf(ctx.deep, raw)
    return _state_sync_event(ctx, p.STATE_SYNC.decode(raw))


def _state_sync_event(ctx: _Ctx, item: p.StateSync) -> Routed:
    if item.contact is None:
        raise _ItemError("state_sync item has no contact")
    phone = item.contact.phone_number.lstrip("+")
    stamp = item.metadata.timestamp if item.metadata else None
    event = ContactsEvent(
        channel=CHANNEL,
        account_id=ctx.account_id,
        contact_id=phone,
        timestamp=_timestamp(stamp, ctx) if stamp else ctx.received_at,
        action=item.action,
        contact_name=item.contact.full_name or item.contact.first_name,
    )
    return Routed(event, f"c:{phone}:{item.action}:{stamp}", alive=True)  # the app synced


def _history(out: Parsed, value: p.MessagesValue, ctx: _Ctx, where: str, raw: msgspec.Raw) -> None:
    progress: p.HistoryMeta | None = None
    for i, item_raw in enumerate(value.history):
        item = p.HISTORY_ITEM.decode(item_raw)
        if cut_outside(ctx.deep, item_raw, item.threads):
            raise _ItemError(f"history[{i}]: {_TOO_DEEP}")
        meta = item.metadata or p.HistoryMeta()
        if meta.progress is not None:
            progress = meta
        if any(e.get("code") == HISTORY_DECLINED_CODE for e in item.errors):
            out.events.append(_account(ctx, "HISTORY_DECLINED", {"errors": item.errors}, raw))
        for t, thread_raw in enumerate(item.threads):
            at = f"{where}.history[{i}].threads[{t}]"
            _guarded(out, thread_raw, at, partial(_history_thread, out, ctx, meta, at))
    for m, msg_raw in enumerate(value.messages):  # media that follows a placeholder
        at = f"{where}.messages[{m}]"
        _guarded(out, msg_raw, at, partial(_history_message, ctx, None, None))
    if progress is not None:
        detail = {
            "phase": progress.phase,
            "chunk_order": progress.chunk_order,
            "progress": progress.progress,
        }
        out.events.append(_account(ctx, "HISTORY_PROGRESS", detail, raw))


def _history_thread(
    out: Parsed, ctx: _Ctx, meta: p.HistoryMeta, where: str, raw: msgspec.Raw
) -> None:
    thread = p.THREAD.decode(raw)
    if cut_outside(ctx.deep, raw, thread.messages):
        raise _ItemError(_TOO_DEEP)
    for m, msg_raw in enumerate(thread.messages):
        at = f"{where}.messages[{m}]"
        _guarded(out, msg_raw, at, partial(_history_message, ctx, thread.id, meta))


def _history_message(
    ctx: _Ctx, thread_id: str | None, meta: p.HistoryMeta | None, raw: msgspec.Raw
) -> Routed:
    _leaf(ctx.deep, raw)
    m = p.MESSAGE.decode(raw)
    _check_message(m)
    from_me = (
        bool(m.from_me) or m.to is not None or (m.from_ is not None and m.from_ == ctx.business)
    )
    contact_id = thread_id or (m.to if from_me else m.from_) or m.from_user_id
    content = _content(m)
    if m.type == "media_placeholder":
        content.update(type="unsupported", subtype="media_placeholder")
    event = HistoryEvent(
        channel=CHANNEL,
        account_id=ctx.account_id,
        contact_id=contact_id,
        timestamp=_timestamp(m.timestamp, ctx),
        message_id=m.id,
        from_me=from_me,
        history_status=m.history_context.status if m.history_context else None,
        phase=meta.phase if meta else None,
        chunk_order=meta.chunk_order if meta else None,
        **content,
    )
    return Routed(event, f"h:{m.id}:{m.type}")


def _errors_event(ctx: _Ctx, errors: list[dict[str, Any]], raw: msgspec.Raw) -> Routed:
    return _account(ctx, "ERRORS", {"errors": errors}, raw)


def _account(ctx: _Ctx, name: str, detail: dict[str, Any], raw: msgspec.Raw) -> Routed:
    event = AccountEvent(
        channel=CHANNEL,
        account_id=ctx.account_id,
        contact_id=None,
        timestamp=ctx.received_at,
        event=name,
        detail=detail,
    )
    return Routed(event, f"a:{name}:{_digest(raw)}")


def _account_update(entry: p.Entry, fields: dict[str, Any], received_at: int) -> Routed:
    name = fields.pop("event", None)
    name = name if isinstance(name, str) else "ACCOUNT_UPDATE"
    connected = _connected(name, fields)
    event = AccountEvent(
        channel=CHANNEL,
        account_id=entry.id,
        contact_id=None,
        timestamp=entry.time or received_at,
        event=name,
        detail=fields,
        connected=connected,
    )
    # Onboarding (PARTNER_ADDED) starts the clock of the Business app's silence.
    alive = name == _ONBOARDED
    return Routed(event, f"a:{name}:{entry.time}:{_digest(fields)}", waba=entry.id, alive=alive)


def _connected(name: str, fields: dict[str, Any]) -> bool | None:
    """Whether the event disconnects the number (False), reconnects it (True), or neither."""
    if name == "DISABLED_UPDATE":
        ban = fields.get("ban_info")
        state = ban.get("waba_ban_state") if isinstance(ban, dict) else None
        return _BAN_STATES.get(state, False) if isinstance(state, str) else False
    return False if name in _DISCONNECTING else True if name in _RECONNECTING else None


def _other_field(entry: p.Entry, field: str, fields: dict[str, Any], received_at: int) -> Routed:
    name = fields.get("event")
    name = name if isinstance(name, str) else field.upper()
    metadata = fields.get("metadata")
    number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    event = AccountEvent(
        channel=CHANNEL,
        account_id=str(number or entry.id),
        contact_id=None,
        timestamp=entry.time or received_at,
        event=name,
        detail=fields,
    )
    dedup = f"a:{field}:{entry.time}:{_digest(fields)}"
    return Routed(event, dedup, waba=None if number else entry.id)


def _digest(value: msgspec.Raw | dict[str, Any]) -> str:
    data = bytes(value) if isinstance(value, msgspec.Raw) else msgspec.json.encode(value)
    return hashlib.blake2b(data, digest_size=10).hexdigest()


__all__ = ["AnyEvent", "parse"]
