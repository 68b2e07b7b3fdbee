"""Telegram's rich command types (issue #17): `sticker` → sendSticker, `contacts` → sendContact
(one card; what its three fields cannot hold goes as a vCard), `location_request` → a
location button, `list` → a callback button a row. What Telegram would refuse is refused
first, with a detail; the platforms that really lack a type say what to send instead, and
that works there. Tables for the adapter, properties for lists and vCards, and end to end
through the gateway to the Bot API stand-in."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from adapters.channel import CHANNELS
from adapters.rich import RICH_TYPES, ContactCard
from adapters.schema import Command, InvalidCommand
from adapters.telegram import build_request
from adapters.telegram._rich import vcard
from gateway.app import create_app
from gateway.state import OUTBOX
from gateway_client import commands as client_commands
from gateway_demo.standins import _bot_methods
from gateway_demo.standins.bot_api import FakeBotAPI
from tests.adapters.test_channels import ACCOUNTS
from tests.adapters.test_telegram_gateway import ANA, ANA_CHAT, BUSINESS, GROUP, TOKEN, Telegram
from tests.conftest import make_settings, stream

BOT = "7000000001"
CHAT = "123456789"
STICKER_ID = "CAACAgIAAxkBAAEBq2Fm3hK9Tz1pQmN0"
STICKER_URL = "https://cdn.example.com/stickers/obrigado.webp"
SHIPPING = {
    "button": "Shipping options",
    "header": "Choose shipping",
    "footer": "Prices include tax",
    "sections": [
        {"title": "Fast", "rows": [
            {"id": "express", "title": "Priority Mail Express", "description": "Next day"},
            {"id": "priority", "title": "Priority Mail"}]},
        {"title": "Cheap", "rows": [{"id": "ground", "title": "Ground", "description": ""}]},
    ],
}  # fmt: skip
ANA_CARD = {
    "name": {"formatted_name": "Ana Souza", "first_name": "Ana", "last_name": "Souza"},
    "phones": [{"phone": "+55 11 98765-0000", "type": "CELL", "wa_id": "5511987650000"},
               {"phone": "+55 11 3333-0000", "type": "WORK"}],
    "emails": [{"email": "ana@example.com", "type": "WORK"}],
    "urls": [{"url": "https://example.com/ana"}],
    "addresses": [{"street": "Rua Augusta, 500", "city": "São Paulo", "country_code": "BR",
                   "type": "WORK"}],
    "org": {"company": "Acme; Brasil", "department": "Compras", "title": "Buyer"},
    "birthday": "1990-02-28",
}  # fmt: skip
ANA_VCARD = "\r\n".join([
    "BEGIN:VCARD", "VERSION:3.0", "N:Souza;Ana;;;", "FN:Ana Souza",
    "ORG:Acme\\; Brasil;Compras", "TITLE:Buyer",
    "TEL;TYPE=CELL:+55 11 98765-0000", "TEL;TYPE=WORK:+55 11 3333-0000",
    "EMAIL;TYPE=WORK:ana@example.com", "URL:https://example.com/ana",
    "ADR;TYPE=WORK:;;Rua Augusta\\, 500;São Paulo;;;BR", "BDAY:1990-02-28", "END:VCARD",
])  # fmt: skip


def cmd(type_: str, **fields: Any) -> Command:
    """A command as the outbox holds it: JSON decoded by the gateway's own decoder."""
    raw = {"command_id": "c-1", "conversation_id": f"telegram:{BOT}:{CHAT}", "type": type_,
           **fields}  # fmt: skip
    return msgspec.json.decode(json.dumps(raw), type=Command)


def call(command: Command, chat: str = CHAT, business: str | None = None) -> tuple[str, Any]:
    """The Bot API method and parameters, after checking the stand-in takes the parameters."""
    request = build_request(command, chat, business)
    method = request.path.removeprefix("/")
    problem = _bot_methods.check(method, request.body)
    assert problem is None, problem
    assert _bot_methods.check_private_buttons(request.body, int(chat)) is None
    return method, request.body


def _location_keys(label: str) -> dict[str, Any]:
    return {"keyboard": [[{"text": label, "request_location": True}]],
            "one_time_keyboard": True, "resize_keyboard": True}  # fmt: skip


# -- command → Bot API call ----------------------------------------------------------------------

