"""Messenger and Instagram outbound end to end: a contact writes (a signed webhook), commands
in `gw:outbox` → policy → the stand-in Send API (tests/fakes/send_api.py) → one `delivery`
event each in the assistant's inbox. Real Redis, real HTTP, workers in drain mode.

Windows are opened only the way production opens them: by posting the contact's message to
/webhooks/messenger or /webhooks/instagram, with its provider time set in the past."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.state import OUTBOX
from tests.conftest import (
    IG_A,
    INSTAGRAM_SECRET,
    MESSENGER_SECRET,
    PAGE_A,
    PAGE_B,
    make_settings,
    meta_headers,
    stream,
)
from tests.fakes.send_api import FakeSendAPI
from tests.test_outbound import Gateway

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

PSID = "7010000000000001"
OTHER_PSID = "7010000000000002"
IGSID = "6800000000000001"
DAY = 24 * 3600
TOKENS = {PAGE_A: "page-token-a", PAGE_B: "page-token-b"}
IG_TOKENS = {IG_A: "ig-token-a"}
PAGE_INBOX_APP = 263902037430900
"""The app id on echoes of what a person wrote in the Page Inbox (Business Suite)."""
IMAGE_URL = "https://cdn.example.com/catalogo/tenis-azul.jpg"


@dataclass
class Meta(Gateway):
    """The gateway with the stand-in Send API behind both Meta hosts. `Gateway`'s command,
    drain and delivery helpers are reused; its WhatsApp and Telegram fakes are not started."""

    api: FakeSendAPI | None = None

    @property
    def fake(self) -> FakeSendAPI:
        assert self.api is not None
        return self.api

    async def contact_writes(  # type: ignore[override]
        self,
        contact: str = PSID,
        account: str = PAGE_A,
        ago_s: float = 60,
        channel: str = "messenger",
        text: str = "Oi, vocês entregam hoje?",
    ) -> str:
        """The contact's message as Meta posts it (times in ms); its mid."""
        mid = f"m_in.{contact}.{time.time_ns()}"
        sent_ms = int((time.time() - ago_s) * 1000)
        item = {
            "sender": {"id": contact},
            "recipient": {"id": account},
            "timestamp": sent_ms,
            "message": {"mid": mid, "text": text},
        }
        await self.post(channel, account, item)
        return mid

    async def echo(self, item_message: dict[str, Any], contact: str = PSID) -> None:
        """A Messenger `message_echoes` item: the Page's own message, sender and recipient
        swapped."""
        item = {
            "sender": {"id": PAGE_A},
            "recipient": {"id": contact},
            "timestamp": int(time.time() * 1000),
            "message": {"is_echo": True, **item_message},
        }
        await self.post("messenger", PAGE_A, item)

    async def post(self, channel: str, account: str, item: dict[str, Any]) -> None:
        obj, secret = ("page", MESSENGER_SECRET)
        if channel == "instagram":
            obj, secret = ("instagram", INSTAGRAM_SECRET)
        envelope = {
            "object": obj,
            "entry": [{"id": account, "time": int(time.time() * 1000), "messaging": [item]}],
        }
        body = json.dumps(envelope, ensure_ascii=True, separators=(",", ":")).encode()
        resp = await self.client.post(
            f"/webhooks/{channel}", data=body, headers=meta_headers(body, secret)
        )
        assert resp.status == 200

    async def events(self, assistant: str = "support") -> list[dict[str, Any]]:
        return await stream(self.redis, f"gw:inbox:{assistant}")


def fb(contact: str = PSID, page: str = PAGE_A) -> str:
    return f"messenger:{page}:{contact}"


