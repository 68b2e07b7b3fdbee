"""Twilio's webhook bodies, `application/x-www-form-urlencoded`, split into their parameters.

The signature (`_verify`) and the parser (`_inbound`) both read a body through `decode`, so
the signature covers exactly the parameters the parser reads: no decoder difference (a `;`
taken as a separator, a `+` left undecoded) can let an unsigned parameter through. Each body
is decoded once: the receiver verifies it and the parser reads it right after, and `decode`
keeps the last body's answer for that second call.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import unquote_to_bytes

MAX_KEPT: Final = 65536
"""Twilio posts at most 64 kB (larger fails with 11750): a longer body is not kept."""
_SEPARATOR = re.compile(rb"%(?:26|3[Dd])")
"""`&` or `=` escaped."""


class Form(NamedTuple):
    """A body's parameters in its order, repeated names kept. Shared with the next caller of
    `decode` for the same body: never changed."""

    pairs: list[tuple[str, str]]
    """(name, value), `+` and `%XX` decoded, then UTF-8; a byte that is no UTF-8 is kept as
    its surrogate escape (`errors="surrogateescape"`), so nothing is lost."""
    utf8: bool
    """False when some name or value is not UTF-8 (which Twilio never sends)."""


_last: tuple[bytes, Form] = (b"", Form([], True))
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
    form = _decode(body)
    if len(body) <= MAX_KEPT:
        _last = (body, form)
    return form


def _decode(body: bytes) -> Form:
    if b"+" in body:  # a space; a `+` itself is sent as %2B
        body = body.replace(b"+", b" ")
    if _SEPARATOR.search(body) is not None:
        # An escaped `&` or `=` (a body text "a&b=c") would split: segment by segment.
        return _by_segment(body)
    # Decoded at once, the body splits as its segments would: escapes never span a `&`.
    text, utf8 = _text(_unquote(body) if b"%" in body else body)
    parts = [s.partition("=") for s in text.split("&") if s]
    return Form([(name, value) for name, _, value in parts], utf8)


def _unquote(raw: bytes) -> bytes:
    """`urllib.parse.unquote_to_bytes`, to the byte, about three times faster: each `%XX`
    becomes `\\xXX` for the C codec `unicode_escape` (backslashes escaped first, so only
    ours are read), whose code points 0-255 are the bytes again. An escape that is not two
    hex digits makes the codec fail: then the standard decoder, which keeps it as it is.
    (tests/adapters/test_twilio_parse.py checks both agree on random bytes.)"""
    try:
        escaped = raw.replace(b"\\", b"\\\\").replace(b"%", b"\\x")
        return escaped.decode("unicode_escape").encode("latin-1")
    except UnicodeDecodeError:
        return unquote_to_bytes(raw)


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
    return Form(found, utf8)


def _text(raw: bytes) -> tuple[str, bool]:
    try:
        return raw.decode(), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape"), False
