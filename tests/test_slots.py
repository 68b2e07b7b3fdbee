"""Every script call names keys of one Redis Cluster slot, and so does every other command
with several keys: checked on what a real (single) Redis receives, through MONITOR, while
every corpus webhook and every outbound path goes through the gateway.

A cluster refuses such a call (CROSSSLOT); this check needs no cluster and names the call.
`pytest --redis-cluster` runs the whole inbound and outbound suites on a real cluster too.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from gateway.app import create_app
from gateway.state import OUTBOX
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.scripts import source
from tests.conftest import NUMBER_A, make_settings
from tests.test_coexistence import echo, history, number_change, post, thread
from tests.test_corpus import LOADED, _post
from tests.test_inbound_http import (
    every_stream_at_once,
    hidden_numbers_of_two_assistants,
    post_wa,
)
from tests.test_outbound import (
    BOT_1_TOKEN,
    BOT_2_TOKEN,
    BR_CONTACT,
    TG_CHAT,
    Gateway,
    post_account_update,
    tg,
    wa,
)

LUA = Path(__file__).parent.parent / "router" / "lua"
SCRIPTS = {
    hashlib.sha1(source(p.stem).encode()).hexdigest(): p.stem  # noqa: S324
    for p in LUA.glob("*.lua")
}
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_END = "slot-check-end"


class Monitor:
    """Every command one Redis receives while it runs, as argument lists (MONITOR)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.commands: list[list[bytes]] = []

    async def __aenter__(self) -> Monitor:
        self._monitor = self._redis.monitor()
        await self._monitor.__aenter__()
        self._task = asyncio.create_task(self._read(), name="monitor")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._redis.echo(_END)
        await asyncio.wait_for(self._task, timeout=10)
        await self._monitor.__aexit__()

    async def _read(self) -> None:
        assert self._monitor.connection is not None
        while True:
            line: bytes = await self._monitor.connection.read_response()
            client, _, command = line.partition(b"] ")  # `<time> [<db> <client>] "arg" ...`
            if client.endswith(b" lua"):
                continue  # run inside a script: the script's KEYS are what counts
            args = [_unescape(a) for a in _ARG.findall(command)]
            if args[:2] == [b"ECHO", _END.encode()]:
                return
            self.commands.append(args)


def _unescape(arg: bytes) -> bytes:
    """MONITOR prints arguments as C-escaped strings; back to the bytes that were sent."""
    return arg.decode("latin-1").encode("latin-1").decode("unicode_escape").encode("latin-1")


async def keys_of(redis: Redis, args: list[bytes]) -> list[bytes]:
    name = args[0].upper()
    if name in (b"EVALSHA", b"EVAL"):
        return args[3 : 3 + int(args[2])]
    try:
        found: list[bytes | str] = await redis.command_getkeys(*args)
    except ResponseError:
        return []  # a command without keys
    return [k if isinstance(k, bytes) else k.encode() for k in found]


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    tokens = {NUMBER_A: "token-a"}
    async with FakeGraphAPI(tokens) as graph, FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot:
        settings = make_settings(
            redis_url,
            GRAPH_URL=graph.base_url,
            BOT_URL=bot.base_url,
            OUTBOUND_ENABLED="false",
            SEND_WAIT_MAX="5",
            TAKEOVER="1",
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, bot)


async def every_inbound_path(gw: Gateway) -> None:
    for case in LOADED.values():
        assert await _post(gw.client, case) == 200
    await post_account_update(gw, "PARTNER_ADDED", int(time.time()) + 1)  # the corpus removed it
    for payload in [every_stream_at_once(int(time.time())), *hidden_numbers_of_two_assistants()]:
        assert await post_wa(gw.client, payload) == 200
    await gw.contact_writes(contact="14155550001")
    await post(gw, number_change("14155550001", "14155550002", "wamid.sys.slots"))
    await gw.contact_writes(contact="14155550002")
    await post(gw, echo("wamid.echo.slots"))
    await post(gw, history([thread(BR_CONTACT, 3)]))


async def every_outbound_path(gw: Gateway) -> None:
    await asyncio.sleep(1.1)  # the echo's takeover (1 s here) is over
    await gw.contact_writes()
    await gw.tg_user_writes()
    gw.graph.fail(131056, recipient=BR_CONTACT)  # a pair hold, then a retry
    gw.bot.fail(429, retry_after=1, chat_id=TG_CHAT)  # a chat hold
    await gw.command("sent", wa(), text="hello")
    await gw.command("sent", wa(), text="hello")  # a duplicate command_id
    await gw.command("tg", tg(), text="hi")
    await gw.command("pause", wa(), type="handoff")
    await gw.command("paused", wa(), text="not now")
    await gw.command("resume", wa(), type="handback")
    await gw.command("moved", wa("14155550001"), text="to the new number")
    await gw.command("lost", f"whatsapp:{NUMBER_A}", text="no contact")
    await gw.command("closed", wa("14155559999"), text="window closed")
    await gw.run()


async def test_every_call_stays_in_one_slot(gw: Gateway, redis: Redis) -> None:
    async with Monitor(redis) as seen:
        await every_inbound_path(gw)
        await every_outbound_path(gw)
    ends = {(d["command_id"], d["outcome"], d["reason"]) for d in await gw.deliveries()}
    assert ends >= {  # the paths really ran
        ("sent", "sent", None),
        ("tg", "sent", None),
        ("paused", "rejected", "human_active"),
        ("moved", "sent", None),
        ("closed", "rejected", "window_closed"),
    }
    scripts = {SCRIPTS.get(c[1].decode(), "?") for c in seen.commands if c[0] == b"EVALSHA"}
    assert scripts >= {"publish", "claim", "policy", "presend", "finish", "hold"}
    crossing = []
    for args in seen.commands:
        names = await keys_of(redis, args)
        if len({key_slot(k) for k in names}) > 1:
            script = SCRIPTS.get(args[1].decode(), "") if args[0] == b"EVALSHA" else ""
            crossing.append(f"{args[0].decode()} {script} {b' '.join(names).decode()}")
    assert crossing == []
