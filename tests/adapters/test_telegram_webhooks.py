"""Telegram's `gateway webhooks`: the Bot API calls each action makes, what the operator reads
of every answer (Bot API bodies as tdlib/telegram-bot-api writes them), a whole set → show →
delete against the fake Bot API, and properties: any answer is a one-line Subscription without
the token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, get_args

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.account import Account
from adapters.channel import Action, ProviderCall, Subscription
from adapters.schema import MemberEvent, MessageEvent
from adapters.telegram import CHANNEL, TelegramBot, TelegramSettings, parse_update
from adapters.telegram._inbound import HANDLED_UPDATES
from adapters.telegram._webhooks import subscription
from gateway_demo.standins._bot_methods import UPDATE_TYPES
from tests.fakes import FakeBotAPI

TOKEN = "7000000001:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa"
SECRET_HALF = TOKEN.partition(":")[2]
SECRET_TOKEN = "wh-secret_0123456789abcdef"
PUBLIC = "https://gw.example.com"
HOOK = "https://gw.example.com/webhooks/telegram/7000000001"
NOW = 1767300000
ACTIONS: tuple[Action, ...] = get_args(Action)
T = 1767226200


def _settings(api_base: str = "https://api.telegram.org") -> TelegramSettings:
    bot = TelegramBot(token=TOKEN, secret_token=SECRET_TOKEN, assistant="support")
    return TelegramSettings(api_base=api_base, bots=[bot])


SETTINGS = _settings()
[ACCOUNT] = SETTINGS.accounts()


def _answer(action: Action, payload: Any, status: int = 200) -> Subscription:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return subscription(ACCOUNT, action, PUBLIC, status, body, now=NOW)


def _info(**fields: Any) -> dict[str, Any]:
    result = {"url": "", "has_custom_certificate": False, "pending_update_count": 0, **fields}
    return {"ok": True, "result": result}


def _ours(**fields: Any) -> dict[str, Any]:
    """getWebhookInfo of the webhook `set` makes."""
    return _info(url=HOOK, allowed_updates=list(HANDLED_UPDATES), max_connections=40, **fields)


def _error(code: int, description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description}


# -- allowed_updates: exactly what the parser maps ---------------------------------------------

_CHAT = {"id": 4242, "type": "private", "first_name": "Ana"}
_USER = {"id": 4242, "is_bot": False, "first_name": "Ana"}
_MESSAGE = {"message_id": 5, "date": T, "chat": _CHAT, "from": _USER, "text": "oi"}
_MEMBER = {
    "chat": _CHAT,
    "from": _USER,
    "date": T,
    "old_chat_member": {"status": "kicked", "user": _USER},
    "new_chat_member": {"status": "member", "user": _USER},
}
_PAYLOADS: dict[str, tuple[dict[str, Any], str]] = {
    "message": (_MESSAGE, "text"),
    "edited_message": ({**_MESSAGE, "edit_date": T + 1}, "text"),
    "channel_post": (_MESSAGE, "text"),
    "edited_channel_post": (_MESSAGE, "text"),
    "business_message": ({**_MESSAGE, "business_connection_id": "bc1"}, "text"),
    "edited_business_message": ({**_MESSAGE, "business_connection_id": "bc1"}, "text"),
    "callback_query": ({"id": "77", "from": _USER, "data": "yes"}, "interactive"),
    "message_reaction": (
        {
            "chat": _CHAT,
            "message_id": 5,
            "date": T,
            "user": _USER,
            "old_reaction": [],
            "new_reaction": [{"type": "emoji", "emoji": "👍"}],
        },
        "reaction",
    ),
    "my_chat_member": (_MEMBER, "member"),
    "chat_member": (_MEMBER, "member"),
}
"""A minimal update of each kind the gateway asks for, and the event type it must become."""


def _kind_of(update_kind: str, payload: dict[str, Any]) -> str:
    body = json.dumps({"update_id": 9, update_kind: payload}).encode()
    [routed] = parse_update(body, "7000000001", NOW).events
    event = routed.event
    if isinstance(event, MemberEvent):
        return "member"
    assert isinstance(event, MessageEvent)
    return event.type if event.type != "unsupported" else f"unsupported {event.subtype}"


def test_allowed_updates_are_telegram_kinds_listed_once() -> None:
    assert len(set(HANDLED_UPDATES)) == len(HANDLED_UPDATES)
    # A misspelt kind would be dropped by Telegram without a word.
    assert set(HANDLED_UPDATES) <= set(UPDATE_TYPES)
    assert set(HANDLED_UPDATES) == set(_PAYLOADS)


@pytest.mark.parametrize("kind", HANDLED_UPDATES)
def test_every_allowed_kind_parses_to_its_event(kind: str) -> None:
    payload, expected = _PAYLOADS[kind]
    assert _kind_of(kind, payload) == expected


@pytest.mark.parametrize("kind", [k for k in UPDATE_TYPES if k not in HANDLED_UPDATES])
def test_every_kind_not_asked_for_is_one_the_parser_does_not_map(kind: str) -> None:
    payload = {"id": "1", "from": _USER, "chat": _CHAT, "date": T}
    assert _kind_of(kind, payload) == f"unsupported {kind}"


# -- the calls ------------------------------------------------------------------------------------


def test_set_posts_the_bots_webhook_secret_and_kinds() -> None:
    call = CHANNEL.subscription_call(SETTINGS, ACCOUNT, "set", PUBLIC, True)
    assert call == ProviderCall(
        "POST",
        f"https://api.telegram.org/bot{TOKEN}/setWebhook",
        {},
        body={
            "url": HOOK,
            "secret_token": SECRET_TOKEN,
            "allowed_updates": list(HANDLED_UPDATES),
            "drop_pending_updates": True,
        },
    )


def test_show_gets_webhook_info() -> None:
    call = CHANNEL.subscription_call(SETTINGS, ACCOUNT, "show", PUBLIC, False)
    assert call == ProviderCall("GET", f"https://api.telegram.org/bot{TOKEN}/getWebhookInfo", {})


@pytest.mark.parametrize("drop", [True, False])
def test_delete_posts_delete_webhook(drop: bool) -> None:
    call = CHANNEL.subscription_call(SETTINGS, ACCOUNT, "delete", PUBLIC, drop)
    url = f"https://api.telegram.org/bot{TOKEN}/deleteWebhook"
    assert call == ProviderCall("POST", url, {}, body={"drop_pending_updates": drop})


def test_public_url_with_a_path_prefix_and_api_base_with_a_slash() -> None:
    call = CHANNEL.subscription_call(
        _settings("http://127.0.0.1:8081/"), ACCOUNT, "set", "https://edge.example.com/tg", False
    )
    assert call is not None and call.body is not None
    assert call.url == f"http://127.0.0.1:8081/bot{TOKEN}/setWebhook"
    assert call.body["url"] == "https://edge.example.com/tg/webhooks/telegram/7000000001"


def test_a_bot_missing_from_the_config_makes_no_call() -> None:
    stranger = Account("telegram", "7000000009", "support", "7000000009:AAHother")
    for action in ACTIONS:
        assert CHANNEL.subscription_call(SETTINGS, stranger, action, PUBLIC, False) is None


def test_telegram_has_no_handshake() -> None:
    assert CHANNEL.handshake_query(SETTINGS, "challenge-1") is None


# -- the answers ----------------------------------------------------------------------------------


def test_set_answer() -> None:
    said = _answer("set", {"ok": True, "result": True, "description": "Webhook was set"})
    assert said == Subscription(
        True, f"Webhook was set: {HOOK} (10 update kinds)", url=HOOK, fields=HANDLED_UPDATES
    )
    again = _answer("set", {"ok": True, "result": True, "description": "Webhook is already set"})
    assert again.ok and again.detail.startswith("Webhook is already set: ")


def test_delete_answer() -> None:
    said = _answer("delete", {"ok": True, "result": True, "description": "Webhook was deleted"})
    assert said == Subscription(True, "Webhook was deleted: updates wait for getUpdates")


def test_show_of_this_gateways_webhook_with_a_delivery_error() -> None:
    said = _answer(
        "show",
        _info(
            url=HOOK,
            pending_update_count=3,
            last_error_date=NOW - 4 * 60 - 5,
            last_error_message="Wrong response from the webhook: 503 Service Unavailable",
            max_connections=40,
            ip_address="149.154.167.220",
            allowed_updates=list(HANDLED_UPDATES),
        ),
    )
    assert said == Subscription(
        ok=True,
        detail=f"webhook {HOOK} (3 pending; last error 'Wrong response from the webhook: "
        "503 Service Unavailable' 4 min ago)",
        subscribed=True,
        url=HOOK,
        fields=HANDLED_UPDATES,
        pending=3,
        last_error="Wrong response from the webhook: 503 Service Unavailable",
        last_error_at=NOW - 245,
        max_connections=40,
    )


def test_show_with_no_webhook_and_default_kinds() -> None:
    said = _answer("show", _info(pending_update_count=12))
    assert said.ok and said.subscribed is False and said.url is None and said.fields == ()
    assert said.detail == (
        "no webhook set: updates wait for getUpdates (12 pending); allowed_updates: "
        "Telegram's default (lacks message_reaction, chat_member; adds kinds not parsed)"
    )


def test_show_of_another_webhook_hides_the_token_it_carries() -> None:
    theirs = f"https://bots.example.net/hook/{TOKEN}"
    said = _answer("show", _info(url=theirs, max_connections=40))
    assert said.subscribed is False
    assert said.url == "https://bots.example.net/hook/<token>"
    assert said.detail.startswith(
        f"webhook is another's: https://bots.example.net/hook/<token>, not {HOOK} (0 pending)"
    )
    assert SECRET_HALF not in said.detail


def test_show_names_the_kinds_that_differ() -> None:
    kinds = ["message", "callback_query", "poll", "my_chat_member"]
    said = _answer("show", _info(url=HOOK, allowed_updates=kinds))
    assert said.subscribed is True and said.fields == tuple(kinds)
    assert said.detail == (
        f"webhook {HOOK} (0 pending); allowed_updates differ: missing: edited_message, "
        "channel_post, edited_channel_post, business_message, edited_business_message, "
        "message_reaction, chat_member; not parsed: poll"
    )


@pytest.mark.parametrize(
    ("seconds", "age"),
    [(0, "0 s ago"), (59, "59 s ago"), (60, "1 min ago"), (7199, "1 h ago"), (90000, "1 d ago")],
)
def test_last_error_age(seconds: int, age: str) -> None:
    said = _answer("show", _ours(last_error_date=NOW - seconds, last_error_message="x"))
    assert said.detail == f"webhook {HOOK} (0 pending; last error 'x' {age})"


def test_provider_text_is_kept_on_one_line() -> None:
    said = _answer("show", _ours(last_error_date=NOW, last_error_message="a\nb\r\n c"))
    assert "last error 'a b c' 0 s ago" in said.detail
    refused = _answer("set", _error(400, "Bad Request:\nbad webhook"), 400)
    assert refused.detail == "Telegram 400: Bad Request: bad webhook"


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    ("status", "payload", "detail"),
    [
        (401, _error(401, "Unauthorized"), "Telegram 401: Unauthorized"),
        (404, _error(404, "Not Found"), "Telegram 404: Not Found"),
        (
            429,
            {**_error(429, "Too Many Requests: retry after 1"), "parameters": {"retry_after": 1}},
            "Telegram 429: Too Many Requests: retry after 1",
        ),
        (502, b"<html><body>502 Bad Gateway</body></html>", "HTTP 502: not a Bot API answer"),
        (200, b"", "HTTP 200: not a Bot API answer"),
        (200, b'{"ok": true, "result"', "HTTP 200: not a Bot API answer"),
        (200, {"ok": False}, "HTTP 200: not a Bot API answer"),
        (500, {"error": "internal"}, "HTTP 500: not a Bot API answer"),
        (200, {"ok": True, "result": False}, "HTTP 200: not a Bot API answer"),
    ],
)
def test_failed_answers(action: Action, status: int, payload: Any, detail: str) -> None:
    assert _answer(action, payload, status) == Subscription(False, detail)


def test_show_needs_a_webhook_info() -> None:
    assert _answer("show", {"ok": True, "result": True}) == Subscription(
        False, "HTTP 200: not a Bot API answer"
    )
    assert _answer("set", _info()).detail == "HTTP 200: not a Bot API answer"


def test_the_channel_dates_errors_by_the_clock() -> None:
    body = json.dumps(_ours(last_error_date=1, last_error_message="x")).encode()
    said = CHANNEL.subscription(SETTINGS, ACCOUNT, "show", PUBLIC, 200, body)
    assert said.detail.endswith(" d ago)")


# -- against the fake Bot API ---------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI([TOKEN]) as bot_api:
        yield bot_api


async def _run(
    fake: FakeBotAPI, action: Action, public_url: str = PUBLIC, drop: bool = False
) -> Subscription:
    """One action as the gateway runs it: the ProviderCall over HTTP, its answer read back."""
    config = _settings(fake.base_url)
    call = CHANNEL.subscription_call(config, ACCOUNT, action, public_url, drop)
    assert call is not None
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            call.method, call.url, params=call.params, json=call.body, headers=call.headers
        ) as resp,
    ):
        body = await resp.read()
        return CHANNEL.subscription(config, ACCOUNT, action, public_url, resp.status, body)


async def test_set_show_delete_against_the_fake(fake: FakeBotAPI) -> None:
    fake.webhook(TOKEN).pending_update_count = 4
    assert await _run(fake, "set") == Subscription(
        True, f"Webhook was set: {HOOK} (10 update kinds)", url=HOOK, fields=HANDLED_UPDATES
    )
    hook = fake.webhook(TOKEN)
    assert (hook.url, hook.secret_token, hook.allowed_updates) == (
        HOOK,
        SECRET_TOKEN,
        frozenset(HANDLED_UPDATES),
    )
    shown = await _run(fake, "show")
    assert (shown.ok, shown.subscribed, shown.url, shown.pending) == (True, True, HOOK, 4)
    assert set(shown.fields) == set(HANDLED_UPDATES) and shown.max_connections == 40
    assert shown.detail == f"webhook {HOOK} (4 pending)"
    assert (await _run(fake, "delete", drop=True)).detail == (
        "Webhook was deleted: updates wait for getUpdates"
    )
    gone = await _run(fake, "show")
    assert (gone.ok, gone.subscribed, gone.url, gone.pending) == (True, False, None, 0)
    assert gone.detail == "no webhook set: updates wait for getUpdates (0 pending)"


async def test_set_with_an_http_public_url_is_refused(fake: FakeBotAPI) -> None:
    said = await _run(fake, "set", "http://gw.example.com")
    assert said == Subscription(
        False, "Telegram 400: Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
    )


async def test_a_revoked_token_is_401_and_a_proxy_page_is_not_the_bot_api(
    fake: FakeBotAPI,
) -> None:
    fake.tokens.clear()
    assert (await _run(fake, "show")).detail == "Telegram 401: Unauthorized"
    fake.fail_status(502, b"<html>502 Bad Gateway</html>")
    assert (await _run(fake, "set")).detail == "HTTP 502: not a Bot API answer"


# -- properties -----------------------------------------------------------------------------------

_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([TOKEN, SECRET_HALF, HOOK, ""]),
    st.builds(lambda a, b: f"{a}{TOKEN}{b}", st.text(max_size=400), st.text(max_size=400)),
)
_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    _TEXT,
    st.lists(_TEXT, max_size=4),
)
_INFO_KEYS = [
    "url",
    "pending_update_count",
    "last_error_date",
    "last_error_message",
    "max_connections",
    "allowed_updates",
]
_BODIES = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(_INFO_KEYS), _VALUE).map(
        lambda info: json.dumps({"ok": True, "result": info}).encode()
    ),
    st.builds(
        lambda ok, code, text, result: json.dumps(
            {"ok": ok, "error_code": code, "description": text, "result": result}
        ).encode(),
        st.booleans(),
        _VALUE,
        _TEXT,
        _VALUE,
    ),
)


@settings(max_examples=400)
@given(st.sampled_from(ACTIONS), st.integers(100, 599), _BODIES)
def test_any_answer_is_one_line_without_the_token(action: Action, status: int, body: bytes) -> None:
    said = CHANNEL.subscription(SETTINGS, ACCOUNT, action, PUBLIC, status, body)
    assert isinstance(said, Subscription)
    assert said.detail and len(said.detail.splitlines()) == 1 and len(said.detail) <= 600
    assert SECRET_HALF not in said.detail
    assert said.url is None or SECRET_HALF not in said.url
    assert said.last_error is None or SECRET_HALF not in said.last_error
    assert said.subscribed is None or action == "show"
