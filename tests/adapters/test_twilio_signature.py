"""X-Twilio-Signature checks (adapters/twilio/_verify.py): exactly what Twilio sends verifies,
anything else is refused.

The expected signatures are literals computed independently, not by the code under test:
Twilio's documented example (twilio-python's test suite, PLATFORM-MORE §5.1 item 7), and
fixtures computed once with twilio-python 9.13.0's `RequestValidator.compute_signature` in a
throwaway virtualenv (its values as Flask would hand them over; a repeated name as a
`multidict.MultiDict`). Which URL variants twilio-python's `validate` accepts was recorded
the same way, and the port tests below assert the same answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from adapters.twilio import TwilioSigningKey, sign, valid_signature
from gateway.app import create_app
from gateway.config import Settings
from tests.conftest import TWILIO_A, TWILIO_TOKEN, TWILIO_URL, stream, twilio_post

FORM = "application/x-www-form-urlencoded"
TOKEN = b"7a9c2e4b1d0f3a5c6e8b9d1f2a4c6e8b"
URL = "https://gateway.example.com/webhooks/twilio"
SID = "SM8f3a1c2e4b6d8f0a1c3e5b7d9f1a2c4e"
INBOUND = [  # a WhatsApp message as Twilio posts it, in Twilio's order
    ("SmsMessageSid", SID),
    ("NumMedia", "0"),
    ("ProfileName", "João Silva 🇧🇷"),
    ("MessageType", "text"),
    ("SmsSid", SID),
    ("WaId", "5511987650000"),
    ("SmsStatus", "received"),
    ("Body", "Olá! Quero remarcar para 14h + 30min, 100% certo? a&b=c 😀"),
    ("To", "whatsapp:+14155550100"),
    ("NumSegments", "1"),
    ("ReferralNumMedia", "0"),
    ("MessageSid", SID),
    ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
    ("From", "whatsapp:+5511987650000"),
    ("ApiVersion", "2010-04-01"),
    ("Forwarded", ""),
]
# twilio-python 9.13.0, compute_signature(url, dict(INBOUND)) with TOKEN:
INBOUND_SIG = "tf3nU0iSbvSdrCRebA+25MXoUSU="
WITH_443_SIG = "qVerr39+HjgRDGwsdRPwrCsddg4="  # over https://gateway.example.com:443/...
WITH_8443_SIG = "+yeG4TrE2FHDoM55Y1Jza79jaBk="  # over https://gateway.example.com:8443/...
HTTP_SIG = "yZzM5/fa+8ZI3Dh6ScCZk5XTYf8="  # over http://gateway.example.com/...
HTTP_WITH_80_SIG = "VsQte/yRpqMuRthGBxwCl2cRm68="  # over http://gateway.example.com:80/...
QUERY_URL = URL + "?tenant=acme&x=%20y"
QUERY_SIG = "68LMhhc7sS9Mj5joDxzNA1nu82Q="
REPEATED = [
    ("MessageSid", SID),
    (
        "MediaUrl0",
        "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef"
        "/Messages/MM1/Media/ME2",
    ),
    ("Tag", "vip"),
    ("Tag", "Atacado"),
    ("Tag", "vip"),
    ("Tag", "ação"),
]
REPEATED_SIG = "gUDj2hpyJLb5gX1PStyN+LEvdQ8="  # compute_signature(URL, MultiDict(REPEATED))
JSON_BODY = '{"MessageSid":"SM8f3a1c2e4b6d8f0a1c3e5b7d9f1a2c4e","Body":"Olá"}'.encode()
JSON_URL = URL + "?bodySHA256=552150ac3bcfc03d6054b78a1eed217527d15403aa8c856019641012050dcab5"
JSON_SIG = "n+xFzUHsU5d74+8myQQ84q4IQnA="  # compute_signature(JSON_URL, {})


def form(params: list[tuple[str, str]], *, plus: bool = True) -> bytes:
    """The body Twilio posts; `plus` False writes spaces as `%20` instead of `+`."""
    return urlencode(params, quote_via=quote_plus if plus else quote).encode()


def valid(body: bytes, signature: str | None, url: str = URL, token: bytes = TOKEN) -> bool:
    return valid_signature(token, url, body, FORM, signature)


# --- independent vectors ---------------------------------------------------------------------


def test_twilios_documented_example() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    assert valid_signature(b"12345", url, form(params), FORM, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert sign(b"12345", url, form(params)) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_pythons_repeated_parameter_example() -> None:
    """twilio-python's own case: names sorted, each name's values sorted, duplicates once."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert valid_signature(b"12345", url, form(params), FORM, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")


