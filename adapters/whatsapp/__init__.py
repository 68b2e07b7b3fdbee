"""WhatsApp Cloud API adapter: verify, parse (and, later, send and classify).

The payload structs are private (`_payload`); only the common schema leaves this package.
"""

from adapters.whatsapp._inbound import parse
from adapters.whatsapp._verify import sign, verify_signature

__all__ = ["parse", "sign", "verify_signature"]
