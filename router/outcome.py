"""What publishing one webhook did, as a `Tally` (plain counts), and `RouterUnavailable` when
Redis did not take its events.

The router counts; it does not name metric labels. A `Tally` keys events by their `kind` and
their own `type` as the adapter set it; which of those become label values (closed sets,
README "Metrics") is the gateway's decision (gateway/webhook_metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.schema import AccountEvent, AnyEvent, EchoEvent


class RouterUnavailable(Exception):
    """Redis did not take the events; nothing of this webhook was recorded."""


KINDS: dict[type[Any], str] = {kind: str(kind.__struct_config__.tag) for kind in AnyEvent.__args__}
"""Event class → its `kind`."""


@dataclass
class Tally:
    """What one publish did, in counts: small enough to pass between processes."""

    published: dict[tuple[str, str | None], int] = field(default_factory=dict)
    """(kind, the event's `type`, None for kinds without one) → events published."""
    duplicates: dict[str, int] = field(default_factory=dict)
    """kind → redeliveries not published again."""
    accounts: list[AccountEvent] = field(default_factory=list)
    """Account events published (they move per-number gauges)."""
    deadletters: list[str] = field(default_factory=list)
    """Reason of each dead letter written."""
    takeovers: list[EchoEvent] = field(default_factory=list)
    """Echoes published in a conversation (a person answered: the assistant steps back),
    for escalation notices."""


Takeovers = Callable[[list[EchoEvent]], None]
"""Told of a webhook's published echoes once its calls succeeded (must not block)."""


def tally(
    published_events: list[AnyEvent], duplicate_events: list[AnyEvent], deadletters: list[str]
) -> Tally:
    """The counts of one publish's events."""
    published: dict[tuple[str, str | None], int] = {}
    accounts: list[AccountEvent] = []
    takeovers: list[EchoEvent] = []
    for event in published_events:
        key = (KINDS[type(event)], getattr(event, "type", None))
        published[key] = published.get(key, 0) + 1
        if type(event) is AccountEvent:
            accounts.append(event)
        elif type(event) is EchoEvent and event.conversation_id is not None:
            takeovers.append(event)
    duplicates: dict[str, int] = {}
    for event in duplicate_events:
        kind = KINDS[type(event)]
        duplicates[kind] = duplicates.get(kind, 0) + 1
    return Tally(published, duplicates, accounts, deadletters, takeovers)
