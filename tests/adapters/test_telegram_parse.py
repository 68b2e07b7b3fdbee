"""Telegram adapter: one test per row of docs/mapping.md (Telegram), the corpus, properties."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.schema import (
    ENCODER,
    EVENT_DECODER,
    AnyEvent,
    Location,
    Media,
    MemberEvent,
    MessageEvent,
    Parsed,
    ParseError,
    Reply,
    Routed,
    SharedContact,
)
from adapters.telegram import parse_update, verify_secret
from tests.adapters._json import json_paths

BOT = "7000000001"
RECEIVED = 1767300000
T = 1767226200
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "telegram"
ASSISTANTS = {"7000000001": "support", "7000000002": "sales"}

ANA = {"id": 123456789, "is_bot": False, "first_name": "Ana", "last_name": "Souza"}
ANA_CHAT = {"id": 123456789, "type": "private", "first_name": "Ana", "last_name": "Souza"}
GROUP = {"id": -1001234567890, "type": "supergroup", "title": "Acme Support", "is_forum": True}
CHANNEL = {"id": -1009876543210, "type": "channel", "title": "Acme News"}


def _msg(**content: Any) -> dict[str, Any]:
    return {"message_id": 55, "from": ANA, "chat": ANA_CHAT, "date": T, **content}


def _body(update: dict[str, Any], update_id: int = 912345678) -> bytes:
    return json.dumps({"update_id": update_id, **update}).encode()


def _routed(update: dict[str, Any], update_id: int = 912345678) -> Routed:
    parsed = parse_update(_body(update, update_id), BOT, RECEIVED)
    assert parsed.bad == []
    [routed] = parsed.events
    assert routed.dedup == f"tg:{update_id}"
    return routed


def _parse(update: dict[str, Any], update_id: int = 912345678) -> AnyEvent:
    routed = _routed(update, update_id)
    # Messages are live (they carry the AI-pause flag); member events only when the bot is
    # let back in. Whether an event ends a 403 opt-out (`authored`) is tested below.
    if isinstance(routed.event, MessageEvent):
        assert routed.live
    return routed.event


def _message(update: dict[str, Any], update_id: int = 912345678) -> MessageEvent:
    event = _parse(update, update_id)
    assert isinstance(event, MessageEvent)
    assert (event.channel, event.account_id, event.assistant_id) == ("telegram", BOT, "")
    return event


def _bad(body: bytes) -> str:
    parsed = parse_update(body, BOT, RECEIVED)
    assert parsed.events == []
    [bad] = parsed.bad
    assert (bad.reason, bad.raw) == ("malformed_item", body)
    return bad.detail


# -- message content ---------------------------------------------------------------------


def test_text_with_reply_to() -> None:
    event = _message({"message": _msg(text="hi", reply_to_message=_msg(message_id=50, text="?"))})
    assert (event.type, event.text, event.reply_to) == ("text", "hi", "50")
    assert (event.message_id, event.timestamp, event.edited) == ("55", T, False)
    assert (event.contact_id, event.conversation_id) == ("123456789", f"telegram:{BOT}:123456789")
    assert (event.contact_name, event.chat_type, event.thread_id) == ("Ana Souza", "private", None)


def test_photo_takes_largest_size_and_caption() -> None:
    sizes = [{"file_id": f"f{i}", "width": i, "height": i} for i in (90, 320, 1280)]
    event = _message({"message": _msg(photo=sizes, caption="look")})
    assert (event.type, event.text) == ("image", "look")
    assert event.media == Media(id="f1280", mime_type=None, filename=None)


def test_document_keeps_filename_and_mime() -> None:
    doc = {"file_id": "BQ1", "file_name": "a.pdf", "mime_type": "application/pdf"}
    event = _message({"message": _msg(document=doc)})
    assert (event.type, event.text) == ("document", None)
    assert event.media == Media(id="BQ1", mime_type="application/pdf", filename="a.pdf")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("voice", "voice"),
        ("audio", "audio"),
        ("video", "video"),
        ("video_note", "video"),
        ("animation", "video"),
        ("sticker", "sticker"),
    ],
)
def test_file_kinds(key: str, expected: str) -> None:
    event = _message({"message": _msg(**{key: {"file_id": "F1", "file_unique_id": "u"}})})
    assert (event.type, event.media) == (expected, Media(id="F1", mime_type=None, filename=None))


def test_animation_wins_over_its_document_twin() -> None:
    gif = {"file_id": "GIF", "file_unique_id": "u", "mime_type": "video/mp4"}
    event = _message({"message": _msg(animation=gif, document=gif, caption="lol")})
    assert (event.type, event.text, event.media) == (
        "video",
        "lol",
        Media("GIF", "video/mp4", None),
    )


def test_location() -> None:
    event = _message({"message": _msg(location={"latitude": -23.5, "longitude": -46.6})})
    assert (event.type, event.text) == ("location", None)
    assert event.location == Location(latitude=-23.5, longitude=-46.6)


def test_venue_names_the_place() -> None:
    point = {"latitude": 48.8584, "longitude": 2.2945}
    venue = {"location": point, "title": "Tour Eiffel", "address": "Champ de Mars, Paris"}
    event = _message({"message": _msg(location=point, venue=venue)})
    assert (event.type, event.text) == ("location", "Tour Eiffel")
    assert event.location == Location(48.8584, 2.2945, "Tour Eiffel", "Champ de Mars, Paris")


def test_contact() -> None:
    contact = {"phone_number": "+5511987654321", "first_name": "Carla", "last_name": "Mendes"}
    event = _message({"message": _msg(contact=contact)})
    assert (event.type, event.text) == ("contacts", "Carla Mendes")
    assert event.contacts == [SharedContact("Carla Mendes", ["+5511987654321"], [])]


def test_contact_without_last_name() -> None:
    event = _message({"message": _msg(contact={"phone_number": "+1555", "first_name": "Carla"})})
    assert event.text == "Carla"


def test_unknown_content_is_unsupported_with_its_key() -> None:
    dice = _msg(dice={"emoji": "🎲", "value": 4}, reply_markup={"inline_keyboard": []})
    event = _message({"message": dice})
    assert (event.type, event.subtype, event.text) == ("unsupported", "dice", None)
    assert (event.message_id, event.contact_id) == ("55", "123456789")


def test_service_message_is_unsupported() -> None:
    joined = _msg(chat=GROUP, new_chat_members=[ANA], is_topic_message=True)
    event = _message({"message": joined})
    assert (event.type, event.subtype) == ("unsupported", "new_chat_members")
    assert event.chat_type == "supergroup"


# -- update kinds ------------------------------------------------------------------------


def test_edited_message_uses_edit_date() -> None:
    event = _message({"edited_message": _msg(text="fixed", edit_date=T + 90)})
    assert (event.edited, event.timestamp, event.text) == (True, T + 90, "fixed")
    assert (event.message_id, event.original_message_id) == ("55", "55")


def test_edited_message_without_edit_date_falls_back_to_date() -> None:
    event = _message({"edited_message": _msg(text="fixed")})
    assert (event.edited, event.timestamp) == (True, T)


def test_channel_post_is_named_after_the_channel() -> None:
    post = {"message_id": 7, "chat": CHANNEL, "sender_chat": CHANNEL, "date": T, "text": "news"}
    event = _message({"channel_post": post})
    assert (event.contact_id, event.chat_type) == ("-1009876543210", "channel")
    assert event.contact_name == "Acme News"
    assert (event.type, event.text, event.edited) == ("text", "news", False)


def test_edited_channel_post_is_named_after_the_channel_even_with_a_signed_author() -> None:
    post = _msg(message_id=7, chat=CHANNEL, edit_date=T + 5, text="news!", author_signature="Ana")
    event = _message({"edited_channel_post": post})
    assert (event.edited, event.timestamp, event.contact_name) == (True, T + 5, "Acme News")


def test_group_chat_has_negative_contact_id() -> None:
    group = {"id": -4012345678, "type": "group", "title": "Lunch"}
    event = _message({"message": _msg(chat=group, text="hey")})
    assert event.contact_id == "-4012345678"
    assert event.conversation_id == f"telegram:{BOT}:-4012345678"
    assert (event.chat_type, event.contact_name) == ("group", "Ana Souza")


def test_forum_thread_id() -> None:
    event = _message({"message": _msg(chat=GROUP, message_thread_id=5102, text="billing?")})
    assert (event.thread_id, event.contact_id) == ("5102", "-1001234567890")


def test_business_message() -> None:
    update = {"business_message": _msg(business_connection_id="AbC", text="oi")}
    event = _message(update)
    assert (event.type, event.text, event.edited) == ("text", "oi", False)
    assert event.contact_id == "123456789"


def test_edited_business_message() -> None:
    event = _message({"edited_business_message": _msg(text="oi!", edit_date=T + 3)})
    assert (event.edited, event.timestamp, event.text) == (True, T + 3, "oi!")


def test_callback_query_with_message() -> None:
    origin = _msg(message_id=1300, chat=GROUP, message_thread_id=9, text="Choose")
    query = {"id": "cbq1", "from": ANA, "chat_instance": "1", "data": "plan:pro", "message": origin}
    event = _message({"callback_query": query})
    assert (event.type, event.subtype) == ("interactive", "callback_query")
    assert (event.message_id, event.reply, event.text) == ("cbq1", Reply(id="plan:pro"), None)
    assert (event.reply_to, event.contact_id) == ("1300", "-1001234567890")
    assert (event.chat_type, event.thread_id) == ("supergroup", "9")
    assert (event.timestamp, event.contact_name) == (RECEIVED, "Ana Souza")


def test_callback_query_without_message_uses_sender() -> None:
    query = {"id": "cbq2", "from": ANA, "inline_message_id": "AAA", "data": "x"}
    event = _message({"callback_query": query})
    assert (event.contact_id, event.reply_to, event.chat_type) == ("123456789", None, None)
    assert (event.reply, event.timestamp) == (Reply(id="x"), RECEIVED)


def test_callback_query_on_inaccessible_message() -> None:
    gone = {"chat": ANA_CHAT, "message_id": 12, "date": 0}
    event = _message({"callback_query": {"id": "c", "from": ANA, "message": gone}})
    assert (event.reply_to, event.contact_id, event.reply) == ("12", "123456789", None)


def test_reaction_added() -> None:
    emojis = [{"type": "emoji", "emoji": "❤"}, {"type": "emoji", "emoji": "👍"}]
    reaction = {"chat": GROUP, "message_id": 5121, "user": ANA, "date": T, "new_reaction": emojis}
    event = _message({"message_reaction": reaction}, update_id=77)
    assert (event.type, event.text, event.reply_to) == ("reaction", "❤", "5121")
    assert (event.message_id, event.contact_id) == ("77", "-1001234567890")
    assert (event.timestamp, event.contact_name) == (T, "Ana Souza")


def test_reaction_removed_is_empty_text() -> None:
    reaction = {
        "chat": ANA_CHAT,
        "message_id": 5,
        "user": ANA,
        "date": T,
        "old_reaction": [{"type": "emoji", "emoji": "❤"}],
        "new_reaction": [],
    }
    event = _message({"message_reaction": reaction})
    assert (event.type, event.text, event.reply_to) == ("reaction", "", "5")


def test_reaction_skips_custom_emoji_and_names_anonymous_chat() -> None:
    reaction = {
        "chat": GROUP,
        "message_id": 5,
        "actor_chat": GROUP,
        "date": T,
        "old_reaction": [],
        "new_reaction": [
            {"type": "custom_emoji", "custom_emoji_id": "5368"},
            {"type": "emoji", "emoji": "🔥"},
        ],
    }
    event = _message({"message_reaction": reaction})
    assert (event.text, event.contact_name) == ("🔥", "Acme Support")


def _reacting(*new_reaction: dict[str, Any]) -> MessageEvent:
    reaction = {"chat": ANA_CHAT, "message_id": 5, "user": ANA, "date": T, "old_reaction": []}
    return _message({"message_reaction": {**reaction, "new_reaction": list(new_reaction)}})


def test_custom_emoji_reaction_is_not_mistaken_for_a_removal() -> None:
    # `""` means "reaction removed" (CONTRACT §2.1): an assistant must see that one was set.
    event = _reacting({"type": "custom_emoji", "custom_emoji_id": "5368324170671202286"})
    assert (event.type, event.reply_to) == ("reaction", "5")
    assert event.text == "custom_emoji:5368324170671202286"
    assert (event.subtype, event.data) == ("custom_emoji", "5368324170671202286")


def test_paid_star_reaction_is_a_star() -> None:
    event = _reacting({"type": "paid"})
    assert (event.text, event.subtype, event.data) == ("⭐", "paid", None)


def test_a_plain_emoji_wins_over_a_custom_one_and_keeps_no_subtype() -> None:
    event = _reacting(
        {"type": "custom_emoji", "custom_emoji_id": "1"}, {"type": "emoji", "emoji": "👍"}
    )
    assert (event.text, event.subtype, event.data) == ("👍", None, None)


def test_a_future_reaction_type_is_named_never_empty() -> None:
    event = _reacting({"type": "sparkle_v2"})
    assert (event.text, event.subtype) == ("sparkle_v2", "sparkle_v2")


def test_removed_reaction_stays_the_only_empty_text() -> None:
    event = _reacting()
    assert (event.text, event.subtype, event.data) == ("", None, None)


@pytest.mark.parametrize(
    ("key", "chat", "status"),
    [("my_chat_member", ANA_CHAT, "kicked"), ("chat_member", GROUP, "administrator")],
)
def test_member_updates(key: str, chat: dict[str, Any], status: str) -> None:
    old, new = {"user": ANA, "status": "member"}, {"user": ANA, "status": status}
    change = {"chat": chat, "from": ANA, "date": T, "old_chat_member": old, "new_chat_member": new}
    event = _parse({key: change})
    assert isinstance(event, MemberEvent)
    assert (event.status, event.chat_type, event.timestamp) == (status, chat["type"], T)
    assert event.conversation_id == f"telegram:{BOT}:{chat['id']}"


# -- which updates end a 403 opt-out (`Routed.authored`): only the contact's own acts -------

BOOST = {"boost_id": "b1", "add_date": T, "expiration_date": T + 86400,
         "source": {"source": "premium", "user": ANA}}  # fmt: skip
NOT_WRITTEN_BY_THE_CONTACT: dict[str, dict[str, Any]] = {
    "chat_boost": {"chat": ANA_CHAT, "boost": BOOST},
    "removed_chat_boost": {
        "chat": ANA_CHAT,
        "boost_id": "b1",
        "remove_date": T,
        "source": BOOST["source"],
    },
    "deleted_business_messages": {
        "business_connection_id": "AbC",
        "chat": ANA_CHAT,
        "message_ids": [3, 4],
    },
    "business_connection": {
        "id": "AbC",
        "user": ANA,
        "user_chat_id": 123456789,
        "date": T,
        "is_enabled": True,
    },
    "message_reaction_count": {"chat": GROUP, "message_id": 5, "date": T, "reactions": []},
    "poll": {"id": "1", "question": "?", "options": [], "total_voter_count": 0},
    "chat_join_request": {"chat": GROUP, "from": ANA, "user_chat_id": 123456789, "date": T},
    "business_message": _msg(
        business_connection_id="AbC",
        text="Owner here",
        **{"from": {"id": 999, "is_bot": False, "first_name": "Owner"}},
    ),
}


@pytest.mark.parametrize(("key", "payload"), NOT_WRITTEN_BY_THE_CONTACT.items())
def test_updates_the_contact_did_not_write_leave_an_opt_out(key: str, payload: Any) -> None:
    routed = _routed({key: payload})
    assert isinstance(routed.event, MessageEvent)
    assert (routed.live, routed.authored) == (True, False)


WRITTEN_BY_THE_CONTACT: dict[str, dict[str, Any]] = {
    "message": _msg(text="hi"),
    "edited_message": _msg(text="hi!", edit_date=T + 1),
    "business_message": _msg(business_connection_id="AbC", text="oi"),
    "callback_query": {"id": "q", "from": ANA, "data": "x", "message": _msg(text="Pick")},
    "message_reaction": {
        "chat": ANA_CHAT,
        "message_id": 5,
        "user": ANA,
        "date": T,
        "new_reaction": [{"type": "emoji", "emoji": "👍"}],
    },
    "my_chat_member": {
        "chat": ANA_CHAT,
        "from": ANA,
        "date": T,
        "old_chat_member": {"user": ANA, "status": "kicked"},
        "new_chat_member": {"user": ANA, "status": "member"},
    },
}


@pytest.mark.parametrize(("key", "payload"), WRITTEN_BY_THE_CONTACT.items())
def test_the_contacts_own_acts_end_an_opt_out(key: str, payload: Any) -> None:
    routed = _routed({key: payload})
    assert (routed.live, routed.authored) == (True, True)


@pytest.mark.parametrize(
    ("old", "new"), [("member", "kicked"), ("member", "member"), (None, "member"), ("left", "left")]
)
def test_member_updates_that_do_not_let_the_bot_back_in_are_not_live(
    old: str | None, new: str
) -> None:
    change: dict[str, Any] = {"chat": ANA_CHAT, "date": T, "new_chat_member": {"status": new}}
    if old is not None:
        change["old_chat_member"] = {"status": old}
    routed = _routed({"my_chat_member": change})
    assert isinstance(routed.event, MemberEvent) and routed.event.status == new
    assert routed.live is False


def test_a_group_re_adding_the_bot_lets_it_back_in_but_chat_member_never_does() -> None:
    change = {
        "chat": GROUP,
        "date": T,
        "old_chat_member": {"status": "left"},
        "new_chat_member": {"status": "administrator"},
    }
    assert _routed({"my_chat_member": change}).live is True
    assert _routed({"chat_member": change}).live is False


# -- business messages carry their connection ---------------------------------------------


def test_business_message_carries_its_connection() -> None:
    event = _message({"business_message": _msg(business_connection_id="AbC", text="oi")})
    assert event.business_connection_id == "AbC"
    assert _message({"message": _msg(text="oi")}).business_connection_id is None


def test_callback_on_a_business_message_carries_its_connection() -> None:
    origin = _msg(business_connection_id="AbC", text="Pick")
    event = _message({"callback_query": {"id": "q", "from": ANA, "data": "x", "message": origin}})
    assert event.business_connection_id == "AbC"


def test_unknown_update_without_contact() -> None:
    event = _message({"poll": {"id": "1", "question": "?", "options": []}}, update_id=41)
    assert (event.type, event.subtype, event.message_id) == ("unsupported", "poll", "41")
    assert (event.contact_id, event.conversation_id, event.timestamp) == (None, None, RECEIVED)


def test_unknown_update_prefers_from_over_chat() -> None:
    request = {"chat": GROUP, "from": ANA, "user_chat_id": 123456789, "date": T}
    event = _message({"chat_join_request": request})
    assert (event.subtype, event.contact_id) == ("chat_join_request", "123456789")
    assert event.timestamp == RECEIVED


def test_unknown_update_with_chat_only() -> None:
    count = {"chat": GROUP, "message_id": 5, "date": T, "reactions": []}
    event = _message({"message_reaction_count": count})
    assert (event.subtype, event.contact_id) == ("message_reaction_count", "-1001234567890")


@pytest.mark.parametrize("value", [5, None, "x", [1], {"from": {"id": "not-an-int"}}])
def test_unknown_update_of_any_shape_is_never_an_error(value: Any) -> None:
    event = _message({"inline_query": value})
    assert (event.type, event.subtype, event.contact_id) == ("unsupported", "inline_query", None)


def test_known_key_wins_over_an_unknown_sibling() -> None:
    event = _message({"future_field": {"from": {"id": 1}}, "message": _msg(text="hi")})
    assert (event.type, event.text) == ("text", "hi")


def test_large_ids_survive() -> None:
    chat = {"id": -1002000000000123, "type": "supergroup", "title": "Big"}
    event = _message({"message": _msg(chat=chat, message_id=2**40, text="x")}, update_id=2**40)
    assert (event.contact_id, event.message_id) == ("-1002000000000123", str(2**40))


# -- undecodable bodies and malformed items ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"update"',
        b"{}",
        b'{"message": {}}',
        b'{"update_id": "5", "message": {}}',
        b'{"update_id": 1.5}',
        b'{"update_id": true}',
        b'{"update_id": null}',
        b'{"update_id": 99999999999999999999999}',
        b'{"update_id": 1, "message": {"text": "\xff"}',
        b'{"\xff": 1, "update_id": 1}',
        b'{"update_id": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_undecodable_body_raises_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_update(body, BOT, RECEIVED)


@pytest.mark.parametrize(
    ("update", "mentions"),
    [
        ({"message": {"message_id": 1, "date": T}}, "chat"),
        ({"message": _msg(message_id="1")}, "message_id"),
        ({"message": None}, "message"),
        ({"message": _msg(photo=[])}, "photo"),
        ({"message": _msg(location={"latitude": 91.0, "longitude": 0})}, "latitude"),
        ({"edited_message": _msg(chat={"id": 1.5, "type": "private"})}, "chat"),
        ({"callback_query": {"id": "c", "chat_instance": "1"}}, "from"),
        ({"message_reaction": {"chat": ANA_CHAT, "message_id": 1, "date": T}}, "new_reaction"),
        ({"my_chat_member": {"chat": ANA_CHAT, "date": T, "new_chat_member": {}}}, "status"),
    ],
)
def test_malformed_item_becomes_bad_item(update: dict[str, Any], mentions: str) -> None:
    detail = _bad(_body(update))
    assert detail.startswith(next(iter(update)) + ":")
    assert mentions in detail


def test_invalid_utf8_inside_the_payload_is_a_bad_item() -> None:
    assert _bad(b'{"update_id": 1, "message": {"text": "\xff"}}').startswith("message:")


def test_update_without_payload_is_a_bad_item() -> None:
    assert "no payload" in _bad(b'{"update_id": 1}')


# -- verify_secret -------------------------------------------------------------------


def test_verify_secret_accepts_the_exact_secret() -> None:
    assert verify_secret("tg-secret_1", "tg-secret_1") is True


@pytest.mark.parametrize(
    "header", ["tg-secret_1 ", " tg-secret_1", "tg-secret_1\t", "\t tg-secret_1  "]
)
def test_verify_secret_ignores_only_the_http_padding_around_the_value(header: str) -> None:
    # aiohttp's parser strips this padding, llhttp's (the fast path) keeps the trailing part:
    # both paths must judge one request alike (test_telegram_gateway.py sends it over HTTP).
    assert verify_secret(header, "tg-secret_1") is True


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        (None, "tg-secret_1"),
        ("", "tg-secret_1"),
        ("", ""),
        ("tg-secret_1", ""),
        ("tg-secret_2", "tg-secret_1"),
        ("tg-secret_1 x", "tg-secret_1"),
        ("tg-secret_1\u00a0", "tg-secret_1"),
        ("tg-secret_1\x0b", "tg-secret_1"),
        ("tg-secret_1\n", "tg-secret_1"),
        (" ", "tg-secret_1"),
        ("tg-secret", "tg-secret_1"),
        ("TG-SECRET_1", "tg-secret_1"),
        ("tg-sécret_1", "tg-secret_1"),
        ("tg-secret_1\udcff", "tg-secret_1"),
    ],
)
def test_verify_secret_rejects(header: str | None, secret: str) -> None:
    assert verify_secret(header, secret) is False


# -- the corpus, as the gateway runner will see it (minus routing) ----------------------


def _corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.json"))


def test_corpus_is_present_with_distinct_update_ids() -> None:
    docs = [json.loads(path.read_bytes()) for path in _corpus()]
    ids = [doc["body"]["update_id"] for doc in docs]
    assert len(ids) >= 15
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("path", _corpus(), ids=lambda path: path.stem)
def test_corpus_case(path: Path) -> None:
    doc = json.loads(path.read_bytes())
    stream = f"gw:inbox:{ASSISTANTS[doc['bot_id']]}"
    assert (doc["channel"], list(doc["expect"]), doc["deadletter"]) == ("telegram", [stream], [])
    parsed = parse_update(json.dumps(doc["body"]).encode(), doc["bot_id"], RECEIVED)
    assert parsed.bad == []
    events = [msgspec.to_builtins(routed.event) for routed in parsed.events]
    expected = doc["expect"][stream]
    assert len(events) == len(expected)
    for event, want in zip(events, expected, strict=True):
        want = {key: value for key, value in want.items() if key != "assistant_id"}
        assert {key: event.get(key, "<missing>") for key in want} == want


# -- properties --------------------------------------------------------------------------

_SAMPLES: list[dict[str, Any]] = [
    {"update_id": 1, "message": _msg(text="hi", reply_to_message=_msg(message_id=2, text="?"))},
    {"update_id": 2, "message": _msg(photo=[{"file_id": "a"}, {"file_id": "b"}], caption="c")},
    {
        "update_id": 3,
        "edited_message": _msg(
            venue={"location": {"latitude": 1, "longitude": 2}, "title": "t", "address": "a"},
            edit_date=T,
        ),
    },
    {
        "update_id": 4,
        "callback_query": {
            "id": "q",
            "from": ANA,
            "data": "d",
            "message": _msg(chat=GROUP, message_thread_id=3),
        },
    },
    {
        "update_id": 5,
        "message_reaction": {
            "chat": GROUP,
            "message_id": 1,
            "date": T,
            "user": ANA,
            "new_reaction": [{"type": "emoji", "emoji": "👍"}],
        },
    },
    {
        "update_id": 6,
        "my_chat_member": {"chat": ANA_CHAT, "date": T, "new_chat_member": {"status": "kicked"}},
    },
    {"update_id": 7, "message": _msg(contact={"phone_number": "+1", "first_name": "C"})},
    {"update_id": 8, "chat_join_request": {"chat": GROUP, "from": ANA}},
]

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def _mutated_updates(draw: st.DrawFn) -> bytes:
    doc = copy.deepcopy(draw(st.sampled_from(_SAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = json_paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()):
            del _parent(doc, path)[path[-1]]
        else:
            _parent(doc, path)[path[-1]] = draw(_JSON)
    return json.dumps(doc).encode()


def _parse_or_reject(body: bytes) -> Parsed | None:
    try:
        parsed = parse_update(body, BOT, RECEIVED)
    except ParseError:
        return None
    assert len(parsed.events) + len(parsed.bad) == 1
    for routed in parsed.events:
        assert EVENT_DECODER.decode(ENCODER.encode(routed.event)) == routed.event
    return parsed


@settings(max_examples=300)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_parse_or_raise_parse_error(body: bytes) -> None:
    _parse_or_reject(body)


@settings(max_examples=300)
@given(_JSON.map(lambda value: json.dumps({"update_id": 1, "message": value}).encode()))
def test_arbitrary_message_values_parse_or_raise_parse_error(body: bytes) -> None:
    assert _parse_or_reject(body) is not None


@settings(max_examples=500)
@given(_mutated_updates())
def test_mutated_updates_parse_or_raise_and_round_trip(body: bytes) -> None:
    _parse_or_reject(body)


def test_unmutated_samples_all_parse_to_events() -> None:
    for sample in _SAMPLES:
        parsed = parse_update(json.dumps(sample).encode(), BOT, RECEIVED)
        assert (len(parsed.events), parsed.bad) == (1, [])
