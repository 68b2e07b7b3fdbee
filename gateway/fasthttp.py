"""The fast path: the webhook POST routes answered without aiohttp's per-request machinery.

aiohttp costs about 40 µs of CPU per request here, as much as everything else the gateway does
for a webhook (benchmarks/README.md). Webhook deliveries are the one request that matters for
throughput, and they are plain: `POST` to a registered channel's webhook path
(`adapters.CHANNELS`, `Channel.webhook`: `/webhooks/whatsapp`, `/webhooks/telegram/{key}`),
HTTP/1.1, a Content-Length body, keep-alive. `FastProtocol` serves exactly those on a
connection itself: llhttp (httptools) checks the request head, the path is matched by one
dict lookup (exact paths, then the prefix of keyed ones), the body is sliced from the
buffer, and the process's `Inbound` (gateway/receive.py) refuses, verifies, parses and
publishes it, as for the aiohttp route. The usual webhook needs one script call, sent while
the body is handled; a callback on the `Reply`'s future writes the answer, so no task or
coroutine is made per request (about 6 µs of CPU a webhook, benchmarks/README.md).

Every other request is aiohttp's, on the same port and connection: the first one that is not a
plain webhook POST (any other path or method, HTTP/1.0, chunked, `Expect`, `Upgrade`, a body
over `server.max_body_bytes`, a head llhttp refuses, or a head that is not CRLF-framed) hands
the connection to aiohttp's own protocol with every unparsed byte, starting at that request's
first byte, and the connection stays aiohttp's. So 404, 405, 413, 400, HEAD, the verification
GET, health, readiness and metrics behave exactly as aiohttp makes them. A connection
serves one request at a time, in order, as aiohttp does; the handoff waits until the request
in flight is answered.

Deadlines and limits (`server.*`) hold for every connection, aiohttp's too: the whole head
within `head_timeout_seconds` (from connecting, or from its first byte on a kept-alive
connection), the body within `body_timeout_seconds` after it, idle keep-alive for
`keepalive_timeout_seconds`; at most `max_connections` connections; at most
`max_buffered_bytes` of unfinished bodies over all fast-path connections. A connection that
aiohttp serves stays behind a `_Relay`, which passes every byte on and runs llhttp over them
only to see where heads and bodies end. A webhook whose head already fails (no signature, an
unknown bot, a wrong Telegram secret) is answered before its body is read, and the body is
discarded as it comes, never buffered (as aiohttp's lingering read does). Deadlines are
checked by one sweep a second over all connections, not a timer per request.

`GatewayRunner` is `web.AppRunner` with this protocol in front; `server.fast_path: false`
starts every connection as aiohttp's (still behind the relay's deadlines).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import socket
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

import httptools
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from adapters import CHANNELS, Answer
from adapters.channel import QUERY
from gateway.accesslog import RedactedAccessLogger, redact_target
from gateway.receive import Reply, Webhook
from gateway.state import INBOUND, STATE

log = logging.getLogger("gateway.http")

MAX_HEAD_BYTES = 8190
"""aiohttp's max_line_size and max_field_size (web_protocol.RequestHandler defaults): a head
longer than this (which a line over them makes) goes to aiohttp, which refuses it with its
own 400, or serves it if no line is over. Webhook heads are well under 1 KiB."""
MAX_HEADERS = 128
"""aiohttp's max_headers: a head with more headers goes to aiohttp (400)."""
PAUSE_BYTES = 256 * 1024
"""While a request is in flight, reading pauses once this much of the next is buffered."""
SWEEP_SECONDS = 1.0
"""How often connections are checked against their deadline (so a deadline is kept to
within this much)."""
SWEEP_BATCH = 64
"""Expired connections closed per event-loop iteration (see FastServer._expire)."""

_IDLE, _HEAD, _BODY = 0, 1, 2
"""What a connection that is not busy waits for: its next request, the rest of a head, the
rest of a body."""

