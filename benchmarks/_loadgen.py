"""Closed- and open-loop HTTP/1.1 load from worker processes, on a minimal Protocol client.

Each worker process runs its own uvloop with keep-alive connections. A request is one
precomputed bytes object (see `_payloads`); an answer is parsed only as far as its status line
and framing (Content-Length or chunked), so the client stays cheap next to the server.

Closed loop: every connection sends its next request when the previous answer arrives; an
answer counts when it arrives inside the measured window, which starts after the warm-up.
Open loop: requests are due at fixed absolute times `start + phase + i / rate`; a due request
takes an idle connection or waits in a queue for one, and its latency runs from its due time,
so time spent queued behind a slow server is counted (no coordinated omission). It counts when
its due time falls inside the window. uvloop's timers tick in milliseconds, so the scheduler
wakes at most once per millisecond and sends what is due within the next half tick; a request
sent before its due time is measured from its send time (never credited for leaving early),
one sent late from its due time (the lateness is reported as the send lag).

The parent starts the workers (`Workers`), tells them one common start time on the
system-wide monotonic clock, and merges what they send back (`merge`).

Slices (`WorkerSpec.tick_s`, soak.py): a worker can also report the measured window in
consecutive slices of tick_s seconds while it runs (`Workers.tick`). An answer belongs to the
slice of its due time (open loop) or arrival (closed loop); slice k is sent _TICK_GRACE_S after
it ends, and an answer of a slice already sent counts in the next one, so a stall is never
dropped from the slices, only moved. The last slice is sent after the drain.

State: one `_Driver` per worker process owns its connections, the latency array and the error
counts; nothing is shared between processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import time
import traceback
from array import array
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import cast

import uvloop
from _payloads import PayloadSpec, RequestFactory, RequestPool

_MAX_RECONNECTS = 200  # per worker: a dead server must not turn the run into a connect storm
_RECONNECT_DELAY_S = 0.01
_DRAIN_POLL_S = 0.01
_SAMPLE_BYTES = 200
_MAX_CHUNKS = 10_000
_READY_TIMEOUT_S = 180.0  # pre-generating a large pool takes a few seconds
_REUSED_POOL_BYTES = 32 * 2**20  # a pool that starts over need not be large
_TICK_S = 0.001  # open-loop scheduler's shortest sleep: uvloop timers have 1 ms resolution
_EARLY_S = _TICK_S / 2  # open loop sends what is due within this much, instead of sleeping
_TICK_GRACE_S = 1.0  # a slice is sent this long after it ends (answers still on their way)


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process's share of a run."""

    payload: PayloadSpec
    connections: int
    warmup_s: float
    duration_s: float
    rate: float | None  # this worker's requests/s in open loop; None: closed loop
    phase_s: float  # open loop: offset of this worker's schedule
    pool_bytes: int
    drain_s: float
    unique: bool  # False: reuse the pool when it runs out (for a target that ignores content)
    # builds the worker's requests from `payload`; a picklable callable (history_flood.py
    # passes one that makes coexistence history webhooks)
    factory: Callable[[PayloadSpec], RequestFactory] = RequestFactory
    # also report the window in slices of this many seconds while running (Workers.tick)
    tick_s: float | None = None


@dataclass
class WorkerResult:
    """What one worker measured; latencies in seconds, of the answers inside the window."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors_window: Counter[str] = field(default_factory=Counter)
    errors_total: Counter[str] = field(default_factory=Counter)
    samples: dict[str, bytes] = field(default_factory=dict)
    sent_total: int = 0
    answered_total: int = 0
    live_built: int = 0
    pool_size: int = 0
    request_bytes: int = 0
    client_cpu_s: float = 0.0
    lag_sum_s: float = 0.0  # open loop: send time - due time, summed over the window
    lag_max_s: float = 0.0
    lag_count: int = 0


@dataclass
class TickResult:
    """One slice of the measured window (WorkerSpec.tick_s): latencies in seconds."""

    index: int
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: Counter[str] = field(default_factory=Counter)
    answered: int = 0


def parse_response(buf: bytearray) -> tuple[int, int, int, bool] | None:
    """(status, body start, end, close) of the first complete answer in buf, or None."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    status = int(head[9:12])
    start = head_end + 4
    close = b"\r\nconnection: close" in head or head.startswith(b"http/1.0")
    length = _content_length(head)
    end: int | None = start
    if length is not None:
        end = start + length
    elif b"\r\ntransfer-encoding: chunked" in head:
        end = _chunked_end(buf, start)
    elif status >= 200 and status not in (204, 304):
        close = True  # body delimited by close: we do not wait for it
    if end is None or len(buf) < end:
        return None
    return status, start, end, close


