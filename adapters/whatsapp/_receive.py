"""The receiving side of the WhatsApp channel: Meta's subscription handshake (PLATFORM §1.1)
and the webhook's `X-Hub-Signature-256` (§1.2), bound to the `whatsapp:` section."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Final

from adapters.channel import Answer, Webhook
from adapters.whatsapp._config import WhatsAppSettings
from adapters.whatsapp._verify import verify_signature

SIGNATURE_HEADER: Final = "x-hub-signature-256"
WEBHOOK: Final = Webhook("/webhooks/whatsapp", handshake=True, headers=(SIGNATURE_HEADER,))
_NOT_CONFIGURED: Final = (404, "whatsapp is not configured")
_BAD_SIGNATURE: Final = (401, "bad signature")


class WhatsAppReceiver:
    """One Meta app's webhooks: every number shares the app secret, so the path names none."""

    __slots__ = ("_secret", "_verify_token")

    def __init__(self, settings: WhatsAppSettings | None) -> None:
        self._secret = settings.app_secret.encode() if settings is not None else None
        self._verify_token = settings.verify_token.encode() if settings is not None else b""

    def refuse(self, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        """404 when WhatsApp is not configured; 401 when the signature header is missing or
        not `sha256=...` (`verify` would refuse it too, but only after reading the body)."""
        if self._secret is None:
            return _NOT_CONFIGURED
        signature = headers.get(SIGNATURE_HEADER)
        if not signature or not signature.startswith("sha256="):
            return _BAD_SIGNATURE
        return None

    def verify(self, key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        """The HMAC-SHA256 of the raw body with the app secret (constant-time)."""
        if self._secret is None:
            return False
        return verify_signature(body, headers.get(SIGNATURE_HEADER), self._secret)

    def handshake(self, query: Mapping[str, str]) -> Answer:
        """Echo `hub.challenge` for `hub.mode=subscribe` and our verify token; else 403."""
        if self._secret is None:
            return _NOT_CONFIGURED
        token = query.get("hub.verify_token", "")
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(), self._verify_token
        ):
            return 403, "verification failed"
        return 200, query.get("hub.challenge", "")