_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"expect", b"upgrade"})
"""The headers the fast path reads to decide whether a request is plain; the channels'
own (`Webhook.headers`) join them per server."""
_REASONS = {200: b"OK", 401: b"Unauthorized", 404: b"Not Found", 500: b"Internal Server Error",
            503: b"Service Unavailable"}  # fmt: skip
_OWS = b" \t"
"""Whitespace around a header value, which is not part of it (RFC 9110 §5.5): aiohttp strips
it, so the fast path does too and both hand the handlers the same value."""


_INTERNAL_ERROR: Answer = (500, "Internal Server Error")
"""The answer when handling a request raised (the exception is logged)."""
_OVERLOADED: Answer = (503, "overloaded")
"""The answer when unfinished bodies fill `server.max_buffered_bytes`."""


class _Hook(NamedTuple):
    """One channel's webhook as the fast path matches it."""

    channel: str
    headers: tuple[tuple[bytes, str], ...]
    """Its `Webhook.headers`: (as llhttp gives the name, as the receiver reads it)."""
    query: bool
    """It reads the raw query string (`adapters.channel.QUERY`)."""


class _Route(NamedTuple):
    """A webhook request whose head passed: all of its `Webhook` but the body."""

    channel: str
    key: str | None
    headers: dict[str, str]


