"""Messenger and Instagram parsing (adapters/meta_messaging/_inbound.py): what each item
becomes, what it refuses item by item while keeping the rest, which channel a body is, and
properties: the one-decode way and the item-by-item walk give the same events and dead
letters, and nothing but ParseError ever escapes, whatever the bytes."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.meta_messaging import parse
from adapters.meta_messaging._inbound import _Ctx, _parse_walk, _parse_whole
from adapters.schema import (
    ENCODER,
    EVENT_DECODER,
    EchoEvent,
    ForeignBody,
    Media,
    MessageEvent,
    Parsed,
    ParseError,
    ProviderError,
    StatusEvent,
)
from tests.adapters._json import json_paths

RECEIVED_AT = 1795000000
"""Receipt time of every body here (unix seconds; Nov 2026)."""
MS = RECEIVED_AT * 1000
PAGE = "104400000000001"
PSID = "7010000000000001"
IG = "17841400000000001"
IGSID = "6800000000000001"
CORPUS = Path(__file__).resolve().parents[1] / "corpus"
BODIES = {
    channel: [json.loads(p.read_text())["body"] for p in sorted((CORPUS / channel).glob("*.json"))]
    for channel in ("messenger", "instagram")
}
OBJECTS = {"messenger": "page", "instagram": "instagram"}


def body(
    *items: dict[str, Any], obj: str | None = "page", account: str = PAGE, **entry: Any
) -> bytes:
    envelope: dict[str, Any] = {
        "entry": [{"id": account, "time": MS, "messaging": list(items), **entry}]
    }
    if obj is not None:
        envelope["object"] = obj
    return json.dumps(envelope).encode()


def inbound(mid: str = "m_1", sender: str = PSID, recipient: str = PAGE, **event: Any) -> Any:
    event = event or {"message": {"mid": mid, "text": mid}}
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": MS, **event}


def one(parsed: Parsed) -> Any:
    assert not parsed.bad, parsed.bad
    assert len(parsed.events) == 1
    return parsed.events[0]


def messenger(*items: dict[str, Any], **entry: Any) -> Parsed:
    return parse("messenger", body(*items, **entry), RECEIVED_AT)


# --- mapping: what an item becomes ---------------------------------------------------------


def test_a_text_message_is_routed_by_its_own_ids_and_opens_the_window() -> None:
    routed = one(messenger(inbound("m_hello")))
    event = routed.event
    assert isinstance(event, MessageEvent)
    assert (event.channel, event.account_id, event.contact_id) == ("messenger", PAGE, PSID)
    assert event.conversation_id == f"messenger:{PAGE}:{PSID}"
    assert (event.type, event.text, event.timestamp) == ("text", "m_hello", RECEIVED_AT)
    assert event.contact_name is None
    assert (routed.dedup, routed.live, routed.authored) == ("m:m_hello", True, True)


def test_items_of_another_page_in_the_same_entry_go_to_that_page() -> None:
    other = "104400000000002"
    parsed = messenger(inbound("m_a"), inbound("m_b", recipient=other))
    assert [r.event.account_id for r in parsed.events] == [PAGE, other]


def test_timestamps_are_milliseconds_floored_to_seconds() -> None:
    item = inbound("m_t")
    item["timestamp"] = MS + 999
    assert one(messenger(item)).event.timestamp == RECEIVED_AT


def test_an_echo_swaps_the_ids_and_is_not_live() -> None:
    echo = inbound(
        sender=PAGE,
        recipient=PSID,
        message={"mid": "m_e", "is_echo": True, "app_id": 263902037430900, "text": "Oi!"},
    )
    routed = one(messenger(echo))
    assert isinstance(routed.event, EchoEvent)
    assert (routed.event.account_id, routed.event.contact_id) == (PAGE, PSID)
    assert (routed.dedup, routed.live) == ("e:m_e", False)


@pytest.mark.parametrize("where", ["messaging", "standby"])
def test_echoes_of_the_gateways_own_sends_publish_nothing(where: str) -> None:
    own = inbound(
        sender=PAGE,
        recipient=PSID,
        message={"mid": "m_own", "is_echo": True, "metadata": "gw:cmd-1", "text": "x"},
    )
    other = inbound(
        sender=PAGE,
        recipient=PSID,
        message={"mid": "m_other", "is_echo": True, "metadata": "crm:77", "text": "y"},
    )
    raw = json.dumps({"object": "page", "entry": [{"id": PAGE, where: [own, other]}]}).encode()
    parsed = parse("messenger", raw, RECEIVED_AT)
    assert [r.event.message_id for r in parsed.events] == ["m_other"]  # type: ignore[union-attr]
    assert not parsed.bad


def test_the_first_attachment_decides_the_type_and_all_are_listed() -> None:
    attachments = [
        {"type": "video", "payload": {"url": "https://video.example/v.mp4"}},
        {"type": "file", "payload": {"url": "https://cdn.example/f.pdf"}},
    ]
    event = one(messenger(inbound(message={"mid": "m_v", "attachments": attachments}))).event
    assert event.type == "video"
    assert event.media == Media(None, None, None, "https://video.example/v.mp4")
    assert [m.url for m in event.attachments] == [
        "https://video.example/v.mp4",
        "https://cdn.example/f.pdf",
    ]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("image", "image"), ("audio", "audio"), ("video", "video"), ("file", "document")],
)
def test_media_attachments_keep_the_text_as_caption(kind: str, expected: str) -> None:
    attachment = {"type": kind, "payload": {"url": f"https://cdn.example/{kind}"}}
    message = {"mid": "m_c", "text": "legenda ✨", "attachments": [attachment]}
    event = one(messenger(inbound(message=message))).event
    assert (event.type, event.text, event.attachments) == (expected, "legenda ✨", None)
    assert event.media == Media(None, None, None, f"https://cdn.example/{kind}")


def test_a_sticker_sent_twice_over_is_one_sticker() -> None:
    payload = {"url": "https://cdn.example/s.png", "sticker_id": 369239263222822}
    attachments = [{"type": "image", "payload": payload}, {"type": "sticker", "payload": payload}]
    event = one(messenger(inbound(message={"mid": "m_s", "attachments": attachments}))).event
    assert (event.type, event.attachments) == ("sticker", None)
    assert event.media == Media("369239263222822", None, None, "https://cdn.example/s.png")


@pytest.mark.parametrize(
    "kind", ["share", "ig_post", "story_mention", "reel", "ig_reel", "template", "poll_vote"]
)
def test_other_attachments_are_unsupported_with_their_raw_type(kind: str) -> None:
    attachment = {"type": kind, "payload": {"url": "https://cdn.example/x"}}
    message = {"mid": "m_u", "text": "olha", "attachments": [attachment]}
    raw = body(inbound(message=message, recipient=IG), obj="instagram", account=IG)
    event = one(parse("instagram", raw, RECEIVED_AT)).event
    assert (event.type, event.subtype, event.text) == ("unsupported", kind, "olha")
    assert event.errors == [ProviderError(0, kind)]
    assert event.media == Media(None, None, None, "https://cdn.example/x")


def test_an_unsupported_attachment_without_url_has_no_media() -> None:
    message = {"mid": "m_eph", "attachments": [{"type": "ephemeral", "payload": {}}]}
    event = one(messenger(inbound(message=message))).event
    assert (event.type, event.media, event.text) == ("unsupported", None, None)


def test_a_message_with_neither_text_nor_attachments_is_unsupported() -> None:
    event = one(messenger(inbound(message={"mid": "m_empty"}))).event
    assert (event.type, event.subtype, event.text, event.errors) == ("unsupported", None, None, [])


def test_a_story_reply_names_the_story() -> None:
    story = {"id": "17900000000000001", "url": "https://lookaside.fbsbx.com/s"}
    message = {"mid": "m_sr", "text": "lindo!", "reply_to": {"story": story}}
    event = one(messenger(inbound(message=message))).event
    assert (event.reply_to, event.subtype, event.data) == (story["id"], "story_reply", story["url"])


def test_an_unsend_is_a_system_event_that_opens_no_window() -> None:
    routed = one(messenger(inbound(message={"mid": "m_gone", "is_deleted": True})))
    event = routed.event
    assert (event.type, event.subtype, event.message_id) == ("system", "deleted", "m_gone")
    assert (event.reply_to, event.original_message_id) == ("m_gone", "m_gone")
    assert (routed.dedup, routed.live, routed.authored) == ("d:m_gone", True, False)


def test_each_edit_is_its_own_event() -> None:
    edits = [
        inbound(message_edit={"mid": "m_x", "text": "v2", "num_edit": 1}),
        inbound(message_edit={"mid": "m_x", "text": "v3", "num_edit": "2"}),
    ]
    parsed = messenger(*edits)
    assert [r.dedup for r in parsed.events] == ["x:m_x:1", "x:m_x:2"]
    assert all(r.live and not r.authored for r in parsed.events)
    event = parsed.events[1].event
    assert isinstance(event, MessageEvent)
    assert (event.type, event.text, event.edited, event.original_message_id) == (
        "text",
        "v3",
        True,
        "m_x",
    )


def test_a_postback_without_mid_or_payload_gets_an_id_of_its_own() -> None:
    routed = one(messenger(inbound(postback={"title": "Falar com atendente"})))
    event = routed.event
    assert event.message_id == f"postback:{PSID}:{MS}"
    assert (event.type, event.reply.id, event.reply.title) == ("interactive", "", event.text)
    assert (routed.dedup, routed.live) == (f"m:postback:{PSID}:{MS}", True)


def test_a_reaction_without_emoji_keeps_its_name_and_an_unreact_is_empty() -> None:
    react = inbound(reaction={"mid": "m_r", "action": "react", "reaction": "wow"})
    unreact = inbound(reaction={"mid": "m_r", "action": "unreact", "emoji": "😮"})
    parsed = messenger(react, unreact)
    assert [r.event.text for r in parsed.events] == ["wow", ""]  # type: ignore[union-attr]
    assert [r.event.reply_to for r in parsed.events] == ["m_r", "m_r"]  # type: ignore[union-attr]


def test_statuses_rank_by_mid_or_stand_alone_per_watermark() -> None:
    parsed = messenger(
        inbound(delivery={"mids": ["m_1", "m_2"], "watermark": MS}),
        inbound(read={"watermark": MS - 5}),
        inbound(read={"mid": "m_ig"}),
    )
    got = [
        (r.event.message_id, r.event.status, r.event.watermark, r.dedup, r.rank)  # type: ignore[union-attr]
        for r in parsed.events
    ]
    assert got == [
        ("m_1", "delivered", None, "s:m_1", 2),
        ("m_2", "delivered", None, "s:m_2", 2),
        (None, "read", MS - 5, f"w:read:{PSID}:{MS - 5}", 3),
        ("m_ig", "read", None, "s:m_ig", 3),
    ]
    assert all(isinstance(r.event, StatusEvent) and not r.live for r in parsed.events)


def test_handover_events_are_published_but_authored_by_nobody() -> None:
    take = {"previous_owner_app_id": "1", "new_owner_app_id": "263902037430900"}
    roles = {"recipient": {"id": PAGE}, "timestamp": MS, "app_roles": {"1": ["primary_receiver"]}}
    parsed = messenger(inbound(take_thread_control=take), roles)
    assert [r.dedup for r in parsed.events] == [
        f"h:take_thread_control:{PSID}:{MS}",
        f"h:app_roles::{MS}",
    ]
    handed = parsed.events[0].event
    assert isinstance(handed, MessageEvent) and handed.data is not None
    assert json.loads(handed.data) == take
    assert parsed.events[1].event.contact_id is None
    assert all(r.live and not r.authored for r in parsed.events)


def test_optin_data_falls_back_from_ref_to_user_ref_to_payload() -> None:
    parsed = messenger(
        inbound(optin={"ref": "r1", "user_ref": "u1"}),
        inbound(optin={"user_ref": "u2"}),
        inbound(optin={"type": "notification_messages", "payload": "weekly_offers"}),
    )
    assert [r.event.data for r in parsed.events] == ["r1", "u2", "weekly_offers"]  # type: ignore[union-attr]


# --- which channel a body is ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "obj", "other"),
    [
        ("messenger", "instagram", "instagram"),
        ("instagram", "page", "messenger"),
        ("messenger", "whatsapp_business_account", "whatsapp"),
        ("instagram", "permissions", None),
    ],
)
def test_another_object_is_a_foreign_body(channel: str, obj: str, other: str | None) -> None:
    with pytest.raises(ForeignBody) as raised:
        parse(channel, body(inbound(), obj=obj), RECEIVED_AT)
    assert raised.value.channel == other


def test_a_foreign_body_is_recognised_even_when_it_must_be_walked() -> None:
    whatsapp = {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "x"}]}]}
    with pytest.raises(ForeignBody) as raised:
        parse("messenger", json.dumps(whatsapp).encode(), RECEIVED_AT)
    assert raised.value.channel == "whatsapp"


def test_a_body_without_object_is_the_paths_channel() -> None:
    routed = one(parse("instagram", body(inbound(recipient=IG), obj=None), RECEIVED_AT))
    assert routed.event.channel == "instagram"


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[]", b'{"object": "page"}', b'{"entry": {}}', b'{"entry": [1']
)
def test_no_envelope_is_a_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError) as raised:
        parse("messenger", raw, RECEIVED_AT)
    assert not isinstance(raised.value, ForeignBody)


# --- what is refused item by item ----------------------------------------------------------


def _bad(parsed: Parsed) -> list[tuple[str, str]]:
    return [(b.reason, b.detail) for b in parsed.bad]


MESSAGE = {"message": {"mid": "m_bad", "text": "x"}}


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"timestamp": (int(time.time()) + 2 * 86400) * 1000}, "not plausible unix milliseconds"),
        ({"timestamp": -1}, "not plausible unix milliseconds"),
        ({"timestamp": None}, "timestamp is missing"),
        ({"timestamp": "1795000000000"}, "Expected `int | null`, got `str`"),
        ({"sender": {"id": "ana.souza"}}, "sender.id 'ana.souza' is not a numeric id"),
        ({"sender": {"user_ref": "chat-plugin-ref"}}, "sender.id is missing"),
        ({"recipient": None}, "recipient.id is missing"),
        ({"message": {"text": "sem mid"}}, "message.mid is missing"),
        ({"message": {"mid": "m", "attachments": [{"payload": {}}]}}, "missing required field"),
        ({"delivery": {"mids": []}}, "delivery.watermark is missing"),
        ({"delivery": {"mids": ["m_1", ""]}}, "delivery.mids holds an empty mid"),
        ({"read": {}}, "read.watermark is missing"),
        ({"reaction": {"action": "react", "emoji": "👍"}}, "reaction.mid"),
        ({"message_edit": {"text": "sem mid"}}, "message_edit.mid is missing"),
    ],
)
def test_a_bad_item_is_dead_lettered_alone(fields: dict[str, Any], detail: str) -> None:
    base = {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": MS}
    event = {} if set(fields) - set(base) else MESSAGE
    bad = {**base, **event, **fields}
    parsed = messenger(inbound("m_before"), bad, inbound("m_after"))
    assert [r.event.message_id for r in parsed.events] == ["m_before", "m_after"]  # type: ignore[union-attr]
    assert len(parsed.bad) == 1
    reason, got = _bad(parsed)[0]
    assert reason == "malformed_item" and detail in got and got.startswith("entry[0].messaging[1]")
    assert parsed.bad[0].raw == json.dumps(bad).encode()  # the item's exact bytes


def test_a_time_up_to_a_day_ahead_is_accepted() -> None:
    item = inbound("m_soon")
    item["timestamp"] = (RECEIVED_AT + 86000) * 1000
    assert one(messenger(item)).event.timestamp == RECEIVED_AT + 86000


def test_a_location_beyond_any_float_is_refused() -> None:
    """JSON has no infinity: 1e999 is no coordinate (and would not survive the stream)."""
    pin = b'{"coordinates":{"lat":1e999,"long":10.5}}'
    raw = (
        b'{"object":"page","entry":[{"messaging":[{"sender":{"id":"1"},"recipient":{"id":"2"},'
        b'"timestamp":' + str(MS).encode() + b',"message":{"mid":"m","attachments":'
        b'[{"type":"location","payload":' + pin + b"}]}}]}]}"
    )
    parsed = parse("messenger", raw, RECEIVED_AT)
    assert not parsed.events
    assert _bad(parsed) == [
        (
            "malformed_item",
            "entry[0].messaging[0]: Number out of range - at "
            "`$.message.attachments[0].payload.coordinates.lat`",
        )
    ]


def test_an_item_with_no_known_key_names_its_keys() -> None:
    policy = {"recipient": {"id": PAGE}, "timestamp": MS, "policy-enforcement": {"action": "block"}}
    parsed = messenger(policy, inbound("m_ok"))
    assert [r.event.message_id for r in parsed.events] == ["m_ok"]  # type: ignore[union-attr]
    assert _bad(parsed) == [
        (
            "unsupported_item",
            "entry[0].messaging[0]: no messaging event this gateway handles "
            "(keys: policy-enforcement, recipient, timestamp)",
        )
    ]


NOT_MESSAGING = "is not a messaging event"


def test_instagram_changes_are_dead_lettered_by_field() -> None:
    changes = [{"field": "comments", "value": {"id": "1", "text": "quanto?"}}, {"value": {}}]
    raw = body(inbound("m_dm", recipient=IG), obj="instagram", account=IG, changes=changes)
    parsed = parse("instagram", raw, RECEIVED_AT)
    assert [r.event.message_id for r in parsed.events] == ["m_dm"]  # type: ignore[union-attr]
    assert _bad(parsed) == [
        ("unsupported_item", f"entry[0].changes[0]: changes[] field 'comments' {NOT_MESSAGING}"),
        ("unsupported_item", f"entry[0].changes[1]: changes[] field (none) {NOT_MESSAGING}"),
    ]


def test_a_malformed_entry_costs_only_itself() -> None:
    good = {"id": PAGE, "messaging": [inbound("m_good")]}
    raw = json.dumps({"object": "page", "entry": [{"messaging": "nope"}, good]}).encode()
    parsed = parse("messenger", raw, RECEIVED_AT)
    assert [r.event.message_id for r in parsed.events] == ["m_good"]  # type: ignore[union-attr]
    assert [(b.reason, b.detail.split(":")[0]) for b in parsed.bad] == [
        ("malformed_item", "entry[0]")
    ]


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"0" + b"]" * depth


def test_an_item_nested_too_deep_is_dead_lettered_and_its_siblings_published() -> None:
    good = json.dumps(inbound("m_fine")).encode()
    deep_item = b'{"message":{"mid":"m_deep","text":"x","extra":' + _deep(5000) + b"}}"
    raw = b'{"object":"page","entry":[{"messaging":[' + good + b"," + deep_item + b"]}]}"
    parsed = parse("messenger", raw, RECEIVED_AT)
    assert [r.event.message_id for r in parsed.events] == ["m_fine"]  # type: ignore[union-attr]
    assert [(b.reason, b.detail) for b in parsed.bad] == [
        ("malformed_item", "entry[0].messaging[1]: nested deeper than 64 levels")
    ]


def test_a_body_too_deep_outside_any_entry_is_a_parse_error() -> None:
    raw = b'{"object":"page","extra":' + _deep(5000) + b',"entry":[]}'
    with pytest.raises(ParseError, match="outside any entry"):
        parse("messenger", raw, RECEIVED_AT)


# --- properties ----------------------------------------------------------------------------

DEAD_LETTER_REASONS = {"malformed_item", "unsupported_item"}


def check(channel: str, raw: bytes) -> Parsed | None:
    """Parse; only ParseError may escape, every event must survive the stream's encoding."""
    try:
        parsed = parse(channel, raw, RECEIVED_AT)
    except ParseError:
        return None
    for item in parsed.events:
        assert EVENT_DECODER.decode(ENCODER.encode(item.event)) == item.event
    for bad in parsed.bad:
        assert bad.reason in DEAD_LETTER_REASONS and bad.detail
    return parsed


