"""The fast path: the two webhook POST routes answered without aiohttp's per-request machinery.

aiohttp costs about 40 µs of CPU per request here, as much as everything else the gateway does
for a webhook (benchmarks/README.md). Webhook deliveries are the one request that matters for
throughput, and they are plain: `POST /webhooks/whatsapp` or `/webhooks/telegram/{bot_id}`,
HTTP/1.1, a Content-Length body, keep-alive. `FastProtocol` serves exactly those on a
connection itself: llhttp (httptools) checks the request head, the body is sliced from the
buffer, and the same `handlers.start_whatsapp` / `start_telegram` as the aiohttp routes
verify, parse and publish it. The usual webhook needs one script call, sent while the body is
handled; a callback on its reply writes the answer, so no task or coroutine is made per
request (about 6 µs of CPU a webhook, benchmarks/README.md).

Every other request is aiohttp's, on the same port and connection: the first one that is not a
plain webhook POST (any other path or method, HTTP/1.0, chunked, `Expect`, `Upgrade`, a body
over `server.max_body_bytes`, a head llhttp refuses, or a head that is not CRLF-framed) hands
the connection to aiohttp's own protocol with every unparsed byte, starting at that request's
first byte, and the connection stays aiohttp's. So 404, 405, 413, 400, HEAD, the verification
GET, health, readiness and metrics behave exactly as aiohttp makes them. A connection
serves one request at a time, in order, as aiohttp does; the handoff waits until the request
in flight is answered.

`GatewayRunner` is `web.AppRunner` with this protocol in front; `server.fast_path: false`
leaves aiohttp alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import httptools
from aiohttp import web

from gateway.app import STATE
from gateway.handlers import (
    SIGNATURE_HEADER,
    TELEGRAM_SECRET_HEADER,
    Answer,
    Pending,
    Started,
    start_telegram,
    start_whatsapp,
)

log = logging.getLogger("gateway.http")

MAX_HEAD_BYTES = 16 * 1024
"""A head longer than this without its blank line goes to aiohttp (which refuses it)."""
PAUSE_BYTES = 256 * 1024
"""While a request is in flight, reading pauses once this much of the next is buffered."""
KEEPALIVE_SECONDS = 75.0
"""An idle connection is closed after this long, as aiohttp does (its keepalive_timeout)."""
SWEEP_SECONDS = 5.0
"""How often idle connections are looked for."""

_WHATSAPP = b"/webhooks/whatsapp"
_TELEGRAM = b"/webhooks/telegram/"
_SIGNATURE = SIGNATURE_HEADER.lower().encode()
_SECRET = TELEGRAM_SECRET_HEADER.lower().encode()
_WANTED = frozenset(
    {b"content-length", b"transfer-encoding", b"expect", b"upgrade", _SIGNATURE, _SECRET}
)
_REASONS = {200: b"OK", 401: b"Unauthorized", 404: b"Not Found", 500: b"Internal Server Error",
            503: b"Service Unavailable"}  # fmt: skip


_INTERNAL_ERROR: Answer = (500, "Internal Server Error")
"""The answer when handling a request raised (the exception is logged)."""

Route = Callable[[bytes], Started]
"""A webhook route bound to its request's headers: body → the webhook, started."""


class _Head:
    """llhttp's callbacks for one request head: the URL and the headers the fast path reads."""

    __slots__ = ("complete", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _WANTED:
            if name in self.headers:  # a second Content-Length, signature...: aiohttp's
                self.complete = False
                raise _NotPlain
            self.headers[name] = value

    def on_headers_complete(self) -> None:
        self.complete = True

    def reset(self) -> None:
        self.url = b""
        self.headers = {}
        self.complete = False


class _NotPlain(Exception):
    """The request is not one the fast path serves."""


class FastServer:
    """aiohttp's `web.Server` (connection factory) with `FastProtocol` in front of it.

    It keeps aiohttp's interface towards the runner: called for a new connection, told to
    close idle connections (`pre_shutdown`) and to finish the rest (`shutdown`)."""

    def __init__(
        self, inner: web.Server, app: web.Application, access_log: logging.Logger | None
    ) -> None:
        self.inner = inner
        self.app = app
        self.access_log = access_log
        self.max_body = app[STATE].settings.server.max_body_bytes
        self.connections: set[FastProtocol] = set()
        self.orphans: set[asyncio.Future[Any]] = set()
        """Requests still in flight whose client has gone: shutdown waits for them too."""
        self.closing = False
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> FastProtocol:
        if self._sweeper is None and not self.closing:
            self._sweep()
        return FastProtocol(self)

    def pre_shutdown(self) -> None:
        """The listener is closed: close idle connections, let busy ones finish their request
        (then they close), and tell aiohttp's connections the same."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        self.inner.pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - aiohttp's
        """Wait for requests in flight (up to `timeout`), then cut what is left."""
        waits = [conn.inflight for conn in self.connections if conn.inflight is not None]
        waits.extend(self.orphans)
        if waits:
            await asyncio.wait(waits, timeout=timeout)
        for conn in list(self.connections):
            if conn.busy:  # still in flight after the timeout
                conn.abort()
        await self.inner.shutdown(timeout)

    def _sweep(self) -> None:
        """Close connections idle for KEEPALIVE_SECONDS; runs every SWEEP_SECONDS."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            if not conn.busy and now - conn.last_active > KEEPALIVE_SECONDS:
                conn.close()
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)