def _content_length(head: bytes) -> int | None:
    i = head.find(b"\r\ncontent-length:")
    if i < 0:
        return None
    j = head.find(b"\r\n", i + 2)
    return int(head[i + 17 : j if j >= 0 else len(head)])


def _chunked_end(buf: bytearray, pos: int) -> int | None:
    for _ in range(_MAX_CHUNKS):
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        if size == 0:
            end = buf.find(b"\r\n\r\n", eol)
            return None if end < 0 else end + 4
        pos = eol + 2 + size + 2
        if pos > len(buf):
            return None
    raise ValueError("too many chunks in one answer")


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    def __init__(self, driver: _Driver) -> None:
        self.driver = driver
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.tag = 0.0  # closed loop: send time; open loop: due time
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        parsed = parse_response(self.buf)
        if parsed is None:
            return
        status, start, end, close = parsed
        body = bytes(self.buf[start : min(end, start + _SAMPLE_BYTES)])
        del self.buf[:end]
        self.driver.on_answer(self, status, body, close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.driver.on_lost(self)

    def send(self, request: bytes, tag: float) -> None:
        """Write one request; `tag` is the time its latency is measured from."""
        assert self.transport is not None
        self.tag = tag
        self.busy = True
        self.transport.write(request)


class _Driver:
    """Runs one worker's connections in closed or open loop and keeps the measurements."""

    def __init__(self, spec: WorkerSpec, pool: RequestPool) -> None:
        self.spec = spec
        self.pool = pool
        self.result = WorkerResult(pool_size=len(pool.pool), request_bytes=pool.request_bytes)
        self.conns: set[_Conn] = set()
        self.idle: list[_Conn] = []
        self.due: deque[float] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.reconnects = 0
        self.stopping = False
        self.start = self.w0 = self.w1 = 0.0
        self.cpu0: float | None = None
        self.pipe: Connection | None = None  # where slices go (spec.tick_s)
        self.ticks: dict[int, TickResult] = {}
        self.ticks_sent = 0

    # --- connections -------------------------------------------------------------------

    async def connect(self) -> None:
        """Open one connection and give it work; a failure is counted as an error."""
        loop = asyncio.get_running_loop()
        payload = self.spec.payload
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self), payload.host, payload.port)
        except OSError as exc:
            self.result.errors_total[f"connect: {exc.strerror or exc}"] += 1
            return
        self.conns.add(conn)
        if self.start:
            self.next(conn)
        else:
            self.idle.append(conn)

    def on_lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.busy:
            conn.busy = False
            self.record("disconnect", b"", conn.tag, time.monotonic(), answered=False)
        if not self.stopping and self.reconnects < _MAX_RECONNECTS:
            self.reconnects += 1
            task = asyncio.get_running_loop().create_task(self._reconnect())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _reconnect(self) -> None:
        await asyncio.sleep(_RECONNECT_DELAY_S)
        if not self.stopping:
            await self.connect()

    # --- requests and answers ----------------------------------------------------------

    def send(self, conn: _Conn, tag: float) -> None:
        self.result.sent_total += 1
        if self.spec.rate:
            now = time.monotonic()
            if self.w0 <= tag < self.w1:
                self._lag(max(0.0, now - tag))
            # sent early: measure from the send (no credit for leaving early); sent late
            # (scheduler lag, no idle connection): from the due time, so the wait counts
            tag = min(tag, now)
        conn.send(self.pool.next(), tag)

    def _lag(self, lag_s: float) -> None:
        res = self.result
        res.lag_sum_s += lag_s
        res.lag_count += 1
        res.lag_max_s = max(res.lag_max_s, lag_s)

    def on_answer(self, conn: _Conn, status: int, body: bytes, close: bool) -> None:
        conn.busy = False
        label = "200" if status == 200 else f"HTTP {status}"
        self.record(label, body, conn.tag, time.monotonic(), answered=True)
        if close:
            assert conn.transport is not None
            conn.transport.close()  # on_lost reconnects
        else:
            self.next(conn)

    def record(self, label: str, body: bytes, tag: float, now: float, answered: bool) -> None:
        res = self.result
        res.answered_total += answered
        in_window = self.w0 <= (tag if self.spec.rate else now) < self.w1
        if in_window and answered:
            res.latencies.append(now - tag)
        if in_window and self.spec.tick_s:
            self._tick_record(label, tag if self.spec.rate else now, now - tag, answered)
        if label == "200":
            return
        res.errors_total[label] += 1
        if in_window:
            res.errors_window[label] += 1
        res.samples.setdefault(label, body)

    def _tick_record(self, label: str, at: float, latency: float, answered: bool) -> None:
        assert self.spec.tick_s
        index = max(int((at - self.w0) // self.spec.tick_s), self.ticks_sent)
        tick = self.ticks.get(index)
        if tick is None:
            tick = self.ticks[index] = TickResult(index)
        if answered:
            tick.latencies.append(latency)
            tick.answered += 1
        if label != "200":
            tick.errors[label] += 1

    def _tick_send(self, upto: int) -> None:
        """Send every slice before `upto` that is not sent yet (empty ones too)."""
        while self.ticks_sent < upto:
            tick = self.ticks.pop(self.ticks_sent, None) or TickResult(self.ticks_sent)
            self.ticks_sent += 1
            if self.pipe is not None:
                self.pipe.send(("tick", tick))

    def tick_count(self) -> int:
        """Slices in the window."""
        assert self.spec.tick_s
        return math.ceil(self.spec.duration_s / self.spec.tick_s - 1e-9)

    def next(self, conn: _Conn) -> None:
        """Give an idle connection its next request, or park it."""
        if self.spec.rate is None:
            if not self.stopping:
                self.send(conn, time.monotonic())
        elif self.due:
            self.send(conn, self.due.popleft())
        else:
            self.idle.append(conn)

    def dispatch(self, due_at: float) -> None:
        """Open loop: a request is due now."""
        if self.idle:
            self.send(self.idle.pop(), due_at)
        else:
            self.due.append(due_at)

    # --- the run -----------------------------------------------------------------------

    def begin(self, start: float) -> None:
        loop = asyncio.get_running_loop()
        self.start = start
        self.w0 = start + self.spec.warmup_s
        self.w1 = self.w0 + self.spec.duration_s
        loop.call_later(max(0.0, self.w0 - time.monotonic()), self._cpu_mark)
        loop.call_later(max(0.0, self.w1 - time.monotonic()), self._cpu_mark)
        if self.spec.tick_s:  # every slice but the last, which is sent after the drain
            for k in range(1, self.tick_count()):
                at = self.w0 + k * self.spec.tick_s + _TICK_GRACE_S
                loop.call_later(max(0.0, at - time.monotonic()), self._tick_send, k)

    def _cpu_mark(self) -> None:
        now = time.process_time()
        if self.cpu0 is None:
            self.cpu0 = now
        else:
            self.result.client_cpu_s = now - self.cpu0

    async def run_closed(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            self.next(conn)
        await asyncio.sleep(max(0.0, self.w1 - time.monotonic()))
        self.stopping = True

    async def run_open(self) -> None:
        rate = self.spec.rate
        assert rate
        total_s = self.spec.warmup_s + self.spec.duration_s
        count = math.ceil(total_s * rate)
        first = self.start + self.spec.phase_s
        i = 0
        for _ in range(count + 2 * math.ceil(total_s / _TICK_S) + 10):
            now = time.monotonic()
            while i < count and first + i / rate <= now + _EARLY_S:
                self.dispatch(first + i / rate)
                i += 1
            if i >= count:
                break
            await asyncio.sleep(max(first + i / rate - now, _TICK_S))  # shorter would spin
        for j in range(i, count):  # only if the passes ran out: late, and counted as late
            self.dispatch(first + j / rate)
        self.stopping = True

    async def drain(self) -> None:
        """Wait for answers still in flight, then count what never came as timeouts."""
        for _ in range(math.ceil(self.spec.drain_s / _DRAIN_POLL_S)):
            if not self.due and not any(c.busy for c in self.conns):
                break
            await asyncio.sleep(_DRAIN_POLL_S)
        now = time.monotonic()
        for tag in [*self.due, *(c.tag for c in self.conns if c.busy)]:
            self.record("timeout", b"", tag, now, answered=False)
        self.due.clear()

    async def close(self) -> None:
        self.stopping = True
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for conn in list(self.conns):
            conn.busy = False
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)


async def _run(
    spec: WorkerSpec, pool: RequestPool, start: float, pipe: Connection | None = None
) -> WorkerResult:
    driver = _Driver(spec, pool)
    driver.pipe = pipe
    await asyncio.gather(*(driver.connect() for _ in range(spec.connections)))
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    driver.begin(start)
    try:
        await (driver.run_open() if spec.rate else driver.run_closed())
        await driver.drain()
        if spec.tick_s:
            driver._tick_send(driver.tick_count())
    finally:
        await driver.close()
    driver.result.live_built = pool.live_built
    return driver.result


def _pool_for(spec: WorkerSpec) -> RequestPool:
    factory = spec.factory(spec.payload)
    if spec.rate:
        needed = math.ceil((spec.warmup_s + spec.duration_s) * spec.rate) + spec.connections
    else:
        needed = 5_000_000
    budget = spec.pool_bytes if spec.unique else min(spec.pool_bytes, _REUSED_POOL_BYTES)
    return RequestPool(factory, budget, needed, spec.unique)


def worker_main(spec: WorkerSpec, pipe: Connection) -> None:
    """Worker process: build the pool, report ready, wait for the start time, run, report."""
    try:
        pool = _pool_for(spec)
        pipe.send(("ready", len(pool.pool)))
        if not pipe.poll(_READY_TIMEOUT_S):
            return
        start = pipe.recv()
        if start is not None:
            pipe.send(("done", uvloop.run(_run(spec, pool, start, pipe))))
    except Exception:
        pipe.send(("error", traceback.format_exc()))


class Workers:
    """The worker processes of one run, driven from the (synchronous) parent."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.done: dict[int, WorkerResult] = {}  # results read by tick() before results()
        self.procs: list[mp.process.BaseProcess] = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(spec, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def _recv(self, pipe: Connection, timeout_s: float, what: str) -> object:
        if not pipe.poll(timeout_s):
            raise RuntimeError(f"load worker did not report {what} within {timeout_s:.0f} s")
        kind, value = pipe.recv()
        if kind == "error":
            raise RuntimeError(f"load worker failed:\n{value}")
        if kind != what:
            raise RuntimeError(f"load worker sent {kind!r}, expected {what!r}")
        return value

    def wait_ready(self) -> None:
        """Block until every worker has its requests pre-generated."""
        for pipe in self.pipes:
            self._recv(pipe, _READY_TIMEOUT_S, "ready")

    def start(self, delay_s: float = 0.3) -> float:
        """Tell every worker one common start time (monotonic clock); return it."""
        start = time.monotonic() + delay_s
        for pipe in self.pipes:
            pipe.send(start)
        return start

    def tick(self, timeout_s: float) -> TickResult | None:
        """The next slice of every worker (WorkerSpec.tick_s), merged; None after the last."""
        merged: TickResult | None = None
        for i, pipe in enumerate(self.pipes):
            if i in self.done:
                continue
            if not pipe.poll(timeout_s):
                raise RuntimeError(f"load worker sent no slice within {timeout_s:.0f} s")
            kind, value = pipe.recv()
            if kind == "error":
                raise RuntimeError(f"load worker failed:\n{value}")
            if kind == "done":
                self.done[i] = value
                continue
            if kind != "tick":
                raise RuntimeError(f"load worker sent {kind!r}, expected a slice")
            if merged is None:
                merged = value
            else:
                merged.latencies.extend(value.latencies)
                merged.errors.update(value.errors)
                merged.answered += value.answered
        return merged

    def results(self, timeout_s: float) -> list[WorkerResult]:
        """Collect every worker's result, then reap the processes."""
        out = []
        for i, pipe in enumerate(self.pipes):
            value = self.done.pop(i) if i in self.done else self._recv(pipe, timeout_s, "done")
            assert isinstance(value, WorkerResult)
            out.append(value)
        self.close()
        return out

    def close(self) -> None:
        """Stop workers that are still alive (a failed run) and reap all of them."""
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            if proc.is_alive():
                with contextlib.suppress(OSError):
                    pipe.send(None)
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def split(total: int, parts: int) -> list[int]:
    """total divided into `parts` near-equal integer shares."""
    return [total // parts + (i < total % parts) for i in range(parts)]


@dataclass
class Merged:
    """All workers' measurements of one run."""

    latencies: list[float]
    errors_window: Counter[str]
    errors_total: Counter[str]
    samples: dict[str, bytes]
    sent_total: int
    answered_total: int
    live_built: int
    pool_size: int
    request_bytes: int
    client_cpu_s: float
    lag_mean_s: float
    lag_max_s: float


def merge(results: list[WorkerResult]) -> Merged:
    """One sorted latency list and summed counters."""
    latencies = sorted(x for r in results for x in r.latencies)
    samples: dict[str, bytes] = {}
    for r in results:
        for key, body in r.samples.items():
            samples.setdefault(key, body)
    return Merged(
        latencies=latencies,
        errors_window=sum((r.errors_window for r in results), Counter()),
        errors_total=sum((r.errors_total for r in results), Counter()),
        samples=samples,
        sent_total=sum(r.sent_total for r in results),
        answered_total=sum(r.answered_total for r in results),
        live_built=sum(r.live_built for r in results),
        pool_size=sum(r.pool_size for r in results),
        request_bytes=results[0].request_bytes if results else 0,
        client_cpu_s=sum(r.client_cpu_s for r in results),
        lag_mean_s=sum(r.lag_sum_s for r in results) / max(1, sum(r.lag_count for r in results)),
        lag_max_s=max((r.lag_max_s for r in results), default=0.0),
    )


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a sorted list; nan when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]
