"""WhatsApp sending: command → Graph request tables, Graph answer → verdict tables, properties.

Error bodies are shaped like Meta's (message, type, code, error_data, fbtrace_id), so the
tables exercise the same envelope the gateway meets in production (PLATFORM §5.2, §5.3).
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
from adapters.whatsapp import build_request, classify

NUMBER = "106540352242922"
PATH = f"/{NUMBER}/messages"
WA_ID = "5511987650000"
BSUID = "BR.8812345"
WAMID = "wamid.HBgNNTUxMTk4NzY1MDAwMBUCABIYFjNFQjBDNzk2QjM1RjU0MDQyQzZFNEIA"
INBOUND = "wamid.HBgNNTUxMTk4NzY1MDAwMBUCABIYFjNFQjBDOTk5OTk5OTk5OTk5OTk5OTkA"
VERDICTS = set(Verdict.__args__)  # type: ignore[attr-defined]


def cmd(type_: str, **fields: Any) -> Command:
    conversation = f"whatsapp:{NUMBER}:{WA_ID}"
    return Command(command_id="cmd-42", conversation_id=conversation, type=type_, **fields)  # type: ignore[arg-type]


def msg(type_: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The body every message send shares, in the order the adapter writes it."""
    to = {"recipient": extra.pop("recipient")} if "recipient" in extra else {"to": "+" + WA_ID}
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", **to}
    return {**body, "type": type_, type_: payload, **extra, "biz_opaque_callback_data": "cmd-42"}


