"""`gateway deadletters` against a real Redis: list and filters, show, replay after the
config gained an account (once only), a malformed body that stays, a re-queued command,
and drop behind --yes."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from router import keys
from tests.conftest import (
    BOT_1,
    NUMBER_A,
    TEST_CONFIG,
    change,
    envelope,
    stream,
    text_message,
    tg_headers,
)
from tests.test_inspect import post_wa, run, write_config

NUMBER_X = "100200300400900"
WABA_X = "300400500600700"
WITH_X = TEST_CONFIG.replace(
    "telegram:\n",
    f'    - {{phone_number_id: "{NUMBER_X}", display_phone_number: "+15550002222", '
    f'waba_id: "{WABA_X}", mode: cloud_api, assistant: support, access_token: token-x}}\n'
    "telegram:\n",
    1,
)


def unknown_number_webhook() -> dict[str, Any]:
    contact, message = text_message("wamid.X1", "5511987650009", "hello")
    return envelope(
        change(NUMBER_X, "15550002222", contacts=[contact], messages=[message]), waba=WABA_X
    )


async def add_letter(redis: Redis, **letter: Any) -> str:
    entry = {"schema": 1, "channel": None, "received_at": 0, "detail": None, **letter}
    entry_id: bytes = await redis.xadd(keys.DEADLETTER, {"event": json.dumps(entry)})
    return entry_id.decode()


async def test_list_filters_and_show(
    client: TestClient,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await post_wa(client, unknown_number_webhook())
    old = await add_letter(redis, reason="invalid_command", received_at=1, command="not json")
    args = write_config(tmp_path, redis_url)
    code, out, _ = await run(capsys, "deadletters", "list", *args, "--json")
    assert code == 0
    letters = json.loads(out)
    assert [x["reason"] for x in letters] == ["unknown_account", "invalid_command"]
    assert letters[0]["channel"] == "whatsapp" and letters[0]["kind"] == "body"
    assert letters[1]["kind"] == "command"
    code, out, _ = await run(capsys, "deadletters", "list", *args, "--reason", "unknown_account")
    assert code == 0 and "unknown_account" in out and "invalid_command" not in out
    code, out, _ = await run(capsys, "deadletters", "list", *args, "--json", "--since", "1h")
    assert [x["reason"] for x in json.loads(out)] == ["unknown_account"]
    code, out, _ = await run(capsys, "deadletters", "list", *args, "--json", "--until", "1d")
    assert [x["id"] for x in json.loads(out)] == [old]
    code, out, _ = await run(capsys, "deadletters", "list", *args, "--json", "--id", old)
    assert [x["id"] for x in json.loads(out)] == [old]
    code, out, _ = await run(capsys, "deadletters", "list", *args, "--json", "--id", f"{old}..")
    assert [x["id"] for x in json.loads(out)] == [old]
    code, _, err = await run(capsys, "deadletters", "list", *args, "--channel", "telegram")
    assert code == 1 and "no dead letter matches" in err
    code, _, err = await run(capsys, "deadletters", "list", *args, "--since", "yesterday")
    assert code == 2 and "not an age" in err
    code, out, _ = await run(capsys, "deadletters", "show", *args, "--channel", "whatsapp")
    assert code == 0 and "wamid.X1" in out and NUMBER_X in out
    code, out, _ = await run(capsys, "deadletters", "show", *args, "--json", "--id", old)
    assert json.loads(out)[0]["command"] == "not json"


async def test_replay_after_the_config_gained_the_account(
    client: TestClient,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await post_wa(client, unknown_number_webhook())
    await post_wa(client, unknown_number_webhook())  # a redelivery: a second letter
    assert await redis.xlen(keys.DEADLETTER) == 2
    before = write_config(tmp_path, redis_url)
    code, out, _ = await run(capsys, "deadletters", "replay", *before, "--json")
    assert code == 1  # still unknown: nothing published, both stay, no new letter
    result = json.loads(out)
    assert result["failed"] == 2 and result["results"][0]["reason"] == "unknown_account"
    assert await redis.xlen(keys.DEADLETTER) == 2
    assert await redis.xlen("gw:inbox:support") == 0

    fixed = tmp_path / "fixed"
    fixed.mkdir()
    args = write_config(fixed, redis_url, WITH_X)
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        code, out, _ = await run(capsys, "deadletters", "replay", *args, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["replayed"] == 2 and result["failed"] == 0
    assert [r["published"] for r in result["results"]] == [1, 0]
    assert [r["duplicates"] for r in result["results"]] == [0, 1]
    events = await stream(redis, "gw:inbox:support")
    assert [(e["message_id"], e["account_id"]) for e in events] == [("wamid.X1", NUMBER_X)]
    assert await redis.xlen(keys.DEADLETTER) == 0
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert "2 replayed (1 events published, 1 duplicates)" in line
    code, _, _ = await run(capsys, "deadletters", "replay", *args)
    assert code == 1  # nothing left to replay
    assert len(await stream(redis, "gw:inbox:support")) == 1


async def test_a_malformed_body_stays_and_a_command_is_requeued(
    redis: Redis, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    bad = await add_letter(
        redis,
        reason="malformed_body",
        channel="whatsapp",
        received_at=1_700_000_000,
        body_b64=base64.b64encode(b"{not json").decode(),
    )
    command = json.dumps({"command_id": "c-1", "type": "text", "text": "hi"})
    requeue = await add_letter(redis, reason="internal_error", command=command)
    args = write_config(tmp_path, redis_url)
    code, out, _ = await run(capsys, "deadletters", "replay", *args, "--json")
    assert code == 1
    by_id = {r["id"]: r for r in json.loads(out)["results"]}
    assert by_id[bad]["outcome"] == "failed" and by_id[bad]["reason"] == "malformed_body"
    assert by_id[requeue]["outcome"] == "requeued"
    ((_, fields),) = await redis.xrange(keys.OUTBOX)
    assert fields == {b"command": command.encode()}
    remaining = [entry_id.decode() for entry_id, _ in await redis.xrange(keys.DEADLETTER)]
    assert remaining == [bad]


async def test_a_routable_command_is_requeued_to_its_assistants_own_outbox(
    redis: Redis, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read even when `outbound.shared_outbox` is off, where gw:outbox would dead-letter it."""
    conversation = f"whatsapp:{NUMBER_A}:15550001234"  # NUMBER_A: an account of `support`
    command = json.dumps({"command_id": "c-2", "conversation_id": conversation, "type": "text"})
    await add_letter(redis, reason="internal_error", command=command)
    code, _out, _ = await run(capsys, "deadletters", "replay", *write_config(tmp_path, redis_url))
    assert code == 0
    assert await redis.xlen(keys.OUTBOX) == 0
    ((_, fields),) = await redis.xrange(keys.outbox("support"))
    assert fields == {b"command": command.encode()}


