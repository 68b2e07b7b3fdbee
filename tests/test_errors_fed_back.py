"""Every error fed back (issue #17): a failure Meta or Twilio reports later, in a failed
`status` webhook, updates the send policy exactly as the same code in the answer to the send
does; `delivery` and `status` events quote the provider's own words (`provider_title`,
`provider_detail`, `fbtrace_id`, Telegram's `description`).

Each async case: a command is sent (the stand-in accepts it), the provider then posts a failed
status with the code (shaped as Meta or Twilio post it, signed), and the next command gets the
policy's answer without any call to the provider, while what the code leaves allowed (a
utility template, an in-window reply) still goes. Real Redis (a cluster too), real HTTP,
workers in drain mode. The classify tables get property tests at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from adapters.schema import EFFECT_VERDICTS, Verdict
from adapters.telegram import _outbound as telegram_out
from adapters.twilio import _outbound as twilio_out
from adapters.whatsapp import _outbound as whatsapp_out
from gateway.app import create_app
from gateway.config import Settings
from gateway.state import OUTBOX
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from router.keys import inbox
from tests.conftest import (
    NUMBER_A,
    TWILIO_A,
    TWILIO_SID,
    TWILIO_TOKEN,
    change,
    envelope,
    make_settings,
    stream,
    twilio_post,
    wa_body,
    wa_headers,
)
from tests.fakes.twilio_api import FakeTwilioAPI, inbound_message
from tests.test_outbound import BOT_1_TOKEN, BOT_2_TOKEN, Gateway, tg

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

US = "14155550100"
"""A contact in the number's own country (NUMBER_A is +1 555): templates cross no border."""
GB = "447700900123"
DISPLAY = "15550001111"
UTILITY = {"name": "order_ready", "language": "en_US", "components": [], "category": "utility"}
MARKETING = {**UTILITY, "name": "promo", "category": "marketing"}
VERDICTS = set(Verdict.__args__)  # type: ignore[attr-defined]


def wa(contact: str = US) -> str:
    return f"whatsapp:{NUMBER_A}:{contact}"


class Meta(Gateway):
    """`Gateway` plus what Meta posts later: failed statuses of the messages it accepted."""

    async def status(
        self, message_id: str, status: str = "failed", code: int | None = None, ago_s: int = 0
    ) -> None:
        stamp = int(time.time()) - ago_s
        item = self.graph.status_item(message_id, status, error_code=code, timestamp=stamp)
        body = wa_body(envelope(change(NUMBER_A, DISPLAY, statuses=[item])))
        resp = await self.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
        assert resp.status == 200

    async def sent(self, command_id: str, conversation: str, **fields: Any) -> str:
        """Send one command; its provider message id (it must have gone)."""
        calls = len(self.graph.requests)
        await self.command(command_id, conversation, **fields)
        await self.run()
        delivery = await self.delivery(command_id)
        assert (delivery["outcome"], len(self.graph.requests)) == ("sent", calls + 1), delivery
        message_id: str = delivery["message_id"]
        return message_id

    async def answer(self, command_id: str, conversation: str, **fields: Any) -> dict[str, Any]:
        """Send one command and expect no call to the provider; its delivery."""
        calls = len(self.graph.requests)
        await self.command(command_id, conversation, **fields)
        await self.run()
        assert len(self.graph.requests) == calls, "the provider was called"
        return await self.delivery(command_id)

    async def statuses(self) -> list[dict[str, Any]]:
        return [e for e in await stream(self.redis, inbox("support")) if e["kind"] == "status"]


def with_policy(settings: Settings, **policy: Any) -> Settings:
    return msgspec.structs.replace(
        settings, policy=msgspec.structs.replace(settings.policy, **policy)
    )


@pytest.fixture
def policy() -> dict[str, Any]:
    """Policy keys a test overrides (before the gateway starts)."""
    return {}