SENT: dict[str, tuple[Command, str, dict[str, Any]]] = {
    "sticker by file_id": (
        cmd("sticker", media={"id": STICKER_ID}), "sendSticker", {"sticker": STICKER_ID}),
    "sticker by a .webp URL": (
        cmd("sticker", media={"url": STICKER_URL}), "sendSticker", {"sticker": STICKER_URL}),
    "sticker URL naming no file type": (
        cmd("sticker", media={"url": "https://cdn.example.com/s/42?v=2"}), "sendSticker",
        {"sticker": "https://cdn.example.com/s/42?v=2"}),
    "contact: name and one phone": (
        cmd("contacts", contacts=[{"name": {"formatted_name": "Ana Souza", "first_name": "Ana",
                                            "last_name": "Souza"},
                                   "phones": [{"phone": "+55 11 98765-0000"}]}]),
        "sendContact",
        {"phone_number": "+55 11 98765-0000", "first_name": "Ana", "last_name": "Souza"}),
    "contact: only a formatted name": (
        cmd("contacts", contacts=[{"name": {"formatted_name": "Loja Centro"},
                                   "phones": [{"phone": "+55 11 3333-0000"}]}]),
        "sendContact", {"phone_number": "+55 11 3333-0000", "first_name": "Loja Centro"}),
    "contact: the rest of the card as a vCard": (
        cmd("contacts", contacts=[ANA_CARD]), "sendContact",
        {"phone_number": "+55 11 98765-0000", "first_name": "Ana", "last_name": "Souza",
         "vcard": ANA_VCARD}),
    "location request": (
        cmd("location_request", text="Where should we deliver?"), "sendMessage",
        {"text": "Where should we deliver?", "reply_markup": _location_keys("Send location")}),
    "location request naming its button": (
        cmd("location_request", text="Onde entregamos?",
            keyboard={"buttons": [["📍 Enviar localização"]], "one_time": False}),
        "sendMessage",
        {"text": "Onde entregamos?", "reply_markup": _location_keys("📍 Enviar localização")}),
    "list": (
        cmd("list", text="How should we ship it?", menu=SHIPPING), "sendMessage",
        {"text": "Choose shipping\n\nHow should we ship it?\n\nPrices include tax",
         "reply_markup": {"inline_keyboard": [
             [{"text": "Priority Mail Express — Next day", "callback_data": "express"}],
             [{"text": "Priority Mail", "callback_data": "priority"}],
             [{"text": "Ground", "callback_data": "ground"}]]}}),
    "list without header or footer": (
        cmd("list", text="Pick one", menu={"sections": [{"rows": [{"id": "a", "title": "A"}]}]}),
        "sendMessage",
        {"text": "Pick one",
         "reply_markup": {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}}),
}  # fmt: skip


@pytest.mark.parametrize(("command", "method", "params"), SENT.values(), ids=list(SENT))
def test_each_rich_type_is_one_bot_api_call(
    command: Command, method: str, params: dict[str, Any]
) -> None:
    assert call(command) == (method, {"chat_id": int(CHAT), **params})


@pytest.mark.parametrize(
    "command",
    [cmd("sticker", media={"id": STICKER_ID}), cmd("contacts", contacts=[ANA_CARD])],
    ids=["sendSticker", "sendContact"],
)
def test_stickers_and_contacts_quote_go_into_topics_and_through_businesses(
    command: Command,
) -> None:
    fields = msgspec.structs.replace(command, reply_to="77", thread_id="5102")
    _, body = call(fields, business=BUSINESS)
    assert body["reply_parameters"] == {"message_id": 77}
    assert (body["message_thread_id"], body["business_connection_id"]) == (5102, BUSINESS)


def test_a_sticker_may_carry_a_reply_keyboard() -> None:
    keyboard = {"buttons": [["Thanks!"]], "one_time": True}
    _, body = call(cmd("sticker", media={"id": STICKER_ID}, keyboard=keyboard))
    assert body["reply_markup"] == {"keyboard": [[{"text": "Thanks!"}]], "one_time_keyboard": True}


# -- what Telegram would refuse is refused first -------------------------------------------------

_TWO_SECTIONS_OF_SIX = {"sections": [{"rows": [{"id": f"{s}{i}", "title": f"{s}{i}"}
                                               for i in range(6)]} for s in "ab"]}  # fmt: skip
_MANY_ADDRESSES = {**ANA_CARD, "addresses": [{"street": "Rua Augusta, " + str(n), "city": "São "
                   "Paulo", "state": "SP", "zip": "01304-000", "country": "Brasil"}
                   for n in range(40)]}  # fmt: skip