class _Head:
    """llhttp's callbacks for one request head: the URL and the headers the fast path reads."""

    __slots__ = ("complete", "headers", "url", "wanted")

    def __init__(self, wanted: frozenset[bytes]) -> None:
        self.wanted = wanted
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in self.wanted:
            if name in self.headers:  # a second Content-Length, signature...: aiohttp's
                self.complete = False
                raise _NotPlain
            self.headers[name] = value.strip(_OWS)

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
    close idle connections (`pre_shutdown`) and to finish the rest (`shutdown`). It also
    holds what the connections share: their limits, and the bytes they buffer."""

    def __init__(
        self, inner: web.Server, app: web.Application, access_log: logging.Logger | None
    ) -> None:
        self.inner = inner
        self.app = app
        self.state = app[STATE]
        self.inbound = app[INBOUND]  # made at startup, which aiohttp runs before this
        srv = self.state.settings.server
        self.fast = srv.fast_path
        self.max_body = srv.max_body_bytes
        self.head_timeout = srv.head_timeout_seconds
        self.body_timeout = srv.body_timeout_seconds
        self.keepalive = srv.keepalive_timeout_seconds
        self.max_connections = srv.max_connections
        self.max_buffered = srv.max_buffered_bytes
        self.exact: dict[bytes, _Hook] = {}
        """Webhook path → its channel, for channels whose path names no account."""
        self.keyed: dict[bytes, _Hook] = {}
        """The path without its last segment → its channel, for keyed paths."""
        wanted = set(_FRAMING)
        for channel in CHANNELS.values():  # read once: channels register at import
            hook = channel.webhook
            table = self.keyed if hook.keyed else self.exact
            real = tuple(name for name in hook.headers if name != QUERY)
            table[hook.path.encode()] = _Hook(channel.name, _names(real), QUERY in hook.headers)
            wanted.update(name.encode() for name in real)
        self.wanted = frozenset(wanted)
        self.access_log = access_log
        self.connections: set[FastProtocol] = set()
        self.relays: set[_Relay] = set()
        """Connections aiohttp serves (after a handoff, or all with `fast_path: false`)."""
        self.buffered = 0
        """Bytes in the buffers of all `connections`, and of the incomplete heads of
        `relays`."""
        self.orphans: set[asyncio.Future[Any]] = set()
        """Requests still in flight whose client has gone: shutdown waits for them too."""
        self.closing = False
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> FastProtocol:
        if self._sweeper is None and not self.closing:
            self._sweep()
        return FastProtocol(self)

    def full(self) -> bool:
        return len(self.connections) + len(self.relays) >= self.max_connections

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
        """Close connections past their deadline; runs every SWEEP_SECONDS. One pass over
        a few thousand connections a second costs less than a timer set per request."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired: list[FastProtocol | _Relay] = [
            conn for conn in self.connections if not conn.busy and now > conn.deadline
        ]
        expired.extend(relay for relay in self.relays if now > relay.deadline)
        self._expire(expired)
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def _expire(self, expired: list[FastProtocol | _Relay]) -> None:
        """Close SWEEP_BATCH of them now and the rest in later loop iterations: thousands
        of slow connections opened together also expire together, and closing them all at
        once would hold up the live requests for tens of milliseconds."""
        for conn in expired[:SWEEP_BATCH]:
            conn.expire()
        if len(expired) > SWEEP_BATCH:
            asyncio.get_running_loop().call_soon(self._expire, expired[SWEEP_BATCH:])


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
        "_phase",
        "_request",
        "_server",
        "_skip",
        "_transport",
        "busy",
        "deadline",
        "inflight",
    )

    def __init__(self, server: FastServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._head = _Head(server.wanted)
        self._parser = httptools.HttpRequestParser(self._head)
        self._need = 0
        """Bytes of the buffer the head in `_pending` and its body take (0: no head yet)."""
        self._body_at = 0
        """Where that body starts in the buffer."""
        self._pending: tuple[_Route, bool, bytes] | None = None
        self._skip = 0
        """Bytes still to discard of a body refused from its head."""
        self._paused = False
        self._request: tuple[Reply, bool, bytes, float] | None = None
        """The request in flight: its `Reply`, keep-alive, target, start time."""
        self.busy = False
        self.inflight: asyncio.Future[Any] | None = None
        """What the request in flight waits for: its `Reply`'s future."""
        self._phase = _HEAD
        self.deadline = self._loop.time() + server.head_timeout
        """Loop time by which what `_phase` waits for must have come (checked by the sweep)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        if server.full():
            # Closed before a byte is read: a flood of idle connections cannot take more
            # file descriptors and buffers than the limit.
            _connection_cap.note()
            cast(asyncio.Transport, transport).abort()
            return
        self._transport = cast(asyncio.Transport, transport)
        server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # answers go out at once, as aiohttp sets it
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not server.fast:
            _handoff(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._server.buffered -= len(self._buf)
        self._buf.clear()
        self._transport = None
        # A request in flight is finished anyway (its events are published; aiohttp does not
        # cancel handlers either): only its answer has nowhere to go.
        if self.inflight is not None:
            orphans = self._server.orphans
            orphans.add(self.inflight)
            self.inflight.add_done_callback(orphans.discard)

    def data_received(self, data: bytes) -> None:
        self._server.buffered += len(data)
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

    def expire(self) -> None:
        """The deadline passed: an idle connection is closed, a half-sent request cut."""
        if self.busy or self._loop.time() <= self.deadline:  # moved on since the sweep
            return
        if self._phase == _IDLE:
            self.close()
            return
        log.debug("closing a connection whose request %s did not arrive in time",
                  "head" if self._phase == _HEAD else "body")  # fmt: skip
        self.abort()

    def _next(self) -> None:
        """Serve the buffered requests, in order, while each is answered at once; stop at
        one in flight, at an incomplete one, or by handing the connection to aiohttp."""
        while not self.busy and self._transport is not None:
            request = self._take()
            if request is None:
                return
            self.busy = True
            route, payload, keep_alive, target = request
            if not isinstance(route, _Route):  # refused from its head: its answer
                started_at = time.time() if self._server.access_log is not None else 0.0
                if not self._answer(route, keep_alive, target, started_at):
                    return
            elif not self._start(route, payload, keep_alive, target):
                return

    def _take(self) -> tuple[_Route | Answer, bytes, bool, bytes] | None:
        """The next complete webhook request in the buffer, taken out of it, or one refused
        from its head alone (its answer, its body to be discarded); None if there is none
        yet, or if the connection went to aiohttp."""
        buf = self._buf
        if self._skip and not _discard(self):
            return None
        if not self._need:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES or b"\n\n" in buf:
                    _handoff(self)
                elif buf:
                    _wait(self, _HEAD)
                return None
            # Over aiohttp's limits (checked here, once per head, not per header): a head
            # that came whole in one read was not caught by the length check above.
            # buf[:end] holds one line break per header.
            if end > MAX_HEAD_BYTES or buf.count(b"\n", 0, end) > MAX_HEADERS:
                _handoff(self)
                return None
            try:
                with memoryview(buf) as view, view[: end + 4] as head:
                    route, keep_alive, target = _route(self._server, self._parser, self._head, head)
            except (_NotPlain, httptools.HttpParserError, httptools.HttpParserUpgrade):
                _handoff(self)  # Upgrade and CONNECT heads raise HttpParserUpgrade
                return None
            length = int(self._head.headers[b"content-length"])
            if not isinstance(route, _Route):
                return _refuse(self, route, keep_alive, target, end + 4, length)
            self._pending = route, keep_alive, target
            self._body_at = end + 4
            self._need = self._body_at + length
        if len(buf) < self._need:
            if self._server.buffered > self._server.max_buffered:
                _shed(self)
            else:
                _wait(self, _BODY)
            return None
        assert self._pending is not None
        route, keep_alive, target = self._pending
        with memoryview(buf) as view, view[self._body_at : self._need] as body:
            # The parser reads past the body too, so it is ready for the next head.
            self._parser.feed_data(body)
            payload = body.tobytes()
        del buf[: self._need]
        self._server.buffered -= self._need
        self._need = 0
        self._pending = None
        self._head.reset()
        return route, payload, keep_alive, target

    def _start(self, route: _Route, body: bytes, keep_alive: bool, target: bytes) -> bool:
        """Begin one request; True when it was answered at once and the connection goes on.

        Otherwise a callback on its `Reply`'s future answers it: for the usual webhook that
        is its one script call, so no task is made per request."""
        started_at = time.time() if self._server.access_log is not None else 0.0
        try:
            reply = self._server.inbound.receive(Webhook(route[0], route[1], route[2], body))
        except Exception:
            log.exception("Error handling request")
            return self._answer(_INTERNAL_ERROR, keep_alive, target, started_at)
        if reply.future is None:
            answer = reply.answer()
            assert answer is not None  # nothing to wait for: answered
            return self._answer(answer, keep_alive, target, started_at)
        self._request = (reply, keep_alive, target, started_at)
        self._wait_on(reply)
        return False

    def _wait_on(self, reply: Reply) -> None:
        future = reply.future
        assert future is not None
        self.inflight = future
        future.add_done_callback(self._settled)

    def _settled(self, _: asyncio.Future[Any]) -> None:
        """What the request in flight waited for is done: answer it (or, when the journal
        took it over, wait for the journal)."""
        assert self._request is not None
        reply, keep_alive, target, started_at = self._request
        try:
            answer = reply.answer()
        except Exception:
            log.exception("Error handling request")
            answer = _INTERNAL_ERROR
        if answer is None:
            self._wait_on(reply)
            return
        self._request = None
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
        self._phase = _IDLE
        self.deadline = self._loop.time() + self._server.keepalive
        if self._server.access_log is not None:
            _log_access(self._server.access_log, target, status, len(text), started_at, transport)
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


# The parts of a fast-path connection's work kept out of `FastProtocol`: head parsing and
# routing (`_route`, taking the server's tables), the slower turns of a request (waiting for
# more of it, discarding a refused or shed body, the handoff to aiohttp) and the access log.


def _wait(conn: FastProtocol, phase: int) -> None:
    """The connection waits for more of a head or body: its deadline is set when it
    starts waiting for it (only here, off the path of a request that came whole)."""
    if conn._phase != phase:
        conn._phase = phase
        server = conn._server
        timeout = server.head_timeout if phase == _HEAD else server.body_timeout
        conn.deadline = conn._loop.time() + timeout


def _refuse(
    conn: FastProtocol, answer: Answer, keep_alive: bool, target: bytes, head: int, length: int
) -> tuple[Answer, bytes, bool, bytes]:
    """A request refused from its head: the head leaves the buffer, its body will be
    discarded as it arrives, and llhttp starts again at the next head."""
    del conn._buf[:head]
    conn._server.buffered -= head
    conn._skip = length
    conn._head.reset()
    conn._parser = httptools.HttpRequestParser(conn._head)
    return answer, b"", keep_alive, target


def _discard(conn: FastProtocol) -> bool:
    """Drop what has come of a refused body; True once all of it has."""
    buf = conn._buf
    dropped = min(conn._skip, len(buf))
    del buf[:dropped]
    conn._server.buffered -= dropped
    conn._skip -= dropped
    if conn._skip:
        _wait(conn, _BODY)
        return False
    return True


def _shed(conn: FastProtocol) -> None:
    """Unfinished bodies fill `max_buffered_bytes`: the request of this connection,
    still sending its body, is answered 503 with Retry-After, its buffer freed and the
    rest of its body discarded as it comes. A webhook that arrives whole is served
    before it is ever held against the limit, so honest small ones keep flowing while
    slow or huge bodies are refused (and retried later by the platform)."""
    assert conn._pending is not None
    _, keep_alive, target = conn._pending
    _overloaded.note()
    buf = conn._buf
    conn._skip = conn._need - len(buf)
    conn._server.buffered -= len(buf)
    buf.clear()
    conn._need = 0
    conn._pending = None
    conn._head.reset()
    conn._parser = httptools.HttpRequestParser(conn._head)
    conn.busy = True
    started_at = time.time() if conn._server.access_log is not None else 0.0
    conn._answer(_OVERLOADED, keep_alive, target, started_at)


def _route(
    server: FastServer, parser: httptools.HttpRequestParser, parsed: _Head, head: memoryview
) -> tuple[_Route | Answer, bool, bytes]:
    """The webhook route of a plain request head, or its answer if the head alone
    refuses it (the same check the aiohttp routes make); raises `_NotPlain` for any
    other request."""
    parser.feed_data(head)
    if not parsed.complete:
        raise _NotPlain
    if parser.get_method() != b"POST" or parser.get_http_version() != "1.1":
        raise _NotPlain
    headers = parsed.headers
    length = headers.get(b"content-length")
    if (
        length is None
        or not length.isdigit()
        or int(length) > server.max_body
        or b"transfer-encoding" in headers
        or b"expect" in headers
        or b"upgrade" in headers
    ):
        raise _NotPlain
    path = parsed.url.split(b"?", 1)[0]
    key: str | None = None
    hook = server.exact.get(path)
    if hook is None:  # a keyed path: one more segment, which aiohttp's {key} matches
        prefix, _, segment = path.rpartition(b"/")
        hook = server.keyed.get(prefix)
        if hook is None or not _plain_segment(segment):
            raise _NotPlain
        key = segment.decode("ascii")
    channel = hook.channel
    given: dict[str, str] = {}
    for raw, name in hook.headers:  # a loop: a comprehension costs a call more
        value = headers.get(raw)
        if value is not None:
            given[name] = _text(value)
    if hook.query and (query := parsed.url.partition(b"?")[2]):
        given[QUERY] = query.decode("latin-1")
    refusal = server.inbound.refused(channel, key, given)
    route = _Route(channel, key, given) if refusal is None else refusal
    return route, parser.should_keep_alive(), parsed.url


def _handoff(conn: FastProtocol) -> None:
    """The connection becomes aiohttp's, from the first byte of the current request,
    behind a `_Relay` that keeps the deadline of a head already begun."""
    transport = conn._transport
    if transport is None:
        return
    server = conn._server
    server.connections.discard(conn)
    conn._transport = None
    handler = server.inner()
    begun = conn.deadline if conn._phase != _IDLE else math.inf
    relay = _Relay(server, handler, transport, begun)
    server.relays.add(relay)
    transport.set_protocol(relay)
    handler.connection_made(transport)
    server.buffered -= len(conn._buf)
    if conn._buf:
        relay.data_received(bytes(conn._buf))
    conn._buf.clear()
    if conn._paused:
        transport.resume_reading()


def _log_access(
    access_log: logging.Logger,
    target: bytes,
    status: int,
    size: int,
    started: float,
    transport: asyncio.Transport | None,
) -> None:
    """One access-log line, in aiohttp's default format (`server.access_log`)."""
    peer: Any = transport.get_extra_info("peername") if transport is not None else None
    remote = peer[0] if isinstance(peer, tuple) else "-"
    when = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(started))
    line = redact_target(target.decode("latin-1"))  # no query values in logs
    access_log.info('%s %s "POST %s HTTP/1.1" %d %d "-" "-"', remote, when, line, status, size)


