"""The receiving side of WhatsApp through Twilio: `X-Twilio-Signature` over `twilio.public_url`
(plus the query Twilio requested) and the form parameters (PLATFORM-MORE §5.1), bound to the
`twilio:` section. Twilio has no subscription handshake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from adapters.channel import QUERY, Answer, Webhook
from adapters.twilio._config import TwilioSettings
from adapters.twilio._verify import valid_signature

SIGNATURE_HEADER: Final = "x-twilio-signature"
CONTENT_TYPE: Final = "content-type"
TWIML_OK: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
"""The answer Twilio wants to an inbound message: empty TwiML (the reply goes by the REST API;
an empty 200 body was reported to log 11200). Status callbacks take it as well."""
WEBHOOK: Final = Webhook(
    "/webhooks/twilio", headers=(SIGNATURE_HEADER, CONTENT_TYPE, QUERY), ok=TWIML_OK
)
_NOT_CONFIGURED: Final = (404, "twilio is not configured")
_BAD_SIGNATURE: Final = (401, "bad signature")


class TwilioReceiver:
    """One Twilio account's webhooks: its auth token signs every request to `public_url`."""

    __slots__ = ("_token", "_url")

    def __init__(self, settings: TwilioSettings | None) -> None:
        self._token = settings.auth_token.encode() if settings is not None else None
        self._url = settings.public_url if settings is not None else ""

    def refuse(self, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        """404 when Twilio is not configured; 401 without a signature header."""
        if self._token is None:
            return _NOT_CONFIGURED
        if not headers.get(SIGNATURE_HEADER):
            return _BAD_SIGNATURE
        return None

    def verify(self, key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        """Twilio's HMAC-SHA1 of the URL it requested and the sorted form parameters (or, for a
        JSON body, of the URL whose `bodySHA256` is the body's hash), constant-time."""
        if self._token is None:
            return False
        url = self._url
        query = headers.get(QUERY)
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        return valid_signature(
            self._token, url, body, headers.get(CONTENT_TYPE), headers.get(SIGNATURE_HEADER)
        )

    def handshake(self, query: Mapping[str, str]) -> Answer:
        """Twilio has no GET handshake (the route is not served)."""
        return _NOT_CONFIGURED
