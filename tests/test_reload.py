"""Reload without a restart (gateway/reload.py): a running gateway reads its config again on
SIGHUP. A number added is served, a token rotated is used for the next send, a bot disabled
refuses its commands, a rotated app secret keeps verifying beside the new one for the overlap,
and a bad config is refused while the running one stays."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import OUTBOX, create_app
from gateway.embedded import free_port
from gateway.reload import ConfigSource, reload
from gateway.state import STATE
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import (
    APP_SECRET,
    BOT_2,
    NUMBER_A,
    TEST_CONFIG,
    change,
    envelope,
    gateway_env,
    stream,
    text_message,
    wa_body,
    wa_headers,
)

NUMBER_X = "100200300400900"
WABA_X = "300400500600700"
NEW_SECRET = "rotated-app-secret-2026"


def reconfigured(text: str = TEST_CONFIG, **server: str) -> str:
    """The test config with a number added, NUMBER_A's token rotated, BOT_2 disabled and
    the WhatsApp app secret rotated (and `server` keys added)."""
    new_number = (
        f'    - {{phone_number_id: "{NUMBER_X}", display_phone_number: "+15550002222", '
        f'waba_id: "{WABA_X}", mode: cloud_api, assistant: support, access_token: token-x}}\n'
    )
    text = text.replace("telegram:\n", new_number + "telegram:\n", 1)
    text = text.replace("access_token: token-a}", "access_token: token-a2}", 1)
    text = text.replace(
        "tg-secret_2,\n       assistant: sales}",
        "tg-secret_2,\n       assistant: sales, enabled: false}",
        1,
    )
    text = text.replace(f"app_secret: {APP_SECRET}", f"app_secret: {NEW_SECRET}", 1)
    return with_server(text, **server)


def with_server(text: str, **server: str) -> str:
    """`text` with these keys added to its `server:` section."""
    if not server:
        return text
    extra = ", ".join(f"{k}: {v}" for k, v in server.items())
    head = "server: {host: 127.0.0.1, port: 0"
    return text.replace(head, f"{head}, {extra}", 1)


def webhook(number: str, wamid: str) -> bytes:
    contact, message = text_message(wamid, "5511987650001", "oi")
    return wa_body(envelope(change(number, "15550002222", contacts=[contact], messages=[message])))


class Running:
    """The gateway app in this process, with its config in a file."""

    def __init__(self, tmp: Path, client: TestClient, redis: Redis, graph: FakeGraphAPI) -> None:
        self.config = tmp / "config.yaml"
        self.source = ConfigSource(str(tmp / "config.yaml"), str(tmp / "test.env"))
        self.client, self.redis, self.graph = client, redis, graph

    async def post(self, body: bytes, secret: str) -> int:
        resp = await self.client.post(
            "/webhooks/whatsapp", data=body, headers=wa_headers(body, secret)
        )
        return resp.status

    async def command(self, command_id: str, conversation: str) -> dict[str, Any]:
        command = {
            "command_id": command_id,
            "conversation_id": conversation,
            "type": "text",
            "text": "x",
        }
        await self.redis.xadd("gw:outbox", {"command": json.dumps(command)})
        await self.client.app[OUTBOX].drain()
        inboxes = [
            *await stream(self.redis, "gw:inbox:support"),
            *await stream(self.redis, "gw:inbox:sales"),
        ]
        [found] = [e for e in inboxes if e.get("command_id") == command_id]
        return found


async def start(aiohttp_client: Any, redis_url: str, tmp: Path, text: str, graph: FakeGraphAPI,
                redis: Redis) -> Running:  # fmt: skip
    env = gateway_env(redis_url, GRAPH_URL=graph.base_url, OUTBOUND_ENABLED="false")
    (tmp / "test.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    (tmp / "config.yaml").write_text(text)
    source = ConfigSource(str(tmp / "config.yaml"), str(tmp / "test.env"))
    client = await aiohttp_client(create_app(source.load(), redis_url))
    return Running(tmp, client, redis, graph)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphAPI]:
    async with FakeGraphAPI({NUMBER_A: "token-a2", NUMBER_X: "token-x"}) as fake:
        yield fake


@pytest.fixture
async def running(
    aiohttp_client: Any, redis: Redis, redis_url: str, tmp_path: Path, graph: FakeGraphAPI
) -> Running:
    return await start(aiohttp_client, redis_url, tmp_path, TEST_CONFIG, graph, redis)


async def test_a_reload_serves_the_new_accounts_tokens_and_secrets(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    assert await running.post(webhook(NUMBER_X, "wamid.R1"), APP_SECRET) == 200
    letters = await running.redis.xrange("gw:deadletter")
    assert len(letters) == 1  # unknown_account: not configured yet

    running.config.write_text(reconfigured())
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        assert await reload(running.client.app, running.source)
    [line] = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert f"added whatsapp:{NUMBER_X}" in line
    assert f"disabled telegram:{BOT_2}" in line
    assert f"token changed whatsapp:{NUMBER_A}" in line

    # The new number's webhooks are published; both app secrets verify during the overlap.
    assert await running.post(webhook(NUMBER_X, "wamid.R2"), NEW_SECRET) == 200
    assert await running.post(webhook(NUMBER_X, "wamid.R3"), APP_SECRET) == 200
    assert await running.post(webhook(NUMBER_X, "wamid.R4"), "a-wrong-secret") == 401
    published = [e["message_id"] for e in await stream(running.redis, "gw:inbox:support")]
    assert {"wamid.R2", "wamid.R3"} <= set(published)
    assert len(await running.redis.xrange("gw:deadletter")) == 1

    # The next send uses the rotated token; the disabled bot refuses its commands.
    sent = await running.command("r-1", f"whatsapp:{NUMBER_A}:5511987650001")
    assert sent["outcome"] == "rejected" and sent["reason"] == "window_closed"  # no window yet
    assert await running.post(webhook(NUMBER_A, "wamid.R5"), NEW_SECRET) == 200
    sent = await running.command("r-2", f"whatsapp:{NUMBER_A}:5511987650001")
    assert sent["outcome"] == "sent", sent
    assert running.graph.requests[-1].token == "token-a2"
    refused = await running.command("r-3", f"telegram:{BOT_2}:42")
    assert (refused["outcome"], refused["reason"]) == ("rejected", "account_inactive")


async def test_without_an_overlap_the_old_secret_stops_at_once(
    aiohttp_client: Any, redis: Redis, redis_url: str, tmp_path: Path, graph: FakeGraphAPI
) -> None:
    """`server.secret_overlap_seconds` is the running gateway's (a restart-only section)."""
    text = with_server(TEST_CONFIG, secret_overlap_seconds="0")
    running = await start(aiohttp_client, redis_url, tmp_path, text, graph, redis)
    running.config.write_text(reconfigured(text))
    assert await reload(running.client.app, running.source)
    assert await running.post(webhook(NUMBER_A, "wamid.O1"), APP_SECRET) == 401
    assert await running.post(webhook(NUMBER_A, "wamid.O2"), NEW_SECRET) == 200


