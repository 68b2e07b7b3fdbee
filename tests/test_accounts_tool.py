"""`gateway accounts clear-halt` (gateway/accounts_tool.py): a number halted by a credential
error sends again once an operator clears it, without a restart; each clearing is audited."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from gateway.app import OUTBOX, create_app
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.outbound import Outbox
from tests.conftest import NUMBER_A, NUMBER_B, make_settings
from tests.test_inspect import run, write_config
from tests.test_outbound import BR_CONTACT, Gateway, wa


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    async with FakeGraphAPI({NUMBER_A: "token-a", NUMBER_B: "token-b"}) as graph:
        settings = make_settings(
            redis_url, GRAPH_URL=graph.base_url, OUTBOUND_ENABLED="false", SEND_WAIT_MAX="5"
        )
        app = create_app(settings, redis_url)
        client: TestClient = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, None)  # type: ignore[arg-type]


def halted_gauge(metrics: str, number: str) -> str:
    line = f'gateway_account_halted{{account="{number}",channel="whatsapp"}} '
    return next(m for m in metrics.splitlines() if m.startswith(line)).removeprefix(line)


async def test_a_halted_number_sends_again_once_cleared(
    gw: Gateway,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await gw.contact_writes()
    gw.graph.fail(190)
    await gw.command("h1", wa(), text="x")
    await gw.run()
    await gw.command("h2", wa(), text="y")
    await gw.run()
    assert len(gw.graph.requests) == 1  # h2 never called: the number is halted
    assert (await gw.delivery("h2"))["provider_code"] == 190
    outbox: Outbox = gw.outbox
    await outbox.report_accounts()
    assert halted_gauge(await (await gw.client.get("/metrics")).text(), NUMBER_A) == "1.0"

    args = write_config(tmp_path, redis_url)
    with caplog.at_level(logging.WARNING, logger="gateway.audit"):
        code, out, _ = await run(capsys, "accounts", "clear-halt", *args,
                                 "--account", f"whatsapp:{NUMBER_A}")  # fmt: skip
    assert code == 0
    assert out.strip() == f"whatsapp:{NUMBER_A}  cleared (was halted by provider error 190)"
    [audit] = [r for r in caplog.records if r.name == "gateway.audit"]
    assert f"whatsapp:{NUMBER_A}" in audit.getMessage() and "190" in audit.getMessage()

    await gw.command("h3", wa(), text="z")
    await gw.run()
    assert (await gw.delivery("h3"))["outcome"] == "sent"
    assert len(gw.graph.requests) == 2
    await outbox.report_accounts()  # the running gateway's gauge follows Redis
    assert halted_gauge(await (await gw.client.get("/metrics")).text(), NUMBER_A) == "0.0"
    ready = await gw.client.get("/readyz")
    assert (await ready.json())["accounts"] == {}

    # Nothing halted any more: exit 1, and the JSON says so for every account.
    code, out, _ = await run(capsys, "accounts", "clear-halt", *args, "--all", "--json")
    assert code == 1
    report = {a["account"]: a for a in json.loads(out)}
    assert report[f"whatsapp:{NUMBER_A}"] == {
        "account": f"whatsapp:{NUMBER_A}",
        "assistant": "support",
        "cleared": False,
        "halt": None,
    }
    assert BR_CONTACT not in out  # accounts only, never contacts


async def test_an_unknown_account_or_no_selection_is_a_usage_error(
    redis: Redis, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = write_config(tmp_path, redis_url)
    code, _, err = await run(capsys, "accounts", "clear-halt", *args, "--account", "whatsapp:1")
    assert code == 2
    assert "no configured account 'whatsapp:1'" in err and f"whatsapp:{NUMBER_A}" in err
    with pytest.raises(SystemExit) as exited:  # argparse: --account or --all is required
        await run(capsys, "accounts", "clear-halt", *args)
    assert exited.value.code == 2
