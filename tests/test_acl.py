"""Redis ACL users (gateway/acl.py, `gateway acl`, `redis.embedded_acl`) on a real Redis: an
assistant's user reaches only its own inbox, history and outbox, and a backend on the real
client does all it does as that user; the gateway serves webhooks and sends as its own user
with no command refused; the printed lines are stable, `--apply` sets every user on every
node; the embedded Redis starts with the users."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.cluster import RedisCluster as SyncCluster
from redis.exceptions import NoPermissionError, ResponseError

from gateway import acl
from gateway.app import OUTBOX, create_app
from gateway.config import ConfigError, loads
from gateway_client import Backend, Delivery, Message, commands
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import (
    NUMBER_A,
    TEST_CONFIG,
    change,
    cluster_mode,
    connect,
    envelope,
    gateway_env,
    make_settings,
    stream,
    text_message,
    wa_body,
    wa_headers,
)
from tests.test_cli import _embedded_config, _signed_webhook, _wait_for
from tests.test_outbound import BOT_1_TOKEN, BOT_2_TOKEN, Gateway

pytestmark = pytest.mark.cluster  # also against a Redis Cluster (--redis-cluster)

ROOT = Path(__file__).parent.parent
USERS = ["gw-gateway", "gw-assistant-sales", "gw-assistant-support"]


def run_acl(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`gateway acl` on the test config, its passwords under tmp_path."""
    config = tmp_path / "config.yaml"
    config.write_text(TEST_CONFIG.replace("redis: {", f"redis: {{acl_dir: {tmp_path / 'acl'}, "))
    return subprocess.run(
        [sys.executable, "-m", "gateway", "acl", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **gateway_env(redis_url)},
        timeout=60,
        check=False,
    )


def password(tmp_path: Path, user: str) -> str:
    return (tmp_path / "acl" / f"{user}.pass").read_text().strip()


def url_of(tmp_path: Path, redis_url: str, name: str) -> str:
    result = run_acl(tmp_path, redis_url, "--url", name)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def applied(tmp_path: Path, redis_url: str, redis: Redis) -> Iterator[Path]:
    """The users applied to the test's Redis (every node); deleted afterwards."""
    result = run_acl(tmp_path, redis_url, "--apply", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    yield tmp_path
    if cluster_mode():
        with SyncCluster.from_url(redis_url) as nodes:
            nodes.execute_command("ACL", "DELUSER", *USERS, target_nodes=SyncCluster.ALL_NODES)
    else:
        with SyncRedis.from_url(redis_url) as admin:
            admin.execute_command("ACL", "DELUSER", *USERS)


# --- what `gateway acl` prints -------------------------------------------------------------


def test_the_printed_lines_name_each_user_are_stable_and_hold_no_password(
    tmp_path: Path, redis_url: str
) -> None:
    first = run_acl(tmp_path, redis_url)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split()[2] for line in lines] == USERS
    assert all(line.startswith("ACL SETUSER ") for line in lines)
    for line, user in zip(lines, USERS, strict=True):
        secret = password(tmp_path, user)
        assert secret not in first.stdout + first.stderr
        assert f" #{acl.password_hash(secret)} " in line
        mode = (tmp_path / "acl" / f"{user}.pass").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE((tmp_path / "acl").stat().st_mode) == 0o700
    support = lines[2].split()
    assert [w for w in support if w.startswith("~")] == [
        "~gw:inbox:support",
        "~gw:history:support",
        "~gw:outbox:support",
    ]
    assert "+xadd" in support and "+del" not in support and "+keys" not in support
    assert run_acl(tmp_path, redis_url).stdout == first.stdout  # the same passwords again


def test_json_lists_each_user_as_data(tmp_path: Path, redis_url: str) -> None:
    result = run_acl(tmp_path, redis_url, "--json")
    assert result.returncode == 0, result.stderr
    users = {u["name"]: u for u in json.loads(result.stdout)["users"]}
    assert list(users) == USERS
    assert users["gw-gateway"]["keys"] == ["gw:*"] and users["gw-gateway"]["assistant"] is None
    assert users["gw-assistant-sales"]["assistant"] == "sales"
    assert users["gw-assistant-sales"]["channels"] == []
    assert "evalsha" in users["gw-gateway"]["commands"]
    assert "evalsha" not in users["gw-assistant-sales"]["commands"]
    cluster = "cluster|slots" in users["gw-gateway"]["commands"]
    assert cluster == cluster_mode()


