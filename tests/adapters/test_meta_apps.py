"""Several Meta apps (issue #18 item 3): each number, Page and Instagram account belongs to one
app; a body must be signed by the app that owns every account it names. Posted through the
real gateway on both server paths (the fast path and aiohttp's routes) into a real Redis:
what is published, what is dead-lettered (`wrong_app`) and what is refused (401). Then
`appsecret_proof` on the Graph and Send API calls of an app that requires it (the stand-ins
refuse a call without it, as Meta does), and the config's errors, each naming its key."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from adapters import CHANNELS
from adapters.meta import WrongApp, named_ids, sign
from adapters.meta_apps import appsecret_proof
from adapters.schema import Command
from gateway.app import create_app
from gateway.config import ConfigError, Settings, loads, secrets_of
from gateway.state import OUTBOX
from router.outbound import Outbox
from tests.conftest import all_streams, cluster_mode, stream, wa_body
from tests.fakes.send_api import FakeSendAPI
from tests.test_outbound import Gateway

SHOP_SECRET = "shop-app-secret-0123456789"
CLINIC_SECRET = "clinic-app-secret-0123456789"
STRANGER_SECRET = "nobodys-app-secret-0123456789"
N_SHOP, N_CLINIC, N_UNKNOWN = "300100000000001", "300100000000002", "300100000000009"
W_SHOP, W_CLINIC = "400100000000001", "400100000000002"
P_SHOP, P_CLINIC = "104500000000001", "104500000000002"
IG_CLINIC = "17841500000000001"
TOKENS = {N_SHOP: "token-shop", N_CLINIC: "token-clinic"}
PAGE_TOKENS = {P_SHOP: "page-token-shop", P_CLINIC: "page-token-clinic"}
IG_TOKENS = {IG_CLINIC: "ig-token-clinic"}
PSID = "7010000000000001"

CONFIG = f"""
server: {{host: 127.0.0.1, port: 0, fast_path: "${{FAST_PATH}}"}}
redis: {{url: "${{REDIS_URL}}", cluster: "${{REDIS_CLUSTER}}"}}
policy: {{send_wait_max_seconds: 5}}
outbound:
  enabled: false
  request_timeout_seconds: 2
  retry: {{max_attempts: 2, base_seconds: 0.05, max_seconds: 0.1}}
whatsapp:
  api_base: "${{GRAPH_URL}}"
  verify_token: test-verify-token
  app_secret: {SHOP_SECRET}          # the default app: the shop's
  app_id: "5000000000000001"
  apps:
    - {{name: clinic, app_secret: {CLINIC_SECRET}, app_id: "5000000000000002",
       appsecret_proof: true}}
  numbers:
    - {{phone_number_id: "{N_SHOP}", display_phone_number: "+15550001111", waba_id: "{W_SHOP}",
       assistant: shop, access_token: token-shop}}
    - {{phone_number_id: "{N_CLINIC}", display_phone_number: "+15550002222",
       waba_id: "{W_CLINIC}", assistant: clinic, access_token: token-clinic, app: clinic}}
messenger:
  api_base: "${{META_URL}}/v21.0"
  verify_token: test-verify-token
  apps:
    - {{name: shop, app_secret: {SHOP_SECRET}}}
    - {{name: clinic, app_secret: {CLINIC_SECRET}, appsecret_proof: true}}
  pages:
    - {{page_id: "{P_SHOP}", access_token: page-token-shop, assistant: shop, app: shop}}
    - {{page_id: "{P_CLINIC}", access_token: page-token-clinic, assistant: clinic, app: clinic}}
instagram:
  api_base: "${{IG_URL}}/v21.0"
  verify_token: test-verify-token
  apps:
    - {{name: clinic, app_secret: {CLINIC_SECRET}, appsecret_proof: true}}
  accounts:                          # no `app`: the only app
    - {{account_id: "{IG_CLINIC}", access_token: ig-token-clinic, assistant: clinic}}
