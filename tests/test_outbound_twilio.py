"""WhatsApp through Twilio, outbound end to end: a contact writes (a signed Twilio webhook),
commands in `gw:outbox` → policy → the stand-in Twilio API (tests/fakes/twilio_api.py) → one
`delivery` event each in the assistant's inbox; the fake's signed status callbacks come back
as `status` events naming their command. Real Redis, real HTTP, workers in drain mode.

Twilio numbers are WhatsApp numbers (CONTRACT §6.3): every rule of §3 holds for them. The
test config's senders are TWILIO_A (+1 415, cloud_api, 80 mps, assistant `sales`) and
TWILIO_B (+55 11, coexistence, 20 mps, assistant `support`). Twilio posts no provider time, so
a window opens at receipt; a window that closed long ago is written into the conversation's
state directly (its `t`), as 25 hours of waiting would leave it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.state import OUTBOX
from router.keys import inbox
from tests.conftest import (
    TWILIO_A,
    TWILIO_B,
    TWILIO_SID,
    TWILIO_TOKEN,
    TWILIO_URL,
    make_settings,
    stream,
    twilio_post,
)
from tests.fakes.twilio_api import FakeTwilioAPI, inbound_message
from tests.test_outbound import Gateway

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

A = TWILIO_A.lstrip("+")  # the senders' account ids: their digits
B = TWILIO_B.lstrip("+")
BR_CONTACT = "5511987650000"
US_CONTACT = "14155550123"
CONTENT = "HX" + "0123456789abcdef" * 2
PROMO = "HX" + "fedcba9876543210" * 2
IMAGE = "https://cdn.example.com/catalogo/tenis-azul.jpg"
DAY = 24 * 3600


def conv(contact: str = BR_CONTACT, sender: str = A) -> str:
    return f"whatsapp:{sender}:{contact}"


def assistant_of(sender: str) -> str:
    return "sales" if sender == A else "support"


@dataclass
class Twilio(Gateway):
    """The gateway with the stand-in Twilio API behind it. `Gateway`'s command, drain and
    delivery helpers are reused; its Graph and Bot fakes are not started."""

    api: FakeTwilioAPI | None = None

    @property
    def fake(self) -> FakeTwilioAPI:
        assert self.api is not None
        return self.api

    @property
    def webhook(self) -> str:
        """Where the fake posts status callbacks: the gateway's webhook as the test reaches
        it (the callbacks are signed over `twilio.public_url`, as behind a proxy)."""
        return str(self.client.make_url("/webhooks/twilio"))

    async def contact_writes(  # type: ignore[override]
        self, contact: str = BR_CONTACT, sender: str = A, text: str = "Oi, tem o azul?"
    ) -> str:
        """The contact's WhatsApp message as Twilio posts it; its MessageSid."""
        form = inbound_message(TWILIO_SID, sender, contact, text)
        body, headers = twilio_post(form)
        resp = await self.client.post("/webhooks/twilio", data=body, headers=headers)
        assert resp.status == 200, await resp.text()
        return form["MessageSid"]

    async def close_window(self, contact: str = BR_CONTACT, sender: str = A) -> None:
        """The contact's last message is 25 hours old (what the gateway keeps of it)."""
        key = f"gw:cv:{{{inbox(assistant_of(sender))}}}:whatsapp:{sender}:{contact}"
        assert await self.redis.exists(key)
        await self.redis.hset(key, "t", str(int(time.time()) - DAY - 3600))  # type: ignore[misc]

    async def sent(self, command_id: str, sender: str = A) -> dict[str, Any]:
        delivery = await self.delivery(command_id, assistant_of(sender))
        assert (delivery["outcome"], delivery["reason"]) == ("sent", None), delivery
        return delivery

    async def events(self, assistant: str = "sales") -> list[dict[str, Any]]:
        return await stream(self.redis, f"gw:inbox:{assistant}")


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Twilio]:
    async with FakeTwilioAPI(TWILIO_SID, TWILIO_TOKEN, senders=[TWILIO_A, TWILIO_B]) as api:
        settings = make_settings(
            redis_url, TWILIO_API=api.url, OUTBOUND_ENABLED="false", SEND_WAIT_MAX="5"
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Twilio(client, app[OUTBOX], redis, None, None, api=api)  # type: ignore[arg-type]


# --- every command type ------------------------------------------------------------------------


async def test_every_command_type_reaches_twilio_as_it_should(gw: Twilio) -> None:
    # A US contact of the US sender: a template is no cross-border start either.
    inbound = await gw.contact_writes(US_CONTACT)
    commands: list[tuple[str, dict[str, Any]]] = [
        ("text", {"text": "Temos sim, no 42 🚚", "reply_to": inbound}),
        ("image", {"text": "O azul", "media": {"url": IMAGE}}),
        ("audio", {"media": {"url": "https://cdn.example.com/oi.ogg"}}),
        ("video", {"media": {"url": "https://cdn.example.com/v.mp4"}}),
        ("document", {"media": {"url": "https://cdn.example.com/nota.pdf", "filename": "n.pdf"}}),
        ("template", {"template": {"content_sid": CONTENT, "variables": {"1": "Ana"}}}),
        ("typing", {"reply_to": inbound}),
    ]
    for i, (kind, fields) in enumerate(commands):
        await gw.command(f"tw-{i}", conv(US_CONTACT), type=kind, **fields)
    await gw.run()
    route = {"To": f"whatsapp:+{US_CONTACT}", "From": f"whatsapp:{TWILIO_A}"}
    callback = {"StatusCallback": TWILIO_URL}
    expected = [
        {**route, "Body": "Temos sim, no 42 🚚", **callback},  # unquoted: Twilio cannot quote
        {**route, "MediaUrl": IMAGE, "Body": "O azul", **callback},
        {**route, "MediaUrl": "https://cdn.example.com/oi.ogg", **callback},
        {**route, "MediaUrl": "https://cdn.example.com/v.mp4", **callback},
        {**route, "MediaUrl": "https://cdn.example.com/nota.pdf", **callback},
        {**route, "ContentSid": CONTENT, "ContentVariables": '{"1":"Ana"}', **callback},
        {"channel": "whatsapp", "messageId": inbound},
    ]
    requests = gw.fake.requests
    assert sorted(str(r.params) for r in requests) == sorted(str(form) for form in expected)
    messages = [r for r in requests if r.route == "messages"]
    assert {(r.status, r.user, r.account_sid) for r in messages} == {(201, TWILIO_SID, TWILIO_SID)}
    assert [r.status for r in gw.fake.typing()] == [200]
    for i, form in enumerate(expected):
        [request] = [r for r in requests if r.params == form]
        delivery = await gw.sent(f"tw-{i}")
        assert delivery["message_id"] == request.sid  # None for the typing indicator
        assert (delivery["channel"], delivery["provider"]) == ("whatsapp", "twilio")
        assert delivery["conversation_id"] == conv(US_CONTACT)
    assert (await gw.sent("tw-0"))["message_id"].startswith("SM")


async def test_typing_answers_the_contacts_last_message_and_keeps_the_window(
    gw: Twilio,
) -> None:
    await gw.command("cold", conv(), type="typing")  # the contact has not written yet
    await gw.run()
    cold = await gw.delivery("cold", "sales")
    assert (cold["outcome"], cold["reason"]) == ("rejected", "window_closed")
    await gw.contact_writes(text="primeira")
    last = await gw.contact_writes(text="segunda")
    await gw.command("typing", conv(), type="typing")
    await gw.run()
    [request] = gw.fake.requests
    assert request.params == {"channel": "whatsapp", "messageId": last}
    await gw.sent("typing")


async def test_what_twilio_cannot_send_is_rejected_without_a_call(gw: Twilio) -> None:
    inbound = await gw.contact_writes()
    refused: list[tuple[str, dict[str, Any]]] = [
        ("interactive", {"text": "Qual?", "buttons": [{"id": "a", "title": "Azul"}]}),
        ("location", {"location": {"latitude": -23.56, "longitude": -46.65}}),
        ("reaction", {"text": "❤️", "reply_to": inbound}),
        ("read", {}),
        ("template", {"template": {"name": "order_ready", "language": "pt_BR"}}),
        ("image", {"media": {"id": "1857777774821032"}}),
        ("text", {"text": "x" * 1601}),
    ]
    for i, (kind, fields) in enumerate(refused):
        await gw.command(f"no-{i}", conv(), type=kind, **fields)
    await gw.command("still-fine", conv(), text="Temos sim")
    await gw.run()
    for i in range(len(refused)):
        delivery = await gw.delivery(f"no-{i}", "sales")
        assert (delivery["outcome"], delivery["reason"]) == ("rejected", "invalid_command")
    await gw.sent("still-fine")
    assert len(gw.fake.requests) == 1  # an invalid command never reached Twilio


# --- the WhatsApp rules on a Twilio number ------------------------------------------------------


async def test_outside_the_window_only_a_content_template_goes(gw: Twilio) -> None:
    # A contact who never wrote (US number: no cross-country rule from TWILIO_A).
    await gw.command("cold-text", conv(US_CONTACT), text="Olá")
    await gw.command("cold-template", conv(US_CONTACT), type="template",
                     template={"content_sid": CONTENT, "variables": {"1": "Ana"}})  # fmt: skip
    await gw.run()
    delivery = await gw.delivery("cold-text", "sales")
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "window_closed")
    await gw.sent("cold-template")
    [request] = gw.fake.requests
    assert request.param("ContentSid") == CONTENT


