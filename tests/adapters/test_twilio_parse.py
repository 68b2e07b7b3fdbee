"""Twilio WhatsApp parsing (adapters/twilio/_inbound.py): what each inbound message and status
callback becomes, what is dead-lettered, and that nothing but ParseError ever escapes,
whatever the bytes."""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.schema import (
    ENCODER,
    EVENT_DECODER,
    Location,
    Media,
    MessageEvent,
    Parsed,
    ParseError,
    ProviderError,
    Reply,
    Routed,
    StatusEvent,
)
from adapters.twilio import parse
from adapters.twilio._form import _as_json, _unquote, decode

RECEIVED_AT = 1795000000
"""Receipt time of every body here (unix seconds; Nov 2026): Twilio sends no time."""
SID = "SM3f9c1a7e5b2d4f6a8c0e1b3d5f7a9c2e"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
NUMBER = "+14155550100"
CONTACT = "5511987650000"
BSUID = "BR.1502576394655843"
MEDIA_URL = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/ME"


def inbound(**params: str) -> list[tuple[str, str]]:
    """An inbound WhatsApp message as Twilio posts it; keyword arguments replace or add
    parameters (an empty string leaves one out)."""
    base = {
        "SmsMessageSid": SID,
        "NumMedia": "0",
        "ProfileName": "Ana Souza",
        "MessageType": "text",
        "SmsSid": SID,
        "WaId": CONTACT,
        "SmsStatus": "received",
        "Body": "Oi, tudo bem?",
        "To": f"whatsapp:{NUMBER}",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": SID,
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:+{CONTACT}",
        "ApiVersion": "2010-04-01",
    }
    base.update(params)
    return [(k, v) for k, v in base.items() if v != ""]


def status(value: str, **params: str) -> list[tuple[str, str]]:
    """A status callback of a message the gateway sent from NUMBER to the contact."""
    base = {
        "ChannelPrefix": "whatsapp",
        "ApiVersion": "2010-04-01",
        "MessageStatus": value,
        "SmsSid": SID,
        "SmsStatus": value,
        "ChannelInstallSid": "XE0123456789abcdef0123456789abcdef",
        "To": f"whatsapp:+{CONTACT}",
        "From": f"whatsapp:{NUMBER}",
        "MessageSid": SID,
        "AccountSid": ACCOUNT_SID,
        "ChannelToAddress": f"+{CONTACT}",
    }
    base.update(params)
    return [(k, v) for k, v in base.items() if v != ""]


def run(params: list[tuple[str, str]]) -> Parsed:
    return parse(urlencode(params).encode(), RECEIVED_AT)


def one(params: list[tuple[str, str]]) -> Routed:
    parsed = run(params)
    assert not parsed.bad, parsed.bad
    assert len(parsed.events) == 1
    return parsed.events[0]


def message(**params: str) -> MessageEvent:
    event = one(inbound(**params)).event
    assert isinstance(event, MessageEvent)
    return event


def media_message(*items: tuple[str, str], **params: str) -> MessageEvent:
    media: dict[str, str] = {"NumMedia": str(len(items))}
    for i, (url, content_type) in enumerate(items):
        media[f"MediaUrl{i}"] = url
        media[f"MediaContentType{i}"] = content_type
    return message(**{"Body": "", "MessageType": "", **media, **params})


# --- inbound messages --------------------------------------------------------------------------


def test_a_text_message_is_a_whatsapp_message_of_the_twilio_number() -> None:
    routed = one(inbound())
    event = routed.event
    assert isinstance(event, MessageEvent)
    assert (routed.dedup, routed.live, routed.rank) == (f"m:{SID}", True, 0)
    assert event.channel == "whatsapp"
    assert event.provider == "twilio"
    assert event.account_id == "14155550100"
    assert event.contact_id == CONTACT
    assert event.conversation_id == f"whatsapp:14155550100:{CONTACT}"
    assert event.message_id == SID
    assert event.timestamp == RECEIVED_AT  # Twilio gives no time: receipt
    assert (event.type, event.text, event.contact_name) == ("text", "Oi, tudo bem?", "Ana Souza")
    assert (event.media, event.reply, event.reply_to, event.referral) == (None, None, None, None)
    assert (event.user_id, event.subtype, event.errors) == (None, None, [])


def test_the_contact_is_wa_id_else_the_senders_digits() -> None:
    assert message(WaId="").contact_id == CONTACT
    assert message(WaId="", From="whatsapp:+5215512345678").contact_id == "5215512345678"
    assert message(ProfileName="").contact_name is None