"""


def _settings(redis_url: str, **env: str) -> Settings:
    base = {
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": str(cluster_mode()).lower(),
        "FAST_PATH": "true",
        "GRAPH_URL": "http://127.0.0.1:9/v21.0",
        "META_URL": "http://127.0.0.1:9",
        "IG_URL": "http://127.0.0.1:9",
    }
    return loads(CONFIG, {**base, **env})


@pytest.fixture(params=["fast", "aiohttp"])
async def client(
    request: pytest.FixtureRequest, aiohttp_client: Any, redis: Redis, redis_url: str
) -> TestClient:
    """The gateway with these apps, its webhook POSTs served by the fast path or by aiohttp."""
    settings = _settings(redis_url, FAST_PATH=str(request.param == "fast").lower())
    test_client: TestClient = await aiohttp_client(create_app(settings, redis_url))
    return test_client


# --- bodies as Meta posts them ---------------------------------------------------------------


def wa_change(number: str, wamid: str) -> dict[str, Any]:
    message = {"from": "5511987650000", "id": wamid, "timestamp": str(int(time.time())),
               "type": "text", "text": {"body": "oi"}}  # fmt: skip
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": number},
             "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511987650000"}],
             "messages": [message]}  # fmt: skip
    return {"field": "messages", "value": value}


def wa_envelope(*entries: tuple[str, list[dict[str, Any]]]) -> bytes:
    """WABA id → its changes, one entry each."""
    listed = [{"id": waba, "changes": changes} for waba, changes in entries]
    return wa_body({"object": "whatsapp_business_account", "entry": listed})


def page_item(account: str, mid: str) -> dict[str, Any]:
    return {
        "sender": {"id": PSID},
        "recipient": {"id": account},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": mid, "text": "Olá"},
    }


def page_envelope(obj: str, *entries: tuple[str, list[dict[str, Any]]]) -> bytes:
    return wa_body({"object": obj, "entry": [
        {"id": account, "time": int(time.time() * 1000), "messaging": items}
        for account, items in entries]})  # fmt: skip


async def post(client: TestClient, path: str, body: bytes, secret: str) -> int:
    headers = {"X-Hub-Signature-256": sign(body, secret.encode()),
               "Content-Type": "application/json"}  # fmt: skip
    resp = await client.post(path, data=body, headers=headers)
    return resp.status


async def published(redis: Redis) -> dict[str, list[str]]:
    """Every stream but the dead letters → the message ids in it."""
    streams = await all_streams(redis)
    streams.pop("gw:deadletter", None)
    return {name: [e.get("message_id") for e in events] for name, events in streams.items()}


# --- two apps, each verifying its own accounts' bodies ---------------------------------------


async def test_each_app_signs_its_own_accounts_bodies_on_every_meta_path(
    client: TestClient, redis: Redis
) -> None:
    posts = [
        ("/webhooks/whatsapp", wa_envelope((W_SHOP, [wa_change(N_SHOP, "wamid.S1")])),
         SHOP_SECRET),
        ("/webhooks/whatsapp", wa_envelope((W_CLINIC, [wa_change(N_CLINIC, "wamid.C1")])),
         CLINIC_SECRET),
        ("/webhooks/messenger", page_envelope("page", (P_SHOP, [page_item(P_SHOP, "m_S2")])),
         SHOP_SECRET),
        ("/webhooks/messenger",
         page_envelope("page", (P_CLINIC, [page_item(P_CLINIC, "m_C2")])), CLINIC_SECRET),
        ("/webhooks/instagram",
         page_envelope("instagram", (IG_CLINIC, [page_item(IG_CLINIC, "ig_C3")])),
         CLINIC_SECRET),
    ]  # fmt: skip
    for path, body, secret in posts:
        assert await post(client, path, body, secret) == 200, path
    assert await published(redis) == {
        "gw:inbox:shop": ["wamid.S1", "m_S2"],
        "gw:inbox:clinic": ["wamid.C1", "m_C2", "ig_C3"],
    }
    assert await stream(redis, "gw:deadletter") == []


async def test_a_body_signed_by_no_configured_app_is_401(client: TestClient, redis: Redis) -> None:
    body = wa_envelope((W_SHOP, [wa_change(N_SHOP, "wamid.FORGED")]))
    assert await post(client, "/webhooks/whatsapp", body, STRANGER_SECRET) == 401
    page = page_envelope("page", (P_SHOP, [page_item(P_SHOP, "m_FORGED")]))
    assert await post(client, "/webhooks/messenger", page, STRANGER_SECRET) == 401
    assert await all_streams(redis) == {}


# --- cross-app bodies: answered 200, dead-lettered whole, nothing published ------------------


async def _one_wrong_app_letter(redis: Redis, body: bytes, channel: str) -> dict[str, Any]:
    assert await published(redis) == {}
    [letter] = await stream(redis, "gw:deadletter")
    assert (letter["reason"], letter["channel"]) == ("wrong_app", channel)
    assert base64.b64decode(letter["body_b64"]) == body  # kept whole, for a replay
    for secret in (SHOP_SECRET, CLINIC_SECRET):
        assert secret not in json.dumps(letter)
    detail: str = letter["detail"]
    return {"detail": detail}


async def test_a_whatsapp_body_signed_by_another_apps_secret_is_dead_lettered(
    client: TestClient, redis: Redis
) -> None:
    body = wa_envelope((W_CLINIC, [wa_change(N_CLINIC, "wamid.CROSS")]))
    assert await post(client, "/webhooks/whatsapp", body, SHOP_SECRET) == 200
    letter = await _one_wrong_app_letter(redis, body, "whatsapp")
    assert "'default'" in letter["detail"]  # the app that signed
    assert N_CLINIC in letter["detail"] and W_CLINIC in letter["detail"]
    assert "app clinic" in letter["detail"]
    # Meta retries nothing it was answered 200 for; a redelivery is dead-lettered again.
    assert await post(client, "/webhooks/whatsapp", body, SHOP_SECRET) == 200
    assert await published(redis) == {}


async def test_a_page_body_signed_by_another_apps_secret_is_dead_lettered(
    client: TestClient, redis: Redis
) -> None:
    body = page_envelope("page", (P_CLINIC, [page_item(P_CLINIC, "m_CROSS")]))
    assert await post(client, "/webhooks/messenger", body, SHOP_SECRET) == 200
    letter = await _one_wrong_app_letter(redis, body, "messenger")
    assert P_CLINIC in letter["detail"] and "'shop'" in letter["detail"]


async def test_a_body_naming_accounts_of_two_apps_publishes_nothing_of_either(
    client: TestClient, redis: Redis
) -> None:
    """The shop's own message rides along with the clinic's: the whole body is refused."""
    body = wa_envelope((W_SHOP, [wa_change(N_SHOP, "wamid.MINE")]),
                       (W_CLINIC, [wa_change(N_CLINIC, "wamid.THEIRS")]))  # fmt: skip
    assert await post(client, "/webhooks/whatsapp", body, SHOP_SECRET) == 200
    letter = await _one_wrong_app_letter(redis, body, "whatsapp")
    assert N_CLINIC in letter["detail"] and N_SHOP not in letter["detail"]

    page = page_envelope("page", (P_CLINIC, [page_item(P_CLINIC, "m_OK"),
                                             page_item(P_SHOP, "m_SMUGGLED")]))  # fmt: skip
    assert await post(client, "/webhooks/messenger", page, CLINIC_SECRET) == 200
    assert await published(redis) == {}
    letters = await stream(redis, "gw:deadletter")
    assert [x["reason"] for x in letters] == ["wrong_app", "wrong_app"]
    assert P_SHOP in letters[1]["detail"]


async def test_an_account_update_of_another_apps_waba_is_dead_lettered(
    client: TestClient, redis: Redis
) -> None:
    value = {"event": "PARTNER_REMOVED", "waba_info": {"waba_id": W_CLINIC}}
    entry = {"id": W_CLINIC, "time": int(time.time()),
             "changes": [{"field": "account_update", "value": value}]}  # fmt: skip
    body = wa_body({"object": "whatsapp_business_account", "entry": [entry]})
    assert await post(client, "/webhooks/whatsapp", body, SHOP_SECRET) == 200
    letter = await _one_wrong_app_letter(redis, body, "whatsapp")
    assert W_CLINIC in letter["detail"]


async def test_an_account_no_app_owns_is_left_to_routing(client: TestClient, redis: Redis) -> None:
    """Not another app's account: an unknown one, dead-lettered as any unknown account is."""
    body = wa_envelope(("400100000000009", [wa_change(N_UNKNOWN, "wamid.WHO")]))
    assert await post(client, "/webhooks/whatsapp", body, SHOP_SECRET) == 200
    [letter] = await stream(redis, "gw:deadletter")
    assert letter["reason"] == "unknown_account"


