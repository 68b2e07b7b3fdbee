"""The channels: one package each, behind one interface (`adapters.channel.Channel`).

Importing `adapters` registers every channel package listed below in `CHANNELS`; the router
reaches channels only through it. `schema` holds what crosses between adapters and router.
"""

# Each package registers itself on import; a new channel adds its line here.
from adapters import meta_messaging, telegram, twilio, whatsapp
from adapters.channel import (
    CHANNELS,
    Action,
    Answer,
    Channel,
    ChannelSettings,
    HttpRequest,
    Pace,
    ProviderCall,
    Receiver,
    Subscription,
    Webhook,
)

__all__ = [
    "CHANNELS",
    "Action",
    "Answer",
    "Channel",
    "ChannelSettings",
    "HttpRequest",
    "Pace",
    "ProviderCall",
    "Receiver",
    "Subscription",
    "Webhook",
    "meta_messaging",
    "telegram",
    "twilio",
    "whatsapp",
]