async def test_a_window_closes_24_hours_after_the_contacts_last_message(gw: Twilio) -> None:
    await gw.contact_writes(US_CONTACT)
    await gw.command("open", conv(US_CONTACT), text="Em que posso ajudar?")
    await gw.run()
    await gw.sent("open")
    await gw.close_window(US_CONTACT)
    await gw.command("closed", conv(US_CONTACT), text="Ainda aí?")
    await gw.run()
    delivery = await gw.delivery("closed", "sales")
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "window_closed")
    await gw.contact_writes(US_CONTACT)  # writing again opens it again
    await gw.command("reopened", conv(US_CONTACT), text="Sim!")
    await gw.run()
    await gw.sent("reopened")
    assert len(gw.fake.requests) == 2


async def test_a_brazilian_sender_cannot_start_a_conversation_abroad(gw: Twilio) -> None:
    template = {"content_sid": CONTENT, "variables": {"1": "Ana"}}
    await gw.command("abroad", conv(US_CONTACT, B), type="template", template=template)
    await gw.command("at-home", conv(BR_CONTACT, B), type="template", template=template)
    await gw.run()
    delivery = await gw.delivery("abroad", "support")
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "cross_country")
    await gw.sent("at-home", B)
    # A reply inside the window the contact opened is not business-initiated.
    await gw.contact_writes(US_CONTACT, B)
    await gw.command("reply", conv(US_CONTACT, B), text="Hello!")
    await gw.run()
    await gw.sent("reply", B)
    assert [r.to for r in gw.fake.requests] == [
        f"whatsapp:+{BR_CONTACT}",
        f"whatsapp:+{US_CONTACT}",
    ]


