"""Running a webhook's publish.lua calls: slice after slice, a slice's calls side by side,
and `Publishing`, the one thing `InboundRouter.start` gives back for a webhook: its calls
begun, a future to wait on, and then the `Tally` of what they did.

Redis errors become `RouterUnavailable` here, at the one place the calls are awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from adapters.schema import AnyEvent
from router.batch import Batch, Calls
from router.client import REDIS_ERRORS
from router.outcome import RouterUnavailable, Takeovers, Tally, tally

Script = Callable[..., Awaitable[Any]]
"""publish.lua, registered on a script host: awaited with `keys=` and `args=`."""


class Runner:
    """Runs built calls (router/publish_call.py) and collects what they published."""

    __slots__ = ("_script",)

    def __init__(self, script: Script) -> None:
        self._script = script

    async def slices(self, slices: list[Calls]) -> Tally:
        """Slice after slice, each given its own turn of the event loop, so Redis runs live
        webhooks' scripts in between (a large body); raises `RouterUnavailable`."""
        published: list[AnyEvent] = []
        duplicates: list[AnyEvent] = []
        letters: list[str] = []
        for i, calls in enumerate(slices):
            if i:
                await asyncio.sleep(0)
            batches = calls.batches
            if len(batches) == 1:  # the usual: one stream, one call
                for batch in batches.values():
                    if batch.keys:
                        await self._run(batch, published, duplicates)
            else:
                await self.all(calls, published, duplicates)
            letters.extend(calls.letters)
        return tally(published, duplicates, letters)

    async def all(
        self, calls: Calls, published: list[AnyEvent], duplicates: list[AnyEvent]
    ) -> None:
        """One slice's calls side by side (one round trip); raises if any of them failed."""
        batches = calls.batches
        results = await asyncio.gather(
            *(self._run(batch, published, duplicates) for batch in batches.values() if batch.keys),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _run(
        self, batch: Batch, published: list[AnyEvent], duplicates: list[AnyEvent]
    ) -> None:
        try:
            flags = await self._script(keys=batch.keys, args=batch.args)
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        batch.collect(flags, published, duplicates)


class Publishing:
    """One webhook's publish, begun (`InboundRouter.start`). Once `future` is done,
    `tally()` says what it published, or raises `RouterUnavailable` if Redis failed.

    The usual webhook (one call, nothing to look up) is its one publish.lua call, already
    sent on the lean client: `future` is that call's reply, and no task or coroutine is made
    for it. Any other is a task running `Runner.slices`. `takeovers` is told of the echoes
    it published, by `tally()`."""

    __slots__ = ("_batch", "_letters", "_takeovers", "future")

    def __init__(
        self,
        future: asyncio.Future[Any],
        batch: Batch | None = None,
        letters: list[str] | None = None,
        takeovers: Takeovers | None = None,
    ) -> None:
        self.future = future
        self._batch = batch
        self._letters = letters
        self._takeovers = takeovers

    @classmethod
    def running(
        cls, publishing: Coroutine[Any, Any, Tally], takeovers: Takeovers | None = None
    ) -> Publishing:
        """A publish that needs more than one call, or a lookup first, as a task."""
        return cls(asyncio.get_running_loop().create_task(publishing), takeovers=takeovers)

    async def wait(self) -> Tally:
        """`tally()`, once `future` is done."""
        if not self.future.done():
            await asyncio.wait((self.future,))
        return self.tally()

    def tally(self) -> Tally:
        done = self._tally()
        if done.takeovers and self._takeovers is not None:
            self._takeovers(done.takeovers)
        return done

    def _tally(self) -> Tally:
        batch = self._batch
        if batch is None:
            done: Tally = self.future.result()  # the task raises RouterUnavailable itself
            return done
        try:
            flags: list[int] = self.future.result()
        except REDIS_ERRORS as exc:
            raise RouterUnavailable(str(exc)) from exc
        published: list[AnyEvent] = []
        duplicates: list[AnyEvent] = []
        batch.collect(flags, published, duplicates)
        return tally(published, duplicates, list(self._letters or ()))
