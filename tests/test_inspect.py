"""`gateway inspect` against a real Redis: empty, after real webhooks, a halted account, one
conversation, `--json` shapes, and a Redis that does not answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.cli import main
from router import keys
from tests.conftest import (
    NUMBER_A,
    NUMBER_B,
    TEST_CONFIG,
    UNREACHABLE,
    change,
    envelope,
    make_settings,
    text_message,
    wa_body,
    wa_headers,
)

ENV = {
    "GRAPH_URL": UNREACHABLE + "/v21.0",
    "BOT_URL": UNREACHABLE,
    "META_URL": UNREACHABLE,
    "IG_URL": UNREACHABLE,
    "TWILIO_API": UNREACHABLE,
    "SEND_WAIT_MAX": "60",
    "CLAIM_IDLE": "30",
    "OUTBOUND_ENABLED": "true",
    "TAKEOVER": "900",
    "REDIS_CLUSTER": "false",
}


def write_config(tmp_path: Path, redis_url: str, text: str = TEST_CONFIG) -> list[str]:
    """`--config` and `--env-file` arguments for a config on `redis_url`."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    env = tmp_path / "test.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in {**ENV, "REDIS_URL": redis_url}.items()))
    return ["--config", str(config), "--env-file", str(env)]


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI in-process (in a thread: it runs its own event loop)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def post_wa(client: TestClient, payload: dict[str, Any]) -> None:
    body = wa_body(payload)
    resp = await client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    assert resp.status == 200


async def test_inspect_on_an_empty_redis(
    redis: Redis, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = write_config(tmp_path, redis_url)
    code, out, _ = await run(capsys, "inspect", *args, "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == {"redis_time", "streams", "deadletters_by_reason", "accounts"}
    names = [s["stream"] for s in report["streams"]]
    assert names == [
        keys.OUTBOX,
        keys.DEADLETTER,
        "gw:inbox:sales",
        "gw:history:sales",
        "gw:outbox:sales",
        "gw:inbox:support",
        "gw:history:support",
        "gw:outbox:support",
    ]
    assert all(s["length"] == 0 and s["groups"] == [] for s in report["streams"])
    assert report["deadletters_by_reason"] == {}
    by_id = {a["account"]: a for a in report["accounts"]}
    assert by_id[NUMBER_A] == {
        "channel": "whatsapp",
        "account": NUMBER_A,
        "assistant": "support",
        "enabled": True,
        "halted": None,
        "disconnected": None,
        "mps": 20.0,
        "sent_last_second": 0,
    }
    assert by_id["100200300400700"]["enabled"] is False
    code, out, _ = await run(capsys, "inspect", *args)
    assert code == 0
    assert "STREAMS" in out and "ACCOUNTS" in out and "(none)" in out


@pytest.fixture
async def quiet_client(aiohttp_client: Any, redis: Redis, redis_url: str) -> TestClient:
    """The gateway app without reply workers (they would clear halts at their start)."""
    app = create_app(make_settings(redis_url, OUTBOUND_ENABLED="false"), redis_url)
    test_client: TestClient = await aiohttp_client(app)
    return test_client


async def test_inspect_after_webhooks_with_a_halted_number_and_one_conversation(
    quiet_client: TestClient,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = quiet_client
    contact, message = text_message("wamid.I1", "5511987650001", "oi")
    await post_wa(client, envelope(change(NUMBER_A, "15550001111", contacts=[contact],
                                          messages=[message])))  # fmt: skip
    c2, m2 = text_message("wamid.I2", "5511987650002")
    await post_wa(client, envelope(change("999000", "1555", contacts=[c2], messages=[m2]),
                                   waba="123"))  # fmt: skip
    await redis.xgroup_create("gw:inbox:support", "bot", id="0")
    await redis.xreadgroup("bot", "c1", {"gw:inbox:support": ">"}, count=1)
    await redis.hset(keys.account_state("gw:inbox:sales", "whatsapp", NUMBER_B), "halt", "190")  # type: ignore[misc]
    args = write_config(tmp_path, redis_url)
    conversation = f"whatsapp:{NUMBER_A}:5511987650001"
    code, out, _ = await run(capsys, "inspect", *args, "--json", "--conversation", conversation)
    assert code == 0
    report = json.loads(out)
    streams = {s["stream"]: s for s in report["streams"]}
    inbox = streams["gw:inbox:support"]
    assert inbox["length"] == 1
    (group,) = inbox["groups"]
    assert group["name"] == "bot" and group["pending"] == 1 and group["consumers"] == 1
    assert group["lag"] in (0, None)  # None before Redis 7
    assert group["oldest_pending_age_seconds"] >= 0
    assert streams[keys.DEADLETTER]["length"] == 1
    assert report["deadletters_by_reason"] == {"unknown_account": 1}
    halted = {a["account"]: a["halted"] for a in report["accounts"]}
    assert halted[NUMBER_B] == "190" and halted[NUMBER_A] is None
    conv = report["conversation"]
    assert conv["exists"] is True and conv["assistant"] == "support"
    assert conv["last_inbound_message_id"] == "wamid.I1"
    assert conv["window_open_until"] > report["redis_time"]
    assert conv["paused_until"] is None and conv["paused_why"] is None
    assert conv["opted_out"] is None
    assert set(conv["limiters"]) == {"account", "contact", "dispatch_log"}
    assert conv["country_blocked"]["country"] == "BR"
    await redis.hset(keys.conversation("gw:inbox:support", conversation), "h", "1")  # type: ignore[misc]
    code, out, _ = await run(capsys, "inspect", *args, "--conversation", conversation)
    assert code == 0
    assert "CONVERSATION" in out and "handoff" in out and "code 190" in out
    code, _, err = await run(capsys, "inspect", *args, "--conversation", "whatsapp:1:2")
    assert code == 2 and "not a configured account" in err


def test_inspect_exits_2_when_redis_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = write_config(tmp_path, "redis://127.0.0.1:9/0")
    assert main(["inspect", *args]) == 2
    err = capsys.readouterr().err
    assert "Redis unreachable" in err and "Traceback" not in err


def test_inspect_does_not_start_an_embedded_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = TEST_CONFIG.replace(
        'redis: {url: "${REDIS_URL}", cluster: "${REDIS_CLUSTER}"}',
        f"redis: {{embedded_dir: {tmp_path / 'r'}}}",
    )
    args = write_config(tmp_path, "unused", text)
    assert main(["inspect", *args]) == 2
    assert "embedded Redis is not running" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
