"""Messenger and Instagram sending: command → Send API request tables, Send API answer →
verdict tables, properties, and the same requests and answers over real HTTP against the
stand-in Send API (tests/fakes/send_api.py).

Error bodies are shaped like Meta's (message, type, code, error_subcode, fbtrace_id), so the
tables exercise the envelope the gateway meets in production (PLATFORM-MORE §4.5).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.account import Account
from adapters.meta_messaging import INSTAGRAM, MESSENGER, build_request, classify
from adapters.schema import (
    ButtonSpec,
    Command,
    CommandType,
    InvalidCommand,
    Location,
    MediaRef,
    SendResult,
    Template,
    Verdict,
)
from tests.fakes.send_api import FakeSendAPI

PAGE = "104400000000001"
PSID = "7010000000000001"
IG = "17841400000000001"
IGSID = "6800000000000001"
MID = "m_AAA111quotedmessage"
IG_MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDc4"
VERDICTS = set(Verdict.__args__)  # type: ignore[attr-defined]
PAGE_TOKEN = "EAAGm0PX4ZCpsBAPageTokenOfTheTestPage0123456789"
IG_TOKEN = "IGAAKxInstagramUserTokenOfTheTestAccount0123456789"


def cmd(type_: str, **fields: Any) -> Command:
    return Command(
        command_id="cmd-42",
        conversation_id=f"messenger:{PAGE}:{PSID}",
        type=type_,  # type: ignore[arg-type]
        **fields,
    )


def fb(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A Messenger message body, in the order the adapter writes it."""
    typed = extra.pop("typed", {"messaging_type": "RESPONSE"})
    return {
        "recipient": {"id": PSID},
        **typed,
        "message": {**message, "metadata": "gw:cmd-42"},
        **extra,
    }


def ig(message: dict[str, Any], **typed: Any) -> dict[str, Any]:
    """An Instagram message body: no messaging_type unless tagged, no metadata."""
    return {"recipient": {"id": IGSID}, **typed, "message": message}


def action(recipient: str, sender_action: str, **extra: Any) -> dict[str, Any]:
    return {"recipient": {"id": recipient}, "sender_action": sender_action, **extra}


