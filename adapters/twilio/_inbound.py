"""Twilio WhatsApp webhook body → common events (docs/mapping.md, "WhatsApp through Twilio").

Twilio posts one flat form per webhook, never a batch: an inbound message, or a status
callback of a message the gateway sent. So a body is one event or none, and a body the
mapping cannot use is one dead letter: `ParseError` (`malformed_body`) for a body that is no
Twilio message (not a form, no `MessageSid`, a field that is not what Twilio sends), a
`BadItem` for a well-formed one the gateway does not serve (`unsupported_item`: not WhatsApp;
`unknown_status`).

The events are channel "whatsapp" with `provider: "twilio"` and follow the WhatsApp Cloud
parser (adapters/whatsapp/_inbound.py) wherever Twilio carries the same thing, so a backend
sees the same event whichever provider a number is on: the same types, the same dedup
identities (`m:<MessageSid>`, statuses `s:<MessageSid>` ranked by `STATUS_RANK`). Twilio
gives no time: `timestamp` is the receipt time.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from adapters.schema import (
    EFFECT_VERDICTS,
    STATUS_RANK,
    BadItem,
    Location,
    Media,
    MessageEvent,
    Parsed,
    ParseError,
    ProviderError,
    Reply,
    Routed,
    StatusEvent,
    Verdict,
)
from adapters.twilio._form import decode
from adapters.twilio._outbound import verdict_for

CHANNEL: Final = "whatsapp"
PROVIDER: Final = "twilio"
_PREFIX: Final = "whatsapp:"
_TEXT_MAX: Final = 500
"""Characters of Twilio's error text kept on a status."""
_SID_MAX: Final = 64
"""`MessageSid`: `SM`/`MM` + 32 hex digits today; any alphanumeric id up to this long is
taken."""
_BSUID = re.compile(r"[A-Z]{2}(?:\.ENT)?\.[A-Za-z0-9]{1,128}")
"""Business-scoped user id, as the WhatsApp parser takes it: ISO country, optional `ENT`
(parent id), up to 128 alphanumerics."""
_DECIMAL = re.compile(r"[+-]?[0-9]{1,4}(?:\.[0-9]{1,20})?")
_MEDIA_TYPES: Final = frozenset({"image", "video", "audio", "document", "sticker"})
_STATUSES: Final = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",  # CONTRACT §6.2: terminal, as failed
}
_UNPUBLISHED: Final = frozenset(
    {
        "queued",
        "accepted",
        "scheduled",
        "sending",
        "canceled",
        "receiving",
        "partially_delivered",
    }
)
"""No contract status says these (CONTRACT §6.2): `queued` to `sending` come before `sent`,
`canceled` instead of it (a scheduled send withdrawn), `receiving` is an inbound message's
and `partially_delivered` a message to several recipients'. They are answered, not kept."""
_REFERRAL: Final = "Referral"
_REFERRAL_SIGNS: Final = frozenset(
    {
        "ReferralSourceId",
        "ReferralSourceUrl",
        "ReferralCtwaClid",
        "ReferralSourceType",
        "ReferralHeadline",
        "ReferralBody",
        "ReferralMediaId",
        "ReferralMediaUrl",
    }
)
"""A referral is there when one of these is (not `ReferralNumMedia`, sent with every
message)."""
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def parse(body: bytes, received_at: int) -> Parsed:
    """Decode one webhook body. Raises only `ParseError`, for a body that is no Twilio message
    (or status callback) at all."""
    form = _Form(body)
    sid = form.get("MessageSid")
    if sid is None or not (sid.isascii() and sid.isalnum() and len(sid) <= _SID_MAX):
        raise ParseError(f"not a Twilio message webhook: MessageSid is {_shown(sid)}")
    status = form.get("MessageStatus")
    if status is None or "received" in (status, form.get("SmsStatus")):
        return _message(form, body, sid, received_at)
    return _status(form, body, sid, status, received_at)


class _Form:
    """The parameters of one body, by name. A name Twilio sends once must not come twice with
    different values (which one would be Twilio's?): reading such a name raises."""

    __slots__ = ("fields", "get")

    fields: dict[str, str]
    get: Callable[[str], str | None]
    """The value, or None when absent: the dict's own `get` unless some name is ambiguous."""

    def __init__(self, body: bytes) -> None:
        form = decode(body)
        if not form.utf8:
            raise ParseError("not a Twilio form body: a parameter is not UTF-8")
        self.fields = fields = form.fields
        self.get = fields.get
        if form.repeated is not None:  # a name came more than once
            counts = Counter(name for name, _ in form.repeated)
            ambiguous = {
                name: counts[name] for name, value in form.repeated if value != fields[name]
            }
            if ambiguous:
                self.get = functools.partial(_checked, fields, ambiguous)

    def text(self, name: str) -> str | None:
        """The value, or None when absent or empty (Twilio sends `Body=` for no caption)."""
        return self.get(name) or None


def _checked(fields: dict[str, str], ambiguous: dict[str, int], name: str) -> str | None:
    if name in ambiguous:
        raise ParseError(f"{name} is given {ambiguous[name]} times, with different values")
    return fields.get(name)