BUTTONS = [ButtonSpec("yes", "Yes"), ButtonSpec("no", "No")]
ORDER_COMPONENTS = [
    {"type": "body", "parameters": [{"type": "text", "text": "A-1093"}]},
    {
        "type": "button",
        "sub_type": "quick_reply",
        "index": "0",
        "parameters": [{"type": "payload", "payload": "ORDER_A1093_OK"}],
    },
]
REPLIES = [
    {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
    {"type": "reply", "reply": {"id": "no", "title": "No"}},
]
LIMIT_BUTTONS = [ButtonSpec(c * 256, c * 20) for c in "xyz"]
LIMIT_ACTION = {
    "buttons": [{"type": "reply", "reply": {"id": c * 256, "title": c * 20}} for c in "xyz"]
}

# (command, contact_id, last_inbound_id, expected body); the path is always PATH.
VALID = {
    "text": (
        cmd("text", text="Olá! Como posso ajudar?"),
        WA_ID,
        None,
        msg("text", {"body": "Olá! Como posso ajudar?", "preview_url": False}),
    ),
    "text quoting": (
        cmd("text", text="Sim", reply_to=WAMID),
        WA_ID,
        INBOUND,
        msg("text", {"body": "Sim", "preview_url": False}, context={"message_id": WAMID}),
    ),
    "text to a BSUID": (
        cmd("text", text="Oi"),
        BSUID,
        None,
        msg("text", {"body": "Oi", "preview_url": False}, recipient=BSUID),
    ),
    "text of 4096 chars": (
        cmd("text", text="a" * 4096),
        WA_ID,
        None,
        msg("text", {"body": "a" * 4096, "preview_url": False}),
    ),
    "template": (
        cmd("template", template=Template("order_ready", "en_US", ORDER_COMPONENTS, "utility")),
        WA_ID,
        None,
        msg(
            "template",
            {"name": "order_ready", "language": {"code": "en_US"}, "components": ORDER_COMPONENTS},
        ),
    ),
    "template without components, quoting": (
        cmd("template", template=Template("hello_world", "en_US"), reply_to=WAMID),
        WA_ID,
        None,
        msg(
            "template",
            {"name": "hello_world", "language": {"code": "en_US"}},
            context={"message_id": WAMID},
        ),
    ),
    "image by link with caption": (
        cmd("image", media=MediaRef(url="https://cdn.example.com/a.jpg"), text="Your receipt"),
        WA_ID,
        None,
        msg("image", {"link": "https://cdn.example.com/a.jpg", "caption": "Your receipt"}),
    ),
    "image by id": (
        cmd("image", media=MediaRef(id="1479537139650973")),
        WA_ID,
        None,
        msg("image", {"id": "1479537139650973"}),
    ),
    "video with caption": (
        cmd("video", media=MediaRef(id="2214541832"), text="How to"),
        WA_ID,
        None,
        msg("video", {"id": "2214541832", "caption": "How to"}),
    ),
    "document with filename and caption": (
        cmd("document", media=MediaRef(id="771", filename="invoice.pdf"), text="Your invoice"),
        WA_ID,
        None,
        msg("document", {"id": "771", "caption": "Your invoice", "filename": "invoice.pdf"}),
    ),
    "audio drops caption and filename": (
        cmd("audio", media=MediaRef(url="https://x.test/a.ogg", filename="a.ogg"), text="hi"),
        WA_ID,
        None,
        msg("audio", {"link": "https://x.test/a.ogg"}),
    ),
    "location with name and address": (
        cmd("location", location=Location(-23.5505, -46.6333, "Loja Centro", "Rua A, 1")),
        WA_ID,
        None,
        msg(
            "location",
            {
                "latitude": -23.5505,
                "longitude": -46.6333,
                "name": "Loja Centro",
                "address": "Rua A, 1",
            },
        ),
    ),
    "location, coordinates only": (
        cmd("location", location=Location(90.0, -180.0)),
        WA_ID,
        None,
        msg("location", {"latitude": 90.0, "longitude": -180.0}),
    ),
    "interactive buttons": (
        cmd("interactive", text="Confirm booking?", buttons=BUTTONS),
        WA_ID,
        None,
        msg(
            "interactive",
            {
                "type": "button",
                "body": {"text": "Confirm booking?"},
                "action": {"buttons": REPLIES},
            },
        ),
    ),
    "interactive at the limits": (
        cmd("interactive", text="b" * 1024, buttons=LIMIT_BUTTONS),
        WA_ID,
        None,
        msg(
            "interactive", {"type": "button", "body": {"text": "b" * 1024}, "action": LIMIT_ACTION}
        ),
    ),
    "reaction": (
        cmd("reaction", text="👍", reply_to=WAMID),
        WA_ID,
        None,
        msg("reaction", {"message_id": WAMID, "emoji": "👍"}),
    ),
    "reaction removed": (
        cmd("reaction", reply_to=WAMID),
        BSUID,
        None,
        msg("reaction", {"message_id": WAMID, "emoji": ""}, recipient=BSUID),
    ),
    "typing on the last inbound": (
        cmd("typing"),
        WA_ID,
        INBOUND,
        {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": INBOUND,
            "typing_indicator": {"type": "text"},
        },
    ),
    "read prefers reply_to": (
        cmd("read", reply_to=WAMID),
        WA_ID,
        INBOUND,
        {"messaging_product": "whatsapp", "status": "read", "message_id": WAMID},
    ),
}


@pytest.mark.parametrize(("command", "contact", "last", "body"), VALID.values(), ids=VALID)
def test_build_request(command: Command, contact: str, last: str | None, body: Any) -> None:
    request = build_request(command, NUMBER, contact, last)
    assert request == ProviderRequest(PATH, body)
    assert list(request.body) == list(body)  # same keys, same order
    assert msgspec.json.decode(msgspec.json.encode(request.body)) == body


def _media(type_: str, **ref: Any) -> Command:
    return cmd(type_, media=MediaRef(**ref))


def _buttons(*pairs: tuple[str, str]) -> Command:
    return cmd("interactive", text="Pick one", buttons=[ButtonSpec(i, t) for i, t in pairs])


# (command, contact_id, last_inbound_id, what the error message must say)
INVALID = {
    "text missing": (cmd("text"), WA_ID, None, "text: text is required"),
    "text empty": (cmd("text", text=""), WA_ID, None, "text is required"),
    "text blank": (cmd("text", text=" \n "), WA_ID, None, "must not be blank"),
    "text too long": (cmd("text", text="a" * 4097), WA_ID, None, "longer than 4096"),
    "template missing": (cmd("template"), WA_ID, None, "template object is required"),
    "template nameless": (
        cmd("template", template=Template("", "en_US")),
        WA_ID,
        None,
        "name and language are required",
    ),
    "template languageless": (
        cmd("template", template=Template("hello", "")),
        WA_ID,
        None,
        "name and language are required",
    ),
    "image without media": (cmd("image", text="x"), WA_ID, None, "exactly one of url or id"),
    "image, empty media": (_media("image"), WA_ID, None, "exactly one of url or id"),
    "image, url and id": (_media("image", url="https://a", id="1"), WA_ID, None, "exactly one"),
    "video, empty url": (_media("video", url=""), WA_ID, None, "exactly one of url or id"),
    "caption too long": (
        cmd("document", media=MediaRef(id="1"), text="c" * 1025),
        WA_ID,
        None,
        "caption is longer than 1024",
    ),
    "location missing": (cmd("location"), WA_ID, None, "location object is required"),
    "latitude off the globe": (
        cmd("location", location=Location(90.5, 0.0)),
        WA_ID,
        None,
        "latitude must be between -90 and 90",
    ),
    "longitude off the globe": (
        cmd("location", location=Location(0.0, -180.01)),
        WA_ID,
        None,
        "longitude must be between -180 and 180",
    ),
    "latitude NaN": (
        cmd("location", location=Location(float("nan"), 0.0)),
        WA_ID,
        None,
        "latitude",
    ),
    "interactive without buttons": (
        cmd("interactive", text="Pick"),
        WA_ID,
        None,
        "needs 1 to 3 buttons, got 0",
    ),
    "interactive, 4 buttons": (
        _buttons(("a", "A"), ("b", "B"), ("c", "C"), ("d", "D")),
        WA_ID,
        None,
        "needs 1 to 3 buttons, got 4",
    ),
    "interactive without body": (
        cmd("interactive", buttons=BUTTONS),
        WA_ID,
        None,
        "interactive: text is required",
    ),
    "interactive body too long": (
        cmd("interactive", text="b" * 1025, buttons=BUTTONS),
        WA_ID,
        None,
        "longer than 1024",
    ),
    "button title empty": (_buttons(("a", "")), WA_ID, None, "button title must be 1-20"),
    "button title too long": (_buttons(("a", "t" * 21)), WA_ID, None, "title must be 1-20"),
    "button id empty": (_buttons(("", "A")), WA_ID, None, "button id must be 1-256"),
    "button id too long": (_buttons(("i" * 257, "A")), WA_ID, None, "id must be 1-256"),
    "button ids repeated": (
        _buttons(("a", "A"), ("a", "B")),
        WA_ID,
        None,
        "button ids must be unique",
    ),
    "reaction without target": (cmd("reaction", text="👍"), WA_ID, None, "reply_to"),
    "typing with nothing to read": (cmd("typing"), WA_ID, None, "no message to mark read"),
    "read with nothing to read": (cmd("read"), WA_ID, None, "read: no message to mark read"),
    "handoff": (cmd("handoff"), WA_ID, None, "handoff is a control command"),
    "handback": (cmd("handback"), WA_ID, None, "handback is a control command"),
    "unknown type": (cmd("carousel"), WA_ID, None, "unknown command type 'carousel'"),
    "contact with +": (cmd("text", text="x"), "+" + WA_ID, None, "neither a wa_id nor a BSUID"),
    "contact empty": (cmd("text", text="x"), "", None, "neither a wa_id nor a BSUID"),
    "contact not an id": (cmd("text", text="x"), "ana", None, "neither a wa_id nor a BSUID"),
    "command_id too long for callback data": (
        Command(command_id="c" * 513, conversation_id="c", type="text", text="x"),
        WA_ID,
        None,
        "command_id is longer than 512",
    ),
}


@pytest.mark.parametrize(("command", "contact", "last", "problem"), INVALID.values(), ids=INVALID)
def test_invalid_command(command: Command, contact: str, last: str | None, problem: str) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(problem)):
        build_request(command, NUMBER, contact, last)


