"""Reading a provider's HTTP answer, the same way in every adapter's `classify`: the body's
JSON (or a stand-in when it is none), integers a JSON body may carry, a 2xx status."""

from __future__ import annotations

from typing import Any, Final

import msgspec

INT64: Final = 2**63
"""Codes and ids outside a signed 64-bit integer are not the provider's: not trusted."""
DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""Decoding arbitrary bytes: DecodeError (with ValidationError for out-of-range numbers),
UnicodeDecodeError for invalid UTF-8 in a string, RecursionError for deep nesting."""
NOT_JSON: Final = object()
"""What `decode` gives for a body that is not JSON, when JSON `null` must be told apart."""


def decode(body: bytes, not_json: Any = None) -> Any:
    """The body's JSON, or `not_json` when it is none (never raises)."""
    try:
        return msgspec.json.decode(body)
    except DECODE_ERRORS:
        return not_json


def is_int(value: object) -> bool:
    """A JSON integer (not a bool) within 64 bits."""
    return isinstance(value, int) and not isinstance(value, bool) and -INT64 <= value < INT64


def ok(status: int) -> bool:
    return 200 <= status < 300
