"""Meta's webhook signature (PLATFORM.md §1.2): HMAC-SHA256 of the raw body, app secret key."""

from __future__ import annotations

import hashlib
import hmac

_PREFIX = "sha256="

_KEYED: dict[bytes, hmac.HMAC] = {}
"""App secret → an HMAC-SHA256 that has absorbed it, never updated itself."""


def _keyed(app_secret: bytes) -> hmac.HMAC:
    """The app secret's HMAC with the key already hashed in: each body is hashed on a
    `.copy()` of it instead of keying a new HMAC (0.2 µs of 2 µs for a 1 KiB body)."""
    keyed = _KEYED.get(app_secret)
    if keyed is None:
        keyed = hmac.new(app_secret, digestmod=hashlib.sha256)
        if len(_KEYED) < 16:  # one secret per gateway; a few more in tests
            _KEYED[app_secret] = keyed
    return keyed


def _hexdigest(body: bytes, app_secret: bytes) -> str:
    mac = _keyed(app_secret).copy()
    mac.update(body)
    return mac.hexdigest()


def verify_signature(body: bytes, header: str | None, app_secret: bytes) -> bool:
    """True when `X-Hub-Signature-256` is `sha256=<hex>` of exactly these bytes.

    Checked on the bytes as received, before any decoding: Meta signs the body with non-ASCII
    escaped as \\uXXXX, and any re-serialisation would change it. Constant-time compare. A
    header that is not even UTF-8 is simply a wrong signature.
    """
    if not header or not header.startswith(_PREFIX):
        return False
    given = header[len(_PREFIX) :].strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(_hexdigest(body, app_secret).encode(), given)


def sign(body: bytes, app_secret: bytes) -> str:
    """The header value Meta would send for `body` (for tests, benchmarks and replays)."""
    return _PREFIX + _hexdigest(body, app_secret)
