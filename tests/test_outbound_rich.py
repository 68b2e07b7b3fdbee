"""Rich outbound messages end to end (issue #17): an assistant writes them with the typed
client's builders to its outbox → the gateway's decoder and policy → the Graph stand-in
(WhatsApp: list, CTA URL button, location request, contacts, sticker) or the Send API
stand-in (Messenger and Instagram: link buttons as a button template) → one `delivery` each.
What a platform cannot take is answered `rejected/invalid_command` with a detail, and no
provider request is made. Real Redis, real HTTP, workers in drain mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.state import OUTBOX
from gateway_client import Backend, Command
from gateway_client import commands as c
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import IG_A, NUMBER_A, PAGE_A, make_settings
from tests.fakes.send_api import FakeSendAPI
from tests.test_outbound import BOT_1_TOKEN, BR_CONTACT, Gateway, wa
from tests.test_outbound_meta import IG_TOKENS, IGSID, PSID, TOKENS, Meta, fb, insta

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

URL = "https://loja.example.com.br/pedidos/A1093?utm_source=whatsapp"
STICKER = "https://cdn.example.com/stickers/obrigado.webp"


@pytest.fixture
async def gw(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Gateway]:
    async with FakeGraphAPI({NUMBER_A: "token-a"}) as graph, FakeBotAPI([BOT_1_TOKEN]) as bot:
        settings = make_settings(
            redis_url,
            GRAPH_URL=graph.base_url,
            BOT_URL=bot.base_url,
            OUTBOUND_ENABLED="false",
            SEND_WAIT_MAX="5",
        )
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Gateway(client, app[OUTBOX], redis, graph, bot)


@pytest.fixture
async def meta(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Meta]:
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


async def send_all(
    gw: Gateway, built: list[Command], assistant: str = "support"
) -> list[dict[str, Any]]:
    """Write each command to the assistant's own outbox, drain, and return their deliveries
    in order."""
    backend = Backend(gw.redis, assistant)
    for command in built:
        await backend.send(command)
    await gw.run()
    return [await gw.delivery(command.command_id, assistant) for command in built]


SHIPPING = [
    c.section("Rápido", [c.row("express", "Sedex", "Amanhã"), c.row("pac", "PAC", "5 dias")]),
    c.section("Retirar", [c.row("store", "Na loja")]),
]


async def test_each_rich_kind_reaches_whatsapp(gw: Gateway) -> None:
    await gw.contact_writes()
    ana = c.contact_card(
        "Ana Souza", first_name="Ana", phones=[{"phone": "+55 11 98765-0000", "wa_id": BR_CONTACT}],
        emails=["ana@example.com"], company="Acme", birthday="1990-02-28",
    )  # fmt: skip
    built = [
        c.list_menu(wa(), "Como quer receber?", "Ver opções", SHIPPING, header="Entrega",
                    footer="Frete grátis acima de R$ 200", command_id="r-list"),
        c.link_button(wa(), "Acompanhe seu pedido", "Rastrear", URL, command_id="r-cta"),
        c.location_request(wa(), "Onde buscamos você?", command_id="r-where"),
        c.contacts(wa(), [ana, c.contact_card("Suporte Acme", phones=["+551130000000"])],
                   command_id="r-contacts"),
        c.sticker(wa(), url=STICKER, command_id="r-sticker"),
    ]  # fmt: skip
    deliveries = await send_all(gw, built)
    assert [(d["outcome"], d["reason"]) for d in deliveries] == [("sent", None)] * 5
    assert all(d["message_id"].startswith("wamid.") for d in deliveries)
    requests = gw.graph.requests
    assert [r.status for r in requests] == [200] * 5
    listed, cta, where, cards, sticker = (r.body for r in requests)
    assert listed["interactive"]["action"]["sections"][0]["rows"][0] == {
        "id": "express", "title": "Sedex", "description": "Amanhã"}  # fmt: skip
    assert listed["interactive"]["header"] == {"type": "text", "text": "Entrega"}
    assert cta["interactive"]["action"] == {
        "name": "cta_url", "parameters": {"display_text": "Rastrear", "url": URL}}  # fmt: skip
    assert where["interactive"]["type"] == "location_request_message"
    assert cards["contacts"][0]["phones"] == [{"phone": "+55 11 98765-0000", "wa_id": BR_CONTACT}]
    assert cards["contacts"][1] == {"name": {"formatted_name": "Suporte Acme"},
                                    "phones": [{"phone": "+551130000000"}]}  # fmt: skip
    assert sticker["sticker"] == {"link": STICKER}
    assert {r.body["biz_opaque_callback_data"] for r in requests} == {b.command_id for b in built}


async def test_over_a_limit_is_rejected_with_why_and_never_sent(gw: Gateway) -> None:
    await gw.contact_writes()
    eleven = [c.section("Tamanhos", [c.row(f"s{i}", f"Tamanho {i}") for i in range(11)])]
    built = [
        c.list_menu(wa(), "Qual tamanho?", "Tamanhos", eleven, command_id="x-rows"),
        c.list_menu(wa(), "Qual tamanho?", "Tamanhos", [c.section("S", [
            c.row("a", "Competitions / Hackathons")])], command_id="x-title"),
        c.buttons(wa(), "Links", [], links=[("A", URL), ("B", URL)], command_id="x-links"),
        c.contacts(wa(), [{"phones": [{"phone": "+1"}]}], command_id="x-card"),
        c.sticker(wa(), url="https://cdn.example.com/s/smile.png", command_id="x-png"),
    ]  # fmt: skip
    deliveries = await send_all(gw, built)
    assert [(d["outcome"], d["reason"]) for d in deliveries] == [
        ("rejected", "invalid_command")] * 5  # fmt: skip
    details = [d["detail"] for d in deliveries]
    assert "11 rows in all sections together; WhatsApp takes at most 10" in details[0]
    assert "rows[0].title is 25 characters; WhatsApp takes at most 24" in details[1]
    assert "one link button a message" in details[2]
    assert "contacts[0].name.formatted_name is required" in details[3]
    assert "'smile.png' is not a .webp" in details[4]
    assert gw.graph.requests == []


async def test_rich_messages_keep_to_the_24_hour_window(gw: Gateway) -> None:
    built = [c.list_menu(wa(), "Qual?", "Ver", SHIPPING, command_id="w-list"),
             c.location_request(wa(), "Onde?", command_id="w-where")]  # fmt: skip
    deliveries = await send_all(gw, built)
    assert [(d["outcome"], d["reason"]) for d in deliveries] == [("rejected", "window_closed")] * 2
    assert gw.graph.requests == []


async def test_link_buttons_reach_messenger_and_instagram_as_a_button_template(meta: Meta) -> None:
    await meta.contact_writes()
    await meta.contact_writes(IGSID, IG_A, channel="instagram")
    links = [("Rastrear", URL), ("Ajuda", "https://ajuda.example.com")]
    deliveries = await send_all(
        meta, [c.buttons(fb(), "Seu pedido saiu", [], links=links, command_id="m-links")]
    )
    deliveries += await send_all(
        meta, [c.link_button(insta(), "Seu pedido", "Rastrear", URL, command_id="i-link")], "sales"
    )
    assert [(d["outcome"], d["reason"]) for d in deliveries] == [("sent", None)] * 2
    messenger, instagram = meta.fake.requests
    assert (messenger.platform, messenger.account_id) == ("messenger", PAGE_A)
    assert messenger.body["recipient"] == {"id": PSID}
    payload = messenger.body["message"]["attachment"]["payload"]
    assert payload["template_type"] == "button" and payload["text"] == "Seu pedido saiu"
    assert [b["url"] for b in payload["buttons"]] == [URL, "https://ajuda.example.com"]
    assert instagram.platform == "instagram"
    assert instagram.body["message"]["attachment"]["payload"]["buttons"] == [
        {"type": "web_url", "url": URL, "title": "Rastrear"}]  # fmt: skip


async def test_what_messenger_cannot_send_is_refused_with_a_detail(meta: Meta) -> None:
    await meta.contact_writes()
    built = [
        c.list_menu(fb(), "Qual?", "Ver", SHIPPING, command_id="m-list"),
        c.location_request(fb(), "Onde?", command_id="m-where"),
        c.contacts(fb(), [c.contact_card("Ana")], command_id="m-card"),
        c.sticker(fb(), url=STICKER, command_id="m-sticker"),
    ]
    deliveries = await send_all(meta, built)
    assert [(d["outcome"], d["reason"]) for d in deliveries] == [
        ("rejected", "invalid_command")] * 4  # fmt: skip
    assert [d["detail"] for d in deliveries] == [
        "list: Messenger has no list message; send `interactive` with reply buttons instead",
        "location_request: Messenger cannot ask for a location with a button; ask for it in a "
        "`text`",
        "contacts: Messenger cannot send a contact card; send the details as a `text`",
        "sticker: Messenger sends no stickers; send the picture as an `image`",
    ]
    assert meta.fake.requests == []
