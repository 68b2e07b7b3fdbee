"""The fakes answer like the real Graph API and Bot API: success shapes, every error body,
scripted failures in order, and the rate limits they enforce. Driven over real HTTP with
aiohttp.ClientSession, as the gateway will drive them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway_demo.standins._bot_methods import OFF_BY_DEFAULT, UPDATE_TYPES
from gateway_demo.standins._server import SlidingWindow, peak_in_window
from gateway_demo.standins.graph_errors import GRAPH_ERRORS
from tests.fakes import FakeBotAPI, FakeGraphAPI, GraphRequest
from tests.fakes.send_api import WEBHOOK_FIELDS, FakeSendAPI

NUMBER_A = "100200300400500"
NUMBER_B = "100200300400600"
TOKENS = {NUMBER_A: "token-a", NUMBER_B: "token-b"}
USER = "+5511987650000"
OTHER_USER = "+27820000000"
BOT = "7000000001:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa"
PRIVATE, GROUP, SUPERGROUP = 4242, -4242, -1001234567890
FBTRACE = re.compile(r"A[A-Za-z0-9_-]{22}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphAPI]:
    async with FakeGraphAPI(TOKENS) as fake:
        yield fake


@pytest.fixture
async def bot() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI([BOT]) as fake:
        yield fake


def text(to: str = USER, body: str = "Olá!") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


async def send(
    http: aiohttp.ClientSession,
    graph: FakeGraphAPI,
    body: Any,
    *,
    number: str = NUMBER_A,
    token: str | None = TOKENS[NUMBER_A],
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{graph.base_url}/{number}/messages"
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def call(
    http: aiohttp.ClientSession, bot: FakeBotAPI, method: str, token: str = BOT, **params: Any
) -> tuple[int, Any]:
    async with http.post(f"{bot.base_url}/bot{token}/{method}", json=params) as resp:
        return resp.status, await resp.json()


def tg_error(code: int, description: str) -> tuple[int, dict[str, Any]]:
    return code, {"ok": False, "error_code": code, "description": description}


def graph_error(payload: Any) -> dict[str, Any]:
    """The error object, after checking the envelope Graph always sends."""
    assert set(payload) == {"error"}
    error: dict[str, Any] = payload["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(error)
    assert FBTRACE.fullmatch(error["fbtrace_id"])
    return error


# -- Graph API: success ------------------------------------------------------------------------


async def test_graph_text_send_answers_like_meta(http: Any, graph: FakeGraphAPI) -> None:
    status, payload = await send(http, graph, text())
    assert status == 200
    assert payload == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": USER, "wa_id": "5511987650000"}],
        "messages": [{"id": payload["messages"][0]["id"]}],
    }
    assert payload["messages"][0]["id"].startswith("wamid.")
    [record] = graph.requests
    assert (record.phone_number_id, record.token, record.status) == (NUMBER_A, "token-a", 200)
    assert record.body == text() and record.response == payload


async def test_graph_message_ids_are_unique(http: Any, graph: FakeGraphAPI) -> None:
    ids = {(await send(http, graph, text()))[1]["messages"][0]["id"] for _ in range(20)}
    assert len(ids) == 20


async def test_graph_template_is_accepted_with_message_status(
    http: Any, graph: FakeGraphAPI
) -> None:
    body = {
        "messaging_product": "whatsapp",
        "to": "27820000000",
        "type": "template",
        "template": {"name": "order_ready", "language": {"code": "en_US"}},
    }
    status, payload = await send(http, graph, body)
    assert status == 200
    assert payload["contacts"] == [{"input": "27820000000", "wa_id": "27820000000"}]
    assert payload["messages"][0]["message_status"] == "accepted"


async def test_graph_type_defaults_to_text(http: Any, graph: FakeGraphAPI) -> None:
    body = {"messaging_product": "whatsapp", "to": USER, "text": {"body": "hi"}}
    assert (await send(http, graph, body))[0] == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"type": "image", "image": {"id": "1234567890"}},
        {"type": "document", "document": {"link": "https://example.com/a.pdf", "filename": "a"}},
        {"type": "location", "location": {"latitude": -23.5, "longitude": -46.6}},
        {"type": "reaction", "reaction": {"message_id": "wamid.AAA", "emoji": ""}},
        {"type": "contacts", "contacts": [{"name": {"formatted_name": "Ana"}}]},
        {
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Confirm?"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "y", "title": "Yes"}}]},
            },
        },
    ],
)
async def test_graph_accepts_every_message_type(
    http: Any, graph: FakeGraphAPI, extra: dict[str, Any]
) -> None:
    assert (await send(http, graph, {"messaging_product": "whatsapp", "to": USER, **extra}))[
        0
    ] == 200


async def test_graph_bsuid_recipient(http: Any, graph: FakeGraphAPI) -> None:
    body = {"messaging_product": "whatsapp", "recipient": "BR.1234ABCD", "text": {"body": "oi"}}
    status, payload = await send(http, graph, body)
    assert status == 200
    assert payload["contacts"] == [{"input": "BR.1234ABCD", "user_id": "BR.1234ABCD"}]


async def test_graph_mark_read_and_typing(http: Any, graph: FakeGraphAPI) -> None:
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.AAA"}
    typing = {**read, "typing_indicator": {"type": "text"}}
    assert await send(http, graph, read) == (200, {"success": True})
    assert await send(http, graph, typing) == (200, {"success": True})
    assert [r.kind for r in graph.requests] == ["status", "status"]
    assert graph.sent_to(USER) == []


async def test_graph_token_in_query_string(http: Any, graph: FakeGraphAPI) -> None:
    url = f"{graph.base_url}/{NUMBER_B}/messages?access_token=token-b"
    async with http.post(url, json=text()) as resp:
        assert resp.status == 200


# -- Graph API: auth and routing ---------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "not-a-token"])
async def test_graph_missing_or_wrong_token_is_190(
    http: Any, graph: FakeGraphAPI, token: str | None
) -> None:
    url = f"{graph.base_url}/{NUMBER_A}/messages"
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.post(url, json=text(), headers=headers) as resp:
        status, payload, auth = resp.status, await resp.json(), resp.headers["WWW-Authenticate"]
    assert status == 401
    error = graph_error(payload)
    assert error == {
        "message": "Invalid OAuth access token - Cannot parse access token",
        "type": "OAuthException",
        "code": 190,
        "fbtrace_id": error["fbtrace_id"],
    }
    assert auth.startswith('OAuth "Facebook Platform" "invalid_token"')


@pytest.mark.parametrize(
    ("number", "token"), [("999999999999999", "token-a"), (NUMBER_B, "token-a")]
)
async def test_graph_number_the_token_cannot_see_is_100_33(
    http: Any, graph: FakeGraphAPI, number: str, token: str
) -> None:
    status, payload = await send(http, graph, text(), number=number, token=token)
    assert status == 400
    error = graph_error(payload)
    assert (error["code"], error["error_subcode"], error["type"]) == (
        100,
        33,
        "GraphMethodException",
    )
    assert error["message"].startswith(f"Unsupported post request. Object with ID '{number}'")


async def test_graph_unknown_path_is_2500(http: Any, graph: FakeGraphAPI) -> None:
    async with http.post(f"{graph.base_url}/{NUMBER_A}/message", json=text()) as resp:
        assert resp.status == 400
        error = graph_error(await resp.json())
    assert error["code"] == 2500
    assert error["message"] == f"Unknown path components: /v21.0/{NUMBER_A}/message"
    assert graph.requests == []


# -- Graph API: validation ---------------------------------------------------------------------

_BASE = {"messaging_product": "whatsapp", "to": USER}
_READ = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.AAA"}
_ALL_TYPES = "AUDIO, CONTACTS, DOCUMENT, IMAGE, INTERACTIVE, LOCATION, REACTION, STICKER, " + (
    "TEMPLATE, TEXT, VIDEO"
)
_REQUIRED = "(#100) The parameter {} is required."
_INVALID = "(#100) Invalid parameter"


@pytest.mark.parametrize(
    ("body", "message", "details"),
    [
        ("not json", _REQUIRED.format("messaging_product"), None),
        ({"to": USER, "text": {"body": "x"}}, _REQUIRED.format("messaging_product"), None),
        (
            {**_BASE, "messaging_product": "sms"},
            '(#100) Param messaging_product must be one of {WHATSAPP} - got "sms".',
            None,
        ),
        ({"messaging_product": "whatsapp", "text": {"body": "x"}}, _REQUIRED.format("to"), None),
        ({**_BASE, "to": "abc"}, _INVALID, "Invalid WhatsApp ID or phone number: 'abc'"),
        (
            {**_BASE, "type": "gif"},
            f'(#100) Param type must be one of {{{_ALL_TYPES}}} - got "gif".',
            None,
        ),
        ({**_BASE, "type": "text"}, _REQUIRED.format("text['body']"), None),
        ({**_BASE, "text": {"body": ""}}, _REQUIRED.format("text['body']"), None),
        ({**_BASE, "text": "hello"}, "(#100) Param text must be a JSON object.", None),
        (
            {**_BASE, "text": {"body": "x" * 4097}},
            "(#100) Param text['body'] must be at most 4096 characters long.",
            None,
        ),
        (
            {**_BASE, "type": "template", "template": {"name": "t"}},
            _REQUIRED.format("template['language']['code']"),
            None,
        ),
        (
            {**_BASE, "type": "image", "image": {"caption": "c"}},
            _INVALID,
            "Media must be given by either 'id' or 'link'.",
        ),
        (
            {**_BASE, "type": "location", "location": {"latitude": 1}},
            _REQUIRED.format("location['longitude']"),
            None,
        ),
        (
            {**_BASE, "type": "reaction", "reaction": {"emoji": "👍"}},
            _REQUIRED.format("reaction['message_id']"),
            None,
        ),
        (
            {**_BASE, "type": "interactive", "interactive": {"type": "button"}},
            _REQUIRED.format("interactive['action']"),
            None,
        ),
        (
            {**_READ, "status": "delivered"},
            '(#100) Param status must be one of {READ} - got "delivered".',
            None,
        ),
        ({**_READ, "message_id": ""}, _REQUIRED.format("message_id"), None),
        (
            {**_READ, "typing_indicator": {"type": "audio"}},
            _INVALID,
            "typing_indicator['type'] must be \"text\".",
        ),
    ],
)
async def test_graph_invalid_bodies_are_100(
    http: Any, graph: FakeGraphAPI, body: Any, message: str, details: str | None
) -> None:
    url = f"{graph.base_url}/{NUMBER_A}/messages"
    data = body if isinstance(body, str) else None
    kwargs: dict[str, Any] = {"data": data} if data else {"json": body}
    async with http.post(url, headers={"Authorization": "Bearer token-a"}, **kwargs) as resp:
        status, payload = resp.status, await resp.json()
    assert status == 400
    error = graph_error(payload)
    assert (error["code"], error["type"], error["message"]) == (100, "OAuthException", message)
    if details is None:
        assert "error_data" not in error
    else:
        assert error["error_data"] == {"messaging_product": "whatsapp", "details": details}


@pytest.mark.parametrize("count", [0, 4])
async def test_graph_reply_button_count_is_131009(
    http: Any, graph: FakeGraphAPI, count: int
) -> None:
    buttons = [{"type": "reply", "reply": {"id": str(i), "title": f"B{i}"}} for i in range(count)]
    interactive = {"type": "button", "body": {"text": "?"}, "action": {"buttons": buttons}}
    status, payload = await send(
        http, graph, {**_BASE, "type": "interactive", "interactive": interactive}
    )
    assert status == 400
    error = graph_error(payload)
    assert (error["code"], error["message"]) == (131009, "(#131009) Parameter value is not valid")
    assert "Max allowed buttons: 3" in error["error_data"]["details"]


# -- Graph API: scripted failures ----------------------------------------------------------------

# PLATFORM.md §5.3: code -> HTTP status.
PLATFORM_STATUSES = {
    0: 401,
    1: 400,
    2: 503,
    4: 429,
    10: 403,
    100: 400,
    190: 401,
    368: 403,
    80007: 429,
    130429: 429,
    130497: 403,
    131000: 500,
    131016: 500,
    131026: 400,
    131031: 403,
    131047: 400,
    131049: 400,
    131050: 400,
    131051: 400,
    131056: 429,
    131057: 400,
    133004: 503,
}


@pytest.mark.parametrize(("code", "http_status"), sorted(PLATFORM_STATUSES.items()))
async def test_graph_fail_answers_each_code_with_its_status_and_envelope(
    http: Any, graph: FakeGraphAPI, code: int, http_status: int
) -> None:
    graph.fail(code)
    status, payload = await send(http, graph, text())
    assert status == http_status
    error = graph_error(payload)
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert error["message"] == GRAPH_ERRORS[code].message
    if code != 190 and code != 4:
        assert error["error_data"]["messaging_product"] == "whatsapp"
        assert error["error_data"]["details"]
    assert "error_subcode" not in error
    assert (await send(http, graph, text()))[0] == 200


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (131047, "(#131047) Re-engagement message"),
        (130429, "(#130429) Rate limit hit"),
        (131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
        (
            131050,
            "(#131050) Unable to deliver the message. This recipient has chosen to stop "
            "receiving marketing messages on WhatsApp from your business",
        ),
        (130497, "(#130497) Business account is restricted from messaging users in this country"),
        (131026, "(#131026) Message Undeliverable"),
        (190, "Invalid OAuth access token"),
    ],
)
async def test_graph_error_messages_are_metas(
    http: Any, graph: FakeGraphAPI, code: int, message: str
) -> None:
    graph.fail(code)
    _, payload = await send(http, graph, text())
    assert graph_error(payload)["message"] == message


async def test_graph_131047_body_is_exactly_metas(http: Any, graph: FakeGraphAPI) -> None:
    graph.fail(131047)
    url = f"{graph.base_url}/{NUMBER_A}/messages"
    headers = {"Authorization": "Bearer token-a"}
    async with http.post(url, json=text(), headers=headers) as resp:
        payload, trace = await resp.json(), resp.headers["x-fb-trace-id"]
    assert payload == {
        "error": {
            "message": "(#131047) Re-engagement message",
            "type": "OAuthException",
            "code": 131047,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": "Message failed to send because more than 24 hours have passed since "
                "the customer last replied to this number.",
            },
            "fbtrace_id": trace,
        }
    }


async def test_graph_failures_are_consumed_in_order_and_by_filter(
    http: Any, graph: FakeGraphAPI
) -> None:
    graph.fail(131056, recipient=USER)
    graph.fail(130429, times=2)
    graph.fail(131000, phone_number_id=NUMBER_B)
    codes = []
    for to, number in [
        (OTHER_USER, NUMBER_A),
        (USER, NUMBER_A),
        (USER, NUMBER_A),
        (USER, NUMBER_B),
        (USER, NUMBER_A),
    ]:
        token = TOKENS[number]
        status, payload = await send(http, graph, text(to), number=number, token=token)
        codes.append(payload["error"]["code"] if status != 200 else 200)
    assert codes == [130429, 131056, 130429, 131000, 200]


async def test_graph_recipient_filter_ignores_plus(http: Any, graph: FakeGraphAPI) -> None:
    graph.fail(131026, recipient="5511987650000")
    assert (await send(http, graph, text(USER)))[0] == 400


async def test_graph_failures_skip_mark_as_read(http: Any, graph: FakeGraphAPI) -> None:
    graph.fail(131047)
    read = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.AAA"}
    assert (await send(http, graph, read))[0] == 200
    assert (await send(http, graph, text()))[0] == 400


async def test_graph_fail_can_override_status_and_text(http: Any, graph: FakeGraphAPI) -> None:
    graph.fail(130429, http_status=400, details="custom")
    status, payload = await send(http, graph, text())
    assert status == 400
    assert graph_error(payload)["error_data"]["details"] == "custom"


async def test_graph_repeated_failures_get_fresh_trace_ids(http: Any, graph: FakeGraphAPI) -> None:
    graph.fail(131000, times=3)
    traces = {(await send(http, graph, text()))[1]["error"]["fbtrace_id"] for _ in range(3)}
    assert len(traces) == 3


async def test_graph_fail_status_sends_raw_bytes_before_auth(
    http: Any, graph: FakeGraphAPI
) -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    graph.fail_status(502, page, times=2)
    for token in ("token-a", None):
        url = f"{graph.base_url}/{NUMBER_A}/messages"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with http.post(url, json=text(), headers=headers) as resp:
            assert (resp.status, await resp.read()) == (502, page)
            assert resp.content_type == "text/html"
    assert (await send(http, graph, text()))[0] == 200
    assert [r.status for r in graph.requests] == [502, 502, 200]


async def test_graph_delay_makes_clients_time_out(http: Any, graph: FakeGraphAPI) -> None:
    graph.delay(0.5, times=1)
    url = f"{graph.base_url}/{NUMBER_A}/messages"
    timeout = aiohttp.ClientTimeout(total=0.1)
    headers = {"Authorization": "Bearer token-a"}
    with pytest.raises(TimeoutError):
        async with http.post(url, json=text(), headers=headers, timeout=timeout):
            pass
    assert len(graph.requests) == 1  # recorded on arrival, whatever the client did
    assert (await send(http, graph, text()))[0] == 200


# -- Graph API: throughput and recording ---------------------------------------------------------


async def test_graph_enforced_throughput_answers_130429_past_the_cap(
    http: Any, graph: FakeGraphAPI
) -> None:
    graph.enforce_throughput(NUMBER_A, 5)
    results = await asyncio.gather(*(send(http, graph, text()) for _ in range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 5 + [429] * 3
    rejected = [payload for status, payload in results if status == 429]
    assert all(p["error"]["code"] == 130429 for p in rejected)
    assert graph.peak_per_second(NUMBER_A) == 5
    # Another number is not capped by NUMBER_A's limit.
    assert (await send(http, graph, text(), number=NUMBER_B, token="token-b"))[0] == 200
    await asyncio.sleep(1.02)
    assert (await send(http, graph, text()))[0] == 200


async def test_graph_peak_counts_only_accepted_sends(http: Any, graph: FakeGraphAPI) -> None:
    graph.fail(131000, times=3)
    for _ in range(5):
        await send(http, graph, text())
    await send(http, graph, {"messaging_product": "whatsapp", "status": "read", "message_id": "w"})
    await send(http, graph, text(), number=NUMBER_B, token="token-b")
    assert graph.peak_per_second(NUMBER_A) == 2
    assert graph.peak_per_second(NUMBER_B) == 1
    assert graph.peak_per_second() == 3
    assert len(graph.sent_to(USER)) == 3


async def test_graph_peak_uses_arrival_times(graph: FakeGraphAPI) -> None:
    graph.requests.extend(
        _graph_record(t) for t in (10.0, 10.4, 10.99, 11.0, 11.5, 11.98, 12.2, 13.5)
    )
    # [10.99, 11.99) holds 10.99, 11.0, 11.5, 11.98.
    assert graph.peak_per_second(NUMBER_A) == 4


async def test_graph_wait_for(http: Any, graph: FakeGraphAPI) -> None:
    task = asyncio.create_task(graph.wait_for(2, 2.0))
    await send(http, graph, text())
    await send(http, graph, text(OTHER_USER))
    records = await task
    assert [r.recipient for r in records] == [USER, OTHER_USER]
    with pytest.raises(TimeoutError, match="2 of 3 requests"):
        await graph.wait_for(3, 0.05)


def _graph_record(arrived: float) -> GraphRequest:
    return GraphRequest(arrived, NUMBER_A, "token-a", text(), 200, {"messages": []})


# -- Graph API and Send API: webhook subscriptions (subscribed_apps) -----------------------------

WABA = "102289599326934"
APP = "1234567890123456"  # the fakes' own app
OTHER_APP = "5256512345678901"
PAGE = "104400000000001"
IG = "17841400000000001"
PAGE_TOKEN, IG_TOKEN = "page-token-a", "ig-token-a"


async def subscribed_apps(
    http: aiohttp.ClientSession, url: str, method: str, token: str | None, **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, f"{url}/subscribed_apps", headers=headers, **kw) as resp:
        return resp.status, await resp.json()


async def test_graph_waba_subscribed_apps_answer_like_meta(http: Any) -> None:
    async with FakeGraphAPI(TOKENS, wabas={WABA: [NUMBER_A, NUMBER_B]}) as graph:
        url = f"{graph.base_url}/{WABA}"
        assert await subscribed_apps(http, url, "GET", "token-a") == (200, {"data": []})
        assert await subscribed_apps(http, url, "POST", "token-b") == (200, {"success": True})
        app = {"id": APP, "link": f"https://www.facebook.com/games/?app_id={APP}",
               "name": "Gateway Test App"}  # fmt: skip
        listed = {"data": [{"whatsapp_business_api_data": app}]}
        assert await subscribed_apps(http, url, "GET", "token-a") == (200, listed)
        assert await subscribed_apps(http, url, "DELETE", "token-a") == (200, {"success": True})
        assert graph.subscribed_apps(WABA) == []
        assert [(r.method, r.edge, r.phone_number_id, r.accepted) for r in graph.requests][:2] == [
            ("GET", "subscribed_apps", WABA, False), ("POST", "subscribed_apps", WABA, False)
        ]  # fmt: skip


async def test_graph_waba_subscribed_apps_check_the_token(http: Any) -> None:
    async with FakeGraphAPI(TOKENS, wabas={WABA: [NUMBER_A]}) as graph:
        url = f"{graph.base_url}/{WABA}"
        status, payload = await subscribed_apps(http, url, "POST", "not-a-token")
        assert (status, graph_error(payload)["code"]) == (401, 190)
        for method in ("GET", "DELETE"):
            status, payload = await subscribed_apps(http, url, method, "token-b")  # number B's
            error = graph_error(payload)
            assert (status, error["code"], error["error_subcode"]) == (400, 100, 33)
            assert error["message"].startswith(
                f"Unsupported {method.lower()} request. Object with ID '{WABA}'"
            )
        assert graph.subscribed_apps(WABA) == []


async def test_graph_waba_subscriptions_can_be_scripted(http: Any) -> None:
    async with FakeGraphAPI(TOKENS, wabas={WABA: [NUMBER_A]}) as graph:
        url = f"{graph.base_url}/{WABA}"
        graph.subscribe(WABA, OTHER_APP, "Jaspers Market")
        graph.subscribe(WABA)
        graph.unsubscribe(WABA)  # Meta, after an hour of failed deliveries
        _, payload = await subscribed_apps(http, url, "GET", "token-a")
        assert [r["whatsapp_business_api_data"]["name"] for r in payload["data"]] == [
            "Jaspers Market"
        ]
        graph.fail_status(502, b"<html>Bad Gateway</html>")
        async with http.post(f"{url}/subscribed_apps") as resp:
            assert (resp.status, await resp.read()) == (502, b"<html>Bad Gateway</html>")


async def test_send_api_page_subscribed_apps_answer_like_meta(http: Any) -> None:
    async with FakeSendAPI(pages={PAGE: PAGE_TOKEN}) as fake:
        url = f"{fake.messenger_url}/v21.0/{PAGE}"
        fields = {"subscribed_fields": "messages,messaging_postbacks"}
        answer = await subscribed_apps(http, url, "POST", PAGE_TOKEN, params=fields)
        assert answer == (200, {"success": True})
        row = {"category": "Business", "link": f"https://www.facebook.com/games/?app_id={APP}",
               "name": "Gateway Test App", "id": APP,
               "subscribed_fields": ["messages", "messaging_postbacks"]}  # fmt: skip
        assert await subscribed_apps(http, url, "GET", PAGE_TOKEN) == (200, {"data": [row]})
        # A later POST replaces the list; a JSON list in a JSON body is taken too.
        body = {"subscribed_fields": ["standby"]}
        assert (await subscribed_apps(http, url, "POST", PAGE_TOKEN, json=body))[0] == 200
        assert fake.subscribed_fields(PAGE) == ["standby"]
        assert await subscribed_apps(http, url, "DELETE", PAGE_TOKEN) == (200, {"success": True})
        assert await subscribed_apps(http, url, "GET", PAGE_TOKEN) == (200, {"data": []})
        assert [r.method for r in fake.requests] == ["POST", "GET", "POST", "DELETE", "GET"]
        assert {r.edge for r in fake.requests} == {"subscribed_apps"}


async def test_send_api_app_without_fields_is_listed_without_them(http: Any) -> None:
    async with FakeSendAPI(pages={PAGE: PAGE_TOKEN}) as fake:
        fake.subscribe_app(PAGE, [], OTHER_APP, "Page Inbox")
        _, payload = await subscribed_apps(
            http, f"{fake.messenger_url}/v21.0/{PAGE}", "GET", PAGE_TOKEN
        )
        assert payload["data"][0]["id"] == OTHER_APP
        assert "subscribed_fields" not in payload["data"][0]


async def test_send_api_instagram_subscribed_apps_and_me(http: Any) -> None:
    async with FakeSendAPI(accounts={IG: IG_TOKEN}) as fake:
        base = f"{fake.instagram_url}/v21.0"
        fields = {"subscribed_fields": "messages,messaging_seen"}
        assert (await subscribed_apps(http, f"{base}/{IG}", "POST", IG_TOKEN, params=fields))[
            0
        ] == 200
        listed = {"data": [{"id": APP, "subscribed_fields": ["messages", "messaging_seen"]}]}
        assert await subscribed_apps(http, f"{base}/me", "GET", IG_TOKEN) == (200, listed)
        status, payload = await subscribed_apps(http, f"{base}/me", "POST", IG_TOKEN, params=fields)
        error = graph_error(payload)
        assert (status, error["code"], error["type"]) == (400, 100, "IGApiException")
        assert error["message"] == "Unsupported request - method type: post"
        fake.unsubscribe(IG)
        assert await subscribed_apps(http, f"{base}/{IG}", "GET", IG_TOKEN) == (200, {"data": []})


@pytest.mark.parametrize(
    ("host", "fields", "message"),
    [
        ("messenger", None, "(#100) The parameter subscribed_fields is required"),
        ("messenger", "messages,comments", '(#100) Param subscribed_fields[1] must be one of {'),
        ("instagram", "messages,message_deliveries",
         '(#100) Param subscribed_fields[1] must be one of {agent_messages, messages, '),
    ],
)  # fmt: skip
async def test_send_api_subscribed_fields_are_checked_and_one_bad_fails_all(
    http: Any, host: str, fields: str | None, message: str
) -> None:
    async with FakeSendAPI(pages={PAGE: PAGE_TOKEN}, accounts={IG: IG_TOKEN}) as fake:
        account, token, root = (
            (PAGE, PAGE_TOKEN, fake.messenger_url) if host == "messenger"
            else (IG, IG_TOKEN, fake.instagram_url)
        )  # fmt: skip
        params = {"subscribed_fields": fields} if fields else {}
        url = f"{root}/v21.0/{account}"
        status, payload = await subscribed_apps(http, url, "POST", token, params=params)
        error = graph_error(payload)
        assert (status, error["code"]) == (400, 100)
        assert error["message"].startswith(message)
        if fields:
            bad = fields.split(",")[1]
            assert error["message"].endswith(f'- got "{bad}"')
        assert fake.subscribed_fields(account) is None  # nothing subscribed


async def test_send_api_subscribed_apps_check_the_token(http: Any) -> None:
    other = "104400000000002"
    async with FakeSendAPI(pages={PAGE: PAGE_TOKEN, other: "page-token-b"}) as fake:
        url = f"{fake.messenger_url}/v21.0/{PAGE}"
        status, payload = await subscribed_apps(http, url, "GET", IG_TOKEN)
        assert (status, graph_error(payload)["code"]) == (401, 190)
        status, payload = await subscribed_apps(http, url, "DELETE", "page-token-b")
        error = graph_error(payload)
        assert (status, error["code"], error["error_subcode"]) == (400, 100, 33)
        assert error["message"].startswith(f"Unsupported delete request. Object with ID '{PAGE}'")


def test_send_api_instagram_offers_the_fields_metas_error_lists() -> None:
    """Quoted from Meta's own refusal on Instagram Login (see send_api.WEBHOOK_FIELDS)."""
    assert len(WEBHOOK_FIELDS["instagram"]) == 23
    assert {"message_edit", "messaging_handover", "messaging_optins", "standby"} <= set(
        WEBHOOK_FIELDS["instagram"]
    )
    assert "message_deliveries" not in WEBHOOK_FIELDS["instagram"]


