"""The receiving side of the WhatsApp channel: Meta's subscription handshake (PLATFORM §1.1)
and the webhook's `X-Hub-Signature-256` (§1.2), bound to the `whatsapp:` section."""

from __future__ import annotations

from typing import Final

from adapters.channel import Webhook
from adapters.meta import SIGNATURE_HEADER, MetaReceiver
from adapters.whatsapp._config import WhatsAppSettings

WEBHOOK: Final = Webhook("/webhooks/whatsapp", handshake=True, headers=(SIGNATURE_HEADER,))


def receiver(settings: WhatsAppSettings | None) -> MetaReceiver:
    """The section's Meta apps' webhooks: a body says which accounts it is about and its
    signature which app sent it, so the path names none."""
    return MetaReceiver("whatsapp", settings)