class _Relay(asyncio.Protocol):
    """A connection aiohttp serves: every byte goes to aiohttp's handler as it comes, and
    through llhttp too, only to see where each request's head and body end, so that the
    head and body deadlines hold here as on the fast path (aiohttp has none: its
    keep-alive timer only closes a connection idle between requests). The bytes of a head
    still incomplete count against `max_buffered_bytes` too: aiohttp keeps a head's lines
    until it is whole, up to about 1 MiB within its limits (128 headers of 8190 bytes)."""

    __slots__ = (
        "_handler",
        "_held",
        "_in_head",
        "_loop",
        "_parser",
        "_server",
        "_transport",
        "deadline",
    )

    def __init__(
        self,
        server: FastServer,
        handler: asyncio.Protocol,
        transport: asyncio.Transport,
        deadline: float,
    ) -> None:
        self._server = server
        self._handler = handler
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._in_head = False
        self._held = 0
        """Bytes of the incomplete head counted in `server.buffered`."""
        self.deadline = deadline
        """Loop time by which the request begun must be whole; inf between requests, where
        aiohttp's keepalive_timeout closes an idle connection."""

    def on_message_begin(self) -> None:
        self._in_head = True
        if self.deadline == math.inf:  # else: the head the fast path saw begin
            self.deadline = self._loop.time() + self._server.head_timeout

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._release()
        self.deadline = self._loop.time() + self._server.body_timeout

    def on_message_complete(self) -> None:
        self.deadline = math.inf

    def data_received(self, data: bytes) -> None:
        if self._parser is not None:
            try:
                self._parser.feed_data(data)
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                # aiohttp answers this head (400, or 404 for an upgrade: no route takes
                # one) and decides about the connection; whatever it keeps gets one more
                # head's time, since the bytes that follow are no longer framed by llhttp.
                self._parser = None
                self._in_head = False
                self._release()
                if self.deadline == math.inf:
                    self.deadline = self._loop.time() + self._server.head_timeout
            if self._in_head and not self._hold(len(data)):
                return
        self._handler.data_received(data)

    def _hold(self, size: int) -> bool:
        """Count `size` more bytes of an incomplete head; False when that passes
        `max_buffered_bytes`: then the connection is cut (no answer: aiohttp has not seen
        a whole head to answer)."""
        server = self._server
        self._held += size
        server.buffered += size
        if server.buffered <= server.max_buffered:
            return True
        _overloaded.note("an incomplete head")
        self._transport.abort()
        return False

    def _release(self) -> None:
        self._server.buffered -= self._held
        self._held = 0

    def eof_received(self) -> bool | None:
        return self._handler.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.relays.discard(self)
        self._release()
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def expire(self) -> None:
        if self._loop.time() <= self.deadline:  # moved on since the sweep
            return
        log.debug("closing an aiohttp connection whose request did not arrive in time")
        self._transport.abort()