REFUSED: dict[str, tuple[Command, str, str]] = {
    "sticker without media": (
        cmd("sticker"), CHAT, "sticker: Telegram sends a sticker by media.id"),
    "sticker with url and id": (
        cmd("sticker", media={"id": STICKER_ID, "url": STICKER_URL}), CHAT, "give exactly one"),
    "sticker with a caption": (
        cmd("sticker", media={"id": STICKER_ID}, text="Obrigado!"), CHAT, "carries no caption"),
    "sticker from an ftp URL": (
        cmd("sticker", media={"url": "ftp://cdn.example.com/s.webp"}), CHAT,
        "media.url must be an http or https URL"),
    "sticker URL with a space": (
        cmd("sticker", media={"url": "https://cdn.example.com/a b.webp"}), CHAT,
        "must be an http or https URL"),
    "animated sticker by URL": (
        cmd("sticker", media={"url": "https://cdn.example.com/s/dance.tgs"}), CHAT,
        "only .webp stickers from a URL; send the .tgs sticker by media.id"),
    "video sticker by URL": (
        cmd("sticker", media={"url": "https://cdn.example.com/s/wave.WEBM"}), CHAT,
        "send the .webm sticker by media.id"),
    "png sticker by URL": (
        cmd("sticker", media={"url": "https://cdn.example.com/s/hi.png"}), CHAT,
        "stickers by URL are .webp images; 'hi.png' is not"),
    "no card": (cmd("contacts"), CHAT, "one contact card a message, got 0"),
    "two cards": (
        cmd("contacts", contacts=[ANA_CARD, ANA_CARD]), CHAT,
        "Telegram sends one contact card a message, got 2; send each card as a `contacts`"),
    "card without a name": (
        cmd("contacts", contacts=[{"phones": [{"phone": "+1 555 0100"}]}]), CHAT,
        "contacts[0].name.formatted_name is required"),
    "card with a blank name": (
        cmd("contacts", contacts=[{"name": {"formatted_name": " "},
                                   "phones": [{"phone": "+1"}]}]), CHAT,
        "name.formatted_name is required"),
    "card without a phone": (
        cmd("contacts", contacts=[{"name": {"formatted_name": "Ana"},
                                   "emails": [{"email": "ana@example.com"}]}]), CHAT,
        "Telegram's contact needs a phone number; contacts[0].phones is empty"),
    "blank email": (
        cmd("contacts", contacts=[{**ANA_CARD, "emails": [{"email": " "}]}]), CHAT,
        "contacts[0].emails[0].email must not be blank"),
    "birthday not a day": (
        cmd("contacts", contacts=[{**ANA_CARD, "birthday": "1990-02-30"}]), CHAT,
        "birthday '1990-02-30' is not a date"),
    "birthday as an ISO week": (
        cmd("contacts", contacts=[{**ANA_CARD, "birthday": "1990-W09-3"}]), CHAT,
        "is not a date (YYYY-MM-DD)"),
    "vCard over 2048 bytes": (
        cmd("contacts", contacts=[_MANY_ADDRESSES]), CHAT, "Telegram takes at most 2048"),
    "location request without text": (
        cmd("location_request"), CHAT, "location_request: text is required"),
    "location request, blank text": (
        cmd("location_request", text=" \n"), CHAT, "must not be blank"),
    "location request, text too long": (
        cmd("location_request", text="x" * 4097), CHAT, "longer than 4096"),
    "location request to a group": (
        cmd("location_request", text="Where?"), str(GROUP),
        "location button in private chats only; in a group ask for the location in a `text`"),
    "location request naming two buttons": (
        cmd("location_request", text="Where?", keyboard={"buttons": [["Here"], ["There"]]}),
        CHAT, "`keyboard` may only name it (one button"),
    "location request removing the keyboard": (
        cmd("location_request", text="Where?", keyboard={"remove": True}), CHAT,
        "its keyboard is the location button"),
    "location button with a blank text": (
        cmd("location_request", text="Where?", keyboard={"buttons": [[" "]]}), CHAT,
        "the location button's text must not be blank"),
    "list without a menu": (cmd("list", text="Pick"), CHAT, "list: menu (its sections of rows)"),
    "list without sections": (
        cmd("list", text="Pick", menu={"button": "Open"}), CHAT, "needs at least one section"),
    "list with an empty section": (
        cmd("list", text="Pick", menu={"sections": [{"rows": [{"id": "a", "title": "A"}]},
                                                    {"title": "Later", "rows": []}]}), CHAT,
        "menu.sections[1] has no rows"),
    "list of 12 rows": (
        cmd("list", text="Pick", menu=_TWO_SECTIONS_OF_SIX), CHAT,
        "12 rows in all sections together; Telegram gets at most 10"),
    "list with a repeated id": (
        cmd("list", text="Pick", menu={"sections": [
            {"rows": [{"id": "a", "title": "A"}]}, {"rows": [{"id": "a", "title": "B"}]}]}),
        CHAT, "row ids must be unique (repeated: 'a')"),
    "list row id of 65 bytes": (
        cmd("list", text="Pick", menu={"sections": [{"rows": [{"id": "é" * 32 + "x",
                                                               "title": "A"}]}]}), CHAT,
        "menu.sections[0].rows[0].id must be 1-64 bytes of UTF-8 (Telegram's callback_data)"),
    "list row without an id": (
        cmd("list", text="Pick", menu={"sections": [{"rows": [{"title": "A"}]}]}), CHAT,
        "rows[0].id must be 1-64 bytes"),
    "list row with a blank title": (
        cmd("list", text="Pick", menu={"sections": [{"rows": [{"id": "a", "title": " "}]}]}),
        CHAT, "menu.sections[0].rows[0].title must not be blank"),
    "list with a blank header": (
        cmd("list", text="Pick", menu={**SHIPPING, "header": "  "}), CHAT,
        "menu.header must not be blank (leave it out instead)"),
    "list body blank": (cmd("list", text="", menu=SHIPPING), CHAT, "list: text is required"),
    "list text over 4096 with its header": (
        cmd("list", text="x" * 4080, menu=SHIPPING), CHAT,
        "menu.header, text and menu.footer together are 4117 characters; Telegram takes at most"),
    "list with a reply keyboard": (
        cmd("list", text="Pick", menu=SHIPPING, keyboard={"buttons": [["A"]]}), CHAT,
        "keyboard cannot go with inline buttons"),
}  # fmt: skip