# --- bodies posted to another Meta channel's path: judged by their own channel's apps --------


async def test_a_page_body_on_the_whatsapp_path_is_judged_by_messengers_apps(
    client: TestClient, redis: Redis
) -> None:
    mine = page_envelope("page", (P_CLINIC, [page_item(P_CLINIC, "m_VIA_WA")]))
    assert await post(client, "/webhooks/whatsapp", mine, CLINIC_SECRET) == 200
    assert await published(redis) == {"gw:inbox:clinic": ["m_VIA_WA"]}

    # Signed by the shop's app (WhatsApp's default, Messenger's `shop`): not the clinic Page's.
    cross = page_envelope("page", (P_CLINIC, [page_item(P_CLINIC, "m_CROSS_VIA_WA")]))
    assert await post(client, "/webhooks/whatsapp", cross, SHOP_SECRET) == 200
    [letter] = await stream(redis, "gw:deadletter")
    assert (letter["reason"], letter["channel"]) == ("wrong_app", "whatsapp")
    assert await published(redis) == {"gw:inbox:clinic": ["m_VIA_WA"]}

    # Instagram lists only the clinic's app: the shop's secret is no app of Instagram's.
    ig = page_envelope("instagram", (IG_CLINIC, [page_item(IG_CLINIC, "ig_VIA_FB")]))
    assert await post(client, "/webhooks/messenger", ig, SHOP_SECRET) == 401