class _Throttled:
    """A WARNING for something that may come thousands of times a second (malformed
    requests, connections over the cap): one line per `every` seconds, with the count."""

    def __init__(self, text: str, every: float = 10.0) -> None:
        self._text = text
        self._every = every
        self._count = 0
        self._next = 0.0

    def note(self, detail: str = "") -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self._every
            suffix = f" (last: {detail})" if detail else ""
            log.warning("%s%s: %d since the previous such line", self._text, suffix,
                        self._count)  # fmt: skip
            self._count = 0


_connection_cap = _Throttled("closed new connections over server.max_connections")
_overloaded = _Throttled("refused requests over server.max_buffered_bytes")
_malformed = _Throttled("refused malformed requests (aiohttp answered 4xx)")


class _ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's request-handler logger ("aiohttp.server"), except that a malformed
    request (aiohttp's HttpProcessingError: a bad head, a line or header over its limits)
    is counted into one throttled line: no traceback, and no bytes of the request, which
    may hold a secret. Errors of the handlers themselves keep their traceback."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(
        self,
        msg: object,
        *args: object,
        exc_info: Any = True,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        if isinstance(exc_info, HttpProcessingError):
            _malformed.note(type(exc_info).__name__)
            return
        self.logger.exception(
            msg, *args, exc_info=exc_info, stack_info=stack_info, stacklevel=stacklevel,
            extra=extra,
        )  # fmt: skip


def _text(value: bytes) -> str:
    """A header value as aiohttp gives it to a handler."""
    return value.decode("utf-8", "surrogateescape")


def _names(headers: tuple[str, ...]) -> tuple[tuple[bytes, str], ...]:
    return tuple((name.encode(), name) for name in headers)


def _plain_segment(segment: bytes) -> bool:
    """An account key aiohttp's `{key}` would match unchanged: one segment, nothing escaped."""
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
                b"Content-Type: %s; charset=utf-8\r\nContent-Length: %d\r\n"
                % (b"text/xml" if body.startswith(b"<?xml") else b"text/plain", len(body)),
                b"Date: " + date + b"\r\n",
                b"Retry-After: 1\r\n" if status == 503 else b"",
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
        kwargs.setdefault("access_log_class", RedactedAccessLogger)  # no query values in logs
        # aiohttp's default keep-alive (3630 s) would let idle connections pile up.
        kwargs.setdefault("keepalive_timeout", app[STATE].settings.server.keepalive_timeout_seconds)
        kwargs.setdefault("logger", _ServerLog())
        super().__init__(app, access_log=access_log, **kwargs)
        self._access_log = access_log

    async def _make_server(self) -> web.Server:
        # In front even with `fast_path: false`: then every connection is relayed to
        # aiohttp from its first byte, under the same deadlines and limits.
        inner = await super()._make_server()
        inner.request_factory = _with_target(inner.request_factory)
        return cast(web.Server, FastServer(inner, self.app, self._access_log))


def _with_target(factory: Any) -> Any:
    """aiohttp's request factory, for a request line without a target too. aiohttp's C
    parser (llhttp) reads `CONNECT` followed by spaces and nothing else as an HTTP/0.9
    request and hands on a message with no URL; aiohttp's request then raised
    AttributeError in the connection's task: a traceback in the log ("Task exception was
    never retrieved") and a client left without an answer (found by benchmarks/fuzz.py).
    Such a message gets the target `/`, which the app answers as any request it does not
    serve (4xx)."""

    def make(message: Any, *args: Any, **kwargs: Any) -> web.BaseRequest:
        if message.url is None:
            message = message._replace(url=_ROOT, path="/")
        request: web.BaseRequest = factory(message, *args, **kwargs)
        return request

    return make


_ROOT = URL("/")
