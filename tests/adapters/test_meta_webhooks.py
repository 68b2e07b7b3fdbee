"""`gateway webhooks` on Meta's channels: which `subscribed_apps` call each action makes
(WhatsApp on the number's WABA, Messenger on the Page, Instagram on the account), that the
fields asked for are exactly those the parser turns into events, what each Graph answer tells
the operator, and the same calls over real HTTP against the stand-in Graph and Send APIs
(gateway_demo/standins/graph_api.py, tests/fakes/send_api.py), answered the way Meta answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import Action, Channel, ProviderCall, Subscription
from adapters.account import Account
from adapters.meta_messaging import (
    INSTAGRAM,
    MESSENGER,
    InstagramAccount,
    InstagramSettings,
    MessengerPage,
    MessengerSettings,
    parse,
)
from adapters.meta_messaging._payload import Item
from adapters.meta_messaging._webhooks import FIELDS, SUBSCRIBED_FIELDS
from adapters.whatsapp import CHANNEL as WHATSAPP
from adapters.whatsapp import WhatsAppNumber, WhatsAppSettings
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.fakes.send_api import FakeSendAPI

NUMBER = "106540352242922"
NUMBER_B = "106540352242923"
LONE = "106540352242999"
"""A number without `waba_id` in the config."""
WABA = "102289599326934"
PAGE = "104400000000001"
IG = "17841400000000001"
PSID = "7010000000000001"
IGSID = "6800000000000001"
WA_TOKEN = "EAAJiWhatsAppSystemUserToken0123456789abcdef"
PAGE_TOKEN = "EAAGm0PX4ZCpsBAPageTokenOfTheTestPage0123456789"
IG_TOKEN = "IGAAKxInstagramUserTokenOfTheTestAccount0123456789"
APP_ID = "1234567890123456"
"""The fakes' own app (their default)."""
OTHER_APP = "5256512345678901"
PUBLIC = "https://gw.example.com/base"
VERIFY = "a-verify-token-of-32-characters!"
RECEIVED_AT = 1795000000
MS = RECEIVED_AT * 1000
ACTIONS: list[Action] = ["set", "show", "delete"]
METHODS: dict[str, Literal["GET", "POST", "DELETE"]] = {
    "set": "POST", "show": "GET", "delete": "DELETE"
}  # fmt: skip
MESSENGER_FIELDS = (
    "messages", "message_echoes", "message_edits", "messaging_postbacks", "message_reactions",
    "message_reads", "message_deliveries", "messaging_referrals", "messaging_optins",
    "messaging_account_linking", "messaging_handovers", "standby",
)  # fmt: skip
INSTAGRAM_FIELDS = (
    "messages", "message_edit", "messaging_postbacks", "message_reactions", "messaging_seen",
    "messaging_referral", "messaging_optins", "messaging_handover", "standby",
)  # fmt: skip


def whatsapp(api_base: str = "https://graph.facebook.com/v21.0", **extra: Any) -> WhatsAppSettings:
    numbers = [
        WhatsAppNumber(
            phone_number_id=n, display_phone_number="+15551234567", assistant="support",
            access_token=WA_TOKEN, waba_id=waba,
        )
        for n, waba in ((NUMBER, WABA), (NUMBER_B, WABA), (LONE, None))
    ]  # fmt: skip
    return WhatsAppSettings(
        app_secret="s", verify_token=VERIFY, api_base=api_base, numbers=numbers, **extra
    )


def messenger(
    api_base: str = "https://graph.facebook.com/v21.0", **extra: Any
) -> MessengerSettings:
    page = MessengerPage(page_id=PAGE, assistant="support", access_token=PAGE_TOKEN)
    return MessengerSettings(
        app_secret="s", verify_token=VERIFY, api_base=api_base, pages=[page], **extra
    )