def insta(contact: str = IGSID) -> str:
    return f"instagram:{IG_A}:{contact}"


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Meta]:
    async with FakeSendAPI(pages=TOKENS, accounts=IG_TOKENS) as api:
        settings = make_settings(
            redis_url,
            META_URL=api.messenger_url,
            IG_URL=api.instagram_url,
            OUTBOUND_ENABLED="false",
            SEND_WAIT_MAX="5",
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Meta(client, app[OUTBOX], redis, None, None, api=api)  # type: ignore[arg-type]


# --- every command type --------------------------------------------------------------------


async def test_every_messenger_command_reaches_the_send_api(gw: Meta) -> None:
    inbound = await gw.contact_writes()
    buttons = [
        {"id": "DELIVERY_TODAY", "title": "Entrega hoje"},
        {"id": "PICKUP", "title": "Retirar"},
    ]
    commands: list[tuple[str, dict[str, Any]]] = [
        ("text", {"text": "Entregamos sim, até 18h 🚚", "reply_to": inbound}),
        ("image", {"media": {"url": IMAGE_URL}}),
        ("audio", {"media": {"url": "https://cdn.example.com/oi.mp3"}}),
        ("video", {"media": {"id": "1857777774821032"}}),
        ("document", {"media": {"url": "https://cdn.example.com/nota.pdf", "filename": "n.pdf"}}),
        ("interactive", {"text": "Como prefere receber?", "buttons": buttons}),
        ("typing", {}),
        ("read", {}),
        ("reaction", {"text": "❤️", "reply_to": inbound}),
        ("reaction", {"text": "", "reply_to": inbound}),
    ]
    for i, (kind, fields) in enumerate(commands):
        await gw.command(f"fb-{i}", fb(), type=kind, **fields)
    await gw.run()
    requests = gw.fake.requests
    assert [r.status for r in requests] == [200] * len(commands)
    assert {(r.platform, r.account_id, r.token) for r in requests} == {
        ("messenger", PAGE_A, "page-token-a")
    }
    text, image, audio, video, document, quick, typing, read, react, unreact = (
        r.body for r in requests
    )
    assert text == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "Entregamos sim, até 18h 🚚", "metadata": "gw:fb-0"},
        "reply_to": {"mid": inbound},
    }
    assert image["message"]["attachment"] == {
        "type": "image",
        "payload": {"url": IMAGE_URL, "is_reusable": True},
    }
    assert audio["message"]["attachment"]["type"] == "audio"
    assert video["message"]["attachment"]["payload"] == {"attachment_id": "1857777774821032"}
    assert document["message"]["attachment"]["type"] == "file"
    assert quick["message"]["quick_replies"] == [
        {"content_type": "text", "title": "Entrega hoje", "payload": "DELIVERY_TODAY"},
        {"content_type": "text", "title": "Retirar", "payload": "PICKUP"},
    ]
    assert [m["message"]["metadata"] for m in (image, audio, video, document, quick)] == [
        f"gw:fb-{i}" for i in range(1, 6)
    ]
    assert typing == {"recipient": {"id": PSID}, "sender_action": "typing_on"}
    assert read == {"recipient": {"id": PSID}, "sender_action": "mark_seen"}
    assert react["payload"] == {"message_id": inbound, "reaction": "❤️"}
    assert unreact == {
        "recipient": {"id": PSID},
        "sender_action": "unreact",
        "payload": {"message_id": inbound},
    }
    for i, request in enumerate(requests):
        delivery = await gw.delivery(f"fb-{i}")
        assert (delivery["outcome"], delivery["reason"]) == ("sent", None)
        assert delivery["message_id"] == request.response.get("message_id")
        assert delivery["channel"] == "messenger" and delivery["conversation_id"] == fb()
    assert (await gw.delivery("fb-0"))["message_id"].startswith("m_")


async def test_instagram_commands_go_to_the_instagram_host_with_its_own_rules(gw: Meta) -> None:
    inbound = await gw.contact_writes(IGSID, IG_A, channel="instagram")
    await gw.command("ig-text", insta(), text="Tem no tamanho M! 👟", reply_to=inbound)
    await gw.command("ig-image", insta(), type="image", media={"url": IMAGE_URL})
    await gw.command(
        "ig-quick",
        insta(),
        type="interactive",
        text="Qual cor?",
        buttons=[{"id": "AZUL", "title": "Azul"}],
    )
    await gw.command("ig-react", insta(), type="reaction", text="🔥", reply_to=inbound)
    await gw.command("ig-seen", insta(), type="read")
    await gw.command("ig-long", insta(), text="é" * 501)  # 1002 bytes of UTF-8
    await gw.run()
    text, image, quick, react, seen = (r.body for r in gw.fake.requests)
    assert {(r.platform, r.account_id, r.token) for r in gw.fake.requests} == {
        ("instagram", IG_A, "ig-token-a")
    }
    assert text == {"recipient": {"id": IGSID}, "message": {"text": "Tem no tamanho M! 👟"}}
    assert image["message"] == {"attachment": {"type": "image", "payload": {"url": IMAGE_URL}}}
    assert quick["message"]["quick_replies"] == [
        {"content_type": "text", "title": "Azul", "payload": "AZUL"}
    ]
    assert react == {
        "recipient": {"id": IGSID},
        "sender_action": "react",
        "payload": {"message_id": inbound, "reaction": "🔥"},
    }
    assert seen == {"recipient": {"id": IGSID}, "sender_action": "mark_seen"}
    for command_id in ("ig-text", "ig-image", "ig-quick", "ig-react", "ig-seen"):
        assert (await gw.delivery(command_id, "sales"))["outcome"] == "sent"
    assert (await gw.delivery("ig-text", "sales"))["message_id"].startswith("aWdfZ")
    too_long = await gw.delivery("ig-long", "sales")
    assert (too_long["outcome"], too_long["reason"]) == ("rejected", "invalid_command")


