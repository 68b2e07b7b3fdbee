"""Logs an operator can use (gateway/logs.py): `--log-format json` gives one JSON object per
line with the account and command a line is about, and no line of a whole run, text or
JSON, holds a configured secret."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gateway.config import loads
from gateway.embedded import free_port
from gateway.logs import REDACTED, JsonFormatter, Redact, secret_values
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import (
    BOT_1,
    NUMBER_A,
    TEST_CONFIG,
    TWILIO_A,
    VERIFY_TOKEN,
    change,
    envelope,
    gateway_env,
    text_message,
    tg_headers,
    twilio_post,
    wa_body,
    wa_headers,
)
from tests.test_multiprocess import deliveries

ROOT = Path(__file__).parent.parent


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("gateway.test", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_json_line_has_the_fields_of_what_it_is_about() -> None:
    line = JsonFormatter().format(
        record("command %s ends unsent (%s)", "c-1", "why", command_id="c-1", channel="whatsapp")
    )
    doc = json.loads(line)
    assert doc["message"] == "command c-1 ends unsent (why)"
    assert (doc["level"], doc["logger"], doc["command_id"], doc["channel"]) == (
        "WARNING",
        "gateway.test",
        "c-1",
        "whatsapp",
    )
    assert doc["time"].endswith("Z") and "account" not in doc  # absent, not null


def test_secrets_are_taken_out_of_messages_and_tracebacks() -> None:
    redact = Redact()
    redact.add(["s3cret-token-123", "s3cret-token-123-longer", "x"])
    rec = record("token %s and %s and x", "s3cret-token-123-longer", "s3cret-token-123")
    assert redact.filter(rec)
    assert rec.getMessage() == f"token {REDACTED} and {REDACTED} and x"  # "x": too short
    try:
        raise ValueError("bad s3cret-token-123")
    except ValueError:
        rec = record("failed")
        rec.exc_info = sys.exc_info()
    redact.filter(rec)
    doc = json.loads(JsonFormatter().format(rec))
    assert "s3cret" not in json.dumps(doc) and REDACTED in doc["exception"]
    broken = record("%d", "not a number")  # a bad log call: its arguments are dropped
    redact.filter(broken)
    assert broken.getMessage() == "(arguments dropped) %d"


# --- a whole run -------------------------------------------------------------------------------


@pytest.fixture
async def graph() -> FakeGraphAPI:
    async with FakeGraphAPI({NUMBER_A: "token-a"}) as fake:
        yield fake  # type: ignore[misc]


async def test_a_whole_runs_json_log_holds_no_secret(
    tmp_path: Path, redis: Redis, redis_url: str, graph: FakeGraphAPI
) -> None:
    """Two workers, JSON at DEBUG, access log on; webhooks of every kind, good and bad, the
    verify handshake, sends that halt a number and sends to an unreachable Bot API. Then
    every configured secret is looked for in the whole log."""
    port = free_port()
    config = tmp_path / "config.yaml"
    text = TEST_CONFIG.replace(
        "server: {host: 127.0.0.1, port: 0}",
        f"server: {{host: 127.0.0.1, port: {port}, access_log: true, drain_seconds: 0.2}}",
    )
    config.write_text(text)
    env = gateway_env(redis_url, GRAPH_URL=graph.base_url, TMPDIR=str(tmp_path))
    secrets = [s for s in secret_values(loads(text, env)) if len(s) >= 6]
    assert len(secrets) >= 12  # every app secret, verify token, access and bot token...
    log_path = tmp_path / "gateway.log"
    proc = _start(config, env, log_path)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while "with 2 workers" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.05)
        graph.fail(190)  # the WhatsApp send halts its number
        async with aiohttp.ClientSession() as session:
            await _traffic(session, base, redis)
        assert len(await deliveries(redis, 2, 20)) >= 2
        await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    lines = log_path.read_text().splitlines()
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "process", "message"} <= set(d) for d in docs)
    whole = log_path.read_text()
    leaked = [f"{secret[:3]}…" for secret in secrets if secret in whole]
    assert leaked == [], "configured secrets in the log"
    halted = [d for d in docs if "halted by provider error 190" in d["message"]]
    assert halted and halted[0]["channel"] == "whatsapp" and halted[0]["account"] == NUMBER_A
    assert any('"GET /webhooks/whatsapp?hub.mode=REDACTED&' in d["message"] for d in docs)
    assert any(d.get("reason") == "malformed_body" for d in docs)


def _start(config: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`gateway serve` with two workers, JSON logs at DEBUG, its output in `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--log-format", "json", "--log-level", "DEBUG",
             "serve", "--config", str(config), "--workers", "2"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log,
        )  # fmt: skip


async def _traffic(session: aiohttp.ClientSession, base: str, redis: Redis) -> None:
    contact, message = text_message(f"wamid.log.{time.time_ns()}", "5511987650000")
    body = wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[contact],
                                   messages=[message])))  # fmt: skip
    for headers, want in ((wa_headers(body), 200), (wa_headers(body, "wrong-secret"), 401)):
        async with session.post(f"{base}/webhooks/whatsapp", data=body, headers=headers) as r:
            assert r.status == want
    garbage = b'{"object": "whatsapp_business_account", "entry": 5}'
    async with session.post(
        f"{base}/webhooks/whatsapp", data=garbage, headers=wa_headers(garbage)
    ) as r:
        assert r.status == 200  # dead-lettered
    for token in (VERIFY_TOKEN, "not-the-token"):
        query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "42"}
        async with session.get(f"{base}/webhooks/whatsapp", params=query) as r:
            assert r.status in (200, 403)
    update = {"update_id": 1, "message": {"message_id": 1, "date": int(time.time()), "text": "oi",
              "chat": {"id": 5, "type": "private"}, "from": {"id": 5, "is_bot": False,
                                                             "first_name": "A"}}}  # fmt: skip
    for headers in (tg_headers(), {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
        async with session.post(f"{base}/webhooks/telegram/{BOT_1}", json=update,
                                headers=headers) as r:  # fmt: skip
            assert r.status in (200, 401)
    form, headers = twilio_post({"MessageSid": "SM" + "1" * 32, "From": "whatsapp:+5511987650000",
                                 "To": f"whatsapp:{TWILIO_A}", "Body": "oi"})  # fmt: skip
    async with session.post(f"{base}/webhooks/twilio", data=form, headers=headers) as r:
        assert r.status == 200
    commands = [
        {"command_id": "log-wa", "conversation_id": f"whatsapp:{NUMBER_A}:5511987650000",
         "type": "text", "text": "oi"},
        {"command_id": "log-tg", "conversation_id": f"telegram:{BOT_1}:5", "type": "text",
         "text": "oi"},
    ]  # fmt: skip
    for command in commands:
        await redis.xadd("gw:outbox", {"command": json.dumps(command)})