@pytest.mark.parametrize(("command", "chat", "detail"), REFUSED.values(), ids=list(REFUSED))
def test_what_telegram_would_refuse_is_refused_with_a_detail(
    command: Command, chat: str, detail: str
) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(detail)):
        build_request(command, chat)


# -- properties ------------------------------------------------------------------------------

_ROW_ID = st.text(st.characters(codec="utf-8"), min_size=1, max_size=16).filter(
    lambda s: len(s.encode()) <= 64
)
_TITLE = st.text(min_size=1, max_size=30).filter(str.strip)


@st.composite
def _menus(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(_ROW_ID, min_size=1, max_size=10, unique=True))
    cut = sorted(draw(st.lists(st.integers(1, len(ids)), max_size=2, unique=True)))
    bounds = [0, *[c for c in cut if c < len(ids)], len(ids)]
    sections = [
        {"title": draw(st.none() | _TITLE),
         "rows": [{"id": i, "title": draw(_TITLE), "description": draw(st.none() | st.text())}
                  for i in ids[a:b]]}
        for a, b in itertools.pairwise(bounds) if b > a
    ]  # fmt: skip
    return {"button": draw(st.text(max_size=25)), "sections": sections}


@settings(max_examples=150, deadline=None)
@given(menu=_menus(), body=_TITLE)
def test_any_list_telegram_can_show_is_a_button_a_row_in_order(
    menu: dict[str, Any], body: str
) -> None:
    method, params = call(cmd("list", text=body, menu=menu))
    rows = [row for section in menu["sections"] for row in section["rows"]]
    keyboard = params["reply_markup"]["inline_keyboard"]
    assert (method, params["text"]) == ("sendMessage", body)
    assert [r[0]["callback_data"] for r in keyboard] == [row["id"] for row in rows]
    assert all(len(r) == 1 and r[0]["text"].startswith(row["title"])
               for r, row in zip(keyboard, rows, strict=True))  # fmt: skip


_FIELD = st.text(st.characters(codec="utf-8"), max_size=40)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


