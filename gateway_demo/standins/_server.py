"""Plumbing shared by the provider fakes: a small aiohttp server on 127.0.0.1.

Each fake (Graph API, Bot API) is an `aiohttp.web.Application` plus a controller object that
tests drive. This module owns what they share:

- starting on a free loopback port (a socket we bind ourselves, so the port is known before
  the first request) and stopping again, as an async context manager;
- the list of recorded requests and `wait_for`, so tests await traffic instead of sleeping;
- raw scripted answers (`fail_status`): what a proxy or load balancer in front of the real API
  sends, such as a 502 HTML page, answered before the fake looks at the request at all;
- answer delays (`delay`), to drive client timeouts;
- the sliding-window arithmetic behind `peak_per_second` and the rate-limit enforcement.

None of this imitates a provider; it is test machinery. The faithful parts live in
`graph_api.py` and `bot_api.py`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from aiohttp import web

HOST = "127.0.0.1"
# Stopping must not wait for answers held back by `delay()`: the test is over.
_SHUTDOWN_TIMEOUT_S = 0.2
_HTML = "text/html; charset=utf-8"


class Recorded(Protocol):
    """What every request record carries."""

    arrived: float
    status: int


R = TypeVar("R", bound=Recorded)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, with its decoded JSON kept for the request record."""

    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    payload: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Answer:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status, body, payload=payload, headers=dict(headers or {}))

    def response(self) -> web.Response:
        headers = {**self.headers, "Content-Type": self.content_type}
        return web.Response(status=self.status, body=self.body, headers=headers)


@dataclass
class _Raw:
    answer: Answer
    remaining: int


class FakeServer(ABC, Generic[R]):
    """Lifecycle, recording, raw answers and delays shared by the fakes."""

    def __init__(self, *, port: int = 0) -> None:
        self.requests: list[R] = []
        self._wanted_port = port
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._raw: deque[_Raw] = deque()
        self._delay_s = 0.0
        self._delays_left: int | None = None
        self._recorded = asyncio.Condition()

    @abstractmethod
    def build_app(self) -> web.Application:
        """The fake's routes; each subclass provides its own."""

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the fake is not started")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> Self:
        """Listen on 127.0.0.1 (a free port unless one was given)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._wanted_port))
        self._port = sock.getsockname()[1]
        runner = web.AppRunner(
            self.build_app(), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- scripting shared by both fakes ---------------------------------------------------

    def fail_status(
        self, http_status: int, body: bytes = b"", times: int = 1, *, content_type: str = _HTML
    ) -> None:
        """Answer the next `times` requests with exactly this status and body, whatever they are."""
        self._raw.append(_Raw(Answer(http_status, body, content_type), times))

    def delay(self, seconds: float, *, times: int | None = None) -> None:
        """Hold every answer (or the next `times` answers) back by `seconds`; 0 turns it off."""
        self._delay_s = seconds
        self._delays_left = times

    def reset(self) -> None:
        """Forget recorded requests and queued raw answers and delays (a benchmark warm-up)."""
        self.requests.clear()
        self._raw.clear()
        self.delay(0)

    async def wait_for(self, n: int, timeout_s: float = 5.0) -> list[R]:
        """Wait until at least `n` requests are recorded; return the first `n`."""
        try:
            async with asyncio.timeout(timeout_s), self._recorded:
                await self._recorded.wait_for(lambda: len(self.requests) >= n)
        except TimeoutError:
            msg = f"{len(self.requests)} of {n} requests recorded after {timeout_s}s"
            raise TimeoutError(msg) from None
        return self.requests[:n]

    # -- for subclasses ---------------------------------------------------------------------

    def take_raw(self) -> Answer | None:
        """The next queued raw answer, if any (consuming one of its uses)."""
        if not self._raw:
            return None
        raw = self._raw[0]
        raw.remaining -= 1
        if raw.remaining <= 0:
            self._raw.popleft()
        return raw.answer

    async def record(self, record: R) -> None:
        async with self._recorded:
            self.requests.append(record)
            self._recorded.notify_all()

    async def hold(self) -> None:
        """Sleep for the configured delay, if any is left."""
        if self._delay_s <= 0 or self._delays_left == 0:
            return
        if self._delays_left is not None:
            self._delays_left -= 1
        await asyncio.sleep(self._delay_s)


def peak_in_window(times: Iterable[float], window_s: float = 1.0) -> int:
    """Most events in any half-open window [t, t + window_s)."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class SlidingWindow:
    """Accepted event times for one key: at most `limit` in any window of `window_s`."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def wait_s(self, now: float) -> float:
        """0 if an event at `now` fits, else how long until it would."""
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[-self.limit] + self.window_s - now

    def add(self, now: float) -> None:
        self._times.append(now)