async def test_a_bad_config_is_refused_and_the_running_one_stays(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    running.config.write_text(TEST_CONFIG.replace("port: 0}", "port: eighty}"))
    with caplog.at_level(logging.ERROR, logger="gateway.reload"):
        assert not await reload(running.client.app, running.source)
    [error] = [r.getMessage() for r in caplog.records if r.name == "gateway.reload"]
    assert "reload refused, the running config stays" in error and "server.port" in error
    assert await running.post(webhook(NUMBER_A, "wamid.B1"), APP_SECRET) == 200


async def test_sections_built_into_running_objects_wait_for_a_restart(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    running.config.write_text(reconfigured(drain_seconds="7"))
    with caplog.at_level(logging.WARNING, logger="gateway.reload"):
        assert await reload(running.client.app, running.source)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "gateway.reload"]
    assert "server changed, which takes effect at the next restart" in warning
    state = running.client.app[STATE]
    assert state.settings.server.drain_seconds != 7
    assert state.directory.get("whatsapp", NUMBER_X) is not None  # the rest applied


# --- a running gateway with two workers ---------------------------------------------------------


async def _deliveries(redis: Redis, wanted: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        events = [*await stream(redis, "gw:inbox:support"), *await stream(redis, "gw:inbox:sales")]
        found = {e["command_id"]: e for e in events if e.get("command_id") in wanted}
        if found.keys() == wanted or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


def _reload(config: Path, env: dict[str, str]) -> tuple[int, str]:
    """`gateway reload --config ...`, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "reload", "--config", str(config)],
        cwd=Path(__file__).parent.parent, env={**os.environ, **env},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode, done.stderr


def _start(config: Path, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--workers", "2"],
            cwd=Path(__file__).parent.parent, env={**os.environ, **env}, stdout=log, stderr=log,
        )  # fmt: skip


async def test_sighup_reloads_every_worker_and_drops_nothing(
    tmp_path: Path, redis: Redis, redis_url: str
) -> None:
    """`gateway serve --workers 2`: a number is added, a token rotated, a bot disabled, then
    `gateway reload`; webhooks keep coming on fresh connections (so both workers take them)
    before, during and after, and every one is answered 200 and published once."""
    port = free_port()
    pid_file = tmp_path / "gateway.pid"
    server = f'server: {{host: 127.0.0.1, port: {port}, drain_seconds: 0.2, pid_file: "{pid_file}"'
    base_text = TEST_CONFIG.replace("server: {host: 127.0.0.1, port: 0", server, 1)
    config = tmp_path / "config.yaml"
    config.write_text(base_text)
    async with FakeGraphAPI({NUMBER_A: "token-a2", NUMBER_X: "token-x"}) as graph:
        env = gateway_env(redis_url, GRAPH_URL=graph.base_url, TMPDIR=str(tmp_path))
        log_path = tmp_path / "gateway.log"
        proc = _start(config, env, log_path)
        try:
            deadline = time.monotonic() + 30
            while "with 2 workers" not in log_path.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.05)
            assert pid_file.read_text().strip() == str(proc.pid)
            url = f"http://127.0.0.1:{port}/webhooks/whatsapp"
            statuses: list[int] = []
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def post(number: str, wamid: str, secret: str) -> int:
                    body = webhook(number, wamid)
                    async with session.post(url, data=body, headers=wa_headers(body, secret)) as r:
                        return r.status

                for i in range(10):
                    statuses.append(await post(NUMBER_A, f"wamid.W.before.{i}", APP_SECRET))
                config.write_text(reconfigured(base_text))
                code, err = await asyncio.to_thread(_reload, config, env)
                assert code == 0, err
                # Both workers have reloaded once each logged its audit line.
                deadline = time.monotonic() + 20
                while log_path.read_text(errors="replace").count("reload: ") < 2:
                    statuses.append(
                        await post(NUMBER_A, f"wamid.W.during.{time.time_ns()}", APP_SECRET)
                    )
                    assert time.monotonic() < deadline, log_path.read_text()
                for i in range(20):
                    statuses.append(await post(NUMBER_X, f"wamid.W.new.{i}", NEW_SECRET))
                    statuses.append(await post(NUMBER_A, f"wamid.W.old.{i}", APP_SECRET))
            assert set(statuses) == {200}
            published = [e["message_id"] for e in await stream(redis, "gw:inbox:support")]
            assert len(published) == len(set(published)) == len(statuses)
            assert all(f"wamid.W.new.{i}" in published for i in range(20))
            assert await redis.xlen("gw:deadletter") == 0
            text = log_path.read_text()
            assert text.count(f"added whatsapp:{NUMBER_X}") == 2  # one audit line per worker
            assert text.count(f"disabled telegram:{BOT_2}") == 2
            # The rotated token sends; the disabled bot refuses (either worker takes them).
            for command_id, conversation in (
                ("w-send", f"whatsapp:{NUMBER_A}:5511987650001"),
                ("w-bot", f"telegram:{BOT_2}:42"),
            ):
                command = {"command_id": command_id, "conversation_id": conversation,
                           "type": "text", "text": "x"}  # fmt: skip
                await redis.xadd("gw:outbox", {"command": json.dumps(command)})
            deliveries = await _deliveries(redis, {"w-send", "w-bot"})
            assert deliveries["w-send"]["outcome"] == "sent", deliveries
            assert graph.requests[-1].token == "token-a2"
            assert (deliveries["w-bot"]["outcome"], deliveries["w-bot"]["reason"]) == (
                "rejected",
                "account_inactive",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert not pid_file.exists()
