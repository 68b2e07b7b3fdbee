"""The KEYS/ARGV of publish.lua calls, as the router builds them (router/publish_call.py)
and runs them (router/runner.py).

A Redis Cluster runs a script only when all its keys are in one slot, and a stream's name is
the hash tag of the keys that go with it (router/keys.py), so one webhook's slice has one
`Batch` per stream, gathered in its `Calls`.
"""

from __future__ import annotations

from typing import Any

from adapters.schema import AnyEvent


class Batch:
    """The KEYS/ARGV of one publish.lua call, plus which event each result flag belongs to."""

    __slots__ = ("args", "events", "keys")

    def __init__(self, ttl: bytes) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = [ttl]
        self.events: list[AnyEvent | None] = []
        """One per E/S/P/M operation: the event its result flag is about (None: a letter)."""

    def collect(
        self, flags: list[int], published: list[AnyEvent], duplicates: list[AnyEvent]
    ) -> None:
        """Sort this call's events by its result flags: published, or already there."""
        for event, flag in zip(self.events, flags, strict=True):
            if event is None:
                continue
            (published if flag else duplicates).append(event)


class Calls:
    """The publish.lua calls of one slice of a webhook: one `Batch` per stream."""

    __slots__ = ("_ttl", "batches", "letters")

    def __init__(self, ttl: bytes) -> None:
        self._ttl = ttl
        self.batches: dict[str, Batch] = {}
        self.letters: list[str] = []
        """Reasons of the dead letters these calls write."""

    def batch(self, stream: str) -> Batch:
        """The call for `stream` and the keys tagged with its name."""
        batch = self.batches.get(stream)
        if batch is None:
            batch = self.batches[stream] = Batch(self._ttl)
        return batch
