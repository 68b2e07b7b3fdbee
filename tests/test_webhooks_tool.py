"""`gateway webhooks set | show | delete | verify` (gateway/webhooks_tool.py,
gateway/subscriptions.py) against the fake providers: what an operator runs on day one to
point the platforms at the gateway, and on day two to see whether they still do."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app, directory_from
from gateway.config import loads
from gateway.subscriptions import SubscriptionCheck
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import DEFAULT_APP_ID, FakeGraphAPI
from tests.conftest import (
    BOT_1,
    BOT_2,
    NUMBER_A,
    NUMBER_B,
    TEST_CONFIG,
    TWILIO_A,
    UNREACHABLE,
    WABA,
    make_settings,
)
from tests.test_inspect import ENV, run

BOT_1_TOKEN = f"{BOT_1}:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa"
BOT_2_TOKEN = f"{BOT_2}:AAHtesttokenbbbbbbbbbbbbbbbbbbbbbbb"
PUBLIC = "https://gw.example.com"
TELEGRAM = ["--account", f"telegram:{BOT_1}", "--account", f"telegram:{BOT_2}"]


def config_args(tmp: Path, env: dict[str, str], public_url: str | None = PUBLIC) -> list[str]:
    server = "server: {host: 127.0.0.1, port: 0}"
    text = TEST_CONFIG
    if public_url is not None:
        text = text.replace(
            server, f'server: {{host: 127.0.0.1, port: 0, public_url: "{public_url}"}}'
        )
    (tmp / "config.yaml").write_text(text)
    (tmp / "test.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return ["--config", str(tmp / "config.yaml"), "--env-file", str(tmp / "test.env")]


@pytest.fixture
async def bot() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as fake:
        yield fake


def env_with(redis_url: str, **urls: str) -> dict[str, str]:
    return {**ENV, "REDIS_URL": redis_url, **urls}


async def test_set_registers_each_bot_and_show_reports_it(
    bot: FakeBotAPI,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    args = config_args(tmp_path, env_with(redis_url, BOT_URL=bot.base_url))
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        code, out, _ = await run(capsys, "webhooks", "set", *args, *TELEGRAM, "--drop-pending")
    assert code == 0, out
    for bot_id, token, secret in (
        (BOT_1, BOT_1_TOKEN, "tg-secret_1"),
        (BOT_2, BOT_2_TOKEN, "tg-secret_2"),
    ):
        hook = bot.webhook(token)
        assert hook.url == f"{PUBLIC}/webhooks/telegram/{bot_id}"
        assert hook.secret_token == secret
        assert {"message", "callback_query", "message_reaction"} <= set(hook.allowed_updates)
    [audit] = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert f"telegram:{BOT_1}" in audit and "failed for none" in audit

    bot.webhook(BOT_1_TOKEN).pending_update_count = 3
    bot.webhook(BOT_1_TOKEN).last_error_date = int(time.time()) - 240
    bot.webhook(
        BOT_1_TOKEN
    ).last_error_message = "Wrong response from the webhook: 503 Service Unavailable"
    code, out, _ = await run(capsys, "webhooks", "show", *args, *TELEGRAM)
    assert code == 0, out
    table, _, details = out.partition("\n\n")
    assert f"telegram:{BOT_1}: webhook {PUBLIC}/webhooks/telegram/{BOT_1} (3 pending" in details
    header, first, second = table.splitlines()
    assert header.split() == [
        "ACCOUNT",
        "RESULT",
        "SUBSCRIBED",
        "PENDING",
        "LAST",
        "ERROR",
        "MAX",
        "CONN",
    ]
    assert first.split()[:4] == [f"telegram:{BOT_1}", "ok", "yes", "3"]
    assert "Wrong response from the webhook" in first
    assert re.search(r"\(4m[0-9]s ago\)", first), first
    assert second.split()[:4] == [f"telegram:{BOT_2}", "ok", "yes", "0"]
    assert BOT_1_TOKEN not in out and "AAHtest" not in out  # no token, not even its half

    code, out, _ = await run(capsys, "webhooks", "show", *args, *TELEGRAM, "--json")
    docs = {d["account"]: d for d in json.loads(out)}
    one = docs[f"telegram:{BOT_1}"]
    assert (one["ok"], one["subscribed"], one["pending"]) == (True, True, 3)
    assert 230 <= one["last_error_age_seconds"] <= 300
    assert one["url"] == f"{PUBLIC}/webhooks/telegram/{BOT_1}"


async def test_set_subscribes_the_app_to_each_whatsapp_business_account(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    numbers = ["--account", f"whatsapp:{NUMBER_A}", "--account", f"whatsapp:{NUMBER_B}"]
    tokens = {NUMBER_A: "token-a", NUMBER_B: "token-b"}
    async with FakeGraphAPI(tokens, wabas={WABA: [NUMBER_A, NUMBER_B]}) as graph:
        args = config_args(tmp_path, env_with(redis_url, GRAPH_URL=graph.base_url))
        code, out, _ = await run(capsys, "webhooks", "show", *args, *numbers)
        assert code == 1 and "NO" in out  # nothing subscribed yet
        code, out, _ = await run(capsys, "webhooks", "set", *args, *numbers)
        assert code == 0, out
        assert graph.subscribed_apps(WABA) == [DEFAULT_APP_ID]
        code, out, _ = await run(capsys, "webhooks", "show", *args, *numbers, "--json")
        assert code == 0
        assert [d["subscribed"] for d in json.loads(out)] == [True, True]
        assert "token-a" not in out
        graph.unsubscribe(WABA)  # Meta after an hour of failed deliveries
        code, out, _ = await run(capsys, "webhooks", "show", *args, *numbers)
        assert code == 1


async def test_a_webhook_someone_else_set_is_reported_and_exits_1(
    bot: FakeBotAPI, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = config_args(tmp_path, env_with(redis_url, BOT_URL=bot.base_url))
    assert (await run(capsys, "webhooks", "set", *args, *TELEGRAM))[0] == 0
    bot.webhook(BOT_2_TOKEN).url = "https://old-bot.example.org/hook"
    code, out, _ = await run(capsys, "webhooks", "show", *args, *TELEGRAM)
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith(f"telegram:{BOT_2}"))
    assert row.split()[1:3] == ["FAILED", "NO"]
    assert "https://old-bot.example.org/hook" in out


async def test_delete_needs_yes_then_unsubscribes(
    bot: FakeBotAPI, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = config_args(tmp_path, env_with(redis_url, BOT_URL=bot.base_url))
    assert (await run(capsys, "webhooks", "set", *args, *TELEGRAM))[0] == 0
    code, _, err = await run(capsys, "webhooks", "delete", *args, *TELEGRAM)
    assert code == 2 and "--yes" in err
    assert bot.webhook(BOT_1_TOKEN).url != ""
    code, _, _ = await run(capsys, "webhooks", "delete", *args, *TELEGRAM, "--yes")
    assert code == 0
    assert bot.webhook(BOT_1_TOKEN).url == "" and bot.webhook(BOT_2_TOKEN).url == ""
    code, out, _ = await run(capsys, "webhooks", "show", *args, "--account", f"telegram:{BOT_1}")
    assert code == 1 and "no webhook set" in out


async def test_an_unreachable_provider_or_a_revoked_token_fails_clearly(
    bot: FakeBotAPI, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = config_args(tmp_path, env_with(redis_url, BOT_URL=UNREACHABLE))
    code, out, _ = await run(capsys, "webhooks", "show", *args, *TELEGRAM)
    assert code == 1
    assert f"telegram:{BOT_1}: cannot reach 127.0.0.1:9" in out
    assert "AAHtest" not in out
    revoked = FakeBotAPI([BOT_2_TOKEN])  # BOT_1's token is not this fake's: 401
    async with revoked:
        args = config_args(tmp_path, env_with(redis_url, BOT_URL=revoked.base_url))
        code, out, _ = await run(capsys, "webhooks", "set", *args, *TELEGRAM)
    assert code == 1
    assert f"telegram:{BOT_1}: Telegram 401: Unauthorized" in out
    assert "AAHtest" not in out


async def test_without_a_public_url_or_with_an_unknown_account_it_is_a_usage_error(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = config_args(tmp_path, env_with(redis_url), public_url=None)
    code, _, err = await run(capsys, "webhooks", "set", *args)
    assert code == 2 and "server.public_url is not set" in err
    args = config_args(tmp_path, env_with(redis_url))
    code, _, err = await run(capsys, "webhooks", "show", *args, "--account", "telegram:1")
    assert code == 2 and "no configured account 'telegram:1'" in err


async def test_a_provider_without_an_api_is_listed_with_where_to_point_it(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = config_args(tmp_path, env_with(redis_url))
    account = f"whatsapp:{TWILIO_A.lstrip('+')}"
    code, out, _ = await run(capsys, "webhooks", "show", *args, "--account", account)
    assert code == 0
    assert "no API" in out
    assert "point it at https://gateway.example.com/webhooks/twilio" in out  # twilio.public_url


async def test_the_scheduled_check_sets_the_gauge_and_warns_once_a_bot_is_gone(
    bot: FakeBotAPI, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    text = TEST_CONFIG.replace(
        "server: {host: 127.0.0.1, port: 0}",
        f'server: {{host: 127.0.0.1, port: 0, public_url: "{PUBLIC}", '
        "subscription_check_seconds: 60}",
    )
    settings = loads(text, {**ENV, "REDIS_URL": redis_url, "BOT_URL": bot.base_url})
    seen: dict[str, bool] = {}
    accounts = [a for a in directory_from(settings).accounts.values() if a.channel == "telegram"]
    check = SubscriptionCheck(
        lambda: settings, lambda: accounts, lambda c, a, ok: seen.__setitem__(f"{c}:{a}", ok)
    )
    bot.webhook(BOT_1_TOKEN).url = f"{PUBLIC}/webhooks/telegram/{BOT_1}"
    with caplog.at_level(logging.WARNING, logger="gateway.subscriptions"):
        await check.check()
    assert seen == {f"telegram:{BOT_1}": True, f"telegram:{BOT_2}": False}
    [warning] = [r.getMessage() for r in caplog.records if r.name == "gateway.subscriptions"]
    assert f"telegram:{BOT_2} is gone" in warning
    assert f"gateway webhooks set --account telegram:{BOT_2}" in warning


async def test_verify_fetches_the_handshake_through_the_public_url(
    aiohttp_client: Any, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway itself behind its public URL: Meta's channels answer their handshake."""
    server = TestServer(create_app(make_settings(redis_url), redis_url))
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        args = config_args(tmp_path, env_with(redis_url), public_url=base)
        meta = [a for a in ("messenger:", "instagram:", "whatsapp:")]
        code, out, _ = await run(capsys, "webhooks", "verify", *args, "--json")
        docs = json.loads(out)
        handshakes = [d for d in docs if any(d["account"].startswith(m) for m in meta)
                      and d["adapter"] != "twilio"]  # fmt: skip
        assert handshakes and all(d["ok"] and d["subscribed"] for d in handshakes), docs
        assert all("the challenge came back" in d["detail"] for d in handshakes)
        wrong = config_args(tmp_path, env_with(redis_url), public_url=base + "/elsewhere")
        code, out, _ = await run(capsys, "webhooks", "verify", *wrong, "--json")
        assert code == 1
        docs = [
            d
            for d in json.loads(out)
            if d["account"].startswith("whatsapp:") and d["adapter"] == "whatsapp"
        ]
        assert docs and not any(d["ok"] for d in docs)
        assert "not the challenge" in docs[0]["detail"]
    finally:
        await server.close()