# --- classify ---------------------------------------------------------------------------------


def graph_error(code: Any, message: str, details: str | None = None, **extra: Any) -> bytes:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error.update(extra)
    error["fbtrace_id"] = TRACE
    return json.dumps({"error": error}).encode()


THROUGHPUT = "Cloud API message throughput has been reached."
COUNTRY = "(#130497) Business account is restricted from messaging users in this country."
RE_ENGAGEMENT = (
    "Message failed to send because more than 24 hours have passed since the customer last "
    "replied to this number."
)
ECOSYSTEM = "(#131049) This message was not delivered to maintain healthy ecosystem engagement."
STOPPED_MARKETING = (
    "(#131050) Unable to deliver the message. This recipient has chosen to stop receiving "
    "marketing messages on WhatsApp from your business."
)
PAIR_RATE = "(#131056) (Business Account, Consumer Account) pair rate limit hit"
PERMISSION = "Permission is either not granted or has been removed."
SYNCING = (
    "When you send a message from a template, the template syncing process can take up to 10 "
    "minutes to complete. Wait a few minutes, and then try sending your message again."
)

# (HTTP status, error.code, error.message, error_data.details, expected verdict): a row for
# every code PLATFORM §5.3 lists (and 2494100, 134101), one per range's ends.
ERRORS: list[tuple[int, int, str, str | None, str]] = [
    (401, 0, "(#0) Authentication Error", None, "halt"),
    (400, 1, "(#1) An unknown error occurred", None, "retry"),
    (503, 2, "(#2) Service temporarily unavailable", None, "retry"),
    (500, 3, "(#3) Application does not have the capability to make this API call.", None, "halt"),
    (429, 4, "(#4) Application request limit reached", None, "retry"),
    (403, 10, "(#10) Application does not have permission for this action", None, "halt"),
    (400, 100, "(#100) Invalid parameter", "Parameter 'to' is invalid", "failed"),
    (401, 190, "Error validating access token: Session has expired on Friday.", None, "halt"),
    (403, 200, "(#200) Permissions error", None, "halt"),
    (403, 299, "(#299) Permission denied", None, "halt"),
    (403, 368, "(#368) Temporarily blocked for policies violations", None, "halt"),
    (429, 80007, "(#80007) Rate limit issues", None, "retry"),
    (429, 130429, "(#130429) Rate limit hit", THROUGHPUT, "retry"),
    (400, 130472, "(#130472) User's number is part of an experiment", None, "failed"),
    (403, 130497, COUNTRY, None, "country_blocked"),
    (500, 131000, "(#131000) Something went wrong", None, "retry"),
    (403, 131005, "(#131005) Access denied", PERMISSION, "halt"),
    (400, 131008, "(#131008) Required parameter is missing", "text['body'] is missing", "failed"),
    (400, 131009, "(#131009) Parameter value is not valid", None, "failed"),
    (500, 131016, "(#131016) Service unavailable", None, "retry"),
    (400, 131021, "(#131021) Recipient cannot be sender", None, "failed"),
    (400, 131026, "(#131026) Message Undeliverable.", None, "undeliverable"),
    (403, 131031, "(#131031) Business Account locked", None, "halt"),
    (400, 131037, "(#131037) WhatsApp provided number needs display name approval", None, "failed"),
    (400, 131042, "(#131042) Business eligibility payment issue", None, "halt"),
    (400, 131045, "(#131045) Incorrect certificate", None, "halt"),
    (400, 131047, "(#131047) Re-engagement message", RE_ENGAGEMENT, "window_closed"),
    (429, 131048, "(#131048) Spam rate limit hit", None, "retry"),
    (400, 131049, ECOSYSTEM, None, "held"),
    (400, 131050, STOPPED_MARKETING, None, "opted_out"),
    (400, 131051, "(#131051) Unsupported message type", None, "failed"),
    (400, 131052, "(#131052) Media download error", None, "failed"),
    (400, 131053, "(#131053) Media upload error", None, "failed"),
    (429, 131056, PAIR_RATE, None, "retry_recipient"),
    (400, 131057, "(#131057) Account in maintenance mode", None, "retry"),
    (400, 131062, "(#131062) Business-scoped user id is not allowed", None, "failed"),
    (400, 131063, "(#131063) Marketing templates disabled for Cloud API", None, "failed"),
    (400, 131064, "(#131064) Messaging limit for template violations", None, "failed"),
    (400, 132000, "(#132000) Number of parameters does not match", None, "failed"),
    (400, 132001, "(#132001) Template name does not exist in the translation", None, "failed"),
    (400, 132015, "(#132015) Template is paused", None, "failed"),
    (400, 132016, "(#132016) Template is disabled", None, "failed"),
    (503, 133004, "(#133004) Server temporarily unavailable", None, "retry"),
    (400, 133010, "(#133010) Account not registered", None, "failed"),
    (400, 134101, "(#134101) Your template is still syncing", SYNCING, "retry"),
    (400, 135000, "(#135000) Generic user error", None, "failed"),
    (400, 130403, "(#130403) Unknown", None, "failed"),
    (503, 2494100, "(#2494100) Account in maintenance mode", None, "retry"),
    (500, 987654, "(#987654) A code nobody documented", None, "failed"),
]
TRACE = "AazFu3L2QmXjRzg5cPQbJ1x"