# --- appsecret_proof -------------------------------------------------------------------------


def _proof(token: str, secret: str) -> str:
    """Meta's definition, written out independently of the gateway's code."""
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def test_the_proof_is_the_hmac_sha256_of_the_token_keyed_by_the_app_secret() -> None:
    assert appsecret_proof("token-clinic", CLINIC_SECRET) == _proof("token-clinic", CLINIC_SECRET)
    assert len(appsecret_proof("t", "s")) == 64


def _account(settings: Settings, channel: str, account_id: str) -> Any:
    section = getattr(settings, channel)
    return next(a for a in section.accounts() if a.account_id == account_id)


def test_only_the_accounts_of_an_app_that_asks_carry_the_proof(redis_url: str) -> None:
    settings = _settings(redis_url)
    command = msgspec.convert(
        {"schema": 1, "command_id": "c1", "conversation_id": f"whatsapp:{N_CLINIC}:55119",
         "type": "text", "text": "oi"}, Command,
    )  # fmt: skip
    clinic = CHANNELS["whatsapp"].request(
        _account(settings, "whatsapp", N_CLINIC), "https://graph.test/v21.0", command,
        "5511987650000", None, None,
    )  # fmt: skip
    assert clinic.url == (
        f"https://graph.test/v21.0/{N_CLINIC}/messages?appsecret_proof="
        + _proof("token-clinic", CLINIC_SECRET)
    )
    shop = CHANNELS["whatsapp"].request(
        _account(settings, "whatsapp", N_SHOP), "https://graph.test/v21.0", command,
        "5511987650000", None, None,
    )  # fmt: skip
    assert shop.url == f"https://graph.test/v21.0/{N_SHOP}/messages"
    assert "appsecret_proof" not in repr(_account(settings, "whatsapp", N_CLINIC))

    page = dataclasses.replace(_account(settings, "messenger", P_CLINIC), mode="263902037430900")
    handoff = msgspec.convert(
        {"schema": 1, "command_id": "h1", "conversation_id": f"messenger:{P_CLINIC}:{PSID}",
         "type": "handoff"}, Command,
    )  # fmt: skip
    control = CHANNELS["messenger"].control(page, "https://graph.test/v21.0", handoff, PSID)
    assert control is not None
    assert control.url.endswith(
        "/pass_thread_control?appsecret_proof=" + _proof("page-token-clinic", CLINIC_SECRET)
    )

    subscribe = CHANNELS["messenger"].subscription_call(
        settings.messenger, _account(settings, "messenger", P_CLINIC), "set", "https://gw", False
    )
    assert subscribe is not None
    assert subscribe.params["appsecret_proof"] == _proof("page-token-clinic", CLINIC_SECRET)
    show = CHANNELS["messenger"].subscription_call(
        settings.messenger, _account(settings, "messenger", P_SHOP), "show", "https://gw", False
    )
    assert show is not None and "appsecret_proof" not in show.params
    waba = CHANNELS["whatsapp"].subscription_call(
        settings.whatsapp, _account(settings, "whatsapp", N_CLINIC), "show", "https://gw", False
    )
    assert waba is not None
    assert waba.params == {"appsecret_proof": _proof("token-clinic", CLINIC_SECRET)}


