"""WhatsApp Cloud API adapter: verify, parse, build send requests, classify send answers.

The payload structs are private (`_payload`); only the common schema leaves this package.
"""

from adapters.whatsapp._inbound import parse
from adapters.whatsapp._outbound import build_request, classify
from adapters.whatsapp._verify import sign, verify_signature

__all__ = ["build_request", "classify", "parse", "sign", "verify_signature"]