# -- window arithmetic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("times", "peak"),
    [
        ([], 0),
        ([5.0], 1),
        ([0.0, 1.0, 2.0, 3.0], 1),  # the window is half-open: 1.0 s apart never share one
        ([0.0, 0.999, 1.998], 2),
        ([3.0, 0.1, 0.2, 0.3, 2.0], 3),  # unsorted input
        ([0.0] * 7, 7),
    ],
)
def test_peak_in_window(times: list[float], peak: int) -> None:
    assert peak_in_window(times) == peak


def test_sliding_window_never_admits_more_than_its_limit() -> None:
    window, admitted = SlidingWindow(3, 1.0), []
    for i in range(100):
        now = i * 0.13
        if window.wait_s(now) == 0:
            window.add(now)
            admitted.append(now)
    assert peak_in_window(admitted) == 3
    assert window.wait_s(admitted[-1]) > 0


# -- Bot API: success ------------------------------------------------------------------------------


async def test_bot_send_message_answers_like_telegram(http: Any, bot: FakeBotAPI) -> None:
    status, payload = await call(http, bot, "sendMessage", chat_id=PRIVATE, text="hello")
    assert status == 200
    result = payload["result"]
    assert payload == {"ok": True, "result": result}
    assert result["message_id"] == 1
    assert result["from"]["id"] == 7000000001 and result["from"]["is_bot"] is True
    assert result["chat"] == {"id": PRIVATE, "first_name": "Test", "type": "private"}
    assert isinstance(result["date"], int) and result["text"] == "hello"
    [record] = bot.requests
    assert (record.method, record.chat_id, record.status, record.token) == (
        "sendMessage",
        PRIVATE,
        200,
        BOT,
    )


