"""A typed client for assistant backends of the gateway (CONTRACT §2): read events from
`gw:inbox:<assistant>` through a consumer group, send commands to `gw:outbox:<assistant>`,
await their `delivery`. Needs redis and msgspec only, not the gateway."""

from gateway_client import commands
from gateway_client.client import Backend, Sent
from gateway_client.commands import Command
from gateway_client.events import (
    KINDS,
    Account,
    Contacts,
    Delivery,
    Echo,
    Event,
    History,
    Location,
    Media,
    Member,
    Message,
    ProviderError,
    Received,
    Reply,
    Status,
    decode,
)

__all__ = [
    "KINDS",
    "Account",
    "Backend",
    "Command",
    "Contacts",
    "Delivery",
    "Echo",
    "Event",
    "History",
    "Location",
    "Media",
    "Member",
    "Message",
    "ProviderError",
    "Received",
    "Reply",
    "Sent",
    "Status",
    "commands",
    "decode",
]