def test_a_sender_without_a_number_is_its_bsuid() -> None:
    """UNCERTAIN shape (`whatsapp:<BSUID>`): contact_id and user_id are the BSUID, as the
    WhatsApp parser does for a hidden number (CONTRACT §2.1), so the router can give it the
    wa_id it had before."""
    event = message(WaId="", From=f"whatsapp:{BSUID}")
    assert (event.contact_id, event.user_id) == (BSUID, BSUID)
    # both shown: the number is the contact, the BSUID remembered beside it
    event = message(From=f"whatsapp:{BSUID}")
    assert (event.contact_id, event.user_id) == (CONTACT, BSUID)
    event = message(ExternalUserId="US.ENT.11815799212886844830")
    assert (event.contact_id, event.user_id) == (CONTACT, "US.ENT.11815799212886844830")
    assert message(ExternalUserId="whatsapp:BR.99").user_id == "BR.99"
    assert message(ExternalUserId="ana_souza").user_id is None  # not a BSUID: ignored


def test_an_image_with_a_caption() -> None:
    event = media_message((MEDIA_URL + "1", "image/jpeg"), Body="Segue o comprovante 🧾")
    assert (event.type, event.text) == ("image", "Segue o comprovante 🧾")
    assert event.media == Media(None, "image/jpeg", None, MEDIA_URL + "1")
    assert event.attachments is None


@pytest.mark.parametrize(
    ("content_type", "message_type", "expected"),
    [
        ("audio/ogg", "audio", "audio"),  # a voice note: no `voice` flag on Twilio
        ("audio/ogg", "", "audio"),
        ("video/mp4", "video", "video"),
        ("video/mp4", "", "video"),
        ("application/pdf", "document", "document"),
        ("application/pdf", "", "document"),
        ("text/vcard", "", "document"),
        ("image/jpeg", "document", "document"),  # a photo sent as a file stays a file
        ("image/webp", "sticker", "sticker"),
        ("image/webp", "", "image"),
        ("IMAGE/PNG", "", "image"),
    ],
)
def test_the_media_type_is_twilios_message_type_else_the_content_types(
    content_type: str, message_type: str, expected: str
) -> None:
    event = media_message((MEDIA_URL + "1", content_type), MessageType=message_type)
    assert event.type == expected
    assert event.text is None  # `Body=` is no caption
    assert event.media is not None and event.media.mime_type == content_type


def test_media_is_never_dropped_for_a_text_type() -> None:
    event = media_message((MEDIA_URL + "1", "video/mp4"), MessageType="text", Body="olha")
    assert (event.type, event.text) == ("video", "olha")


def test_several_media_are_all_listed_the_first_is_media() -> None:
    items = [(MEDIA_URL + "1", "image/jpeg"), (MEDIA_URL + "2", "image/png")]
    event = media_message(*items, Body="fotos")
    assert event.type == "image"
    assert event.media == Media(None, "image/jpeg", None, MEDIA_URL + "1")
    assert event.attachments == [Media(None, t, None, u) for u, t in items]


def test_a_location() -> None:
    event = message(
        MessageType="location", Body="", Latitude="-23.5613", Longitude="-46.6565",
        Label="Masp", Address="Av. Paulista, 1578 - Bela Vista, São Paulo",
    )  # fmt: skip
    assert (event.type, event.text) == ("location", "Masp")
    assert event.location == Location(
        -23.5613, -46.6565, "Masp", "Av. Paulista, 1578 - Bela Vista, São Paulo"
    )
    event = message(MessageType="location", Body="", Latitude="19.4326", Longitude="-99.1332")
    assert (event.text, event.location) == (None, Location(19.4326, -99.1332))


def test_a_template_quick_reply_button() -> None:
    event = message(
        MessageType="button", Body="Remarcar", ButtonText="Remarcar", ButtonPayload="RESCHED_42"
    )
    assert (event.type, event.text, event.subtype) == ("interactive", "Remarcar", "button")
    assert event.reply == Reply("RESCHED_42", "Remarcar")
    assert event.data == "RESCHED_42"
    event = message(MessageType="button", Body="Sí, confirmo")  # no payload: id "" as WhatsApp's
    assert (event.reply, event.data) == (Reply("", "Sí, confirmo"), None)