async def test_template_and_location_are_rejected_without_a_call(gw: Meta) -> None:
    await gw.contact_writes()
    template = {"name": "order_ready", "language": "pt_BR", "components": []}
    await gw.command("tpl", fb(), type="template", template=template)
    await gw.command("tpl-closed", fb(OTHER_PSID), type="template", template=template)
    await gw.command("loc", fb(), type="location", location={"latitude": -23.5, "longitude": -46.6})
    await gw.command("caption", fb(), type="image", media={"url": IMAGE_URL}, text="legenda")
    await gw.run()
    assert gw.fake.requests == []
    for command_id in ("tpl", "tpl-closed", "loc", "caption"):
        delivery = await gw.delivery(command_id)
        assert (delivery["outcome"], delivery["reason"]) == ("rejected", "invalid_command")


# --- the 24-hour window and the human agent tag ---------------------------------------------


async def test_outside_the_window_nothing_is_sent(gw: Meta) -> None:
    await gw.command("never-wrote", fb(), text="Olá?")
    await gw.contact_writes(OTHER_PSID, ago_s=DAY + 60)
    await gw.command("too-late", fb(OTHER_PSID), text="Olá?")
    await gw.command("typing-late", fb(OTHER_PSID), type="typing")
    await gw.contact_writes(IGSID, IG_A, ago_s=DAY + 60, channel="instagram")
    await gw.command("ig-late", insta(), text="Olá?")
    await gw.run()
    assert gw.fake.requests == []
    for command_id, assistant in (
        ("never-wrote", "support"),
        ("too-late", "support"),
        ("typing-late", "support"),
        ("ig-late", "sales"),
    ):
        delivery = await gw.delivery(command_id, assistant)
        assert (delivery["outcome"], delivery["reason"]) == ("rejected", "window_closed")


async def test_a_human_agent_may_answer_for_7_days_with_the_tag(gw: Meta) -> None:
    await gw.contact_writes(ago_s=2 * DAY)
    await gw.contact_writes(OTHER_PSID, ago_s=7 * DAY + 60)
    await gw.contact_writes(IGSID, IG_A, ago_s=6 * DAY, channel="instagram")
    human = {"tag": "HUMAN_AGENT", "author": "human"}
    await gw.command("agent", fb(), text="Sou a Ana, do atendimento.", **human)
    await gw.command("agent-untagged", fb(), text="Sou a Ana.", author="human")
    await gw.command("bot-tagged", fb(), text="Posso ajudar?", tag="HUMAN_AGENT")
    await gw.command("agent-8-days", fb(OTHER_PSID), text="Ainda precisa?", **human)
    await gw.command("ig-agent", insta(), text="Aqui é o João.", **human)
    await gw.run()
    # The two assistants' commands are sent concurrently: found by platform, not by order.
    [messenger] = [r for r in gw.fake.requests if r.platform == "messenger"]
    [instagram] = [r for r in gw.fake.requests if r.platform == "instagram"]
    assert len(gw.fake.requests) == 2
    assert messenger.body["messaging_type"] == "MESSAGE_TAG"
    assert messenger.body["tag"] == "HUMAN_AGENT"
    assert messenger.body["message"] == {
        "text": "Sou a Ana, do atendimento.",
        "metadata": "gw:agent",
    }
    assert instagram.body == {
        "recipient": {"id": IGSID},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
        "message": {"text": "Aqui é o João."},
    }
    assert (await gw.delivery("agent"))["outcome"] == "sent"
    assert (await gw.delivery("ig-agent", "sales"))["outcome"] == "sent"
    expected = {
        "agent-untagged": ("rejected", "window_closed"),
        "bot-tagged": ("rejected", "invalid_command"),
        "agent-8-days": ("rejected", "window_closed"),
    }
    for command_id, outcome in expected.items():
        delivery = await gw.delivery(command_id)
        assert (delivery["outcome"], delivery["reason"]) == outcome


# --- provider errors ------------------------------------------------------------------------


