"""Twilio's webhook bodies, `application/x-www-form-urlencoded`, split into their parameters.

The signature (`_verify`) and the parser (`_inbound`) both read a body through `decode`, so
the signature covers exactly the parameters the parser reads: no decoder difference (a `;`
taken as a separator, a `+` left undecoded) can let an unsigned parameter through. Each body
is decoded once: the receiver verifies it and the parser reads it right after, and `decode`
keeps the last body's answer for that second call.

Speed (benchmarks/README, "Twilio"): a body as Twilio sends it (every name once) is
percent-decoded in one C call (`codecs.escape_decode`) and split into its parameters by
msgspec's JSON decoder: `a=1&b=2` is `{"a":"1","b":"2"}` once `=` and `&` are replaced, and
a value's own `&`, `=`, quotes, backslashes, line breaks and tabs are JSON escapes by then.
Any other body, and any that JSON would not read back exactly, takes the plain
segment-by-segment way; tests/adapters/test_twilio_parse.py checks both give the same answer
on any bytes.
"""

from __future__ import annotations

import codecs
import re
from typing import Final, NamedTuple
from urllib.parse import unquote_to_bytes

import msgspec

MAX_KEPT: Final = 65536
"""Twilio posts at most 64 kB (larger fails with 11750): a longer body is not kept."""
_AS_JSON = msgspec.json.Decoder(dict[str, str])
_SPECIAL = re.compile(rb"%(?:0[9ADad]|2[26]|3[Dd]|5[Cc])")
"""What must be escaped before the fast way, besides a `\\` (the escape decoder reads it) or
`"` (JSON ends a string there) as such: those escaped, an escaped `&` or `=` (it would
split), an escaped line break or tab (JSON refuses them raw). (A regular expression that
finds the plain `\\` or `"` too is ten times slower than `in` for those two.)"""
_JSON_ESCAPES: Final = (
    (b"\\", b"\\\\\\\\"),  # first: the others bring backslashes
    (b'"', b'\\\\"'),
    (b"%5C", b"\\\\\\\\"),
    (b"%5c", b"\\\\\\\\"),
    (b"%22", b'\\\\"'),
    (b"%26", b"\\\\u0026"),
    (b"%3D", b"\\\\u003d"),
    (b"%3d", b"\\\\u003d"),
    (b"%0A", b"\\\\n"),
    (b"%0a", b"\\\\n"),
    (b"%0D", b"\\\\r"),
    (b"%0d", b"\\\\r"),
    (b"%09", b"\\\\t"),
)
"""(As found in the body, what the escape decoder turns into its JSON escape.)"""


class Form(NamedTuple):
    """A body's parameters. Shared with the next caller of `decode` for the same body: never
    changed."""

    fields: dict[str, str]
    """Name → value, `+` and `%XX` decoded, then UTF-8; a byte that is no UTF-8 is kept as its
    surrogate escape (`errors="surrogateescape"`), so nothing is lost. A name given more than
    once has its last value here."""
    repeated: list[tuple[str, str]] | None
    """When some name is given more than once: every (name, value) in the body's order; None
    when each name is given once (`fields` is then the whole body)."""
    utf8: bool
    """False when some name or value is not UTF-8 (which Twilio never sends)."""

    def pairs(self) -> list[tuple[str, str]]:
        """Every (name, value), repeated names kept."""
        return self.repeated if self.repeated is not None else list(self.fields.items())


_last: tuple[bytes, Form] = (b"", Form({}, None, True))
"""The last body decoded, and its form."""


def decode(body: bytes) -> Form:
    """The body's parameters, as the form decoders behind twilio-python's validator (Flask,
    Django) read them: only `&` separates, an empty segment is skipped, a segment without `=`
    is a name with an empty value, and a `%` without two hex digits after it stays as it
    is. Never raises."""
    global _last
    last_body, form = _last
    if body == last_body:
        return form
    spaced = body.replace(b"+", b" ")  # a space; a `+` itself is sent as %2B
    form = _as_json(spaced) or _by_segment(spaced)
    if len(body) <= MAX_KEPT:
        _last = (body, form)
    return form


def _as_json(body: bytes) -> Form | None:
    """The fast way, or None where it would not be exact: a broken `%` escape, bytes that are
    no UTF-8, a control character other than an escaped line break or tab, a segment without
    exactly one `=`, an empty segment (JSON refuses all of those) or a name given twice
    (JSON would keep one)."""
    if b'"' in body or b"\\" in body or _SPECIAL.search(body) is not None:
        # What JSON or the escape decoder would read otherwise, written as JSON escapes that
        # go through the escape decoder as they are (`\\\\` is one `\\` for it).
        for found, escaped in _JSON_ESCAPES:
            body = body.replace(found, escaped)
    try:
        raw = codecs.escape_decode(body.replace(b"%", b"\\x"))[0]
    except ValueError:  # a `%` without two hex digits
        return None
    try:
        fields = _AS_JSON.decode(b'{"' + raw.replace(b"=", b'":"').replace(b"&", b'","') + b'"}')
    except msgspec.DecodeError:
        return None
    if len(fields) != raw.count(b"&") + 1:
        return None
    return Form(fields, None, True)


def _by_segment(body: bytes) -> Form:
    found = []
    utf8 = True
    for segment in body.split(b"&"):
        if segment:
            raw_name, _, raw_value = segment.partition(b"=")
            name, name_ok = _text(_unquote(raw_name))
            value, value_ok = _text(_unquote(raw_value))
            found.append((name, value))
            utf8 = utf8 and name_ok and value_ok
    fields = dict(found)
    return Form(fields, found if len(fields) < len(found) else None, utf8)


def _unquote(raw: bytes) -> bytes:
    """`urllib.parse.unquote_to_bytes`, to the byte, faster: each `%XX` becomes `\\xXX` for
    the C escape decoder (backslashes escaped first, so only ours are read). An escape that
    is not two hex digits makes it fail: then the standard decoder, which keeps it as it is.
    (tests/adapters/test_twilio_parse.py checks both agree on random bytes.)"""
    if b"%" not in raw:
        return raw
    try:
        return codecs.escape_decode(raw.replace(b"\\", b"\\\\").replace(b"%", b"\\x"))[0]
    except ValueError:
        return unquote_to_bytes(raw)


def _text(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode(), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), False