@pytest.mark.parametrize(("status", "code", "message", "details", "verdict"), ERRORS)
def test_graph_error_codes(
    status: int, code: int, message: str, details: str | None, verdict: str
) -> None:
    result = classify(status, graph_error(code, message, details, error_subcode=2494010))
    expected = f"{message}: {details}" if details else message
    assert (
        result
        == SendResult(
            verdict=verdict,  # type: ignore[arg-type]
            provider_code=code,
            detail=expected[:300],
            provider_title=message,
            provider_detail=details,
            fbtrace_id=TRACE,
        )
    )


SENT_TEXT = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": "+5511987650000", "wa_id": "5511987650000"}],
    "messages": [{"id": WAMID}],
}
SENT_TEMPLATE = {**SENT_TEXT, "messages": [{"id": WAMID, "message_status": "accepted"}]}
STRING_ERROR_DATA = {
    "error": {
        "message": "(#100) Invalid parameter",
        "type": "OAuthException",
        "code": 100,
        "error_data": "Invalid parameter",
        "fbtrace_id": "A1b2C3",
    }
}

# (HTTP status, body, expected result)
ANSWERS: dict[str, tuple[int, bytes, SendResult]] = {
    "sent": (200, json.dumps(SENT_TEXT).encode(), SendResult(verdict="sent", message_id=WAMID)),
    "paced template": (
        200,
        json.dumps(SENT_TEMPLATE).encode(),
        SendResult(verdict="sent", message_id=WAMID),
    ),
    "marked read": (200, b'{"success":true}', SendResult(verdict="sent")),
    "error_data is a string": (
        400,
        json.dumps(STRING_ERROR_DATA).encode(),
        SendResult(
            verdict="failed",
            provider_code=100,
            detail="(#100) Invalid parameter",
            provider_title="(#100) Invalid parameter",
            fbtrace_id="A1b2C3",
        ),
    ),
    "detail is cut to 300, the quoted words to 500": (
        400,
        graph_error(131047, "(#131047) Re-engagement message", "x" * 600),
        SendResult(
            verdict="window_closed",
            provider_code=131047,
            detail=("(#131047) Re-engagement message: " + "x" * 600)[:300],
            provider_title="(#131047) Re-engagement message",
            provider_detail="x" * 500,
            fbtrace_id=TRACE,
        ),
    ),
    "code as a string is no code": (
        429,
        graph_error("130429", "Rate limit hit"),
        SendResult(
            verdict="retry",
            detail="Rate limit hit",
            provider_title="Rate limit hit",
            fbtrace_id=TRACE,
        ),
    ),
    "code as a bool is no code": (
        401,
        graph_error(True, "odd"),
        SendResult(verdict="halt", detail="odd", provider_title="odd", fbtrace_id=TRACE),
    ),
    "no fbtrace_id, a message that is no string": (
        400,
        json.dumps({"error": {"code": 131050, "message": 7, "fbtrace_id": None}}).encode(),
        SendResult(verdict="opted_out", provider_code=131050),
    ),
}
NO_ERROR: list[tuple[int, bytes, str]] = [
    (200, b"", "failed"),
    (200, b'{"messages": []}', "failed"),
    (200, b'{"success": false}', "failed"),
    (201, b'{"messages": [{"id": ""}]}', "failed"),
    (500, json.dumps(SENT_TEXT).encode(), "retry"),
    (429, b"", "retry"),
    (500, b"<html><body>Internal Server Error</body></html>", "retry"),
    (502, b"Bad Gateway", "retry"),
    (503, b"\xff\xfe\x00garbage", "retry"),
    (599, b"{", "retry"),
    (401, b"", "halt"),
    (403, b"<html>Forbidden</html>", "halt"),
    (404, b"Not Found", "failed"),
    (400, b"{}", "failed"),
    (400, b"[1, 2]", "failed"),
    (400, b'{"error": "bad"}', "failed"),
    (302, b"", "failed"),
]