@pytest.fixture
async def meta(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    """The gateway in front of a Send API stand-in whose clinic app requires the proof."""
    async with FakeSendAPI(pages=PAGE_TOKENS, accounts=IG_TOKENS) as api:
        api.require_proof(CLINIC_SECRET, P_CLINIC, IG_CLINIC)
        settings = _settings(redis_url, META_URL=api.messenger_url, IG_URL=api.instagram_url)
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        outbox: Outbox = app[OUTBOX]
        yield Gateway(client, outbox, redis, api, None)  # type: ignore[arg-type]


async def test_sends_carry_the_proof_where_the_app_requires_it(meta: Gateway) -> None:
    api: FakeSendAPI = meta.graph  # type: ignore[assignment]
    for account, secret, obj in ((P_CLINIC, CLINIC_SECRET, "page"),
                                 (P_SHOP, SHOP_SECRET, "page"),
                                 (IG_CLINIC, CLINIC_SECRET, "instagram")):  # fmt: skip
        body = page_envelope(obj, (account, [page_item(account, f"m_in.{account}")]))
        path = "/webhooks/instagram" if obj == "instagram" else "/webhooks/messenger"
        assert await post(meta.client, path, body, secret) == 200
    await meta.command("to-clinic", f"messenger:{P_CLINIC}:{PSID}", text="Consulta às 10h")
    await meta.command("to-shop", f"messenger:{P_SHOP}:{PSID}", text="Pedido enviado")
    await meta.command("to-ig", f"instagram:{IG_CLINIC}:{PSID}", text="Até amanhã")
    await meta.run()
    sent = {r.account_id: r for r in api.requests}
    assert {a: r.status for a, r in sent.items()} == {P_CLINIC: 200, P_SHOP: 200, IG_CLINIC: 200}
    assert sent[P_CLINIC].proof == _proof("page-token-clinic", CLINIC_SECRET)
    assert sent[IG_CLINIC].proof == _proof("ig-token-clinic", CLINIC_SECRET)
    assert sent[P_SHOP].proof is None
    assert (await meta.delivery("to-clinic", "clinic"))["outcome"] == "sent"
    assert (await meta.delivery("to-shop", "shop"))["outcome"] == "sent"


async def test_the_stand_ins_refuse_a_missing_or_wrong_proof_as_meta_does() -> None:
    async with FakeSendAPI(pages=PAGE_TOKENS) as api, aiohttp.ClientSession() as http:
        api.require_proof(CLINIC_SECRET, P_CLINIC)
        url = f"{api.messenger_url}/v21.0/{P_CLINIC}/messages"
        body = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "oi"}}
        auth = {"Authorization": "Bearer page-token-clinic"}
        answers = []
        for proof in (None, _proof("page-token-clinic", SHOP_SECRET),
                      _proof("page-token-clinic", CLINIC_SECRET)):  # fmt: skip
            params = {"appsecret_proof": proof} if proof else {}
            async with http.post(url, json=body, headers=auth, params=params) as resp:
                answers.append((resp.status, await resp.json()))
        (missing, m_body), (wrong, w_body), (right, _) = answers
        assert (missing, m_body["error"]["code"], m_body["error"]["type"]) == (
            400, 100, "GraphMethodException")  # fmt: skip
        assert m_body["error"]["message"] == (
            "API calls from the server require an appsecret_proof argument"
        )
        assert (wrong, w_body["error"]["message"]) == (
            400, "Invalid appsecret_proof provided in the API argument")  # fmt: skip
        assert right == 200
        verdict = CHANNELS["messenger"].classify(wrong, json.dumps(w_body).encode())
        assert verdict.verdict == "failed" and verdict.provider_code == 100