def test_a_list_picker_row() -> None:
    event = message(MessageType="interactive", Body="Envío express", ListId="ship_express")
    assert (event.type, event.text, event.subtype) == ("interactive", "Envío express", "list_reply")
    assert event.reply == Reply("ship_express", "Envío express")


def test_a_reply_quotes_our_message() -> None:
    quoted = "SM0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    event = message(OriginalRepliedMessageSid=quoted, OriginalRepliedMessageSender="x")
    assert event.reply_to == quoted


def test_a_click_to_whatsapp_referral_keyed_as_metas() -> None:
    event = message(
        ReferralBody="Frete grátis hoje",
        ReferralHeadline="Promoção",
        ReferralSourceId="120210000000000001",
        ReferralSourceType="ad",
        ReferralSourceUrl="https://fb.me/abc123",
        ReferralCtwaClid="ARAkLkA8rmlFeiCktEJQ",
        ReferralMediaContentType="image/jpeg",
        ReferralNumMedia="1",
    )
    assert event.referral == {
        "body": "Frete grátis hoje",
        "headline": "Promoção",
        "source_id": "120210000000000001",
        "source_type": "ad",
        "source_url": "https://fb.me/abc123",
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ",
        "media_content_type": "image/jpeg",
        "num_media": "1",
    }
    assert message(ReferralNumMedia="0").referral is None  # on every message: no referral
    assert message(ReferralNumMedia="0", ReferralSourceId="").referral is None


def test_forwarded_is_not_mapped_as_for_cloud_api_numbers() -> None:
    assert message(Forwarded="true", FrequentlyForwarded="true") == message()


def test_an_unknown_message_type_is_unsupported_with_what_it_carries() -> None:
    event = message(MessageType="reaction", Body="👍")
    assert (event.type, event.subtype, event.text, event.media) == (
        "unsupported", "reaction", "👍", None
    )  # fmt: skip
    event = media_message((MEDIA_URL + "1", "text/vcard"), MessageType="contacts")
    assert (event.type, event.subtype, event.text) == ("unsupported", "contacts", None)
    assert event.media == Media(None, "text/vcard", None, MEDIA_URL + "1")


def test_an_sms_on_this_path_is_kept_for_an_operator() -> None:
    parsed = run(inbound(To=NUMBER, From=f"+{CONTACT}"))
    assert parsed.events == []
    [bad] = parsed.bad
    assert bad.reason == "unsupported_item"
    assert bad.raw == urlencode(inbound(To=NUMBER, From=f"+{CONTACT}")).encode()
    assert "To '+14155550100' is no WhatsApp address" in bad.detail


def test_bodies_of_the_same_length_in_a_row_are_each_read_as_themselves() -> None:
    """The receiver's decode is kept for the parser: never for another body."""
    first, second = SID, SID[:-1] + "f"
    assert message(MessageSid=first).message_id == first
    assert message(MessageSid=second).message_id == second
    assert message(MessageSid=first).message_id == first


# --- status callbacks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("twilio", "published", "rank"),
    [("sent", "sent", 1), ("delivered", "delivered", 2), ("read", "read", 3),
     ("failed", "failed", 9), ("undelivered", "failed", 9)],
)  # fmt: skip
def test_a_status_of_our_send(twilio: str, published: str, rank: int) -> None:
    routed = one(status(twilio))
    event = routed.event
    assert isinstance(event, StatusEvent)
    assert (routed.dedup, routed.rank, routed.live) == (f"s:{SID}", rank, False)
    assert (event.channel, event.provider) == ("whatsapp", "twilio")
    assert (event.account_id, event.contact_id) == ("14155550100", CONTACT)
    assert event.conversation_id == f"whatsapp:14155550100:{CONTACT}"
    assert (event.message_id, event.status, event.timestamp) == (SID, published, RECEIVED_AT)
    assert (event.errors, event.command_id) == ([], None)


def test_a_read_receipt_with_its_event_type() -> None:
    event = one(status("read", EventType="READ")).event
    assert isinstance(event, StatusEvent) and event.status == "read"


@pytest.mark.parametrize(
    "value",
    ["queued", "accepted", "scheduled", "sending", "canceled", "receiving", "partially_delivered"],
)
def test_statuses_the_contract_has_no_word_for_are_not_published(value: str) -> None:
    assert run(status(value)) == Parsed()


def test_an_undocumented_status_is_dead_lettered() -> None:
    parsed = run(status("deleted"))
    assert parsed.events == []
    assert [(b.reason, b.detail) for b in parsed.bad] == [
        ("unknown_status", "MessageStatus 'deleted' is not one Twilio documents")
    ]