def test_a_whatsapp_message_with_non_ascii_plus_percent_and_empty_values() -> None:
    assert valid(form(INBOUND), INBOUND_SIG)
    assert sign(TOKEN, URL, form(INBOUND)) == INBOUND_SIG
    # `+` or `%20` for a space, a literal `+` as %2B: the decoded values are what is signed
    assert valid(form(INBOUND, plus=False), INBOUND_SIG)
    assert b"%2B" in form(INBOUND) and b"+" in form(INBOUND)


def test_reordered_parameters_keep_the_signature() -> None:
    for order in itertools.islice(itertools.permutations(INBOUND), 0, 5000, 997):
        assert valid(form(list(order)), INBOUND_SIG)
    assert valid(form(INBOUND[::-1]), INBOUND_SIG)


def test_repeated_names_count_each_distinct_value_once_in_order() -> None:
    assert valid(form(REPEATED), REPEATED_SIG)
    assert valid(form(REPEATED[::-1]), REPEATED_SIG)
    once = [p for i, p in enumerate(REPEATED) if p not in REPEATED[:i]]
    assert valid(form(once), REPEATED_SIG)  # the repeated ("Tag", "vip") counts once
    assert not valid(form([p for p in REPEATED if p != ("Tag", "ação")]), REPEATED_SIG)


def test_a_query_string_twilio_requested_is_signed_as_sent() -> None:
    assert valid(form(INBOUND), QUERY_SIG, url=QUERY_URL)
    assert not valid(form(INBOUND), QUERY_SIG)
    assert not valid(form(INBOUND), INBOUND_SIG, url=QUERY_URL)


@pytest.mark.parametrize(
    ("configured", "signature"),
    [
        (URL, WITH_443_SIG),  # configured without the port, signed with :443
        ("https://gateway.example.com:443/webhooks/twilio", INBOUND_SIG),  # and the reverse
        ("https://gateway.example.com:8443/webhooks/twilio", INBOUND_SIG),  # any port taken out
        ("http://gateway.example.com/webhooks/twilio", HTTP_WITH_80_SIG),
        ("http://gateway.example.com:80/webhooks/twilio", HTTP_SIG),
    ],
)
def test_the_port_variants_twilio_python_accepts(configured: str, signature: str) -> None:
    assert valid(form(INBOUND), signature, url=configured)


@pytest.mark.parametrize(
    ("configured", "signature"),
    [
        (URL, WITH_8443_SIG),  # a port is never added but the scheme's default
        (URL, HTTP_SIG),  # another scheme
        ("https://gateway.example.com:80/webhooks/twilio", HTTP_WITH_80_SIG),
        ("https://gateway.example.com:443/webhooks/twilio", HTTP_WITH_80_SIG),
    ],
)
def test_the_port_variants_twilio_python_refuses(configured: str, signature: str) -> None:
    assert not valid(form(INBOUND), signature, url=configured)


def test_a_json_body_is_signed_through_its_hash_in_the_url() -> None:
    json_type = "application/json; charset=utf-8"
    assert valid_signature(TOKEN, JSON_URL, JSON_BODY, json_type, JSON_SIG)
    # another body under the same URL and signature: its hash is not the URL's
    other_body = JSON_BODY.replace(b"Ol", b"ol")
    assert not valid_signature(TOKEN, JSON_URL, other_body, json_type, JSON_SIG)
    other_hash = JSON_URL[: -len("dcab5")] + "dcab6"
    assert not valid_signature(TOKEN, other_hash, JSON_BODY, json_type, JSON_SIG)
    # without bodySHA256 nothing covers the body: refused, whatever the signature
    bare = sign(TOKEN, URL, b"")
    assert not valid_signature(TOKEN, URL, JSON_BODY, json_type, bare)
    # the same bytes said to be a form are read as one (and JSON_SIG is no form's signature)
    assert not valid_signature(TOKEN, JSON_URL, JSON_BODY, FORM, JSON_SIG)


# --- refusals ---------------------------------------------------------------------------------


def test_another_url_token_or_value_is_refused() -> None:
    body = form(INBOUND)
    for url in (URL + "/", URL.replace("/twilio", "/Twilio"), URL + "?", "https://evil.example/"):
        assert not valid(body, INBOUND_SIG, url=url), url
    assert not valid(body, INBOUND_SIG, token=TWILIO_TOKEN.encode())
    assert not valid(body, INBOUND_SIG, token=TOKEN[:-1])
    changed = [(k, "Olá! Quero cancelar" if k == "Body" else v) for k, v in INBOUND]
    assert not valid(form(changed), INBOUND_SIG)
    assert not valid(form([*INBOUND, ("MediaUrl0", "https://evil.example/x.jpg")]), INBOUND_SIG)
    assert not valid(form([p for p in INBOUND if p[0] != "Forwarded"]), INBOUND_SIG)