BUTTONS = [ButtonSpec("DELIVERY_TODAY", "Entrega hoje"), ButtonSpec("PICKUP", "Retirar 🏬")]
QUICK = [
    {"content_type": "text", "title": "Entrega hoje", "payload": "DELIVERY_TODAY"},
    {"content_type": "text", "title": "Retirar 🏬", "payload": "PICKUP"},
]
LIMIT_BUTTONS = [
    ButtonSpec(f"{i:02d}" + "x" * 998, f"opção {i:02d}".ljust(20, "!")) for i in range(13)
]
LIMIT_QUICK = [{"content_type": "text", "title": b.title, "payload": b.id} for b in LIMIT_BUTTONS]
HUMAN = {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
IMAGE_URL = "https://cdn.example.com/catalogo/tenis-azul.jpg"

# (channel, command, expected body); the path is always /{account}/messages.
VALID: dict[str, tuple[str, Command, dict[str, Any]]] = {
    "messenger text": (
        "messenger",
        cmd("text", text="Olá! Entregamos hoje até 18h 🚚"),
        fb({"text": "Olá! Entregamos hoje até 18h 🚚"}),
    ),
    "messenger text quoting a message": (
        "messenger",
        cmd("text", text="Sim, temos no tamanho M.", reply_to=MID),
        fb({"text": "Sim, temos no tamanho M."}, reply_to={"mid": MID}),
    ),
    "messenger text of exactly 2000 characters": (
        "messenger",
        cmd("text", text="ç" * 2000),
        fb({"text": "ç" * 2000}),
    ),
    "messenger human agent after the window": (
        "messenger",
        cmd("text", text="Sou a Ana, do atendimento.", tag="HUMAN_AGENT", author="human"),
        fb({"text": "Sou a Ana, do atendimento."}, typed=HUMAN),
    ),
    "messenger image by url": (
        "messenger",
        cmd("image", media=MediaRef(url=IMAGE_URL)),
        fb({"attachment": {"type": "image", "payload": {"url": IMAGE_URL, "is_reusable": True}}}),
    ),
    "messenger image by attachment id": (
        "messenger",
        cmd("image", media=MediaRef(id="1857777774821032")),
        fb({"attachment": {"type": "image", "payload": {"attachment_id": "1857777774821032"}}}),
    ),
    "messenger audio": (
        "messenger",
        cmd("audio", media=MediaRef(url="https://cdn.example.com/a.mp3", voice=True)),
        fb(
            {
                "attachment": {
                    "type": "audio",
                    "payload": {"url": "https://cdn.example.com/a.mp3", "is_reusable": True},
                }
            }
        ),
    ),
    "messenger video, empty text is no caption": (
        "messenger",
        cmd("video", media=MediaRef(id="555"), text=""),
        fb({"attachment": {"type": "video", "payload": {"attachment_id": "555"}}}),
    ),
    "messenger document is a file, its filename is the url's": (
        "messenger",
        cmd("document", media=MediaRef(url="https://x.example/nota.pdf", filename="nota.pdf")),
        fb(
            {
                "attachment": {
                    "type": "file",
                    "payload": {"url": "https://x.example/nota.pdf", "is_reusable": True},
                }
            }
        ),
    ),
    "messenger quick replies": (
        "messenger",
        cmd("interactive", text="Como prefere receber?", buttons=BUTTONS),
        fb({"text": "Como prefere receber?", "quick_replies": QUICK}),
    ),
    "messenger 13 quick replies at every limit": (
        "messenger",
        cmd("interactive", text="Escolha", buttons=LIMIT_BUTTONS),
        fb({"text": "Escolha", "quick_replies": LIMIT_QUICK}),
    ),
    "messenger typing": ("messenger", cmd("typing"), action(PSID, "typing_on")),
    "messenger typing of a tagged human agent carries no tag": (
        "messenger",
        cmd("typing", tag="HUMAN_AGENT", author="human"),
        action(PSID, "typing_on"),
    ),
    "messenger read": ("messenger", cmd("read", reply_to=MID), action(PSID, "mark_seen")),
    "messenger reaction": (
        "messenger",
        cmd("reaction", text="❤️", reply_to=MID),
        action(PSID, "react", payload={"message_id": MID, "reaction": "❤️"}),
    ),
    "messenger reaction removed": (
        "messenger",
        cmd("reaction", text="", reply_to=MID),
        action(PSID, "unreact", payload={"message_id": MID}),
    ),
    "instagram text": (
        "instagram",
        cmd("text", text="Tem sim! Tamanho M disponível."),
        ig({"text": "Tem sim! Tamanho M disponível."}),
    ),
    "instagram text of exactly 1000 bytes (500 two-byte letters)": (
        "instagram",
        cmd("text", text="é" * 500),
        ig({"text": "é" * 500}),
    ),
    "instagram quotes nothing (undocumented there)": (
        "instagram",
        cmd("text", text="Respondendo", reply_to=IG_MID),
        ig({"text": "Respondendo"}),
    ),
    "instagram human agent": (
        "instagram",
        cmd("text", text="Aqui é o João.", tag="HUMAN_AGENT", author="human"),
        ig({"text": "Aqui é o João."}, **HUMAN),
    ),
    "instagram image by url, no is_reusable": (
        "instagram",
        cmd("image", media=MediaRef(url=IMAGE_URL)),
        ig({"attachment": {"type": "image", "payload": {"url": IMAGE_URL}}}),
    ),
    "instagram pdf by attachment id": (
        "instagram",
        cmd("document", media=MediaRef(id="8123")),
        ig({"attachment": {"type": "file", "payload": {"attachment_id": "8123"}}}),
    ),
    "instagram quick replies": (
        "instagram",
        cmd("interactive", text="Como prefere receber?", buttons=BUTTONS),
        ig({"text": "Como prefere receber?", "quick_replies": QUICK}),
    ),
    "instagram typing": ("instagram", cmd("typing"), action(IGSID, "typing_on")),
    "instagram read": ("instagram", cmd("read"), action(IGSID, "mark_seen")),
    "instagram reaction": (
        "instagram",
        cmd("reaction", text="🔥", reply_to=IG_MID),
        action(IGSID, "react", payload={"message_id": IG_MID, "reaction": "🔥"}),
    ),
    "instagram reaction removed (text null, as on WhatsApp)": (
        "instagram",
        cmd("reaction", reply_to=IG_MID),
        action(IGSID, "unreact", payload={"message_id": IG_MID}),
    ),
    "instagram takes a command id too long for Messenger's metadata": (
        "instagram",
        Command(command_id="c" * 998, conversation_id="x", type="text", text="oi"),
        ig({"text": "oi"}),
    ),
}


def _account_of(channel: str) -> tuple[str, str]:
    return (PAGE, PSID) if channel == "messenger" else (IG, IGSID)


@pytest.mark.parametrize(("channel", "command", "body"), VALID.values(), ids=list(VALID))
def test_build_request(channel: str, command: Command, body: dict[str, Any]) -> None:
    account, contact = _account_of(channel)
    request = build_request(channel, command, account, contact, "m_last_inbound")
    assert request.path == f"/{account}/messages"
    assert request.body == body


ONE_TOO_MANY = [ButtonSpec(str(i), f"opção {i}") for i in range(14)]

# (channel, command, what the message must say)
INVALID: dict[str, tuple[str, Command, str]] = {
    "template on messenger": (
        "messenger",
        cmd("template", template=Template("order_ready", "pt_BR")),
        "template is WhatsApp's",
    ),
    "template on instagram": (
        "instagram",
        cmd("template", template=Template("order_ready", "pt_BR")),
        "HUMAN_AGENT",
    ),
    "location": (
        "messenger",
        cmd("location", location=Location(-23.55, -46.63, "Loja")),
        "cannot send one",
    ),
    "handoff reaching the adapter": ("instagram", cmd("handoff"), "control command"),
    "text missing": ("messenger", cmd("text"), "text is required"),
    "text blank": ("instagram", cmd("text", text="  \n "), "must not be blank"),
    "messenger text of 2001 characters": (
        "messenger",
        cmd("text", text="a" * 2001),
        "at most 2000 characters (this text has 2001)",
    ),
    "instagram text of 501 characters but 1002 bytes": (
        "instagram",
        cmd("text", text="é" * 501),
        "at most 1000 bytes of UTF-8 (this text is 1002 bytes",
    ),
    "instagram text of 251 emoji": (
        "instagram",
        cmd("text", text="😀" * 251),
        "1004 bytes",
    ),
    "media with a caption": (
        "messenger",
        cmd("image", media=MediaRef(url=IMAGE_URL), text="Olha o modelo novo"),
        "carries no caption; send the text as a text command of its own",
    ),
    "instagram media with a caption": (
        "instagram",
        cmd("video", media=MediaRef(id="9"), text="legenda"),
        "Instagram media carries no caption",
    ),
    "media with neither url nor id": ("messenger", cmd("image", media=MediaRef()), "exactly one"),
    "media with both url and id": (
        "instagram",
        cmd("audio", media=MediaRef(url=IMAGE_URL, id="1")),
        "exactly one of url or id",
    ),
    "media object missing": ("messenger", cmd("document"), "exactly one of url or id"),
    "interactive without buttons": (
        "messenger",
        cmd("interactive", text="Escolha"),
        "needs 1 to 13 buttons (quick replies), got 0",
    ),
    "interactive with 14 buttons": (
        "instagram",
        cmd("interactive", text="Escolha", buttons=ONE_TOO_MANY),
        "got 14",
    ),
    "interactive title of 21 characters": (
        "messenger",
        cmd("interactive", text="?", buttons=[ButtonSpec("a", "x" * 21)]),
        "must be 1-20 characters",
    ),
    "interactive empty title": (
        "messenger",
        cmd("interactive", text="?", buttons=[ButtonSpec("a", "")]),
        "1-20 characters",
    ),
    "interactive payload of 1001 characters": (
        "instagram",
        cmd("interactive", text="?", buttons=[ButtonSpec("p" * 1001, "Sim")]),
        "button id must be 1-1000 characters (the one titled 'Sim' has 1001)",
    ),
    "interactive empty payload": (
        "messenger",
        cmd("interactive", text="?", buttons=[ButtonSpec("", "Sim")]),
        "button id must be 1-1000",
    ),
    "interactive without text": (
        "messenger",
        cmd("interactive", buttons=BUTTONS),
        "interactive: text is required",
    ),
    "interactive text over instagram's bytes": (
        "instagram",
        cmd("interactive", text="ã" * 600, buttons=BUTTONS),
        "1200 bytes",
    ),
    "reaction without reply_to": ("messenger", cmd("reaction", text="👍"), "reply_to"),
    "reaction of blanks": (
        "instagram",
        cmd("reaction", text=" ", reply_to=IG_MID),
        "must be an emoji",
    ),
    "a retired tag": (
        "messenger",
        cmd("text", text="Seu pedido saiu", tag="POST_PURCHASE_UPDATE", author="human"),
        "HUMAN_AGENT is the only tag",
    ),
    "human agent tag on the assistant's message": (
        "messenger",
        cmd("text", text="Posso ajudar?", tag="HUMAN_AGENT"),
        'set author to "human"',
    ),
    "human agent tag on an assistant's typing": (
        "instagram",
        cmd("typing", tag="HUMAN_AGENT"),
        'set author to "human"',
    ),
    "command id too long for messenger's metadata": (
        "messenger",
        Command(command_id="c" * 998, conversation_id="x", type="text", text="oi"),
        "command_id is longer than 997 characters",
    ),
}


@pytest.mark.parametrize(("channel", "command", "problem"), INVALID.values(), ids=list(INVALID))
def test_invalid_command(channel: str, command: Command, problem: str) -> None:
    account, contact = _account_of(channel)
    with pytest.raises(InvalidCommand) as raised:
        build_request(channel, command, account, contact, None)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("channel", "contact"), [("messenger", "PSID-7010"), ("instagram", ""), ("messenger", "٣٤٥")]
)
def test_a_contact_id_that_is_no_meta_user_id(channel: str, contact: str) -> None:
    name = "Messenger" if channel == "messenger" else "Instagram"
    with pytest.raises(InvalidCommand, match=f"is not a {name} user id"):
        build_request(channel, cmd("typing"), PAGE, contact, None)