def test_errors_carry_the_code_and_the_channels_text() -> None:
    def errors(**params: str) -> list[ProviderError]:
        event = one(status("undelivered", **params)).event
        assert isinstance(event, StatusEvent)
        return event.errors

    text = "Message failed to send because more than 24 hours have passed"
    assert errors(ErrorCode="63016", ChannelStatusMessage=text) == [ProviderError(63016, text)]
    assert errors(ErrorCode="63016", ErrorMessage="Outside window") == [
        ProviderError(63016, "Outside window")
    ]
    assert errors(ErrorCode="30008") == [ProviderError(30008, "Twilio error 30008")]
    assert errors(ErrorCode="") == []


def test_a_status_to_a_hidden_number_names_its_bsuid() -> None:
    event = one(status("delivered", To=f"whatsapp:{BSUID}")).event
    assert event.contact_id == BSUID


# --- bodies that are no Twilio message: ParseError, the whole body dead-lettered ---------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "MessageSid is missing"),
        (b'{"MessageSid":"SM1","Body":"x"}', "MessageSid is missing"),
        (b"CallSid=CA1&CallStatus=ringing", "MessageSid is missing"),
        (b"MessageSid=&Body=x", "MessageSid is ''"),
        (b"MessageSid=SM%201&Body=x", "MessageSid is 'SM 1'"),
        (b"MessageSid=SM1&Body=%FF", "not a Twilio form body"),
        (b"MessageSid=SM1&MessageSid=SM2", "MessageSid is given 2 times, with different values"),
    ],
)
def test_a_body_that_is_no_twilio_message(body: bytes, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        parse(body, RECEIVED_AT)


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"To": ""}, "To is missing"),
        ({"To": "whatsapp:14155550100"}, "is not whatsapp:"),
        ({"To": "whatsapp:+1415555010a"}, "is not whatsapp:"),
        ({"From": "whatsapp:ana"}, "From 'ana' is not whatsapp:"),
        ({"WaId": "+5511987650000"}, "is not a wa_id"),
        ({"NumMedia": "uma"}, "NumMedia 'uma' is not a count"),
        ({"NumMedia": "١"}, "is not a count"),  # int() would take an Arabic-Indic digit
        ({"NumMedia": "2", "MediaUrl0": MEDIA_URL}, "MediaUrl1 is missing"),
        ({"Latitude": "-23.5", "Longitude": "nan"}, "Longitude 'nan' is not a coordinate"),
        ({"Latitude": "91", "Longitude": "0"}, "Latitude '91' is not a coordinate"),
        ({"Latitude": "-23.5"}, "Longitude '' is not a coordinate"),
        ({"Latitude": "1_0", "Longitude": "0"}, "Latitude '1_0' is not a coordinate"),
    ],
)
def test_a_message_whose_fields_are_not_what_twilio_sends(params: dict[str, str], why: str) -> None:
    with pytest.raises(ParseError, match=why):
        run(inbound(**params))


def test_a_status_whose_fields_are_not_what_twilio_sends() -> None:
    with pytest.raises(ParseError, match="ErrorCode 'x1' is not a number"):
        run(status("failed", ErrorCode="x1"))
    with pytest.raises(ParseError, match="From is missing"):
        run(status("delivered", From=""))


def test_a_parameter_repeated_with_the_same_value_is_one() -> None:
    """Twilio's validator counts a repeated name and value once; so does the parser."""
    params = inbound()
    assert one([*params, ("MessageSid", SID), ("Body", "Oi, tudo bem?")]) == one(params)
    with pytest.raises(ParseError, match="Body is given 2 times"):
        run([*params, ("Body", "Pix agora")])


# --- properties ----------------------------------------------------------------------------------

NAMES = [
    "MessageSid", "MessageStatus", "SmsStatus", "From", "To", "WaId", "Body", "MessageType",
    "NumMedia", "MediaUrl0", "MediaContentType0", "MediaUrl1", "Latitude", "Longitude",
    "Label", "ButtonText", "ButtonPayload", "ListId", "ErrorCode", "ReferralSourceId",
    "ReferralNumMedia", "ExternalUserId", "OriginalRepliedMessageSid", "ProfileName",
]  # fmt: skip
VALUES = [
    SID, "received", "sent", "read", "undelivered", "queued", "button", "location", "image",
    f"whatsapp:{NUMBER}", f"whatsapp:+{CONTACT}", f"whatsapp:{BSUID}", CONTACT, "0", "1", "2",
    "-23.56", "181", "63016", "", "Olá 😀", MEDIA_URL, "audio/ogg",
]  # fmt: skip
params_ = st.lists(
    st.tuples(
        st.sampled_from(NAMES) | st.text(max_size=12),
        st.sampled_from(VALUES) | st.text(max_size=20),
    ),
    max_size=25,
)