async def test_the_senders_rate_is_kept_and_shared_with_inbound_messages(gw: Twilio) -> None:
    # TWILIO_B is a coexistence sender: 20 messages a second, inbound ones included.
    for i in range(20):
        await gw.contact_writes(f"55119000001{i:02d}", B)
    await gw.command("after-inbound", conv("5511900000100", B), text="x")
    started = time.monotonic()
    await gw.run()
    assert time.monotonic() - started >= 0.5
    await gw.sent("after-inbound", B)
    for i in range(30):
        await gw.command(f"burst-{i}", conv(f"55119000001{i % 20:02d}", B), text=str(i))
    await gw.run()
    assert [d["outcome"] for d in await gw.deliveries("support")] == ["sent"] * 31
    assert len(gw.fake.requests) == 31
    assert gw.fake.peak_per_second(TWILIO_B) <= 20


async def test_a_contact_who_blocked_the_sender_gets_no_marketing(gw: Twilio) -> None:
    # A Brazilian sender and contact: templates do not cross a border.
    await gw.contact_writes(BR_CONTACT, B)
    marketing = {"content_sid": PROMO, "category": "marketing"}
    utility = {"content_sid": CONTENT, "variables": {"1": "Ana"}, "category": "utility"}
    gw.fake.fail(63014)
    await gw.command("m1", conv(BR_CONTACT, B), type="template", template=marketing)
    await gw.run()
    first = await gw.delivery("m1", "support")
    assert (first["outcome"], first["reason"], first["provider_code"]) == (
        "failed",
        "opted_out",
        63014,
    )
    await gw.command("m2", conv(BR_CONTACT, B), type="template", template=marketing)
    await gw.command("u1", conv(BR_CONTACT, B), type="template", template=utility)
    await gw.command("t1", conv(BR_CONTACT, B), text="Posso ajudar em algo?")
    await gw.run()
    assert (await gw.delivery("m2", "support"))["reason"] == "opted_out"
    await gw.sent("u1", B)
    await gw.sent("t1", B)
    assert len(gw.fake.requests) == 3  # m2 never reached Twilio
    await gw.contact_writes(BR_CONTACT, B)  # the contact writes again: the opt-out ends
    await gw.command("m3", conv(BR_CONTACT, B), type="template", template=marketing)
    await gw.run()
    await gw.sent("m3", B)