async def test_bot_message_ids_count_per_chat(http: Any, bot: FakeBotAPI) -> None:
    ids = []
    for chat in (PRIVATE, PRIVATE, GROUP, PRIVATE, SUPERGROUP):
        _, payload = await call(http, bot, "sendMessage", chat_id=chat, text="x")
        ids.append((chat, payload["result"]["message_id"], payload["result"]["chat"]["type"]))
    assert ids == [
        (PRIVATE, 1, "private"),
        (PRIVATE, 2, "private"),
        (GROUP, 1, "group"),
        (PRIVATE, 3, "private"),
        (SUPERGROUP, 1, "supergroup"),
    ]


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("sendPhoto", {"photo": "https://example.com/a.jpg", "caption": "c"}, "photo"),
        ("sendDocument", {"document": "BQACAgIAAxkBAAI"}, "document"),
        ("sendAudio", {"audio": "https://example.com/a.mp3"}, "audio"),
        ("sendVoice", {"voice": "https://example.com/a.ogg"}, "voice"),
        ("sendVideo", {"video": "https://example.com/a.mp4"}, "video"),
        ("sendLocation", {"latitude": -23.5, "longitude": -46.6}, "location"),
        ("sendVenue", {"latitude": 1, "longitude": 2, "title": "T", "address": "A"}, "venue"),
    ],
)
async def test_bot_sending_methods_return_messages(
    http: Any, bot: FakeBotAPI, method: str, params: dict[str, Any], field: str
) -> None:
    status, payload = await call(http, bot, method, chat_id=PRIVATE, **params)
    assert status == 200 and payload["ok"] is True
    assert field in payload["result"]
    assert bot.requests[0].sent


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("sendChatAction", {"chat_id": PRIVATE, "action": "typing"}),
        ("answerCallbackQuery", {"callback_query_id": "4382bfdwdsb323b2d9"}),
        (
            "setMessageReaction",
            {"chat_id": PRIVATE, "message_id": 7, "reaction": [{"type": "emoji", "emoji": "👍"}]},
        ),
    ],
)
async def test_bot_action_methods_return_true(
    http: Any, bot: FakeBotAPI, method: str, params: dict[str, Any]
) -> None:
    assert await call(http, bot, method, **params) == (200, {"ok": True, "result": True})
    assert not bot.requests[0].sent


