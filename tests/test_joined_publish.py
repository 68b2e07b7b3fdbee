"""Webhooks started in one event-loop iteration share one publish.lua call (`InboundRouter.start`
and `PipeScript.join`). What the platform and the assistants see must not change: each event
published once and in order, a duplicate answered as one, each webhook's own outcome."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec
import pytest
from redis.asyncio import Redis

from adapters import whatsapp
from gateway.app import directory_from
from router.inbound import InboundRouter
from router.outcome import Tally
from router.runner import Flight
from router.scriptpipe import ScriptPipe
from tests.conftest import NUMBER_A, change, envelope, make_settings, stream, text_message, wa_body

TEXT = ("message", "text")


def _webhook(wamid: str, sender: str) -> bytes:
    contact, message = text_message(wamid, sender=sender, ts=int(time.time()))
    return wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[contact],
                                   messages=[message])))  # fmt: skip


@pytest.fixture
async def router(redis: Redis, redis_url: str) -> AsyncIterator[InboundRouter]:
    settings = make_settings(redis_url)
    pipe = ScriptPipe(redis_url, 2.0)
    yield InboundRouter(redis, directory_from(settings), settings.router, settings.policy, pipe)
    await pipe.aclose()


def _start(router: InboundRouter, body: bytes) -> Flight:
    started = router.start("whatsapp", whatsapp.parse(body, int(time.time())), body, 0)
    assert isinstance(started, Flight), "a one-call webhook on an open connection is a Flight"
    return started


async def _tally(flight: Flight) -> Tally:
    await flight.future
    return flight.tally()


async def test_webhooks_started_together_share_one_call_and_each_gets_its_own_outcome(
    router: InboundRouter, redis: Redis
) -> None:
    senders = [f"55119000000{i:02d}" for i in range(6)]
    first = _webhook("wamid.J0", senders[0])
    await router.publish("whatsapp", whatsapp.parse(first, 0), first, 0)  # opens the connection
    await redis.config_resetstat()
    bodies = [_webhook(f"wamid.J{i + 1}", s) for i, s in enumerate(senders)]
    bodies += [bodies[2], first]  # Meta's retries: one in this call
    flights = [_start(router, body) for body in bodies]  # one iteration: nothing awaited yet
    tallies = [await _tally(f) for f in flights]

    stats = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1  # eight webhooks, one script call
    assert [t.published for t in tallies] == [{TEXT: 1}] * 6 + [{}, {}]
    assert [t.duplicates for t in tallies] == [{}] * 6 + [{"message": 1}] * 2
    events = await stream(redis, "gw:inbox:support")
    assert [e["message_id"] for e in events] == [f"wamid.J{i}" for i in range(7)]
    # each contact's 24-hour window opened by its own message
    for sender, event in zip(senders, events[1:], strict=True):
        conversation = await redis.hgetall(
            f"gw:cv:{{gw:inbox:support}}:whatsapp:{NUMBER_A}:{sender}"
        )
        assert conversation[b"m"] == event["message_id"].encode()


async def test_an_event_without_a_mark_is_never_joined(router: InboundRouter, redis: Redis) -> None:
    """P (no dedup mark) would publish twice if a failed joined call were retried alone."""
    first = _webhook("wamid.P0", "5511900000000")
    await router.publish("whatsapp", whatsapp.parse(first, 0), first, 0)  # opens the connection
    await redis.config_resetstat()
    flights = []
    for i in range(3):
        body = _webhook(f"wamid.P{i + 1}", "5511900000000")
        parsed = whatsapp.parse(body, int(time.time()))
        parsed.events = [msgspec.structs.replace(r, dedup=None) for r in parsed.events]
        started = router.start("whatsapp", parsed, body, 0)
        assert isinstance(started, Flight)
        flights.append(started)
    assert [(await _tally(f)).published for f in flights] == [{TEXT: 1}] * 3
    stats = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 3  # one call each
