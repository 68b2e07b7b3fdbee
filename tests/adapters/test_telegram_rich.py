"""Telegram rich messages (issue #17): bot commands, albums and links on inbound messages;
link buttons, reply keyboards, their removal and forum topics on outbound ones; the other
channels refusing what they cannot send. Tables for the adapter, properties for the entity
parser (UTF-16 offsets), and end to end through the gateway to the Bot API stand-in."""

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
from adapters.schema import (
    ENCODER,
    ButtonSpec,
    Command,
    InvalidCommand,
    Keyboard,
    Location,
    MediaRef,
    MessageEvent,
)
from adapters.telegram import build_request, parse_update
from gateway.app import create_app
from gateway.state import OUTBOX
from gateway_client import commands as client_commands
from gateway_client import events as client_events
from gateway_demo.standins.bot_api import FakeBotAPI
from tests.adapters.test_channels import ACCOUNTS
from tests.adapters.test_telegram_gateway import ANA, ANA_CHAT, BUSINESS, GROUP, TOKEN, Telegram
from tests.conftest import make_settings, stream

BOT = "7000000001"
CHAT = "123456789"
T = 1767226200
GROUP_CHAT = {"id": GROUP, "type": "supergroup", "title": "Acme Support", "is_forum": True}
_update_ids = itertools.count(700_000_000)


def _event(**message: Any) -> MessageEvent:
    body = {"message_id": 55, "from": ANA, "chat": ANA_CHAT, "date": T, **message}
    raw = json.dumps({"update_id": next(_update_ids), "message": body}).encode()
    parsed = parse_update(raw, BOT, T)
    assert parsed.bad == []
    [routed] = parsed.events
    assert isinstance(routed.event, MessageEvent)
    return routed.event


def _entity(kind: str, offset: int, length: int, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "offset": offset, "length": length, **extra}


def _units(text: str) -> int:
    """The length of `text` in UTF-16 code units, as Telegram counts offsets."""
    return len(text.encode("utf-16-le")) // 2


def _command_event(text: str) -> MessageEvent:
    """A message starting with a bot command, its entity as Telegram marks it."""
    token = re.match(r"/\S+", text)
    assert token is not None
    return _event(text=text, entities=[_entity("bot_command", 0, _units(token[0]))])


# -- inbound: bot commands ------------------------------------------------------------------

COMMANDS = [
    # text, (command, args)
    ("/start", ("start", "")),
    ("/start ref_42", ("start", "ref_42")),  # a deep link's payload
    ("/start@AcmeSupportBot ref_42", ("start", "ref_42")),  # in a group: @botname dropped
    ("/help   me  please  ", ("help", "me  please")),
    ("/order 😀 two pizzas", ("order", "😀 two pizzas")),
    ("/start\nsecond line", ("start", "second line")),
]