async def test_a_contact_who_sent_stop_gets_no_marketing_until_they_write(gw: Twilio) -> None:
    # 21610 (STOP) is an opt-out as WhatsApp's (CONTRACT §6.3): marketing refused before any
    # call, other sends still go (Twilio answers them itself).
    await gw.contact_writes(BR_CONTACT, B)
    marketing = {"content_sid": PROMO, "category": "marketing"}
    gw.fake.fail(21610)
    await gw.command("t1", conv(BR_CONTACT, B), text="Seu pedido saiu")
    await gw.run()
    first = await gw.delivery("t1", "support")
    assert (first["outcome"], first["reason"], first["provider_code"]) == (
        "failed",
        "opted_out",
        21610,
    )
    await gw.command("m1", conv(BR_CONTACT, B), type="template", template=marketing)
    await gw.command("t2", conv(BR_CONTACT, B), text="Chegou?")
    await gw.run()
    assert (await gw.delivery("m1", "support"))["reason"] == "opted_out"
    await gw.sent("t2", B)
    assert len(gw.fake.requests) == 2  # m1 never reached Twilio


# --- Twilio's errors ----------------------------------------------------------------------------


async def test_a_permanent_error_fails_with_its_code_and_is_not_retried(gw: Twilio) -> None:
    await gw.contact_writes()
    await gw.contact_writes(US_CONTACT)
    gw.fake.fail(63016, to=BR_CONTACT)
    gw.fake.fail(21211, to=US_CONTACT)
    await gw.command("late", conv(), text="Ainda aí?")
    await gw.command("bad-number", conv(US_CONTACT), text="Oi")
    await gw.run()
    assert [r.status for r in gw.fake.requests] == [400, 400]
    for command_id, code in (("late", 63016), ("bad-number", 21211)):
        delivery = await gw.delivery(command_id, "sales")
        assert (delivery["outcome"], delivery["reason"], delivery["provider_code"]) == (
            "failed",
            "provider_error",
            code,
        )


async def test_too_many_requests_are_retried_until_sent(gw: Twilio) -> None:
    await gw.contact_writes()
    gw.fake.fail(20429, times=2)
    await gw.command("busy", conv(), text="eventually")
    await gw.run()
    assert [r.status for r in gw.fake.requests] == [429, 429, 201]
    delivery = await gw.sent("busy")
    assert delivery["provider_code"] is None and delivery["message_id"] == gw.fake.requests[2].sid


async def test_a_429_retry_after_is_obeyed(gw: Twilio) -> None:
    await gw.contact_writes()
    gw.fake.fail(20429, retry_after=1)
    await gw.command("slow", conv(), text="x")
    await gw.run()
    first, second = gw.fake.requests
    assert second.arrived - first.arrived >= 1.0
    await gw.sent("slow")


async def test_a_throttled_sender_holds_back_all_its_messages(gw: Twilio) -> None:
    await gw.contact_writes()
    await gw.contact_writes(US_CONTACT)
    gw.fake.fail(63018, to=BR_CONTACT, retry_after=1)
    await gw.command("throttled", conv(), text="x")
    draining = asyncio.create_task(gw.run())
    [refused] = await gw.fake.wait_for(1)
    await asyncio.sleep(0.1)  # the sender has read Twilio's answer by now
    await gw.command("other", conv(US_CONTACT), text="y")  # another contact, same sender
    await draining
    assert (refused.to, refused.status) == (f"whatsapp:+{BR_CONTACT}", 400)
    [throttled] = gw.fake.sent_to(BR_CONTACT)
    [other] = gw.fake.sent_to(US_CONTACT)
    # Nothing left the sender within the second Twilio asked it to wait.
    assert throttled.arrived - refused.arrived >= 0.95
    assert other.arrived - refused.arrived >= 0.95
    await gw.sent("throttled")
    await gw.sent("other")