# --- classify ---------------------------------------------------------------------------------


def error(code: int, message: str, subcode: int | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        body["error_subcode"] = subcode
    body.update(extra)
    body["fbtrace_id"] = "AmQ3TGKhhhDTjvlZY8HUaZk"
    return json.dumps({"error": body}).encode()


OUTSIDE = "(#10) This message is sent outside of allowed window."
# (http status, code, subcode, message, verdict)
ERRORS = [
    (500, 1200, None, "(#1200) Temporary send message failure. Please try again later.", "retry"),
    (503, 2, None, "(#2) An unexpected error has occurred. Please retry later.", "retry"),
    (500, 2, 1545133, "(#2) Service temporarily unavailable", "retry"),
    (429, 4, None, "(#4) Application request limit reached", "retry_account"),
    (400, 4, 2018022, "(#4) Too many send requests to phone numbers", "retry_account"),
    (400, 17, None, "(#17) User request limit reached", "retry_account"),
    (400, 32, None, "(#32) Page request limit reached", "retry_account"),
    (400, 613, None, "(#613) Calls to this API have exceeded the rate limit.", "retry_account"),
    (429, 80001, None, "There have been too many calls to this Page account.", "retry_account"),
    (
        429,
        80002,
        None,
        "There have been too many calls to this Instagram account.",
        "retry_account",
    ),
    (429, 80006, None, "There have been too many messenger api calls.", "retry_account"),
    (400, 10, 2018278, OUTSIDE, "failed"),
    (400, 10, 2534022, OUTSIDE, "failed"),
    (400, 10, 2018065, OUTSIDE + " You need page_messaging_subscriptions permission", "failed"),
    (
        400,
        10,
        2018108,
        "(#10) This person isn't receiving messages from you right now.",
        "opted_out",
    ),
    (400, 551, None, "(#551) This person isn't available right now.", "opted_out"),
    (400, 551, 1545041, "(#551) This person isn't available right now.", "opted_out"),
    (
        403,
        200,
        1545041,
        "(#200) Message Not Sent: This person isn't receiving messages",
        "opted_out",
    ),
    (400, 100, 2018001, "(#100) No matching user found", "opted_out"),
    (400, 2534014, None, "(#2534014) User not found", "opted_out"),
    (400, 100, 2534014, "(#100) User not found", "opted_out"),
    (400, 100, 2534001, "(#100) The thread was archived or deleted", "opted_out"),
    (400, 100, None, "(#100) Invalid parameter", "failed"),
    (400, 100, 2018109, "(#100) Attachment size exceeds allowable limit", "failed"),
    (400, 100, 2018034, "(#100) Message cannot be empty.", "failed"),
    (401, 190, None, "Invalid OAuth access token - Cannot parse access token", "halt"),
    (400, 190, 460, "Error validating access token: The session has been invalidated", "halt"),
    (500, 3, None, "(#3) Application does not have the capability to make this API call.", "halt"),
    (403, 10, None, "(#10) Application does not have permission for this action", "halt"),
    (403, 200, None, "(#200) Permissions error", "halt"),
    (403, 200, 2018028, "(#200) Cannot message users who are not admins ...", "halt"),
    (403, 230, None, "(#230) Requires pages_messaging permission", "halt"),
    (403, 299, None, "(#299) Requires extended permission", "halt"),
    (400, 10, 2018999, "(#10) A window problem Meta added later", "failed"),
    (500, 1, None, "An unknown error occurred", "retry"),
    (400, 368, None, "(#368) The action attempted has been deemed abusive", "failed"),
    (400, 2534025, None, "(#2534025) The private reply was already sent", "failed"),
    (400, 2534013, None, "(#2534013) Private reply limit reached", "failed"),
    (400, 9010, None, "No matching Instagram user", "failed"),
    (503, 9999, None, "(#9999) Something new", "retry"),
]


@pytest.mark.parametrize(("status", "code", "subcode", "message", "verdict"), ERRORS)
def test_send_api_error_codes(
    status: int, code: int, subcode: int | None, message: str, verdict: str
) -> None:
    result = classify(status, error(code, message, subcode))
    assert (result.verdict, result.provider_code) == (verdict, code)
    where = f"{code}/{subcode}" if subcode is not None else f"{code}"
    assert result.detail == f"{where}: {message}"[:300]
    assert result.message_id is None and result.retry_after_s is None
    # Meta's own words and trace id, as the delivery quotes them for Meta support
    assert (result.provider_title, result.fbtrace_id) == (message, "AmQ3TGKhhhDTjvlZY8HUaZk")


def usage(minutes: Any) -> dict[str, str]:
    value = {"type": "messenger", "call_count": 100, "estimated_time_to_regain_access": minutes}
    return {"X-Business-Use-Case-Usage": json.dumps({PAGE: [value]})}


@pytest.mark.parametrize(
    ("code", "headers", "extra", "wait_s"),
    [
        (80006, usage(3), {}, 180.0),
        (
            80001,
            {
                "x-business-use-case-usage": json.dumps(
                    {PAGE: [{}], "9": [{"estimated_time_to_regain_access": 2}]}
                )
            },
            {},
            120.0,
        ),
        (613, None, {"error_data": {"estimated_time_to_regain_access": 0.5}}, 30.0),
        (32, usage(1), {"error_data": {"estimated_time_to_regain_access": 4}}, 240.0),
        (80006, usage(0), {}, None),  # no longer throttled: plain backoff
        (80006, usage(True), {}, None),
        (80006, usage("5"), {}, None),
        (80006, {"X-Business-Use-Case-Usage": "{not json"}, {}, None),
        (4, None, {}, None),
        (551, usage(5), {}, None),  # only a rate limit waits for it
    ],
)
def test_rate_limits_wait_as_long_as_meta_says(
    code: int, headers: dict[str, str] | None, extra: dict[str, Any], wait_s: float | None
) -> None:
    result = classify(429, error(code, "throttled", **extra), headers)
    assert result.retry_after_s == wait_s


ANSWERS = [
    (
        200,
        {"recipient_id": PSID, "message_id": "m_XYZ"},
        SendResult(verdict="sent", message_id="m_XYZ"),
    ),
    (
        200,
        {"recipient_id": IGSID, "message_id": IG_MID},
        SendResult(verdict="sent", message_id=IG_MID),
    ),
    (200, {"recipient_id": PSID}, SendResult(verdict="sent")),
    (200, {}, SendResult(verdict="failed", detail="HTTP 200: not a Send API answer")),
    (
        200,
        {"message_id": ""},
        SendResult(verdict="failed", detail="HTTP 200: not a Send API answer"),
    ),
    (
        400,
        {"recipient_id": PSID, "message_id": "m_1"},
        SendResult(verdict="failed", detail="HTTP 400: not a Send API answer"),
    ),
    (429, {}, SendResult(verdict="retry", detail="HTTP 429: not a Send API answer")),
    (
        503,
        {"error": {"message": "Service Unavailable"}},
        SendResult(verdict="retry", detail="Service Unavailable"),
    ),
    (400, {"error": {"message": "Bad", "code": "100"}}, SendResult(verdict="failed", detail="Bad")),
    (401, {"error": {"code": True}}, SendResult(verdict="failed")),
]


@pytest.mark.parametrize(("status", "doc", "result"), ANSWERS)
def test_answers(status: int, doc: Any, result: SendResult) -> None:
    assert classify(status, json.dumps(doc).encode()) == result


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, b"<html><body>502 Bad Gateway</body></html>"),
        (404, b"<html>Not Found</html>"),
        (200, b""),
        (400, b'{"error": {"code": 100'),
        (500, b"\xff\xfe"),
    ],
)
def test_an_answer_that_is_not_json_is_retried(status: int, body: bytes) -> None:
    result = classify(status, body)
    assert result.verdict == "retry" and result.provider_code is None
    assert result.detail == f"HTTP {status}: the answer is not JSON"


