"""Commands → Graph API `/messages` requests, and Graph answers → one `SendResult`.

Two pure functions, no I/O (the caller owns the HTTP client, the token and `api_base`):

    build_request(command, phone_number_id, contact_id, last_inbound_id) -> ProviderRequest
        raises only InvalidCommand, naming the rule the command breaks
    classify(status, body) -> SendResult
        never raises; the one place where Graph error codes (PLATFORM §5.3) become verdicts

Limits checked here are WhatsApp's (PLATFORM §5.1), so a command that cannot succeed is
refused before it costs a throughput slot. Fields a type does not use are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from adapters import answers
from adapters.schema import (
    Command,
    InvalidCommand,
    ProviderRequest,
    SendResult,
    Verdict,
    telegram_only,
)
from adapters.whatsapp import _rich

TEXT_MAX: Final = 4096
CAPTION_MAX: Final = 1024
INTERACTIVE_BODY_MAX: Final = 1024
BUTTONS_MAX: Final = 3
BUTTON_TITLE_MAX: Final = 20
BUTTON_ID_MAX: Final = 256
CALLBACK_DATA_MAX: Final = 512
"""`biz_opaque_callback_data` limit; the command id travels there and comes back in statuses."""
DETAIL_MAX: Final = 300

_CAPTIONED: Final = frozenset({"image", "video", "document"})
_MARK_READ: Final = frozenset({"typing", "read"})
_NO_CONTEXT: Final = frozenset({"reaction"})  # reply_to is the reaction's target instead

# --- build_request ---------------------------------------------------------------------------


def build_request(
    command: Command, phone_number_id: str, contact_id: str, last_inbound_id: str | None
) -> ProviderRequest:
    """The request for one command. `last_inbound_id` stands in for `reply_to` on typing/read."""
    if refused := telegram_only(command):
        raise InvalidCommand(refused)
    path = f"/{phone_number_id}/messages"
    if command.type in _MARK_READ:
        return ProviderRequest(path, _mark_read(command, last_inbound_id))
    return ProviderRequest(path, _message(command, contact_id))


def _mark_read(command: Command, last_inbound_id: str | None) -> dict[str, Any]:
    target = command.reply_to or last_inbound_id
    if not target:
        raise InvalidCommand(f"{command.type}: no message to mark read (reply_to is not set)")
    body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": target}
    if command.type == "typing":
        body["typing_indicator"] = {"type": "text"}
    return body


def _message(command: Command, contact_id: str) -> dict[str, Any]:
    build = _BUILDERS.get(command.type)
    if build is None:
        raise InvalidCommand(_unsendable(command.type))
    if len(command.command_id) > CALLBACK_DATA_MAX:
        raise InvalidCommand(f"command_id is longer than {CALLBACK_DATA_MAX} characters")
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    body.update(_recipient(contact_id))
    kind = _rich.GRAPH_TYPES.get(command.type, command.type)
    body.update(type=kind)
    body[kind] = build(command)
    if command.reply_to and command.type not in _NO_CONTEXT:
        body["context"] = {"message_id": command.reply_to}
    body["biz_opaque_callback_data"] = command.command_id
    return body


def _unsendable(kind: str) -> str:
    if kind in ("handoff", "handback"):
        return f"{kind} is a control command: it sends nothing to WhatsApp"
    return f"unknown command type {kind!r}"


def _recipient(contact_id: str) -> dict[str, str]:
    """A wa_id is sent as E.164 with `+` (else Meta assumes the business's country)."""
    if contact_id.isascii() and contact_id.isdigit():
        return {"to": "+" + contact_id}
    if "." in contact_id and contact_id.strip() == contact_id:
        return {"recipient": contact_id}  # a business-scoped user id (BSUID), e.g. BR.8812345
    raise InvalidCommand(f"contact_id {contact_id!r} is neither a wa_id nor a BSUID")


def _text(command: Command) -> dict[str, Any]:
    body = _required_text(command, TEXT_MAX)
    return {"body": body, "preview_url": False}


def _required_text(command: Command, limit: int) -> str:
    text = command.text
    if text is None or not text.strip():
        raise InvalidCommand(f"{command.type}: text is required and must not be blank")
    if len(text) > limit:
        raise InvalidCommand(f"{command.type}: text is longer than {limit} characters")
    return text


def _template(command: Command) -> dict[str, Any]:
    t = command.template
    if t is None:
        raise InvalidCommand("template: the template object is required")
    if not t.name or not t.language:
        raise InvalidCommand("template: name and language are required")
    out: dict[str, Any] = {"name": t.name, "language": {"code": t.language}}
    if t.components:
        out["components"] = list(t.components)
    return out


def _media(command: Command) -> dict[str, Any]:
    m = command.media
    if m is None or bool(m.url) == bool(m.id):
        raise InvalidCommand(f"{command.type}: media needs exactly one of url or id")
    out: dict[str, Any] = {"link": m.url} if m.url else {"id": m.id}
    if command.text and command.type in _CAPTIONED:
        if len(command.text) > CAPTION_MAX:
            raise InvalidCommand(f"{command.type}: caption is longer than {CAPTION_MAX} characters")
        out["caption"] = command.text
    if m.filename and command.type == "document":
        out["filename"] = m.filename
    return out


def _location(command: Command) -> dict[str, Any]:
    loc = command.location
    if loc is None:
        raise InvalidCommand("location: the location object is required")
    _check_coordinates(loc.latitude, loc.longitude)
    out: dict[str, Any] = {"latitude": loc.latitude, "longitude": loc.longitude}
    for key, value in (("name", loc.name), ("address", loc.address)):
        if value is not None:
            out[key] = value
    return out


def _check_coordinates(latitude: float, longitude: float) -> None:
    """Raise InvalidCommand unless both are finite and on the globe."""
    if not (math.isfinite(latitude) and -90 <= latitude <= 90):
        raise InvalidCommand("location: latitude must be between -90 and 90")
    if not (math.isfinite(longitude) and -180 <= longitude <= 180):
        raise InvalidCommand("location: longitude must be between -180 and 180")


def _interactive(command: Command) -> dict[str, Any]:
    buttons = command.buttons or []
    if buttons and all(b.url is not None for b in buttons):
        return _rich.cta_url(command, buttons)  # link buttons alone: a CTA URL message
    body = _required_text(command, INTERACTIVE_BODY_MAX)
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise InvalidCommand(f"interactive: needs 1 to {BUTTONS_MAX} buttons, got {len(buttons)}")
    for b in buttons:
        if not 1 <= len(b.title) <= BUTTON_TITLE_MAX:
            raise InvalidCommand(f"interactive: button title must be 1-{BUTTON_TITLE_MAX} chars")
        if not 1 <= len(b.id) <= BUTTON_ID_MAX:
            raise InvalidCommand(f"interactive: button id must be 1-{BUTTON_ID_MAX} characters")
    if len({b.id for b in buttons}) != len(buttons):
        raise InvalidCommand("interactive: button ids must be unique")
    replies = [{"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in buttons]
    return {"type": "button", "body": {"text": body}, "action": {"buttons": replies}}


def _reaction(command: Command) -> dict[str, Any]:
    if not command.reply_to:
        raise InvalidCommand("reaction: reply_to (the message to react to) is required")
    return {"message_id": command.reply_to, "emoji": command.text or ""}


_BUILDERS: Final[dict[str, Callable[[Command], Any]]] = {
    "text": _text,
    "template": _template,
    "image": _media,
    "video": _media,
    "document": _media,
    "audio": _media,
    "location": _location,
    "interactive": _interactive,
    "reaction": _reaction,
    "list": _rich.list_message,
    "location_request": _rich.location_request,
    "contacts": _rich.contacts,
    "sticker": _rich.sticker,
}

# --- classify --------------------------------------------------------------------------------

# Every code PLATFORM §5.3 lists has a class here (tests/adapters/test_whatsapp_send.py has a
# row for each); a code listed nowhere is `failed`. The same table classifies the errors of
# failed status webhooks (`verdict_for_code`), so a code means the same whether Meta says it
# in its answer or later in a status.
_RETRY: Final = frozenset(
    {1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131057, 133004, 2494100, 134101}
)
"""Temporary: server trouble, throughput, maintenance (131057 and 2494100 "account in
maintenance mode"), a template still syncing (134101: up to 10 minutes, Meta says to try
again in a few)."""
_HALT: Final = frozenset({0, 3, 10, 190, 368, 131005, 131031, 131042, 131045, *range(200, 300)})
"""The token, a permission (131005 "access denied"), the account (locked, payment,
certificate): nothing the number sends can succeed until an operator fixes it."""
_FAILED: Final = frozenset(
    {
        100, 130403, 130472, 131008, 131009, 131021, 131037, 131051, 131052, 131053,
        131062, 131063, 131064, 133010, 135000, *range(132000, 132017),
    }
)  # fmt: skip
"""Permanent for this message only: the payload, the template, the media, a marketing
experiment (130472: that message only), a code nobody could confirm (130403)."""
_SPECIAL: Final[dict[int, Verdict]] = {
    131056: "retry_recipient",  # pair rate: only this recipient backs off
    131050: "opted_out",  # stopped marketing messages: marketing templates refused
    130497: "country_blocked",  # this (number, country) pair is restricted
    131049: "held",  # per-user marketing cap: no marketing template for a while (24 h)
    131026: "undeliverable",  # not on WhatsApp, old app, terms, blocked: hold, do not loop
    131047: "window_closed",  # re-engagement: only templates until the contact writes
}
TITLE_MAX: Final = 500
TRACE_MAX: Final = 100


def classify(status: int, body: bytes) -> SendResult:
    """Turn one Graph answer (HTTP status and raw body) into a verdict. Never raises."""
    doc = answers.decode(body)
    match doc:
        case {"error": {"code": int(code)} as error} if answers.is_int(code):
            return _failure(verdict_for_code(code), code, error)
        case {"messages": [{"id": str(message_id)}, *_]} if answers.ok(status) and message_id:
            return SendResult(verdict="sent", message_id=message_id)
        case {"success": True} if answers.ok(status):
            return SendResult(verdict="sent")
        case {"error": dict(error)}:
            return _failure(_by_status(status), None, error)
    return SendResult(verdict=_by_status(status), detail=f"HTTP {status}: not a Graph API answer")


def verdict_for_code(code: int) -> Verdict:
    """The verdict for one Graph `error.code`, in an answer or in a failed status webhook."""
    if code in _RETRY:
        return "retry"
    if code in _HALT:
        return "halt"
    if code in _FAILED:
        return "failed"
    return _SPECIAL.get(code, "failed")


def _failure(verdict: Verdict, code: int | None, error: dict[str, Any]) -> SendResult:
    """A Graph error answer, with what the delivery quotes for Meta support: `message`,
    `error_data.details`, `fbtrace_id` (each a string or null, cut to size)."""
    return SendResult(
        verdict=verdict,
        provider_code=code,
        detail=_detail(error),
        provider_title=_clip(error.get("message"), TITLE_MAX),
        provider_detail=_details(error.get("error_data")),
        fbtrace_id=_clip(error.get("fbtrace_id"), TRACE_MAX),
    )


def _details(error_data: object) -> str | None:
    match error_data:
        case {"details": str(details)}:
            return _clip(details, TITLE_MAX)
    return None


def _clip(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _by_status(status: int) -> Verdict:
    if status == 429 or 500 <= status < 600:
        return "retry"
    if status in (401, 403):
        return "halt"
    return "failed"


def _detail(error: dict[str, Any]) -> str | None:
    """`error.message`, plus `error_data.details` when present, cut to DETAIL_MAX."""
    parts = [error.get("message")]
    match error.get("error_data"):
        case {"details": str(details)}:
            parts.append(details)
    text = ": ".join(p for p in parts if isinstance(p, str) and p)
    return text[:DETAIL_MAX] or None
