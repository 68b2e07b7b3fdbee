"""WhatsApp Cloud API adapter: verify, parse, build send requests, classify send answers;
registered as the `Channel` "whatsapp".

The payload structs are private (`_payload`); only the common schema leaves this package.
"""

from adapters.channel import register
from adapters.meta import SIGNATURE_HEADER
from adapters.whatsapp._channel import PAIR_BUCKET, PAIR_REFILL_SECONDS, WhatsApp, WhatsAppRules
from adapters.whatsapp._config import WhatsAppNumber, WhatsAppSettings
from adapters.whatsapp._inbound import parse
from adapters.whatsapp._outbound import build_request, classify
from adapters.whatsapp._verify import sign, verify_signature

__all__ = [
    "CHANNEL",
    "PAIR_BUCKET",
    "PAIR_REFILL_SECONDS",
    "SIGNATURE_HEADER",
    "WhatsApp",
    "WhatsAppNumber",
    "WhatsAppRules",
    "WhatsAppSettings",
    "build_request",
    "classify",
    "parse",
    "sign",
    "verify_signature",
]

CHANNEL = register(WhatsApp())