async def test_bot_methods_are_case_insensitive(http: Any, bot: FakeBotAPI) -> None:
    assert (await call(http, bot, "SENDMESSAGE", chat_id=PRIVATE, text="x"))[0] == 200
    assert bot.requests[0].method == "sendMessage"


async def test_bot_accepts_form_and_query_parameters(http: Any, bot: FakeBotAPI) -> None:
    url = f"{bot.base_url}/bot{BOT}/sendMessage"
    async with http.post(url, data={"chat_id": str(PRIVATE), "text": "form"}) as resp:
        assert resp.status == 200
    async with http.get(url, params={"chat_id": str(GROUP), "text": "query"}) as resp:
        assert (await resp.json())["result"]["chat"]["id"] == GROUP
    assert [r.chat_id for r in bot.requests] == [PRIVATE, GROUP]


# -- Bot API: errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "description"),
    [
        ("/bot7000000001:AAHwrongtoken/sendMessage", 401, "Unauthorized"),
        ("/botnot-a-token/sendMessage", 404, "Not Found"),
        (f"/bot{BOT}/getUpdatez", 404, "Not Found"),
        ("/sendMessage", 404, "Not Found"),
    ],
)
async def test_bot_auth_and_routing_errors(
    http: Any, bot: FakeBotAPI, path: str, status: int, description: str
) -> None:
    async with http.post(bot.base_url + path, json={"chat_id": PRIVATE, "text": "x"}) as resp:
        assert resp.status == status
        assert await resp.json() == {"ok": False, "error_code": status, "description": description}


