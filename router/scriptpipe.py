"""A lean, pipelining client for the gateway's hot Lua script calls (single Redis node).

redis-py spends 100-200 µs of CPU per awaited command (pool checkout, per-argument packing,
retry and timeout wrappers), several times what Redis spends running the script. The inbound
hot path makes one EVALSHA per webhook, so that client cost was most of a webhook's price.
`ScriptPipe` keeps what the hot path needs and nothing else:

- one long-lived connection (Redis runs commands one at a time anyway), replies matched to
  callers in order (RESP answers in order);
- **micro-batching**: every call made in one event-loop iteration is packed into one buffer
  and written with one `write()`; under load, dozens of concurrent webhooks share one write
  and Redis reads them in one `read()`. Each caller still awaits its own reply, so a 200 is
  never answered before its own events are in Redis. No added wait: the buffer goes out at
  the end of the current iteration, so a lone request is not delayed;
- the hiredis reader, as redis-py uses;
- the same errors as redis-py (`redis.exceptions.ConnectionError`, `TimeoutError`,
  `ResponseError`), so callers keep one `except (RedisError, OSError)`.

Durable answers (`wait_aof_ms`, the config's `redis.wait_aof`): after each batch the pipe
writes `WAITAOF 1 0 <ms>` on the same connection and holds the batch's replies until it
answers: WAITAOF waits until every earlier write of this connection is fsynced to the
append-only file, so a caller sees its script's reply only once it is on disk. One fsync
wait is shared by the whole batch. Not fsynced within `wait_aof_ms` (or WAITAOF refused):
every held call fails with `WaitAofError` (a `redis.exceptions.TimeoutError`), so a webhook
is answered 503 and retried by its platform, never acknowledged without its fsync.

Timeouts: when calls are out and Redis has sent nothing for `timeout_s` (counted from its
last bytes, or from the write that found nothing else out), every call waiting on the
connection fails (their replies can no longer be matched) and the connection is dropped; the
next call reconnects. Only Redis's silence counts, not the gateway's own stalls (a long
callback, or a machine that gives the process no CPU), during which replies may come and
wait unread, or a large request wait half-written: the clock starts at the write, not when
a call was queued; a watchdog that runs late (this process stalled) starts it again from
then, once per silence; and it fails the calls only on a second look, after the event loop
has read its sockets. A Redis that stays silent fails them within `timeout_s` (twice that
when the process stalled meanwhile). uvloop runs an expired timer before it reads the
replies that came during a stall: calls used to fail (503) with their answers in hand.

Scripts are loaded on connect, and a `NOSCRIPT` answer (a `SCRIPT FLUSH`, a restarted
server) is retried once with `EVAL`.

Used for a single node over TCP or a Unix socket; a Redis Cluster or TLS goes through
redis-py's own clients (see gateway/app.py).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import hiredis
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int | float


class ScriptHost(Protocol):
    """What registers Lua scripts: redis-py's clients, or the lean `ScriptPipe`."""

    def register_script(self, script: str) -> Callable[..., Awaitable[Any]]: ...


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings (numbers as redis-py writes them)."""
    parts = [b"*%d\r\n" % len(args)]
    _pack_into(parts, args)
    return b"".join(parts)


_HEADERS = tuple(b"$%d\r\n" % n for n in range(2048))
"""`$<len>\r\n` for the lengths most arguments have, made once."""


def _pack_into(parts: list[bytes], args: Sequence[Arg]) -> None:
    """Append the bulk strings of `args` to `parts` (header, data and CRLF as three items:
    cheaper than formatting each into one, and `b"".join` copies the data once anyway)."""
    append = parts.append
    headers = _HEADERS
    for arg in args:
        data: bytes
        if type(arg) is bytes:
            data = arg
        elif type(arg) is str:
            data = arg.encode()
        elif type(arg) is int:
            data = b"%d" % arg
        else:
            data = _encode(arg)
        size = len(data)
        append(headers[size] if size < 2048 else b"$%d\r\n" % size)
        append(data)
        append(b"\r\n")


def _encode(arg: Arg) -> bytes:
    if isinstance(arg, bool):
        raise TypeError("booleans are ambiguous in Redis commands; pass 0 or 1")
    if isinstance(arg, bytes):
        return bytes(arg)
    if isinstance(arg, str):
        return str(arg).encode()
    if isinstance(arg, int):
        return b"%d" % arg
    return repr(float(arg)).encode()


def supports(url: str) -> bool:
    """Whether `ScriptPipe` can talk to this URL (plain TCP or a Unix socket, no TLS)."""
    return url.startswith(("redis://", "unix://"))


class WaitAofError(RedisTimeoutError):
    """WAITAOF did not confirm the fsync of a call's writes (timed out, or refused)."""


