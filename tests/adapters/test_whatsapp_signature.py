"""X-Hub-Signature-256 checks: exactly the standard HMAC-SHA256 of the raw body, or refused."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from adapters.whatsapp import verify_signature

secrets_ = st.binary(min_size=0, max_size=200)  # shorter and longer than SHA-256's 64-byte block
bodies = st.binary(max_size=3000)


def _header(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@given(secrets_, bodies)
def test_the_standard_hmac_of_the_body_verifies(secret: bytes, body: bytes) -> None:
    assert verify_signature(body, _header(body, secret), secret)
    # Meta writes lowercase hex; uppercase hex and trailing blanks are the same signature
    digest = _header(body, secret).removeprefix("sha256=")
    assert verify_signature(body, f"sha256={digest.upper()} ", secret)


@given(secrets_, bodies, st.data())
def test_any_other_body_key_or_digest_is_refused(
    secret: bytes, body: bytes, data: st.DataObject
) -> None:
    header = _header(body, secret)
    other_body = data.draw(bodies.filter(lambda b: b != body))
    assert not verify_signature(other_body, header, secret)
    other_secret = data.draw(
        secrets_.filter(
            lambda s: (
                hmac.new(s, body, hashlib.sha256).digest()
                != hmac.new(secret, body, hashlib.sha256).digest()
            )
        )
    )
    assert not verify_signature(body, header, other_secret)
    at = data.draw(st.integers(min_value=len("sha256="), max_value=len(header) - 1))
    flipped = header[:at] + ("0" if header[at] != "0" else "1") + header[at + 1 :]
    assert not verify_signature(body, flipped, secret)


def test_missing_truncated_or_foreign_headers_are_refused_not_raised() -> None:
    body, secret = b'{"object":"whatsapp_business_account"}', b"app-secret"
    good = _header(body, secret)
    assert not verify_signature(body, None, secret)
    assert not verify_signature(body, "", secret)
    assert not verify_signature(body, good[:-1], secret)
    assert not verify_signature(body, good.replace("sha256=", "sha1="), secret)
    assert not verify_signature(body, "sha256=" + "é" * 64, secret)
    # a header with bytes that are not UTF-8 arrives with surrogate escapes: refused, no error
    assert not verify_signature(body, good[:-1] + "\udcff", secret)
