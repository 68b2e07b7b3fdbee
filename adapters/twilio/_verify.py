"""`X-Twilio-Signature` (PLATFORM-MORE §5.1): base64 of the HMAC-SHA1, keyed with the auth
token, of the URL Twilio requested followed by the form parameters sorted by name, each as
name + value. twilio-python's `RequestValidator` is the reference, and its quirks are kept:

- a name given several times counts each of its distinct values once, values sorted;
- the URL is tried as given and with its port changed, because Twilio is inconsistent about
  ports: a port is taken out (any port, as twilio-python does), or, without one, the scheme's
  default is put in (`:443` for https, `:80` otherwise);
- a JSON body (`application/json`) is signed through the URL alone, whose `bodySHA256` query
  parameter must be the hex SHA-256 of the raw body.

Under a Webhook Rule with a SharedKey (Twilio's Webhooks configuration API, public beta),
Twilio signs the same string with the key's secret and the rule's algorithm (HMAC-SHA1 or
HMAC-SHA256, base64) and says so in `X-Twilio-Webhooks-Signature-Settings:
key=<id>,algorithm=HMAC_SHA256` (twilio-node's WebhookSignatureValidation example: "only the
hash changes"); `_receive` picks the key and the algorithm from that header.

Everything else is read as a form, whatever its content type says: the parser reads it as one
(`_form.decode`), so what it reads must be what was signed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from itertools import chain
from operator import itemgetter
from typing import Final
from urllib.parse import parse_qs, urlsplit

from adapters.twilio._form import decode

_JSON: Final = "application/json"
_FORM: Final = "application/x-www-form-urlencoded"
_BODY_HASH: Final = "bodySHA256"

_ORDERS_KEPT: Final = 256
_ORDERS: dict[tuple[str, ...], tuple[Callable[[dict[str, str]], tuple[str, ...]], str]] = {}
"""A body's names in its order → `_order`'s answer."""
SHA1: Final = "HMAC_SHA1"
SHA256: Final = "HMAC_SHA256"
ALGORITHMS: Final = frozenset({SHA1, SHA256})
"""What `X-Twilio-Webhooks-Signature-Settings` may name as `algorithm=` (Webhook Rules sign
with a SharedKey and either; without the header it is the auth token and HMAC-SHA1)."""
_KEYED: dict[tuple[bytes, str, str], hmac.HMAC] = {}
"""(Key, URL, algorithm) → an HMAC keyed with the key that has absorbed the URL, never
updated itself. (A URL with a query Twilio added is hashed anew each time once the table is
full: tests and queries that vary.)"""


def valid_signature(
    auth_token: bytes,
    url: str,
    body: bytes,
    content_type: str | None,
    signature: str | None,
    algorithm: str = SHA1,
) -> bool:
    """Whether `signature` (the header) is Twilio's for a request to `url` with this body
    (constant-time). `url` is `twilio.public_url` plus the query string Twilio requested;
    `auth_token` the key (a SharedKey's secret, with its `algorithm`, under a Webhook Rule)."""
    if not signature:
        return False
    given = signature.strip().encode("utf-8", "surrogatepass")
    if _is_json(content_type):
        if not _body_hash_matches(url, body):
            return False
        params = b""
    else:
        params = _sorted_params(body)
    if hmac.compare_digest(_signature(auth_token, url, params, algorithm), given):
        return True
    other = _signature(auth_token, _other_port(url), params, algorithm)
    return hmac.compare_digest(other, given)


def sign(auth_token: bytes, url: str, body: bytes, algorithm: str = SHA1) -> str:
    """What Twilio sends in `X-Twilio-Signature` when it posts this form body to `url` (for
    tests, the fake API's status callbacks and benchmarks)."""
    return _signature(auth_token, url, _sorted_params(body), algorithm).decode()


def _signature(auth_token: bytes, url: str, params: bytes, algorithm: str) -> bytes:
    mac = _keyed(auth_token, url, algorithm).copy()
    mac.update(params)
    return base64.b64encode(mac.digest())


def _keyed(auth_token: bytes, url: str, algorithm: str) -> hmac.HMAC:
    """The key's HMAC that has absorbed the URL: each request is hashed on a `.copy()` of it
    instead of keying a new HMAC and hashing the same URL again (as `adapters.meta` does for
    Meta's app secrets)."""
    keyed = _KEYED.get((auth_token, url, algorithm))
    if keyed is None:
        digest = hashlib.sha256 if algorithm == SHA256 else hashlib.sha1
        keyed = hmac.new(auth_token, url.encode("utf-8", "surrogatepass"), digest)
        if len(_KEYED) < 64:  # the token and its URL, and its port variant, per gateway
            _KEYED[auth_token, url, algorithm] = keyed
    return keyed


def _sorted_params(body: bytes) -> bytes:
    """Name + value of every parameter, names sorted, each name's distinct values sorted
    (sorting the distinct pairs does both), in UTF-8: twilio-python's string, to the
    character. (A byte that is no UTF-8, which Twilio never sends, is signed as itself.)"""
    form = decode(body)
    if form.repeated is not None:
        text = "".join(chain.from_iterable(sorted(set(form.repeated))))
    elif len(form.fields) < 2:
        text = "".join(chain.from_iterable(form.fields.items()))
    else:  # each name once, as Twilio sends them: the names' order is all there is to sort
        values, template = _order(tuple(form.fields))
        text = template % values(form.fields)
    return text.encode("utf-8", "surrogateescape")


def _order(names: tuple[str, ...]) -> tuple[Callable[[dict[str, str]], tuple[str, ...]], str]:
    """For a body with these names (two or more, each once), in its order: what takes its
    values in sorted-name order, and the %-template that puts each after its name. Twilio
    sends a few such sets, one per kind of message and callback: each is worked out once
    (kept up to `_ORDERS_KEPT`)."""
    order = _ORDERS.get(names)
    if order is None:
        ordered = sorted(names)
        template = "".join(name.replace("%", "%%") + "%s" for name in ordered)
        order = (itemgetter(*ordered), template)
        if len(_ORDERS) < _ORDERS_KEPT:
            _ORDERS[names] = order
    return order


def _is_json(content_type: str | None) -> bool:
    if content_type == _FORM:  # what Twilio sends
        return False
    return content_type is not None and content_type.partition(";")[0].strip().lower() == _JSON


def _body_hash_matches(url: str, body: bytes) -> bool:
    """The URL's (first) `bodySHA256` is the body's hex SHA-256. A JSON body without one is
    refused: nothing would then cover the body (twilio-python lets that case through)."""
    given = parse_qs(urlsplit(url).query).get(_BODY_HASH)
    if not given:
        return False
    expected = hashlib.sha256(body).hexdigest().encode()
    return hmac.compare_digest(expected, given[0].encode("utf-8", "surrogatepass"))


def _other_port(url: str) -> str:
    """`url` with its port taken out or, without one, the scheme's default port put in."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    host, colon, port = hostport.rpartition(":")
    if colon and port.isascii() and port.isdigit():  # `[::1]` has no port: "1]" is no number
        other = host
    else:
        other = f"{hostport}:{443 if scheme.lower() == 'https' else 80}"
    return f"{scheme}{sep}{userinfo}{at}{other}{rest[end:]}"