@pytest.mark.parametrize(
    "leak",
    [
        PAGE_TOKEN,
        IG_TOKEN,
        "IGQVJWZA2xhbGx5T2xkSW5zdGFncmFtVG9rZW4",
        "https://graph.facebook.com/v21.0/me/messages?access_token=whatever-it-is&x=1",
    ],
)
def test_a_token_in_the_error_never_reaches_the_detail(leak: str) -> None:
    message = f"Malformed access token {leak} (see the docs)"
    result = classify(400, error(190, message))
    for said in (result.detail, result.provider_title):
        assert said is not None and "[redacted]" in said
        for secret in (PAGE_TOKEN, IG_TOKEN, "whatever-it-is", "IGQVJWZA2xhb"):
            assert secret not in said
    assert result.verdict == "halt"


def test_the_detail_is_cut_to_300_characters() -> None:
    result = classify(400, error(100, "(#100) " + "x" * 1000, 2018109))
    assert result.detail is not None and len(result.detail) == 300
    assert result.detail.startswith("100/2018109: (#100) xxx")


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
error_keys = st.sampled_from(["code", "message", "error_subcode", "type", "error_data"])
send_like = st.fixed_dictionaries({"error": st.dictionaries(error_keys, json_values)}) | (
    st.dictionaries(st.sampled_from(["recipient_id", "message_id"]), json_values)
)
header_maps = st.none() | st.dictionaries(
    st.sampled_from(["X-Business-Use-Case-Usage", "x-business-use-case-usage", "Other"]),
    st.text(max_size=40) | json_values.map(json.dumps),
    max_size=2,
)


