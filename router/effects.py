"""What a provider's verdict leaves behind, and where (issue #17).

A verdict comes from the channel's own error table, in one of two ways: the provider's
answer to a send (`Channel.classify`, applied by `router.sender`), or a failed status webhook
(`Routed.verdict`, set by the channel's parser and applied by publish.lua's V, atomically
with publishing the status). Both leave the same mark through the same Lua
(`router/lua/effect.lua`); this module names the key and the hold for each verdict, so the
two paths cannot drift apart. It knows verdicts, never a channel.

    opted_out        the conversation (`oo`)         until the contact writes
    held             the conversation (`mh`)         policy.marketing_hold_seconds
    undeliverable    the conversation (`uh`)         policy.undeliverable_hold_seconds, or
                                                     until the contact writes
    window_closed    the conversation (`wc`)         until the contact writes
    country_blocked  gw:cb:* (number, country)       policy.country_block_seconds
    halt             the account state (`halt`)      until an operator clears it
"""

from __future__ import annotations

from typing import Final, NamedTuple

from adapters import countries
from adapters.schema import EFFECT_VERDICTS
from router import keys
from router.settings import PolicySettings

_ON_CONVERSATION: Final = frozenset({"opted_out", "held", "undeliverable", "window_closed"})


class Mark(NamedTuple):
    """One verdict's effect: the key it writes and how long a hold lasts (seconds)."""

    key: str
    hold_s: int
    conversation: bool = False
    """The key is the conversation's (its TTL is renewed with the write)."""


def mark(
    policy: PolicySettings, verdict: str, inbox: str, channel: str, account_id: str, contact: str
) -> Mark | None:
    """Where `verdict` leaves its mark for this account and contact, or None when it leaves
    none (sent, retries, a plain failure; or a hold configured to 0 seconds)."""
    if verdict not in EFFECT_VERDICTS:
        return None
    hold_s = hold_seconds(policy, verdict)
    if verdict in ("held", "undeliverable", "country_blocked") and hold_s <= 0:
        return None
    if verdict in _ON_CONVERSATION:
        return Mark(keys.conversation(inbox, f"{channel}:{account_id}:{contact}"), hold_s, True)
    if verdict == "country_blocked":
        country = countries.of_contact(contact) or "??"
        return Mark(keys.country_block(inbox, account_id, country), hold_s)
    return Mark(keys.account_state(inbox, channel, account_id), 0)


def hold_seconds(policy: PolicySettings, verdict: str) -> int:
    match verdict:
        case "held":
            return policy.marketing_hold_seconds
        case "undeliverable":
            return policy.undeliverable_hold_seconds
        case "country_blocked":
            return max(policy.country_block_seconds, 1)
    return 0
