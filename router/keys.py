"""Every Redis key the gateway writes, with its lifetime. Nothing outside the `gw:` prefix.

Streams (names fixed by CONTRACT.md §2), trimmed with XADD MAXLEN ~ (router.*_maxlen):
    gw:inbox:<assistant>     live events and delivery results for one assistant
    gw:history:<assistant>   coexistence history sync, read at the assistant's own pace
    gw:outbox                commands from assistant backends (consumer group `gateway`); the
                             shared outbox, for one-tenant setups (`outbound.shared_outbox`)
    gw:outbox:<assistant>    one assistant's commands (group `gateway`): only its own
                             conversations are sent, others answered rejected/invalid_command
    gw:deadletter            what could not be understood or routed
    gw:notifications         escalation notices (handoff, echo takeover, escalate, reminder),
                             read by each gateway process's notifier (consumer group
                             `notifier`) and by anyone else; notifications.maxlen

State keys belong to one assistant's Redis Cluster slot: their hash tag is the name of a
stream (`{gw:inbox:support}`), so every script touches one slot: publishing an event with
its dedup mark, or deciding a command's policy and rate-limit slots.

    gw:dd:{<stream>}:<channel>:<account>:<identity>
        dedup mark: "1", or the highest status rank published for a message.
        TTL router.dedup_ttl_seconds (at least 48 h).
    gw:sent:{<inbox>}:<channel>:<account>:<message_id>
        the command_id of a message the gateway sent, where the provider's statuses do not
        name it (`Channel.statuses_name_command` false: Twilio, Messenger, Instagram).
        TTL router.dedup_ttl_seconds.
    gw:cv:{<inbox>}:<conversation_id>
        hash, one per conversation: t = provider time of the contact's latest live message,
        m = its message id, p = AI paused until (unix s, set by echoes), h = "1" while a
        handoff holds the conversation, oo = opt-out code (131050, or Telegram 403);
        with `notifications:` configured also x = up to 200 characters of the latest
        message's text (what a notice quotes; never logged) and q = the end of the echo
        pause a takeover notice was sent for (a later echo inside it notifies nothing).
        TTL router.conversation_ttl_seconds, renewed by every write.
    gw:uid:{<inbox>}:<account>:<bsuid>
        the wa_id a business-scoped user id was last seen with.
        TTL router.contact_map_ttl_seconds, refreshed each time both are seen together.
    gw:rl:{<inbox>}:<channel>:<account>[:<contact>]
        rate limiter state (GCRA theoretical arrival time, µs of Redis time) for a number or
        bot, and for a (number, contact) pair or a Telegram chat. Expires once idle.
    gw:log:{<inbox>}:<channel>:<account>
        sorted set of the number's (or bot's) dispatch times in the last second (µs of Redis
        time): the hard cap behind the limiter. Expires once idle.
    gw:cb:{<inbox>}:<account>:<country>
        a 130497 seen for this number and country: business-initiated sends are refused.
        TTL policy.country_block_seconds.
    gw:acct:{<inbox>}:<channel>:<account>
        hash: halt = provider code that stopped sending (credentials, account), cleared at
        startup; disc = the account event that disconnected the number. No TTL.
    gw:cmd:{<inbox>}:<command_id>
        hash, a command's exactly-once record: s = waiting | sending | done, e = first outbox
        entry id, o = owner (worker), l = lease end (µs), r = the delivery result (JSON).
        TTL router.dedup_ttl_seconds.
    gw:paused:{<inbox>}
        sorted set of the assistant's paused conversations (member: conversation id, score:
        unix s of the last human activity: the handoff, an echo, a human's command), kept
        only with notifications.reminder_after_seconds set. The notifier takes a member out
        when it sends its reminder, or finds it no longer paused; handback takes it out.
        One per assistant, in the inbox's slot: a cluster spreads it with the assistant's
        other state, and the scripts that read it also read the conversation. No TTL: its
        size is the number of paused conversations.
"""

from __future__ import annotations

INBOX = "gw:inbox:"
HISTORY = "gw:history:"
OUTBOX = "gw:outbox"
OUTBOXES = "gw:outbox:"
OUTBOX_GROUP = "gateway"
DEADLETTER = "gw:deadletter"
NOTIFICATIONS = "gw:notifications"
NOTIFIER_GROUP = "notifier"

WINDOW_SECONDS = 24 * 3600


def inbox(assistant: str) -> str:
    return INBOX + assistant


def outbox(assistant: str) -> str:
    """One assistant's own outbox."""
    return OUTBOXES + assistant


def history(assistant: str) -> str:
    return HISTORY + assistant


def dedup(stream: str, channel: str, account: str, identity: str) -> str:
    return f"gw:dd:{{{stream}}}:{channel}:{account}:{identity}"


def sent(inbox_stream: str, channel: str, account: str, message_id: str) -> str:
    """The command_id of a message the gateway sent, for statuses that do not name it."""
    return f"gw:sent:{{{inbox_stream}}}:{channel}:{account}:{message_id}"


def conversation(inbox_stream: str, conversation_id: str) -> str:
    return f"gw:cv:{{{inbox_stream}}}:{conversation_id}"


def bsuid(inbox_stream: str, account: str, user_id: str) -> str:
    return f"gw:uid:{{{inbox_stream}}}:{account}:{user_id}"


def limiter(inbox_stream: str, channel: str, account: str, contact: str | None = None) -> str:
    tail = f":{contact}" if contact is not None else ""
    return f"gw:rl:{{{inbox_stream}}}:{channel}:{account}{tail}"


def dispatch_log(inbox_stream: str, channel: str, account: str) -> str:
    return f"gw:log:{{{inbox_stream}}}:{channel}:{account}"


def country_block(inbox_stream: str, account: str, country: str) -> str:
    return f"gw:cb:{{{inbox_stream}}}:{account}:{country}"


def account_state(inbox_stream: str, channel: str, account: str) -> str:
    return f"gw:acct:{{{inbox_stream}}}:{channel}:{account}"


def command(inbox_stream: str, command_id: str) -> str:
    return f"gw:cmd:{{{inbox_stream}}}:{command_id}"


def paused(inbox_stream: str) -> str:
    """The assistant's paused conversations, by last human activity (reminders)."""
    return f"gw:paused:{{{inbox_stream}}}"
