"""Coexistence upkeep: the last sign of life of a number's WhatsApp Business app (echoes,
contact syncs, the onboarding), the warning before Meta's ~14-day cut-off (an `account`
event once per stretch of silence, the gauge `gateway_business_app_idle_seconds`), and
`gateway accounts sync`, which asks Meta for the app's contacts and chat history
(router/upkeep.py, adapters/whatsapp/_sync.py, gateway/accounts_tool.py)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from adapters.account import Account, AppIdle
from adapters.channel import SyncKind
from adapters.whatsapp import WhatsAppSettings
from adapters.whatsapp._sync import sync_answer, sync_call
from gateway.app import create_app
from gateway.config import ConfigError, loads
from gateway.state import OUTBOX
from gateway_demo.standins.graph_api import FakeGraphAPI
from router import keys
from router.upkeep import DAY_S, INACTIVE, silence, warning_detail
from tests.conftest import (
    NUMBER_A,
    NUMBER_B,
    TEST_CONFIG,
    change,
    envelope,
    gateway_env,
    make_settings,
    stream,
)
from tests.test_coexistence import echo, post
from tests.test_inspect import ENV, run
from tests.test_outbound import Gateway, post_account_update

SUPPORT = "gw:inbox:support"
SALES = "gw:inbox:sales"
STATE_A = keys.account_state(SUPPORT, "whatsapp", NUMBER_A)
STATE_B = keys.account_state(SALES, "whatsapp", NUMBER_B)
GAUGE = "gateway_business_app_idle_seconds"


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    """The gateway app; its reply workers are not run: the tests run the checks themselves."""
    async with FakeGraphAPI({NUMBER_A: "token-a", NUMBER_B: "token-b"}) as graph:
        settings = make_settings(redis_url, GRAPH_URL=graph.base_url, OUTBOUND_ENABLED="false")
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, None)  # type: ignore[arg-type]


async def seen(redis: Redis, key: str = STATE_A) -> int | None:
    value = await redis.hget(key, keys.SEEN)
    return None if value is None else int(value)


async def warnings(redis: Redis, inbox: str = SUPPORT) -> list[dict[str, Any]]:
    return [e for e in await stream(redis, inbox) if e["kind"] == "account"
            and e["event"] == INACTIVE]  # fmt: skip


async def gauge(gw: Gateway, number: str = NUMBER_A) -> float | None:
    text = await (await gw.client.get("/metrics")).text()
    found = re.search(rf'^{GAUGE}{{account="{number}"}} (\S+)$', text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def contact_sync(stamp: int) -> dict[str, Any]:
    item = {
        "type": "contact",
        "action": "add",
        "metadata": {"timestamp": str(stamp)},
        "contact": {"full_name": "Ana Souza", "phone_number": "+5511955551234"},
    }
    value = change(NUMBER_A, "15550001111", state_sync=[item])
    value["field"] = "smb_app_state_sync"
    return envelope(value)


# --- the last sign of life ------------------------------------------------------------------


@pytest.mark.cluster
async def test_an_echo_and_a_contact_sync_move_the_last_sign_of_life(
    gw: Gateway, redis: Redis
) -> None:
    now = int(time.time())
    await post(gw, echo("wamid.alive.1", ts=now - 3600))
    assert await seen(redis) == now - 3600
    await post(gw, echo("wamid.alive.old", ts=now - 7200))  # a late, older echo
    assert await seen(redis) == now - 3600  # never moved back
    await post(gw, contact_sync(now - 60))
    assert await seen(redis) == now - 60
    await post(gw, echo("wamid.alive.ahead", ts=now + 3000))  # stamped ahead of the clock
    assert now - 60 < (await seen(redis) or 0) <= int(time.time())  # at most now
    await post(gw, echo("wamid.alive.1", ts=now + 5000))  # a redelivery: nothing new
    assert (await seen(redis) or 0) <= int(time.time())


@pytest.mark.cluster
async def test_the_onboarding_starts_the_clock(gw: Gateway, redis: Redis) -> None:
    onboarded = int(time.time()) - 600
    await post_account_update(gw, "PARTNER_ADDED", onboarded)
    assert await seen(redis) == onboarded
    await post_account_update(gw, "ACCOUNT_UPDATE", onboarded + 60)  # not a sign of life
    assert await seen(redis) == onboarded


# --- the warning and the gauge --------------------------------------------------------------


@pytest.mark.cluster
async def test_an_idle_number_gets_one_warning_and_the_gauge(gw: Gateway, redis: Redis) -> None:
    last = int(time.time()) - 11 * DAY_S
    await post(gw, echo("wamid.idle.1", ts=last))
    now = time.time()
    # Every process checks (two at once here): the warning is still written once.
    await asyncio.gather(gw.outbox.upkeep.check(now), gw.outbox.upkeep.check(now))
    await gw.outbox.upkeep.check(now + 60)
    [warning] = await warnings(redis)
    assert warning["account_id"] == NUMBER_A and warning["assistant_id"] == "support"
    assert warning["conversation_id"] is None
    detail = warning["detail"]
    assert (detail["idle_days"], detail["days_left"]) == (11.0, 2.9)
    assert (detail["warn_days"], detail["cutoff_days"]) == (10, 14)
    assert (detail["last_seen"], detail["cutoff_at"]) == (last, last + 14 * DAY_S)
    assert 11 * DAY_S <= (await gauge(gw) or 0) < 11 * DAY_S + 120


@pytest.mark.cluster
async def test_a_fresh_echo_starts_a_new_stretch(gw: Gateway, redis: Redis) -> None:
    await post(gw, echo("wamid.stretch.1", ts=int(time.time()) - 12 * DAY_S))
    await gw.outbox.upkeep.check()
    assert len(await warnings(redis)) == 1
    await post(gw, echo("wamid.stretch.2"))  # the owner wrote from the app
    await gw.outbox.upkeep.check()
    assert (await gauge(gw) or 0) < 60
    assert len(await warnings(redis)) == 1
    await gw.outbox.upkeep.check(time.time() + 9 * DAY_S)  # quiet, but not yet 10 days
    assert len(await warnings(redis)) == 1
    await gw.outbox.upkeep.check(time.time() + 10 * DAY_S + 60)
    assert [w["detail"]["idle_days"] for w in await warnings(redis)] == [12.0, 10.0]


@pytest.mark.cluster
async def test_cloud_api_and_twilio_numbers_are_never_watched(gw: Gateway, redis: Redis) -> None:
    await redis.hset(STATE_B, keys.SEEN, str(int(time.time()) - 30 * DAY_S))
    checked = await gw.outbox.upkeep.check()
    assert [c.account.account_id for c in checked] == [NUMBER_A]  # TWILIO_B is coexistence too
    assert await warnings(redis, SALES) == []
    assert await gauge(gw, NUMBER_B) is None
    assert await gauge(gw) is not None and await seen(redis) is not None  # watched from now


@pytest.mark.cluster
async def test_a_disconnected_number_is_not_warned_of(gw: Gateway, redis: Redis) -> None:
    await post(gw, echo("wamid.gone.1", ts=int(time.time()) - 13 * DAY_S))
    await post_account_update(gw, "PARTNER_REMOVED", int(time.time()))
    await gw.outbox.upkeep.check()
    assert await warnings(redis) == []
    assert (await gauge(gw) or 0) >= 13 * DAY_S


def config_with(extra: str) -> str:
    head = "whatsapp:\n"
    assert TEST_CONFIG.count(head) == 1
    return TEST_CONFIG.replace(head, head + extra)


async def test_the_thresholds_are_settings(redis: Redis, redis_url: str) -> None:
    settings = loads(
        config_with("  app_idle_warn_days: 2\n  app_idle_cutoff_days: 13\n"),
        gateway_env(redis_url),
    )
    [a] = [a for a in settings.whatsapp.accounts() if a.app_idle is not None]  # type: ignore[union-attr]
    assert (a.account_id, a.app_idle) == (NUMBER_A, AppIdle(2 * DAY_S, 13 * DAY_S))
    with pytest.raises(ConfigError, match=r"whatsapp\.app_idle_warn_days: 14 is not before"):
        loads(config_with("  app_idle_warn_days: 14\n"), gateway_env(redis_url))
    with pytest.raises(ConfigError, match=r"whatsapp\.app_idle_cutoff_days"):
        loads(config_with("  app_idle_cutoff_days: 0\n"), gateway_env(redis_url))


# --- the idle arithmetic --------------------------------------------------------------------

RULES = st.builds(
    lambda warn, extra: AppIdle(warn, warn + extra),
    st.integers(1, 60 * DAY_S),
    st.integers(1, 60 * DAY_S),
)


@given(st.integers(0, 2**33), st.floats(0, 2**33, allow_nan=False), RULES)
def test_the_silence_is_never_negative_and_warns_exactly_from_its_threshold(
    seen_s: int, now_s: float, rule: AppIdle
) -> None:
    quiet = silence(seen_s, now_s, rule)
    assert quiet.idle_s >= 0 and quiet.left_s >= 0
    assert quiet.idle_s == max(0.0, now_s - seen_s)
    assert quiet.due == (quiet.idle_s >= rule.warn_s)
    assert quiet.left_s == 0 or quiet.idle_s + quiet.left_s == pytest.approx(rule.cutoff_s)
    detail = warning_detail(seen_s, quiet, rule)
    # Rounded down: never more idle, nor more time left, than is true.
    assert 0 <= detail["idle_days"] * DAY_S <= quiet.idle_s + 1e-6
    assert 0 <= detail["days_left"] * DAY_S <= quiet.left_s + 1e-6
    if detail["days_left"]:  # past the cut-off, the days idle go on and none are left
        assert detail["idle_days"] + detail["days_left"] <= detail["cutoff_days"] + 1e-9
    assert detail["cutoff_at"] - detail["last_seen"] == rule.cutoff_s


# --- gateway accounts sync ------------------------------------------------------------------

SETTINGS = WhatsAppSettings(
    verify_token="test-verify-token-123",
    app_secret="test-app-secret-123456",
    api_base="http://graph.test/v21.0/",
    numbers=[],
)
COEX = Account("whatsapp", NUMBER_A, "support", "EAAG-secret", mode="coexistence",
               token_proof="ab12")  # fmt: skip


def graph_error(code: int, message: str) -> bytes:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Atrace"}
    return json.dumps({"error": error}).encode()


def test_the_sync_call_is_smb_app_data_with_the_numbers_token() -> None:
    for kind, sync_type in (("contacts", "smb_app_state_sync"), ("history", "history")):
        call = sync_call(SETTINGS, COEX, kind)  # type: ignore[arg-type]
        assert call is not None
        assert (call.method, call.url) == (
            "POST",
            f"http://graph.test/v21.0/{NUMBER_A}/smb_app_data",
        )
        assert call.headers == {"Authorization": "Bearer EAAG-secret"}
        assert dict(call.params) == {"appsecret_proof": "ab12"}
        assert call.body == {"messaging_product": "whatsapp", "sync_type": sync_type}
    assert sync_call(None, COEX, "contacts") is None


def test_a_number_not_in_coexistence_has_nothing_to_sync() -> None:
    from dataclasses import replace

    numbers = [{"phone_number_id": NUMBER_B, "display_phone_number": "+5511955550000",
                "assistant": "sales", "mode": "cloud_api"}]  # fmt: skip
    settings = msgspec.convert({**msgspec.to_builtins(SETTINGS), "numbers": numbers},
                               WhatsAppSettings)  # fmt: skip
    cloud = replace(COEX, account_id=NUMBER_B, mode="cloud_api")
    with pytest.raises(ValueError, match=r"^whatsapp\.numbers\[0\]\.mode is cloud_api"):
        sync_call(settings, cloud, "history")


ANSWERS: list[tuple[int, bytes, str, int | None, str]] = [
    (200, b'{"messaging_product":"whatsapp","request_id":"r-77"}', "requested", None, "r-77"),
    (400, graph_error(2593107, "(#2593107) Sync limit exceeded"), "already_done", 2593107,
     "Graph 2593107: Sync limit exceeded (fbtrace_id Atrace)"),
    (400, graph_error(2593108, "(#2593108) Out of window"), "window_passed", 2593108,
     "within 24 h of the onboarding"),
    (401, graph_error(190, "Invalid OAuth access token EAAG-secret"), "failed", 190,
     "Graph 190: Invalid OAuth access token [REDACTED] (fbtrace_id Atrace)"),
    (502, b"<html>Bad gateway</html>", "failed", None, "HTTP 502: not a Graph API answer"),
    (200, b'{"success": true}', "failed", None, "HTTP 200: not a Graph API answer"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "outcome", "code", "said"), ANSWERS)
def test_graphs_sync_answers(status: int, body: bytes, outcome: str, code: int | None,
                             said: str) -> None:  # fmt: skip
    answer = sync_answer(COEX, "history", status, body)
    assert (answer.outcome, answer.code) == (outcome, code)
    assert said in (answer.request_id or "") + answer.detail
    assert "EAAG-secret" not in answer.detail


@given(st.integers(100, 599), st.binary(max_size=300), st.sampled_from(["contacts", "history"]))
def test_any_answer_is_judged_without_raising(status: int, body: bytes, kind: SyncKind) -> None:
    answer = sync_answer(COEX, kind, status, body)
    assert answer.outcome in ("requested", "already_done", "window_passed", "failed")


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphAPI]:
    async with FakeGraphAPI({NUMBER_A: "token-a", NUMBER_B: "token-b"}) as fake:
        yield fake


def cli_config(tmp_path: Path, redis_url: str, graph: FakeGraphAPI) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(TEST_CONFIG)
    env = tmp_path / "test.env"
    values = {**ENV, "REDIS_URL": redis_url, "GRAPH_URL": graph.base_url}
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return ["--config", str(config), "--env-file", str(env)]


async def test_sync_asks_for_contacts_then_history_and_says_what_meta_answered(
    graph: FakeGraphAPI,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = cli_config(tmp_path, redis_url, graph)
    code, out, _ = await run(capsys, "accounts", "sync", *args, "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["account"], r["kind"], r["outcome"]) for r in rows] == [
        (f"whatsapp:{NUMBER_A}", "contacts", "requested"),
        (f"whatsapp:{NUMBER_A}", "history", "requested"),
    ]  # only the coexistence number: NUMBER_B is cloud_api, TWILIO_B has no such API
    assert all(r["request_id"] for r in rows)
    assert [(r.phone_number_id, r.edge, r.body["sync_type"], r.token) for r in graph.requests] == [
        (NUMBER_A, "smb_app_data", "smb_app_state_sync", "token-a"),
        (NUMBER_A, "smb_app_data", "history", "token-a"),
    ]
    record = json.loads(await redis.hget(STATE_A, "sync:history") or b"{}")
    assert (record["outcome"], record["request_id"]) == ("requested", rows[1]["request_id"])

    # Asked again: Meta syncs each kind once per onboarding (2593107), which is not a failure.
    code, out, _ = await run(capsys, "accounts", "sync", *args)
    assert code == 0
    assert out.count("already done") == 2 and "2593107" in out and "token-a" not in out
    kept = json.loads(await redis.hget(STATE_A, "sync:history") or b"{}")
    assert kept == record  # the accepted request's record, with its request id, is kept

    # A day later than the onboarding: 2593108, too late.
    graph.app_data.onboard(NUMBER_A, at=time.time() - 25 * 3600)
    code, out, _ = await run(capsys, "accounts", "sync", *args, "--history")
    assert code == 1
    assert "TOO LATE" in out and "2593108" in out and "contacts" not in out
    code, out, _ = await run(capsys, "inspect", *args, "--json")
    [app] = json.loads(out)["business_apps"]
    assert app["account"] == NUMBER_A
    assert (app["sync"]["contacts"]["outcome"], app["sync"]["history"]["code"]) == (
        "requested",
        2593108,
    )
    code, out, _ = await run(capsys, "inspect", *args)
    assert "BUSINESS APPS" in out and "window_passed (code 2593108)" in out


async def test_sync_refusals_and_provider_errors(
    graph: FakeGraphAPI,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = cli_config(tmp_path, redis_url, graph)
    code, out, _ = await run(capsys, "accounts", "sync", *args, "--account",
                             f"whatsapp:{NUMBER_B}", "--contacts")  # fmt: skip
    assert code == 1
    assert "whatsapp.numbers[1].mode is cloud_api" in out
    assert graph.requests == []  # nothing asked of Meta
    graph.fail_status(502, b"<html>Bad gateway</html>")
    code, out, _ = await run(capsys, "accounts", "sync", *args, "--contacts")
    assert code == 1
    assert "FAILED" in out and "HTTP 502: not a Graph API answer" in out
    code, _, err = await run(capsys, "accounts", "sync", *args, "--account", "whatsapp:1")
    assert code == 2 and "no configured account 'whatsapp:1'" in err


# --- the Graph stand-in's smb_app_data --------------------------------------------------------


async def app_data(graph: FakeGraphAPI, number: str, token: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        url = f"{graph.base_url}/{number}/smb_app_data"
        headers = {"Authorization": f"Bearer {token}"}
        async with http.post(url, json=body, headers=headers) as resp:
            return resp.status, await resp.json()


async def test_the_graph_stand_in_answers_smb_app_data_as_meta(graph: FakeGraphAPI) -> None:
    contacts = {"messaging_product": "whatsapp", "sync_type": "smb_app_state_sync"}
    status, payload = await app_data(graph, NUMBER_A, "token-a", contacts)
    assert status == 200 and set(payload) == {"messaging_product", "request_id"}
    status, payload = await app_data(graph, NUMBER_A, "token-a", contacts)
    assert (status, payload["error"]["code"]) == (400, 2593107)
    assert payload["error"]["message"].startswith("(#2593107) ")
    history = {"messaging_product": "whatsapp", "sync_type": "history"}
    graph.app_data.onboard(NUMBER_B, at=time.time() - 24 * 3600 - 5)
    status, payload = await app_data(graph, NUMBER_B, "token-b", history)
    assert (status, payload["error"]["code"]) == (400, 2593108)
    graph.app_data.onboard(NUMBER_B)  # onboarded again: a new window, each kind once more
    assert (await app_data(graph, NUMBER_B, "token-b", history))[0] == 200
    for bad in ({"sync_type": "history"}, {"messaging_product": "whatsapp", "sync_type": "all"}):
        status, payload = await app_data(graph, NUMBER_A, "token-a", bad)
        assert (status, payload["error"]["code"]) == (400, 100)
    status, payload = await app_data(graph, NUMBER_A, "not-a-token", history)
    assert (status, payload["error"]["code"]) == (401, 190)
    status, payload = await app_data(graph, NUMBER_A, "token-b", history)  # another number's
    assert (status, payload["error"]["code"], payload["error"]["error_subcode"]) == (400, 100, 33)
    assert graph.app_data.requested == {NUMBER_A: ["smb_app_state_sync"], NUMBER_B: ["history"]}
