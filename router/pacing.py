"""Pacing: the policy check and the rate-limit slots of each send, all in Redis (CONTRACT §3).

`admit` runs `policy.lua`: account halted or disconnected, human takeover, opt-out, 24-hour
window, cross-country, then the slots of the account's and the recipient's GCRA limiters,
shared by every process (Redis's clock). `presend` runs `presend.lua` right before the HTTP
request: the pause re-checked, the hard cap of the dispatch log, and the record moved to
`sending` (see `router.ledger`). `unsend` gives a slot back; `hold` pushes a recipient's
limiter into the future the provider asked for.

The GCRA step itself is one copy of Lua, `router/lua/gcra.lua`, which `policy.lua` (admit and
take the slots), `hold.lua` (hold a limiter back) and `publish.lua` (charge an inbound message
to the number's budget) all run (router/scripts.py prepends it).
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

from adapters import countries
from adapters.schema import Command
from router import keys, scripts
from router.ledger import Claim, Lost, Result
from router.observer import OutboundObserver
from router.scriptpipe import ScriptHost
from router.settings import OutboundSettings, PolicySettings
from router.target import Target


class Slot(NamedTuple):
    """A reserved send slot: how long to sleep, and when it is in Redis time."""

    wait_s: float
    at_us: int
    """The slot in Redis time (µs since the epoch)."""


class Pacing:
    """The policy and limiter scripts of one process."""

    def __init__(
        self,
        host: ScriptHost,
        policy: PolicySettings,
        outbound: OutboundSettings,
        observer: OutboundObserver,
    ) -> None:
        self._guard_ms = policy.limiter_guard_ms
        self._lease_us = int(outbound.claim_idle_seconds * 1_000_000)
        self._observer = observer
        self.scripts = {n: scripts.load(host, n) for n in ("policy", "presend", "hold", "unsend")}

    async def admit(self, claim: Claim, command: Command, wait_until: float) -> Result | Slot:
        """Check the policy and reserve the command's slots; a Result ends the command.
        `wait_until` (monotonic time): a slot later than that is `rejected/rate_limited`."""
        policy_keys, args = self._policy_call(claim, command)
        while True:
            budget = int(max(0.0, wait_until - time.monotonic()) * 1_000_000)
            reply = await self.scripts["policy"](
                keys=policy_keys, args=[*args[:6], budget, *args[6:]]
            )
            if reply[0] != b"later":
                break
            # Only this contact's budget is spent: wait for it, then ask for both slots.
            await asyncio.sleep(int(reply[1]) / 1_000_000)
        match reply[0]:
            case b"reject":
                return Result("rejected", reply[1].decode())
            case b"halt":
                return halted(int(reply[1]))
        return Slot(int(reply[1]) / 1_000_000, int(reply[2]))

    def _policy_call(self, claim: Claim, command: Command) -> tuple[list[str], list[int | str]]:
        """policy.lua's keys, and its arguments but the wait budget (the 7th)."""
        target = claim.target
        adapter, account = target.adapter, target.account
        own = adapter.account_pace(account, self._guard_ms)
        recipient = adapter.recipient_pace(target.address, self._guard_ms)
        category = command.template.category if command.template is not None else None
        marketing = (category or "").lower() == "marketing"
        cross = adapter.crosses_border(account, target.address)
        policy_keys = [
            target.key("conv"),
            target.key("acct"),
            _country_block(target),
            target.key("lim1"),
            target.key("lim2"),
            claim.key,
        ]
        args: list[int | str] = [
            int(adapter.window),
            command.type,
            command.author,
            int(marketing or adapter.opt_out_ends_all),
            "" if cross is None else int(cross),
            keys.WINDOW_SECONDS,
            own.interval_us,
            own.tolerance_us,
            recipient.interval_us,
            recipient.tolerance_us,
            int(adapter.paces_recipient(command.type)),
            claim.owner,
            self._lease_us,
            adapter.human_window(command),
        ]
        return policy_keys, args

    async def presend(self, claim: Claim, command: Command) -> Result | None:
        """The hard cap and the last policy check, right before the request is written;
        None: send now (the record is `sending`). Raises `Lost` if the record is not ours.

        The dispatch log counts at most `mps` dispatches in any `1 s + guard/2` window (GCRA
        spaces them `(1 s + guard)/mps` apart, so exact spacing never trips it). A worker
        that resumes more than guard/2 after asking was delayed by its event loop: its
        request could bunch up with later ones at the provider, so it gives the slot back
        and asks again instead of sending late.
        """
        target = claim.target
        cap = max(1, int(target.account.mps))
        late_s = self._guard_ms / 2000
        window_us = 1_000_000 + int(self._guard_ms * 500)
        loop = asyncio.get_running_loop()
        log_keys = [target.key("conv"), target.key("acct"), claim.key, target.key("log")]
        args = [command.author, claim.owner, self._lease_us, cap, window_us]
        while True:
            asked = loop.time()
            reply = await self.scripts["presend"](keys=log_keys, args=args)
            if reply[0] == b"wait":
                await asyncio.sleep(int(reply[1]) / 1_000_000)
                continue
            if reply[0] != b"ok" or late_s == 0 or loop.time() - asked <= late_s:
                break  # (a zero guard asks for no lateness check)
            self._observer.late(target.channel)
            await self.unsend(claim)
            await asyncio.sleep(late_s)
        return _verdict(reply)

    async def unsend(self, claim: Claim) -> None:
        """Give a dispatch slot back (sending → waiting)."""
        await self.scripts["unsend"](keys=[claim.key, claim.target.key("log")], args=[claim.owner])

    async def hold(self, target: Target, delay_s: float, account: bool = False) -> None:
        """Nothing goes to this recipient (or chat) for `delay_s`; with `account`, nothing
        from the whole account (its own limiter)."""
        adapter = target.adapter
        if account:
            pace, key = adapter.account_pace(target.account, self._guard_ms), target.key("lim1")
        else:
            pace, key = adapter.recipient_pace(target.address, self._guard_ms), target.key("lim2")
        await self.scripts["hold"](keys=[key], args=[int(delay_s * 1e6), pace.tolerance_us])


def _verdict(reply: list[bytes]) -> Result | None:
    match reply[0]:
        case b"lost":
            raise Lost
        case b"halt":
            return halted(int(reply[1]))
        case b"reject":
            return Result("rejected", reply[1].decode())
    return None


def _country_block(target: Target) -> str:
    """The key of the (number, contact's country) block a 130497 sets."""
    country = countries.of_contact(target.address) or "??"
    return keys.country_block(target.inbox, target.account.account_id, country)


def halted(code: int) -> Result:
    """A command for a halted account: not sent, with the code that halted it."""
    detail = (
        f"not sent: the account is halted by provider error {code} until its credentials are "
        "fixed (gateway reload with a new token, or gateway accounts clear-halt)"
    )
    return Result("failed", "provider_error", code, None, detail)
