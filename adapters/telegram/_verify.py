"""Webhook authentication for Telegram.

Telegram echoes the `secret_token` given to setWebhook in `X-Telegram-Bot-Api-Secret-Token`
on every delivery; it is the only proof that a POST came from Telegram, so it is compared in
constant time. (The bot id, the digits before the token's colon, is read from the token by
`adapters.telegram._config`.)
"""

from __future__ import annotations

import hmac

# Spaces and tabs around a header value are not part of it (RFC 9110 §5.5). aiohttp's parser
# drops them before any handler runs, llhttp's callbacks (the fast path) keep trailing ones;
# dropping them here makes both paths judge the same value. The secret's own alphabet is
# `A-Za-z0-9_-`, so no valid secret loses a byte.
_OWS = " \t"


def verify_secret(header_value: str | None, secret: str) -> bool:
    """True when the header's value equals the configured secret, byte for byte; False when
    either is missing. Only the HTTP padding around the value is ignored."""
    if not header_value or not secret:
        return False
    # surrogatepass: a header decoded with surrogateescape must not raise, only mismatch.
    given = header_value.strip(_OWS).encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, secret.encode("utf-8", "surrogatepass"))