def test_the_rules_follow_the_redis_version(tmp_path: Path, redis_url: str) -> None:
    """7.0 and 7.1 cannot name CLIENT SETINFO in a rule; 6.2 and 7.2 can."""
    settings = make_settings(redis_url)
    for version, named in (((6, 2), True), ((7, 0), False), ((7, 1), False), ((7, 2), True)):
        for user in acl.users(settings, version):
            assert ("client|setinfo" in user.commands) == named, version
    old = run_acl(tmp_path, redis_url, "--redis-version", "7.0")
    assert old.returncode == 0 and "+client|setinfo" not in old.stdout
    bad = run_acl(tmp_path, redis_url, "--redis-version", "seven")
    assert bad.returncode == 2 and "--redis-version" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_backend_url_for_each_assistant_and_none_for_a_stranger(
    tmp_path: Path, redis_url: str
) -> None:
    url = urlsplit(url_of(tmp_path, redis_url, "support"))
    assert url.username == "gw-assistant-support"
    assert unquote(url.password or "") == password(tmp_path, "gw-assistant-support")
    assert url.hostname == urlsplit(redis_url).hostname
    gateway = urlsplit(url_of(tmp_path, redis_url, "gateway"))
    assert gateway.username == "gw-gateway"
    stranger = run_acl(tmp_path, redis_url, "--url", "nobody")
    assert stranger.returncode == 2 and "nobody" in stranger.stderr
    assert "sales, support" in stranger.stderr


# --- `--apply` and what each user can do -------------------------------------------------


async def test_apply_sets_every_user_on_every_node(
    applied: Path, redis_url: str, redis: Redis
) -> None:
    again = run_acl(applied, redis_url, "--apply")
    assert again.returncode == 0, again.stdout
    for user in USERS:
        assert again.stdout.count(f" {user} ") >= 1
    nodes = redis.get_nodes() if isinstance(redis, RedisCluster) else [None]
    for node in nodes:
        on = {} if node is None else {"target_nodes": node}
        for user in USERS:
            found = await redis.execute_command("ACL GETUSER", user, **on)
            assert "on" in _texts(found["flags"]), (node, user)
            assert _texts(found["passwords"]) == [acl.password_hash(password(applied, user))]
        found = await redis.execute_command("ACL GETUSER", USERS[2], **on)
        keys = " ".join(_texts(found["keys"])).replace("~", "")  # 7: one string; 6.2: a list
        assert keys.split() == ["gw:inbox:support", "gw:history:support", "gw:outbox:support"]


async def _keyless(client: Redis, *args: str) -> Any:
    """A command that names no key, on one node of a cluster (the cluster client would try
    to find a slot in its arguments)."""
    if isinstance(client, RedisCluster):
        return await client.execute_command(*args, target_nodes=RedisCluster.RANDOM)
    return await client.execute_command(*args)


def _texts(value: Any) -> list[str]:
    items = [value] if isinstance(value, str | bytes) else list(value)
    return [v.decode() if isinstance(v, bytes) else v for v in items]


async def test_one_assistant_cannot_reach_another_assistant_s_streams(
    applied: Path, redis_url: str, redis: Redis
) -> None:
    await redis.xadd("gw:inbox:support", {"event": "{}"})
    await redis.xgroup_create("gw:inbox:support", "bot", id="0")
    sales = connect(url_of(applied, redis_url, "sales"))
    try:
        refused: list[Callable[[], Awaitable[Any]]] = [
            lambda: sales.xread({"gw:inbox:support": "0"}),
            lambda: sales.xreadgroup("bot", "c", {"gw:inbox:support": ">"}),
            lambda: sales.xrange("gw:history:support"),
            lambda: sales.xadd("gw:outbox:support", {"command": "{}"}),
            lambda: sales.xadd("gw:outbox", {"command": "{}"}),
            lambda: sales.xadd("gw:deadletter", {"event": "{}"}),
            lambda: sales.hgetall("gw:cmd:{gw:inbox:sales}:c1"),
            lambda: sales.delete("gw:inbox:sales"),
            lambda: sales.xtrim("gw:inbox:sales", maxlen=0),
            lambda: _keyless(sales, "PUBLISH", "gw:any", "x"),
            lambda: _keyless(sales, "FLUSHALL"),
            lambda: _keyless(sales, "ACL", "LIST"),
            lambda: _keyless(sales, "KEYS", "*"),
        ]
        for call in refused:
            with pytest.raises(NoPermissionError):
                await call()
        assert await sales.xadd("gw:outbox:sales", {"command": "{}"})  # its own: fine
    finally:
        await sales.aclose()
    assert await redis.xlen("gw:outbox:support") == 0 and await redis.xlen("gw:outbox") == 0
    assert await redis.xlen("gw:inbox:sales") == 0


