"""The channel seam: every registered channel implements `Channel`, `router/` names none of
them, and requests, answers and pacing go through the registry as the router uses them."""

from __future__ import annotations

import ast
import io
import json
import re
import tokenize
from pathlib import Path
from typing import Any

import pytest

from adapters import CHANNELS, Channel, HttpRequest, Pace
from adapters.account import Account, interval_us
from adapters.channel import register
from adapters.meta_messaging import InstagramSettings, MessengerSettings
from adapters.schema import Command, CommandType, InvalidCommand, Parsed, ParseError, SendResult
from adapters.telegram import TelegramBot, TelegramSettings
from adapters.whatsapp import WhatsAppSettings, sign

ROUTER = Path(__file__).resolve().parents[2] / "router"
NUMBER = "106540352242922"
BOT = "7000000001"
TOKEN = "7000000001:AAHsecret"
GUARD_MS = 50.0
ACCOUNTS = {
    "whatsapp": Account("whatsapp", NUMBER, "support", "EAAG-secret", True, 80.0, "+15550001111"),
    "telegram": Account("telegram", BOT, "support", TOKEN),
    "messenger": Account("messenger", "104400000000001", "support", "EAAP-secret", True, 40.0),
    "instagram": Account("instagram", "17841400000000001", "sales", "IGQ-secret", True, 40.0),
    "twilio": Account(
        "whatsapp",
        "14155550100",
        "sales",
        "AC" + "0" * 32 + ":tw-secret",
        True,
        80.0,
        "+14155550100",
        "cloud_api",
        provider="twilio",
        callback_url="https://gw/webhooks/twilio",
    ),
}

EMPTY_WEBHOOKS = {
    "whatsapp": b'{"object": "whatsapp_business_account", "entry": []}',
    "telegram": b'{"update_id": 1}',
    "messenger": b'{"object": "page", "entry": []}',
    "instagram": b'{"object": "instagram", "entry": []}',
    # A status Twilio posts but the gateway does not publish (CONTRACT §6.2).
    "twilio": b"MessageSid=SM0123456789abcdef0123456789abcdef&MessageStatus=queued"
    b"&From=whatsapp%3A%2B14155550100&To=whatsapp%3A%2B5511987650000",
}


def cmd(channel: str, type_: CommandType, **fields: Any) -> Command:
    return Command(command_id="c1", conversation_id=f"{channel}:x:y", type=type_, **fields)


def test_every_channel_is_registered_under_its_name() -> None:
    assert set(CHANNELS) == {"whatsapp", "telegram", "messenger", "instagram", "twilio"}
    for name, channel in CHANNELS.items():
        assert channel.name == name
        # Twilio serves WhatsApp numbers: its accounts and events are channel whatsapp.
        assert channel.channel == ("whatsapp" if name == "twilio" else name)


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_every_channel_implements_the_interface(name: str) -> None:
    channel = CHANNELS[name]
    account = ACCOUNTS[name]
    assert isinstance(channel, Channel)
    for flag in ("window", "opt_out_ends_all", "charges_inbound"):
        assert isinstance(getattr(channel, flag), bool), flag
    request = channel.request(account, "http://api", cmd(name, "text", text="hi"), "1", None, None)
    assert isinstance(request, HttpRequest)
    assert request.url.startswith("http://api/")
    assert isinstance(channel.classify(500, b"not json"), SendResult)
    assert isinstance(channel.parse(EMPTY_WEBHOOKS[name], account.account_id, 0), Parsed)
    with pytest.raises(ParseError):
        channel.parse(b"not json", account.account_id, 0)
    for pace in (channel.account_pace(account, GUARD_MS), channel.recipient_pace("1", GUARD_MS)):
        assert isinstance(pace, Pace)
        assert pace.interval_us > 0 <= pace.tolerance_us
    assert isinstance(channel.paces_recipient("text"), bool)
    assert channel.crosses_border(account, "1") in (None, True, False)


def test_a_name_is_registered_once() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(CHANNELS["telegram"])


# --- router/ names no channel ------------------------------------------------------------------

_NAMES = re.compile("|".join(sorted(CHANNELS)), re.IGNORECASE)


