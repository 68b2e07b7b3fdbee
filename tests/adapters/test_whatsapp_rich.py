"""Rich outbound messages (issue #17): WhatsApp list messages, CTA URL buttons, location
requests, contacts and stickers; link buttons as a button template on Messenger and
Instagram; every channel that cannot send one refusing it with a detail.

Tables for the adapters (command → request JSON; over a limit → refused, naming it), and
properties: any list within WhatsApp's limits builds a body the Graph stand-in accepts, and
any list over a limit is refused before a request exists (the stand-in refusing the same
body, built by hand, as Graph does)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.channel import CHANNELS
from adapters.rich import RICH_TYPES
from adapters.schema import Command, InvalidCommand
from adapters.whatsapp import build_request
from gateway_demo.standins._graph_payload import validate
from tests.adapters.test_channels import ACCOUNTS
from tests.fakes.send_api import _check as send_api_check

NUMBER = "106540352242922"
WA_ID = "5511987650000"
PSID = "2400000000000001"
ADDRESSES = {"whatsapp": WA_ID, "twilio": WA_ID, "messenger": PSID, "instagram": PSID,
             "telegram": "123456789"}  # fmt: skip
URL = "https://shop.example.com/orders/A1093?ref=wa"


def command(type_: str, **fields: Any) -> Command:
    """A command as the outbox holds it: JSON decoded by the gateway's own decoder."""
    raw = {"command_id": "cmd-42", "conversation_id": f"whatsapp:{NUMBER}:{WA_ID}",
           "type": type_, **fields}  # fmt: skip
    return msgspec.json.decode(json.dumps(raw), type=Command)


def wa_body(cmd: Command) -> dict[str, Any]:
    body = build_request(cmd, NUMBER, WA_ID, None).body
    assert validate(body) is None, validate(body)  # the Graph stand-in takes it
    return body


def rows(n: int, prefix: str = "r") -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "title": f"Option {i}"} for i in range(n)]


def menu(**over: Any) -> dict[str, Any]:
    return {"button": "Shipping", "sections": [{"title": "Speed", "rows": rows(2)}], **over}


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
ANA = {
    "name": {"formatted_name": "Ana Souza", "first_name": "Ana", "last_name": "Souza"},
    "phones": [{"phone": "+55 11 98765-0000", "type": "CELL", "wa_id": "5511987650000"}],
    "emails": [{"email": "ana@example.com", "type": "WORK"}],
    "urls": [{"url": "https://example.com"}],
    "addresses": [{"city": "São Paulo", "country_code": "BR", "type": "WORK"}],
    "org": {"company": "Acme", "title": "Buyer"},
    "birthday": "1990-02-28",
}

# -- WhatsApp: command → the Graph request body ----------------------------------------------

BUILT: dict[str, tuple[Command, dict[str, Any]]] = {
    "list with header, footer, two sections": (
        command("list", text="How should we ship it?", menu=SHIPPING, reply_to="wamid.Q"),
        {"type": "interactive", "context": {"message_id": "wamid.Q"}, "interactive": {
            "type": "list",
            "header": {"type": "text", "text": "Choose shipping"},
            "body": {"text": "How should we ship it?"},
            "footer": {"text": "Prices include tax"},
            "action": {"button": "Shipping options", "sections": SHIPPING["sections"]}}},
    ),
    "list, one untitled section": (
        command("list", text="Pick", menu={"button": "Open", "sections": [{"rows": rows(1)}]}),
        {"type": "interactive", "interactive": {
            "type": "list", "body": {"text": "Pick"},
            "action": {"button": "Open", "sections": [{"rows": rows(1)}]}}},
    ),
    "one link button: CTA URL": (
        command("interactive", text="Track your order", buttons=[{"title": "Track", "url": URL}]),
        {"type": "interactive", "interactive": {
            "type": "cta_url", "body": {"text": "Track your order"},
            "action": {"name": "cta_url",
                       "parameters": {"display_text": "Track", "url": URL}}}},
    ),
    "location request": (
        command("location_request", text="Where should we pick you up?"),
        {"type": "interactive", "interactive": {
            "type": "location_request_message",
            "body": {"text": "Where should we pick you up?"},
            "action": {"name": "send_location"}}},
    ),
    "contacts: Graph's contact object, absent parts left out": (
        command("contacts", contacts=[ANA, {"name": {"formatted_name": "Support"}}]),
        {"type": "contacts", "contacts": [ANA, {"name": {"formatted_name": "Support"}}]},
    ),
    "sticker by id": (
        command("sticker", media={"id": "1013859600285441"}),
        {"type": "sticker", "sticker": {"id": "1013859600285441"}},
    ),
    "sticker by link (filename ignored)": (
        command("sticker", media={"url": "https://cdn.example.com/s/ok.webp", "filename": "x"}),
        {"type": "sticker", "sticker": {"link": "https://cdn.example.com/s/ok.webp"}},
    ),
    "sticker by a link without an extension": (
        command("sticker", media={"url": "https://cdn.example.com/stickers/991"}),
        {"type": "sticker", "sticker": {"link": "https://cdn.example.com/stickers/991"}},
    ),
}  # fmt: skip