def _digits(value: str, most: int) -> bool:
    """1 to `most` ASCII digits (`str.isdigit` alone takes other scripts' digits too)."""
    return value.isascii() and value.isdigit() and len(value) <= most


def _shown(value: str | None) -> str:
    return "missing" if value is None else f"{value[:40]!r}"


def _address(form: _Form, name: str) -> str | None:
    """The WhatsApp address in `name` without its `whatsapp:` prefix; None when the parameter
    has no such prefix (an SMS, or another channel's message, sent to this path)."""
    value = form.get(name)
    if value is None:
        raise ParseError(f"{name} is missing")
    return value[len(_PREFIX) :] if value.startswith(_PREFIX) else None


def _not_whatsapp(body: bytes, name: str, form: _Form) -> Parsed:
    """A message of a channel the gateway does not serve here: kept for an operator."""
    detail = f"{name} {_shown(form.get(name))} is no WhatsApp address: not a WhatsApp message"
    return Parsed(bad=[BadItem("unsupported_item", body, detail)])


def _number(address: str, name: str) -> str:
    """`+<digits>` → the digits (an account id or a contact's wa_id)."""
    digits = address[1:] if address.startswith("+") else ""
    if not _digits(digits, 20):
        raise ParseError(f"{name} {address[:40]!r} is not whatsapp:+<digits>")
    return digits


def _party(address: str, name: str) -> tuple[str, str | None]:
    """(contact id, BSUID): a number's digits, or a business-scoped user id where the
    number is hidden (`whatsapp:<BSUID>`; UNCERTAIN: seen in third-party code and a captured
    payload only, so a sender of any other shape is refused rather than guessed at)."""
    if address[:1] != "+" and _BSUID.fullmatch(address):
        return address, address
    return _number(address, name), None


def _message(form: _Form, body: bytes, sid: str, received_at: int) -> Parsed:
    account = _address(form, "To")
    sender = _address(form, "From")
    if account is None:
        return _not_whatsapp(body, "To", form)
    if sender is None:
        return _not_whatsapp(body, "From", form)
    contact_id, user_id = _party(sender, "From")
    get = form.get  # `get(name) or None` is `form.text(name)`, written out on this path
    wa_id = get("WaId") or None
    if wa_id is not None:
        if not _digits(wa_id, 20):
            raise ParseError(f"WaId {wa_id[:40]!r} is not a wa_id (digits)")
        contact_id = wa_id
    event = MessageEvent(
        channel=CHANNEL,
        provider=PROVIDER,
        account_id=_number(account, "To"),
        contact_id=contact_id,
        timestamp=received_at,
        message_id=sid,
        user_id=user_id or _external_user_id(form),
        contact_name=get("ProfileName") or None,
        reply_to=get("OriginalRepliedMessageSid") or None,
        referral=_referral(form),
        **_content(form),
    )
    return Parsed([Routed(event, f"m:{sid}", live=True)])


def _external_user_id(form: _Form) -> str | None:
    """The sender's BSUID beside its number (`ExternalUserId`, UNCERTAIN as `_party` says):
    kept as `user_id`, so the gateway knows the number if it is hidden later. One of another
    shape is ignored: the message stands on its number."""
    if "ExternalUserId" not in form.fields:
        return None
    value = form.text("ExternalUserId")
    value = value.removeprefix(_PREFIX) if value is not None else None
    return value if value is not None and _BSUID.fullmatch(value) else None


def _content(form: _Form) -> dict[str, Any]:
    """The type-dependent keys, by what the message carries: a tapped button or list row, a
    location, media, text; an unknown `MessageType` is `unsupported`. (`get(name) or None`
    is `form.text(name)`, written out on this path of every message.)"""
    get = form.get
    kind = get("MessageType") or None
    body = get("Body") or ""
    payload = get("ButtonPayload") or None
    if kind == "button" or payload or get("ButtonText"):
        # A template quick reply, as WhatsApp's `button`: the payload is the id.
        title = get("ButtonText") or body
        return {
            "type": "interactive",
            "text": title,
            "data": payload,
            "subtype": "button",
            "reply": Reply(payload or "", title),
        }
    if get("ListId"):
        # A list-picker row (UNCERTAIN: `ListId` is what integrations read; Twilio's table
        # names no list parameter). The row's title is the message body.
        title = get("ListTitle") or body
        reply = Reply(get("ListId") or "", title)
        return {"type": "interactive", "text": title, "subtype": "list_reply", "reply": reply}
    if get("Latitude") or get("Longitude"):
        return _location(form)
    media = _media(form) if get("NumMedia") != "0" else []
    if media and (kind is None or kind == "text" or kind in _MEDIA_TYPES):
        first = media[0]
        return {
            "type": kind if kind in _MEDIA_TYPES else _media_type(first.mime_type),
            "text": body or None,
            "media": first,
            "attachments": media if len(media) > 1 else None,
        }
    if kind is None or kind == "text":
        return {"type": "text", "text": body}
    # Kept with what it has, so a backend can still show it (a Twilio type the mapping does
    # not know, e.g. a shared contact or a reaction, if Twilio starts posting them).
    return {
        "type": "unsupported",
        "subtype": kind,
        "text": body or None,
        "media": media[0] if media else None,
        "attachments": media if len(media) > 1 else None,
    }