def _check(result: SendResult) -> None:
    assert result.verdict in VERDICTS
    assert result.detail is None or len(result.detail) <= 300
    assert result.retry_after_s is None or result.retry_after_s > 0
    msgspec.json.encode(result)


@given(st.integers(100, 599), st.binary(max_size=300), header_maps)
def test_classify_never_raises_on_bytes(
    status: int, body: bytes, headers: dict[str, str] | None
) -> None:
    _check(classify(status, body, headers))


@given(st.integers(100, 599), json_values | send_like, header_maps)
def test_classify_never_raises_on_json(
    status: int, value: Any, headers: dict[str, str] | None
) -> None:
    _check(classify(status, json.dumps(value).encode(), headers))


short_text = st.text(max_size=24)
optional_text = st.none() | short_text
long_text = st.integers(480, 2100).map(lambda n: "é" * n)
commands = st.builds(
    Command,
    command_id=st.text(max_size=8) | st.just("c" * 998),
    conversation_id=st.just(f"messenger:{PAGE}:{PSID}"),
    type=st.sampled_from([*CommandType.__args__, "sticker"]),  # type: ignore[attr-defined]
    author=st.sampled_from(["assistant", "human"]),
    text=optional_text | long_text,
    template=st.none() | st.builds(Template, name=short_text, language=short_text),
    media=st.none()
    | st.builds(MediaRef, url=optional_text, id=optional_text, filename=optional_text),
    location=st.none() | st.builds(Location, latitude=st.floats(), longitude=st.floats()),
    buttons=st.none()
    | st.lists(st.builds(ButtonSpec, id=short_text, title=short_text), max_size=15),
    reply_to=optional_text | st.just(MID),
    tag=st.none() | st.sampled_from(["HUMAN_AGENT", "ACCOUNT_UPDATE", ""]),
)