def instagram(
    api_base: str = "https://graph.instagram.com/v21.0", **extra: Any
) -> InstagramSettings:
    account = InstagramAccount(account_id=IG, assistant="sales", access_token=IG_TOKEN)
    return InstagramSettings(
        app_secret="s", verify_token=VERIFY, api_base=api_base, accounts_=[account], **extra
    )


def account_of(section: Any, account_id: str | None = None) -> Account:
    accounts: list[Account] = section.accounts()
    return next(a for a in accounts if account_id in (None, a.account_id))


def graph_error(code: int, message: str, trace: str = "AbCdEfGhIjKlMnOpQrStUvW") -> bytes:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": trace}
    return json.dumps({"error": error}).encode()


def page_apps(*apps: dict[str, Any]) -> bytes:
    return json.dumps({"data": list(apps)}).encode()


def page_app(
    app_id: str = APP_ID, fields: tuple[str, ...] | None = MESSENGER_FIELDS
) -> dict[str, Any]:
    app: dict[str, Any] = {
        "category": "Business",
        "link": "https://x",
        "name": "Support",
        "id": app_id,
    }
    if fields is not None:
        app["subscribed_fields"] = list(fields)
    return app


def waba_apps(*ids: str) -> bytes:
    rows = [
        {
            "whatsapp_business_api_data": {
                "id": i,
                "link": f"https://x/?app_id={i}",
                "name": f"App {i}",
            }
        }
        for i in ids
    ]
    return json.dumps({"data": rows}).encode()


# --- the calls ------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_whatsapp_calls_the_numbers_waba_with_its_token(action: Action) -> None:
    section = whatsapp()
    call = WHATSAPP.subscription_call(section, account_of(section, NUMBER), action, PUBLIC, True)
    assert call == ProviderCall(
        METHODS[action],
        f"https://graph.facebook.com/v21.0/{WABA}/subscribed_apps",
        {"Authorization": f"Bearer {WA_TOKEN}"},
    )
    # Both numbers of the WABA make the same call (the gateway makes it once).
    other = WHATSAPP.subscription_call(section, account_of(section, NUMBER_B), action, PUBLIC, True)
    assert other == call


def test_a_number_without_its_waba_in_the_config_has_no_call() -> None:
    section = whatsapp()
    with pytest.raises(ValueError, match=r"whatsapp\.numbers\[\d+\]\.waba_id is not set"):
        WHATSAPP.subscription_call(section, account_of(section, LONE), "set", PUBLIC, False)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    ("channel", "section", "account_id", "token", "url"),
    [
        (MESSENGER, messenger(), PAGE, PAGE_TOKEN, f"https://graph.facebook.com/v21.0/{PAGE}"),
        (INSTAGRAM, instagram(), IG, IG_TOKEN, f"https://graph.instagram.com/v21.0/{IG}"),
    ],
)
def test_pages_and_instagram_accounts_are_called_on_their_own_id_and_host(
    action: Action, channel: Channel, section: Any, account_id: str, token: str, url: str
) -> None:
    call = channel.subscription_call(section, account_of(section), action, PUBLIC, False)
    assert call is not None
    assert (call.method, call.url, dict(call.headers), call.body) == (
        METHODS[action], f"{url}/subscribed_apps", {"Authorization": f"Bearer {token}"}, None
    )  # fmt: skip
    fields = {"subscribed_fields": ",".join(SUBSCRIBED_FIELDS[channel.name])}
    assert dict(call.params) == (fields if action == "set" else {})


def test_a_trailing_slash_on_api_base_is_not_doubled() -> None:
    section = messenger("https://graph.facebook.com/v21.0/")
    call = MESSENGER.subscription_call(section, account_of(section), "show", PUBLIC, False)
    assert (
        call is not None and call.url == f"https://graph.facebook.com/v21.0/{PAGE}/subscribed_apps"
    )


@pytest.mark.parametrize(
    ("channel", "section"),
    [(WHATSAPP, whatsapp()), (MESSENGER, messenger()), (INSTAGRAM, instagram())],
)
def test_the_handshake_query_is_metas_with_the_sections_verify_token(
    channel: Channel, section: Any
) -> None:
    assert channel.handshake_query(section, "1158201444") == {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY,
        "hub.challenge": "1158201444",
    }
    assert channel.handshake_query(None, "1158201444") is None