def test_missing_truncated_or_foreign_headers_are_refused_not_raised() -> None:
    body = form(INBOUND)
    for header in (None, "", " ", INBOUND_SIG[:-1], INBOUND_SIG + "A", "é" * 28, "\udcff" * 28):
        assert not valid(body, header), header
    assert valid(body, f" {INBOUND_SIG} ")  # surrounding blanks are not part of it


# --- properties ------------------------------------------------------------------------------


def reference_signature(token: bytes, url: str, body: bytes) -> str:
    """twilio-python's algorithm over the parameters as `parse_qsl` decodes them (another
    decoder than the gateway's): names sorted, each name's distinct values sorted."""
    params: dict[str, set[str]] = {}
    for name, value in parse_qsl(body.decode(), keep_blank_values=True):
        params.setdefault(name, set()).add(value)
    data = url + "".join(n + v for n in sorted(params) for v in sorted(params[n]))
    return base64.b64encode(hmac.new(token, data.encode(), hashlib.sha1).digest()).decode()


texts = st.text(st.characters(codec="utf-8"), max_size=30)


@given(
    st.binary(min_size=1, max_size=80),
    st.lists(st.tuples(texts, texts), max_size=12),
    st.booleans(),
)
def test_the_signature_of_any_form_is_twilio_pythons(
    token: bytes, params: list[tuple[str, str]], plus: bool
) -> None:
    body = form(params, plus=plus)
    expected = reference_signature(token, URL, body)
    assert sign(token, URL, body) == expected
    assert valid_signature(token, URL, body, FORM, expected)
    assert valid_signature(token, URL, body, None, expected)  # no content type: a form


@given(st.binary(max_size=300), st.text(max_size=40))
def test_any_bytes_and_header_are_answered_never_raised(body: bytes, header: str) -> None:
    for content_type in (FORM, "application/json", None, "text/plain"):
        assert valid_signature(TOKEN, URL, body, content_type, header) in (True, False)
    assert valid_signature(TOKEN, URL, body, FORM, sign(TOKEN, URL, body))


# --- over HTTP: what Twilio sees --------------------------------------------------------------


def _text_message(sid: str) -> list[tuple[str, str]]:
    return [
        ("MessageSid", sid),
        ("SmsStatus", "received"),
        ("From", "whatsapp:+5511987650000"),
        ("To", f"whatsapp:{TWILIO_A}"),
        ("WaId", "5511987650000"),
        ("Body", "Oi, tudo bem?"),
        ("NumMedia", "0"),
    ]