class FastProtocol(asyncio.Protocol):
    """One client connection while it sends plain webhook POSTs (see the module docstring)."""

    __slots__ = (
        "_body_at",
        "_buf",
        "_head",
        "_loop",
        "_need",
        "_parser",
        "_paused",
        "_pending",
        "_request",
        "_server",
        "_transport",
        "busy",
        "inflight",
        "last_active",
    )

    def __init__(self, server: FastServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._head = _Head()
        self._parser = httptools.HttpRequestParser(self._head)
        self._need = 0
        """Bytes of the buffer the head in `_pending` and its body take (0: no head yet)."""
        self._body_at = 0
        """Where that body starts in the buffer."""
        self._pending: tuple[Route, bool, bytes] | None = None
        self._paused = False
        self._request: tuple[Pending, bool, bytes, float] | None = None
        """The request whose `Pending` is in flight: it, keep-alive, target, start time."""
        self.busy = False
        self.inflight: asyncio.Future[Any] | None = None
        """What the request in flight waits for: its `Pending`'s future, or its task."""
        self.last_active = self._loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # answers go out at once, as aiohttp sets it
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        # A request in flight is finished anyway (its events are published; aiohttp does not
        # cancel handlers either): only its answer has nowhere to go.
        if self.inflight is not None:
            orphans = self._server.orphans
            orphans.add(self.inflight)
            self.inflight.add_done_callback(orphans.discard)

    def data_received(self, data: bytes) -> None:
        self.last_active = self._loop.time()
        self._buf += data
        if not self.busy:
            self._next()
        elif len(self._buf) > PAUSE_BYTES and not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool | None:
        return None  # close; an unfinished request has no one to answer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _next(self) -> None:
        """Serve the buffered requests, in order, while each is answered at once; stop at
        one in flight, at an incomplete one, or by handing the connection to aiohttp."""
        while not self.busy and self._transport is not None:
            request = self._take()
            if request is None:
                return
            self.busy = True
            route, payload, keep_alive, target = request
            if not self._start(route, payload, keep_alive, target):
                return

    def _take(self) -> tuple[Route, bytes, bool, bytes] | None:
        """The next complete webhook request in the buffer, taken out of it; None if there
        is none yet, or if the connection went to aiohttp."""
        buf = self._buf
        if not self._need:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES or b"\n\n" in buf:
                    self._handoff()
                return None
            try:
                with memoryview(buf) as view, view[: end + 4] as head:
                    self._pending = self._route(head)
            except (_NotPlain, httptools.HttpParserError):
                self._handoff()
                return None
            self._body_at = end + 4
            self._need = self._body_at + int(self._head.headers[b"content-length"])
        if len(buf) < self._need:
            return None
        assert self._pending is not None
        route, keep_alive, target = self._pending
        with memoryview(buf) as view, view[self._body_at : self._need] as body:
            # The parser reads past the body too, so it is ready for the next head.
            self._parser.feed_data(body)
            payload = body.tobytes()
        del buf[: self._need]
        self._need = 0
        self._pending = None
        self._head.reset()
        return route, payload, keep_alive, target

    def _start(self, route: Route, body: bytes, keep_alive: bool, target: bytes) -> bool:
        """Begin one request; True when it was answered at once and the connection goes on.

        The usual webhook comes back as a `Pending`: one script call in flight, and a
        callback on its future answers it, with no task per request. Anything that needs
        more awaiting comes back as a coroutine and runs as a task."""
        started_at = time.time() if self._server.access_log is not None else 0.0
        try:
            started = route(body)
        except Exception:
            log.exception("Error handling request")
            started = _INTERNAL_ERROR
        if type(started) is tuple:
            return self._answer(started, keep_alive, target, started_at)
        if type(started) is Pending:
            self._request = (started, keep_alive, target, started_at)
            self.inflight = started.future
            started.future.add_done_callback(self._settled)
            return False
        assert not isinstance(started, tuple | Pending)
        self.inflight = self._loop.create_task(self._serve(started, keep_alive, target, started_at))
        return False

    def _settled(self, _: asyncio.Future[Any]) -> None:
        """The script call of the `Pending` request is answered: answer the request."""
        assert self._request is not None
        pending, keep_alive, target, started_at = self._request
        self._request = None
        try:
            answer = pending.answer()
        except Exception:
            log.exception("Error handling request")
            answer = _INTERNAL_ERROR
        self._finish(answer, keep_alive, target, started_at)

    async def _serve(
        self,
        started: Coroutine[Any, Any, Answer],
        keep_alive: bool,
        target: bytes,
        started_at: float,
    ) -> None:
        try:
            answer = await started
        except Exception:
            log.exception("Error handling request")
            answer = _INTERNAL_ERROR
        self._finish(answer, keep_alive, target, started_at)

    def _finish(self, answer: Answer, keep_alive: bool, target: bytes, started_at: float) -> None:
        """Answer a request that waited, then serve what was buffered behind it."""
        if self._answer(answer, keep_alive, target, started_at) and self._buf:
            self._next()

    def _answer(self, answer: Answer, keep_alive: bool, target: bytes, started_at: float) -> bool:
        """Write one answer; True when the connection stays open for the next request."""
        status, text = answer
        close = not keep_alive or self._server.closing
        transport = self._transport
        if transport is not None:
            transport.write(_answers.get(status, text, close))
        self.busy = False
        self.inflight = None
        self.last_active = self._loop.time()
        if self._server.access_log is not None:
            self._log(target, status, len(text), started_at, transport)
        if transport is None:
            return False
        if close:
            transport.close()
            self._transport = None  # nothing more is read or answered on it
            return False
        if self._paused:
            self._paused = False
            transport.resume_reading()
        return True

    def _route(self, head: memoryview) -> tuple[Route, bool, bytes]:
        """The webhook route of a plain request head; raises `_NotPlain` for any other."""
        self._parser.feed_data(head)
        parsed = self._head
        if not parsed.complete:
            raise _NotPlain
        parser = self._parser
        if parser.get_method() != b"POST" or parser.get_http_version() != "1.1":
            raise _NotPlain
        headers = parsed.headers
        length = headers.get(b"content-length")
        if (
            length is None
            or not length.isdigit()
            or int(length) > self._server.max_body
            or b"transfer-encoding" in headers
            or b"expect" in headers
            or b"upgrade" in headers
        ):
            raise _NotPlain
        path = parsed.url.split(b"?", 1)[0]
        app = self._server.app
        if path == _WHATSAPP:
            sig = _text(headers.get(_SIGNATURE))

            def route(body: bytes) -> Started:
                return start_whatsapp(app, sig, body)

        elif path.startswith(_TELEGRAM) and _plain_segment(bot := path[len(_TELEGRAM) :]):
            secret = _text(headers.get(_SECRET))
            bot_id = bot.decode("ascii")

            def route(body: bytes) -> Started:
                return start_telegram(app, bot_id, secret, body)

        else:
            raise _NotPlain
        return route, parser.should_keep_alive(), parsed.url

    def _handoff(self) -> None:
        """The connection becomes aiohttp's, from the first byte of the current request."""
        transport = self._transport
        if transport is None:
            return
        self._server.connections.discard(self)
        self._transport = None
        handler = self._server.inner()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._buf:
            handler.data_received(bytes(self._buf))
        self._buf.clear()
        if self._paused:
            transport.resume_reading()

    def _log(
        self,
        target: bytes,
        status: int,
        size: int,
        started: float,
        transport: asyncio.Transport | None,
    ) -> None:
        """One access-log line, in aiohttp's default format (`server.access_log`)."""
        assert self._server.access_log is not None
        peer: Any = transport.get_extra_info("peername") if transport is not None else None
        remote = peer[0] if isinstance(peer, tuple) else "-"
        when = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(started))
        line = target.decode("latin-1")
        self._server.access_log.info(
            '%s %s "POST %s HTTP/1.1" %d %d "-" "-"', remote, when, line, status, size
        )