@pytest.fixture
async def acl_gw(
    applied: Path, aiohttp_client: Any, redis: Redis, redis_url: str
) -> AsyncIterator[Gateway]:
    """The gateway with its Redis connections logged in as gw-gateway, on fake provider APIs."""
    tokens = {NUMBER_A: "token-a"}
    async with FakeGraphAPI(tokens) as graph, FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot:
        as_gateway = url_of(applied, redis_url, "gateway")
        settings = make_settings(
            as_gateway, GRAPH_URL=graph.base_url, BOT_URL=bot.base_url, OUTBOUND_ENABLED="true"
        )
        await _acl_log_reset(redis)
        app = create_app(settings, as_gateway)
        client = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, bot)


async def _acl_log_reset(redis: Redis) -> None:
    on = {"target_nodes": RedisCluster.ALL_NODES} if isinstance(redis, RedisCluster) else {}
    await redis.execute_command("ACL", "LOG", "RESET", **on)


async def _refusals(redis: Redis) -> list[Any]:
    """Every ACL LOG entry of every node: what some user was refused."""
    if not isinstance(redis, RedisCluster):
        return list(await redis.execute_command("ACL", "LOG"))
    found = await redis.execute_command("ACL", "LOG", target_nodes=RedisCluster.ALL_NODES)
    return [entry for entries in found.values() for entry in entries]


async def test_a_backend_does_all_the_client_does_as_its_own_user(
    acl_gw: Gateway, applied: Path, redis_url: str, redis: Redis
) -> None:
    """Inbox through a consumer group (create, take over, read, ack), history likewise,
    send to its own outbox, and the delivery awaited: all as gw-assistant-support, while the
    gateway reads that outbox as gw-gateway."""
    await acl_gw.tg_user_writes()
    backend = Backend.from_url(
        url_of(applied, redis_url, "support"), "support", cluster=cluster_mode()
    )
    try:
        reader = backend.inbox(group="bot", block_ms=100)
        item = await anext(reader)
        assert isinstance(item.event, Message) and item.event.conversation_id is not None
        sent = await backend.send(commands.text(item.event.conversation_id, "Olá!"))
        delivery = await backend.delivery(sent, timeout_s=20)
        assert isinstance(delivery, Delivery)
        assert (delivery.command_id, delivery.outcome) == (sent.command_id, "sent")
        assert acl_gw.bot.requests[-1].params["text"] == "Olá!"
        await reader.aclose()  # type: ignore[attr-defined]
        past = dict((await stream(redis, "gw:inbox:support"))[0], kind="history")
        for _ in range(2):
            await redis.xadd("gw:history:support", {"event": json.dumps(past)})
        history = backend.history(group="bot", block_ms=100)
        assert (await anext(history)).fields["kind"] == "history"
        await anext(history)  # the first is acknowledged once its loop body is done
        assert (await redis.xpending("gw:history:support", "bot"))["pending"] == 1
        await history.aclose()  # type: ignore[attr-defined]
    finally:
        await backend.aclose()
    assert await _refusals(redis) == []


async def test_the_gateway_serves_and_sends_as_its_own_user(acl_gw: Gateway, redis: Redis) -> None:
    """Webhooks (a redelivery, a malformed body dead-lettered), a WhatsApp send through the
    Lua scripts and the limiter, readiness with its memory report: no command refused."""
    c, m = text_message(f"wamid.acl.{time.time_ns()}", "5511987650002")
    body = wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[c], messages=[m])))
    for _ in range(2):  # the second is a redelivery: published once
        resp = await acl_gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
        assert resp.status == 200
    assert len(await stream(redis, "gw:inbox:support")) == 1
    body = wa_body({"object": "whatsapp_business_account", "entry": [{"changes": "bad"}]})
    bad = await acl_gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    assert bad.status == 200
    assert await redis.xlen("gw:deadletter") == 1
    await redis.xadd("gw:outbox:support", {"command": json.dumps({
        "schema": 1, "command_id": "c2", "type": "text", "text": "own outbox",
        "conversation_id": f"whatsapp:{NUMBER_A}:5511987650002"})})  # fmt: skip
    await acl_gw.run()
    assert (await acl_gw.delivery("c2"))["outcome"] == "sent"
    ready = await acl_gw.client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert await _refusals(redis) == []