async def test_a_signed_webhook_is_answered_with_twiml_and_published(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body, headers = twilio_post(_text_message(SID))
    resp = await client.post("/webhooks/twilio", data=body, headers=headers)
    assert resp.status == 200
    assert resp.content_type == "text/xml"
    assert "<Response/>" in await resp.text()
    [event] = await stream(redis, "gw:inbox:sales")
    assert (event["message_id"], event["provider"]) == (SID, "twilio")


async def test_unsigned_or_wrongly_signed_webhooks_get_401_and_publish_nothing(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body, headers = twilio_post(_text_message(SID))
    del headers["X-Twilio-Signature"]
    assert (await client.post("/webhooks/twilio", data=body, headers=headers)).status == 401
    # signed for another URL (a proxy's own address instead of twilio.public_url)
    body, headers = twilio_post(_text_message(SID), url="http://10.0.0.7:8080/webhooks/twilio")
    assert (await client.post("/webhooks/twilio", data=body, headers=headers)).status == 401
    # a parameter added after signing
    body, headers = twilio_post(_text_message(SID))
    resp = await client.post("/webhooks/twilio", data=body + b"&Body=Pix", headers=headers)
    assert resp.status == 401
    assert await stream(redis, "gw:inbox:sales") == []


async def test_the_query_twilio_requested_is_part_of_the_signed_url(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body, headers = twilio_post(_text_message(SID), url=f"{TWILIO_URL}?tenant=acme")
    resp = await client.post("/webhooks/twilio?tenant=acme", data=body, headers=headers)
    assert resp.status == 200
    resp = await client.post("/webhooks/twilio?tenant=other", data=body, headers=headers)
    assert resp.status == 401
    # the port variant Twilio may sign with
    port_url = TWILIO_URL.replace(".com/", ".com:443/")
    body, headers = twilio_post(_text_message("SM" + "0" * 32), url=port_url)
    assert (await client.post("/webhooks/twilio", data=body, headers=headers)).status == 200
    assert len(await stream(redis, "gw:inbox:sales")) == 2


# --- SharedKey signing (Webhook Rules) ---------------------------------------------------------

KEY_A = ("KS1f2e3d4c5b6a79880716253443526170", "shared-key-secret-a-0123456789abcdef")
KEY_B = ("KS0a1b2c3d4e5f60718293a4b5c6d7e8f9", "shared-key-secret-b-fedcba9876543210")


def reference_shared(secret: str, url: str, body: bytes, digest: Any) -> str:
    """A Webhook Rule's signature, computed apart from the gateway: the same string as the
    auth token's (URL, then sorted name + value), keyed with the SharedKey's secret."""
    params = sorted(parse_qsl(body.decode(), keep_blank_values=True))
    data = url + "".join(name + value for name, value in params)
    return base64.b64encode(hmac.new(secret.encode(), data.encode(), digest).digest()).decode()


def test_a_shared_key_signs_the_same_string_with_its_own_algorithm() -> None:
    body = form(INBOUND)
    secret = KEY_A[1].encode()
    for algorithm, digest in (("HMAC_SHA256", hashlib.sha256), ("HMAC_SHA1", hashlib.sha1)):
        expected = reference_shared(KEY_A[1], URL, body, digest)
        assert sign(secret, URL, body, algorithm) == expected
        assert valid_signature(secret, URL, body, FORM, expected, algorithm)
    sha256 = reference_shared(KEY_A[1], URL, body, hashlib.sha256)
    assert not valid_signature(secret, URL, body, FORM, sha256)  # not as SHA-1
    assert not valid_signature(TOKEN, URL, body, FORM, sha256, "HMAC_SHA256")  # another key


def shared_post(
    params: list[tuple[str, str]], key: tuple[str, str], algorithm: str = "HMAC_SHA256"
) -> tuple[bytes, dict[str, str]]:
    """A webhook as Twilio posts it under a Webhook Rule signing with `key`."""
    body = urlencode(params).encode()
    digest = hashlib.sha256 if algorithm == "HMAC_SHA256" else hashlib.sha1
    headers = {
        "X-Twilio-Signature": reference_shared(key[1], TWILIO_URL, body, digest),
        "X-Twilio-Webhooks-Signature-Settings": f"key={key[0]},algorithm={algorithm}",
        "Content-Type": FORM,
    }
    return body, headers


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp"])
async def test_webhooks_signed_with_a_configured_shared_key_are_taken(
    aiohttp_client: Any, settings: Settings, redis: Redis, redis_url: str, fast_path: bool
) -> None:
    """Two SharedKeys configured (a rotation): a webhook naming either, in either algorithm,
    is taken; one naming another key, an unknown algorithm, or signed with the auth token
    under the header is 401; without the header the auth token still signs."""
    assert settings.twilio is not None
    keys = [TwilioSigningKey(sid=sid, secret=secret) for sid, secret in (KEY_A, KEY_B)]
    twilio = msgspec.structs.replace(settings.twilio, signing_keys=keys)
    server = msgspec.structs.replace(settings.server, fast_path=fast_path)
    app = create_app(msgspec.structs.replace(settings, twilio=twilio, server=server), redis_url)
    client: TestClient[Any, Any] = await aiohttp_client(app)

    async def status(body: bytes, headers: dict[str, str]) -> int:
        return (await client.post("/webhooks/twilio", data=body, headers=headers)).status

    sids = iter(f"SM{i:032x}" for i in range(1, 100))
    assert await status(*shared_post(_text_message(next(sids)), KEY_A)) == 200
    assert await status(*shared_post(_text_message(next(sids)), KEY_B, "HMAC_SHA1")) == 200
    assert await status(*twilio_post(_text_message(next(sids)))) == 200  # no rule: auth token

    unknown = ("KS" + "9" * 32, KEY_A[1])
    assert await status(*shared_post(_text_message(next(sids)), unknown)) == 401
    body, headers = shared_post(_text_message(next(sids)), KEY_A)
    headers["X-Twilio-Webhooks-Signature-Settings"] = f"key={KEY_A[0]},algorithm=HMAC_MD5"
    assert await status(body, headers) == 401
    body, headers = twilio_post(_text_message(next(sids)))  # the auth token's signature
    headers["X-Twilio-Webhooks-Signature-Settings"] = f"key={KEY_A[0]},algorithm=HMAC_SHA1"
    assert await status(body, headers) == 401
    body, headers = shared_post(_text_message(next(sids)), KEY_A)
    headers["X-Twilio-Webhooks-Signature-Settings"] = "garbage"
    assert await status(body, headers) == 401
    assert len(await stream(redis, "gw:inbox:sales")) == 3


async def test_without_signing_keys_a_shared_key_header_is_refused(
    client: TestClient[Any, Any], redis: Redis
) -> None:
    body, headers = shared_post(_text_message(SID), KEY_A)
    assert (await client.post("/webhooks/twilio", data=body, headers=headers)).status == 401
    assert await stream(redis, "gw:inbox:sales") == []
