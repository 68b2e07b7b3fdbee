"""The WhatsApp parser decodes a usual body whole, in one pass, and walks any other body item
by item. Which way a body takes must not show: the same events (every field), the same dead
letters, the same errors. Checked on generated webhooks (well formed, and with malformed items
mixed in) and on mutated real payloads from the corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.schema import Parsed, ParseError
from adapters.whatsapp import parse
from adapters.whatsapp._inbound import _parse_walk, _parse_whole
from tests.adapters._json import json_paths

RECEIVED_AT = 1767225600
CORPUS = sorted((Path(__file__).parent.parent / "corpus" / "whatsapp").glob("*.json"))
BODIES = [json.loads(p.read_text())["body"] for p in CORPUS]

ids = st.text("abcXYZ019=_.", min_size=1, max_size=12).map(lambda s: "wamid." + s)
digits = st.text("0123456789", min_size=5, max_size=13)
texts = st.none() | st.text(max_size=12)
# Up to a day after receipt: later is no plausible time, a dead letter (BAD_TIME).
stamps = st.integers(0, RECEIVED_AT + 86400).map(str) | st.integers(0, RECEIVED_AT + 86400)
media = st.fixed_dictionaries(
    {"id": st.text("0123456789", min_size=1, max_size=8)},
    optional={"mime_type": texts, "caption": texts, "filename": texts, "voice": st.booleans()},
)
errors = st.lists(
    st.fixed_dictionaries({"code": st.integers(0, 200_000)}, optional={"title": st.text()}),
    max_size=2,
)


def _content() -> st.SearchStrategy[dict[str, Any]]:
    reply = st.fixed_dictionaries({"id": st.text(max_size=6)}, optional={"title": texts})
    return st.one_of(
        st.builds(lambda b: {"type": "text", "text": {"body": b}}, st.text(max_size=30)),
        st.builds(
            lambda kind, m: {"type": kind, kind: m},
            st.sampled_from(["image", "audio", "video", "document", "sticker"]),
            media,
        ),
        st.builds(
            lambda lat, lon, name: {
                "type": "location",
                "location": {"latitude": lat, "longitude": lon, "name": name},
            },
            st.floats(-90, 90),
            st.floats(-180, 180),
            texts,
        ),
        st.builds(
            lambda kind, r: {"type": "interactive", "interactive": {"type": kind, kind: r}},
            st.sampled_from(["button_reply", "list_reply"]),
            reply,
        ),
        st.builds(
            lambda payload, text: {"type": "button", "button": {"payload": payload, "text": text}},
            texts,
            texts,
        ),
        st.builds(
            lambda mid, emoji: {
                "type": "reaction",
                "reaction": {"message_id": mid, "emoji": emoji},
            },
            ids,
            texts,
        ),
        st.builds(
            lambda name, phone: {
                "type": "contacts",
                "contacts": [{"name": {"formatted_name": name}, "phones": [{"phone": phone}]}],
            },
            texts,
            digits,
        ),
        st.builds(
            lambda body, kind, wa_id: {
                "type": "system",
                "system": {"body": body, "type": kind, "wa_id": wa_id},
            },
            texts,
            st.sampled_from(["user_changed_number", "customer_identity_changed"]),
            digits,
        ),
        st.builds(
            lambda original: {"type": "revoke", "revoke": {"original_message_id": original}},
            ids,
        ),
        st.builds(
            lambda original, body: {
                "type": "edit",
                "edit": {
                    "original_message_id": original,
                    "message": {"type": "text", "text": {"body": body}},
                },
            },
            ids,
            st.text(max_size=10),
        ),
        st.just({"type": "unsupported", "unsupported": {"type": "video_note"}}),
        st.just({"type": "request_welcome"}),
    )


def _message(sender_key: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda mid, stamp, sender, content, extra: {
            "id": mid,
            "timestamp": stamp,
            sender_key: sender,
            **content,
            **extra,
        },
        ids,
        stamps,
        digits,
        _content(),
        st.fixed_dictionaries(
            {},
            optional={
                "context": st.fixed_dictionaries({"id": ids}),
                "errors": errors,
                "referral": st.fixed_dictionaries({"source_url": st.text(max_size=8)}),
                "from_user_id": st.text("BR.0123456789", min_size=3, max_size=8),
            },
        ),
    )


statuses = st.builds(
    lambda mid, status, stamp, recipient, extra: {
        "id": mid,
        "status": status,
        "timestamp": stamp,
        "recipient_id": recipient,
        **extra,
    },
    ids,
    st.sampled_from(["sent", "delivered", "read", "played", "failed"]),
    stamps,
    digits,
    st.fixed_dictionaries(
        {},
        optional={
            "errors": errors,
            "biz_opaque_callback_data": st.text(max_size=8),
            "pricing": st.fixed_dictionaries({"category": st.sampled_from(["service", "utility"])}),
        },
    ),
)
state_sync = st.builds(
    lambda phone, action, name: {
        "type": "contact",
        "action": action,
        "contact": {"phone_number": phone, "full_name": name},
        "metadata": {"timestamp": "1767225000"},
    },
    digits,
    st.sampled_from(["add", "remove"]),
    texts,
)
# What turns one item into a dead letter: bad time, no id, a field of the wrong type.
BAD_TIME = [
    ("timestamp", "yesterday"),
    ("timestamp", []),
    ("timestamp", "9" * 30),
    ("timestamp", 4_000_000_000),  # year 2096: more than a day after receipt and now
    ("id", ""),
]
BREAK_MESSAGE = st.sampled_from([*BAD_TIME, ("text", 5), ("context", [])])
BREAK_STATUS = st.sampled_from([*BAD_TIME, ("status", 5), ("errors", {})])
BREAK_STATE = st.sampled_from([("action", 5), ("contact", None), ("metadata", [])])


@st.composite
def webhooks(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A webhook body and how many of its items were broken on purpose."""
    broken = 0

    def items(
        strategy: st.SearchStrategy[dict[str, Any]], breakages: st.SearchStrategy[tuple[str, Any]]
    ) -> list[dict[str, Any]]:
        nonlocal broken
        out = draw(st.lists(strategy, max_size=3))
        for item in out:
            if draw(st.integers(0, 9)) == 0:
                key, value = draw(breakages)
                item[key] = value
                broken += 1
        return out

    changes = []
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(["messages", "smb_message_echoes", "smb_app_state_sync"]))
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550001111",
                "phone_number_id": draw(st.sampled_from(["100200300400500", "100200300400600"])),
            },
        }
        if draw(st.booleans()):
            value["contacts"] = [{"profile": {"name": draw(texts)}, "wa_id": draw(digits)}]
        if field == "messages":
            value["messages"] = items(_message("from"), BREAK_MESSAGE)
            value["statuses"] = items(statuses, BREAK_STATUS)
        elif field == "smb_message_echoes":
            value["message_echoes"] = items(_message("to"), BREAK_MESSAGE)
        else:
            value["state_sync"] = items(state_sync, BREAK_STATE)
        changes.append({"value": value, "field": field})
    entry = {"id": "200300400500600", "time": RECEIVED_AT, "changes": changes}
    return {"object": "whatsapp_business_account", "entry": [entry]}, broken