async def test_a_temporary_failure_is_retried_and_ends_sent(gw: Meta) -> None:
    await gw.contact_writes()
    gw.fake.fail(1200, times=2)
    gw.fake.fail(613)
    await gw.command("retry", fb(), text="Já volto com a resposta")
    await gw.run()
    assert [r.status for r in gw.fake.requests] == [500, 500, 429, 200]
    assert len({json.dumps(r.body) for r in gw.fake.requests}) == 1  # the same request each time
    delivery = await gw.delivery("retry")
    assert (delivery["outcome"], delivery["provider_code"]) == ("sent", None)
    assert delivery["message_id"] == gw.fake.requests[-1].response["message_id"]


async def test_retries_stop_after_max_attempts(gw: Meta) -> None:
    await gw.contact_writes()
    gw.fake.fail(2, times=10)
    await gw.command("always-2", fb(), text="x")
    await gw.run()
    assert len(gw.fake.requests) == 4  # retry.max_attempts in the test config
    delivery = await gw.delivery("always-2")
    assert (delivery["outcome"], delivery["reason"], delivery["provider_code"]) == (
        "failed",
        "provider_error",
        2,
    )


@pytest.mark.parametrize(("code", "subcode"), [(10, 2018278), (100, 2018109), (100, None)])
async def test_a_message_permanent_error_fails_with_its_code(
    gw: Meta, code: int, subcode: int | None
) -> None:
    await gw.contact_writes()
    gw.fake.fail(code, subcode=subcode)
    await gw.command("permanent", fb(), type="image", media={"url": IMAGE_URL})
    await gw.command("next", fb(), text="E este?")
    await gw.run()
    assert [r.status for r in gw.fake.requests] == [400, 200]  # not retried; the next goes
    delivery = await gw.delivery("permanent")
    assert (delivery["outcome"], delivery["reason"], delivery["provider_code"]) == (
        "failed",
        "provider_error",
        code,
    )
    assert (await gw.delivery("next"))["outcome"] == "sent"


@pytest.mark.parametrize(("code", "subcode"), [(551, 1545041), (10, 2018108), (100, 2018001)])
async def test_a_person_who_stopped_receiving_is_not_written_to_until_they_write(
    gw: Meta, code: int, subcode: int
) -> None:
    await gw.contact_writes()
    await gw.contact_writes(OTHER_PSID)
    gw.fake.fail(code, subcode=subcode, recipient=PSID)
    await gw.command("blocked", fb(), text="Olá!")
    await gw.run()
    first = await gw.delivery("blocked")
    assert (first["outcome"], first["reason"], first["provider_code"]) == (
        "failed",
        "opted_out",
        code,
    )
    await gw.command("again", fb(), text="Oi de novo")
    await gw.command("typing-again", fb(), type="typing")
    await gw.command("someone-else", fb(OTHER_PSID), text="Olá!")
    await gw.run()
    for command_id in ("again", "typing-again"):
        delivery = await gw.delivery(command_id)
        assert (delivery["outcome"], delivery["reason"]) == ("rejected", "opted_out")
    assert (await gw.delivery("someone-else"))["outcome"] == "sent"
    assert [r.recipient for r in gw.fake.requests] == [PSID, OTHER_PSID]
    await gw.contact_writes()  # they write again: the block is over
    await gw.command("welcome-back", fb(), text="Que bom te ver!")
    await gw.run()
    assert (await gw.delivery("welcome-back"))["outcome"] == "sent"


async def test_a_dead_token_halts_the_page_and_only_that_page(gw: Meta) -> None:
    await gw.contact_writes()
    await gw.contact_writes(OTHER_PSID, PAGE_B)
    gw.fake.fail(190, subcode=460, account_id=PAGE_A)
    await gw.command("h1", fb(), text="x")
    await gw.command("h2", fb(), text="y")
    await gw.command("h3", fb(), type="typing")
    await gw.command("other-page", fb(OTHER_PSID, PAGE_B), text="z")
    await gw.run()
    assert sorted((r.account_id, r.status) for r in gw.fake.requests) == [
        (PAGE_A, 401),
        (PAGE_B, 200),
    ]
    for command_id in ("h1", "h2", "h3"):
        delivery = await gw.delivery(command_id)
        assert (delivery["outcome"], delivery["reason"], delivery["provider_code"]) == (
            "failed",
            "provider_error",
            190,
        )
    assert (await gw.delivery("other-page", "sales"))["outcome"] == "sent"
    metrics = await (await gw.client.get("/metrics")).text()
    assert f'gateway_account_halted{{account="{PAGE_A}",channel="messenger"}} 1.0' in metrics
    ready = await gw.client.get("/readyz")
    assert ready.status == 200  # webhooks are still taken
    assert (await ready.json())["accounts"] == {f"messenger:{PAGE_A}": {"halted": "190"}}