_PRIVATE = {"chat_id": PRIVATE}


@pytest.mark.parametrize(
    ("method", "params", "description"),
    [
        ("sendMessage", {"text": "x"}, "chat_id is empty"),
        ("sendMessage", {"chat_id": "", "text": "x"}, "chat_id is empty"),
        ("sendMessage", _PRIVATE, "message text is empty"),
        ("sendMessage", {**_PRIVATE, "text": "  "}, "message text is empty"),
        ("sendMessage", {**_PRIVATE, "text": "x" * 4097}, "message is too long"),
        ("sendMessage", {"chat_id": "@somechannel", "text": "x"}, "chat not found"),
        ("sendPhoto", _PRIVATE, "there is no photo in the request"),
        ("sendDocument", _PRIVATE, "there is no document in the request"),
        (
            "sendPhoto",
            {**_PRIVATE, "photo": "p", "caption": "c" * 1025},
            "message caption is too long",
        ),
        ("sendLocation", {**_PRIVATE, "longitude": 1}, "latitude is empty"),
        ("sendChatAction", {**_PRIVATE, "action": "dancing"}, "wrong parameter action in request"),
        ("sendChatAction", _PRIVATE, "wrong parameter action in request"),
        (
            "answerCallbackQuery",
            {},
            "query is too old and response timeout expired or query ID is invalid",
        ),
        ("setMessageReaction", _PRIVATE, "message to react not found"),
        (
            "setMessageReaction",
            {**_PRIVATE, "message_id": 3, "reaction": [{"type": "emoji"}]},
            "REACTION_INVALID",
        ),
    ],
)
async def test_bot_validation_errors(
    http: Any, bot: FakeBotAPI, method: str, params: dict[str, Any], description: str
) -> None:
    status, payload = await call(http, bot, method, **params)
    assert (status, payload) == tg_error(400, f"Bad Request: {description}")


async def test_bot_text_of_exactly_4096_is_accepted(http: Any, bot: FakeBotAPI) -> None:
    assert (await call(http, bot, "sendMessage", chat_id=PRIVATE, text="é" * 4096))[0] == 200


async def test_bot_unparsable_json_is_400(http: Any, bot: FakeBotAPI) -> None:
    url = f"{bot.base_url}/bot{BOT}/sendMessage"
    headers = {"Content-Type": "application/json"}
    async with http.post(url, data=b"{not json", headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["description"].startswith("Bad Request: can't parse JSON")


async def test_bot_blocked_and_not_started_chats(http: Any, bot: FakeBotAPI) -> None:
    bot.block(PRIVATE)
    bot.never_started(PRIVATE + 1)
    bot.chat_not_found(str(GROUP))
    answers = [
        await call(http, bot, "sendMessage", chat_id=PRIVATE, text="x"),
        await call(http, bot, "sendChatAction", chat_id=PRIVATE, action="typing"),
        await call(http, bot, "sendMessage", chat_id=PRIVATE + 1, text="x"),
        await call(http, bot, "sendMessage", chat_id=GROUP, text="x"),
    ]
    assert answers == [
        tg_error(403, "Forbidden: bot was blocked by the user"),
        tg_error(403, "Forbidden: bot was blocked by the user"),
        tg_error(403, "Forbidden: bot can't initiate conversation with a user"),
        tg_error(400, "Bad Request: chat not found"),
    ]
    bot.unblock(PRIVATE)
    assert (await call(http, bot, "sendMessage", chat_id=PRIVATE, text="x"))[0] == 200
    assert bot.sent_to(PRIVATE) == [bot.requests[-1]]


async def test_bot_scripted_429_carries_retry_after(http: Any, bot: FakeBotAPI) -> None:
    bot.fail(429, retry_after=17)
    status, payload = await call(http, bot, "sendMessage", chat_id=PRIVATE, text="x")
    assert status == 429
    assert payload == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 17",
        "parameters": {"retry_after": 17},
    }
    bot.fail(429)
    assert (await call(http, bot, "sendMessage", chat_id=PRIVATE, text="x"))[1]["parameters"] == {
        "retry_after": 1
    }


async def test_bot_scripted_migration(http: Any, bot: FakeBotAPI) -> None:
    bot.fail(400, chat_id=GROUP, migrate_to_chat_id=SUPERGROUP)
    status, payload = await call(http, bot, "sendMessage", chat_id=GROUP, text="x")
    assert status == 400
    assert payload == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": SUPERGROUP},
    }