@pytest.mark.parametrize(("cmd", "expected"), BUILT.values(), ids=list(BUILT))
def test_whatsapp_builds_the_graph_message(cmd: Command, expected: dict[str, Any]) -> None:
    body = wa_body(cmd)
    assert body["to"] == "+" + WA_ID and body["biz_opaque_callback_data"] == "cmd-42"
    assert {k: v for k, v in body.items() if k in expected} == expected
    assert set(body) - set(expected) == {
        "messaging_product", "recipient_type", "to", "biz_opaque_callback_data"}  # fmt: skip


# -- WhatsApp: over a limit → refused before any call, the detail naming the rule -------------

TWO = [{"title": "A", "rows": rows(1, "a")}, {"title": "B", "rows": rows(1, "b")}]
REFUSED: dict[str, tuple[Command, str]] = {
    "list without menu": (command("list", text="Pick"), "list: menu"),
    "list without body": (command("list", menu=menu()), "list: text (the body) is required"),
    "list body over 4096": (command("list", text="x" * 4097, menu=menu()), "at most 4096"),
    "11 rows in one section": (
        command("list", text="Pick", menu=menu(sections=[{"title": "A", "rows": rows(11)}])),
        "11 rows in all sections together; WhatsApp takes at most 10",
    ),
    "11 rows over two sections": (
        command("list", text="Pick", menu=menu(sections=[
            {"title": "A", "rows": rows(6, "a")}, {"title": "B", "rows": rows(5, "b")}])),
        "11 rows in all sections together",
    ),
    "11 sections": (
        command("list", text="Pick", menu=menu(sections=[
            {"title": f"S{i}", "rows": rows(1, f"s{i}-")} for i in range(11)])),
        "needs 1 to 10 sections in menu.sections, got 11",
    ),
    "no sections": (command("list", text="Pick", menu=menu(sections=[])), "got 0"),
    "an empty section": (
        command("list", text="Pick", menu=menu(sections=[*TWO, {"title": "C", "rows": []}])),
        "menu.sections[2] has no rows",
    ),
    "several sections, one untitled": (
        command("list", text="Pick", menu=menu(sections=[TWO[0], {"rows": rows(1, "b")}])),
        "menu.sections[1].title (required when there are several sections)",
    ),
    "section title over 24": (
        command("list", text="Pick", menu=menu(sections=[{"title": "S" * 25, "rows": rows(1)}])),
        "menu.sections[0].title (required when there are several sections) is 25",
    ),
    "row title over 24": (
        command("list", text="Pick", menu=menu(sections=[
            {"title": "A", "rows": [{"id": "a", "title": "Competitions / Hackathons"}]}])),
        "menu.sections[0].rows[0].title is 25 characters; WhatsApp takes at most 24",
    ),
    "row id over 200": (
        command("list", text="Pick", menu=menu(sections=[
            {"title": "A", "rows": [{"id": "i" * 201, "title": "A"}]}])),
        "rows[0].id is 201 characters; WhatsApp takes at most 200",
    ),
    "blank row title": (
        command("list", text="Pick", menu=menu(sections=[
            {"title": "A", "rows": [{"id": "a", "title": "  "}]}])),
        "rows[0].title is required and must not be blank",
    ),
    "description over 72": (
        command("list", text="Pick", menu=menu(sections=[
            {"title": "A", "rows": [{"id": "a", "title": "A", "description": "d" * 73}]}])),
        "rows[0].description is 73 characters; WhatsApp takes at most 72",
    ),
    "button label over 20": (
        command("list", text="Pick", menu=menu(button="See all shipping opts")),
        "menu.button is 21 characters; WhatsApp takes at most 20",
    ),
    "header over 60": (
        command("list", text="Pick", menu=menu(header="h" * 61)), "menu.header is 61 characters"
    ),
    "footer over 60": (
        command("list", text="Pick", menu=menu(footer="f" * 61)), "menu.footer is 61 characters"
    ),
    "repeated row ids": (
        command("list", text="Pick", menu=menu(sections=[
            {"title": "A", "rows": rows(1)}, {"title": "B", "rows": rows(1)}])),
        "row ids must be unique (repeated: 'r0')",
    ),
    "two link buttons": (
        command("interactive", text="Go", buttons=[{"title": "A", "url": URL},
                                                    {"title": "B", "url": URL}]),
        "WhatsApp sends one link button a message (a CTA URL message), got 2",
    ),
    "link title over 20": (
        command("interactive", text="Go", buttons=[{"title": "Track my order please", "url": URL}]),
        "the link button's title is 21 characters",
    ),
    "link that is not http(s)": (
        command("interactive", text="Go", buttons=[{"title": "Go", "url": "ftp://x.example/a"}]),
        "link 'ftp://x.example/a' is not an http or https URL",
    ),
    "link button with an id too": (
        command("interactive", text="Go", buttons=[{"id": "a", "title": "Go", "url": URL}]),
        "a link button has a url and no id",
    ),
    "CTA body over 1024": (
        command("interactive", text="x" * 1025, buttons=[{"title": "Go", "url": URL}]),
        "text is 1025 characters; WhatsApp takes at most 1024",
    ),
    "link beside reply buttons": (
        command("interactive", text="Go", buttons=[{"id": "a", "title": "A"},
                                                    {"title": "B", "url": URL}]),
        "link buttons (url) beside reply buttons are Telegram only",
    ),
    "location request without body": (
        command("location_request", text=" "), "location_request: text (the body) is required"
    ),
    "location request body over 1024": (
        command("location_request", text="x" * 1025), "at most 1024"
    ),
    "no contacts": (command("contacts"), "needs 1 to 257 contact cards in contacts, got 0"),
    "258 contacts": (
        command("contacts", contacts=[{"name": {"formatted_name": "A"}}] * 258), "got 258"
    ),
    "contact without formatted_name": (
        command("contacts", contacts=[ANA, {"name": {"first_name": "Bo"}}]),
        "contacts[1].name.formatted_name is required",
    ),
    "contact with a blank phone": (
        command("contacts", contacts=[{"name": {"formatted_name": "A"}, "phones": [{}]}]),
        "contacts[0].phones[0].phone must not be blank",
    ),
    "contact with a bad birthday": (
        command("contacts", contacts=[{"name": {"formatted_name": "A"}, "birthday": "1990-02-30"}]),
        "contacts[0].birthday '1990-02-30' is not a date (YYYY-MM-DD)",
    ),
    "sticker with a caption": (
        command("sticker", text="haha", media={"id": "1"}), "a sticker carries no caption"
    ),
    "sticker with url and id": (
        command("sticker", media={"id": "1", "url": "https://a.example/s.webp"}),
        "media needs exactly one of url or id",
    ),
    "sticker that is a png": (
        command("sticker", media={"url": "https://a.example/s/smile.png"}),
        "WhatsApp stickers are WebP images (512x512); 'smile.png' is not a .webp",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("cmd", "detail"), REFUSED.values(), ids=list(REFUSED))
def test_whatsapp_refuses_what_graph_would(cmd: Command, detail: str) -> None:
    with pytest.raises(InvalidCommand) as refused:
        build_request(cmd, NUMBER, WA_ID, None)
    assert detail in str(refused.value)


# -- the Graph stand-in refuses the same limits as Graph does (code 131009) -------------------


def graph_list(sections: list[dict[str, Any]], **interactive: Any) -> dict[str, Any]:
    """A list message built by hand, as a gateway without its own checks would send it."""
    body = {"type": "list", "body": {"text": "Pick"},
            "action": {"button": "Open", "sections": sections}, **interactive}  # fmt: skip
    return {"messaging_product": "whatsapp", "to": "+" + WA_ID, "type": "interactive",
            "interactive": body}  # fmt: skip


STAND_IN: dict[str, tuple[dict[str, Any], int, str]] = {
    "11 rows": (
        graph_list([{"title": "A", "rows": rows(6)}, {"title": "B", "rows": rows(5, "b")}]),
        131009, "Total row count exceed max allowed count: 10",
    ),
    "row title 25": (
        graph_list([{"rows": [{"id": "a", "title": "t" * 25}]}]),
        131009, "Row title is too long. Max length is 24",
    ),
    "untitled second section": (
        graph_list([{"title": "A", "rows": rows(1)}, {"rows": rows(1, "b")}]),
        100, "(#100) The parameter interactive['action']['sections'][1]['title'] is required.",
    ),
    "image header on a list": (
        graph_list([{"rows": rows(1)}], header={"type": "image", "image": {"link": URL}}),
        131009, "Header type must be text",
    ),
    "CTA display text 21": (
        {"messaging_product": "whatsapp", "to": "+1", "type": "interactive", "interactive": {
            "type": "cta_url", "body": {"text": "Go"},
            "action": {"name": "cta_url", "parameters": {"display_text": "d" * 21, "url": URL}}}},
        131009, "Display text is too long. Max length is 20",
    ),
    "contacts without a name": (
        {"messaging_product": "whatsapp", "to": "+1", "type": "contacts",
         "contacts": [{"phones": [{"phone": "+1"}]}]},
        100, "(#100) The parameter contacts[0]['name']['formatted_name'] is required.",
    ),
    "unknown interactive type": (
        {"messaging_product": "whatsapp", "to": "+1", "type": "interactive",
         "interactive": {"type": "carousel_of_doom", "action": {}}},
        100, 'got "carousel_of_doom"',
    ),
}  # fmt: skip


@pytest.mark.parametrize(("body", "code", "text"), STAND_IN.values(), ids=list(STAND_IN))
def test_the_graph_stand_in_refuses_as_graph_does(
    body: dict[str, Any], code: int, text: str
) -> None:
    problem = validate(body)
    assert problem is not None and problem.code == code
    assert text in f"{problem.message} {problem.details}"


# -- properties: within the limits → accepted; over one → refused before the call ------------

_TEXT = st.text(st.characters(codec="utf-8"), min_size=1)
_NONBLANK = st.characters(codec="utf-8", categories=("L", "N"))


def _label(limit: int) -> st.SearchStrategy[str]:
    return st.text(_NONBLANK, min_size=1, max_size=limit)


@st.composite
def lists(draw: st.DrawFn) -> dict[str, Any]:
    """A list command's fields within every limit WhatsApp documents."""
    total = draw(st.integers(1, 10))
    cuts = (
        sorted(draw(st.lists(st.integers(1, total - 1), unique=True, max_size=9)))
        if total > 1
        else []
    )
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    ids = draw(st.lists(_label(200), min_size=total, max_size=total, unique=True))
    sections, start = [], 0
    for size in sizes:
        section_rows = [{"id": ids[start + i], "title": draw(_label(24))} for i in range(size)]
        for row in section_rows:
            if draw(st.booleans()):
                row["description"] = draw(st.text(_NONBLANK, max_size=72))
        section: dict[str, Any] = {"rows": section_rows}
        if len(sizes) > 1 or draw(st.booleans()):
            section["title"] = draw(_label(24))
        sections.append(section)
        start += size
    built: dict[str, Any] = {"button": draw(_label(20)), "sections": sections}
    for key in ("header", "footer"):
        if draw(st.booleans()):
            built[key] = draw(_label(60))
    return {"text": draw(_TEXT.filter(lambda t: t.strip() != "" and len(t) <= 4096)),
            "menu": built}  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(lists())
def test_any_list_within_the_limits_is_built_and_graph_takes_it(fields: dict[str, Any]) -> None:
    body = wa_body(command("list", **fields))
    sent = body["interactive"]["action"]["sections"]
    assert [r["id"] for s in sent for r in s["rows"]] == [
        r["id"] for s in fields["menu"]["sections"] for r in s["rows"]
    ]


def _over(fields: dict[str, Any], how: str) -> dict[str, Any]:
    """`fields` with one limit broken."""
    m = json.loads(json.dumps(fields["menu"]))
    first = m["sections"][0]
    match how:
        case "rows":
            m["sections"].append({"title": "More", "rows": rows(11, "extra-")})
            for s in m["sections"]:
                s.setdefault("title", "Some")
        case "sections":
            m["sections"] += [{"title": f"S{i}", "rows": []} for i in range(11)]
        case "row title":
            first["rows"][0]["title"] = "t" * 25
        case "row id":
            first["rows"][0]["id"] = "i" * 201
        case "description":
            first["rows"][0]["description"] = "d" * 73
        case "section title":
            first["title"] = "s" * 25
        case "button":
            m["button"] = "b" * 21
        case "header":
            m["header"] = "h" * 61
        case _:
            m["footer"] = "f" * 61
    return {**fields, "menu": m}


LIMITS = ["rows", "sections", "row title", "row id", "description", "section title", "button",
          "header", "footer"]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(lists(), st.sampled_from(LIMITS))
def test_any_list_over_a_limit_is_refused_before_the_call(fields: dict[str, Any], how: str) -> None:
    with pytest.raises(InvalidCommand, match=r"^list: "):
        build_request(command("list", **_over(fields, how)), NUMBER, WA_ID, None)


# -- Messenger and Instagram: link buttons as the button template; the rest refused -----------


def meta_request(channel: str, cmd: Command) -> dict[str, Any]:
    account = ACCOUNTS[channel]
    request = CHANNELS[channel].request(account, "http://api", cmd, PSID, None, None)
    answer = send_api_check(channel, request.body)  # type: ignore[arg-type]
    assert answer is None, answer and answer.payload  # the Send API stand-in takes it
    return request.body


HELP = "https://help.example.com"
LINKS = [{"title": "Track", "url": URL}, {"title": "Help", "url": HELP}]


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_link_buttons_are_a_button_template(channel: str) -> None:
    body = meta_request(channel, command("interactive", text="Your order shipped", buttons=LINKS))
    assert body["message"]["attachment"] == {"type": "template", "payload": {
        "template_type": "button", "text": "Your order shipped",
        "buttons": [{"type": "web_url", "url": URL, "title": "Track"},
                    {"type": "web_url", "url": HELP, "title": "Help"}]}}  # fmt: skip
    assert ("messaging_type" in body) == (channel == "messenger")
    assert ("metadata" in body["message"]) == (channel == "messenger")


META_REFUSED: dict[str, tuple[Command, str]] = {
    "four link buttons": (
        command("interactive", text="Go", buttons=LINKS * 2), "takes 1 to 3 link buttons, got 4"
    ),
    "link title over 20": (
        command("interactive", text="Go", buttons=[{"title": "t" * 21, "url": URL}]),
        "must be 1-20 characters",
    ),
    "template text over 640": (
        command("interactive", text="x" * 641, buttons=LINKS), "button template takes at most 640"
    ),
    "a link that is not http(s)": (
        command("interactive", text="Go", buttons=[{"title": "Go", "url": "tg://resolve"}]),
        "is not an http or https URL",
    ),
    "list": (command("list", text="Pick", menu=menu()), "has no list message"),
    "location request": (command("location_request", text="Where?"), "cannot ask for a location"),
    "contacts": (command("contacts", contacts=[ANA]), "cannot send a contact card"),
    "sticker": (command("sticker", media={"id": "1"}), "sends no stickers"),
}  # fmt: skip


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
@pytest.mark.parametrize(("cmd", "detail"), META_REFUSED.values(), ids=list(META_REFUSED))
def test_meta_messaging_refuses_with_a_detail(channel: str, cmd: Command, detail: str) -> None:
    with pytest.raises(InvalidCommand, match=detail):
        CHANNELS[channel].request(ACCOUNTS[channel], "http://api", cmd, PSID, None, None)


# -- every channel: each rich type is sent or refused, never dropped --------------------------

TWILIO_REFUSED = {
    "list": "twilio/list-picker",
    "location_request": "WhatsApp through Twilio cannot ask for a location",
    "contacts": "WhatsApp through Twilio cannot send a contact card",
    "sticker": "WhatsApp through Twilio sends no stickers",
}
RICH: dict[str, dict[str, Any]] = {
    "list": {"text": "Pick", "menu": menu()},
    "location_request": {"text": "Where?"},
    "contacts": {"contacts": [ANA]},
    "sticker": {"media": {"url": "https://cdn.example.com/s/ok.webp"}},
}


@pytest.mark.parametrize("kind", sorted(RICH))
def test_twilio_refuses_each_rich_type_saying_what_to_use(kind: str) -> None:
    cmd = command(kind, **RICH[kind])
    with pytest.raises(InvalidCommand, match=TWILIO_REFUSED[kind]):
        CHANNELS["twilio"].request(ACCOUNTS["twilio"], "http://api", cmd, WA_ID, None, None)


def test_twilio_refuses_link_buttons_with_the_call_to_action_template() -> None:
    cmd = command("interactive", text="Go", buttons=[{"title": "Track", "url": URL}])
    with pytest.raises(InvalidCommand, match="twilio/call-to-action"):
        CHANNELS["twilio"].request(ACCOUNTS["twilio"], "http://api", cmd, WA_ID, None, None)


@pytest.mark.parametrize("channel", sorted(ADDRESSES))
@pytest.mark.parametrize("kind", sorted(RICH_TYPES))
def test_every_channel_sends_or_refuses_each_rich_type(channel: str, kind: str) -> None:
    cmd = command(kind, **RICH[kind])
    account, address = ACCOUNTS[channel], ADDRESSES[channel]
    try:
        request = CHANNELS[channel].request(account, "http://api", cmd, address, None, None)
    except InvalidCommand as refused:
        assert str(refused) and channel != "whatsapp"
    else:
        assert channel in ("whatsapp", "telegram")
        if channel == "whatsapp":
            assert request.body["biz_opaque_callback_data"] == "cmd-42"
