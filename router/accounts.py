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

    def update_from(self, other: Directory) -> None:
        """Take `other`'s accounts and WABAs in place (a reload): every holder of this
        directory sees them from the next lookup. Built with dicts (`gateway.app`)."""
        accounts, wabas = self.accounts, self.wabas
        assert isinstance(accounts, dict) and isinstance(wabas, dict)
        accounts.clear()
        accounts.update(other.accounts)
        wabas.clear()
        wabas.update(other.wabas)

    def get(self, channel: str, account_id: str) -> Account | None:
        return self.accounts.get((channel, account_id))

    def assistant(self, channel: str, account_id: str) -> str | None:
        account = self.accounts.get((channel, account_id))
        return account.assistant if account else None
