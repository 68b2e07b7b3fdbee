"""Telegram sending: command → Bot API call tables, Bot API answer → verdict tables, properties.

Error bodies are the Bot API's own (`ok`, `error_code`, `description`, `parameters`), with the
descriptions Telegram really answers (PLATFORM §7.3).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.schema import (
    ButtonSpec,
    Command,
    CommandType,
    InvalidCommand,
    Location,
    MediaRef,
    ProviderRequest,
    SendResult,
    Template,
    Verdict,
)
from adapters.telegram import build_request, classify

CHAT = "123456789"
GROUP = "-1001234567890"
FILE_ID = "AgACAgIAAxkBAAIBY2Zx3k9aQ1-uXhXz0C0wAAHdAAFRtwACY9sxG5Z3AAFLq2NCvlgE"
CALLBACK_ID = "4382009472397429504"
VERDICTS = set(Verdict.__args__)  # type: ignore[attr-defined]


def cmd(type_: str, **fields: Any) -> Command:
    conversation = f"telegram:7000000001:{CHAT}"
    return Command(command_id="cmd-7", conversation_id=conversation, type=type_, **fields)  # type: ignore[arg-type]


def _media(type_: str, text: str | None = None, **ref: Any) -> Command:
    return cmd(type_, media=MediaRef(**ref), text=text)


def _buttons(*pairs: tuple[str, str], text: str | None = "Pick one") -> Command:
    return cmd("interactive", text=text, buttons=[ButtonSpec(i, t) for i, t in pairs])


KEYBOARD = {
    "inline_keyboard": [
        [{"text": "Yes", "callback_data": "yes"}],
        [{"text": "No", "callback_data": "no"}],
    ]
}
ID = int(CHAT)
PHOTO_URL = "https://cdn.example.com/receipt.jpg"

# (command, chat_id, expected path, expected body)
VALID: dict[str, tuple[Command, str, str, dict[str, Any]]] = {
    "text": (cmd("text", text="Olá!"), CHAT, "/sendMessage", {"chat_id": ID, "text": "Olá!"}),
    "text quoting": (
        cmd("text", text="Sim", reply_to="55"),
        CHAT,
        "/sendMessage",
        {"chat_id": ID, "text": "Sim", "reply_parameters": {"message_id": 55}},
    ),
    "text quoting a non-decimal id is not quoted": (
        cmd("text", text="Sim", reply_to="wamid.X"),
        CHAT,
        "/sendMessage",
        {"chat_id": ID, "text": "Sim"},
    ),
    "text to a supergroup, 4096 chars": (
        cmd("text", text="a" * 4096),
        GROUP,
        "/sendMessage",
        {"chat_id": -1001234567890, "text": "a" * 4096},
    ),
    "photo by url with caption": (
        _media("image", "Your receipt", url=PHOTO_URL),
        CHAT,
        "/sendPhoto",
        {"chat_id": ID, "photo": PHOTO_URL, "caption": "Your receipt"},
    ),
    "photo by file_id, quoting": (
        cmd("image", media=MediaRef(id=FILE_ID), reply_to="56"),
        CHAT,
        "/sendPhoto",
        {"chat_id": ID, "photo": FILE_ID, "reply_parameters": {"message_id": 56}},
    ),
    "document": (
        _media("document", "Invoice", id=FILE_ID, filename="invoice.pdf"),
        CHAT,
        "/sendDocument",
        {"chat_id": ID, "document": FILE_ID, "caption": "Invoice"},
    ),
    "audio": (
        _media("audio", url="https://x.test/song.mp3"),
        CHAT,
        "/sendAudio",
        {"chat_id": ID, "audio": "https://x.test/song.mp3"},
    ),
    "voice note": (
        _media("audio", "listen", id=FILE_ID, voice=True),
        CHAT,
        "/sendVoice",
        {"chat_id": ID, "voice": FILE_ID, "caption": "listen"},
    ),
    "video, caption of 1024": (
        _media("video", "v" * 1024, id=FILE_ID),
        CHAT,
        "/sendVideo",
        {"chat_id": ID, "video": FILE_ID, "caption": "v" * 1024},
    ),
    "location": (
        cmd("location", location=Location(-23.5505, -46.6333, name="Loja Centro")),
        CHAT,
        "/sendLocation",
        {"chat_id": ID, "latitude": -23.5505, "longitude": -46.6333},
    ),
    "venue": (
        cmd("location", location=Location(-23.5505, -46.6333, "Loja Centro", "Rua A, 1")),
        CHAT,
        "/sendVenue",
        {
            "chat_id": ID,
            "latitude": -23.5505,
            "longitude": -46.6333,
            "title": "Loja Centro",
            "address": "Rua A, 1",
        },
    ),
    "inline keyboard": (
        _buttons(("yes", "Yes"), ("no", "No"), text="Confirm booking?"),
        CHAT,
        "/sendMessage",
        {"chat_id": ID, "text": "Confirm booking?", "reply_markup": KEYBOARD},
    ),
    "inline keyboard at the limits": (
        _buttons(*[(f"{i}x" + "é" * 31, f"Option {i}") for i in range(10)]),
        CHAT,
        "/sendMessage",
        {
            "chat_id": ID,
            "text": "Pick one",
            "reply_markup": {
                "inline_keyboard": [
                    [{"text": f"Option {i}", "callback_data": f"{i}x" + "é" * 31}]
                    for i in range(10)
                ]
            },
        },
    ),
    "typing": (
        cmd("typing", reply_to="55"),
        CHAT,
        "/sendChatAction",
        {"chat_id": ID, "action": "typing"},
    ),
    "read answers the callback query": (
        cmd("read", reply_to=CALLBACK_ID),
        CHAT,
        "/answerCallbackQuery",
        {"callback_query_id": CALLBACK_ID},
    ),
    "read with a toast": (
        cmd("read", reply_to=CALLBACK_ID, text="Booked ✅"),
        CHAT,
        "/answerCallbackQuery",
        {"callback_query_id": CALLBACK_ID, "text": "Booked ✅"},
    ),
    "reaction": (
        cmd("reaction", text="👍", reply_to="55"),
        CHAT,
        "/setMessageReaction",
        {"chat_id": ID, "message_id": 55, "reaction": [{"type": "emoji", "emoji": "👍"}]},
    ),
    "reaction removed": (
        cmd("reaction", text="", reply_to="55"),
        GROUP,
        "/setMessageReaction",
        {"chat_id": -1001234567890, "message_id": 55, "reaction": []},
    ),
    "custom emoji reaction, in the form inbound events use": (
        cmd("reaction", text="custom_emoji:5368324170671202286", reply_to="55"),
        CHAT,
        "/setMessageReaction",
        {
            "chat_id": ID,
            "message_id": 55,
            "reaction": [{"type": "custom_emoji", "custom_emoji_id": "5368324170671202286"}],
        },
    ),
    "a bare custom_emoji: prefix is just text": (
        cmd("reaction", text="custom_emoji:", reply_to="55"),
        CHAT,
        "/setMessageReaction",
        {
            "chat_id": ID,
            "message_id": 55,
            "reaction": [{"type": "emoji", "emoji": "custom_emoji:"}],
        },
    ),
}


@pytest.mark.parametrize(("command", "chat", "path", "body"), VALID.values(), ids=VALID)
def test_build_request(command: Command, chat: str, path: str, body: dict[str, Any]) -> None:
    request = build_request(command, chat)
    assert request == ProviderRequest(path, body)
    assert msgspec.json.decode(msgspec.json.encode(request.body)) == body


BUSINESS = "AbCdEfGhIjKlMnOpQrSt"
# Every command type that sends into the chat, with and without quoting.
THROUGH_THE_BUSINESS = [
    cmd("text", text="Sim", reply_to="55"),
    _media("image", "Recibo", url=PHOTO_URL),
    _media("audio", id=FILE_ID, voice=True),
    cmd("location", location=Location(-23.5, -46.6, "Loja", "Av. Paulista 1000")),
    cmd("location", location=Location(-23.5, -46.6)),
    _buttons(("yes", "Yes")),
    cmd("typing"),
]


@pytest.mark.parametrize("command", THROUGH_THE_BUSINESS, ids=lambda c: c.type)
def test_replies_in_a_business_chat_go_through_its_connection(command: Command) -> None:
    # Without it the reply would go to the customer's own chat with the bot: 403 if the
    # customer never started the bot, and the wrong chat if they did.
    plain = build_request(command, CHAT)
    business = build_request(command, CHAT, BUSINESS)
    assert business == ProviderRequest(
        plain.path, {**plain.body, "business_connection_id": BUSINESS}
    )


@pytest.mark.parametrize(
    "command",
    [cmd("reaction", text="👍", reply_to="55"), cmd("read", reply_to=CALLBACK_ID)],
    ids=["setMessageReaction", "answerCallbackQuery"],
)
def test_methods_without_a_business_parameter_are_sent_as_they_are(command: Command) -> None:
    assert build_request(command, CHAT, BUSINESS) == build_request(command, CHAT)


# (command, chat_id, what the error message must say)
INVALID: dict[str, tuple[Command, str, str]] = {
    "text missing": (cmd("text"), CHAT, "text: text is required"),
    "text blank": (cmd("text", text="  "), CHAT, "must not be blank"),
    "text too long": (cmd("text", text="a" * 4097), CHAT, "longer than 4096"),
    "template": (
        cmd("template", template=Template("x", "en")),
        CHAT,
        "templates are WhatsApp only",
    ),
    "handoff": (cmd("handoff"), CHAT, "handoff is a control command"),
    "handback": (cmd("handback"), CHAT, "handback is a control command"),
    "unknown type": (cmd("carousel"), CHAT, "unknown command type 'carousel'"),
    "sticker": (cmd("sticker"), CHAT, "sticker: Telegram"),
    "chat id not decimal": (cmd("text", text="x"), "@acme", "chat id '@acme' is not a decimal"),
    "chat id empty": (cmd("typing"), "", "is not a decimal integer"),
    "photo without media": (cmd("image"), CHAT, "image: media needs exactly one of url or id"),
    "photo with url and id": (_media("image", url="https://a", id="b"), CHAT, "exactly one"),
    "audio with empty media": (_media("audio", voice=True), CHAT, "exactly one of url or id"),
    "caption too long": (_media("video", "v" * 1025, id="f"), CHAT, "caption is longer than 1024"),
    "location missing": (cmd("location"), CHAT, "location object is required"),
    "latitude off the globe": (
        cmd("location", location=Location(-90.1, 0.0)),
        CHAT,
        "latitude must be between -90 and 90",
    ),
    "longitude infinite": (
        cmd("location", location=Location(0.0, float("inf"))),
        CHAT,
        "longitude must be between -180 and 180",
    ),
    "keyboard without text": (_buttons(("a", "A"), text=None), CHAT, "interactive: text is"),
    "keyboard without buttons": (cmd("interactive", text="x"), CHAT, "1 to 10 buttons, got 0"),
    "keyboard of 11": (
        _buttons(*[(str(i), str(i)) for i in range(11)]),
        CHAT,
        "1 to 10 buttons, got 11",
    ),
    "callback_data empty": (_buttons(("", "A")), CHAT, "button id must be 1-64 bytes"),
    "callback_data over 64 bytes": (_buttons(("é" * 33, "A")), CHAT, "1-64 bytes of UTF-8"),
    "button title blank": (_buttons(("a", " ")), CHAT, "button title must not be blank"),
    "read without callback id": (cmd("read", text="ok"), CHAT, "read: reply_to (the callback"),
    "read toast too long": (
        cmd("read", reply_to=CALLBACK_ID, text="t" * 201),
        CHAT,
        "longer than 200",
    ),
    "reaction without target": (cmd("reaction", text="👍"), CHAT, "reply_to must be the decimal"),
    "reaction to a non-decimal id": (
        cmd("reaction", text="👍", reply_to="wamid.X"),
        CHAT,
        "reply_to must be the decimal id",
    ),
}


@pytest.mark.parametrize(("command", "chat", "problem"), INVALID.values(), ids=INVALID)
def test_invalid_command(command: Command, chat: str, problem: str) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(problem)):
        build_request(command, chat)


# --- classify ---------------------------------------------------------------------------------


def bot_error(code: int, description: str, **parameters: Any) -> bytes:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return json.dumps(body).encode()


SENT_MESSAGE = {
    "ok": True,
    "result": {
        "message_id": 4242,
        "from": {"id": 7000000001, "is_bot": True, "first_name": "Acme", "username": "acme_bot"},
        "chat": {"id": 123456789, "first_name": "Ana", "type": "private"},
        "date": 1767226200,
        "text": "Olá!",
    },
}
TOO_LONG = "Bad Request: message is too long " + "x" * 400

# (HTTP status, body, expected result): a row for every `error_code` PLATFORM §7.3 lists;
# `description` is Telegram's text as it came (up to 500 characters), `detail` its first 300.
ANSWERS: dict[str, tuple[int, bytes, SendResult]] = {
    "message sent": (
        200,
        json.dumps(SENT_MESSAGE).encode(),
        SendResult(verdict="sent", message_id="4242"),
    ),
    "call answered true": (200, b'{"ok":true,"result":true}', SendResult(verdict="sent")),
    "flood wait": (
        429,
        bot_error(429, "Too Many Requests: retry after 17", retry_after=17),
        SendResult(
            verdict="retry",
            provider_code=429,
            retry_after_s=17.0,
            detail="Too Many Requests: retry after 17",
            description="Too Many Requests: retry after 17",
        ),
    ),
    "flood wait without parameters": (
        429,
        bot_error(429, "Too Many Requests"),
        SendResult(
            verdict="retry",
            provider_code=429,
            detail="Too Many Requests",
            description="Too Many Requests",
        ),
    ),
    "server restarting": (
        500,
        bot_error(500, "Internal Server Error: restart"),
        SendResult(
            verdict="retry",
            provider_code=500,
            detail="Internal Server Error: restart",
            description="Internal Server Error: restart",
        ),
    ),
    "bad gateway": (
        502,
        bot_error(502, "Bad Gateway"),
        SendResult(
            verdict="retry", provider_code=502, detail="Bad Gateway", description="Bad Gateway"
        ),
    ),
    "token revoked": (
        401,
        bot_error(401, "Unauthorized"),
        SendResult(
            verdict="halt", provider_code=401, detail="Unauthorized", description="Unauthorized"
        ),
    ),
    "wrong token path": (
        404,
        bot_error(404, "Not Found"),
        SendResult(verdict="halt", provider_code=404, detail="Not Found", description="Not Found"),
    ),
    "blocked by the user": (
        403,
        bot_error(403, "Forbidden: bot was blocked by the user"),
        SendResult(
            verdict="opted_out",
            provider_code=403,
            detail="Forbidden: bot was blocked by the user",
            description="Forbidden: bot was blocked by the user",
        ),
    ),
    "never started": (
        403,
        bot_error(403, "Forbidden: bot can't initiate conversation with a user"),
        SendResult(
            verdict="opted_out",
            provider_code=403,
            detail="Forbidden: bot can't initiate conversation with a user",
            description="Forbidden: bot can't initiate conversation with a user",
        ),
    ),
    "kicked from the group": (
        403,
        bot_error(403, "Forbidden: bot was kicked from the group chat"),
        SendResult(
            verdict="opted_out",
            provider_code=403,
            detail="Forbidden: bot was kicked from the group chat",
            description="Forbidden: bot was kicked from the group chat",
        ),
    ),
    "group migrated": (
        400,
        bot_error(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id=-1001234567890,
        ),
        SendResult(
            verdict="failed",
            provider_code=400,
            detail="Bad Request: group chat was upgraded to a supergroup chat",
            description="Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id="-1001234567890",
        ),
    ),
    "chat not found": (
        400,
        bot_error(400, "Bad Request: chat not found"),
        SendResult(
            verdict="failed",
            provider_code=400,
            detail="Bad Request: chat not found",
            description="Bad Request: chat not found",
        ),
    ),
    "conflict": (
        409,
        bot_error(409, "Conflict: can't use getUpdates method while webhook is active"),
        SendResult(
            verdict="failed",
            provider_code=409,
            detail="Conflict: can't use getUpdates method while webhook is active",
            description="Conflict: can't use getUpdates method while webhook is active",
        ),
    ),
    "entity too large": (
        413,
        bot_error(413, "Request Entity Too Large"),
        SendResult(
            verdict="failed",
            provider_code=413,
            detail="Request Entity Too Large",
            description="Request Entity Too Large",
        ),
    ),
    "description cut to 300": (
        400,
        bot_error(400, TOO_LONG),
        SendResult(
            verdict="failed", provider_code=400, detail=TOO_LONG[:300], description=TOO_LONG
        ),
    ),
    "unusable parameters are dropped": (
        429,
        bot_error(429, "Too Many Requests", retry_after=-3, migrate_to_chat_id="x"),
        SendResult(
            verdict="retry",
            provider_code=429,
            detail="Too Many Requests",
            description="Too Many Requests",
        ),
    ),
    "fractional retry_after": (
        429,
        bot_error(429, "Too Many Requests", retry_after=1.5),
        SendResult(
            verdict="retry",
            provider_code=429,
            retry_after_s=1.5,
            detail="Too Many Requests",
            description="Too Many Requests",
        ),
    ),
}
UNPARSEABLE: list[tuple[int, bytes, str]] = [
    (200, b"", "failed"),
    (200, b"<html>ok</html>", "failed"),
    (429, b"", "retry"),
    (500, b"<html><body>500 Internal Server Error</body></html>", "retry"),
    (502, b"Bad Gateway", "retry"),
    (503, b"\xff\xfe", "retry"),
    (401, b"", "halt"),
    (404, b"<html><head><title>404 Not Found</title></head></html>", "halt"),
    (403, b"Forbidden", "failed"),
    (400, b"[]", "failed"),
    (400, b'{"ok": false, "error_code": "400"}', "failed"),
    (429, b'{"ok": false, "error_code": true}', "retry"),
]


@pytest.mark.parametrize(("status", "body", "result"), ANSWERS.values(), ids=ANSWERS)
def test_answers(status: int, body: bytes, result: SendResult) -> None:
    assert classify(status, body) == result


@pytest.mark.parametrize(("status", "body", "verdict"), UNPARSEABLE)
def test_unparseable_answer_falls_back_to_http_status(
    status: int, body: bytes, verdict: str
) -> None:
    result = classify(status, body)
    assert (result.verdict, result.provider_code, result.message_id) == (verdict, None, None)
    assert result.detail == f"HTTP {status}: not a Bot API answer"


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
bot_like = st.fixed_dictionaries(
    {"ok": st.booleans()},
    optional={
        "error_code": json_values | st.integers(),
        "description": json_values,
        "result": json_values | st.fixed_dictionaries({"message_id": json_values}),
        "parameters": json_values
        | st.dictionaries(st.sampled_from(["retry_after", "migrate_to_chat_id"]), json_values),
    },
)
statuses = st.integers(100, 599)


def _check(result: SendResult) -> None:
    assert result.verdict in VERDICTS
    assert result.detail is None or len(result.detail) <= 300
    assert result.retry_after_s is None or result.retry_after_s >= 0
    msgspec.json.encode(result)


@given(statuses, st.binary(max_size=300))
def test_classify_never_raises_on_bytes(status: int, body: bytes) -> None:
    _check(classify(status, body))


@given(statuses, json_values | bot_like)
def test_classify_never_raises_on_json(status: int, value: Any) -> None:
    _check(classify(status, json.dumps(value).encode()))


short_text = st.text(max_size=24)
optional_text = st.none() | short_text
templates = st.builds(Template, name=short_text, language=short_text, category=optional_text)
media_refs = st.builds(
    MediaRef, url=optional_text, id=optional_text, filename=optional_text, voice=st.booleans()
)
locations = st.builds(
    Location,
    latitude=st.floats() | st.floats(-90, 90),
    longitude=st.floats() | st.floats(-180, 180),
    name=optional_text,
    address=optional_text,
)
button_lists = st.lists(
    st.builds(ButtonSpec, id=short_text | st.text(min_size=60, max_size=70), title=short_text),
    max_size=12,
)
message_ids = st.integers(-(10**20), 10**20).map(str)
commands = st.builds(
    Command,
    command_id=st.text(max_size=8),
    conversation_id=st.just(f"telegram:7000000001:{CHAT}"),
    type=st.sampled_from([*CommandType.__args__, "sticker"]),  # type: ignore[attr-defined]
    author=st.sampled_from(["assistant", "human"]),
    text=optional_text | st.integers(190, 4100).map(lambda n: "é" * n),
    template=st.none() | templates,
    media=st.none() | media_refs,
    location=st.none() | locations,
    buttons=st.none() | button_lists,
    reply_to=optional_text | message_ids,
)
chat_ids = st.sampled_from([CHAT, GROUP]) | st.integers(-(10**20), 10**20).map(str) | short_text


@settings(max_examples=500)
@given(commands, chat_ids)
def test_build_request_raises_only_invalid_command(command: Command, chat: str) -> None:
    try:
        request = build_request(command, chat)
    except InvalidCommand as exc:
        assert str(exc)
        return
    assert request.path.startswith("/")
    assert msgspec.json.decode(msgspec.json.encode(request.body)) == request.body
    chat_id = request.body.get("chat_id")
    assert chat_id is None or -(2**63) <= chat_id < 2**63