async def test_bot_failures_are_consumed_in_order_and_by_filter(http: Any, bot: FakeBotAPI) -> None:
    bot.fail(403, "Forbidden: user is deactivated", chat_id=PRIVATE)
    bot.fail(500, "Internal Server Error: restart", times=2, method="sendMessage")
    calls = [
        ("sendChatAction", GROUP, {"action": "typing"}),
        ("sendMessage", GROUP, {"text": "x"}),
        ("sendMessage", PRIVATE, {"text": "x"}),
        ("sendMessage", PRIVATE, {"text": "x"}),
        ("sendMessage", PRIVATE, {"text": "x"}),
    ]
    seen = []
    for method, chat, params in calls:
        status, payload = await call(http, bot, method, chat_id=chat, **params)
        seen.append((status, payload.get("description")))
    assert seen == [
        (200, None),
        (500, "Internal Server Error: restart"),
        (403, "Forbidden: user is deactivated"),
        (500, "Internal Server Error: restart"),
        (200, None),
    ]


async def test_bot_fail_status_and_delay(http: Any, bot: FakeBotAPI) -> None:
    bot.fail_status(502, b"<html>502 Bad Gateway</html>")
    async with http.post(f"{bot.base_url}/bot{BOT}/sendMessage", json={}) as resp:
        assert (resp.status, await resp.text()) == (502, "<html>502 Bad Gateway</html>")
    bot.delay(0.5)
    with pytest.raises(TimeoutError):
        async with http.post(
            f"{bot.base_url}/bot{BOT}/sendMessage",
            json={"chat_id": PRIVATE, "text": "x"},
            timeout=aiohttp.ClientTimeout(total=0.1),
        ):
            pass
    await bot.wait_for(2, 1.0)


# -- Bot API: flood limits ------------------------------------------------------------------------


async def test_bot_private_chat_limit_is_one_per_second(http: Any, bot: FakeBotAPI) -> None:
    bot.enforce_limits()
    assert (await call(http, bot, "sendMessage", chat_id=PRIVATE, text="1"))[0] == 200
    status, payload = await call(http, bot, "sendMessage", chat_id=PRIVATE, text="2")
    assert status == 429
    assert payload["parameters"] == {"retry_after": 1}
    assert payload["description"] == "Too Many Requests: retry after 1"
    # Other chats, and chat actions, are not held back by this chat's limit.
    assert (await call(http, bot, "sendMessage", chat_id=PRIVATE + 1, text="x"))[0] == 200
    assert (await call(http, bot, "sendChatAction", chat_id=PRIVATE, action="typing"))[0] == 200
    await asyncio.sleep(1.02)
    assert (await call(http, bot, "sendMessage", chat_id=PRIVATE, text="3"))[0] == 200
    assert bot.peak_per_second(PRIVATE) == 1


async def test_bot_group_limit_is_twenty_per_minute(http: Any, bot: FakeBotAPI) -> None:
    bot.enforce_limits()
    results = [await call(http, bot, "sendMessage", chat_id=GROUP, text="x") for _ in range(21)]
    assert [s for s, _ in results] == [200] * 20 + [429]
    assert 55 <= results[-1][1]["parameters"]["retry_after"] <= 60


async def test_bot_limit_is_thirty_per_second_across_chats(http: Any, bot: FakeBotAPI) -> None:
    bot.enforce_limits()
    results = await asyncio.gather(
        *(call(http, bot, "sendMessage", chat_id=1000 + i, text="x") for i in range(32))
    )
    assert sorted(s for s, _ in results) == [200] * 30 + [429] * 2
    assert bot.peak_per_second() == 30
    assert bot.peak_per_second(1000) <= 1


async def test_bot_peak_per_second_counts_sends_only(http: Any, bot: FakeBotAPI) -> None:
    bot.fail(429, times=2, chat_id=PRIVATE)
    for _ in range(4):
        await call(http, bot, "sendMessage", chat_id=PRIVATE, text="x")
    await call(http, bot, "sendChatAction", chat_id=PRIVATE, action="typing")
    assert bot.peak_per_second(PRIVATE) == 2
    assert bot.peak_per_second(str(PRIVATE)) == 2
    assert bot.peak_per_second(GROUP) == 0


# -- Bot API: webhooks ----------------------------------------------------------------------------

HOOK = "https://gw.example.com/webhooks/telegram/7000000001"
SECRET = "s3cret_token-XYZ"


async def set_hook(
    http: aiohttp.ClientSession, bot: FakeBotAPI, url: str = HOOK, **params: Any
) -> tuple[int, Any]:
    return await call(http, bot, "setWebhook", url=url, **params)


async def webhook_info(http: aiohttp.ClientSession, bot: FakeBotAPI) -> dict[str, Any]:
    async with http.get(f"{bot.base_url}/bot{BOT}/getWebhookInfo") as resp:
        payload = await resp.json()
    assert resp.status == 200 and payload["ok"] is True
    result: dict[str, Any] = payload["result"]
    return result


async def test_bot_webhook_info_with_none_set(http: Any, bot: FakeBotAPI) -> None:
    assert await webhook_info(http, bot) == {
        "url": "",
        "has_custom_certificate": False,
        "pending_update_count": 0,
    }


async def test_bot_set_webhook_then_info_lists_it(http: Any, bot: FakeBotAPI) -> None:
    kinds = ["callback_query", "message", "MESSAGE_REACTION", "no_such_kind"]
    answer = await set_hook(http, bot, secret_token=SECRET, allowed_updates=kinds)
    assert answer == (200, {"ok": True, "result": True, "description": "Webhook was set"})
    assert await webhook_info(http, bot) == {
        "url": HOOK,
        "has_custom_certificate": False,
        "pending_update_count": 0,
        "max_connections": 40,
        "ip_address": "192.0.2.10",
        "allowed_updates": ["message", "callback_query", "message_reaction"],
    }
    assert bot.webhook(BOT).secret_token == SECRET
    [record] = [r for r in bot.requests if r.method == "setWebhook"]
    assert record.params is not None and record.params["allowed_updates"] == kinds


async def test_bot_set_webhook_again_is_already_set(http: Any, bot: FakeBotAPI) -> None:
    await set_hook(http, bot, secret_token=SECRET)
    again = await set_hook(http, bot, secret_token=SECRET, allowed_updates=["message"])
    assert again[1]["description"] == "Webhook is already set"
    assert (await webhook_info(http, bot))["allowed_updates"] == ["message"]
    other = await set_hook(http, bot, secret_token="another")
    assert other[1]["description"] == "Webhook was set"


async def test_bot_default_allowed_updates_are_left_out(http: Any, bot: FakeBotAPI) -> None:
    await set_hook(http, bot, allowed_updates=["chat_member"])
    assert (await webhook_info(http, bot))["allowed_updates"] == ["chat_member"]
    await set_hook(http, bot, allowed_updates=[])
    assert "allowed_updates" not in await webhook_info(http, bot)
    default = [kind for kind in UPDATE_TYPES if kind not in OFF_BY_DEFAULT]
    await set_hook(http, bot, allowed_updates=["message_reaction"])
    await set_hook(http, bot, allowed_updates=default)
    assert "allowed_updates" not in await webhook_info(http, bot)


async def test_bot_allowed_updates_not_a_list_of_names_change_nothing(
    http: Any, bot: FakeBotAPI
) -> None:
    await set_hook(http, bot, allowed_updates=["message"])
    await set_hook(http, bot, allowed_updates="message")
    await set_hook(http, bot, allowed_updates=[1, "poll"])
    await set_hook(http, bot)
    assert (await webhook_info(http, bot))["allowed_updates"] == ["message"]
    url = f"{bot.base_url}/bot{BOT}/setWebhook"
    form = {"url": HOOK, "allowed_updates": '["poll"]'}
    async with http.post(url, data=form) as resp:
        assert resp.status == 200
    assert (await webhook_info(http, bot))["allowed_updates"] == ["poll"]


