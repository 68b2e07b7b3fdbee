"""Running a webhook's publish.lua calls: slice after slice, a slice's calls side by side,
and `Flight`, the one call of the usual webhook, already sent, that the fast path answers
from without a task or coroutine (`InboundRouter.start`).

Redis errors become `RouterUnavailable` here, at the one place the calls are awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.schema import AnyEvent
from router.batch import Batch, Calls
from router.client import REDIS_ERRORS
from router.outcome import Report, RouterUnavailable, Tally, tally

Script = Callable[..., Awaitable[Any]]
"""publish.lua, registered on a script host: awaited with `keys=` and `args=`."""


class Runner:
    """Runs built calls (router/publish_call.py) and collects what they published."""

    __slots__ = ("_script",)

    def __init__(self, script: Script) -> None:
        self._script = script

    async def slices(self, slices: list[Calls]) -> Report:
        """Slice after slice, each given its own turn of the event loop, so Redis runs live
        webhooks' scripts in between (a large body); raises `RouterUnavailable`."""
        report = Report()
        for i, calls in enumerate(slices):
            if i:
                await asyncio.sleep(0)
            batches = calls.batches
            if len(batches) == 1:  # the usual: one stream, one call
                for batch in batches.values():
                    if batch.keys:
                        await self._run(batch, report)
            else:
                await self.all(calls, report)
            report.deadletters.extend(calls.letters)
        return report

    async def all(self, calls: Calls, report: Report) -> None:
        """One slice's calls side by side (one round trip); raises if any of them failed."""
        batches = calls.batches
        results = await asyncio.gather(
            *(self._run(batch, report) for batch in batches.values() if batch.keys),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _run(self, batch: Batch, report: Report) -> None:
        try:
            flags = await self._script(keys=batch.keys, args=batch.args)
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        batch.collect(flags, report.published, report.duplicates)


class Flight:
    """A webhook's one publish.lua call, sent by `InboundRouter.start`: its reply comes in
    `future`; once that is done, `report()` says what the call did."""

    __slots__ = ("_batch", "_letters", "future")

    def __init__(self, future: asyncio.Future[Any], batch: Batch, letters: list[str]) -> None:
        self.future = future
        self._batch = batch
        self._letters = letters

    def report(self) -> Report:
        """What the call published; raises `RouterUnavailable` if it failed."""
        report = Report()
        self._batch.collect(self._flags(), report.published, report.duplicates)
        report.deadletters.extend(self._letters)
        return report

    def tally(self) -> Tally:
        """`report().tally()`, without the report in between."""
        published: list[AnyEvent] = []
        duplicates: list[AnyEvent] = []
        self._batch.collect(self._flags(), published, duplicates)
        return tally(published, duplicates, list(self._letters))

    def _flags(self) -> list[int]:
        try:
            flags: list[int] = self.future.result()
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        return flags
