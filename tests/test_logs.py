"""Logs an operator can use (gateway/logs.py): `--log-format json` gives one JSON object per
line with the account and command a line is about, and no line of a whole run, text or
JSON, holds a configured secret. Nor does anything else that run shows: with every secret
sealed in the config (gateway/sealed.py), none of them, nor the key, is in the log, in
/metrics, in the dead letters, in `gateway inspect --json`, or in a config error."""

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

from gateway import sealed
from gateway.config import loads
from gateway.embedded import free_port
from gateway.logs import REDACTED, JsonFormatter, Redact, secret_values
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.keys import DEADLETTER
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


def sealed_config(text: str, env: dict[str, str], key: str) -> str:
    """`text` with every secret it holds replaced by its enc:v1 value under `key`."""
    keys = sealed.keyring(key, None)
    assert keys is not None
    found = {value for value in secret_values(loads(text, env)) if len(value) >= 6}
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, keys.seal(secret))
    return text


async def test_a_whole_runs_json_log_holds_no_secret(
    tmp_path: Path, redis: Redis, redis_url: str, graph: FakeGraphAPI
) -> None:
    """Two workers, JSON at DEBUG, access log on, every secret sealed in the config; webhooks
    of every kind, good and bad, the verify handshake, sends that halt a number and sends to
    an unreachable Bot API, a reload (SIGHUP) that opens a rotated token. Then every secret,
    and the key, is looked for in the whole log, /metrics, the dead letters, `gateway inspect
    --json` and the output of failed `check-config`s."""
    port = free_port()
    config = tmp_path / "config.yaml"
    plain = TEST_CONFIG.replace(
        "server: {host: 127.0.0.1, port: 0}",
        f"server: {{host: 127.0.0.1, port: {port}, access_log: true, drain_seconds: 0.2}}",
    )
    env = gateway_env(redis_url, GRAPH_URL=graph.base_url, TMPDIR=str(tmp_path))
    key = sealed.new_key()
    text = sealed_config(plain, env, key)
    config.write_text(text)
    env[sealed.KEY_ENV] = key
    secrets = [s for s in secret_values(loads(text, env)) if len(s) >= 6]
    assert len(secrets) >= 12  # every app secret, verify token, access and bot token...
    assert not any(secret in text for secret in secrets)  # all of them sealed
    rotated = "token-a-rotated-0123"
    secrets += [rotated, key, key.replace("+", "-").replace("/", "_").rstrip("=")]
    log_path = tmp_path / "gateway.log"
    proc = _start(config, env, log_path)
    shown: dict[str, str] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        await _wait_for(proc, log_path, "with 2 workers")
        graph.fail(190)  # the WhatsApp send halts its number
        async with aiohttp.ClientSession() as session:
            await _traffic(session, base, redis)
            assert len(await deliveries(redis, 2, 20)) >= 2
            config.write_text(_rotate(text, "token-a", rotated, key))
            proc.send_signal(signal.SIGHUP)  # each worker opens the new value itself
            await _wait_for(proc, log_path, f"token changed whatsapp:{NUMBER_A}", count=2)
            async with session.get(f"{base}/metrics") as r:
                assert r.status == 200
                shown["/metrics"] = await r.text()
        shown["dead letters"] = repr(await redis.xrange(DEADLETTER))
        assert "malformed_body" in shown["dead letters"]
        shown["inspect --json"] = await _cli(env, "inspect", "--config", str(config), "--json")
        await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    shown["config errors"] = await _config_errors(tmp_path, text, env)
    lines = log_path.read_text().splitlines()
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "process", "message"} <= set(d) for d in docs)
    shown["log"] = log_path.read_text()
    assert "gateway_deadletters_total" in shown["/metrics"] and NUMBER_A in shown["inspect --json"]
    leaked = [f"{secret[:3]}… in {where}" for where, out in shown.items()
              for secret in secrets if secret in out]  # fmt: skip
    assert leaked == [], "secrets shown"
    halted = [d for d in docs if "halted by provider error 190" in d["message"]]
    assert halted and halted[0]["channel"] == "whatsapp" and halted[0]["account"] == NUMBER_A
    assert any('"GET /webhooks/whatsapp?hub.mode=REDACTED&' in d["message"] for d in docs)
    assert any(d.get("reason") == "malformed_body" for d in docs)


async def _wait_for(
    proc: subprocess.Popen[bytes], log_path: Path, text: str, count: int = 1
) -> None:
    deadline = time.monotonic() + 30
    while _read(log_path).count(text) < count:
        assert proc.poll() is None and time.monotonic() < deadline, _read(log_path)
        await asyncio.sleep(0.05)


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def _rotate(text: str, old: str, new: str, key: str) -> str:
    """`text` (sealed) with the sealed value of `old` replaced by `new`, sealed."""
    keys = sealed.keyring(key, None)
    assert keys is not None
    found = [m.group(0) for m in sealed.SEALED.finditer(text) if keys.open(m.group(0)) == old]
    assert len(found) == 1
    return text.replace(found[0], keys.seal(new))


async def _cli(env: dict[str, str], *argv: str) -> str:
    """`gateway *argv`: its stdout and stderr together (exit status not checked)."""
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "gateway", *argv],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout + done.stderr


async def _config_errors(tmp_path: Path, text: str, env: dict[str, str]) -> str:
    """What `check-config` says of a config with a value altered, under a wrong key, with a
    value that opens to a placeholder, and with one that opens into a typed field."""
    keys = sealed.keyring(env[sealed.KEY_ENV], None)
    assert keys is not None
    first = next(sealed.SEALED.finditer(text)).group(0)
    cases = {
        "altered": (text.replace(first, first[:-4] + "AAAA"), env),
        "wrong key": (text, {**env, sealed.KEY_ENV: sealed.new_key()}),
        "placeholder": (_rotate(text, "token-a", "changeme", env[sealed.KEY_ENV]), env),
        "typed field": (
            text.replace("access_log: true", f"access_log: true, log_format: {first}"),
            env,
        ),
    }
    said = []
    for name, (config_text, case_env) in cases.items():
        path = tmp_path / f"bad-{name.replace(' ', '-')}.yaml"
        path.write_text(config_text)
        out = await _cli(case_env, "check-config", "--config", str(path))
        assert out.startswith("gateway: config error: ") and "Traceback" not in out, out
        said.append(out)
    return "".join(said)


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