# --- the fields: exactly what the parser reads ----------------------------------------------


def test_the_fields_asked_for_are_exactly_these() -> None:
    """Messenger's as the README lists them; Instagram's all in the set Instagram Login
    offers (tests/fakes/send_api.py WEBHOOK_FIELDS), without delivery receipts or account
    linking, which Instagram does not have."""
    assert SUBSCRIBED_FIELDS == {"messenger": MESSENGER_FIELDS, "instagram": INSTAGRAM_FIELDS}


def test_every_kind_of_item_the_parser_maps_has_its_field() -> None:
    """An item's keys besides its ids and time are what the parser dispatches on; each one,
    an echo and a `standby[]` item, names the field that brings it (or None: not sent on the
    channel). A key added to the parser without a field here fails this test."""
    dispatched = set(Item.__struct_fields__) - {"sender", "recipient", "timestamp"}
    for channel in ("messenger", "instagram"):
        assert set(FIELDS[channel]) == dispatched | {"is_echo", "standby"}


def _item(channel: str, kind: str) -> tuple[str, dict[str, Any]]:
    """(list, item) of a webhook that the field for `kind` brings."""
    account, contact = (PAGE, PSID) if channel == "messenger" else (IG, IGSID)
    head = {"sender": {"id": contact}, "recipient": {"id": account}, "timestamp": MS}
    read = {"watermark": MS} if channel == "messenger" else {"mid": "m_1"}
    handover = {"previous_owner_app_id": "1", "new_owner_app_id": "2", "metadata": "x"}
    keyed = {
        "message": {"mid": "m_1", "text": "Entrega hoje?"},
        "message_edit": {"mid": "m_1", "text": "Entrega amanhã?", "num_edit": 1},
        "postback": {"mid": "m_2", "title": "Go", "payload": "GO"},
        "reaction": {"mid": "m_1", "action": "react", "reaction": "love", "emoji": "❤"},
        "read": read,
        "delivery": {"mids": ["m_1"], "watermark": MS},
        "referral": {"ref": "summer", "source": "SHORTLINK", "type": "OPEN_THREAD"},
        "optin": {"ref": "r1"},
        "account_linking": {"status": "linked"},
        "pass_thread_control": handover,
        "take_thread_control": handover,
        "request_thread_control": {"requested_owner_app_id": "1", "metadata": "x"},
        "app_roles": {"1": ["primary_receiver"]},
    }
    if kind == "is_echo":
        echo = {"mid": "m_3", "is_echo": True, "text": "Sim, até 18h."}
        return "messaging", {**head, "sender": {"id": account}, "recipient": {"id": contact},
                             "message": echo}  # fmt: skip
    if kind == "standby":
        return "standby", {**head, "message": keyed["message"]}
    return "messaging", {**head, kind: keyed[kind]}


@pytest.mark.parametrize(
    ("channel", "kind"),
    [(c, k) for c, kinds in FIELDS.items() for k, field in kinds.items() if field is not None],
)
def test_every_field_asked_for_brings_events_the_parser_publishes(channel: str, kind: str) -> None:
    where, item = _item(channel, kind)
    obj = "page" if channel == "messenger" else "instagram"
    account = PAGE if channel == "messenger" else IG
    body = {"object": obj, "entry": [{"id": account, "time": MS, where: [item]}]}
    parsed = parse(channel, json.dumps(body).encode(), RECEIVED_AT)
    assert parsed.bad == []
    assert parsed.events, f"{channel} {kind} ({FIELDS[channel][kind]}) parses to nothing"