def _text(value: bytes | None) -> str | None:
    """A header value as aiohttp gives it to a handler."""
    return value.decode("utf-8", "surrogateescape") if value is not None else None


def _plain_segment(segment: bytes) -> bool:
    """A bot id aiohttp's `{bot_id}` would match unchanged: one segment, nothing escaped."""
    return bool(segment) and b"/" not in segment and b"%" not in segment and segment.isascii()


class _Answers:
    """The bytes of each answer, built once per second (the Date header changes)."""

    def __init__(self) -> None:
        self._second = -1
        self._cache: dict[tuple[int, str, bool], bytes] = {}

    def get(self, status: int, text: str, close: bool) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._cache.clear()
        key = (status, text, close)
        answer = self._cache.get(key)
        if answer is None:
            answer = self._cache[key] = self._build(status, text.encode(), close, now)
        return answer

    @staticmethod
    def _build(status: int, body: bytes, close: bool, now: int) -> bytes:
        date = email.utils.formatdate(now, usegmt=True).encode()
        return b"".join(
            (
                b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown")),
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(body),
                b"Date: " + date + b"\r\n",
                b"Connection: close\r\n\r\n" if close else b"\r\n",
                body,
            )
        )


_answers = _Answers()
"""Shared by every connection of the process: the handlers' answers are a few fixed texts."""


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections start on the fast path (`server.fast_path`)."""

    def __init__(
        self, app: web.Application, *, access_log: logging.Logger | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, access_log=access_log, **kwargs)
        self._access_log = access_log

    async def _make_server(self) -> web.Server:
        inner = await super()._make_server()
        if not self.app[STATE].settings.server.fast_path:
            return inner
        return cast(web.Server, FastServer(inner, self.app, self._access_log))