async def test_drop_needs_yes(
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    keep = await add_letter(redis, reason="unknown_status", channel="whatsapp")
    gone = await add_letter(redis, reason="malformed_item", channel="telegram")
    args = write_config(tmp_path, redis_url)
    code, _, err = await run(capsys, "deadletters", "drop", *args, "--channel", "telegram")
    assert code == 2 and "1 dead letters match; add --yes" in err
    assert await redis.xlen(keys.DEADLETTER) == 2
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        code, out, _ = await run(
            capsys, "deadletters", "drop", *args, "--id", gone, "--yes", "--json"
        )
    assert code == 0 and json.loads(out) == {"matched": 1, "deleted": 1}
    assert [i.decode() for i, _ in await redis.xrange(keys.DEADLETTER)] == [keep]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert line.startswith("deadletters drop: 1 deleted of 1 matched (malformed_item 1)")


def test_help_says_what_each_command_does() -> None:
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "deadletters", "--help"],
        capture_output=True, text=True, cwd=root, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "replay" in out and "trusted without a signature" in out


async def test_a_telegram_letter_keeps_its_bot_and_replays_with_it(
    client: TestClient,
    redis: Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The bot is named only by the webhook's URL: its letter keeps it (`key`), so a
    replay parses the body as that bot's, as the live webhook was."""
    import base64

    bad = {"update_id": 70, "message": "not a message object"}
    resp = await client.post(
        f"/webhooks/telegram/{BOT_1}", data=json.dumps(bad), headers=tg_headers()
    )
    assert resp.status == 200  # dead-lettered, item by item
    ((_, fields),) = await redis.xrange(keys.DEADLETTER)
    assert json.loads(fields[b"event"])["key"] == BOT_1
    await redis.delete(keys.DEADLETTER)

    update = {
        "update_id": 71,
        "message": {"message_id": 9, "date": 1_795_000_000, "text": "oi",
                    "chat": {"id": 42, "type": "private", "first_name": "Ana"},
                    "from": {"id": 42, "is_bot": False, "first_name": "Ana"}},
    }  # fmt: skip
    body = base64.b64encode(json.dumps(update).encode()).decode()
    kept = await add_letter(redis, reason="malformed_body", channel="telegram", body_b64=body,
                            received_at=1_795_000_000, key=BOT_1)  # fmt: skip
    old = await add_letter(redis, reason="malformed_body", channel="telegram", body_b64=body,
                           received_at=1_795_000_000)  # fmt: skip  # written before `key`
    args = write_config(tmp_path, redis_url)
    code, out, _ = await run(capsys, "deadletters", "show", *args, "--json", "--id", kept)
    assert json.loads(out)[0]["key"] == BOT_1
    code, out, _ = await run(capsys, "deadletters", "replay", *args, "--json")
    assert code == 1  # the old letter fails
    by_id = {r["id"]: r for r in json.loads(out)["results"]}
    assert by_id[kept]["outcome"] == "replayed" and by_id[kept]["published"] == 1
    assert by_id[old]["outcome"] == "failed" and by_id[old]["reason"] == "unknown_account"
    [event] = [e for e in await stream(redis, "gw:inbox:support") if e.get("text") == "oi"]
    assert (event["channel"], event["account_id"], event["contact_id"]) == ("telegram", BOT_1, "42")