# --- what the answers say -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "section", "where"),
    [(WHATSAPP, whatsapp(), f"WABA {WABA}"), (MESSENGER, messenger(), f"Page {PAGE}"),
     (INSTAGRAM, instagram(), f"Instagram account {IG}")],
)  # fmt: skip
@pytest.mark.parametrize("success", [b'{"success": true}', b'{"success": "true"}'])
def test_set_and_delete_are_done_when_graph_says_success(
    channel: Channel, section: Any, where: str, success: bytes
) -> None:
    account = account_of(section)
    done = channel.subscription(section, account, "set", PUBLIC, 200, success)
    assert done.ok and done.subscribed is None and done.url is None
    assert done.detail.startswith(f"{where}: app subscribed")
    gone = channel.subscription(section, account, "delete", PUBLIC, 200, success)
    assert gone.ok and gone.detail.startswith(f"{where}: app unsubscribed")
    refused = channel.subscription(section, account, "set", PUBLIC, 200, b'{"success": false}')
    assert refused == Subscription(False, "Graph answered success: False")


def test_set_on_whatsapp_says_where_the_apps_callback_must_point() -> None:
    section = whatsapp()
    done = WHATSAPP.subscription(
        section, account_of(section), "set", PUBLIC, 200, b'{"success":true}'
    )
    assert f"{PUBLIC}/webhooks/whatsapp" in done.detail
    assert "every number of the WABA" in done.detail


def test_set_on_a_page_names_the_fields() -> None:
    section = messenger()
    done = MESSENGER.subscription(
        section, account_of(section), "set", PUBLIC, 200, b'{"success":true}'
    )
    assert done.detail.startswith(f"Page {PAGE}: app subscribed to {','.join(MESSENGER_FIELDS)} (")
    assert "also chosen for the app in the App Dashboard" in done.detail


def test_whatsapp_show_with_app_id_looks_for_that_app() -> None:
    section = whatsapp(app_id=APP_ID)
    account = account_of(section)
    found = WHATSAPP.subscription(
        section, account, "show", PUBLIC, 200, waba_apps(OTHER_APP, APP_ID)
    )
    assert (found.ok, found.subscribed, found.fields, found.url) == (True, True, (), None)
    assert found.detail == f"WABA {WABA}: app 'App {APP_ID}' ({APP_ID}) is subscribed"
    lost = WHATSAPP.subscription(section, account, "show", PUBLIC, 200, waba_apps(OTHER_APP))
    assert (lost.ok, lost.subscribed) == (True, False)
    assert (
        f"app {APP_ID} is not subscribed (subscribed: 'App {OTHER_APP}' ({OTHER_APP}))"
        in lost.detail
    )


def test_whatsapp_show_without_app_id_takes_any_app_and_says_so() -> None:
    section = whatsapp()
    account = account_of(section)
    some = WHATSAPP.subscription(section, account, "show", PUBLIC, 200, waba_apps(OTHER_APP))
    assert (some.ok, some.subscribed) == (True, True)
    assert f"'App {OTHER_APP}' ({OTHER_APP})" in some.detail
    assert "`whatsapp.app_id`" in some.detail
    none = WHATSAPP.subscription(section, account, "show", PUBLIC, 200, b'{"data": []}')
    assert (none.ok, none.subscribed) == (True, False)
    assert none.detail.startswith(f"WABA {WABA}: no app is subscribed")


def test_page_show_checks_every_field_the_gateway_reads() -> None:
    section = messenger(app_id=APP_ID)
    account = account_of(section)
    whole = MESSENGER.subscription(section, account, "show", PUBLIC, 200, page_apps(page_app()))
    assert (whole.subscribed, whole.fields) == (True, MESSENGER_FIELDS)
    assert (
        whole.detail
        == f"Page {PAGE}: app 'Support' ({APP_ID}) is subscribed to the 12 fields the gateway reads"
    )
    partial = page_app(fields=("messages", "messaging_postbacks", "feed"))
    short = MESSENGER.subscription(section, account, "show", PUBLIC, 200, page_apps(partial))
    assert (short.ok, short.subscribed, short.fields) == (
        True,
        False,
        ("messages", "messaging_postbacks", "feed"),
    )
    assert "not to message_echoes, message_edits, message_reactions" in short.detail
    assert "Meta does not send those" in short.detail
    bare = MESSENGER.subscription(
        section, account, "show", PUBLIC, 200, page_apps(page_app(fields=None))
    )
    assert (bare.subscribed, bare.fields) == (False, ())