async def test_a_permission_error_halts_the_instagram_account(gw: Meta) -> None:
    await gw.contact_writes(IGSID, IG_A, channel="instagram")
    gw.fake.fail(10)
    await gw.command("no-permission", insta(), text="x")
    await gw.command("after", insta(), text="y")
    await gw.run()
    assert len(gw.fake.requests) == 1
    for command_id in ("no-permission", "after"):
        delivery = await gw.delivery(command_id, "sales")
        assert (delivery["outcome"], delivery["provider_code"]) == ("failed", 10)


# --- one delivery per command, and the echo of our own send ---------------------------------


async def test_a_command_id_is_sent_once_and_answered_once_per_entry(gw: Meta) -> None:
    await gw.contact_writes()
    for _ in range(3):
        await gw.command("dup", fb(), text="só uma vez")
    await gw.run()
    await gw.command("dup", fb(), text="só uma vez")
    await gw.run()
    assert len(gw.fake.requests) == 1
    deliveries = [d for d in await gw.deliveries() if d["command_id"] == "dup"]
    assert [d["duplicate"] for d in deliveries] == [False, True, True, True]
    assert {d["message_id"] for d in deliveries} == {gw.fake.requests[0].response["message_id"]}
    assert (await gw.redis.xpending("gw:outbox", "gateway"))["pending"] == 0


async def test_the_echo_of_our_own_send_is_not_a_human_writing(gw: Meta) -> None:
    """Meta echoes every message the Page sends; ours come back with our metadata and are
    not published, while a person's answer from the Page Inbox pauses the assistant."""
    await gw.contact_writes()
    await gw.command("ours", fb(), text="Resposta do assistente")
    await gw.run()
    sent = gw.fake.requests[0]
    echo = {
        "mid": sent.response["message_id"],
        "app_id": 1517776481860111,
        "metadata": sent.body["message"]["metadata"],
        "text": "Resposta do assistente",
    }
    await gw.echo(echo)
    await gw.command("still-ai", fb(), text="Mais alguma coisa?")
    await gw.run()
    assert (await gw.delivery("still-ai"))["outcome"] == "sent"
    assert [e["kind"] for e in await gw.events()] == ["message", "delivery", "delivery"]
    await gw.echo({"mid": "m_from_inbox", "app_id": PAGE_INBOX_APP, "text": "Deixa comigo"})
    await gw.command("paused", fb(), text="Posso ajudar?")
    await gw.command("human", fb(), text="Oi, é a Ana", author="human")
    await gw.run()
    assert (await gw.delivery("paused"))["reason"] == "human_active"
    assert (await gw.delivery("human"))["outcome"] == "sent"
    assert len(gw.fake.requests) == 3


async def test_the_echo_of_our_own_instagram_send_is_not_published_either(gw: Meta) -> None:
    """Instagram echoes carry no metadata: the send's message id, marked when the send was
    recorded, is what tells our own message from a person's."""
    await gw.contact_writes(IGSID, IG_A, channel="instagram")
    await gw.command("ours", insta(), text="Temos sim, no tamanho M")
    await gw.run()
    [sent] = gw.fake.requests
    item = {
        "sender": {"id": IG_A},
        "recipient": {"id": IGSID},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": sent.response["message_id"], "is_echo": True, "text": "Temos sim"},
    }
    await gw.post("instagram", IG_A, item)
    await gw.command("still-ai", insta(), text="Quer que eu separe um?")
    await gw.run()
    assert (await gw.delivery("still-ai", "sales"))["outcome"] == "sent"
    assert [e["kind"] for e in await gw.events("sales")] == ["message", "delivery", "delivery"]
    # A person's answer from the Instagram app is an echo and pauses the assistant.
    await gw.post("instagram", IG_A, {**item, "message": {**item["message"], "mid": "aWdf_HUMAN"}})
    await gw.command("paused", insta(), text="Algo mais?")
    await gw.run()
    assert (await gw.delivery("paused", "sales"))["reason"] == "human_active"
    assert "echo" in [e["kind"] for e in await gw.events("sales")]


