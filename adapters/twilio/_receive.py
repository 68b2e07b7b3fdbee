"""The receiving side of WhatsApp through Twilio: `X-Twilio-Signature` over `twilio.public_url`
(plus the query Twilio requested) and the form parameters (PLATFORM-MORE §5.1), bound to the
`twilio:` section. Twilio has no subscription handshake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from adapters.channel import QUERY, Answer, Webhook
from adapters.twilio._config import TwilioSettings
from adapters.twilio._verify import ALGORITHMS, SHA1, valid_signature

SIGNATURE_HEADER: Final = "x-twilio-signature"
SETTINGS_HEADER: Final = "x-twilio-webhooks-signature-settings"
"""Present when a Webhook Rule has Twilio sign with a SharedKey: `key=<id>,algorithm=<alg>`."""
CONTENT_TYPE: Final = "content-type"
TWIML_OK: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
"""The answer Twilio wants to an inbound message: empty TwiML (the reply goes by the REST API;
an empty 200 body was reported to log 11200). Status callbacks take it as well."""
WEBHOOK: Final = Webhook(
    "/webhooks/twilio",
    headers=(SIGNATURE_HEADER, CONTENT_TYPE, SETTINGS_HEADER, QUERY),
    ok=TWIML_OK,
)
_NOT_CONFIGURED: Final = (404, "twilio is not configured")
_BAD_SIGNATURE: Final = (401, "bad signature")


class TwilioReceiver:
    """One Twilio account's webhooks: its auth token signs every request to `public_url`, or
    one of its `signing_keys` where a Webhook Rule says so."""

    __slots__ = ("_keys", "_token", "_url")

    def __init__(self, settings: TwilioSettings | None) -> None:
        self._token = settings.auth_token.encode() if settings is not None else None
        self._url = settings.public_url if settings is not None else ""
        self._keys = {
            key.sid: key.secret.encode() for key in (settings.signing_keys if settings else ())
        }
        """SharedKey id → its secret."""

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
        secret, algorithm = self._token, SHA1
        settings = headers.get(SETTINGS_HEADER)
        if settings is not None:
            found = self._shared_key(settings)
            if found is None:
                return False
            secret, algorithm = found
        url = self._url
        query = headers.get(QUERY)
        if query:
            url = f"{url}{'&' if '?' in url else '?'}{query}"
        return valid_signature(
            secret, url, body, headers.get(CONTENT_TYPE), headers.get(SIGNATURE_HEADER), algorithm
        )

    def _shared_key(self, settings: str) -> tuple[bytes, str] | None:
        """The secret and algorithm `X-Twilio-Webhooks-Signature-Settings` names; None for a
        key not in `twilio.signing_keys`, an algorithm other than HMAC-SHA1/-SHA256, or a
        header that does not read as `key=..,algorithm=..` (refused: the auth token is not
        what signed such a request)."""
        fields: dict[str, str] = {}
        for part in settings.split(","):
            name, equals, value = part.partition("=")
            if not equals or name.strip().lower() in fields:
                return None
            fields[name.strip().lower()] = value.strip()
        secret = self._keys.get(fields.get("key", ""))
        algorithm = fields.get("algorithm", "").upper()
        if secret is None or algorithm not in ALGORITHMS:
            return None
        return secret, algorithm

    def handshake(self, query: Mapping[str, str]) -> Answer:
        """Twilio has no GET handshake (the route is not served)."""
        return _NOT_CONFIGURED