@pytest.fixture
async def gw(
    aiohttp_client: Any, redis: Redis, redis_url: str, policy: dict[str, Any]
) -> AsyncIterator[Meta]:
    tokens = {NUMBER_A: "token-a"}
    async with FakeGraphAPI(tokens) as graph, FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot:
        settings = make_settings(
            redis_url,
            GRAPH_URL=graph.base_url,
            BOT_URL=bot.base_url,
            OUTBOUND_ENABLED="false",
            SEND_WAIT_MAX="5",
        )
        app = create_app(with_policy(settings, **policy), redis_url)
        client = await aiohttp_client(app)
        yield Meta(client, app[OUTBOX], redis, graph, bot)


def refused(delivery: dict[str, Any], reason: str) -> None:
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", reason), delivery


# --- failed statuses feed the policy ----------------------------------------------------------


async def test_a_marketing_opt_out_in_a_status_refuses_marketing_templates(gw: Meta) -> None:
    await gw.contact_writes(US)
    promo = await gw.sent("m1", wa(), type="template", template=MARKETING)
    await gw.status(promo, code=131050)
    refused(await gw.answer("m2", wa(), type="template", template=MARKETING), "opted_out")
    await gw.sent("u1", wa(), type="template", template=UTILITY)  # utility still goes
    await gw.sent("t1", wa(), text="Your order is on its way")  # and in-window replies
    await gw.contact_writes(US)  # the contact writes again: the opt-out ends
    await gw.sent("m3", wa(), type="template", template=MARKETING)


@pytest.mark.parametrize("policy", [{"marketing_hold_seconds": 2}])
async def test_the_marketing_cap_in_a_status_holds_marketing_for_the_configured_time(
    gw: Meta,
) -> None:
    promo = await gw.sent("m1", wa(), type="template", template=MARKETING)
    await gw.status(promo, code=131049)
    held = await gw.answer("m2", wa(), type="template", template=MARKETING)
    refused(held, "held")
    await gw.sent("u1", wa(), type="template", template=UTILITY)  # only marketing is held
    await gw.contact_writes(US)
    refused(await gw.answer("m3", wa(), type="template", template=MARKETING), "held")
    await asyncio.sleep(2.2)  # the configured hold is over
    await gw.sent("m4", wa(), type="template", template=MARKETING)


async def test_the_marketing_cap_holds_a_day_by_default(gw: Meta) -> None:
    promo = await gw.sent("m1", wa(), type="template", template=MARKETING)
    await gw.status(promo, code=131049)
    refused(await gw.answer("m2", wa(), type="template", template=MARKETING), "held")
    state = await gw.redis.hget(f"gw:cv:{{{inbox('support')}}}:{wa()}", "mh")  # type: ignore[misc]
    until = int(state.split(b":")[0])
    assert abs(until - (time.time() + 86400)) < 10 and state.endswith(b":131049")


async def test_an_undeliverable_contact_is_held_until_it_writes(gw: Meta) -> None:
    await gw.contact_writes(US)
    reply = await gw.sent("t1", wa(), text="Hello!")
    await gw.status(reply, code=131026)
    # Nothing loops on a number that cannot receive: not a reply, not a template.
    refused(await gw.answer("t2", wa(), text="Are you there?"), "undeliverable")
    refused(await gw.answer("u1", wa(), type="template", template=UTILITY), "undeliverable")
    await gw.contact_writes(US)  # it can be reached after all
    await gw.sent("t3", wa(), text="Welcome back")


@pytest.mark.parametrize("policy", [{"undeliverable_hold_seconds": 1}])
async def test_the_undeliverable_hold_lasts_the_configured_time(gw: Meta) -> None:
    template = await gw.sent("u1", wa(), type="template", template=UTILITY)
    await gw.status(template, code=131026)
    refused(await gw.answer("u2", wa(), type="template", template=UTILITY), "undeliverable")
    await asyncio.sleep(1.2)
    await gw.sent("u3", wa(), type="template", template=UTILITY)


async def test_a_closed_window_in_a_status_needs_a_template_until_the_contact_writes(
    gw: Meta,
) -> None:
    await gw.contact_writes(US, ago_s=60)  # the gateway thinks the window is open
    reply = await gw.sent("t1", wa(), text="Here is your code")
    await gw.status(reply, code=131047, ago_s=5)  # Meta says it is not
    refused(await gw.answer("t2", wa(), text="Hello?"), "window_closed")
    refused(await gw.answer("r1", wa(), type="typing"), "window_closed")
    await gw.sent("u1", wa(), type="template", template=UTILITY)  # a template still goes
    await gw.contact_writes(US, ago_s=0)  # a new message opens the window again
    await gw.sent("t3", wa(), text="Thanks for writing")