@settings(max_examples=200, deadline=None)
@given(formatted=_FIELD.filter(str.strip), email=_FIELD.filter(str.strip), company=_FIELD)
def test_no_field_text_breaks_out_of_its_vcard_line(
    formatted: str, email: str, company: str
) -> None:
    card = msgspec.convert({"name": {"formatted_name": formatted},
                            "phones": [{"phone": "+1 555 0100"}],
                            "emails": [{"email": email}], "org": {"company": company}},
                           ContactCard)  # fmt: skip
    lines = vcard(card).split("\r\n")
    keys = [line.partition(":")[0] for line in lines]
    assert keys == ["BEGIN", "VERSION", "N", "FN", *(["ORG"] if company else []), "TEL",
                    "EMAIL", "END"]  # fmt: skip
    fields = dict(line.partition(":")[::2] for line in lines)
    assert _unescape(fields["FN"]) == formatted.replace("\r\n", "\n").replace("\r", "\n")
    assert _unescape(fields["EMAIL"]) == email.replace("\r\n", "\n").replace("\r", "\n")
    _, params = call(cmd("contacts", contacts=[msgspec.to_builtins(card)]))
    assert params["vcard"] == "\r\n".join(lines)


# -- the platforms that lack a type say so truly, and what they advise works ---------------------

VALID: dict[str, dict[str, Any]] = {
    "list": {"text": "Pick", "menu": SHIPPING},
    "location_request": {"text": "Where?"},
    "contacts": {"contacts": [ANA_CARD]},
    "sticker": {"media": {"url": STICKER_URL}},
}


@pytest.mark.parametrize("kind", sorted(RICH_TYPES))
def test_telegram_sends_every_rich_type(kind: str) -> None:
    method, _ = call(cmd(kind, **VALID[kind]))
    assert method in ("sendMessage", "sendSticker", "sendContact")


def _through_twilio(command: Command) -> Any:
    return CHANNELS["twilio"].request(ACCOUNTS["twilio"], "http://api", command, "5511987650000",
                                      None, None)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "advice", "instead"),
    [
        ("sticker", "send an `image` whose media.url is the sticker's .webp",
         {"type": "image", "media": {"url": STICKER_URL}}),
        ("contacts", "send its URL as a `document`",
         {"type": "document", "media": {"url": "https://cdn.example.com/cards/ana.vcf"}}),
    ],
)  # fmt: skip
def test_twilio_refuses_a_sticker_and_a_card_pointing_to_the_media_that_carries_them(
    kind: str, advice: str, instead: dict[str, Any]
) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(advice)):
        _through_twilio(cmd(kind, **VALID[kind]))
    raw = {"command_id": "c-2", "conversation_id": "whatsapp:15557654321:5511987650000", **instead}
    request = _through_twilio(msgspec.convert(raw, Command))
    assert request.body["MediaUrl"] == instead["media"]["url"]


def test_instagram_refuses_a_sticker_naming_the_one_it_has() -> None:
    command = cmd("sticker", media={"url": STICKER_URL})
    with pytest.raises(InvalidCommand) as refused:
        CHANNELS["instagram"].request(ACCOUNTS["instagram"], "http://api", command,
                                      "1780000000000001", None, None)  # fmt: skip
    assert str(refused.value) == (
        "sticker: Instagram sends no stickers but its own heart (like_heart); send the picture "
        "as an `image`"
    )


# -- end to end: the gateway, a real Redis, the Bot API stand-in ---------------------------------


@pytest.fixture
async def tg(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Telegram]:
    async with FakeBotAPI([TOKEN]) as api:
        settings = make_settings(redis_url, BOT_URL=api.base_url, OUTBOUND_ENABLED="false")
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Telegram(client, app[OUTBOX], redis, api)


async def _inbox(tg: Telegram, kind: str) -> list[dict[str, Any]]:
    return [e for e in await stream(tg.redis, "gw:inbox:support") if e["kind"] == kind]


async def test_a_sticker_and_a_contact_card_reach_the_chat(tg: Telegram) -> None:
    sticker = await tg.command(type="sticker", media={"url": STICKER_URL})
    card = await tg.command(type="contacts", contacts=[ANA_CARD])
    assert [(d["outcome"], d["message_id"]) for d in (sticker, card)] == [
        ("sent", "1"), ("sent", "2")]  # fmt: skip
    results = [r.response["result"] for r in tg.api.requests]
    assert results[0]["sticker"]["type"] == "regular"
    assert results[1]["contact"] == {"phone_number": "+55 11 98765-0000", "first_name": "Ana",
                                     "last_name": "Souza", "vcard": ANA_VCARD}  # fmt: skip