@given(st.binary(max_size=400))
def test_any_bytes_raise_only_parse_error(body: bytes) -> None:
    for candidate in (body, b"MessageSid=" + SID.encode() + b"&" + body):
        with contextlib.suppress(ParseError):
            parse(candidate, RECEIVED_AT)


@given(params_)
def test_any_form_parses_to_typed_events_or_raises_only_parse_error(
    params: list[tuple[str, str]],
) -> None:
    try:
        parsed = run([("MessageSid", SID), *params])
    except ParseError:
        return
    for routed in parsed.events:
        event: Any = routed.event
        assert EVENT_DECODER.decode(ENCODER.encode(event)) == event
        assert (event.channel, event.provider, event.message_id) == ("whatsapp", "twilio", SID)
        assert routed.dedup == f"{'s' if isinstance(event, StatusEvent) else 'm'}:{SID}"
    assert len(parsed.events) + len(parsed.bad) <= 1  # one body, one event at most


@given(st.binary(max_size=64) | st.lists(st.sampled_from([b"%", b"\\", b"41", b"e2", b"zz",
                                                          b"x", b"\n", b"\xff", b"&", b"="]),
                                         max_size=16).map(b"".join))  # fmt: skip
def test_the_fast_percent_decoder_is_the_standard_one(raw: bytes) -> None:
    """Form values are decoded by `_form._unquote`, not urllib's (three times faster on bodies
    full of accents and emoji): byte for byte the same, on any input, escapes broken or not."""
    assert _unquote(raw) == urllib.parse.unquote_to_bytes(raw)


def reference_form(body: bytes) -> list[tuple[str, str]]:
    """The body's parameters as the plain way reads them: split on `&`, then on the first
    `=`, `+` a space, urllib's percent-decoder, UTF-8 with surrogate escapes."""

    def text(raw: bytes) -> str:
        return urllib.parse.unquote_to_bytes(raw).decode("utf-8", "surrogateescape")

    found = []
    for segment in body.replace(b"+", b" ").split(b"&"):
        if segment:
            name, _, value = segment.partition(b"=")
            found.append((text(name), text(value)))
    return found


_FORM_PIECES = [b"a", b"Body", b"B0", b"=", b"&", b"%", b"%26", b"%3D", b"%3d", b"%22", b"%5C",
                b'"', b"\\", b"+", b"%2B", b"%C3%A9", b"\xc3\xa9", b"\xff", b"%ff", b"\n",
                b"%0A", b"%4", b"x", b"%E2%82", b"\\x41"]  # fmt: skip


@given(st.binary(max_size=64) | st.lists(st.sampled_from(_FORM_PIECES), max_size=20).map(b"".join))
def test_a_body_reads_the_same_whichever_way_the_decoder_takes(body: bytes) -> None:
    """Bodies as Twilio sends them are split by the fast way (percent-decoded in one C call,
    split as JSON), any other by segments: the parameters are the same either way, and the
    same as the plain decoder's, escaped separators, quotes, backslashes, bad UTF-8,
    broken escapes and repeated names included."""
    form = decode(body)
    expected = reference_form(body)
    assert form.pairs() == expected
    assert form.fields == dict(expected)
    assert (form.repeated is None) == (len({name for name, _ in expected}) == len(expected))
    assert form.utf8 == all(
        not any("\udc80" <= c <= "\udcff" for c in name + value) for name, value in expected
    )


_twilio_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), include_characters="\n\r\t")
)


@given(st.dictionaries(_twilio_text.filter(bool), _twilio_text, min_size=1, max_size=20))
def test_twilios_own_bodies_take_the_fast_way(params: dict[str, str]) -> None:
    """What Twilio posts (every name once, urlencoded; quotes, backslashes, line breaks and
    emoji in the text) is read the fast way, and read right: a body falling back to the slow
    way would cost the speed the README reports."""
    body = urlencode(params).encode()
    fast = _as_json(body.replace(b"+", b" "))
    assert fast is not None
    assert fast.fields == params
    assert decode(body).fields == params