async def test_a_marketing_experiment_fails_that_message_only(gw: Meta) -> None:
    promo = await gw.sent("m1", wa(), type="template", template=MARKETING)
    await gw.status(promo, code=130472)
    await gw.sent("m2", wa(), type="template", template=MARKETING)


async def test_a_country_block_in_a_status_refuses_that_country(gw: Meta) -> None:
    template = await gw.sent("u1", wa(GB), type="template", template=UTILITY)
    await gw.status(template, code=130497)
    refused(await gw.answer("u2", wa(GB), type="template", template=UTILITY), "cross_country")
    await gw.sent("u3", wa(US), type="template", template=UTILITY)  # another country goes


async def test_an_account_error_in_a_status_halts_the_number(gw: Meta) -> None:
    await gw.contact_writes(US)
    reply = await gw.sent("t1", wa(), text="hi")
    await gw.status(reply, code=131005)
    halted = await gw.answer("t2", wa(), text="anyone?")
    assert (halted["outcome"], halted["reason"], halted["provider_code"]) == (
        "failed",
        "provider_error",
        131005,
    )


async def test_a_redelivered_failed_status_leaves_no_second_mark(gw: Meta) -> None:
    await gw.contact_writes(US)
    reply = await gw.sent("t1", wa(), text="Hello!")
    await gw.status(reply, code=131026)
    await gw.contact_writes(US)  # the hold ends
    await gw.status(reply, code=131026)  # Meta retries the same webhook
    await gw.sent("t2", wa(), text="Still here")
    assert len([s for s in await gw.statuses() if s["status"] == "failed"]) == 1


async def test_a_late_status_of_an_older_send_does_not_close_a_newer_window(gw: Meta) -> None:
    reply = await gw.sent("u1", wa(), type="template", template=UTILITY)
    await gw.contact_writes(US, ago_s=0)
    # Meta's failure happened before the contact wrote: the window the message opened holds.
    item_time = int(time.time()) - 120
    item = gw.graph.status_item(reply, error_code=131047, timestamp=item_time)
    body = wa_body(envelope(change(NUMBER_A, DISPLAY, statuses=[item])))
    assert (await gw.client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))).ok
    await gw.sent("t1", wa(), text="Got it")


# --- the same codes in the answer to a send ----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "then", "reason"),
    [
        (131049, {"type": "template", "template": MARKETING}, "held"),
        (131026, {"text": "again?"}, "undeliverable"),
        (131047, {"text": "again?"}, "window_closed"),
        (131050, {"type": "template", "template": MARKETING}, "opted_out"),
    ],
)
async def test_an_answer_leaves_the_same_mark_as_a_status(
    gw: Meta, code: int, then: dict[str, Any], reason: str
) -> None:
    await gw.contact_writes(US)
    gw.graph.fail(code)
    await gw.command("c1", wa(), type="template", template=MARKETING)
    await gw.run()
    failed = await gw.delivery("c1")
    assert (failed["outcome"], failed["provider_code"]) == ("failed", code)
    refused(await gw.answer("c2", wa(), **then), reason)


# --- what the events say ------------------------------------------------------------------------


async def test_a_failed_delivery_quotes_meta_for_its_support(gw: Meta) -> None:
    await gw.contact_writes(US)
    gw.graph.fail(131049)
    await gw.command("c1", wa(), type="template", template=MARKETING)
    await gw.run()
    delivery = await gw.delivery("c1")
    answer = gw.graph.requests[-1].response["error"]
    assert delivery["provider_title"] == answer["message"]
    assert delivery["provider_detail"] == answer["error_data"]["details"]
    assert delivery["fbtrace_id"] == answer["fbtrace_id"] and delivery["fbtrace_id"]
    assert delivery["description"] is None
    assert delivery["detail"].startswith("(#131049)")  # kept, as before