channels = st.sampled_from(["messenger", "instagram"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@given(channels, st.binary(max_size=400))
def test_arbitrary_bytes_only_ever_raise_parse_error(channel: str, raw: bytes) -> None:
    check(channel, raw)


@given(channels, json_values)
def test_arbitrary_json_only_ever_raises_parse_error(channel: str, value: Any) -> None:
    check(channel, json.dumps(value).encode())


ids = st.text("0123456789", min_size=1, max_size=17)
mids = st.text("abcXYZ019_-", min_size=1, max_size=12).map(lambda s: "m_" + s)
texts = st.text(max_size=12)
stamps = st.integers(0, (RECEIVED_AT + 86400) * 1000)
urls = st.none() | st.text("abc/:.", min_size=1, max_size=10).map(lambda s: "https://" + s)
attachment = st.builds(
    lambda kind, url, sticker: {
        "type": kind,
        "payload": {k: v for k, v in (("url", url), ("sticker_id", sticker)) if v is not None},
    },
    st.sampled_from(["image", "audio", "video", "file", "sticker", "share", "ig_reel", "x"]),
    urls,
    st.none() | st.integers(1, 10**15),
)


stories = st.fixed_dictionaries({"id": ids, "url": urls})


def _message() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda mid, extra: {"mid": mid, **extra},
        mids,
        st.fixed_dictionaries(
            {},
            optional={
                "text": texts,
                "quick_reply": st.fixed_dictionaries({}, optional={"payload": texts}),
                "attachments": st.lists(attachment, max_size=3),
                "reply_to": st.fixed_dictionaries({"mid": mids})
                | st.fixed_dictionaries({"story": stories}),
                "is_deleted": st.booleans(),
                "is_unsupported": st.booleans(),
                "referral": st.fixed_dictionaries({"ref": texts}),
            },
        ),
    )


# (event key, its value): everything an item may carry, one key each.
EVENTS = st.one_of(
    st.tuples(st.just("message"), _message()),
    st.tuples(
        st.just("message_edit"),
        st.fixed_dictionaries(
            {"mid": mids, "text": texts}, optional={"num_edit": st.integers(0, 5) | ids}
        ),
    ),
    st.tuples(
        st.just("postback"),
        st.fixed_dictionaries({"title": texts}, optional={"mid": mids, "payload": texts}),
    ),
    st.tuples(
        st.just("reaction"),
        st.fixed_dictionaries(
            {"mid": mids, "action": st.sampled_from(["react", "unreact"])},
            optional={"emoji": st.sampled_from(["❤️", "😮", "👍"]), "reaction": texts},
        ),
    ),
    st.tuples(
        st.just("read"),
        st.fixed_dictionaries({"watermark": stamps}) | st.fixed_dictionaries({"mid": mids}),
    ),
    st.tuples(
        st.just("delivery"),
        st.fixed_dictionaries({"watermark": stamps}, optional={"mids": st.lists(mids, max_size=3)}),
    ),
    st.tuples(st.just("referral"), st.fixed_dictionaries({"ref": texts, "source": texts})),
    st.tuples(
        st.just("optin"), st.fixed_dictionaries({}, optional={"ref": texts, "user_ref": texts})
    ),
    st.tuples(st.just("account_linking"), st.fixed_dictionaries({"status": texts})),
    st.tuples(
        st.sampled_from(["pass_thread_control", "take_thread_control", "request_thread_control"]),
        st.fixed_dictionaries({"metadata": texts}),
    ),
)
# What makes one item a dead letter: at decode (any item, even an own echo) or at mapping.
TYPE_BREAKS: list[tuple[str, Any]] = [
    ("timestamp", "yesterday"),
    ("timestamp", 1.5e12),
    ("sender", []),
    ("recipient", 7),
]
MAPPING_BREAKS: list[tuple[str, Any]] = [
    ("timestamp", 4_000_000_000_000),  # year 2096
    ("timestamp", -1),
    ("sender", {"id": "ana"}),
    ("recipient", {}),
]


@st.composite
def items(draw: st.DrawFn, account: str) -> tuple[dict[str, Any], str | None]:
    """One item, and the dead-letter reason it was broken to get (None: a good one)."""
    contact = draw(ids)
    key, value = draw(EVENTS)
    echo = key == "message" and draw(st.booleans())  # the business wrote
    own = echo and draw(st.booleans())  # ... through the gateway: dropped
    item: dict[str, Any] = {"sender": {"id": contact}, "recipient": {"id": account}}
    if echo:
        value["is_echo"] = True
        item = {"sender": {"id": account}, "recipient": {"id": contact}}
    if own:
        value["metadata"] = "gw:" + draw(texts)
    item["timestamp"] = draw(stamps)
    item[key] = value
    if draw(st.integers(0, 7)):
        return item, None
    # An own echo is dropped before its ids and time are looked at: only a decode breaks it.
    match draw(st.integers(0, 2)) if not own else 0:
        case 0:
            field, bad = draw(st.sampled_from(TYPE_BREAKS))
        case 1:
            field, bad = draw(st.sampled_from(MAPPING_BREAKS))
        case _:
            return {"recipient": {"id": account}, "policy-enforcement": value}, "unsupported_item"
    item[field] = bad
    return item, "malformed_item"


@st.composite
def webhooks(draw: st.DrawFn) -> tuple[str, dict[str, Any], Counter[str]]:
    """A webhook body, and how many items of it were broken for each reason."""
    channel = draw(channels)
    broken: Counter[str] = Counter()
    entries = []
    for _ in range(draw(st.integers(1, 3))):
        account = draw(st.sampled_from([PAGE, "104400000000002", IG]))
        entry: dict[str, Any] = {"id": account, "time": MS}
        for where in ("messaging", "standby"):
            if draw(st.booleans()):
                drawn = draw(st.lists(items(account), max_size=4))
                entry[where] = [item for item, _ in drawn]
                broken.update(reason for _, reason in drawn if reason)
        if channel == "instagram" and not draw(st.integers(0, 5)):
            entry["changes"] = [{"field": "comments", "value": {"id": draw(ids)}}]
            broken["unsupported_item"] += 1
        entries.append(entry)
    return channel, {"object": OBJECTS[channel], "entry": entries}, broken


def outcome(channel: str, parser: Any, raw: bytes) -> Parsed | str:
    try:
        result: Parsed
        if parser is parse:
            result = parse(channel, raw, RECEIVED_AT)
        else:
            result = parser(_Ctx(channel, RECEIVED_AT), raw)  # type: ignore[arg-type]
    except ParseError as exc:
        return f"{type(exc).__name__}: {exc}"
    return result


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(webhooks(), st.booleans())
def test_generated_webhooks_give_the_same_events_either_way(
    case: tuple[str, dict[str, Any], Counter[str]], ascii_only: bool
) -> None:
    channel, envelope, broken = case
    raw = json.dumps(envelope, ensure_ascii=ascii_only).encode()
    walked = outcome(channel, _parse_walk, raw)
    assert isinstance(walked, Parsed)
    assert outcome(channel, parse, raw) == walked
    # Each broken item is one dead letter of its reason; everything else is published.
    assert Counter(bad.reason for bad in walked.bad) == broken
    if not broken:
        # The usual webhook takes the one-decode way, and it gives what the walk gives.
        assert outcome(channel, _parse_whole, raw) == walked
    for routed in walked.events:
        assert EVENT_DECODER.decode(ENCODER.encode(routed.event)) == routed.event


def _mutate(node: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    for step in path[:-1]:
        node = node[step]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(channels, st.data())
def test_mutated_corpus_bodies_never_crash_and_give_the_same_outcome_either_way(
    channel: str, data: st.DataObject
) -> None:
    original = data.draw(st.sampled_from(BODIES[channel]))
    mutated = json.loads(json.dumps(original))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = json_paths(mutated)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        _mutate(mutated, path, data.draw(json_values), data.draw(st.booleans()))
    raw = json.dumps(mutated).encode()
    check(channel, raw)
    assert outcome(channel, parse, raw) == outcome(channel, _parse_walk, raw)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(channels, st.data(), st.integers(1, 20_000), st.sampled_from(["[", '{"a":']))
def test_a_deep_value_anywhere_in_a_real_payload_never_escapes(
    channel: str, data: st.DataObject, depth: int, opener: str
) -> None:
    """Any JSON depth at any place: ParseError or dead letters, and every event still encodes."""
    original = data.draw(st.sampled_from(BODIES[channel]))
    mutated = json.loads(json.dumps(original))
    path = data.draw(st.sampled_from(json_paths(mutated)))
    _mutate(mutated, path, "DEEP-VALUE", False)
    closer = "]" if opener == "[" else "}"
    deep = (opener * depth + "0" + closer * depth).encode()
    check(channel, json.dumps(mutated).encode().replace(b'"DEEP-VALUE"', deep))