async def test_rejected_credentials_halt_the_sender_without_a_retry_storm(gw: Twilio) -> None:
    await gw.contact_writes()
    gw.fake.fail(20003, http_status=401, message="Authenticate")
    await gw.command("h1", conv(), text="x")
    await gw.command("h2", conv(), text="y")
    await gw.run()
    assert len(gw.fake.requests) == 1
    for command_id in ("h1", "h2"):
        delivery = await gw.delivery(command_id, "sales")
        assert (delivery["outcome"], delivery["provider_code"]) == ("failed", 20003)
    ready = await gw.client.get("/readyz")
    assert ready.status == 200  # webhooks are still taken
    assert (await ready.json())["accounts"] == {f"whatsapp:{A}": {"halted": "20003"}}
    # The other sender is not held back.
    await gw.contact_writes(BR_CONTACT, B)
    await gw.command("b-still-sends", conv(BR_CONTACT, B), text="z")
    await gw.run()
    await gw.sent("b-still-sends", B)


async def test_a_proxy_page_is_retried_and_a_2xx_without_a_sid_is_not(gw: Twilio) -> None:
    await gw.contact_writes()
    gw.fake.fail_status(502, b"<html><h1>502 Bad Gateway</h1></html>")
    await gw.command("proxied", conv(), text="x")
    await gw.run()
    assert [r.status for r in gw.fake.requests] == [502, 201]
    await gw.sent("proxied")
    gw.fake.fail_status(201, b"<html>queued?</html>")
    await gw.command("unclear", conv(), text="y")
    await gw.run()
    assert len(gw.fake.requests) == 3  # may have gone: never sent twice
    delivery = await gw.delivery("unclear", "sales")
    assert (delivery["outcome"], delivery["reason"]) == ("failed", "provider_error")


# --- one delivery per command, statuses back ---------------------------------------------------


async def test_a_repeated_command_id_is_sent_once(gw: Twilio) -> None:
    await gw.contact_writes()
    for _ in range(3):
        await gw.command("dup", conv(), text="only once")
    await gw.run()
    await gw.command("dup", conv(), text="only once")  # again, after it finished
    await gw.run()
    assert len(gw.fake.requests) == 1
    deliveries = [d for d in await gw.deliveries("sales") if d["command_id"] == "dup"]
    assert [d["duplicate"] for d in deliveries] == [False, True, True, True]
    assert {d["message_id"] for d in deliveries} == {gw.fake.requests[0].sid}


async def test_status_callbacks_come_back_as_status_events_naming_the_command(
    gw: Twilio,
) -> None:
    await gw.contact_writes()
    await gw.command("tracked", conv(), text="Seu pedido saiu")
    await gw.command("lost", conv(), text="E este?")
    await gw.run()
    tracked, lost = [(await gw.sent(c))["message_id"] for c in ("tracked", "lost")]
    for sid, status in ((tracked, "sent"), (tracked, "delivered"), (tracked, "read")):
        callback = await gw.fake.post_status(sid, status, to=gw.webhook)
        assert (callback.status, callback.body) == (
            200,
            '<?xml version="1.0" encoding="UTF-8"?><Response/>',
        )
    await gw.fake.post_status(tracked, "delivered", to=gw.webhook)  # redelivered, or late
    await gw.fake.post_status(lost, "undelivered", to=gw.webhook, error_code=63016)
    statuses = [e for e in await gw.events("sales") if e["kind"] == "status"]
    assert [(e["message_id"], e["status"]) for e in statuses] == [
        (tracked, "sent"),
        (tracked, "delivered"),
        (tracked, "read"),
        (lost, "failed"),
    ]
    for event in statuses:
        assert (event["channel"], event["provider"], event["account_id"]) == (
            "whatsapp",
            "twilio",
            A,
        )
        assert event["conversation_id"] == conv()
    assert [e["command_id"] for e in statuses] == ["tracked"] * 3 + ["lost"]
    assert [e["code"] for e in statuses[3]["errors"]] == [63016]