async def test_the_words_are_null_where_there_are_none(gw: Meta) -> None:
    await gw.contact_writes(US)
    await gw.sent("t1", wa(), text="hi")
    await gw.status((await gw.delivery("t1"))["message_id"], "delivered")
    delivery = await gw.delivery("t1")
    [status] = await gw.statuses()
    for event in (delivery, status):
        for key in ("provider_title", "provider_detail", "fbtrace_id", "description"):
            assert key in event and event[key] is None


async def test_a_failed_status_quotes_the_error(gw: Meta) -> None:
    reply = await gw.sent("u1", wa(), type="template", template=UTILITY)
    await gw.status(reply, code=131026)
    [status] = await gw.statuses()
    assert status["errors"] == [{"code": 131026, "title": "Message Undeliverable"}]
    assert status["provider_title"] == "Message Undeliverable"
    assert status["provider_detail"].startswith("Unable to deliver message.")
    assert (status["fbtrace_id"], status["description"], status["command_id"]) == (
        None,
        None,
        "u1",
    )


async def test_a_token_meta_quotes_back_never_reaches_the_delivery(gw: Meta) -> None:
    await gw.contact_writes(US)
    gw.graph.fail(190, message="Malformed access token token-a", details="token-a is bad")
    await gw.command("c1", wa(), text="hi")
    await gw.run()
    delivery = await gw.delivery("c1")
    said = json.dumps(delivery)
    assert "token-a" not in said and "<redacted>" in delivery["provider_title"]


async def test_a_telegram_failure_quotes_its_description(gw: Meta) -> None:
    await gw.tg_user_writes()
    gw.bot.fail(400, "Bad Request: message thread not found")
    await gw.command("c1", tg(), text="hi", thread_id="77")
    await gw.run()
    delivery = await gw.delivery("c1")
    assert delivery["description"] == "Bad Request: message thread not found"
    assert (delivery["provider_title"], delivery["fbtrace_id"]) == (None, None)


# --- Twilio's status callbacks ------------------------------------------------------------------

SENDER = TWILIO_A.lstrip("+")


class Twilio(Meta):
    api: FakeTwilioAPI

    async def writes(self, contact: str = US) -> None:
        """The contact wrote a minute ago (Twilio gives no time: its message is stamped on
        arrival, and this one arrived a minute before the rest of the test)."""
        body, headers = twilio_post(inbound_message(TWILIO_SID, SENDER, contact, "oi"))
        assert (await self.client.post("/webhooks/twilio", data=body, headers=headers)).ok
        key = f"gw:cv:{{{inbox('sales')}}}:whatsapp:{SENDER}:{contact}"
        await self.redis.hset(key, "t", str(int(time.time()) - 60))  # type: ignore[misc]

    async def callback(self, command_id: str, code: int, status: str = "undelivered") -> None:
        delivery = await self.delivery(command_id, "sales")
        url = str(self.client.make_url("/webhooks/twilio"))
        answer = await self.api.post_status(delivery["message_id"], status, to=url, error_code=code)
        assert answer.status == 200

    async def twilio(self, command_id: str, **fields: Any) -> dict[str, Any]:
        calls = len(self.api.requests)
        await self.command(command_id, f"whatsapp:{SENDER}:{US}", **fields)
        await self.run()
        delivery = await self.delivery(command_id, "sales")
        delivery["called"] = len(self.api.requests) - calls
        return delivery


