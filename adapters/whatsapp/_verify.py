"""Meta's webhook signature (PLATFORM.md §1.2): HMAC-SHA256 of the raw body, app secret key."""

from __future__ import annotations

import hashlib
import hmac

_PREFIX = "sha256="


def verify_signature(body: bytes, header: str | None, app_secret: bytes) -> bool:
    """True when `X-Hub-Signature-256` is `sha256=<hex>` of exactly these bytes.

    Checked on the bytes as received, before any decoding: Meta signs the body with non-ASCII
    escaped as \\uXXXX, and any re-serialisation would change it. Constant-time compare.
    """
    if not header or not header.startswith(_PREFIX):
        return False
    expected = hmac.new(app_secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[len(_PREFIX) :].strip().lower().encode())


def sign(body: bytes, app_secret: bytes) -> str:
    """The header value Meta would send for `body` (for tests, benchmarks and replays)."""
    return _PREFIX + hmac.new(app_secret, body, hashlib.sha256).hexdigest()
