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
`parse_mode` and `reply_parameters` are accepted unchecked; file IDs in results are made up;
the wording of the location/venue/reaction/callback checks is the Bot API server's general
style, not copied from real answers.

`reply_markup` of the send* methods (`check_markup`), confirmed in tdlib/telegram-bot-api at
01a3679c (Client.cpp `get_reply_markup`, `get_inline_keyboard_button(_type)`,
`get_keyboard_button`, `fail_query_with_error`): an object, or a string holding one (form
posts); "Bad Request: can't parse reply keyboard markup JSON object", "Bad Request: object
expected as reply markup", "Bad Request: field \"keyboard\" must be an Array of Arrays" (and
the inline_keyboard one), "Bad Request: can't parse keyboard button: KeyboardButton must be a
String or an Object", "Bad Request: can't parse inline keyboard button: InlineKeyboardButton
must be an Object", "... Can't find field \"text\"", "... Text buttons are unallowed in the
inline keyboard" (neither a non-empty `url` nor `callback_data`: as on the real server, a
non-empty `url` wins over `callback_data`, an empty one counts as absent). Telegram's own
checks behind the Bot API: "Bad Request: BUTTON_DATA_INVALID" (callback_data over 64 bytes),
"Bad Request: BUTTON_URL_INVALID" (a URL that is not http(s) with a host or tg://); "Bad
Request: BUTTON_TEXT_INVALID" for a blank button text is approximate. Only the button kinds
the gateway sends (callback, url; text reply buttons) are modelled; `remove_keyboard: true`
is ReplyKeyboardRemove. `message_thread_id` is checked by the fake against the forum chats it
was told of (`FakeBotAPI.forum`).

Rich sends (issue #17), confirmed in tdlib/telegram-bot-api at 01a3679c (Client.cpp
`process_send_sticker_query`, `process_send_contact_query`, `get_required_string_arg`,
`get_keyboard_button_type`, `fail_query_with_error`) and tdlib/td (ReplyMarkup.cpp
`get_keyboard_button`): sendSticker without `sticker` → "Bad Request: there is no sticker in
the request"; sendContact without `phone_number` or `first_name` → 'Bad Request: parameter
"phone_number" is required' (then "first_name"); a reply keyboard button with
`request_location` (or `request_contact` / `request_phone_number`) sent to a chat that is not
private (`check_private_buttons`) → "Bad Request: location can be requested in private chats
only" ("phone number can be requested ..."). Results carry `sticker` (`type` regular, 512×512,
`is_animated` and `is_video` false, made-up file ids) and `contact` (`phone_number`,
`first_name`, then `last_name` and `vcard` when not empty), as Client.cpp's JsonSticker and
JsonContact. Simplified: the fake fetches no sticker URL (Telegram answers a bad one with "wrong
file identifier/HTTP URL specified") and does not measure the vCard (documented as 0-2048
bytes; Telegram's answer to a longer one is not known here).

Webhooks (`WebhookState`, `set_webhook`), confirmed in tdlib/telegram-bot-api at 01a3679c (May 2026)
(telegram-bot-api/Client.cpp `process_set_webhook_query`, `do_set_webhook`, `JsonWebhookInfo`,
`get_allowed_update_types`; WebhookActor.cpp; Client.h `UpdateType`,
`DEFAULT_ALLOWED_UPDATE_TYPES`): setWebhook and deleteWebhook answer `{"ok": true, "result":
true, "description": ...}` with "Webhook was set", "Webhook is already set", "Webhook was
deleted" or "Webhook is already deleted"; the refusals are 400 "Bad Request: invalid webhook
URL specified", "Bad Request: secret token is too long" (over 256), "Bad Request: secret token
contains unallowed characters" (outside A-Z a-z 0-9 _ -; an empty token means none), "Bad
Request: bad webhook: An HTTPS URL must be provided for webhook", "Bad Request: bad webhook:
Webhook can be set up only on ports 80, 88, 443 or 8443". Like the real server, a setWebhook
that changes anything first closes the webhook in place, so a refused one leaves none, and
`drop_pending_updates` empties the queue even then; `allowed_updates` keeps the known kinds
(lower-cased), an empty or all-unknown list is the default, a value that is not a list of
strings changes nothing, and an absent one keeps the previous setting (deleteWebhook too).
getWebhookInfo: `url` ("" when none), `has_custom_certificate`, `pending_update_count`, then
`last_error_date` and `last_error_message` only after a failed delivery, `max_connections`
only while a webhook is set (default 40, clamped to 1-100), `ip_address` only while a URL is
set, `allowed_updates` (in Telegram's order) only when not the default.

Simplified: the fake never connects to the webhook, so "bad webhook: Failed to resolve host"
and TLS failures never happen; `ip_address` is a documentation address; no certificate
upload; the URL check is Python's, not td's.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    "sendSticker",
    "sendContact",
)
TRUE_METHODS = ("sendChatAction", "answerCallbackQuery", "setMessageReaction")
WEBHOOK_METHODS = ("setWebhook", "getWebhookInfo", "deleteWebhook")
METHODS = {name.lower(): name for name in SENDING_METHODS + TRUE_METHODS + WEBHOOK_METHODS}
CHATLESS = frozenset({"answerCallbackQuery", *WEBHOOK_METHODS})
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
WEBHOOK_URL_INVALID = "Bad Request: invalid webhook URL specified"
SECRET_TOO_LONG = "Bad Request: secret token is too long"
SECRET_UNALLOWED = "Bad Request: secret token contains unallowed characters"
HTTPS_REQUIRED = "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
MARKUP_UNPARSABLE = "Bad Request: can't parse reply keyboard markup JSON object"
MARKUP_NOT_OBJECT = "Bad Request: object expected as reply markup"
KEYBOARD_ROWS = 'Bad Request: field "keyboard" must be an Array of Arrays'
INLINE_ROWS = (
    'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
)
KEYBOARD_BUTTON = (
    "Bad Request: can't parse keyboard button: KeyboardButton must be a String or an Object"
)
INLINE_BUTTON = "Bad Request: can't parse inline keyboard button: "
INLINE_NOT_OBJECT = INLINE_BUTTON + "InlineKeyboardButton must be an Object"
INLINE_NO_TEXT = INLINE_BUTTON + 'Can\'t find field "text"'
INLINE_TEXT_ONLY = INLINE_BUTTON + "Text buttons are unallowed in the inline keyboard"
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
BUTTON_URL_INVALID = "Bad Request: BUTTON_URL_INVALID"
BUTTON_TEXT_INVALID = "Bad Request: BUTTON_TEXT_INVALID"
THREAD_NOT_FOUND = "Bad Request: message thread not found"
NO_STICKER = "Bad Request: there is no sticker in the request"
PRIVATE_ONLY = {
    "request_contact": "Bad Request: phone number can be requested in private chats only",
    "request_phone_number": "Bad Request: phone number can be requested in private chats only",
    "request_location": "Bad Request: location can be requested in private chats only",
}
"""Reply keyboard buttons a private chat alone may show, in the order the server reads them."""
GENERAL_TOPIC = 1
"""A forum's General topic: never a `message_thread_id` to send to."""
CALLBACK_DATA_MAX_BYTES = 64
LINK_SCHEMES = frozenset({"http", "https", "tg"})
WEBHOOK_PORT = "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"


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
    problem = checker(params) if checker else None
    if problem is None and method in SENDING_METHODS:
        return check_markup(params.get("reply_markup"))
    return problem


def reply_markup(raw: Any) -> dict[str, Any] | None:
    """The `reply_markup` parameter as an object (a form post sends it as a JSON string)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw else None
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def check_markup(raw: Any) -> str | None:
    """None if `reply_markup` is absent or acceptable, else Telegram's description."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return MARKUP_UNPARSABLE
    if not isinstance(raw, dict):
        return MARKUP_NOT_OBJECT
    return _check_rows(raw.get("keyboard"), KEYBOARD_ROWS, _keyboard_button) or _check_rows(
        raw.get("inline_keyboard"), INLINE_ROWS, _inline_button
    )


def _check_rows(rows: Any, not_rows: str, button: Callable[[Any], str | None]) -> str | None:
    if rows is None:
        return None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        return not_rows
    return next((p for row in rows for b in row if (p := button(b)) is not None), None)


def _keyboard_button(button: Any) -> str | None:
    text = button.get("text") if isinstance(button, dict) else button
    if not isinstance(text, str):
        return KEYBOARD_BUTTON
    return None if text.strip() else BUTTON_TEXT_INVALID


def _inline_button(button: Any) -> str | None:
    if not isinstance(button, dict):
        return INLINE_NOT_OBJECT
    text = button.get("text")
    if not isinstance(text, str):
        return INLINE_NO_TEXT
    url, data = button.get("url") or "", button.get("callback_data") or ""
    if url:  # the server looks at `url` first, then at `callback_data`
        problem = None if _link_ok(str(url)) else BUTTON_URL_INVALID
    elif data:
        size = len(str(data).encode("utf-8", "surrogatepass"))
        problem = None if size <= CALLBACK_DATA_MAX_BYTES else BUTTON_DATA_INVALID
    else:
        problem = INLINE_TEXT_ONLY
    return problem or (None if text.strip() else BUTTON_TEXT_INVALID)


def _link_ok(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "tg":
        return bool(parts.netloc)
    return scheme in LINK_SCHEMES and bool(parts.hostname) and not any(c.isspace() for c in url)


def check_private_buttons(params: dict[str, Any], chat_id: ChatId | None) -> str | None:
    """A reply keyboard asking for the user's phone number or location, sent to a group or
    channel (a negative id): Telegram's refusal; None otherwise."""
    if not isinstance(chat_id, int) or chat_id > 0:
        return None
    rows = (reply_markup(params.get("reply_markup")) or {}).get("keyboard")
    if not isinstance(rows, list):
        return None
    for button in (b for row in rows if isinstance(row, list) for b in row):
        if isinstance(button, dict):
            for key, refusal in PRIVATE_ONLY.items():
                if button.get(key) is True:
                    return refusal
    return None


def thread_id(raw: Any) -> int:
    """`message_thread_id` as the server reads it (a 32-bit integer; unreadable or negative
    is 0, none)."""
    text = "" if raw is None or isinstance(raw, bool) else str(raw).strip()
    if not text.lstrip("-").isdigit():
        return 0
    value = int(text)
    return value if 0 < value < 2**31 else 0


def check_thread(topic: int, topics: Sequence[int] | None) -> str | None:
    """A `message_thread_id` in a chat: `topics` are its forum's topics (None: not a forum,
    where the server ignores the parameter)."""
    if topic == 0 or topics is None:
        return None
    return None if topic != GENERAL_TOPIC and topic in topics else THREAD_NOT_FOUND


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


def _check_sticker(params: dict[str, Any]) -> str | None:
    sticker = params.get("sticker")
    return None if isinstance(sticker, str) and sticker else NO_STICKER


def _check_contact(params: dict[str, Any]) -> str | None:
    for key in ("phone_number", "first_name"):
        value = params.get(key)
        if value is None or value == "":
            return f'Bad Request: parameter "{key}" is required'
    return None


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
    "sendSticker": _check_sticker,
    "sendContact": _check_contact,
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
    if method == "sendSticker":
        return {"sticker": _sticker(file_id)}
    if method == "sendContact":
        return {"contact": _contact(params)}
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


def _sticker(file_id: str) -> dict[str, Any]:
    return {
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "type": "regular",
        "file_id": file_id,
        "file_unique_id": file_id[-12:],
        "file_size": 18210,
    }


def _contact(params: dict[str, Any]) -> dict[str, Any]:
    contact = {"phone_number": str(params["phone_number"]), "first_name": str(params["first_name"])}
    for key in ("last_name", "vcard"):
        if params.get(key):
            contact[key] = str(params[key])
    return contact


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


# -- webhooks --------------------------------------------------------------------------------

UPDATE_TYPES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
    "message_reaction",
    "message_reaction_count",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "purchased_paid_media",
    "managed_bot",
    "guest_message",
)
"""Every update kind the Bot API server knows, in its order (the order getWebhookInfo lists
`allowed_updates` in)."""
OFF_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
DEFAULT_UPDATES = frozenset(UPDATE_TYPES) - OFF_BY_DEFAULT
WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
DEFAULT_MAX_CONNECTIONS = 40
SECRET_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass
class WebhookState:
    """One bot's webhook as the Bot API keeps it. Tests set `pending_update_count`, and
    `last_error_date` with `last_error_message` for a delivery Telegram failed."""

    url: str = ""
    secret_token: str = ""
    max_connections: int = 0
    allowed_updates: frozenset[str] = DEFAULT_UPDATES
    pending_update_count: int = 0
    last_error_date: int = 0
    last_error_message: str = ""
    ip_address: str = "192.0.2.10"

    def settings(self) -> tuple[str, str, int]:
        """What a setWebhook must repeat to be "already set" (with no drop_pending_updates)."""
        return self.url, self.secret_token, self.max_connections

    def close(self) -> None:
        """What closing the webhook forgets (allowed_updates and the queue stay)."""
        self.url, self.secret_token, self.max_connections = "", "", 0
        self.last_error_date, self.last_error_message = 0, ""

    def info(self) -> dict[str, Any]:
        """The WebhookInfo getWebhookInfo returns."""
        info: dict[str, Any] = {
            "url": self.url,
            "has_custom_certificate": False,
            "pending_update_count": self.pending_update_count,
        }
        if self.last_error_date > 0:
            info["last_error_date"] = self.last_error_date
            info["last_error_message"] = self.last_error_message
        if self.max_connections > 0:
            info["max_connections"] = self.max_connections
        if self.url:
            info["ip_address"] = self.ip_address
        if self.allowed_updates != DEFAULT_UPDATES:
            info["allowed_updates"] = [t for t in UPDATE_TYPES if t in self.allowed_updates]
        return info


def set_webhook(hook: WebhookState, method: str, params: dict[str, Any]) -> tuple[int, str]:
    """setWebhook or deleteWebhook (a setWebhook without url): (HTTP status, description)."""
    url = str(params.get("url") or "") if method == "setWebhook" else ""
    secret = str(params.get("secret_token") or "") if url else ""
    connections = _max_connections(params.get("max_connections")) if url else 0
    drop = str(params.get("drop_pending_updates", "")).strip().lower() in ("true", "yes", "1")
    if (url, secret, connections) == hook.settings() and not drop:
        _allow(hook, params.get("allowed_updates"))
        return 200, "Webhook is already set" if url else "Webhook is already deleted"
    was_set = bool(hook.url)
    hook.close()
    if drop:
        hook.pending_update_count = 0
    if not url:
        return 200, "Webhook was deleted" if was_set else "Webhook is already deleted"
    problem = _url_problem(url) or _secret_problem(secret)
    if problem:
        return 400, problem
    _allow(hook, params.get("allowed_updates"))
    problem = _reach_problem(url)
    if problem:
        return 400, problem
    hook.url, hook.secret_token, hook.max_connections = url, secret, connections
    return 200, "Webhook was set"


def _max_connections(raw: Any) -> int:
    """td's `get_integer_arg`: absent is the default, unreadable is 0, then clamped to 1-100."""
    text = "" if raw is None else str(raw).strip()
    if not text:
        return DEFAULT_MAX_CONNECTIONS
    value = int(text) if text.lstrip("-").isdigit() else 0
    return min(max(value, 1), 100)


def _split_url(url: str) -> urllib.parse.SplitResult:
    """The URL, https when it names no scheme (td's `parse_url` default)."""
    return urllib.parse.urlsplit(url if "://" in url else f"https://{url}")


def _url_problem(url: str) -> str | None:
    try:
        parts = _split_url(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return WEBHOOK_URL_INVALID
    ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    return None if ok else WEBHOOK_URL_INVALID


def _secret_problem(secret: str) -> str | None:
    if len(secret) > 256:
        return SECRET_TOO_LONG
    return None if set(secret) <= SECRET_CHARACTERS else SECRET_UNALLOWED


def _reach_problem(url: str) -> str | None:
    """What the webhook's first connection attempt refuses, answered as a bad webhook."""
    parts = _split_url(url)
    if parts.scheme.lower() != "https":
        return HTTPS_REQUIRED
    return None if (parts.port or 443) in WEBHOOK_PORTS else WEBHOOK_PORT


def _allow(hook: WebhookState, raw: Any) -> None:
    """`allowed_updates` as the server reads it: a JSON array of names (a string in a form)."""
    if isinstance(raw, str) and raw:
        try:
            raw = json.loads(raw)
        except ValueError:
            return
    if not isinstance(raw, list) or not all(isinstance(kind, str) for kind in raw):
        return
    known = frozenset(kind.lower() for kind in raw) & frozenset(UPDATE_TYPES)
    hook.allowed_updates = known or DEFAULT_UPDATES