@pytest.fixture
async def tw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Twilio]:
    async with FakeTwilioAPI(TWILIO_SID, TWILIO_TOKEN, senders=[TWILIO_A]) as api:
        settings = make_settings(
            redis_url, TWILIO_API=api.url, OUTBOUND_ENABLED="false", SEND_WAIT_MAX="5"
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        twilio = Twilio(client, app[OUTBOX], redis, None, None)  # type: ignore[arg-type]
        twilio.api = api
        yield twilio


PROMO = {"content_sid": "HX" + "fedcba9876543210" * 2, "category": "marketing"}
NOTICE = {"content_sid": "HX" + "0123456789abcdef" * 2, "category": "utility"}


@pytest.mark.parametrize(
    ("code", "then", "reason", "allowed"),
    [
        (63014, {"type": "template", "template": PROMO}, "opted_out", {"text": "ok"}),
        (21610, {"type": "template", "template": PROMO}, "opted_out", {"text": "ok"}),
        (63049, {"type": "template", "template": PROMO}, "held", {"text": "ok"}),
        (63016, {"text": "hello?"}, "window_closed", {"type": "template", "template": NOTICE}),
        (63024, {"text": "hello?"}, "undeliverable", None),
    ],
)
async def test_a_twilio_status_callback_feeds_the_policy(
    tw: Twilio, code: int, then: dict[str, Any], reason: str, allowed: dict[str, Any] | None
) -> None:
    await tw.writes()
    first = await tw.twilio("c1", type="template", template=PROMO)
    assert (first["outcome"], first["called"]) == ("sent", 1)
    await tw.callback("c1", code)
    status = [e for e in await stream(tw.redis, inbox("sales")) if e["kind"] == "status"][-1]
    assert (status["status"], status["errors"][0]["code"]) == ("failed", code)
    assert status["provider_title"]  # Twilio's ChannelStatusMessage, for its support
    answer = await tw.twilio("c2", **then)
    assert (answer["outcome"], answer["reason"], answer["called"]) == ("rejected", reason, 0)
    if allowed is not None:  # what the code leaves allowed still goes
        assert (await tw.twilio("c3", **allowed))["outcome"] == "sent"


# --- the classify tables: any code, exactly one class, never an exception ---------------------

codes = st.integers(-(2**63), 2**63 - 1)


def _one_class(verdict_of: Callable[[int], str | None], code: int) -> None:
    verdict = verdict_of(code)
    assert verdict is None or verdict in VERDICTS


@given(codes)
def test_every_whatsapp_code_has_exactly_one_class(code: int) -> None:
    _one_class(whatsapp_out.verdict_for_code, code)
    tables = [whatsapp_out._RETRY, whatsapp_out._HALT, whatsapp_out._FAILED, whatsapp_out._SPECIAL]
    assert sum(code in table for table in tables) <= 1
    if not any(code in table for table in tables):
        assert whatsapp_out.verdict_for_code(code) == "failed"  # unknown codes stay failed


@given(codes)
def test_every_twilio_code_has_at_most_one_class(code: int) -> None:
    _one_class(twilio_out.verdict_for, code)
    tables = [
        twilio_out._RETRY,
        twilio_out._RETRY_ACCOUNT,
        twilio_out._HALT,
        twilio_out._OPTED_OUT,
        twilio_out._FAILED,
        twilio_out._MARKS,
    ]
    assert sum(code in table for table in tables) <= 1


@given(codes)
def test_every_telegram_code_has_exactly_one_class(code: int) -> None:
    _one_class(telegram_out._verdict_for_code, code)


@given(st.integers(100, 999), st.integers(-(2**63), 2**63 - 1), st.text(max_size=40))
def test_whatsapp_answers_with_any_code_classify_and_quote(
    status: int, code: int, text: str
) -> None:
    body = json.dumps({"error": {"code": code, "message": text, "fbtrace_id": text}}).encode()
    result = whatsapp_out.classify(status, body)
    assert result.verdict == whatsapp_out.verdict_for_code(code)
    assert result.provider_title == (text[:500] or None)
    assert result.fbtrace_id == (text[:100] or None)


def test_the_effect_verdicts_are_verdicts() -> None:
    assert EFFECT_VERDICTS <= VERDICTS


def test_twilio_callbacks_are_classified_with_the_answer_table() -> None:
    from adapters.twilio import parse

    for code, verdict in twilio_out._MARKS.items():
        form = {
            "MessageSid": "SM" + "1" * 32,
            "MessageStatus": "undelivered",
            "ErrorCode": str(code),
            "From": f"whatsapp:{TWILIO_A}",
            "To": f"whatsapp:+{US}",
        }
        [routed] = parse(urllib.parse.urlencode(form).encode(), 1767225600).events
        assert routed.verdict == verdict
