"""The accounts the gateway serves, as the router needs them: a `Directory` by channel and id.

The gateway builds the `Directory` from its config; the router never reads config itself.
`Account` lives in `adapters.account`, since the adapters build requests from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.account import Account, interval_us

__all__ = ["Account", "Directory", "interval_us"]


@dataclass(frozen=True)
class Directory:
    """Every configured account, and the numbers of each WABA."""

    accounts: Mapping[tuple[str, str], Account]
    """(channel, account_id) → account."""
    wabas: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """WABA id → its configured phone_number_ids, in config order."""

    def get(self, channel: str, account_id: str) -> Account | None:
        return self.accounts.get((channel, account_id))

    def assistant(self, channel: str, account_id: str) -> str | None:
        account = self.accounts.get((channel, account_id))
        return account.assistant if account else None