@pytest.mark.parametrize(("status", "body", "result"), ANSWERS.values(), ids=ANSWERS)
def test_answers(status: int, body: bytes, result: SendResult) -> None:
    assert classify(status, body) == result


@pytest.mark.parametrize(("status", "body", "verdict"), NO_ERROR)
def test_no_graph_error_falls_back_to_http_status(status: int, body: bytes, verdict: str) -> None:
    result = classify(status, body)
    assert (result.verdict, result.provider_code, result.message_id) == (verdict, None, None)
    assert result.detail == f"HTTP {status}: not a Graph API answer"


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
error_keys = st.sampled_from(["code", "message", "error_data", "error_subcode", "type"])
graph_like = st.fixed_dictionaries({"error": st.dictionaries(error_keys, json_values)}) | (
    st.dictionaries(st.sampled_from(["messages", "success", "contacts"]), json_values)
)
statuses = st.integers(100, 599)


def _check(result: SendResult) -> None:
    assert result.verdict in VERDICTS
    assert result.detail is None or len(result.detail) <= 300
    msgspec.json.encode(result)


@given(statuses, st.binary(max_size=300))
def test_classify_never_raises_on_bytes(status: int, body: bytes) -> None:
    _check(classify(status, body))


@given(statuses, json_values | graph_like)
def test_classify_never_raises_on_json(status: int, value: Any) -> None:
    _check(classify(status, json.dumps(value).encode()))