def test_page_show_without_app_id_counts_an_app_with_every_field() -> None:
    section = messenger()
    account = account_of(section)
    apps = page_apps(page_app(OTHER_APP, ("feed",)), page_app(APP_ID))
    shown = MESSENGER.subscription(section, account, "show", PUBLIC, 200, apps)
    assert (shown.subscribed, shown.fields) == (True, MESSENGER_FIELDS)
    assert f"({OTHER_APP})" in shown.detail and "`messenger.app_id`" in shown.detail


def test_instagram_show_reads_apps_without_names() -> None:
    section = instagram(app_id=APP_ID)
    apps = page_apps({"id": APP_ID, "subscribed_fields": list(INSTAGRAM_FIELDS)})
    shown = INSTAGRAM.subscription(section, account_of(section), "show", PUBLIC, 200, apps)
    assert (shown.subscribed, shown.fields) == (True, INSTAGRAM_FIELDS)
    assert (
        shown.detail
        == f"Instagram account {IG}: app {APP_ID} is subscribed to the 9 fields the gateway reads"
    )


@pytest.mark.parametrize("action", ACTIONS)
def test_a_graph_error_is_its_code_message_and_trace_without_the_token(action: Action) -> None:
    section = messenger()
    message = f"Error validating access token: token {PAGE_TOKEN} has expired\non Sunday"
    body = graph_error(190, message, "AZx1y2")
    got = MESSENGER.subscription(section, account_of(section), action, PUBLIC, 401, body)
    assert got == Subscription(
        False, "Graph 190: Error validating access token: token [REDACTED] has expired on Sunday "
        "(fbtrace_id AZx1y2)"
    )  # fmt: skip


def test_a_graph_error_says_its_code_once() -> None:
    """Meta's own "(#100) " prefix is dropped: the detail already leads with the code."""
    section = instagram()
    message = '(#100) Param subscribed_fields[0] must be one of {messages} - got "x"'
    got = INSTAGRAM.subscription(
        section, account_of(section), "set", PUBLIC, 400, graph_error(100, message)
    )
    assert got.detail.startswith("Graph 100: Param subscribed_fields[0] must be one of {messages}")


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, b"<html><body>502 Bad Gateway</body></html>"),
        (200, b'{"data": "nope"}'),
        (200, b'{"success": true}'),  # a set's answer to a show
        (500, b'{"success": true}'),
        (404, b""),
    ],
)
def test_anything_else_is_not_a_graph_api_answer(status: int, body: bytes) -> None:
    section = whatsapp()
    got = WHATSAPP.subscription(section, account_of(section), "show", PUBLIC, status, body)
    assert got == Subscription(False, f"HTTP {status}: not a Graph API answer")


