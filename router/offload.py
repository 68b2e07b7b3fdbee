"""Large webhooks (coexistence history sync, up to 3 MB and ~10,000 events) are decoded and
published by a child process, so live webhooks keep the gateway's event loop and its GIL.

A thread was not enough: msgspec decoding and building ~10,000 script arguments are Python
work that holds the GIL, and the event loop waited for it after every `epoll` (measured: live
p99 2-6 ms alone, 20-26 ms during back-to-back 3 MB history webhooks; with this child and
slices of 50 events, 4-6 ms). A child process shares
nothing with the loop but a pipe: the parent passes the raw bytes (one copy), the child
decodes, routes and runs the publish script calls on its own Redis connections, and answers
with a `Tally` of a few hundred bytes. The webhook is still answered 200 only after every
event is in Redis, and 503 if Redis failed, exactly as for a small body.

The pool is started on first use (most processes never see a large body) with the `spawn`
method (a fork of a running event loop is unsafe) and has one process per gateway process:
history arrives rarely and in order per number. The first large webhook waits for the child
to start (about 0.3 s here: it imports the gateway). The child runs at a lower CPU priority
(nice 10): on a busy machine the live webhooks' process gets the CPU first. If the child
dies, the webhook is answered 503 (the platform retries) and the next large webhook starts
a new child.

The child hands the memory it freed back to the system after each body (router/memory.py;
`server.memory_release_seconds: 0` turns it off): otherwise it stays as large as the largest
bodies it ever decoded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import msgspec

from adapters import CHANNELS
from adapters.schema import ForeignBody, Parsed, ParseError
from router.inbound import InboundRouter
from router.memory import Release, fix_mmap_threshold, release_function
from router.outcome import RouterUnavailable, Takeovers, Tally

log = logging.getLogger("gateway.offload")

ClientsFactory = Callable[[], Awaitable[InboundRouter]]
"""Builds the child's router (Redis clients included) inside the child's event loop. Must be
picklable: a module-level function, or a `functools.partial` of one."""


@dataclass(frozen=True)
class Malformed:
    """The body was no webhook at all; the parent dead-letters it as for a small body."""

    detail: str
    reason: str = ParseError.reason


class _Child:
    """State of the child process: one event loop, one router, kept between webhooks."""

    loop: asyncio.AbstractEventLoop
    router: InboundRouter
    release: Release | None = None


_CHILD = _Child()


def _start_child(factory: ClientsFactory, niceness: int, release: bool) -> None:
    # History is background work: when both want the CPU, live webhooks win it.
    with contextlib.suppress(OSError):
        os.nice(niceness)
    _CHILD.loop = asyncio.new_event_loop()
    _CHILD.router = _CHILD.loop.run_until_complete(factory())
    if release:
        fix_mmap_threshold()
        _CHILD.release = release_function()


def parse_webhook(
    channel: str, body: bytes, received_at: int, bot_id: str | None
) -> tuple[str, Parsed]:
    """The adapter's decode for one webhook body, and the adapter it is: the path's, or the
    one a Meta body's `object` names (`ForeignBody`). Its events are routed by that adapter's
    `channel` (whatsapp for Twilio's). Raises only `ParseError`. `bot_id`:
    the account named in the webhook's path, if the channel has one there."""
    try:
        return channel, CHANNELS[channel].parse(body, bot_id, received_at)
    except ForeignBody as exc:
        other = exc.channel
        if other is None or other == channel or other not in CHANNELS:
            raise
        return other, CHANNELS[other].parse(body, None, received_at)


def _publish_in_child(
    channel: str, body: bytes, received_at: int, bot_id: str | None
) -> tuple[str, Tally] | Malformed:
    try:
        return _publish(channel, body, received_at, bot_id)
    finally:  # (the body itself is freed after this returns: the pool holds it until then)
        if _CHILD.release is not None:
            _CHILD.release()


def _publish(
    channel: str, body: bytes, received_at: int, bot_id: str | None
) -> tuple[str, Tally] | Malformed:
    try:
        channel, parsed = parse_webhook(channel, body, received_at, bot_id)
    except ParseError as exc:
        return Malformed(str(exc), exc.reason)
    tally = _CHILD.loop.run_until_complete(
        _CHILD.router.publish(channel, parsed, body, received_at, bot_id)
    )
    return channel, _slim(tally)


def _slim(tally: Tally) -> Tally:
    """The tally without the account events' provider details, which the parent's metrics
    do not read (but `progress`): they could be large, or nested too deep to pickle."""
    tally.accounts = [
        msgspec.structs.replace(event, detail=_progress(event.detail)) for event in tally.accounts
    ]
    return tally


def _progress(detail: dict[str, Any]) -> dict[str, Any]:
    progress = detail.get("progress")
    return {"progress": progress} if isinstance(progress, int | float) else {}


class Offload:
    """Publishes large bodies from a child process; `publish` is awaited like the router's."""

    def __init__(self, factory: ClientsFactory, niceness: int = 10, release: bool = True) -> None:
        """`release`: the child hands freed memory back after each body (router/memory.py)."""
        self._factory = factory
        self._niceness = niceness
        self._release = release
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.takeovers: Takeovers | None = None
        """Told of the echoes a large body published (as `InboundRouter.takeovers`)."""

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child,
                initargs=(self._factory, self._niceness, self._release),
            )
        return self._pool

    async def publish(
        self, channel: str, body: bytes, received_at: int, bot_id: str | None = None
    ) -> tuple[str, Tally] | Malformed:
        """The channel the body was (see `parse_webhook`) and what was published. Raises
        `RouterUnavailable` when Redis (or the child) failed: answer 503."""
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._executor(), _publish_in_child, channel, body, received_at, bot_id
            )
        except RouterUnavailable:
            raise
        except BrokenProcessPool as exc:
            log.error("the large-webhook process died; the next large webhook starts another")
            self.close()
            raise RouterUnavailable(f"large-webhook process died: {exc}") from exc
        except Exception as exc:
            # A defect, not bad input (that is Malformed): keep the body for a retry.
            log.exception("publishing a large %s webhook failed", channel)
            raise RouterUnavailable(f"large-webhook publish failed: {exc!r}") from exc
        if not isinstance(outcome, Malformed) and outcome[1].takeovers and self.takeovers:
            self.takeovers(outcome[1].takeovers)
        return outcome

    def renew(self, factory: ClientsFactory) -> None:
        """Large bodies from now on go to a new child made by `factory` (a reload: the child
        builds its router from the config); a publish in the old one finishes there."""
        self._factory = factory
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