@settings(max_examples=500)
@given(
    st.sampled_from(["messenger", "instagram"]),
    commands,
    st.sampled_from([PSID, IGSID]) | st.text(max_size=16),
    st.none() | st.just(MID),
)
def test_build_request_raises_only_invalid_command(
    channel: str, command: Command, contact: str, last: str | None
) -> None:
    try:
        request = build_request(channel, command, PAGE, contact, last)
    except InvalidCommand as exc:
        assert str(exc)
        return
    assert request.path == f"/{PAGE}/messages"
    assert msgspec.json.decode(msgspec.json.encode(request.body)) == request.body
    message = request.body.get("message", {})
    if channel == "instagram":  # what the request says holds Instagram's rules
        assert len(message.get("text", "").encode()) <= 1000
        assert "metadata" not in message and "reply_to" not in request.body
        assert request.body.get("messaging_type") in (None, "MESSAGE_TAG")
    if "tag" in request.body:
        assert command.author == "human" and request.body["tag"] == "HUMAN_AGENT"


# --- the same requests and answers over HTTP, against the stand-in Send API -------------------

ACCOUNTS = {
    "messenger": Account("messenger", PAGE, "support", PAGE_TOKEN, mps=40.0),
    "instagram": Account("instagram", IG, "sales", IG_TOKEN, mps=40.0),
}
CHANNELS = {"messenger": MESSENGER, "instagram": INSTAGRAM}


