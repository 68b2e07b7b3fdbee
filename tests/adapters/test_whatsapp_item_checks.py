"""What the WhatsApp parser refuses item by item, and keeps the rest: items nested too deep,
group messages, messages without a usable sender, statuses outside the contract, implausible
timestamps; and what it maps that it lost before (On-Premises voice notes, ban states)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.schema import AccountEvent, MessageEvent, Parsed, ParseError, StatusEvent
from adapters.whatsapp import parse
from adapters.whatsapp._depth import cut_deep, marker_for

NOW = 1767225600
NUMBER = "100200300400500"


def message(wamid: str, **fields: Any) -> dict[str, Any]:
    item = {
        "from": "5511987650000",
        "id": wamid,
        "timestamp": str(NOW),
        "type": "text",
        "text": {"body": wamid},
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def body(*changes: dict[str, Any], **top: Any) -> bytes:
    entry = {"id": "200300400500600", "changes": list(changes)}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry], **top}).encode()


def messages_change(field: str = "messages", **value: Any) -> dict[str, Any]:
    metadata = {"display_phone_number": "15550001111", "phone_number_id": NUMBER}
    return {
        "field": field,
        "value": {"messaging_product": "whatsapp", "metadata": metadata, **value},
    }


def nested(depth: int, opener: str = "[") -> Any:
    """A JSON value `depth` levels deep, built without recursion."""
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if opener == "[" else {"a": value}
    return value


def deep_text(depth: int, opener: str = "[") -> bytes:
    """Nested JSON as text (json.dumps itself recurses, and gives up near 1000 levels)."""
    if opener == "[":
        return b"[" * depth + b'"x"' + b"]" * depth
    return b'{"a":' * depth + b'"x"' + b"}" * depth


def ids(parsed: Parsed) -> list[str]:
    return [getattr(r.event, "message_id", "") for r in parsed.events]


def bad_where(parsed: Parsed) -> list[tuple[str, str]]:
    return [(b.reason, b.detail.split(":")[0]) for b in parsed.bad]


# --- ITEM 4: one deeply nested item costs only itself. ---


@pytest.mark.parametrize("opener", ["[", "{"])
@pytest.mark.parametrize("depth", [1000, 5000, 100_000])
def test_a_deeply_nested_item_is_dead_lettered_and_its_siblings_published(
    depth: int, opener: str
) -> None:
    raw = body(messages_change(messages=[message("wamid.A"), "DEEP", message("wamid.B")]))
    raw = raw.replace(
        b'"DEEP"', b'{"id":"wamid.D","type":"text","text":{"body":%s}}' % deep_text(depth, opener)
    )
    parsed = parse(raw, NOW)
    assert ids(parsed) == ["wamid.A", "wamid.B"]
    assert bad_where(parsed) == [("malformed_item", "entry[0].changes[0].value.messages[1]")]
    assert "nested deeper than 64 levels" in parsed.bad[0].detail


def test_a_deep_part_outside_the_items_costs_its_change_only() -> None:
    deep_contacts = messages_change(contacts="DEEP", messages=[message("wamid.A")])
    fine = messages_change(messages=[message("wamid.B")])
    raw = body(deep_contacts, fine).replace(b'"DEEP"', deep_text(3000))
    parsed = parse(raw, NOW)
    assert ids(parsed) == ["wamid.B"]
    assert bad_where(parsed) == [("malformed_item", "entry[0].changes[0]")]


def test_a_deep_account_update_costs_itself_only() -> None:
    update = {"field": "account_update", "value": {"event": "X", "detail": "DEEP"}}
    raw = body(update, messages_change(messages=[message("wamid.B")]))
    parsed = parse(raw.replace(b'"DEEP"', deep_text(2000, "{")), NOW)
    assert ids(parsed) == ["wamid.B"]
    assert bad_where(parsed) == [("malformed_item", "entry[0].changes[0]")]


@pytest.mark.parametrize(
    "raw",
    [
        deep_text(50_000),
        b'{"object":' + deep_text(3000, "{") + b',"entry":[]}',
        body(messages_change(messages=[message("wamid.A")]), extra="DEEP"),
        b'{"entry":[' + b"[" * 3000,  # deep and cut off
    ],
    ids=["bare-array", "deep-object-key", "deep-top-level-key", "truncated"],
)
def test_a_body_too_deep_outside_any_entry_is_a_parse_error(raw: bytes) -> None:
    raw = raw.replace(b'"DEEP"', deep_text(3000))
    with pytest.raises(ParseError):
        parse(raw, NOW)


def test_a_deep_history_message_costs_itself_only() -> None:
    old = [message(f"wamid.H{i}") for i in range(3)]
    old[1]["referral"] = "DEEP"
    history = [{"metadata": {"phase": 0}, "threads": [{"id": "5511987650000", "messages": old}]}]
    raw = body(messages_change("history", history=history)).replace(b'"DEEP"', deep_text(4000))
    parsed = parse(raw, NOW)
    assert ids(parsed) == ["wamid.H0", "wamid.H2"]
    assert bad_where(parsed) == [
        ("malformed_item", "entry[0].changes[0].value.history[0].threads[0].messages[1]")
    ]


def test_cut_deep_keeps_strings_and_shallow_parts_as_they_are() -> None:
    raw = b'{"a": "[[[[[[", "b": [ [ [1] ], [2]], "c": {"d": {"e": []}}}'
    marker = marker_for(raw)
    assert cut_deep(raw, 3, marker) == raw.replace(b"[1]", marker).replace(b"[]", marker)
    assert cut_deep(raw, 4, marker) is None


# Where a deep value can sit: inside an item, beside the items, at the top; any depth.
PLACES = ["item", "item-unknown-key", "contacts", "entry-key", "top-key"]


def _outcomes(place: str, position: int) -> tuple[object, object]:
    """(what a body the decoder takes gives, what a body too deep for it gives): published
    message ids and dead letters, or "ParseError"."""
    everyone = ["wamid.0", "wamid.1", "wamid.2"]
    others = [m for i, m in enumerate(everyone) if i != position]
    return {
        "item": ((others, 1), (others, 1)),  # text.body must be a string anyway
        "item-unknown-key": ((everyone, 0), (others, 1)),
        "contacts": (([], 1), ([], 1)),
        "entry-key": ((everyone, 0), ([], 1)),
        "top-key": ((everyone, 0), "ParseError"),
    }[place]


@settings(max_examples=80, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.integers(1, 30_000) | st.integers(60, 4000),
    st.sampled_from(["[", "{"]),
    st.sampled_from(PLACES),
    st.integers(0, 2),
)
def test_any_depth_anywhere_gives_dead_letters_or_a_parse_error_never_a_recursion_error(
    depth: int, opener: str, place: str, position: int
) -> None:
    items: list[Any] = [message(f"wamid.{i}") for i in range(3)]
    change = messages_change(messages=items)
    top: dict[str, Any] = {}
    if place == "item":
        items[position]["text"] = {"body": "DEEP"}
    elif place == "item-unknown-key":
        items[position]["extra"] = "DEEP"
    elif place == "contacts":
        change["value"]["contacts"] = "DEEP"
    elif place == "top-key":
        top["extra"] = "DEEP"
    raw = body(change, **top)
    if place == "entry-key":
        raw = raw.replace(b'"changes"', b'"extra":"DEEP","changes"')
    raw = raw.replace(b'"DEEP"', deep_text(depth, opener))
    try:
        parsed = parse(raw, NOW)
        got: object = (ids(parsed), len(parsed.bad))
        assert all(b.reason == "malformed_item" for b in parsed.bad)
    except ParseError:
        got = "ParseError"
    usual, cut = _outcomes(place, position)
    # The decoder takes about as many levels as the recursion limit leaves (hypothesis raises
    # that limit while it runs); beyond, the body is cut at 64 levels. Either way, never an
    # exception but ParseError.
    if depth <= 64:
        assert got == usual
    elif depth >= 10_000:
        assert got == cut
    else:
        assert got in (usual, cut)


# --- ITEM 10: what an item must be to be published, and what it maps to. ---


def one(parsed: Parsed) -> Any:
    [routed] = parsed.events
    return routed.event


def test_a_group_message_is_dead_lettered_not_published_as_a_private_one() -> None:
    group = message("wamid.G", group_id="Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD")
    parsed = parse(body(messages_change(messages=[group, message("wamid.A")])), NOW)
    assert ids(parsed) == ["wamid.A"]
    assert bad_where(parsed) == [("unsupported_group", "entry[0].changes[0].value.messages[0]")]


def test_a_group_echo_is_dead_lettered_too() -> None:
    echo = message("wamid.GE", to="5511987650000", group_id="Y2FwaV9ncm91cA")
    parsed = parse(body(messages_change("smb_message_echoes", message_echoes=[echo])), NOW)
    assert parsed.events == [] and parsed.bad[0].reason == "unsupported_group"


@pytest.mark.parametrize(
    "sender",
    [
        {"from": None},  # no sender at all
        {"from": ""},
        {"from": "+5511987650000"},
        {"from": "55 11 98765"},
        {"from": "٥٥١١٩٨٧٦٥"},  # digits, but not ASCII ones
        {"from": "5511987650000:x"},
        {"from": "1" * 21},
        {"from": None, "from_user_id": 'BR."x'},
        {"from": None, "from_user_id": "BR.12:34"},
    ],
)
def test_a_message_without_a_usable_sender_is_dead_lettered(sender: dict[str, Any]) -> None:
    parsed = parse(body(messages_change(messages=[message("wamid.S", **sender)])), NOW)
    assert parsed.events == []
    assert bad_where(parsed) == [("malformed_item", "entry[0].changes[0].value.messages[0]")]


@pytest.mark.parametrize("user_id", ["BR.8812345", "US.13491208655302741918", "US.ENT.118157"])
def test_a_bsuid_only_sender_is_the_contact(user_id: str) -> None:
    item = message("wamid.U", **{"from": None, "from_user_id": user_id})
    event = one(parse(body(messages_change(messages=[item])), NOW))
    assert isinstance(event, MessageEvent) and event.contact_id == user_id


def test_an_echo_without_a_recipient_is_dead_lettered() -> None:
    echo = message("wamid.E", **{"from": "15550001111"})
    parsed = parse(body(messages_change("smb_message_echoes", message_echoes=[echo])), NOW)
    assert parsed.events == [] and parsed.bad[0].reason == "malformed_item"


@pytest.mark.parametrize("status", ["deleted", "warning", "SENT", "pending"])
def test_a_status_outside_the_contract_is_dead_lettered(status: str) -> None:
    statuses = [
        {"id": "wamid.X", "status": status, "timestamp": str(NOW), "recipient_id": "5511987650000"},
        {"id": "wamid.Y", "status": "read", "timestamp": str(NOW), "recipient_id": "5511987650000"},
    ]
    parsed = parse(body(messages_change(statuses=statuses)), NOW)
    assert [r.event.status for r in parsed.events if isinstance(r.event, StatusEvent)] == ["read"]
    assert bad_where(parsed) == [("unknown_status", "entry[0].changes[0].value.statuses[0]")]


def test_an_on_premises_voice_note_keeps_its_media() -> None:
    voice = {"id": "media.V1", "mime_type": "audio/ogg; codecs=opus", "sha256": "abc"}
    item = message("wamid.V", type="voice", voice=voice, text=None)
    event = one(parse(body(messages_change(messages=[item])), NOW))
    assert event.type == "voice"
    assert event.media is not None and event.media.id == "media.V1"
    assert event.media.mime_type == "audio/ogg; codecs=opus"


@pytest.mark.parametrize(
    "stamp",
    ["9" * 30, "4000000000", 4_000_000_000, "１７６７２２５６００", "-5", 2**70, "wall+2d"],
)
def test_an_implausible_timestamp_is_dead_lettered(stamp: Any) -> None:
    if stamp == "wall+2d":  # two days after now (the receipt time here is older)
        stamp = str(int(time.time()) + 2 * 86400)
    statuses = [{"id": "wamid.X", "status": "read", "timestamp": stamp, "recipient_id": "1555"}]
    parsed = parse(
        body(messages_change(messages=[message("wamid.T", timestamp=stamp)], statuses=statuses)),
        NOW,
    )
    assert parsed.events == []
    assert [reason for reason, _ in bad_where(parsed)] == ["malformed_item", "malformed_item"]
    assert all("is not plausible unix seconds" in b.detail for b in parsed.bad)


def test_a_timestamp_within_a_day_of_receipt_is_kept() -> None:
    event = one(
        parse(body(messages_change(messages=[message("wamid.T", timestamp=str(NOW + 3600))])), NOW)
    )
    assert event.timestamp == NOW + 3600


def account_update(event: str, **value: Any) -> bytes:
    return body({"field": "account_update", "value": {"event": event, **value}})


@pytest.mark.parametrize(
    ("state", "connected"),
    [("REINSTATE", True), ("SCHEDULE_FOR_DISABLE", None), ("DISABLE", False), (None, False)],
)
def test_disabled_update_follows_the_ban_state(state: str | None, connected: bool | None) -> None:
    ban = {"waba_ban_state": state, "waba_ban_date": "December 9, 2026"} if state else None
    extra = {"ban_info": ban} if ban else {}
    event = one(parse(account_update("DISABLED_UPDATE", **extra), NOW))
    assert isinstance(event, AccountEvent) and event.connected is connected


@pytest.mark.parametrize("ban_info", [["DISABLE"], {"waba_ban_state": ["REINSTATE"]}, "DISABLE"])
def test_disabled_update_with_an_odd_ban_info_disconnects_and_never_crashes(ban_info: Any) -> None:
    event = one(parse(account_update("DISABLED_UPDATE", ban_info=ban_info), NOW))
    assert isinstance(event, AccountEvent) and event.connected is False