def _location(form: _Form) -> dict[str, Any]:
    label = form.text("Label")
    where = Location(
        _coordinate(form, "Latitude", 90), _coordinate(form, "Longitude", 180), label,
        form.text("Address"),
    )  # fmt: skip
    return {"type": "location", "text": label, "location": where}


def _coordinate(form: _Form, name: str, bound: int) -> float:
    value = form.get(name) or ""
    degrees = float(value) if _DECIMAL.fullmatch(value) else math.nan
    if not -bound <= degrees <= bound:  # NaN fails too
        raise ParseError(f"{name} {value[:40]!r} is not a coordinate")
    return degrees


def _media(form: _Form) -> list[Media]:
    """`MediaUrl{N}` / `MediaContentType{N}` for N below `NumMedia` (WhatsApp sends one)."""
    count = form.text("NumMedia") or "0"
    if not _digits(count, 3):
        raise ParseError(f"NumMedia {count[:40]!r} is not a count")
    media = []
    for i in range(int(count)):
        url = form.text(f"MediaUrl{i}")
        if url is None:
            raise ParseError(f"NumMedia is {count} but MediaUrl{i} is missing")
        media.append(Media(None, form.text(f"MediaContentType{i}"), None, url))
    return media


def _media_type(mime_type: str | None) -> str:
    """A type from the content type, where `MessageType` does not say: `audio/ogg` voice notes
    are `audio`, as the WhatsApp parser makes them without its `voice` flag, which Twilio
    does not pass on."""
    major = (mime_type or "").partition("/")[0].lower()
    return major if major in ("image", "audio", "video") else "document"


def _referral(form: _Form) -> dict[str, str] | None:
    """The `Referral*` parameters of a Click-to-WhatsApp ad or link, keyed as Meta's
    `referral` (`ReferralSourceUrl` → `source_url`, `ReferralCtwaClid` → `ctwa_clid`, and so
    on for any Twilio adds). Twilio sends `ReferralNumMedia=0` with every message: that alone
    is no referral."""
    if _REFERRAL_SIGNS.isdisjoint(form.fields) or not any(
        form.text(name) for name in _REFERRAL_SIGNS.intersection(form.fields)
    ):
        return None
    found = {}
    for name in form.fields:
        if name.startswith(_REFERRAL) and len(name) > len(_REFERRAL) and (value := form.get(name)):
            found[_CAMEL.sub("_", name[len(_REFERRAL) :]).lower()] = value
    return found


def _status(form: _Form, body: bytes, sid: str, status: str, received_at: int) -> Parsed:
    """A status callback of one of the gateway's sends: the sender is the business."""
    if status in _UNPUBLISHED:
        return Parsed()
    mapped = _STATUSES.get(status)
    if mapped is None:
        detail = f"MessageStatus {status[:40]!r} is not one Twilio documents"
        return Parsed(bad=[BadItem("unknown_status", body, detail)])
    account = _address(form, "From")
    recipient = _address(form, "To")
    if account is None:
        return _not_whatsapp(body, "From", form)
    if recipient is None:
        return _not_whatsapp(body, "To", form)
    errors = _errors(form)
    event = StatusEvent(
        channel=CHANNEL,
        provider=PROVIDER,
        account_id=_number(account, "From"),
        contact_id=_party(recipient, "To")[0],
        timestamp=received_at,
        message_id=sid,
        status=mapped,
        errors=errors,
        provider_title=_error_text(form) if errors else None,
    )
    verdict = _failure_verdict(mapped, errors)
    return Parsed([Routed(event, f"s:{sid}", rank=STATUS_RANK[mapped], verdict=verdict)])


def _errors(form: _Form) -> list[ProviderError]:
    code = form.text("ErrorCode")
    if code is None:
        return []
    if not _digits(code, 9):
        raise ParseError(f"ErrorCode {code[:40]!r} is not a number")
    return [ProviderError(int(code), _error_text(form) or f"Twilio error {code}")]


def _error_text(form: _Form) -> str | None:
    """`ChannelStatusMessage` is the channel's (Meta's) text; `ErrorMessage` appears in some
    integrations only (UNCERTAIN), so it is read second."""
    text = form.text("ChannelStatusMessage") or form.text("ErrorMessage")
    return text[:_TEXT_MAX] if text else None


def _failure_verdict(status: str, errors: list[ProviderError]) -> Verdict | None:
    """A failed (or undelivered) callback's error code, classified as the same code in an
    answer of the Messages API would be (`verdict_for`); only verdicts that leave a mark."""
    if status != "failed" or not errors:
        return None
    verdict = verdict_for(errors[0].code)
    return verdict if verdict in EFFECT_VERDICTS else None


__all__ = ["parse"]