async def test_the_graph_stand_in_checks_the_proof_on_sends_and_subscriptions() -> None:
    from gateway_demo.standins.graph_api import FakeGraphAPI

    wabas = {W_CLINIC: [N_CLINIC]}
    async with FakeGraphAPI(TOKENS, wabas=wabas) as graph, aiohttp.ClientSession() as http:
        graph.require_proof(CLINIC_SECRET, N_CLINIC)
        auth = {"Authorization": "Bearer token-clinic"}
        edge = f"{graph.base_url}/{W_CLINIC}/subscribed_apps"
        async with http.get(edge, headers=auth) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == 100
        proof = {"appsecret_proof": _proof("token-clinic", CLINIC_SECRET)}
        async with http.get(edge, headers=auth, params=proof) as resp:
            assert resp.status == 200
        send = {"messaging_product": "whatsapp", "to": "5511987650000", "type": "text",
                "text": {"body": "oi"}}  # fmt: skip
        url = f"{graph.base_url}/{N_CLINIC}/messages"
        async with http.post(url, json=send, headers=auth) as resp:
            assert resp.status == 400
        async with http.post(url, json=send, headers=auth, params=proof) as resp:
            assert resp.status == 200
        assert [r.proof for r in graph.requests] == [None, proof["appsecret_proof"]] * 2


# --- config ----------------------------------------------------------------------------------


