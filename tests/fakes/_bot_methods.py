"""The Bot API methods the fake serves: parameter checks and result objects.

Faithful: method names are case-insensitive; `chat_id` may be an integer or a numeric string
(form posts); the descriptions for the checks a gateway is likely to trip are Telegram's own:
"Bad Request: chat_id is empty", "Bad Request: message text is empty", "Bad Request: message
is too long" (text over 4096 characters, after trimming), "Bad Request: there is no photo in
the request", "Bad Request: message caption is too long" (over 1024), "Bad Request: wrong
parameter action in request", "Bad Request: chat not found" (for `@username` chats, which the
fake does not know). Results are `Message` objects with `message_id` counting up per chat,
`from` (the bot, its id taken from the token), `chat` (private for positive ids, group or, for
"-100…" ids, supergroup), `date` and the content sent; the three action methods return `true`.

Simplified: lengths are counted in code points, not after entity parsing in UTF-16 units;
`parse_mode`, `reply_markup` and `reply_parameters` are accepted unchecked; file IDs in results
are made up; the wording of the location/venue/reaction/callback checks is the Bot API server's
general style, not copied from real answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

ChatId = int | str

SENDING_METHODS = (
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendAudio",
    "sendVoice",
    "sendVideo",
    "sendLocation",
    "sendVenue",
)
TRUE_METHODS = ("sendChatAction", "answerCallbackQuery", "setMessageReaction")
METHODS = {name.lower(): name for name in SENDING_METHODS + TRUE_METHODS}
CHATLESS = frozenset({"answerCallbackQuery"})
BUSINESS_METHODS = frozenset({*SENDING_METHODS, "sendChatAction"})
"""The methods that take `business_connection_id` (send on behalf of a business account)."""
MEDIA_FIELDS = {
    "sendPhoto": "photo",
    "sendDocument": "document",
    "sendAudio": "audio",
    "sendVoice": "voice",
    "sendVideo": "video",
}
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
TEXT_MAX = 4096
CAPTION_MAX = 1024

CHAT_ID_EMPTY = "Bad Request: chat_id is empty"
CHAT_NOT_FOUND = "Bad Request: chat not found"
TEXT_EMPTY = "Bad Request: message text is empty"
TEXT_TOO_LONG = "Bad Request: message is too long"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
WRONG_ACTION = "Bad Request: wrong parameter action in request"
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
REACT_NOT_FOUND = "Bad Request: message to react not found"
REACTION_INVALID = "Bad Request: REACTION_INVALID"


def parse_chat_id(raw: Any) -> ChatId | None:
    """An int for numeric ids, the raw value (unresolvable) otherwise, None when empty."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text


def check(method: str, params: dict[str, Any]) -> str | None:
    """None if the parameters (other than chat_id) are acceptable, else Telegram's description."""
    checker = _CHECKS.get(method)
    return checker(params) if checker else None


def _check_text(params: dict[str, Any]) -> str | None:
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        return TEXT_EMPTY
    return TEXT_TOO_LONG if len(text.strip()) > TEXT_MAX else None


def _check_media(field: str, params: dict[str, Any]) -> str | None:
    value = params.get(field)
    if not isinstance(value, str) or not value:
        return f"Bad Request: there is no {field} in the request"
    caption = params.get("caption")
    return CAPTION_TOO_LONG if isinstance(caption, str) and len(caption) > CAPTION_MAX else None


def _check_location(params: dict[str, Any]) -> str | None:
    for key in ("latitude", "longitude"):
        if _number(params.get(key)) is None:
            return f"Bad Request: {key} is empty"
    return None


def _check_venue(params: dict[str, Any]) -> str | None:
    for key in ("title", "address"):
        if not isinstance(params.get(key), str) or not params[key]:
            return f'Bad Request: parameter "{key}" is required'
    return _check_location(params)


def _check_action(params: dict[str, Any]) -> str | None:
    return None if params.get("action") in CHAT_ACTIONS else WRONG_ACTION


def _check_callback(params: dict[str, Any]) -> str | None:
    query_id = params.get("callback_query_id")
    return None if isinstance(query_id, str) and query_id else QUERY_INVALID


def _check_reaction(params: dict[str, Any]) -> str | None:
    message_id = parse_chat_id(params.get("message_id"))
    if not isinstance(message_id, int) or message_id <= 0:
        return REACT_NOT_FOUND
    reactions = params.get("reaction", [])
    if not isinstance(reactions, list) or not all(_reaction_ok(r) for r in reactions):
        return REACTION_INVALID
    return None


_REACTION_FIELDS = {"emoji": "emoji", "custom_emoji": "custom_emoji_id"}
"""ReactionType → the field that must be a non-empty string."""


def _reaction_ok(reaction: Any) -> bool:
    if not isinstance(reaction, dict):
        return False
    # Bots cannot use paid reactions (setMessageReaction), so "paid" is refused too.
    field = _REACTION_FIELDS.get(str(reaction.get("type")))
    value = reaction.get(field) if field else None
    return isinstance(value, str) and bool(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_CHECKS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "sendMessage": _check_text,
    "sendLocation": _check_location,
    "sendVenue": _check_venue,
    "sendChatAction": _check_action,
    "answerCallbackQuery": _check_callback,
    "setMessageReaction": _check_reaction,
    **{method: partial(_check_media, field) for method, field in MEDIA_FIELDS.items()},
}


# -- results ---------------------------------------------------------------------------------


def bot_user(bot_id: int) -> dict[str, Any]:
    return {"id": bot_id, "is_bot": True, "first_name": "Fake Bot", "username": f"fake{bot_id}bot"}


def chat_object(chat_id: int) -> dict[str, Any]:
    if chat_id > 0:
        return {"id": chat_id, "first_name": "Test", "type": "private"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "title": "Test group", "type": kind}


def content(method: str, params: dict[str, Any], file_id: str) -> dict[str, Any]:
    """The method-specific part of the `Message` a sending method returns."""
    if method == "sendMessage":
        return {"text": params["text"].strip()}
    if method in ("sendLocation", "sendVenue"):
        return _place(method, params)
    field = MEDIA_FIELDS[method]
    media: dict[str, Any] = {field: _media(field, file_id)}
    if params.get("caption"):
        media["caption"] = params["caption"]
    return media


def _place(method: str, params: dict[str, Any]) -> dict[str, Any]:
    location = {"latitude": _number(params["latitude"]), "longitude": _number(params["longitude"])}
    if method == "sendLocation":
        return {"location": location}
    venue = {"location": location, "title": params["title"], "address": params["address"]}
    return {"venue": venue, "location": location}


def _media(field: str, file_id: str) -> Any:
    unique = file_id[-12:]
    if field == "photo":
        sizes = ((90, 67, 1200), (320, 240, 15800), (800, 600, 61200))
        return [
            {
                "file_id": f"{file_id}{w}",
                "file_unique_id": f"{unique}{w}",
                "file_size": size,
                "width": w,
                "height": h,
            }
            for w, h, size in sizes
        ]
    return {"file_id": file_id, "file_unique_id": unique, "file_size": 48213}