@pytest.mark.parametrize(
    ("params", "description"),
    [
        (
            {"url": "http://gw.example.com/hook"},
            "bad webhook: An HTTPS URL must be provided for webhook",
        ),
        (
            {"url": "https://gw.example.com:8080/hook"},
            "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        ),
        ({"url": "ftp://gw.example.com/hook"}, "invalid webhook URL specified"),
        ({"url": "https:///hook"}, "invalid webhook URL specified"),
        ({"url": HOOK, "secret_token": "has space"}, "secret token contains unallowed characters"),
        ({"url": HOOK, "secret_token": "a=b"}, "secret token contains unallowed characters"),
        ({"url": HOOK, "secret_token": "a" * 257}, "secret token is too long"),
    ],
)
async def test_bot_set_webhook_refusals(
    http: Any, bot: FakeBotAPI, params: dict[str, Any], description: str
) -> None:
    await set_hook(http, bot)
    status, payload = await call(http, bot, "setWebhook", **params)
    assert (status, payload) == tg_error(400, f"Bad Request: {description}")
    # The server closes the old webhook before it checks the new one.
    assert (await webhook_info(http, bot))["url"] == ""


@pytest.mark.parametrize(
    "url",
    [
        HOOK,
        "https://gw.example.com:8443/x",
        "https://gw.example.com:88/x",
        "gw.example.com/x",
    ],
)
async def test_bot_set_webhook_accepts(http: Any, bot: FakeBotAPI, url: str) -> None:
    assert (await set_hook(http, bot, url, secret_token="a" * 256))[0] == 200
    assert (await webhook_info(http, bot))["url"] == url


async def test_bot_webhook_methods_need_a_known_token(http: Any, bot: FakeBotAPI) -> None:
    for method in ("setWebhook", "getWebhookInfo", "deleteWebhook"):
        answer = await call(http, bot, method, "7000000001:AAHwrongtoken", url=HOOK)
        assert answer == tg_error(401, "Unauthorized")


async def test_bot_delete_webhook_keeps_allowed_updates(http: Any, bot: FakeBotAPI) -> None:
    await set_hook(http, bot, secret_token=SECRET, allowed_updates=["message"])
    bot.webhook(BOT).pending_update_count = 5
    answer = await call(http, bot, "deleteWebhook")
    assert answer == (200, {"ok": True, "result": True, "description": "Webhook was deleted"})
    assert await webhook_info(http, bot) == {
        "url": "",
        "has_custom_certificate": False,
        "pending_update_count": 5,
        "allowed_updates": ["message"],
    }
    again = await call(http, bot, "deleteWebhook", drop_pending_updates=True)
    assert again[1]["description"] == "Webhook is already deleted"
    assert (await webhook_info(http, bot))["pending_update_count"] == 0


async def test_bot_set_webhook_drops_pending_updates(http: Any, bot: FakeBotAPI) -> None:
    bot.webhook(BOT).pending_update_count = 7
    await set_hook(http, bot, drop_pending_updates=False)
    assert (await webhook_info(http, bot))["pending_update_count"] == 7
    await set_hook(http, bot, drop_pending_updates=True)
    assert (await webhook_info(http, bot))["pending_update_count"] == 0


async def test_bot_webhook_last_error_is_scripted_and_cleared(http: Any, bot: FakeBotAPI) -> None:
    await set_hook(http, bot, max_connections=5)
    hook = bot.webhook(BOT)
    hook.last_error_date, hook.last_error_message = 1767300000, "Connection timed out"
    info = await webhook_info(http, bot)
    assert (info["last_error_date"], info["last_error_message"]) == (
        1767300000,
        "Connection timed out",
    )
    assert info["max_connections"] == 5
    await set_hook(http, bot, "https://other.example.com/hook")
    assert "last_error_date" not in await webhook_info(http, bot)


async def test_bot_set_webhook_once_a_second_when_limits_enforced(
    http: Any, bot: FakeBotAPI
) -> None:
    bot.enforce_limits()
    assert (await set_hook(http, bot))[0] == 200
    answer = await set_hook(http, bot, "https://other.example.com/hook")
    assert answer == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        },
    )
    assert (await call(http, bot, "deleteWebhook"))[0] == 200
    await asyncio.sleep(1.02)
    assert (await set_hook(http, bot))[0] == 200


async def test_bot_webhook_scripted_failures_and_reset(http: Any, bot: FakeBotAPI) -> None:
    bot.fail(500, "Internal Server Error: restart", method="getWebhookInfo")
    async with http.get(f"{bot.base_url}/bot{BOT}/getWebhookInfo") as resp:
        assert resp.status == 500
    await set_hook(http, bot)
    bot.reset()
    assert (await webhook_info(http, bot))["url"] == ""
    with pytest.raises(KeyError):
        bot.webhook("7000000001:AAHwrongtoken")


# -- Bot API: reply markup and forum topics (what the real server refuses) ----------------------

_INLINE = "can't parse inline keyboard button: "


def _inline(*buttons: Any) -> dict[str, Any]:
    return {"chat_id": PRIVATE, "text": "Pick", "reply_markup": {"inline_keyboard": [buttons]}}


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"chat_id": PRIVATE, "text": "x", "reply_markup": "{nope"},
         "can't parse reply keyboard markup JSON object"),
        ({"chat_id": PRIVATE, "text": "x", "reply_markup": [1]}, "object expected as reply markup"),
        ({"chat_id": PRIVATE, "text": "x", "reply_markup": {"keyboard": ["Yes"]}},
         'field "keyboard" must be an Array of Arrays'),
        ({"chat_id": PRIVATE, "text": "x", "reply_markup": {"keyboard": [[7]]}},
         "can't parse keyboard button: KeyboardButton must be a String or an Object"),
        ({"chat_id": PRIVATE, "text": "x", "reply_markup": {"keyboard": [[" "]]}},
         "BUTTON_TEXT_INVALID"),
        ({"chat_id": PRIVATE, "text": "x", "reply_markup": {"inline_keyboard": [{}]}},
         'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'),
        (_inline("Yes"), _INLINE + "InlineKeyboardButton must be an Object"),
        (_inline({"callback_data": "y"}), _INLINE + 'Can\'t find field "text"'),
        (_inline({"text": "Yes"}), _INLINE + "Text buttons are unallowed in the inline keyboard"),
        (_inline({"text": "Yes", "callback_data": ""}),
         _INLINE + "Text buttons are unallowed in the inline keyboard"),
        (_inline({"text": "Yes", "callback_data": "é" * 33}), "BUTTON_DATA_INVALID"),
        (_inline({"text": "Go", "url": "ftp://files.example/a"}), "BUTTON_URL_INVALID"),
        (_inline({"text": "Go", "url": "https://"}), "BUTTON_URL_INVALID"),
        (_inline({"text": "", "url": "https://a.example"}), "BUTTON_TEXT_INVALID"),
    ],
)  # fmt: skip
async def test_bot_reply_markup_is_checked_like_telegram(
    http: Any, bot: FakeBotAPI, params: dict[str, Any], description: str
) -> None:
    status, payload = await call(http, bot, "sendMessage", **params)
    assert (status, payload) == tg_error(400, f"Bad Request: {description}")
    assert bot.sent_to(PRIVATE) == []