def _error(redis_url: str, old: str, new: str) -> str:
    assert old in CONFIG, old
    text = CONFIG.replace(old, new, 1)
    env = {"REDIS_URL": redis_url, "REDIS_CLUSTER": "false", "FAST_PATH": "true",
           "GRAPH_URL": "http://x/v21.0", "META_URL": "http://x", "IG_URL": "http://x"}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        loads(text, env)
    message = str(caught.value)
    for secret in (SHOP_SECRET, CLINIC_SECRET):
        assert secret not in message
    return message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("access_token: token-clinic, app: clinic", "access_token: token-clinic, app: lab",
         "whatsapp.numbers[1].app: no app named 'lab' (the apps: default, clinic)"),
        ("- {name: clinic, app_secret: " + CLINIC_SECRET + ", app_id",
         "- {name: default, app_secret: " + CLINIC_SECRET + ", app_id",
         "whatsapp.apps[0].name: 'default' is already whatsapp.app_secret"),
        ("    - {name: shop, app_secret: " + SHOP_SECRET + "}",
         "    - {name: clinic, app_secret: " + SHOP_SECRET + "}",
         "messenger.apps[1].name: 'clinic' is already messenger.apps[0].name"),
        ("    - {name: clinic, app_secret: " + CLINIC_SECRET + ", appsecret_proof: true}\n  pages",
         "    - {name: clinic, app_secret: " + SHOP_SECRET + ", appsecret_proof: true}\n  pages",
         "messenger.apps[1].app_secret: the same secret as messenger.apps[0].app_secret"),
        ("assistant: shop, app: shop}", "assistant: shop}",
         "messenger.pages[0].app: required: there are several apps and no app_secret"),
        ("  apps:\n    - {name: clinic, app_secret: " + CLINIC_SECRET + ", appsecret_proof: true}"
         "\n  accounts", "  accounts",
         "instagram.app_secret: required, or list the Meta apps under instagram.apps"),
        ("  apps:\n    - {name: clinic, app_secret: " + CLINIC_SECRET + ", appsecret_proof: true}"
         "\n  accounts", f"  app_secret: {CLINIC_SECRET}\n  accounts",
         "instagram.apps: required once whatsapp.apps is set"),
        ("{name: shop, app_secret", "{name: 'shop app', app_secret",
         "messenger.apps[0].name: use 1-64 characters"),
        ('app_id: "5000000000000002"', 'app_id: "clinic"',
         "whatsapp.apps[0].app_id: must be the numeric id of the app"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(redis_url: str, old: str, new: str, key: str) -> None:
    assert _error(redis_url, old, new).startswith(key)


def test_every_apps_secret_is_a_secret_of_the_config(redis_url: str) -> None:
    """So logs redact it, and off loopback a short one stops startup naming its key."""
    keys = {s.key: s.value for s in secrets_of(_settings(redis_url))}
    assert keys["whatsapp.apps[0].app_secret"] == CLINIC_SECRET
    assert keys["messenger.apps[0].app_secret"] == SHOP_SECRET
    assert "messenger.app_secret" not in keys  # not set: the apps are listed
    short = CONFIG.replace("server: {host: 127.0.0.1", "server: {host: 0.0.0.0").replace(
        f"{{name: shop, app_secret: {SHOP_SECRET}}}", "{name: shop, app_secret: short}"
    )
    env = {"REDIS_URL": redis_url, "REDIS_CLUSTER": "false", "FAST_PATH": "true",
           "GRAPH_URL": "http://x/v21.0", "META_URL": "http://x", "IG_URL": "http://x"}  # fmt: skip
    with pytest.raises(ConfigError, match=r"^messenger\.apps\[0\]\.app_secret"):
        loads(short, env)


# --- the ids a body names: a parser, so arbitrary input never raises ---------------------------


@given(st.binary(max_size=2000))
def test_named_ids_of_any_bytes_never_raises(body: bytes) -> None:
    named = named_ids(body)
    assert named is None or isinstance(named[1], set)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "entry",
                    "changes",
                    "messaging",
                    "standby",
                    "sender",
                    "recipient",
                    "value",
                    "metadata",
                    "phone_number_id",
                    "object",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)


_RECEIVER = CHANNELS["whatsapp"].receiver(_settings("redis://127.0.0.1:9").whatsapp)


@given(_json)
def test_any_json_is_read_or_refused_by_a_receiver_without_other_exceptions(value: Any) -> None:
    body = json.dumps(value).encode()
    receiver = _RECEIVER
    headers = {"x-hub-signature-256": sign(body, SHOP_SECRET.encode())}
    try:
        verified = receiver.verify(None, headers, body)
    except WrongApp as exc:
        assert "signed by app 'default'" in str(exc)
    else:
        assert isinstance(verified, bool)


def test_named_ids_reads_every_id_the_parsers_route_by() -> None:
    wa = wa_envelope((W_SHOP, [wa_change(N_SHOP, "wamid.X")]))
    assert named_ids(wa) == ("whatsapp_business_account", {W_SHOP, N_SHOP})
    page = page_envelope("page", (P_SHOP, [page_item(P_CLINIC, "m_X")]))
    assert named_ids(page) == ("page", {P_SHOP, P_CLINIC, PSID})
    broken = page_envelope("page", (P_SHOP, [{"sender": "no", "recipient": {"id": P_CLINIC}}]))
    assert named_ids(broken) == ("page", {P_SHOP})  # the parser cannot publish that item
