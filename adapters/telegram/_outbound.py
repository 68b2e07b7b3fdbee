"""Commands → Bot API method calls, and Bot API answers → one `SendResult`.

Two pure functions, no I/O (the caller builds `{api_base}/bot{token}{path}` and posts the body):

    build_request(command, chat_id, business_connection_id=None) -> ProviderRequest
        raises only InvalidCommand, naming the rule the command breaks
    classify(status, body) -> SendResult
        never raises; the one place where Bot API errors (PLATFORM §7.3) become verdicts

Ids the Bot API types as Integer (chat_id, message_id, message_thread_id) are sent as ints, so
the body stays valid JSON for Telegram's parser; a `reply_to` that is not a decimal message id
is not quoted. Fields a type does not use are ignored, except `keyboard`: a keyboard that no
message could carry is refused, never dropped.

Markup (`reply_markup`): `interactive` sends an inline keyboard, one button a row: a button
with `id` is a callback button (`callback_data`), one with `url` a link button. Any message
(text, media, location, sticker, contact) may carry `keyboard`: a reply keyboard (`buttons`,
rows of texts) or its removal (`remove: true`). `thread_id` posts into that forum topic
(`message_thread_id`).

The rich types of issue #17 (`adapters.rich`) are built in `_rich`: `sticker` → sendSticker,
`contacts` (one card) → sendContact, `location_request` → sendMessage with a location
button (private chats only: refused for a group before the call), `list` → sendMessage with
a callback button a row.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from adapters import answers
from adapters.schema import (
    ButtonSpec,
    Command,
    InvalidCommand,
    Keyboard,
    ProviderRequest,
    SendResult,
    Verdict,
)
from adapters.telegram import _rich
from adapters.telegram._inbound import CUSTOM_EMOJI_PREFIX

TEXT_MAX: Final = 4096
CAPTION_MAX: Final = 1024
CALLBACK_ANSWER_MAX: Final = 200
BUTTONS_MAX: Final = 10
CALLBACK_DATA_MAX_BYTES: Final = 64
DETAIL_MAX: Final = 300

_MEDIA: Final = {
    "image": ("sendPhoto", "photo"),
    "document": ("sendDocument", "document"),
    "audio": ("sendAudio", "audio"),
    "video": ("sendVideo", "video"),
}
_VOICE: Final = ("sendVoice", "voice")
_QUOTING: Final = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendAudio",
        "sendVoice",
        "sendVideo",
        "sendLocation",
        "sendVenue",
        "sendSticker",
        "sendContact",
    }
)
# Methods that take `business_connection_id`: sent through it, a message reaches the
# customer's chat with the business account (setMessageReaction and answerCallbackQuery
# take none). The same ones take `message_thread_id`.
_BUSINESS: Final = _QUOTING | {"sendChatAction"}
_THREADED: Final = _BUSINESS
_NEEDS_A_MESSAGE: Final = "keyboard needs a message (text, media, location, sticker, contacts)"
_OWN_KEYBOARD: Final = frozenset({"location_request"})
"""Types whose builder reads `keyboard` itself (the location button's text)."""
# Link buttons: what Telegram opens (InlineKeyboardButton.url: "HTTP or tg:// URL").
_LINK_SCHEMES: Final = frozenset({"http", "https", "tg"})
# message_thread_id is a 32-bit topic id on the Bot API server.
_THREAD_ID: Final = re.compile(r"[1-9][0-9]{0,9}")
_THREAD_MAX: Final = 2**31 - 1
# Up to 18 digits always fits Telegram's 64-bit ids (chat ids reach 13 digits after "-100").
_CHAT_ID: Final = re.compile(r"-?[0-9]{1,18}")
_MESSAGE_ID: Final = re.compile(r"[0-9]{1,18}")

_Call = tuple[str, dict[str, Any]]
"""A Bot API method name and its parameters (without chat_id)."""

# --- build_request ---------------------------------------------------------------------------


def build_request(
    command: Command, chat_id: str, business_connection_id: str | None = None
) -> ProviderRequest:
    """The Bot API call for one command to one chat (`chat_id` as a decimal string).

    `business_connection_id`: the contact last wrote through a business account connected
    to the bot; replies must go through it (without it they would go to the contact's own
    chat with the bot, which it may never have started)."""
    if command.type == "read":
        if command.keyboard is not None:
            raise InvalidCommand(f"read: {_NEEDS_A_MESSAGE}")
        return ProviderRequest("/answerCallbackQuery", _answer_callback(command))
    build = _BUILDERS.get(command.type)
    if build is None:
        raise InvalidCommand(_unsendable(command.type))
    chat = _integer(chat_id, _CHAT_ID)
    if chat is None:
        raise InvalidCommand(f"chat id {chat_id!r} is not a decimal integer")
    if command.type == "location_request" and chat < 0:
        raise InvalidCommand(
            "location_request: Telegram shows the location button in private chats only;"
            " in a group ask for the location in a `text`"
        )
    method, params = build(command)
    body: dict[str, Any] = {"chat_id": chat, **params}
    if business_connection_id and method in _BUSINESS:
        body["business_connection_id"] = business_connection_id
    quoted = _integer(command.reply_to)
    if quoted is not None and method in _QUOTING:
        body["reply_parameters"] = {"message_id": quoted}
    thread = _thread(command.thread_id)
    if thread is not None and method in _THREADED:
        body["message_thread_id"] = thread
    if command.keyboard is not None and command.type not in _OWN_KEYBOARD:
        body["reply_markup"] = _reply_keyboard(command.keyboard, command.type, method, body)
    return ProviderRequest(f"/{method}", body)


def _thread(thread_id: str | None) -> int | None:
    if thread_id is None:
        return None
    if not _THREAD_ID.fullmatch(thread_id) or int(thread_id) > _THREAD_MAX:
        raise InvalidCommand(
            f"thread_id {thread_id!r} is not a forum topic id (the decimal `thread_id` of an event)"
        )
    return int(thread_id)


def _integer(value: str | None, pattern: re.Pattern[str] = _MESSAGE_ID) -> int | None:
    if value is None or not pattern.fullmatch(value):
        return None
    return int(value)


def _unsendable(kind: str) -> str:
    if kind == "template":
        return "templates are WhatsApp only"
    if kind in ("handoff", "handback"):
        return f"{kind} is a control command: it sends nothing to Telegram"
    return f"unknown command type {kind!r}"


def _answer_callback(command: Command) -> dict[str, Any]:
    """`read` acknowledges a tapped inline button: reply_to is the callback query id."""
    if not command.reply_to:
        raise InvalidCommand("read: reply_to (the callback query id) is required")
    body: dict[str, Any] = {"callback_query_id": command.reply_to}
    if command.text:
        if len(command.text) > CALLBACK_ANSWER_MAX:
            raise InvalidCommand(f"read: text is longer than {CALLBACK_ANSWER_MAX} characters")
        body["text"] = command.text
    return body


def _required_text(command: Command) -> str:
    text = command.text
    if text is None or not text.strip():  # Telegram trims, then refuses an empty message
        raise InvalidCommand(f"{command.type}: text is required and must not be blank")
    if len(text) > TEXT_MAX:
        raise InvalidCommand(f"{command.type}: text is longer than {TEXT_MAX} characters")
    return text


def _text(command: Command) -> _Call:
    return "sendMessage", {"text": _required_text(command)}


def _media(command: Command) -> _Call:
    m = command.media
    if m is None or bool(m.url) == bool(m.id):
        raise InvalidCommand(f"{command.type}: media needs exactly one of url or id")
    method, key = _VOICE if command.type == "audio" and m.voice else _MEDIA[command.type]
    params: dict[str, Any] = {key: m.url or m.id}
    if command.text:
        if len(command.text) > CAPTION_MAX:
            raise InvalidCommand(f"{command.type}: caption is longer than {CAPTION_MAX} characters")
        params["caption"] = command.text
    return method, params


def _location(command: Command) -> _Call:
    loc = command.location
    if loc is None:
        raise InvalidCommand("location: the location object is required")
    _check_coordinates(loc.latitude, loc.longitude)
    params: dict[str, Any] = {"latitude": loc.latitude, "longitude": loc.longitude}
    if loc.name and loc.address:
        return "sendVenue", {**params, "title": loc.name, "address": loc.address}
    return "sendLocation", params


def _check_coordinates(latitude: float, longitude: float) -> None:
    if not (math.isfinite(latitude) and -90 <= latitude <= 90):
        raise InvalidCommand("location: latitude must be between -90 and 90")
    if not (math.isfinite(longitude) and -180 <= longitude <= 180):
        raise InvalidCommand("location: longitude must be between -180 and 180")


def _interactive(command: Command) -> _Call:
    text = _required_text(command)
    buttons = command.buttons or []
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise InvalidCommand(f"interactive: needs 1 to {BUTTONS_MAX} buttons, got {len(buttons)}")
    rows = [[_inline_button(b)] for b in buttons]
    return "sendMessage", {"text": text, "reply_markup": {"inline_keyboard": rows}}


def _inline_button(button: ButtonSpec) -> dict[str, str]:
    """A callback button (`id` → callback_data) or a link button (`url`)."""
    if not button.title.strip():
        raise InvalidCommand("interactive: button title must not be blank")
    if button.url is not None:
        if button.id:
            raise InvalidCommand("interactive: a button has either an id or a url, not both")
        return {"text": button.title, "url": _link(button.url)}
    if not 1 <= _rich.utf8_len(button.id) <= CALLBACK_DATA_MAX_BYTES:
        raise InvalidCommand(
            f"interactive: button id must be 1-{CALLBACK_DATA_MAX_BYTES} bytes of UTF-8"
            " (or give a url for a link button)"
        )
    return {"text": button.title, "callback_data": button.id}


def _link(url: str) -> str:
    """A link button's URL as Telegram opens it: http(s) with a host, or tg://."""
    refused = InvalidCommand(f"interactive: button url must be an http, https or tg URL: {url!r}")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise refused
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise refused from None
    scheme = parts.scheme.lower()
    if scheme not in _LINK_SCHEMES or not (parts.hostname if scheme != "tg" else parts.netloc):
        raise refused
    return url


def _reply_keyboard(
    keyboard: Keyboard, kind: str, method: str, body: dict[str, Any]
) -> dict[str, Any]:
    """`keyboard` as ReplyKeyboardMarkup or ReplyKeyboardRemove, on a message that can carry
    it (one markup a message: not on `interactive`, whose inline buttons are its markup)."""
    if "reply_markup" in body:
        raise InvalidCommand(
            f"{kind}: keyboard cannot go with inline buttons (one markup a message);"
            " send it on a text command"
        )
    if method not in _QUOTING:
        raise InvalidCommand(f"{kind}: {_NEEDS_A_MESSAGE}")
    if keyboard.remove:
        if keyboard.buttons:
            raise InvalidCommand("keyboard: remove and buttons exclude each other")
        return {"remove_keyboard": True}
    return _keyboard_markup(keyboard)


def _keyboard_markup(keyboard: Keyboard) -> dict[str, Any]:
    rows = keyboard.buttons
    if not rows:
        raise InvalidCommand("keyboard: give buttons (rows of button texts) or remove: true")
    if not all(rows):
        raise InvalidCommand("keyboard: a row of buttons is empty")
    if any(not text.strip() for row in rows for text in row):
        raise InvalidCommand("keyboard: button text must not be blank")
    markup: dict[str, Any] = {"keyboard": [[{"text": t} for t in row] for row in rows]}
    if keyboard.one_time:
        markup["one_time_keyboard"] = True
    if keyboard.resize:
        markup["resize_keyboard"] = True
    return markup


def _typing(command: Command) -> _Call:
    return "sendChatAction", {"action": "typing"}


def _reaction(command: Command) -> _Call:
    target = _integer(command.reply_to)
    if target is None:
        raise InvalidCommand("reaction: reply_to must be the decimal id of the message")
    return "setMessageReaction", {"message_id": target, "reaction": _reaction_types(command.text)}


def _reaction_types(text: str | None) -> list[dict[str, str]]:
    """Empty removes; `custom_emoji:<id>` (the form inbound events use) is that custom emoji."""
    if not text:
        return []
    custom = text.removeprefix(CUSTOM_EMOJI_PREFIX)
    if custom != text and custom:
        return [{"type": "custom_emoji", "custom_emoji_id": custom}]
    return [{"type": "emoji", "emoji": text}]


_BUILDERS: Final[dict[str, Callable[[Command], _Call]]] = {
    "text": _text,
    "image": _media,
    "document": _media,
    "audio": _media,
    "video": _media,
    "location": _location,
    "interactive": _interactive,
    "typing": _typing,
    "reaction": _reaction,
    "sticker": _rich.sticker,
    "contacts": _rich.contact,
    "location_request": _rich.location_request,
    "list": _rich.list_menu,
}

# --- classify --------------------------------------------------------------------------------


def classify(status: int, body: bytes) -> SendResult:
    """Turn one Bot API answer (HTTP status and raw body) into a verdict. Never raises."""
    match answers.decode(body):
        case {"ok": True, "result": {"message_id": int(message_id)}} if answers.is_int(message_id):
            return SendResult(verdict="sent", message_id=str(message_id))
        case {"ok": True}:
            return SendResult(verdict="sent")
        case {"ok": False, "error_code": int(code)} as doc if answers.is_int(code):
            return _error(code, doc)
    return SendResult(verdict=_by_status(status), detail=f"HTTP {status}: not a Bot API answer")


def _error(code: int, doc: dict[str, Any]) -> SendResult:
    params = doc.get("parameters")
    params = params if isinstance(params, dict) else {}
    description = doc.get("description")
    text = description if isinstance(description, str) and description else None
    return SendResult(
        verdict=_verdict_for_code(code),
        provider_code=code,
        detail=text[:DETAIL_MAX] if text else None,
        retry_after_s=_seconds(params.get("retry_after")),
        migrate_to_chat_id=_chat(params.get("migrate_to_chat_id")),
        description=text[:DESCRIPTION_MAX] if text else None,
    )


# Every `error_code` PLATFORM §7.3 lists has its class (a row each in
# tests/adapters/test_telegram_send.py); any other code is classed by its HTTP meaning.
_CODES: Final[dict[int, Verdict]] = {
    400: "failed",  # Bad Request: chat not found, text empty, thread not found, ...
    401: "halt",  # Unauthorized: the token was revoked
    403: "opted_out",  # Forbidden: blocked, never started, kicked, deactivated
    404: "halt",  # Not Found: a wrong token path (the bot is gone)
    409: "failed",  # Conflict (getUpdates while a webhook is set): nothing a resend fixes
    413: "failed",  # Request Entity Too Large
    429: "retry",  # Too Many Requests: `retry_after` holds that chat
}
DESCRIPTION_MAX: Final = 500


def _verdict_for_code(code: int) -> Verdict:
    return _CODES.get(code) or _by_status(code)


def _by_status(status: int) -> Verdict:
    if status == 429 or 500 <= status < 600:
        return "retry"  # 5xx: Telegram's trouble ("restart"): back off and try again
    if status in (401, 404):
        return "halt"  # revoked token; a wrong token path answers 404 Not Found
    return "failed"


def _seconds(value: object) -> float | None:
    """A usable `retry_after`: a non-negative finite number (bounded ints only, so no overflow)."""
    match value:
        case bool():
            return None
        case int() if 0 <= value < answers.INT64:
            return float(value)
        case float() if math.isfinite(value) and value >= 0:
            return value
    return None


def _chat(value: object) -> str | None:
    return str(value) if answers.is_int(value) else None
