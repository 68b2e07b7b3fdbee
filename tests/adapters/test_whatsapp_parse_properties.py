"""Property tests: the WhatsApp parser raises nothing but ParseError, whatever it is fed, and
whatever it returns encodes and decodes as the common schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.schema import ENCODER, EVENT_DECODER, Parsed, ParseError
from adapters.whatsapp import parse
from tests.adapters._json import json_paths

CORPUS = sorted((Path(__file__).parent.parent / "corpus" / "whatsapp").glob("*.json"))
BODIES = [json.loads(p.read_text())["body"] for p in CORPUS]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


DEAD_LETTER_REASONS = {"malformed_item", "unknown_status", "unsupported_group"}


def check(body: bytes) -> Parsed | None:
    try:
        parsed = parse(body, 1767225600)
    except ParseError:
        return None
    for item in parsed.events:
        assert EVENT_DECODER.decode(ENCODER.encode(item.event)) == item.event
    for bad in parsed.bad:
        assert bad.reason in DEAD_LETTER_REASONS and bad.detail
    return parsed


@given(st.binary(max_size=400))
def test_arbitrary_bytes_only_ever_raise_parse_error(body: bytes) -> None:
    check(body)


@given(json_values)
def test_arbitrary_json_only_ever_raises_parse_error(value: Any) -> None:
    check(json.dumps(value).encode())


def _mutate(body: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    body = json.loads(json.dumps(body))
    node = body
    for step in path[:-1]:
        node = node[step]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_payloads_never_crash_and_keep_the_rest(data: st.DataObject) -> None:
    body = data.draw(st.sampled_from(BODIES))
    paths = json_paths(body)
    for _ in range(data.draw(st.integers(1, 3))):
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        body = _mutate(body, path, data.draw(json_values), data.draw(st.booleans()))
        paths = json_paths(body)
    check(json.dumps(body).encode())


def test_one_mutated_message_leaves_its_siblings_published() -> None:
    messages = [
        {
            "from": "5511987650000",
            "id": f"wamid.P{i}",
            "timestamp": "1767225600",
            "type": "text",
            "text": {"body": str(i)},
        }
        for i in range(3)
    ]
    body = {
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": "100", "display_phone_number": "1555"},
                            "messages": messages,
                        },
                    }
                ],
            }
        ]
    }
    broken = _mutate(
        body, ("entry", 0, "changes", 0, "value", "messages", 1, "timestamp"), [], False
    )
    parsed = check(json.dumps(broken).encode())
    assert parsed is not None and len(parsed.bad) == 1
    assert json.loads(parsed.bad[0].raw)["id"] == "wamid.P1"
    assert [e.event.message_id for e in parsed.events] == ["wamid.P0", "wamid.P2"]  # type: ignore[union-attr]


@given(st.integers(min_value=1, max_value=20_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_a_parse_error_or_a_bad_item_never_a_crash(depth: int, opener: str) -> None:
    """msgspec gives up on deep nesting with RecursionError; that is malformed input too."""
    whole = (opener * depth).encode()
    assert check(b'{"object":"whatsapp_business_account","entry":' + whole) is None
    parsed = check(b'{"object":"whatsapp_business_account","entry":[' + whole + b"]}")
    assert parsed is None or (parsed.events == [] and len(parsed.bad) <= 1)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data(), st.integers(1, 20_000), st.sampled_from(["[", '{"a":']))
def test_a_deep_value_anywhere_in_a_real_payload_never_escapes_as_recursion_error(
    data: st.DataObject, depth: int, opener: str
) -> None:
    """Any JSON depth at any place: ParseError or dead letters, and every event still encodes."""
    body = data.draw(st.sampled_from(BODIES))
    path = data.draw(st.sampled_from(json_paths(body)))
    closer = "]" if opener == "[" else "}"
    deep = (opener * depth + "0" + closer * depth).encode()
    raw = json.dumps(_mutate(body, path, "DEEP-VALUE", False)).encode()
    check(raw.replace(b'"DEEP-VALUE"', deep))