@pytest.mark.parametrize(("text", "expected"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_bot_command_gives_command_and_args(text: str, expected: tuple[str, str]) -> None:
    event = _command_event(text)
    assert (event.command, event.args) == expected
    assert event.text == text  # the text itself is untouched


def test_a_command_later_in_the_text_is_not_a_command() -> None:
    event = _event(text="please /start", entities=[_entity("bot_command", 7, 6)])
    assert (event.command, event.args) == (None, None)


def test_a_plain_text_has_no_command() -> None:
    event = _event(text="/start")  # no entity: Telegram did not see a command
    assert (event.command, event.args, event.links, event.media_group_id) == (
        None,
        None,
        None,
        None,
    )


def test_a_caption_command_counts() -> None:
    photo = [{"file_id": "AgAD1", "file_unique_id": "u1", "width": 90, "height": 90}]
    event = _event(
        photo=photo, caption="/receipt 1234", caption_entities=[_entity("bot_command", 0, 8)]
    )
    assert (event.type, event.command, event.args) == ("image", "receipt", "1234")


# -- inbound: links and albums ---------------------------------------------------------------


def test_links_are_url_and_text_link_entities_with_utf16_offsets() -> None:
    text = "😀 see example.com/a 🇧🇷 and our shop, or example.com/a again"
    url_at = _units("😀 see ")
    shop_at = _units("😀 see example.com/a 🇧🇷 and our ")
    again_at = _units("😀 see example.com/a 🇧🇷 and our shop, or ")
    event = _event(
        text=text,
        entities=[
            _entity("url", url_at, _units("example.com/a")),
            _entity("bold", 0, 2),
            _entity("text_link", shop_at, 4, url="https://shop.example.com/?ref=tg"),
            _entity("url", again_at, _units("example.com/a")),  # a repeat: listed once
            _entity("mention", 0, 2),
        ],
    )
    assert event.links == ["example.com/a", "https://shop.example.com/?ref=tg"]


def test_entities_that_do_not_fit_the_text_are_ignored_and_the_message_kept() -> None:
    event = _event(
        text="😀 hi",
        entities=[
            _entity("url", 1, 2),  # starts inside the emoji's surrogate pair
            _entity("url", 3, 50),  # past the end
            {"type": "url", "offset": "x"},  # not an entity at all
            "nonsense",
            _entity("url", 3, 2),  # "hi": fine
        ],
    )
    assert (event.text, event.links) == ("😀 hi", ["hi"])


def test_entities_that_are_not_a_list_leave_the_message_whole() -> None:
    event = _event(text="hello", entities={"oops": True})
    assert (event.type, event.text, event.links) == ("text", "hello", None)


def test_album_items_carry_media_group_id() -> None:
    photo = [{"file_id": "AgAD2", "file_unique_id": "u2", "width": 90, "height": 90}]
    first = _event(photo=photo, media_group_id="13572468013579", caption="both sides")
    second = _event(message_id=56, photo=photo, media_group_id="13572468013579")
    assert (first.media_group_id, second.media_group_id) == ("13572468013579",) * 2
    assert (first.text, second.text) == ("both sides", None)


# -- inbound: properties (offsets in UTF-16 code units) -----------------------------------------

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30
)  # any code point but a lone surrogate (JSON strings cannot carry one)
_URL = st.from_regex(r"https://[a-z]{1,10}\.example/[a-zA-Z0-9😀]{0,8}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(before=_TEXT, url=_URL, after=_TEXT)
def test_a_url_entity_anywhere_yields_exactly_its_url(before: str, url: str, after: str) -> None:
    text = f"{before}{url}{after}"
    event = _event(text=text, entities=[_entity("url", _units(before), _units(url))])
    assert event.links == [url]


@settings(max_examples=150, deadline=None)
@given(
    name=st.from_regex(r"[a-z_0-9]{1,32}", fullmatch=True),
    bot=st.sampled_from(["", "@AcmeBot"]),
    args=_TEXT,
)
def test_a_command_with_any_arguments(name: str, bot: str, args: str) -> None:
    token = f"/{name}{bot}"
    event = _event(text=f"{token} {args}", entities=[_entity("bot_command", 0, _units(token))])
    assert (event.command, event.args) == (name, args.strip())


@settings(max_examples=200, deadline=None)
@given(
    text=_TEXT.filter(bool),
    spans=st.lists(
        st.tuples(
            st.sampled_from(["url", "bot_command", "text_link", "bold"]),
            st.integers(-3, 40),
            st.integers(-3, 40),
        ),
        max_size=5,
    ),
)
def test_arbitrary_entities_never_lose_the_message(
    text: str, spans: list[tuple[str, int, int]]
) -> None:
    entities = [_entity(k, o, n, url="https://x.example") for k, o, n in spans]
    body = {"message_id": 55, "from": ANA, "chat": ANA_CHAT, "date": T, "text": text}
    raw = json.dumps({"update_id": 1, "message": {**body, "entities": entities}}).encode()
    [routed] = parse_update(raw, BOT, T).events
    event = routed.event
    assert isinstance(event, MessageEvent)
    assert event.text == text
    ENCODER.encode(event)  # every key stays valid UTF-8
    for link in event.links or []:
        assert link == "https://x.example" or link in text


# -- outbound: the Bot API calls -----------------------------------------------------------


def cmd(type_: str, **fields: Any) -> Command:
    return Command(
        command_id="cmd-1", conversation_id=f"telegram:{BOT}:{CHAT}", type=type_, **fields
    )


REPLY_KEYS = Keyboard(buttons=[["Track my order"], ["Talk to a person", "Cancel"]])
SENDS = {
    "link and callback buttons": (
        cmd(
            "interactive",
            text="Your order shipped",
            buttons=[
                ButtonSpec(title="Track it", url="https://track.example.com/p/991"),
                ButtonSpec("help", "I need help"),
                ButtonSpec(title="Open the app", url="tg://resolve?domain=AcmeBot"),
            ],
        ),
        "sendMessage",
        {
            "reply_markup": {
                "inline_keyboard": [
                    [{"text": "Track it", "url": "https://track.example.com/p/991"}],
                    [{"text": "I need help", "callback_data": "help"}],
                    [{"text": "Open the app", "url": "tg://resolve?domain=AcmeBot"}],
                ]
            }
        },
    ),
    "reply keyboard": (
        cmd("text", text="How can I help?", keyboard=REPLY_KEYS),
        "sendMessage",
        {
            "text": "How can I help?",
            "reply_markup": {
                "keyboard": [
                    [{"text": "Track my order"}],
                    [{"text": "Talk to a person"}, {"text": "Cancel"}],
                ]
            },
        },
    ),
    "one-time resized keyboard": (
        cmd(
            "text",
            text="Pick",
            keyboard=Keyboard(buttons=[["Yes", "No"]], one_time=True, resize=True),
        ),
        "sendMessage",
        {
            "reply_markup": {
                "keyboard": [[{"text": "Yes"}, {"text": "No"}]],
                "one_time_keyboard": True,
                "resize_keyboard": True,
            }
        },
    ),
    "keyboard removed": (
        cmd("text", text="Thanks!", keyboard=Keyboard(remove=True)),
        "sendMessage",
        {"reply_markup": {"remove_keyboard": True}},
    ),
    "keyboard on a photo": (
        cmd("image", media=MediaRef(url="https://cdn.example.com/a.jpg"), keyboard=REPLY_KEYS),
        "sendPhoto",
        {
            "reply_markup": {
                "keyboard": [
                    [{"text": "Track my order"}],
                    [{"text": "Talk to a person"}, {"text": "Cancel"}],
                ]
            }
        },
    ),
    "forum topic": (
        cmd("text", text="Refunded.", thread_id="5102", reply_to="5120"),
        "sendMessage",
        {"message_thread_id": 5102, "reply_parameters": {"message_id": 5120}},
    ),
    "typing in a topic": (
        cmd("typing", thread_id="5102"),
        "sendChatAction",
        {"message_thread_id": 5102},
    ),
    "location in a topic": (
        cmd("location", location=Location(-23.55, -46.63), thread_id="7"),
        "sendLocation",
        {"message_thread_id": 7},
    ),
    "a reaction names its message, not a topic": (
        cmd("reaction", text="👍", reply_to="5120", thread_id="5102"),
        "setMessageReaction",
        {"message_thread_id": None},
    ),
}


@pytest.mark.parametrize(("command", "method", "expected"), SENDS.values(), ids=list(SENDS))
def test_rich_commands_become_bot_api_calls(
    command: Command, method: str, expected: dict[str, Any]
) -> None:
    request = build_request(command, CHAT)
    assert request.path == f"/{method}"
    assert {key: request.body.get(key) for key in expected} == expected


def test_a_topic_reply_through_a_business_connection_keeps_both() -> None:
    request = build_request(cmd("text", text="oi", thread_id="3"), CHAT, BUSINESS)
    assert (request.body["business_connection_id"], request.body["message_thread_id"]) == (
        BUSINESS,
        3,
    )


REFUSALS = {
    "ftp link": (
        cmd("interactive", text="?", buttons=[ButtonSpec(title="File", url="ftp://x.example/f")]),
        "button url must be an http, https or tg URL",
    ),
    "link without host": (
        cmd("interactive", text="?", buttons=[ButtonSpec(title="Go", url="https:///nohost")]),
        "button url must be",
    ),
    "link with spaces": (
        cmd("interactive", text="?", buttons=[ButtonSpec(title="Go", url="https://a.example/x y")]),
        "button url must be",
    ),
    "javascript link": (
        cmd("interactive", text="?", buttons=[ButtonSpec(title="Go", url="javascript:alert(1)")]),
        "button url must be",
    ),
    "id and url": (
        cmd("interactive", text="?", buttons=[ButtonSpec("a", "Go", url="https://a.example")]),
        "either an id or a url, not both",
    ),
    "neither id nor url": (
        cmd("interactive", text="?", buttons=[ButtonSpec(title="Go")]),
        "button id must be 1-64 bytes",
    ),
    "callback data of 65 bytes": (
        cmd("interactive", text="?", buttons=[ButtonSpec("é" * 32 + "x", "Go")]),
        "button id must be 1-64 bytes",
    ),
    "blank link title": (
        cmd("interactive", text="?", buttons=[ButtonSpec(title=" ", url="https://a.example")]),
        "button title must not be blank",
    ),
    "keyboard with inline buttons": (
        cmd("interactive", text="?", buttons=[ButtonSpec("a", "A")], keyboard=REPLY_KEYS),
        "keyboard cannot go with inline buttons",
    ),
    "keyboard on typing": (cmd("typing", keyboard=REPLY_KEYS), "keyboard needs a message"),
    "keyboard on read": (
        cmd("read", reply_to="4382009472397429504", keyboard=REPLY_KEYS),
        "keyboard needs a message",
    ),
    "keyboard on a reaction": (
        cmd("reaction", text="👍", reply_to="5", keyboard=REPLY_KEYS),
        "keyboard needs a message",
    ),
    "empty keyboard": (cmd("text", text="?", keyboard=Keyboard()), "give buttons"),
    "empty row": (
        cmd("text", text="?", keyboard=Keyboard(buttons=[["A"], []])),
        "a row of buttons is empty",
    ),
    "blank key": (
        cmd("text", text="?", keyboard=Keyboard(buttons=[["A", "  "]])),
        "button text must not be blank",
    ),
    "remove with buttons": (
        cmd("text", text="?", keyboard=Keyboard(buttons=[["A"]], remove=True)),
        "remove and buttons exclude each other",
    ),
    "thread id not a number": (cmd("text", text="?", thread_id="billing"), "not a forum topic id"),
    "thread id zero": (cmd("text", text="?", thread_id="0"), "not a forum topic id"),
    "thread id past 32 bits": (cmd("text", text="?", thread_id="2147483648"), "not a forum topic"),
}


@pytest.mark.parametrize(("command", "detail"), REFUSALS.values(), ids=list(REFUSALS))
def test_what_the_bot_api_would_refuse_is_refused_first(command: Command, detail: str) -> None:
    with pytest.raises(InvalidCommand, match=detail):
        build_request(command, CHAT)


def test_link_buttons_decode_from_the_outbox() -> None:
    raw = {
        "command_id": "c1",
        "conversation_id": f"telegram:{BOT}:{CHAT}",
        "type": "interactive",
        "text": "Track",
        "buttons": [{"title": "Track it", "url": "https://t.example/1"}],
        "keyboard": {"remove": True},
        "thread_id": "9",
    }
    command = msgspec.json.decode(json.dumps(raw), type=Command)
    assert command.buttons == [ButtonSpec(title="Track it", url="https://t.example/1")]
    assert (command.keyboard, command.thread_id) == (Keyboard(remove=True), "9")


# -- the other channels refuse what only Telegram can send ------------------------------------

ELSEWHERE = {
    "whatsapp": ("whatsapp:100200300400500:5511987650000", "5511987650000"),
    "messenger": ("messenger:104729384756102:2400000000000001", "2400000000000001"),
    "instagram": ("instagram:17841400000000001:1780000000000001", "1780000000000001"),
    "twilio": ("whatsapp:15557654321:5511987650000", "5511987650000"),
}
TELEGRAM_ONLY = {
    "keyboard": ({"type": "text", "text": "hi", "keyboard": REPLY_KEYS}, "keyboard"),
    "thread_id": ({"type": "text", "text": "hi", "thread_id": "5"}, "thread_id"),
    "link button": (
        {
            "type": "interactive",
            "text": "hi",
            "buttons": [ButtonSpec("a", "A"), ButtonSpec(title="Go", url="https://a.example")],
        },
        "link buttons",
    ),
}


@pytest.mark.parametrize("name", list(ELSEWHERE))
@pytest.mark.parametrize(("fields", "detail"), TELEGRAM_ONLY.values(), ids=list(TELEGRAM_ONLY))
def test_other_channels_refuse_telegram_only_fields(
    name: str, fields: dict[str, Any], detail: str
) -> None:
    conversation, address = ELSEWHERE[name]
    command = Command(command_id="c1", conversation_id=conversation, **fields)
    with pytest.raises(InvalidCommand, match=f"{detail}.* Telegram only"):
        CHANNELS[name].request(ACCOUNTS[name], "http://api", command, address, "m1", None)


# -- end to end: the gateway, a real Redis, the Bot API stand-in --------------------------------


@pytest.fixture
async def tg(aiohttp_client: Any, redis: Redis, redis_url: str) -> AsyncIterator[Telegram]:
    async with FakeBotAPI([TOKEN]) as api:
        settings = make_settings(redis_url, BOT_URL=api.base_url, OUTBOUND_ENABLED="false")
        app = create_app(settings, redis_url)
        client = await aiohttp_client(app)
        yield Telegram(client, app[OUTBOX], redis, api)


async def test_a_link_keyboard_reaches_the_chat(tg: Telegram) -> None:
    buttons = [{"title": "Track it", "url": "https://track.example.com/p/991"},
               {"id": "help", "title": "I need help"}]  # fmt: skip
    delivery = await tg.command(type="interactive", text="Shipped!", buttons=buttons)
    assert (delivery["outcome"], delivery["reason"]) == ("sent", None)
    result = tg.api.requests[-1].response["result"]
    assert result["reply_markup"]["inline_keyboard"] == [
        [{"text": "Track it", "url": "https://track.example.com/p/991"}],
        [{"text": "I need help", "callback_data": "help"}],
    ]


async def test_a_reply_keyboard_then_its_removal(tg: Telegram) -> None:
    keyboard = {"buttons": [["Track my order"], ["Talk to a person"]], "one_time": True}
    shown = await tg.command(type="text", text="How can I help?", keyboard=keyboard)
    # Ana taps a key: Telegram sends its text as her message.
    await tg.writes("Talk to a person")
    removed = await tg.command(type="text", text="Connecting you…", keyboard={"remove": True})
    assert (shown["outcome"], removed["outcome"]) == ("sent", "sent")
    (_, first), (_, second) = tg.sent(0), tg.sent(1)
    assert first["reply_markup"] == {
        "keyboard": [[{"text": "Track my order"}], [{"text": "Talk to a person"}]],
        "one_time_keyboard": True,
    }
    assert second["reply_markup"] == {"remove_keyboard": True}
    [event] = [e for e in await stream(tg.redis, "gw:inbox:support") if e["kind"] == "message"]
    assert (event["text"], event["command"]) == ("Talk to a person", None)


async def test_an_answer_in_a_forum_topic_goes_back_to_that_topic(tg: Telegram) -> None:
    tg.api.forum(GROUP, topics=[5102])
    await tg.update(
        "message",
        {"message_id": 5120, "date": 1767226340, "chat": GROUP_CHAT, "from": ANA,
         "message_thread_id": 5102, "is_topic_message": True, "text": "/refund 991",
         "entities": [_entity("bot_command", 0, 7)]},
    )  # fmt: skip
    [event] = await stream(tg.redis, "gw:inbox:support")
    assert (event["thread_id"], event["command"], event["args"]) == ("5102", "refund", "991")
    answer = await tg.command(
        GROUP, type="text", text="Refunded.", thread_id=event["thread_id"], reply_to="5120"
    )
    assert answer["outcome"] == "sent"
    assert tg.sent()[1]["message_thread_id"] == 5102
    result = tg.api.requests[-1].response["result"]
    assert (result["message_thread_id"], result["is_topic_message"]) == (5102, True)


async def test_a_topic_the_forum_lacks_fails_with_telegrams_answer(tg: Telegram) -> None:
    tg.api.forum(GROUP, topics=[5102])
    answer = await tg.command(GROUP, type="text", text="Hello", thread_id="77")
    assert (answer["outcome"], answer["provider_code"]) == ("failed", 400)
    assert answer["detail"] == "Bad Request: message thread not found"


async def test_a_bad_link_is_rejected_before_any_call(tg: Telegram) -> None:
    buttons = [{"title": "Open", "url": "file:///etc/passwd"}]
    delivery = await tg.command(type="interactive", text="?", buttons=buttons)
    assert (delivery["outcome"], delivery["reason"]) == ("rejected", "invalid_command")
    assert tg.api.requests == []


# -- the backends' client: its builders and event keys, through the gateway ---------------------


async def test_the_client_answers_a_deep_link_in_its_topic_with_keyboards(tg: Telegram) -> None:
    tg.api.forum(GROUP, topics=[5102])
    text = "/start@AcmeSupportBot promo_25"
    await tg.update(
        "message",
        {"message_id": 5121, "date": 1767226350, "chat": GROUP_CHAT, "from": ANA,
         "message_thread_id": 5102, "text": text,
         "entities": [_entity("bot_command", 0, _units("/start@AcmeSupportBot"))]},
    )  # fmt: skip
    [raw] = await tg.redis.xrange("gw:inbox:support")
    event = client_events.decode(raw[1][b"event"])
    assert isinstance(event, client_events.Message)
    assert (event.command, event.args, event.thread_id) == ("start", "promo_25", "5102")
    conversation = event.conversation_id
    assert conversation is not None
    sent = [
        client_commands.keyboard(conversation, "Welcome!", [["Plans", "Help"]], resize=True,
                                 thread_id=event.thread_id),
        client_commands.buttons(conversation, "See", [("more", "More")],
                                links=[("Pricing", "https://acme.example/pricing")],
                                thread_id=event.thread_id),
        client_commands.remove_keyboard(conversation, "Done.", thread_id=event.thread_id),
    ]  # fmt: skip
    for command in sent:
        await tg.redis.xadd("gw:outbox", {"command": command.encode()})
    await tg.outbox.drain()
    deliveries = [e for e in await stream(tg.redis, "gw:inbox:support") if e["kind"] == "delivery"]
    assert [d["outcome"] for d in deliveries] == ["sent"] * 3
    markups = [tg.sent(i)[1]["reply_markup"] for i in range(3)]
    assert markups == [
        {"keyboard": [[{"text": "Plans"}, {"text": "Help"}]], "resize_keyboard": True},
        {"inline_keyboard": [[{"text": "More", "callback_data": "more"}],
                             [{"text": "Pricing", "url": "https://acme.example/pricing"}]]},
        {"remove_keyboard": True},
    ]  # fmt: skip
    assert {tg.sent(i)[1]["message_thread_id"] for i in range(3)} == {5102}
