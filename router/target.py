"""Where a command goes: its account, its channel, and the Redis keys of its assistant's slot.

`route` turns a command's `conversation_id` into a `Target` through the `Directory`; None
means the command cannot be routed (CONTRACT §2.2: `unknown_conversation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from adapters import CHANNELS, Channel
from adapters.channel import adapter_of
from router import keys
from router.accounts import Account, Directory

KeyName = Literal["conv", "acct", "lim1", "lim2", "log"]


@dataclass(frozen=True)
class Target:
    """A command's account, contact and assistant slot.

    `contact_id` and `conversation_id` are the ones the assistant knows; `address` is where
    messages go now, which differs after the contact changed its number (then the state of
    the new number's conversation, window and pause included, is the one that counts)."""

    account: Account
    contact_id: str
    conversation_id: str
    inbox: str
    address: str = ""
    adapter: Channel = field(init=False, repr=False, compare=False)
    """The account's adapter (`adapters.channel.adapter_of`: its provider's, else its
    channel's registry entry)."""

    def __post_init__(self) -> None:
        if not self.address:
            object.__setattr__(self, "address", self.contact_id)
        object.__setattr__(self, "adapter", adapter_of(self.account))

    @property
    def channel(self) -> str:
        return self.account.channel

    @property
    def log_fields(self) -> dict[str, str]:
        """What a log line about this command names (`extra=`; JSON logs carry them): the
        configured account, never the contact."""
        a = self.account
        return {"channel": a.channel, "account": a.account_id, "assistant": a.assistant}

    def key(self, name: KeyName) -> str:
        a = self.account
        match name:
            case "conv":
                return keys.conversation(self.inbox, f"{a.channel}:{a.account_id}:{self.address}")
            case "acct":
                return keys.account_state(self.inbox, a.channel, a.account_id)
            case "lim1":
                return keys.limiter(self.inbox, a.channel, a.account_id)
            case "lim2":
                return keys.limiter(self.inbox, a.channel, a.account_id, self.address)
            case "log":
                return keys.dispatch_log(self.inbox, a.channel, a.account_id)
        raise KeyError(name)


def route(directory: Directory, conversation_id: object) -> Target | None:
    """The target of `channel:account_id:contact_id`, or None when it is not routable."""
    if not isinstance(conversation_id, str):
        return None
    channel, _, rest = conversation_id.partition(":")
    account_id, _, contact_id = rest.partition(":")
    account = directory.get(channel, account_id)
    if account is None or not contact_id or channel not in CHANNELS:
        return None
    return Target(account, contact_id, conversation_id, keys.inbox(account.assistant))