def outcome(parser: Any, body: bytes) -> Parsed | str:
    try:
        result: Parsed = parser(body, RECEIVED_AT)
    except ParseError as exc:
        return f"ParseError: {exc}"
    return result


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(webhooks())
def test_generated_webhooks_give_the_same_events_either_way(
    case: tuple[dict[str, Any], int],
) -> None:
    body, broken = case
    raw = json.dumps(body, ensure_ascii=bool(broken % 2)).encode()
    walked = outcome(_parse_walk, raw)
    assert isinstance(walked, Parsed)
    assert outcome(parse, raw) == walked
    # Each broken item is one dead letter; everything else is published.
    assert len(walked.bad) == broken
    assert all(bad.reason == "malformed_item" for bad in walked.bad)
    if not broken:
        # The usual webhook takes the one-decode way, and it gives what the walk gives.
        assert _parse_whole(raw, RECEIVED_AT) == walked


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BODIES), st.data())
def test_mutated_corpus_bodies_give_the_same_outcome_either_way(
    original: dict[str, Any], data: st.DataObject
) -> None:
    body = json.loads(json.dumps(original))
    for _ in range(data.draw(st.integers(0, 2))):
        paths = json_paths(body)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        node = body
        for step in path[:-1]:
            node = node[step]
        if isinstance(node, dict) and data.draw(st.booleans()):
            del node[path[-1]]
        else:
            node[path[-1]] = data.draw(json_values)
    raw = json.dumps(body).encode()
    assert outcome(parse, raw) == outcome(_parse_walk, raw)


def test_a_malformed_message_is_dead_lettered_alone() -> None:
    messages = [
        {"from": "5511987650000", "id": f"wamid.Q{i}", "timestamp": "1767225600", "type": "text"}
        for i in range(3)
    ]
    messages[1]["text"] = "not an object"
    value = {"metadata": {"phone_number_id": "100", "display_phone_number": "1555"}}
    body = {
        "entry": [{"changes": [{"field": "messages", "value": {**value, "messages": messages}}]}]
    }
    parsed = parse(json.dumps(body).encode(), RECEIVED_AT)
    assert [json.loads(bad.raw)["id"] for bad in parsed.bad] == ["wamid.Q1"]
    assert [r.event.message_id for r in parsed.events] == ["wamid.Q0", "wamid.Q2"]  # type: ignore[union-attr]