@pytest.fixture
async def fake() -> AsyncIterator[FakeSendAPI]:
    async with FakeSendAPI(pages={PAGE: PAGE_TOKEN}, accounts={IG: IG_TOKEN}) as api:
        yield api


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def send(
    http: aiohttp.ClientSession,
    fake: FakeSendAPI,
    channel: str,
    command: Command,
    *,
    account: Account | None = None,
    host: str | None = None,
) -> SendResult:
    """What the gateway does: the channel's request, POSTed, its answer classified."""
    account = account or ACCOUNTS[channel]
    base = host or (fake.messenger_url if channel == "messenger" else fake.instagram_url)
    _, contact = _account_of(channel)
    call = CHANNELS[channel].request(account, f"{base}/v21.0", command, contact, None, None)
    async with http.post(call.url, json=call.body, headers=call.headers) as resp:
        return classify(resp.status, await resp.read(), resp.headers)


@pytest.mark.parametrize(("channel", "command", "body"), VALID.values(), ids=list(VALID))
async def test_the_send_api_takes_every_request_built(
    http: aiohttp.ClientSession,
    fake: FakeSendAPI,
    channel: str,
    command: Command,
    body: dict[str, Any],
) -> None:
    result = await send(http, fake, channel, command)
    [request] = fake.requests
    assert (request.status, request.body, request.platform) == (200, body, channel)
    assert request.token == ACCOUNTS[channel].token
    assert result.verdict == "sent"
    if request.kind == "message":
        assert result.message_id == request.response["message_id"]
        prefix = "m_" if channel == "messenger" else "aWdfZ"
        assert result.message_id is not None and result.message_id.startswith(prefix)
    else:
        assert result.message_id is None
        assert request.response == {"recipient_id": body["recipient"]["id"]}


@pytest.mark.parametrize(
    ("code", "subcode", "verdict"),
    [
        (1200, None, "retry"),
        (2, None, "retry"),
        (613, None, "retry_account"),
        (10, 2018278, "failed"),
        (10, 2534022, "failed"),
        (10, 2018108, "opted_out"),
        (551, 1545041, "opted_out"),
        (200, 1545041, "opted_out"),
        (100, 2018001, "opted_out"),
        (100, 2018109, "failed"),
        (190, 460, "halt"),
        (10, None, "halt"),
        (200, 2018028, "halt"),
        (3, None, "halt"),
    ],
)
async def test_each_error_class_of_the_send_api(
    http: aiohttp.ClientSession, fake: FakeSendAPI, code: int, subcode: int | None, verdict: str
) -> None:
    fake.fail(code, subcode=subcode)
    result = await send(http, fake, "messenger", cmd("text", text="oi"))
    assert (result.verdict, result.provider_code) == (verdict, code)
    assert result.detail is not None and result.detail.startswith(
        f"{code}/{subcode}: " if subcode else f"{code}: "
    )
    assert (await send(http, fake, "messenger", cmd("text", text="de novo"))).verdict == "sent"


