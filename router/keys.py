"""Every Redis key the gateway writes, with its lifetime. Nothing outside the `gw:` prefix.

Streams (names fixed by CONTRACT.md §2), trimmed with XADD MAXLEN ~ (router.*_maxlen):
    gw:inbox:<assistant>     live events for one assistant
    gw:history:<assistant>   coexistence history sync, read at the assistant's own pace
    gw:outbox                commands from assistant backends (consumer group `gateway`)
    gw:deadletter            what could not be understood or routed

State keys belong to one stream's Redis Cluster slot: their hash tag is the name of the stream
their events go to (`{gw:inbox:support}`), so the script that publishes an event and marks it
seen touches one slot, and the publish of one assistant's events is one script call.

    gw:dd:{<stream>}:<channel>:<account>:<identity>
        dedup mark: "1", or the highest status rank published for a message.
        TTL router.dedup_ttl_seconds (at least 48 h).
    gw:cv:{<inbox>}:<conversation_id>
        hash: t = provider time of the contact's latest live message, m = its message id.
        EXPIREAT t + 24 h + 1 h, so an absent key means the 24-hour window is closed.
    gw:uid:{<inbox>}:<account>:<bsuid>
        the wa_id a business-scoped user id was last seen with.
        TTL router.contact_map_ttl_seconds, refreshed each time both are seen together.
"""

from __future__ import annotations

INBOX = "gw:inbox:"
HISTORY = "gw:history:"
OUTBOX = "gw:outbox"
DEADLETTER = "gw:deadletter"

WINDOW_SECONDS = 24 * 3600
WINDOW_KEY_SLACK_SECONDS = 3600
"""A conversation key outlives its window by this much, so clock skew never closes it early."""


def inbox(assistant: str) -> str:
    return INBOX + assistant


def history(assistant: str) -> str:
    return HISTORY + assistant


def dedup(stream: str, channel: str, account: str, identity: str) -> str:
    return f"gw:dd:{{{stream}}}:{channel}:{account}:{identity}"


def conversation(inbox_stream: str, conversation_id: str) -> str:
    return f"gw:cv:{{{inbox_stream}}}:{conversation_id}"


def bsuid(inbox_stream: str, account: str, user_id: str) -> str:
    return f"gw:uid:{{{inbox_stream}}}:{account}:{user_id}"