SECTIONS: list[tuple[Channel, Any]] = [
    (WHATSAPP, whatsapp(app_id=APP_ID)), (WHATSAPP, whatsapp()), (MESSENGER, messenger()),
    (INSTAGRAM, instagram(app_id=APP_ID)),
]  # fmt: skip
KEYS = ["error", "message", "code", "fbtrace_id", "data", "success", "id", "name",
        "subscribed_fields", "whatsapp_business_api_data", "link"]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.sampled_from([APP_ID, "true"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def _judged(got: Subscription, token: str) -> None:
    assert isinstance(got, Subscription)
    assert "\n" not in got.detail and token not in got.detail
    assert got.url is None


@given(
    st.sampled_from(SECTIONS),
    st.sampled_from(ACTIONS),
    st.integers(100, 599),
    st.binary(max_size=300),
)
def test_any_bytes_are_judged_without_raising(
    channel_section: tuple[Channel, Any], action: Action, status: int, body: bytes
) -> None:
    channel, section = channel_section
    account = account_of(section)
    _judged(channel.subscription(section, account, action, PUBLIC, status, body), account.token)


@settings(max_examples=300)
@given(
    st.sampled_from(SECTIONS), st.sampled_from(ACTIONS), st.sampled_from([200, 400]), json_values
)
def test_any_json_is_judged_without_raising(
    channel_section: tuple[Channel, Any], action: Action, status: int, value: Any
) -> None:
    channel, section = channel_section
    account = account_of(section)
    got = channel.subscription(section, account, action, PUBLIC, status, json.dumps(value).encode())
    _judged(got, account.token)
    if got.ok and action == "show":
        assert got.subscribed is not None


def test_a_body_nested_too_deep_is_judged_too() -> None:
    section = messenger()
    body = b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    got = MESSENGER.subscription(section, account_of(section), "show", PUBLIC, 200, body)
    assert got == Subscription(False, "HTTP 200: not a Graph API answer")


# --- over HTTP, against the fakes -----------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call_as_the_gateway(
    http: aiohttp.ClientSession, channel: Channel, section: Any, account: Account, action: Action
) -> Subscription:
    """What `gateway webhooks <action>` does for one account: the call, then its reading."""
    call = channel.subscription_call(section, account, action, PUBLIC, False)
    assert call is not None
    async with http.request(
        call.method, call.url, params=dict(call.params), json=call.body, headers=dict(call.headers)
    ) as resp:
        status, body = resp.status, await resp.read()
    return channel.subscription(section, account, action, PUBLIC, status, body)


async def test_whatsapp_set_show_lapse_and_delete_against_the_fake(http: Any) -> None:
    async with FakeGraphAPI(
        {NUMBER: WA_TOKEN, NUMBER_B: WA_TOKEN}, wabas={WABA: [NUMBER, NUMBER_B]}
    ) as fake:
        section = whatsapp(fake.base_url, app_id=APP_ID)
        account = account_of(section, NUMBER)
        before = await call_as_the_gateway(http, WHATSAPP, section, account, "show")
        assert (before.ok, before.subscribed) == (True, False)
        assert (await call_as_the_gateway(http, WHATSAPP, section, account, "set")).ok
        assert fake.subscribed_apps(WABA) == [APP_ID]
        shown = await call_as_the_gateway(http, WHATSAPP, section, account, "show")
        assert (shown.ok, shown.subscribed) == (True, True)
        fake.unsubscribe(WABA)  # an hour of failed deliveries
        lapsed = await call_as_the_gateway(
            http, WHATSAPP, section, account_of(section, NUMBER_B), "show"
        )
        assert (lapsed.ok, lapsed.subscribed) == (True, False)
        assert (await call_as_the_gateway(http, WHATSAPP, section, account, "set")).ok
        assert (await call_as_the_gateway(http, WHATSAPP, section, account, "delete")).ok
        assert fake.subscribed_apps(WABA) == []
        assert [(r.method, r.phone_number_id, r.status) for r in fake.requests][:2] == [
            ("GET", WABA, 200), ("POST", WABA, 200)
        ]  # fmt: skip


async def test_whatsapp_another_apps_subscription_is_not_this_gateways(http: Any) -> None:
    async with FakeGraphAPI({NUMBER: WA_TOKEN}, wabas={WABA: [NUMBER]}) as fake:
        fake.subscribe(WABA, OTHER_APP, "Jaspers Market")
        section = whatsapp(fake.base_url, app_id=APP_ID)
        shown = await call_as_the_gateway(
            http, WHATSAPP, section, account_of(section, NUMBER), "show"
        )
        assert (shown.ok, shown.subscribed) == (True, False)
        assert f"'Jaspers Market' ({OTHER_APP})" in shown.detail


async def test_whatsapp_wrong_token_and_foreign_waba_are_graph_errors(http: Any) -> None:
    async with FakeGraphAPI({NUMBER: "another-token"}, wabas={WABA: [NUMBER]}) as fake:
        section = whatsapp(fake.base_url)
        got = await call_as_the_gateway(http, WHATSAPP, section, account_of(section, NUMBER), "set")
        assert not got.ok
        assert got.detail.startswith(
            "Graph 190: Invalid OAuth access token - Cannot parse access token (fbtrace_id A"
        )
        assert WA_TOKEN not in got.detail
    async with FakeGraphAPI({NUMBER: WA_TOKEN}, wabas={"999": [NUMBER]}) as fake:
        section = whatsapp(fake.base_url)
        got = await call_as_the_gateway(
            http, WHATSAPP, section, account_of(section, NUMBER), "show"
        )
        assert got.detail.startswith(f"Graph 100: Unsupported get request. Object with ID '{WABA}'")


async def test_whatsapp_a_proxy_page_is_not_a_graph_answer(http: Any) -> None:
    async with FakeGraphAPI({NUMBER: WA_TOKEN}, wabas={WABA: [NUMBER]}) as fake:
        fake.fail_status(502, b"<html>Bad Gateway</html>")
        section = whatsapp(fake.base_url)
        got = await call_as_the_gateway(http, WHATSAPP, section, account_of(section, NUMBER), "set")
        assert got == Subscription(False, "HTTP 502: not a Graph API answer")


@pytest.mark.parametrize("name", ["messenger", "instagram"])
async def test_pages_and_accounts_set_show_lapse_and_delete_against_the_fake(
    http: Any, name: str
) -> None:
    async with FakeSendAPI(pages={PAGE: PAGE_TOKEN}, accounts={IG: IG_TOKEN}) as fake:
        if name == "messenger":
            channel: Channel = MESSENGER
            section: Any = messenger(f"{fake.messenger_url}/v21.0", app_id=APP_ID)
            account_id, fields = PAGE, SUBSCRIBED_FIELDS["messenger"]
        else:
            channel, account_id, fields = INSTAGRAM, IG, SUBSCRIBED_FIELDS["instagram"]
            section = instagram(f"{fake.instagram_url}/v21.0", app_id=APP_ID)
        account = account_of(section)
        done = await call_as_the_gateway(http, channel, section, account, "set")
        assert done.ok, done.detail  # every field asked for is one Meta offers on this host
        assert fake.subscribed_fields(account_id) == list(fields)
        shown = await call_as_the_gateway(http, channel, section, account, "show")
        assert (shown.subscribed, shown.fields) == (True, fields)
        fake.subscribe_app(account_id, ["messages"])  # someone narrowed it in the dashboard
        narrowed = await call_as_the_gateway(http, channel, section, account, "show")
        assert (narrowed.ok, narrowed.subscribed, narrowed.fields) == (True, False, ("messages",))
        fake.unsubscribe(account_id)  # an hour of failed deliveries
        lapsed = await call_as_the_gateway(http, channel, section, account, "show")
        assert (lapsed.ok, lapsed.subscribed) == (True, False)
        assert "no app is subscribed" not in lapsed.detail  # app_id set: it names this app
        assert (await call_as_the_gateway(http, channel, section, account, "delete")).ok
        assert [r.method for r in fake.requests] == ["POST", "GET", "GET", "GET", "DELETE"]


async def test_a_page_token_of_another_page_is_graph_100_33(http: Any) -> None:
    async with FakeSendAPI(
        pages={PAGE: "a-token-of-another-page", "104400000000002": PAGE_TOKEN}
    ) as fake:
        section = messenger(f"{fake.messenger_url}/v21.0")
        got = await call_as_the_gateway(http, MESSENGER, section, account_of(section), "show")
        assert not got.ok
        assert got.detail.startswith(f"Graph 100: Unsupported get request. Object with ID '{PAGE}'")
        assert PAGE_TOKEN not in got.detail
