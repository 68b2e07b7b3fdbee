"""Messenger and Instagram Direct adapters (Meta's Messenger Platform): verify, parse, build
Send API requests, classify its answers; registered as the `Channel`s "messenger" and
"instagram" (one package: the two share the envelope, the Send API and its errors).

The payload structs are private (`_payload`); only the common schema leaves this package.
"""

from adapters.channel import register
from adapters.meta_messaging._channel import HUMAN_AGENT, HUMAN_AGENT_SECONDS, MetaMessaging
from adapters.meta_messaging._config import (
    InstagramAccount,
    InstagramSettings,
    MessengerPage,
    MessengerSettings,
)
from adapters.meta_messaging._inbound import parse
from adapters.meta_messaging._outbound import build_request, classify

__all__ = [
    "HUMAN_AGENT",
    "HUMAN_AGENT_SECONDS",
    "INSTAGRAM",
    "MESSENGER",
    "InstagramAccount",
    "InstagramSettings",
    "MessengerPage",
    "MessengerSettings",
    "MetaMessaging",
    "build_request",
    "classify",
    "parse",
]

MESSENGER = register(MetaMessaging("messenger"))
INSTAGRAM = register(MetaMessaging("instagram"))