def _python_code(source: str) -> str:
    """The source without comments and docstrings."""
    docstrings = {
        (node.lineno, node.col_offset)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    kept = [
        token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type != tokenize.COMMENT
        and not (token.type == tokenize.STRING and token.start in docstrings)
    ]
    return " ".join(kept)


def _lua_code(source: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in source.splitlines())


def test_router_names_no_channel() -> None:
    found = []
    for path in sorted(ROUTER.rglob("*")):
        if path.suffix == ".py":
            code = _python_code(path.read_text())
        elif path.suffix == ".lua":
            code = _lua_code(path.read_text())
        else:
            continue
        found += [f"{path.name}: {m.group()}" for m in _NAMES.finditer(code)]
    assert found == []


def test_the_check_sees_code_but_not_comments() -> None:
    source = '"""whatsapp"""\n# telegram\nx = "whatsapp"  # telegram\n'
    assert _NAMES.findall(_python_code(source)) == ["whatsapp"]
    assert _NAMES.findall(_lua_code("if c == 'telegram' then -- whatsapp")) == ["telegram"]


# --- requests, answers and pacing through the registry -----------------------------------------

REQUESTS: list[tuple[str, Command, str, str | None, str | None, str, dict[str, str], Any]] = [
    (
        "whatsapp",
        cmd("whatsapp", "text", text="hi"),
        "14155550100",
        None,
        None,
        f"http://api/{NUMBER}/messages",
        {"Authorization": "Bearer EAAG-secret"},
        {"to": "+14155550100", "type": "text", "text": {"body": "hi", "preview_url": False}},
    ),
    (
        "whatsapp",
        cmd("whatsapp", "read"),
        "14155550100",
        "wamid.last",
        None,
        f"http://api/{NUMBER}/messages",
        {"Authorization": "Bearer EAAG-secret"},
        {"status": "read", "message_id": "wamid.last"},
    ),
    (
        "telegram",
        cmd("telegram", "text", text="hi"),
        "123456789",
        None,
        None,
        f"http://api/bot{TOKEN}/sendMessage",
        {},
        {"chat_id": 123456789, "text": "hi"},
    ),
    (
        "telegram",
        cmd("telegram", "text", text="hi"),
        "123456789",
        None,
        "bc-1",
        f"http://api/bot{TOKEN}/sendMessage",
        {},
        {"chat_id": 123456789, "business_connection_id": "bc-1"},
    ),
    (
        "telegram",
        cmd("telegram", "typing"),
        "-1001234567890",
        None,
        None,
        f"http://api/bot{TOKEN}/sendChatAction",
        {},
        {"chat_id": -1001234567890, "action": "typing"},
    ),
]


@pytest.mark.parametrize(
    ("name", "command", "address", "last_inbound", "route", "url", "headers", "body"), REQUESTS
)
def test_request(
    name: str,
    command: Command,
    address: str,
    last_inbound: str | None,
    route: str | None,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
) -> None:
    request = CHANNELS[name].request(
        ACCOUNTS[name], "http://api", command, address, last_inbound, route
    )
    assert request.url == url
    assert dict(request.headers) == headers
    assert {key: request.body.get(key) for key in body} == body


@pytest.mark.parametrize(
    ("name", "command"),
    [("whatsapp", cmd("whatsapp", "text")), ("telegram", cmd("telegram", "handoff"))],
)
def test_an_unsendable_command_raises_invalid_command(name: str, command: Command) -> None:
    with pytest.raises(InvalidCommand):
        CHANNELS[name].request(ACCOUNTS[name], "http://api", command, "123", None, None)


def _graph_error(code: int) -> bytes:
    return json.dumps({"error": {"message": "m", "type": "OAuthException", "code": code}}).encode()


def _bot_error(code: int, **parameters: Any) -> bytes:
    doc = {"ok": False, "error_code": code, "description": "d", "parameters": parameters}
    return json.dumps(doc).encode()


ANSWERS: list[tuple[str, int, bytes, str, int | None, str | None]] = [
    ("whatsapp", 200, b'{"messages": [{"id": "wamid.1"}]}', "sent", None, "wamid.1"),
    ("whatsapp", 400, _graph_error(131056), "retry_recipient", 131056, None),
    ("whatsapp", 400, _graph_error(131050), "opted_out", 131050, None),
    ("whatsapp", 400, _graph_error(130497), "country_blocked", 130497, None),
    ("whatsapp", 401, _graph_error(190), "halt", 190, None),
    ("whatsapp", 502, b"<html>", "retry", None, None),
    ("telegram", 200, b'{"ok": true, "result": {"message_id": 7}}', "sent", None, "7"),
    ("telegram", 429, _bot_error(429, retry_after=3), "retry", 429, None),
    ("telegram", 403, _bot_error(403), "opted_out", 403, None),
    ("telegram", 401, _bot_error(401), "halt", 401, None),
    ("telegram", 502, b"<html>", "retry", None, None),
]


@pytest.mark.parametrize(("name", "status", "body", "verdict", "code", "message_id"), ANSWERS)
def test_classify(
    name: str, status: int, body: bytes, verdict: str, code: int | None, message_id: str | None
) -> None:
    result = CHANNELS[name].classify(status, body)
    assert (result.verdict, result.provider_code, result.message_id) == (verdict, code, message_id)


PAIR = Pace(6_000_000, 6_000_000 * 44)
PACES = [
    ("whatsapp", "14155550100", PAIR),
    ("telegram", "123456789", Pace(interval_us(1.0, GUARD_MS))),
    ("telegram", "-1001234567890", Pace(interval_us(20 / 60, GUARD_MS))),
]


@pytest.mark.parametrize(("name", "address", "pace"), PACES)
def test_recipient_pace(name: str, address: str, pace: Pace) -> None:
    assert CHANNELS[name].recipient_pace(address, GUARD_MS) == pace


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_account_pace_is_the_account_cap(name: str) -> None:
    account = ACCOUNTS[name]
    expected = Pace(interval_us(account.mps, GUARD_MS))
    assert CHANNELS[name].account_pace(account, GUARD_MS) == expected


@pytest.mark.parametrize(
    ("name", "unpaced"),
    [
        ("whatsapp", {"typing", "read"}),
        ("telegram", {"typing", "read", "reaction"}),
        ("messenger", {"typing", "read"}),
        ("instagram", {"typing", "read"}),
        ("twilio", {"typing", "read"}),
    ],
)
def test_which_types_take_a_recipient_slot(name: str, unpaced: set[str]) -> None:
    types = {"text", "image", "template", "reaction", "typing", "read", "interactive"}
    assert {t for t in types if not CHANNELS[name].paces_recipient(t)} == unpaced


RULES = [
    ("whatsapp", True, False, True),
    ("telegram", False, True, False),
    ("messenger", True, True, False),
    ("instagram", True, True, False),
    ("twilio", True, False, True),  # every WhatsApp rule (CONTRACT §6.3)
]


@pytest.mark.parametrize(("name", "window", "opt_out_ends_all", "charges_inbound"), RULES)
def test_rules(name: str, window: bool, opt_out_ends_all: bool, charges_inbound: bool) -> None:
    channel = CHANNELS[name]
    assert (channel.window, channel.opt_out_ends_all, channel.charges_inbound) == (
        window,
        opt_out_ends_all,
        charges_inbound,
    )


CROSSINGS = [
    ("whatsapp", "+15550001111", "14155550100", False),
    ("whatsapp", "+15550001111", "5511987654321", True),  # into Brazil
    ("whatsapp", "+5511912345678", "5511987654321", False),  # within Brazil
    ("whatsapp", "+6281234567890", "BR.abc", True),  # Indonesia to a hidden Brazilian number
    ("telegram", None, "123456789", None),
    ("messenger", None, "7010000000000001", None),
    ("instagram", None, "6800000000000001", None),
    ("twilio", "+5511955550001", "14155550100", True),  # out of Brazil, as for Meta numbers
    ("twilio", "+14155550100", "14155550199", False),
]


@pytest.mark.parametrize(("name", "phone", "address", "crosses"), CROSSINGS)
def test_crosses_border(name: str, phone: str | None, address: str, crosses: bool | None) -> None:
    account = Account(name, "a", "support", "t", display_phone_number=phone)
    assert CHANNELS[name].crosses_border(account, address) is crosses


def test_the_token_stays_out_of_repr() -> None:
    assert "secret" not in repr(ACCOUNTS["whatsapp"])
    assert "secret" not in repr(ACCOUNTS["telegram"])


# --- the receiving side: webhook routes and checks, through the registry ----------------------

GATEWAY = ROUTER.parent / "gateway"
COMPOSES_SECTIONS = "config.py"
"""The one gateway module that names channels in code: it composes their config sections
under their names (`Settings.whatsapp`, ...)."""


def test_gateway_names_no_channel_but_in_its_config() -> None:
    found = [
        f"{path.name}: {m.group()}"
        for path in sorted(GATEWAY.glob("*.py"))
        if path.name != COMPOSES_SECTIONS
        for m in _NAMES.finditer(_python_code(path.read_text()))
    ]
    assert found == []


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_every_webhook_path_is_its_own(name: str) -> None:
    hook = CHANNELS[name].webhook
    assert hook.path == f"/webhooks/{name}"
    assert all(header == header.lower() for header in hook.headers)
    assert [other for other in CHANNELS.values() if other.webhook.path == hook.path] == [
        CHANNELS[name]
    ]


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_an_unconfigured_channel_refuses_every_webhook(name: str) -> None:
    receiver = CHANNELS[name].receiver(None)
    assert receiver.refuse("1", {})[0] == 404  # type: ignore[index]
    assert not receiver.verify("1", {}, EMPTY_WEBHOOKS[name])


RECEIVING = [
    # (channel, section, key, headers, body, refused from the head, verified)
    ("whatsapp", "s", None, {}, b"{}", (401, "bad signature"), False),
    ("whatsapp", "s", None, {"x-hub-signature-256": "md5=00"}, b"{}", (401, "bad signature"),
     False),
    ("whatsapp", "s", None, {"x-hub-signature-256": "sha256=00"}, b"{}", None, False),
    ("whatsapp", "s", None, {"x-hub-signature-256": "SIGNED"}, b"{}", None, True),
    ("telegram", "s", "7000000001", {}, b"{}", (401, "bad secret token"), False),
    ("telegram", "s", "7000000001", {"x-telegram-bot-api-secret-token": "no"}, b"{}",
     (401, "bad secret token"), False),
    ("telegram", "s", "7000000001", {"x-telegram-bot-api-secret-token": "tg_secret \t"}, b"{}",
     None, True),
    ("telegram", "s", "7000000002", {"x-telegram-bot-api-secret-token": "tg_secret"}, b"{}",
     (404, "unknown bot"), False),
    ("messenger", "s", None, {}, b"{}", (401, "bad signature"), False),
    ("messenger", "s", None, {"x-hub-signature-256": "SIGNED"}, b"{}", None, True),
    ("instagram", "s", None, {"x-hub-signature-256": "sha256=00"}, b"{}", None, False),
    ("instagram", "s", None, {"x-hub-signature-256": "SIGNED"}, b"{}", None, True),
]  # fmt: skip


def _section(name: str) -> Any:
    if name == "whatsapp":
        return WhatsAppSettings(app_secret="app-secret", verify_token="vt")
    if name == "messenger":
        return MessengerSettings(app_secret="app-secret", verify_token="vt")
    if name == "instagram":
        return InstagramSettings(app_secret="app-secret", verify_token="vt")
    return TelegramSettings(
        bots=[TelegramBot(token=TOKEN, secret_token="tg_secret", assistant="a")]
    )


@pytest.mark.parametrize(("name", "_", "key", "headers", "body", "refused", "verified"), RECEIVING)
def test_receiver(
    name: str,
    _: str,
    key: str | None,
    headers: dict[str, str],
    body: bytes,
    refused: tuple[int, str] | None,
    verified: bool,
) -> None:
    if headers.get("x-hub-signature-256") == "SIGNED":
        headers = {"x-hub-signature-256": sign(body, b"app-secret")}
    receiver = CHANNELS[name].receiver(_section(name))
    assert receiver.refuse(key, headers) == refused
    assert receiver.verify(key, headers, body) is verified


@pytest.mark.parametrize("name", ["whatsapp", "messenger", "instagram"])
def test_the_handshake(name: str) -> None:
    receiver = CHANNELS[name].receiver(_section(name))
    query = {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "42"}
    assert receiver.handshake(query) == (200, "42")
    assert receiver.handshake({**query, "hub.verify_token": "no"}) == (403, "verification failed")
    assert CHANNELS[name].receiver(None).handshake(query) == (404, f"{name} is not configured")


@pytest.mark.parametrize(
    ("path", "body", "foreign"),
    [
        ("whatsapp", b'{"object": "page", "entry": []}', "messenger"),
        ("whatsapp", b'{"object": "instagram", "entry": []}', "instagram"),
        ("messenger", b'{"object": "whatsapp_business_account", "entry": []}', "whatsapp"),
        ("instagram", b'{"object": "page"}', "messenger"),
        ("messenger", b'{"object": "page", "entry": []}', None),  # its own
        ("messenger", b'{"object": "user", "entry": []}', None),  # no channel's
        ("whatsapp", b"not json", None),
        ("telegram", b'{"object": "page", "entry": []}', None),  # not a Meta path
    ],
)
def test_a_meta_body_names_its_channel(path: str, body: bytes, foreign: str | None) -> None:
    """Asked when a body did not verify with the path's secret: whose secret to try."""
    assert CHANNELS[path].foreign(body) == foreign


HUMAN = {"author": "human", "tag": "HUMAN_AGENT"}
HUMAN_WINDOWS = [
    ("messenger", HUMAN, 7 * 24 * 3600),
    ("instagram", HUMAN, 7 * 24 * 3600),
    ("messenger", {"tag": "HUMAN_AGENT"}, 0),  # the assistant may not use a human's tag
    ("instagram", {"author": "human"}, 0),  # a human without the tag: the 24 h window only
    ("whatsapp", HUMAN, 0),  # outside the window WhatsApp takes templates only
    ("telegram", HUMAN, 0),  # no window at all
]


@pytest.mark.parametrize(("name", "fields", "seconds"), HUMAN_WINDOWS)
def test_how_long_after_the_window_a_command_may_still_go(
    name: str, fields: dict[str, Any], seconds: int
) -> None:
    assert CHANNELS[name].human_window(cmd(name, "text", text="oi", **fields)) == seconds
