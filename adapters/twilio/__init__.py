"""WhatsApp through Twilio: verify, parse, build Messages API requests, classify its answers;
registered as the adapter "twilio", whose numbers are channel "whatsapp" (CONTRACT §6).

The payload handling is private; only the common schema leaves this package.
"""

from adapters.channel import register
from adapters.twilio._channel import Twilio
from adapters.twilio._config import TwilioNumber, TwilioSettings, TwilioSigningKey
from adapters.twilio._inbound import parse
from adapters.twilio._outbound import build_request, classify
from adapters.twilio._receive import SIGNATURE_HEADER, TWIML_OK
from adapters.twilio._verify import sign, valid_signature

__all__ = [
    "CHANNEL",
    "SIGNATURE_HEADER",
    "TWIML_OK",
    "Twilio",
    "TwilioNumber",
    "TwilioSettings",
    "TwilioSigningKey",
    "build_request",
    "classify",
    "parse",
    "sign",
    "valid_signature",
]

CHANNEL = register(Twilio())