# What a decoded command can hold: JSON values only (no NaN or infinity).
decoded_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
short_text = st.text(max_size=24)
long_text = st.integers(1015, 4100).map(lambda n: "é" * n)
optional_text = st.none() | short_text
templates = st.builds(
    Template,
    name=short_text,
    language=short_text,
    components=st.lists(st.dictionaries(st.text(max_size=5), decoded_json, max_size=3)),
    category=optional_text,
)
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
button_lists = st.lists(st.builds(ButtonSpec, id=short_text, title=short_text), max_size=5)
commands = st.builds(
    Command,
    command_id=st.text(max_size=8),
    conversation_id=st.just(f"whatsapp:{NUMBER}:{WA_ID}"),
    type=st.sampled_from([*CommandType.__args__, "sticker"]),  # type: ignore[attr-defined]
    author=st.sampled_from(["assistant", "human"]),
    text=optional_text | long_text,
    template=st.none() | templates,
    media=st.none() | media_refs,
    location=st.none() | locations,
    buttons=st.none() | button_lists,
    reply_to=optional_text | st.just(WAMID),
)


@settings(max_examples=500)
@given(
    commands,
    st.sampled_from([WA_ID, BSUID]) | st.text(max_size=16),
    st.none() | st.sampled_from([INBOUND, ""]),
)
def test_build_request_raises_only_invalid_command(
    command: Command, contact: str, last: str | None
) -> None:
    try:
        request = build_request(command, NUMBER, contact, last)
    except InvalidCommand as exc:
        assert str(exc)
        return
    assert request.path == PATH
    assert msgspec.json.decode(msgspec.json.encode(request.body)) == request.body