async def test_a_location_request_brings_back_the_contacts_location(tg: Telegram) -> None:
    asked = await tg.command(type="location_request", text="Where should we deliver?")
    assert asked["outcome"] == "sent"
    method, params = tg.sent()
    assert (method, params["reply_markup"]) == ("sendMessage", _location_keys("Send location"))
    # Ana taps the button: Telegram sends her location as her own message.
    where = {"latitude": -23.561414, "longitude": -46.655881}
    await tg.update("message", {"message_id": 8, "date": 1767226460, "chat": ANA_CHAT,
                                "from": ANA, "location": where})  # fmt: skip
    [event] = await _inbox(tg, "message")
    assert (event["type"], event["location"]["latitude"]) == ("location", -23.561414)


async def test_a_location_request_to_a_group_is_refused_before_any_call(tg: Telegram) -> None:
    delivery = await tg.command(GROUP, type="location_request", text="Where?")
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "invalid_command")
    assert "private chats only" in delivery["detail"]
    assert tg.api.requests == []


async def test_a_tapped_list_row_comes_back_with_its_id(tg: Telegram) -> None:
    sent = await tg.command(type="list", text="How should we ship it?", menu=SHIPPING)
    assert sent["outcome"] == "sent"
    shown = tg.api.requests[-1].response["result"]["reply_markup"]["inline_keyboard"]
    assert [row[0]["callback_data"] for row in shown] == ["express", "priority", "ground"]
    origin = {"message_id": int(sent["message_id"]), "date": 1767226400, "chat": ANA_CHAT}
    await tg.update("callback_query", {"id": "4382009472397429504", "from": ANA,
                                       "chat_instance": "-7", "data": "express",
                                       "message": origin})  # fmt: skip
    [tap] = await _inbox(tg, "message")
    assert (tap["type"], tap["reply"]["id"], tap["reply_to"]) == ("interactive", "express",
                                                                  sent["message_id"])  # fmt: skip
    answered = await tg.command(type="read", reply_to=tap["message_id"])
    assert answered["outcome"] == "sent"
    assert tg.sent() == ("answerCallbackQuery", {"callback_query_id": "4382009472397429504"})


async def test_two_cards_are_refused_saying_why(tg: Telegram) -> None:
    delivery = await tg.command(type="contacts", contacts=[ANA_CARD, ANA_CARD])
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "invalid_command")
    assert delivery["detail"] == (
        "contacts: Telegram sends one contact card a message, got 2; send each card as a "
        "`contacts` command of its own"
    )
    assert tg.api.requests == []


async def test_the_clients_builders_reach_the_bot_api(tg: Telegram) -> None:
    conversation = f"telegram:{BOT}:{ANA['id']}"
    c = client_commands
    built = [
        c.location_request(conversation, "Onde entregamos?", label="📍 Enviar localização"),
        c.contacts(conversation, [c.contact_card("Loja Centro", phones=["+55 11 3333-0000"],
                                                 emails=["centro@loja.example"])]),
        c.sticker(conversation, media_id=STICKER_ID),
        c.list_menu(conversation, "Qual frete?", "Opções",
                    [c.section("Rápido", [c.row("sedex", "Sedex", "1 dia")]),
                     c.section("Barato", [c.row("pac", "PAC")])], footer="Frete grátis"),
    ]  # fmt: skip
    for command in built:
        await tg.redis.xadd("gw:outbox", {"command": command.encode()})
    await tg.outbox.drain()
    assert [d["outcome"] for d in await _inbox(tg, "delivery")] == ["sent"] * 4
    (m1, p1), (m2, p2), (m3, p3), (m4, p4) = (tg.sent(i) for i in range(4))
    assert (m1, p1["reply_markup"]) == ("sendMessage", _location_keys("📍 Enviar localização"))
    assert (m2, p2["first_name"], p2["phone_number"]) == ("sendContact", "Loja Centro",
                                                          "+55 11 3333-0000")  # fmt: skip
    assert "EMAIL:centro@loja.example" in p2["vcard"].split("\r\n")
    assert (m3, p3["sticker"]) == ("sendSticker", STICKER_ID)
    assert (m4, p4["text"]) == ("sendMessage", "Qual frete?\n\nFrete grátis")
    assert p4["reply_markup"]["inline_keyboard"] == [
        [{"text": "Sedex — 1 dia", "callback_data": "sedex"}],
        [{"text": "PAC", "callback_data": "pac"}]]  # fmt: skip
