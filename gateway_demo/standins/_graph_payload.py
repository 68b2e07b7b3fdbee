"""Body checks for `POST /<PHONE_NUMBER_ID>/messages`, worded the way Graph words them.

Faithful: the checks a gateway bug is likely to trip, with Graph's own message texts where
copies of real answers exist: "(#100) The parameter messaging_product is required.",
"(#100) The parameter text['body'] is required.", "(#100) Param type must be one of {...} -
got \"x\".", "(#100) Param text must be a JSON object.". Those come without `error_data`, as
in the real answers. `type` defaults to "text" when absent, as on the real endpoint.

Simplified: only the structure is checked (required keys, types, text ≤ 4096 characters; the
`interactive` limits of reply buttons, lists, CTA URL buttons and location requests and the
`contacts` checks are `_graph_interactive`'s); media links are not fetched, template names and
media IDs are not looked up, and the wording of the less common checks (media without `id` or
`link`, button limits, `to` without digits) is a paraphrase.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeGuard

from gateway_demo.standins._graph_interactive import Problem, check_contacts, check_interactive

MESSAGE_TYPES = frozenset(
    {
        "audio",
        "contacts",
        "document",
        "image",
        "interactive",
        "location",
        "reaction",
        "sticker",
        "template",
        "text",
        "video",
    }
)
MEDIA_TYPES = frozenset({"audio", "document", "image", "sticker", "video"})
TEXT_MAX = 4096

Kind = Literal["message", "status", "invalid"]


def kind_of(body: Any) -> Kind:
    """A message send, a status update (read / typing), or neither."""
    if not isinstance(body, dict):
        return "invalid"
    if "status" in body:
        return "status"
    return "message" if ("to" in body or "recipient" in body) else "invalid"


def recipient_of(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    value = body.get("to", body.get("recipient"))
    return value if isinstance(value, str) else None


def validate(body: Any) -> Problem | None:
    """None if Graph would accept the body, else the problem it would answer with."""
    if not isinstance(body, dict) or "messaging_product" not in body:
        return Problem("(#100) The parameter messaging_product is required.")
    if body["messaging_product"] != "whatsapp":
        got = body["messaging_product"]
        return Problem(f'(#100) Param messaging_product must be one of {{WHATSAPP}} - got "{got}".')
    if "status" in body:
        return _check_status(body)
    return _check_message(body)


def _check_status(body: dict[str, Any]) -> Problem | None:
    if body["status"] != "read":
        return Problem(f'(#100) Param status must be one of {{READ}} - got "{body["status"]}".')
    if not _text(body.get("message_id")):
        return Problem("(#100) The parameter message_id is required.")
    typing = body.get("typing_indicator")
    if typing is not None and (not isinstance(typing, dict) or typing.get("type") != "text"):
        return Problem("(#100) Invalid parameter", "typing_indicator['type'] must be \"text\".")
    return None


def _check_message(body: dict[str, Any]) -> Problem | None:
    if "to" not in body and "recipient" not in body:
        return Problem("(#100) The parameter to is required.")
    problem = _check_recipient(body)
    if problem:
        return problem
    msg_type = body.get("type", "text")
    if msg_type not in MESSAGE_TYPES:
        allowed = ", ".join(sorted(t.upper() for t in MESSAGE_TYPES))
        return Problem(f'(#100) Param type must be one of {{{allowed}}} - got "{msg_type}".')
    return _check_content(msg_type, body.get(msg_type))


def _check_recipient(body: dict[str, Any]) -> Problem | None:
    if "to" in body:
        to = body["to"]
        if not isinstance(to, str) or not any(c.isdigit() for c in to):
            return Problem(
                "(#100) Invalid parameter", f"Invalid WhatsApp ID or phone number: {to!r}"
            )
        return None
    if not _text(body["recipient"]):
        return Problem("(#100) The parameter recipient is required.")
    return None


def _check_content(msg_type: str, content: Any) -> Problem | None:
    if msg_type == "contacts":
        return check_contacts(content)
    if content is None:
        name = "text['body']" if msg_type == "text" else msg_type
        return Problem(f"(#100) The parameter {name} is required.")
    if not isinstance(content, dict):
        return Problem(f"(#100) Param {msg_type} must be a JSON object.")
    check = _MEDIA_CHECK if msg_type in MEDIA_TYPES else _CHECKS.get(msg_type)
    return check(content) if check else None


def _check_text(text: dict[str, Any]) -> Problem | None:
    body = text.get("body")
    if not _text(body):
        return Problem("(#100) The parameter text['body'] is required.")
    if len(body) > TEXT_MAX:
        return Problem(f"(#100) Param text['body'] must be at most {TEXT_MAX} characters long.")
    return None


def _check_template(template: dict[str, Any]) -> Problem | None:
    if not _text(template.get("name")):
        return Problem("(#100) The parameter template['name'] is required.")
    language = template.get("language")
    if not isinstance(language, dict) or not _text(language.get("code")):
        return Problem("(#100) The parameter template['language']['code'] is required.")
    return None


def _check_media(media: dict[str, Any]) -> Problem | None:
    if _text(media.get("id")) or _text(media.get("link")):
        return None
    return Problem("(#100) Invalid parameter", "Media must be given by either 'id' or 'link'.")


def _check_location(location: dict[str, Any]) -> Problem | None:
    for key in ("latitude", "longitude"):
        if location.get(key) is None:
            return Problem(f"(#100) The parameter location['{key}'] is required.")
    return None


def _check_reaction(reaction: dict[str, Any]) -> Problem | None:
    if not _text(reaction.get("message_id")):
        return Problem("(#100) The parameter reaction['message_id'] is required.")
    return None


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


_MEDIA_CHECK = _check_media
_CHECKS: dict[str, Callable[[dict[str, Any]], Problem | None]] = {
    "text": _check_text,
    "template": _check_template,
    "location": _check_location,
    "reaction": _check_reaction,
    "interactive": check_interactive,
}