@pytest.mark.parametrize(
    "markup",
    [
        {"inline_keyboard": [[{"text": "Track", "url": "https://t.example/1"}],
                             [{"text": "Help", "callback_data": "é" * 32}]]},
        {"inline_keyboard": [[{"text": "App", "url": "tg://resolve?domain=AcmeBot"}]]},
        # Both given: the server takes the url, as Client.cpp does.
        {"inline_keyboard": [[{"text": "Go", "url": "https://a.example", "callback_data": "x"}]]},
        {"keyboard": [["Yes", {"text": "No"}]], "one_time_keyboard": True},
        {"remove_keyboard": True},
    ],
)  # fmt: skip
async def test_bot_accepts_the_markups_telegram_accepts(
    http: Any, bot: FakeBotAPI, markup: dict[str, Any]
) -> None:
    status, payload = await call(http, bot, "sendMessage", chat_id=PRIVATE, text="x",
                                 reply_markup=markup)  # fmt: skip
    assert status == 200
    shown = payload["result"].get("reply_markup")
    assert shown == ({"inline_keyboard": markup["inline_keyboard"]} if "inline_keyboard" in
                     markup else None)  # fmt: skip


async def test_bot_reply_markup_in_a_form_post_is_a_json_string(http: Any, bot: FakeBotAPI) -> None:
    markup = '{"inline_keyboard": [[{"text": "Yes"}]]}'
    form = {"chat_id": str(PRIVATE), "text": "x", "reply_markup": markup}
    async with http.post(f"{bot.base_url}/bot{BOT}/sendMessage", data=form) as resp:
        assert (resp.status, await resp.json()) == tg_error(
            400, "Bad Request: " + _INLINE + "Text buttons are unallowed in the inline keyboard"
        )


async def test_bot_forum_topics(http: Any, bot: FakeBotAPI) -> None:
    bot.forum(SUPERGROUP, topics=[5102])
    sent = await call(http, bot, "sendMessage", chat_id=SUPERGROUP, text="x",
                      message_thread_id=5102)  # fmt: skip
    assert sent[0] == 200
    assert (sent[1]["result"]["message_thread_id"], sent[1]["result"]["is_topic_message"]) == (
        5102,
        True,
    )
    not_found = tg_error(400, "Bad Request: message thread not found")
    for topic in (77, 1):  # unknown, and the General topic
        reply = await call(http, bot, "sendMessage", chat_id=SUPERGROUP, text="x",
                           message_thread_id=topic)  # fmt: skip
        assert reply == not_found
    action = await call(http, bot, "sendChatAction", chat_id=SUPERGROUP, action="typing",
                        message_thread_id=77)  # fmt: skip
    assert action == not_found
    # Outside a forum the server ignores the parameter; unreadable ones count as none.
    plain = await call(http, bot, "sendMessage", chat_id=GROUP, text="x", message_thread_id=77)
    assert plain[0] == 200 and "message_thread_id" not in plain[1]["result"]
    odd = await call(http, bot, "sendMessage", chat_id=SUPERGROUP, text="x",
                     message_thread_id="general")  # fmt: skip
    assert odd[0] == 200 and "is_topic_message" not in odd[1]["result"]
    bot.reset()
    assert (await call(http, bot, "sendMessage", chat_id=SUPERGROUP, text="x",
                       message_thread_id=77))[0] == 200  # fmt: skip


# -- Bot API: stickers, contacts and location buttons (issue #17) --------------------------------


async def test_bot_send_sticker_answers_with_the_sticker(http: Any, bot: FakeBotAPI) -> None:
    by_url = "https://cdn.example.com/stickers/thanks.webp"
    status, payload = await call(http, bot, "sendSticker", chat_id=PRIVATE, sticker=by_url)
    assert status == 200
    sticker = payload["result"]["sticker"]
    assert (sticker["type"], sticker["width"], sticker["height"]) == ("regular", 512, 512)
    assert (sticker["is_animated"], sticker["is_video"]) == (False, False)
    assert sticker["file_id"] and sticker["file_unique_id"]
    assert "text" not in payload["result"] and bot.requests[0].sent


async def test_bot_send_contact_answers_with_the_contact(http: Any, bot: FakeBotAPI) -> None:
    card = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ana Souza\r\nEND:VCARD"
    status, payload = await call(http, bot, "sendContact", chat_id=PRIVATE,
                                 phone_number="+55 11 98765-0000", first_name="Ana",
                                 last_name="Souza", vcard=card)  # fmt: skip
    assert status == 200
    assert payload["result"]["contact"] == {
        "phone_number": "+55 11 98765-0000", "first_name": "Ana", "last_name": "Souza",
        "vcard": card}  # fmt: skip
    # Empty optional fields are left out of the result, as Client.cpp's JsonContact does.
    _, bare = await call(http, bot, "sendContact", chat_id=PRIVATE, phone_number="+1 555 0100",
                         first_name="Bo", last_name="")  # fmt: skip
    assert bare["result"]["contact"] == {"phone_number": "+1 555 0100", "first_name": "Bo"}


@pytest.mark.parametrize(
    ("method", "params", "description"),
    [
        ("sendSticker", _PRIVATE, "there is no sticker in the request"),
        ("sendSticker", {**_PRIVATE, "sticker": ""}, "there is no sticker in the request"),
        ("sendContact", {**_PRIVATE, "first_name": "Ana"}, 'parameter "phone_number" is required'),
        ("sendContact", {**_PRIVATE, "phone_number": "+1"}, 'parameter "first_name" is required'),
        ("sendContact", _PRIVATE, 'parameter "phone_number" is required'),
    ],
)
async def test_bot_sticker_and_contact_refusals(
    http: Any, bot: FakeBotAPI, method: str, params: dict[str, Any], description: str
) -> None:
    assert await call(http, bot, method, **params) == tg_error(400, f"Bad Request: {description}")
    assert bot.sent_to(PRIVATE) == []


def _asking(kind: str, chat: int) -> dict[str, Any]:
    markup = {"keyboard": [["Cancel", {"text": "Share", kind: True}]], "one_time_keyboard": True}
    return {"chat_id": chat, "text": "Where are you?", "reply_markup": markup}


@pytest.mark.parametrize(
    ("kind", "description"),
    [
        ("request_location", "location can be requested in private chats only"),
        ("request_contact", "phone number can be requested in private chats only"),
        ("request_phone_number", "phone number can be requested in private chats only"),
    ],
)
@pytest.mark.parametrize("chat", [GROUP, SUPERGROUP])
async def test_bot_location_and_phone_buttons_only_in_private_chats(
    http: Any, bot: FakeBotAPI, kind: str, description: str, chat: int
) -> None:
    refused = await call(http, bot, "sendMessage", **_asking(kind, chat))
    assert refused == tg_error(400, f"Bad Request: {description}")
    private = await call(http, bot, "sendMessage", **_asking(kind, PRIVATE))
    assert private[0] == 200
    # A reply keyboard is not part of the sent message, as in real results.
    assert "reply_markup" not in private[1]["result"]
    assert [r.chat_id for r in bot.requests if r.sent] == [PRIVATE]


async def test_bot_text_buttons_and_false_requests_are_fine_in_groups(
    http: Any, bot: FakeBotAPI
) -> None:
    markup = {"keyboard": [["Yes", {"text": "No", "request_location": False}]]}
    status, _ = await call(http, bot, "sendMessage", chat_id=GROUP, text="?", reply_markup=markup)
    assert status == 200


async def test_bot_stickers_and_contacts_count_against_the_flood_limit(
    http: Any, bot: FakeBotAPI
) -> None:
    bot.enforce_limits()
    first = await call(http, bot, "sendSticker", chat_id=PRIVATE, sticker="CAACAgIAAxkBAAI")
    second = await call(http, bot, "sendContact", chat_id=PRIVATE, phone_number="+1",
                        first_name="Bo")  # fmt: skip
    assert first[0] == 200
    assert second[0] == 429 and second[1]["parameters"]["retry_after"] == 1
