"""Table-driven corpus: one realistic payload per file in tests/corpus/<channel>/, posted
through the HTTP app into Redis; every stream must hold exactly the expected events (each
compared on the keys the case lists), and posting the same body again must add nothing.
docs/mapping.md is the rulebook the expectations follow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from tests.conftest import (
    INSTAGRAM_SECRET,
    MESSENGER_SECRET,
    all_streams,
    meta_headers,
    tg_headers,
    twilio_post,
    wa_body,
    wa_headers,
)

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*/*.json"))


def _case_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


async def _post(client: TestClient, case: dict[str, Any]) -> int:
    if case["channel"] == "whatsapp":
        body = wa_body(case["body"])
        resp = await client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    elif case["channel"] == "twilio":
        # `body`: the form parameters, in order (a list of pairs: a name may repeat).
        body, headers = twilio_post([(k, v) for k, v in case["body"]])
        resp = await client.post("/webhooks/twilio", data=body, headers=headers)
    elif case["channel"] in ("messenger", "instagram"):
        # Meta escapes non-ASCII as it signs (wa_body); a case may name another path (a
        # Messenger body posted to /webhooks/whatsapp lands on Messenger all the same).
        body = wa_body(case["body"])
        secret = MESSENGER_SECRET if case["channel"] == "messenger" else INSTAGRAM_SECRET
        path = case.get("path", f"/webhooks/{case['channel']}")
        resp = await client.post(path, data=body, headers=meta_headers(body, secret))
    else:
        body = json.dumps(case["body"]).encode()
        resp = await client.post(
            f"/webhooks/telegram/{case['bot_id']}", data=body, headers=tg_headers(case["bot_id"])
        )
    return resp.status


def _mismatches(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v, actual.get(k, "<missing>")) for k, v in expected.items() if actual.get(k, ...) != v
    }


LOADED = {path: json.loads(path.read_text()) for path in CASES}


@pytest.mark.parametrize("path", CASES, ids=_case_id)
async def test_corpus_case(path: Path, client: TestClient, redis: Redis) -> None:
    case = LOADED[path]
    assert await _post(client, case) == 200
    streams = await all_streams(redis)
    letters = streams.pop("gw:deadletter", [])
    expected = case.get("expect", {})
    assert sorted(streams) == sorted(k for k, v in expected.items() if v), case["description"]
    for name, events in expected.items():
        actual = streams.get(name, [])
        assert len(actual) == len(events), f"{name}: {[e.get('message_id') for e in actual]}"
        for want, got in zip(events, actual, strict=True):
            assert not _mismatches(want, got), f"{name}: {_mismatches(want, got)}"
    assert len(letters) == len(case.get("deadletter", []))
    for want, got in zip(case.get("deadletter", []), letters, strict=True):
        assert not _mismatches(want, got)
    assert await _post(client, case) == 200
    again = await all_streams(redis)
    again.pop("gw:deadletter", None)
    assert again == streams, "a redelivered body must add nothing"


def test_corpus_is_not_empty() -> None:
    assert len([c for c in CASES if c.parent.name == "whatsapp"]) >= 30
    assert len([c for c in CASES if c.parent.name == "telegram"]) >= 10
    assert len([c for c in CASES if c.parent.name == "messenger"]) >= 25
    assert len([c for c in CASES if c.parent.name == "instagram"]) >= 15
    assert len([c for c in CASES if c.parent.name == "twilio"]) >= 30


async def test_corpus_events_decode_as_typed_events(client: TestClient, redis: Redis) -> None:
    from adapters.schema import EVENT_DECODER

    for case in LOADED.values():
        await _post(client, case)
    streams = await all_streams(redis)
    streams.pop("gw:deadletter", None)
    for name in streams:
        for _id, fields in await redis.xrange(name):
            EVENT_DECODER.decode(fields[b"event"])
    assert sum(len(v) for v in streams.values()) > 60