# --- the embedded Redis with its users ---------------------------------------------------


@pytest.mark.skipif(cluster_mode(), reason="the embedded Redis is one node")
def test_the_embedded_redis_starts_with_the_users(tmp_path: Path) -> None:
    path, port = _embedded_config(tmp_path, drain_s=0)
    text = path.read_text().replace(
        "embedded_port:", f"embedded_acl: true\n  acl_dir: {tmp_path / 'acl'}\n  embedded_port:"
    )
    path.write_text(text)
    env_file = str(ROOT / "demo.env")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path), "--env-file", env_file],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        assert _signed_webhook(port) == 200
        args = ["acl", "--config", str(path), "--env-file", env_file, "--url", "support"]
        backend_url = subprocess.run(
            [sys.executable, "-m", "gateway", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
            timeout=60,
        ).stdout.strip()
        asyncio.run(_embedded_checks(tmp_path, backend_url))
        inspect = [sys.executable, "-m", "gateway", "inspect", "--config", str(path)]
        tools = subprocess.run(  # the operator's tools still log in as the default user
            [*inspect, "--env-file", env_file], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert tools.returncode == 0 and "gw:inbox:support" in tools.stdout, tools.stderr
    finally:
        gateway.terminate()
        assert gateway.wait(timeout=30) == 0
    conf = (tmp_path / "redis" / "redis.conf").read_text()
    assert 'user "gw-assistant-support"' in conf and 'rename-command "CONFIG"' in conf
    assert password(tmp_path, "gw-assistant-support") not in conf
    assert (
        password(tmp_path, "gw-gateway")
        not in (gateway.stderr.read() if gateway.stderr else b"").decode()
    )


async def _embedded_checks(tmp_path: Path, backend_url: str) -> None:
    backend = Backend.from_url(backend_url, "support")
    try:
        item = await anext(backend.inbox(group="bot", block_ms=100))
        assert isinstance(item.event, Message) and item.event.text == "hi"
        with pytest.raises(NoPermissionError):
            await backend.redis.xadd("gw:outbox", {"command": "{}"})
    finally:
        await backend.aclose()
    secret = (tmp_path / "redis" / "redis.pass").read_text().strip()
    admin = Redis(unix_socket_path=str(tmp_path / "redis" / "redis.sock"), password=secret)
    try:
        clients = await admin.client_list()
        assert {c["user"] for c in clients} >= {"gw-gateway", "default"}
        with pytest.raises(ResponseError, match="unknown command"):
            await admin.execute_command("CONFIG", "GET", "dir")
    finally:
        await admin.aclose()


def test_embedded_acl_with_a_redis_url_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^redis: embedded_acl: only for the embedded"):
        loads(
            TEST_CONFIG.replace("redis: {", "redis: {embedded_acl: true, "),
            gateway_env("redis://h:1/0"),
        )


# --- parsers -----------------------------------------------------------------------------


@given(st.text(max_size=20))
def test_a_version_parses_or_raises_value_error(text: str) -> None:
    try:
        major, minor = acl.parse_version(text)
    except ValueError:
        return
    first, _, rest = text.strip().partition(".")
    assert (major, minor) == (int(first), int(rest.partition(".")[0] or "0"))


@given(
    st.text(min_size=1, max_size=30),
    st.text(min_size=1, max_size=60),
    st.sampled_from(
        ["redis://:old@10.0.0.1:6379/0", "rediss://u:p@h:7000/0", "unix:///tmp/r.sock?db=0"]
    ),
)
def test_with_user_round_trips_any_name_and_password(user: str, secret: str, url: str) -> None:
    parts = urlsplit(acl.with_user(url, user, secret))
    assert unquote(parts.username or "") == user and unquote(parts.password or "") == secret
    before = urlsplit(url)
    assert (parts.scheme, parts.path, parts.query) == (before.scheme, before.path, before.query)
    assert parts.hostname == before.hostname and "old" not in parts.netloc