async def test_handoff_passes_the_thread_to_the_page_inbox_and_handback_takes_it(
    gw: Meta,
) -> None:
    """PAGE_A uses the handover protocol (`handover: true` in the test config)."""
    await gw.contact_writes()
    await gw.command("to-human", fb(), type="handoff")
    await gw.run()
    await gw.command("held", fb(), text="Ainda aqui?")
    await gw.run()
    assert (await gw.delivery("to-human"))["outcome"] == "sent"
    assert (await gw.delivery("held"))["reason"] == "human_active"
    await gw.command("back", fb(), type="handback")
    await gw.command("ai-again", fb(), text="Voltei! Posso ajudar?")
    await gw.run()
    assert (await gw.delivery("back"))["outcome"] == "sent"
    assert (await gw.delivery("ai-again"))["outcome"] == "sent"
    calls = gw.fake.handovers(PSID)
    assert [(c.edge, c.status) for c in calls] == [
        ("pass_thread_control", 200),
        ("take_thread_control", 200),
    ]
    assert calls[0].body["target_app_id"] == str(PAGE_INBOX_APP)
    assert calls[0].token == TOKENS[PAGE_A]


async def test_a_page_without_handover_only_pauses_the_assistant(gw: Meta) -> None:
    await gw.contact_writes(account=PAGE_B)
    await gw.command("to-human", fb(page=PAGE_B), type="handoff")
    await gw.command("held", fb(page=PAGE_B), text="Ainda aqui?")
    await gw.run()
    assert (await gw.delivery("to-human", "sales"))["outcome"] == "sent"
    assert (await gw.delivery("held", "sales"))["reason"] == "human_active"
    assert gw.fake.requests == []  # nothing called: the pause is the gateway's own


async def test_a_refused_handoff_fails_and_leaves_the_assistant_on(gw: Meta) -> None:
    await gw.contact_writes()
    gw.fake.fail(551, subcode=1545041, recipient=PSID)  # the person is not available
    await gw.command("to-human", fb(), type="handoff")
    await gw.command("after", fb(), text="Oi de novo")
    await gw.run()
    refused = await gw.delivery("to-human")
    assert (refused["outcome"], refused["reason"], refused["provider_code"]) == (
        "failed",
        "opted_out",
        551,
    )
    assert (await gw.delivery("after"))["reason"] == "opted_out"  # not human_active


async def test_a_throttled_page_holds_every_send_of_that_page_and_no_other(gw: Meta) -> None:
    """Meta's business-use-case limit (80001) with a minute to wait: the Page's limiter is
    held for it, so its other conversations do not call Meta meanwhile (calling on would
    lengthen the block), and with `send_wait_max_seconds` 5 they end `rate_limited`."""
    await gw.contact_writes(PSID)
    await gw.contact_writes(OTHER_PSID)
    await gw.contact_writes(PSID, PAGE_B)
    gw.fake.fail(80001, regain_minutes=1, account_id=PAGE_A)
    await gw.command("throttled", fb(PSID), text="Oi")
    await gw.run()
    await gw.command("same-page", fb(OTHER_PSID), text="Olá")
    await gw.command("other-page", fb(PSID, PAGE_B), text="Olá")
    await gw.run()
    assert (await gw.delivery("throttled"))["reason"] == "rate_limited"
    assert (await gw.delivery("same-page"))["reason"] == "rate_limited"
    assert (await gw.delivery("other-page", "sales"))["outcome"] == "sent"
    assert [r.account_id for r in gw.fake.requests] == [PAGE_A, PAGE_B]  # one call to PAGE_A


async def test_a_delivery_receipt_names_the_command_that_sent_the_message(gw: Meta) -> None:
    """Meta's `delivery` names only the mid: the ledger kept the mid's command_id when the send
    was recorded, and publish.lua puts it into the status (CONTRACT §2.1 `command_id`)."""
    await gw.contact_writes()
    await gw.command("greet", fb(), text="Olá! Como posso ajudar?")
    await gw.run()
    mid = gw.fake.requests[0].response["message_id"]
    now_ms = int(time.time() * 1000)
    delivered = {"mids": [mid, "m_not_ours"], "watermark": now_ms}
    item = {"sender": {"id": PSID}, "recipient": {"id": PAGE_A}, "timestamp": now_ms,
            "delivery": delivered}  # fmt: skip
    await gw.post("messenger", PAGE_A, item)
    statuses = [e for e in await gw.events() if e["kind"] == "status"]
    assert [(s["message_id"], s["status"], s["command_id"]) for s in statuses] == [
        (mid, "delivered", "greet"),
        ("m_not_ours", "delivered", None),
    ]