class _WaitAof:
    """Marks a batch's `WAITAOF` in the waiting queue (where a call's script would be)."""


_WAIT_AOF = _WaitAof()

_RECHECK_S = 0.001
"""The watchdog's second look at a silent Redis comes this long after the first: a timer
due later than now, so the event loop polls its sockets in between (uvloop runs the timers
that are due at once, before it polls)."""

_STALL_S = 0.1
"""A watchdog that runs this much later than due finds that this process had stalled."""

_Waiting = tuple["asyncio.Future[Any]", bytes, "PipeScript | _WaitAof | None"]
"""A command written or about to be: its caller's future, the command and, for an EVALSHA,
its script (to retry a NOSCRIPT answer as EVAL), or `_WAIT_AOF`."""


class _Connection(asyncio.Protocol):
    """One connection: writes what the pipe batched, hands replies out in order."""

    def __init__(
        self, timeout_s: float, on_write: Callable[[], None], wait_aof_ms: int | None = None
    ) -> None:
        self._timeout_s = timeout_s
        self._on_write = on_write
        self._wait_aof = None if wait_aof_ms is None else pack(("WAITAOF", 1, 0, wait_aof_ms))
        self._wait_aof_ms = wait_aof_ms
        self._held: list[tuple[asyncio.Future[Any], Any]] = []
        """Replies received, not yet handed out: their batch's WAITAOF has not answered."""
        self._aof_waiting = False
        """A WAITAOF is out: later calls wait in the buffer for it (group commit, see _flush)."""
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._buffer: list[bytes] = []
        self._flush_due = False
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self._due = 0.0
        """When the watchdog is due (monotonic): a later run means this process stalled."""
        self._heard = 0.0
        """When Redis last sent bytes, or a write went out with nothing else out (monotonic)."""
        self._excused = 0.0
        """When this process resumed from its own stall, in the current silence of Redis:
        the silence counts from then (once per silence; monotonic)."""
        self._looked = False
        """The watchdog found Redis silent too long and looks once more, after the loop has
        read its sockets, before it fails the calls."""
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are transports.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._heard = time.monotonic()
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        try:
            while (reply := reader.gets()) is not False:
                future, command, script = waiting.popleft()
                if script is _WAIT_AOF:
                    self._release(reply)
                    continue
                if future.done():
                    continue
                outcome: Any = reply
                if isinstance(reply, hiredis.ReplyError):
                    message = str(reply)
                    if isinstance(script, PipeScript) and message.startswith("NOSCRIPT"):
                        self._queue(future, script.as_eval(command), None)
                        continue
                    outcome = _reply_error(message)
                if self._wait_aof is not None:
                    self._held.append((future, outcome))
                else:
                    _settle(future, outcome)
        except (hiredis.ProtocolError, IndexError) as exc:
            self._fail(RedisConnectionError(f"Redis protocol error: {exc!r}"))

    def _release(self, reply: Any) -> None:
        """A batch's WAITAOF answered: hand out its held replies if the fsync is confirmed
        (`[numlocal, numreplicas]` with numlocal 1), else fail them all; then send what
        queued up meanwhile, as the next batch."""
        held, self._held = self._held, []
        self._aof_waiting = False
        if self._buffer:
            self._flush_soon()
        if isinstance(reply, list) and reply and reply[0] >= 1:
            for future, outcome in held:
                if not future.done():
                    _settle(future, outcome)
            return
        why = (
            f"refused: {reply}"
            if isinstance(reply, hiredis.ReplyError)
            else f"the append-only file was not fsynced within {self._wait_aof_ms} ms"
        )
        error = WaitAofError(f"WAITAOF {why}")
        for future, _ in held:
            if not future.done():
                future.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    # used by ScriptPipe
    def send(self, command: bytes, script: PipeScript | None = None) -> asyncio.Future[Any]:
        """Queue `command` for this iteration's write; its reply comes in the future. With
        `script` (an EVALSHA of it), a NOSCRIPT answer is retried once as EVAL, here on the
        connection: the caller sees the script's reply, not the flush or restart."""
        if self.closed:
            raise RedisConnectionError("connection to Redis is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue(future, command, script)
        return future

    def _queue(
        self, future: asyncio.Future[Any], command: bytes, script: PipeScript | None
    ) -> None:
        self._flush_soon()
        self._buffer.append(command)
        self._waiting.append((future, command, script))
        if self._watchdog is None:
            self._arm(self._timeout_s)

    def _flush_soon(self) -> None:
        """Write what this iteration queued once the iteration's callbacks have run."""
        if not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self._transport is None or self.closed or not self._buffer:
            return
        if self._wait_aof is not None:
            # Redis would not run calls sent behind a WAITAOF until it answers (the client is
            # blocked), so they wait here instead, and then share the next WAITAOF: one
            # fsync wait per batch, the batch as large as what arrived during the last wait.
            if self._aof_waiting:
                return
            self._aof_waiting = True
            self._buffer.append(self._wait_aof)
            future: asyncio.Future[Any] = self._loop.create_future()
            self._waiting.append((future, self._wait_aof, _WAIT_AOF))
        if len(self._waiting) == len(self._buffer):  # nothing was out: Redis's clock starts
            self._heard = time.monotonic()
        data = b"".join(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer.clear()
        self._transport.write(data)
        self._on_write()

    def _arm(self, delay: float) -> None:
        self._due = time.monotonic() + delay
        self._watchdog = self._loop.call_later(delay, self._check)

    def _check(self) -> None:
        """Fail everything if Redis has been silent for the timeout while calls are out,
        not counting this process's own stalls (see the module's doc)."""
        self._watchdog = None
        now = time.monotonic()
        if len(self._waiting) == len(self._buffer):  # nothing is out: Redis owes nothing
            self._looked = False
            if self._waiting:  # queued behind a stall: their write starts the clock
                self._arm(self._timeout_s)
            return
        silent = now - max(self._heard, self._excused)
        if silent < self._timeout_s:
            self._looked = False
            self._arm(self._timeout_s - silent)
        elif now - self._due >= _STALL_S and self._excused <= self._heard:
            # This process stalled: replies may wait unread, requests unwritten. Redis's
            # silence counts from now (once per silence: a Redis that stays silent fails).
            self._excused, self._looked = now, False
            self._arm(self._timeout_s)
        elif not self._looked:  # look again once the loop has read its sockets
            self._looked = True
            self._arm(_RECHECK_S)
        else:
            self._fail(RedisTimeoutError(f"no answer from Redis within {self._timeout_s:g}s"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._buffer.clear()
        held, self._held = self._held, []
        for future, _ in held:
            if not future.done():
                future.set_exception(exc)
        while self._waiting:
            future, _, script = self._waiting.popleft()
            if script is not _WAIT_AOF and not future.done():
                future.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._fail(RedisConnectionError("connection to Redis closed by the gateway"))


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Hand a caller its reply, or raise its error in it."""
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _reply_error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class PipeScript:
    """A registered script: `await script(keys=[...], args=[...])`, like redis-py's; or
    `script.now(...)`, which sends the call at once and gives its reply's future."""

    def __init__(self, pipe: ScriptPipe, text: str) -> None:
        self._pipe = pipe
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        self.head = b"$7\r\nEVALSHA\r\n$40\r\n%b\r\n" % self.sha.encode()
        """`EVALSHA <sha>` in RESP, made once: the start of every call of this script."""
        body = text.encode()
        self._eval_head = b"$4\r\nEVAL\r\n$%d\r\n%b\r\n" % (len(body), body)

    def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Awaitable[Any]:
        future = self.now(keys, args)
        if future is not None:
            return future  # no coroutine of its own: one fewer
        return self._pipe.evalsha(self, keys, args)

    def now(self, keys: Sequence[Arg], args: Sequence[Arg]) -> asyncio.Future[Any] | None:
        """The call, queued for this iteration's write on the open connection; its reply
        (or redis-py's error) comes in the returned future. None when no connection is open:
        then await the call itself, which connects first."""
        conn = self._pipe.connection
        if conn is None or conn.closed:
            return None
        return conn.send(self.command(keys, args), self)

    def command(self, keys: Sequence[Arg], args: Sequence[Arg]) -> bytes:
        """`EVALSHA <sha> <numkeys> <keys...> <args...>` in RESP."""
        parts = self.start(len(keys), len(args))
        _pack_into(parts, keys)
        _pack_into(parts, args)
        return b"".join(parts)

    def start(self, nkeys: int, nargs: int) -> list[bytes]:
        """A call's RESP up to its keys: the array header, `EVALSHA <sha>` and `<numkeys>`."""
        numkeys = b"%d" % nkeys
        return [
            b"*%d\r\n" % (3 + nkeys + nargs),
            self.head,
            _HEADERS[len(numkeys)],
            numkeys,
            b"\r\n",
        ]

    def as_eval(self, command: bytes) -> bytes:
        """This script's EVALSHA `command` as the same call by EVAL (the script's text)."""
        count_end = command.index(b"\r\n") + 2
        return command[:count_end] + self._eval_head + command[count_end + len(self.head) :]


class ScriptPipe:
    """Script calls to one Redis node over one pipelined connection (see module doc)."""

    def __init__(self, url: str, timeout_s: float, wait_aof_ms: int | None = None) -> None:
        """`wait_aof_ms`: hand out replies only once WAITAOF confirms their fsync, waiting
        at most this long (module doc); None: as soon as they come."""
        if not supports(url):
            raise ValueError(f"ScriptPipe speaks plain redis:// or unix://, not {url!r}")
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s
        self._wait_aof_ms = wait_aof_ms
        self._scripts: dict[str, PipeScript] = {}
        self._conn: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self.writes = 0
        """Socket writes so far: below the number of calls when calls share a write."""

    def register_script(self, text: str) -> PipeScript:
        script = PipeScript(self, text)
        self._scripts[script.sha] = script
        return script

    @property
    def connection(self) -> _Connection | None:
        """The connection calls go out on, if one is open."""
        return self._conn

    async def evalsha(self, script: PipeScript, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connect()
        return await conn.send(script.command(keys, args), script)

    async def execute(self, *args: Arg) -> Any:
        """Any other command, e.g. `PING` (on the same connection, in order)."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._connect()
        return await conn.send(pack(args))

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            conn = await self._open()
            self._conn = conn
            return conn

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        options = self._options
        timeout = self._timeout_s
        try:
            async with asyncio.timeout(timeout):
                if "path" in options:
                    _, conn = await loop.create_unix_connection(
                        lambda: _Connection(timeout, self._count_write, self._wait_aof_ms),
                        options["path"],
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(timeout, self._count_write, self._wait_aof_ms),
                        options.get("host", "localhost"),
                        int(options.get("port", 6379)),
                    )
                await self._setup(conn)
        except TimeoutError as exc:
            raise RedisTimeoutError(f"connecting to Redis timed out after {timeout:g}s") from exc
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        return conn

    async def _setup(self, conn: _Connection) -> None:
        """AUTH, SELECT and SCRIPT LOAD, pipelined; the connection is dropped if one fails."""
        options = self._options
        commands: list[list[Arg]] = []
        if options.get("password"):
            user = [options["username"]] if options.get("username") else []
            commands.append(["AUTH", *user, options["password"]])
        if options.get("db"):
            commands.append(["SELECT", int(options["db"])])
        commands.extend(["SCRIPT", "LOAD", s.text] for s in self._scripts.values())
        replies = await asyncio.gather(
            *(conn.send(pack(c)) for c in commands), return_exceptions=True
        )
        for reply in replies:
            if isinstance(reply, BaseException):
                conn.close()
                raise reply

    def _count_write(self) -> None:
        self.writes += 1

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
