"""Sending WhatsApp through Twilio: command → Messages API request tables, Twilio answer →
verdict tables, properties, and the same requests and answers over real HTTP against the
stand-in Twilio API (tests/fakes/twilio_api.py).

Error bodies are shaped like Twilio's (`code`, `message`, `more_info`, `status`), so the
tables exercise what the gateway meets in production (PLATFORM-MORE §6.3).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.account import Account
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
from adapters.twilio import build_request, classify
from adapters.twilio._outbound import typing_url
from tests.fakes.twilio_api import FakeTwilioAPI

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f00dbabe" * 4
"""An auth token has the shape of 32 hex digits."""
KEY_SID = "SK" + "fedcba9876543210" * 2
KEY_SECRET = "tWiLiOaPiKeYsEcReT0123456789abcd"
SENDER = "+14155550100"
CONTACT = "5511987650000"
CALLBACK = "https://gateway.example.com/webhooks/twilio"
API = "https://api.twilio.com"
MESSAGES_URL = f"{API}/2010-04-01/Accounts/{SID}/Messages.json"
TYPING_URL = "https://messaging.twilio.com/v2/Indicators/Typing.json"
INBOUND = "SM" + "1234567890abcdef" * 2
QUOTED = "SM" + "aaaabbbbccccdddd" * 2
CONTENT = "HX" + "0123456789abcdef" * 2
IMAGE = "https://cdn.example.com/catalogo/tenis-azul.jpg"
VERDICTS = set(Verdict.__args__)  # type: ignore[attr-defined]

ACCOUNT = Account(
    "whatsapp", SENDER.lstrip("+"), "sales", f"{SID}:{TOKEN}", mps=80.0,
    display_phone_number=SENDER, mode="cloud_api", provider="twilio", callback_url=CALLBACK,
)  # fmt: skip
KEY_ACCOUNT = Account(
    "whatsapp", SENDER.lstrip("+"), "sales", f"{SID}:{KEY_SID}:{KEY_SECRET}", mps=80.0,
    display_phone_number=SENDER, mode="cloud_api", provider="twilio", callback_url=CALLBACK,
)  # fmt: skip


def cmd(type_: str, **fields: Any) -> Command:
    return Command(
        command_id="cmd-42",
        conversation_id=f"whatsapp:{ACCOUNT.account_id}:{CONTACT}",
        type=type_,  # type: ignore[arg-type]
        **fields,
    )


def message(**fields: str) -> dict[str, str]:
    """A Messages API form, in the order the adapter writes it."""
    return {
        "To": f"whatsapp:+{CONTACT}",
        "From": f"whatsapp:{SENDER}",
        **fields,
        "StatusCallback": CALLBACK,
    }


def build(command: Command, last_inbound: str | None = None, **kw: Any) -> Any:
    account = kw.pop("account", ACCOUNT)
    contact = kw.pop("contact", CONTACT)
    callback = kw.pop("callback", CALLBACK)
    return build_request(account, API, command, contact, callback, last_inbound)


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


# --- build_request: what each command becomes -------------------------------------------------

VALID: dict[str, tuple[Command, str | None, str, dict[str, str]]] = {
    "text": (
        cmd("text", text="Entregamos sim, até 18h 🚚"),
        None,
        MESSAGES_URL,
        message(Body="Entregamos sim, até 18h 🚚"),
    ),
    "text that quotes goes unquoted": (
        cmd("text", text="Sobre isso:", reply_to=QUOTED),
        INBOUND,
        MESSAGES_URL,
        message(Body="Sobre isso:"),
    ),
    "text of exactly 1600 characters": (
        cmd("text", text="x" * 1600),
        None,
        MESSAGES_URL,
        message(Body="x" * 1600),
    ),
    "image with caption": (
        cmd("image", text="O azul, tamanho 42", media=MediaRef(url=IMAGE)),
        None,
        MESSAGES_URL,
        message(MediaUrl=IMAGE, Body="O azul, tamanho 42"),
    ),
    "video without caption": (
        cmd("video", media=MediaRef(url="https://cdn.example.com/v.mp4")),
        None,
        MESSAGES_URL,
        message(MediaUrl="https://cdn.example.com/v.mp4"),
    ),
    "audio (voice note flag and blank text ignored)": (
        cmd("audio", text="  ", media=MediaRef(url="https://cdn.example.com/a.ogg", voice=True)),
        None,
        MESSAGES_URL,
        message(MediaUrl="https://cdn.example.com/a.ogg"),
    ),
    "document (filename ignored)": (
        cmd("document", media=MediaRef(url="https://cdn.example.com/nota.pdf", filename="n.pdf")),
        None,
        MESSAGES_URL,
        message(MediaUrl="https://cdn.example.com/nota.pdf"),
    ),
    "template with variables (text ignored)": (
        cmd(
            "template",
            text="ignored",
            template=Template(content_sid=CONTENT, variables={"1": "Ana", "2": "às 15h"}),
        ),
        None,
        MESSAGES_URL,
        message(ContentSid=CONTENT, ContentVariables='{"1":"Ana","2":"às 15h"}'),
    ),
    "template without variables": (
        cmd("template", template=Template(content_sid=CONTENT, variables={})),
        None,
        MESSAGES_URL,
        message(ContentSid=CONTENT),
    ),
    "typing answers reply_to": (
        cmd("typing", reply_to=QUOTED),
        INBOUND,
        TYPING_URL,
        {"channel": "whatsapp", "messageId": QUOTED},
    ),
    "typing answers the last inbound message": (
        cmd("typing"),
        INBOUND,
        TYPING_URL,
        {"channel": "whatsapp", "messageId": INBOUND},
    ),
}


@pytest.mark.parametrize(("command", "last", "url", "form"), VALID.values(), ids=list(VALID))
def test_build_request(command: Command, last: str | None, url: str, form: dict[str, str]) -> None:
    request = build(command, last)
    assert (request.url, request.body, request.form) == (url, form, True)
    assert list(request.body) == list(form)  # the order Twilio's examples use
    assert request.headers == {"Authorization": basic(SID, TOKEN), "Accept": "application/json"}


def test_an_api_key_authenticates_while_the_path_keeps_the_account_sid() -> None:
    request = build(cmd("text", text="oi"), account=KEY_ACCOUNT)
    assert request.url == MESSAGES_URL
    assert request.headers["Authorization"] == basic(KEY_SID, KEY_SECRET)
    typing = build(cmd("typing"), INBOUND, account=KEY_ACCOUNT)
    assert typing.headers["Authorization"] == basic(KEY_SID, KEY_SECRET)


def test_no_status_callback_is_sent_when_none_is_configured() -> None:
    request = build(cmd("text", text="oi"), callback="")
    assert "StatusCallback" not in request.body


def test_no_credential_reaches_the_url_or_the_form() -> None:
    for command, last in [(cmd("text", text="oi"), None), (cmd("typing"), INBOUND)]:
        request = build(command, last, account=KEY_ACCOUNT)
        visible = request.url + json.dumps(request.body)
        assert TOKEN not in visible and KEY_SECRET not in visible


@pytest.mark.parametrize(
    ("api_base", "url"),
    [
        ("https://api.twilio.com", TYPING_URL),
        ("https://api.dublin.ie1.twilio.com", "https://messaging.dublin.ie1.twilio.com/v2/Indicators/Typing.json"),
        ("https://api.twilio.com:8443/some/path", "https://messaging.twilio.com:8443/v2/Indicators/Typing.json"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123/v2/Indicators/Typing.json"),
        ("http://twilio-proxy.internal/base", "http://twilio-proxy.internal/base/v2/Indicators/Typing.json"),
    ],
)  # fmt: skip
def test_the_typing_host_is_the_messaging_host_beside_the_api_host(api_base: str, url: str) -> None:
    assert typing_url(api_base) == url
    request = build_request(ACCOUNT, api_base, cmd("typing"), CONTACT, CALLBACK, INBOUND)
    assert request.url == url


INVALID: dict[str, tuple[Command, str | None, str]] = {
    "blank text": (cmd("text", text=" \n"), None, "text is required"),
    "no text": (cmd("text"), None, "text is required"),
    "text over 1600": (cmd("text", text="x" * 1601), None, "at most 1600"),
    "caption over 1024": (
        cmd("image", text="x" * 1025, media=MediaRef(url=IMAGE)),
        None,
        "at most 1024",
    ),
    "caption on audio": (
        cmd("audio", text="ouça", media=MediaRef(url="https://cdn.example.com/a.ogg")),
        None,
        "no caption on audio",
    ),
    "caption on document": (
        cmd("document", text="a nota", media=MediaRef(url="https://cdn.example.com/n.pdf")),
        None,
        "no caption on document",
    ),
    "media id": (cmd("image", media=MediaRef(id="1857777774821032")), None, "by public URL"),
    "no media": (cmd("video"), None, "media.url is required"),
    "media not http": (cmd("image", media=MediaRef(url="ftp://x.example/a.jpg")), None, "http(s)"),
    "media without host": (cmd("image", media=MediaRef(url="https:///a.jpg")), None, "http(s)"),
    "whatsapp template": (
        cmd("template", template=Template(name="order_ready", language="pt_BR")),
        None,
        "Content API",
    ),
    "no template": (cmd("template"), None, "template object is required"),
    "content sid malformed": (
        cmd("template", template=Template(content_sid="HX123")),
        None,
        "not a Content SID",
    ),
    "empty variable": (
        cmd("template", template=Template(content_sid=CONTENT, variables={"1": ""})),
        None,
        "variable '1' is empty",
    ),
    "variable over 1600": (
        cmd("template", template=Template(content_sid=CONTENT, variables={"1": "x" * 1601})),
        None,
        "longer than 1600",
    ),
    "interactive": (
        cmd("interactive", text="Como?", buttons=[ButtonSpec("a", "A")]),
        None,
        "twilio/quick-reply",
    ),
    "location": (cmd("location", location=Location(-23.5, -46.6)), None, "twilio/location"),
    "reaction": (cmd("reaction", text="❤️", reply_to=INBOUND), INBOUND, "no way to send"),
    "read": (cmd("read"), INBOUND, "send `typing`"),
    "read with reply_to": (cmd("read", reply_to=INBOUND), INBOUND, "no read receipt"),
    "handoff": (cmd("handoff"), None, "control command"),
    "typing before the contact wrote": (cmd("typing"), None, "has not written"),
    "typing to a wamid": (cmd("typing", reply_to="wamid.HBgN"), INBOUND, "not a Twilio message"),
}


@pytest.mark.parametrize(("command", "last", "problem"), INVALID.values(), ids=list(INVALID))
def test_invalid_command(command: Command, last: str | None, problem: str) -> None:
    with pytest.raises(InvalidCommand, match=problem.replace("(", r"\(").replace(")", r"\)")):
        build(command, last)


@pytest.mark.parametrize(
    "contact", ["BR.1234ABCD", "+5511987650000", "55 11 98765", "1" * 16, "٥٥١١٩٨٧٦٥", ""]
)
def test_a_contact_that_is_not_a_number_in_digits_is_refused(contact: str) -> None:
    with pytest.raises(InvalidCommand, match=r"whatsapp:\+E\.164"):
        build(cmd("text", text="oi"), contact=contact)


# --- classify: Twilio's answers --------------------------------------------------------------


def error(code: int, status: int = 400, message: str = "It went wrong") -> bytes:
    return json.dumps(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
    ).encode()


# A row for every code PLATFORM-MORE §6.3 lists (and the few more the adapter knows).
CODES: dict[int, Verdict] = {
    20429: "retry",
    30001: "retry",
    30003: "retry",
    30008: "retry",
    63012: "retry",
    63018: "retry_account",
    20003: "halt",
    20005: "halt",
    63001: "halt",
    63007: "halt",
    63038: "halt",
    21610: "opted_out",
    63014: "opted_out",
    63049: "held",
    63016: "window_closed",
    63003: "undeliverable",
    63024: "undeliverable",
    30005: "undeliverable",
    30006: "undeliverable",
    **dict.fromkeys(
        [
            63005, 63013, 63015, 63019, 63021, 63025, 63027, 63028, 63029, 63030, 63032,
            63040, 21408, 21654, 21211, 21614, 21656, 21617, 35127, 30004, 30007,
        ],
        "failed",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("code", "verdict"), CODES.items(), ids=[str(c) for c in CODES])
def test_twilio_error_codes(code: int, verdict: Verdict) -> None:
    # The code decides, whatever the HTTP status (Twilio answers most of them 400).
    for status in (400, 429, 500):
        result = classify(status, error(code, status, "Some text"))
        assert (result.verdict, result.provider_code) == (verdict, code)
        assert result.detail == f"{code}: Some text"
        assert result.provider_title == "Some text"  # Twilio's own words, for its support
        assert result.message_id is None


@pytest.mark.parametrize(
    ("status", "verdict"), [(400, "failed"), (404, "failed"), (401, "halt"), (429, "retry"),
                            (500, "retry"), (503, "retry"), (403, "failed")]
)  # fmt: skip
def test_an_unknown_code_is_decided_by_the_http_status(status: int, verdict: Verdict) -> None:
    result = classify(status, error(99999, status))
    assert (result.verdict, result.provider_code) == (verdict, 99999)


RESOURCE = {
    "account_sid": SID,
    "body": "oi",
    "sid": "SM" + "0f" * 16,
    "status": "queued",
    "error_code": None,
    "direction": "outbound-api",
}
MAY_HAVE_GONE = "not a Twilio answer; the message may have gone, so it is not retried"
NOT_TWILIO = "not a Twilio answer"


@pytest.mark.parametrize(
    ("status", "doc", "result"),
    [
        (201, RESOURCE, SendResult(verdict="sent", message_id=RESOURCE["sid"])),
        (
            201,
            {**RESOURCE, "status": "accepted"},
            SendResult(verdict="sent", message_id=RESOURCE["sid"]),
        ),
        (200, {"success": True}, SendResult(verdict="sent")),
        (201, {"sid": ""}, SendResult(verdict="failed", detail=f"HTTP 201: {MAY_HAVE_GONE}")),
        (
            200,
            {"success": False},
            SendResult(verdict="failed", detail=f"HTTP 200: {MAY_HAVE_GONE}"),
        ),
        (
            400,
            {"message": "no code"},
            SendResult(verdict="failed", detail=f"HTTP 400: {NOT_TWILIO}"),
        ),
        (
            400,
            {"code": True, "message": "a bool is no code"},
            SendResult(verdict="failed", detail=f"HTTP 400: {NOT_TWILIO}"),
        ),
        (503, [], SendResult(verdict="retry", detail=f"HTTP 503: {NOT_TWILIO}")),
    ],
)
def test_answers(status: int, doc: Any, result: SendResult) -> None:
    assert classify(status, json.dumps(doc).encode()) == result


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", "retry"),
        (429, b"", "retry"),
        (504, b"\xff\xfe", "retry"),
        (201, b"<html>ok</html>", "failed"),
        (200, b"", "failed"),
        (401, b"Unauthorized", "halt"),
    ],
)
def test_an_answer_that_is_not_json(status: int, body: bytes, verdict: Verdict) -> None:
    result = classify(status, body)
    assert result.verdict == verdict and result.provider_code is None
    assert result.detail is not None and result.detail.startswith(f"HTTP {status}: the answer is")


@pytest.mark.parametrize("name", ["Retry-After", "retry-after", "RETRY-AFTER"])
def test_retry_after_is_obeyed_whatever_its_case(name: str) -> None:
    result = classify(429, error(20429, 429, "Too Many Requests"), {name: "7"})
    assert (result.verdict, result.retry_after_s) == ("retry", 7.0)


def test_retry_after_as_an_http_date_and_on_a_throttled_sender() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    result = classify(400, error(63018), {"Retry-After": when})
    assert result.verdict == "retry_account"
    assert result.retry_after_s is not None and 25 < result.retry_after_s <= 30


@pytest.mark.parametrize(
    "value", ["", "soon", "-3", "0", "nan", "inf", "Mon, 01 Jan 2001 00:00:00 GMT"]
)
def test_a_retry_after_that_says_nothing_usable_is_ignored(value: str) -> None:
    assert classify(503, b"<html/>", {"Retry-After": value}).retry_after_s is None


def test_retry_after_is_not_read_for_permanent_answers() -> None:
    assert classify(400, error(63016), {"Retry-After": "5"}).retry_after_s is None


@pytest.mark.parametrize(
    "leak",
    [
        TOKEN,
        basic(SID, TOKEN),
        basic(KEY_SID, KEY_SECRET),
        "Basic " + base64.b64encode(b"user:pass").decode(),
    ],
)
def test_credentials_in_the_error_never_reach_the_detail(leak: str) -> None:
    secret = leak.removeprefix("Basic ")
    result = classify(401, error(20003, 401, f"Authenticate with {leak} for {SID}"))
    for said in (result.detail, result.provider_title):
        assert said is not None and secret not in said and "[redacted]" in said
        assert SID in said  # an account SID is no secret, and says which account it was


def test_the_detail_is_cut_to_300_characters() -> None:
    detail = classify(400, error(63016, 400, "x" * 1000)).detail
    assert detail is not None and len(detail) == 300 and detail.startswith("63016: xxx")


# --- properties -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
twilio_like = st.dictionaries(
    st.sampled_from(["code", "message", "more_info", "status", "sid", "success"]), json_values
) | st.fixed_dictionaries({"code": st.integers(-(2**70), 2**70), "message": json_values})
header_maps = st.none() | st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "Other"]),
    st.text(max_size=40) | st.integers(-(10**6), 10**12).map(str),
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


@given(st.integers(100, 599), json_values | twilio_like, header_maps)
def test_classify_never_raises_on_json(
    status: int, value: Any, headers: dict[str, str] | None
) -> None:
    _check(classify(status, json.dumps(value).encode(), headers))


short_text = st.text(max_size=24)
optional_text = st.none() | short_text
long_text = st.integers(1000, 1700).map(lambda n: "é" * n)
urls = st.sampled_from([IMAGE, "http://x.example/a.ogg", "ftp://x/a", "https://", "http://[::1"])
commands = st.builds(
    Command,
    command_id=st.text(max_size=8),
    conversation_id=st.just(f"whatsapp:{ACCOUNT.account_id}:{CONTACT}"),
    type=st.sampled_from([*CommandType.__args__, "sticker"]),  # type: ignore[attr-defined]
    text=optional_text | long_text,
    template=st.none()
    | st.builds(
        Template,
        name=short_text,
        language=short_text,
        content_sid=st.none() | st.just(CONTENT) | short_text,
        variables=st.none() | st.dictionaries(short_text, short_text | long_text, max_size=3),
    ),
    media=st.none() | st.builds(MediaRef, url=st.none() | urls | short_text, id=optional_text),
    location=st.none() | st.builds(Location, latitude=st.floats(), longitude=st.floats()),
    buttons=st.none() | st.lists(st.builds(ButtonSpec, id=short_text, title=short_text)),
    reply_to=optional_text | st.just(QUOTED),
)
api_bases = st.sampled_from([API, "http://127.0.0.1:1", "http://[::1", "https://api.x:99999"])


@settings(max_examples=500)
@given(
    commands,
    st.just(CONTACT) | st.text(max_size=16),
    st.none() | st.just(INBOUND),
    api_bases,
    st.sampled_from([ACCOUNT, KEY_ACCOUNT]),
)
def test_build_request_raises_only_invalid_command(
    command: Command, contact: str, last: str | None, api_base: str, account: Account
) -> None:
    try:
        request = build_request(account, api_base, command, contact, CALLBACK, last)
    except InvalidCommand as exc:
        assert str(exc)
        return
    form = request.body
    assert request.form and all(isinstance(v, str) for v in form.values())
    if command.type == "typing":
        assert form == {"channel": "whatsapp", "messageId": command.reply_to or last}
        return
    # What every message request says holds Twilio's rules.
    assert form["To"] == f"whatsapp:+{contact}" and contact.isdigit()
    assert len(form.get("Body", "")) <= 1600
    if "ContentSid" in form:
        assert "Body" not in form and "MediaUrl" not in form
        variables = json.loads(form.get("ContentVariables", "{}"))
        assert all(isinstance(v, str) and 0 < len(v) <= 1600 for v in variables.values())
    if "MediaUrl" in form:
        assert form["MediaUrl"].startswith(("https://", "http://"))
        assert "Body" not in form or command.type in ("image", "video")


# --- the same requests and answers over HTTP, against the stand-in Twilio API -----------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilioAPI]:
    async with FakeTwilioAPI(SID, TOKEN, senders=[SENDER], api_keys={KEY_SID: KEY_SECRET}) as api:
        yield api


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def send(
    http: aiohttp.ClientSession,
    fake: FakeTwilioAPI,
    command: Command,
    *,
    account: Account = ACCOUNT,
    last_inbound: str | None = INBOUND,
) -> SendResult:
    """What the gateway does (router/sender.py): the request, POSTed form-encoded, its answer
    classified."""
    call = build_request(account, fake.url, command, CONTACT, CALLBACK, last_inbound)
    async with http.post(call.url, data=call.body, headers=call.headers) as resp:
        return classify(resp.status, await resp.read(), resp.headers)


@pytest.mark.parametrize(("command", "last", "url", "form"), VALID.values(), ids=list(VALID))
async def test_twilio_takes_every_request_built(
    http: aiohttp.ClientSession,
    fake: FakeTwilioAPI,
    command: Command,
    last: str | None,
    url: str,
    form: dict[str, str],
) -> None:
    result = await send(http, fake, command, last_inbound=last)
    [request] = fake.requests
    assert request.params == form and request.user == SID
    if command.type == "typing":
        assert (request.route, request.status, result) == (
            "typing",
            200,
            SendResult(verdict="sent"),
        )
        return
    assert (request.route, request.status, request.account_sid) == ("messages", 201, SID)
    assert result == SendResult(verdict="sent", message_id=request.sid)
    assert request.sid is not None and request.sid.startswith("SM")


async def test_an_api_key_is_accepted_and_a_wrong_secret_halts(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    ok = await send(http, fake, cmd("text", text="oi"), account=KEY_ACCOUNT)
    assert ok.verdict == "sent" and fake.requests[0].user == KEY_SID
    wrong = Account(
        "whatsapp", ACCOUNT.account_id, "sales", f"{SID}:{'0' * 32}",
        display_phone_number=SENDER, provider="twilio",
    )  # fmt: skip
    refused = await send(http, fake, cmd("text", text="oi"), account=wrong)
    assert (refused.verdict, refused.provider_code, refused.detail) == (
        "halt",
        20003,
        "20003: Authenticate",
    )


@pytest.mark.parametrize(
    ("code", "verdict"),
    [(63016, "window_closed"), (63018, "retry_account"), (20429, "retry"), (63014, "opted_out"),
     (21211, "failed"), (63007, "halt"), (63049, "held"), (63012, "retry"),
     (63024, "undeliverable")],
)  # fmt: skip
async def test_each_error_class_of_twilio(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI, code: int, verdict: Verdict
) -> None:
    fake.fail(code)
    result = await send(http, fake, cmd("text", text="oi"))
    assert (result.verdict, result.provider_code) == (verdict, code)
    assert (await send(http, fake, cmd("text", text="oi"))).verdict == "sent"  # used up


async def test_a_429_with_retry_after_and_a_proxy_page_are_retried(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    fake.fail(20429, retry_after=2)
    throttled = await send(http, fake, cmd("text", text="oi"))
    assert (throttled.verdict, throttled.retry_after_s) == ("retry", 2.0)
    fake.fail_status(502, b"<html><h1>502 Bad Gateway</h1></html>")
    assert (await send(http, fake, cmd("text", text="oi"))).verdict == "retry"


async def test_twilio_refuses_what_the_adapter_never_builds(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    """The fake is strict where the adapter is careful: a form that breaks the rules the
    adapter checks is refused by the fake with Twilio's code, so those checks are real."""
    call = build_request(ACCOUNT, fake.url, cmd("text", text="oi"), CONTACT, CALLBACK)
    for extra, code in [
        ({"Body": "x" * 1601}, 21617),
        ({"ContentSid": CONTENT, "ContentVariables": '{"1":""}', "Body": ""}, 21656),
        ({"ContentVariables": '{"1":"Ana"}', "Body": ""}, 21654),
        ({"MediaUrl": "ftp://x/a.jpg", "Body": ""}, 21620),
        ({"To": "whatsapp:BR.1234ABCD"}, 21211),
    ]:
        form = {k: v for k, v in {**call.body, **extra}.items() if v}
        async with http.post(call.url, data=form, headers=call.headers) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, code), extra
    assert fake.sent_to(CONTACT) == []