async def test_business_use_case_throttling_says_how_long_to_wait(
    http: aiohttp.ClientSession, fake: FakeSendAPI
) -> None:
    fake.fail(80002, regain_minutes=7, account_id=IG)
    result = await send(http, fake, "instagram", cmd("text", text="oi"))
    assert (result.verdict, result.provider_code, result.retry_after_s) == (
        "retry_account",
        80002,
        420.0,
    )
    assert fake.requests[0].status == 429


async def test_a_token_is_good_on_its_own_host_and_account_only(
    http: aiohttp.ClientSession, fake: FakeSendAPI
) -> None:
    oi = cmd("text", text="oi")
    other_host = await send(http, fake, "instagram", oi, host=fake.messenger_url)
    assert (other_host.verdict, other_host.provider_code) == ("halt", 190)
    stranger = Account("messenger", "104400000000009", "support", PAGE_TOKEN)
    not_owned = await send(http, fake, "messenger", cmd("text", text="oi"), account=stranger)
    assert (not_owned.verdict, not_owned.provider_code) == ("failed", 100)
    assert not_owned.detail is not None and "Object with ID '104400000000009'" in not_owned.detail
    wrong = Account("messenger", PAGE, "support", "EAAnotTheRightTokenAtAll000000000")
    assert (await send(http, fake, "messenger", cmd("typing"), account=wrong)).verdict == "halt"
    assert [r.status for r in fake.requests] == [401, 400, 401]


async def test_the_send_api_refuses_what_the_adapter_never_builds(
    http: aiohttp.ClientSession, fake: FakeSendAPI
) -> None:
    """The fake's own checks: a body the adapter would refuse is refused by Meta too."""
    url = f"{fake.messenger_url}/v21.0/{PAGE}/messages"
    headers = {"Authorization": f"Bearer {PAGE_TOKEN}"}
    untyped = {"recipient": {"id": PSID}, "message": {"text": "oi"}}
    too_long = {**untyped, "messaging_type": "RESPONSE", "message": {"text": "a" * 2001}}
    retired = {**untyped, "messaging_type": "MESSAGE_TAG", "tag": "ACCOUNT_UPDATE"}
    captioned = {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "oi", "attachment": {"type": "image", "payload": {"url": IMAGE_URL}}},
    }
    for body in (too_long, untyped, retired, captioned):
        async with http.post(url, json=body, headers=headers) as resp:
            assert classify(resp.status, await resp.read()).verdict == "failed"
    assert [r.response["error"]["code"] for r in fake.requests] == [100] * 4


async def test_the_account_call_rate_and_a_proxy_page_are_retried(
    http: aiohttp.ClientSession, fake: FakeSendAPI
) -> None:
    fake.enforce_rate(PAGE, 2)
    results = [await send(http, fake, "messenger", cmd("typing")) for _ in range(3)]
    assert [(r.verdict, r.provider_code) for r in results] == [
        ("sent", None),
        ("sent", None),
        ("retry_account", 613),  # the Page's limit: the whole Page holds back
    ]
    assert (await send(http, fake, "instagram", cmd("typing"))).verdict == "sent"  # per account
    fake.fail_status(502, b"<html><body>502 Bad Gateway</body></html>")
    behind_proxy = await send(http, fake, "instagram", cmd("text", text="oi"))
    assert (behind_proxy.verdict, behind_proxy.provider_code) == ("retry", None)


async def test_me_is_the_tokens_own_account(http: aiohttp.ClientSession, fake: FakeSendAPI) -> None:
    body = {"recipient": {"id": IGSID}, "message": {"text": "oi"}}
    url = f"{fake.instagram_url}/v21.0/me/messages"
    async with http.post(url, json=body, params={"access_token": IG_TOKEN}) as resp:
        result = classify(resp.status, await resp.read())
    assert result.verdict == "sent" and fake.requests[0].account_id == IG
    async with http.post(f"{fake.instagram_url}/v20.0/{IG}/messages", json=body) as resp:
        unknown_path = classify(resp.status, await resp.read())
    assert (unknown_path.verdict, unknown_path.provider_code) == ("failed", 2500)
