"""Which assistant each parsed event goes to.

An `account_update` names a WABA, not a number: it is fanned out to every configured number
of that WABA. Each event then goes to the assistant of its (channel, account) in the
`Directory`; events of accounts it does not know are counted per account, for the webhook's
one dead letter (router/deadletters.py).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from adapters.schema import Parsed, Routed
from router.accounts import Directory

Known = list[tuple[Routed, str]]
"""Events with the assistant each goes to, in the webhook's order."""


class Routing:
    """Events → assistants, by the `Directory`."""

    __slots__ = ("_directory",)

    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    def route(self, channel: str, parsed: Parsed) -> tuple[Known, dict[str, int]]:
        """The events with their assistants, and unknown account → events it had."""
        unknown: dict[str, int] = {}
        routed = self._fan_out(parsed.events)
        return [(r, a) for r in routed if (a := self._assistant(channel, r, unknown))], unknown

    def _fan_out(self, events: list[Routed]) -> Iterable[Routed]:
        for item in events:
            if item.waba is None:
                yield item
                continue
            for number in self._directory.wabas.get(item.waba, ()):
                event = msgspec.structs.replace(item.event, account_id=number)
                yield Routed(event, item.dedup, item.rank, item.live, alive=item.alive)
            if item.waba not in self._directory.wabas:
                yield item  # dead-lettered as an unknown account

    def _assistant(self, channel: str, item: Routed, unknown: dict[str, int]) -> str | None:
        account = item.event.account_id
        assistant = self._directory.assistant(channel, account)
        if assistant is None:
            unknown[account] = unknown.get(account, 0) + 1
        return assistant
