"""Several worker processes on one port (`server.workers` > 1).

The model. This process, the supervisor, owns what must exist once: the embedded Redis
(started by `gateway serve` before it gets here), the Prometheus multiprocess directory and
the workers. It serves nothing itself. Each worker is a fresh interpreter (multiprocessing
'spawn': no event loop, socket or lock inherited) that runs the single-process gateway
(`server.run_worker`) with its own event loop, Redis pool and reply workers, and listens on
the same host:port with SO_REUSEPORT, so the kernel spreads new connections over the
workers' sockets. What must be shared already lives in Redis: dedup marks, windows, the
rate limiters and the outbox consumer group (each worker is a consumer of its own name).

Start. `gateway serve` probes the port first (`gateway.listen.check_port_free`):
SO_REUSEPORT would also let a second gateway, started by mistake on the same port, share it
silently. Then the workers are spawned; each says when it listens.

A worker that exits while we are not stopping is logged and restarted after a backoff
(0.5 s, doubling per consecutive crash up to 30 s; back to 0.5 s once a worker served
`STABLE_AFTER_S`). A worker that dies before it listens on its first start, or
`MAX_START_FAILURES` times in a row on restarts, stops the gateway with exit status 1:
something outside is wrong (address, permissions) and restarting would loop forever.

SIGTERM or SIGINT is forwarded to every worker; each drains as a single process does
(`/readyz` 503 for `server.drain_seconds`, listener closed, in-flight requests and sends
finished). Exit 0 once all of them exited cleanly; a worker still running after
drain + 2 × shutdown timeout + `KILL_GRACE_S` (requests, then sends, may each take the
timeout) is killed and the exit status is 1.

Metrics: a fresh directory in PROMETHEUS_MULTIPROC_DIR, set in our environment before the
workers start (so they import prometheus_client in multiprocess mode), removed at exit; the
files of a dead worker's "live" gauges are removed (`mark_process_dead`). How each gauge
combines over workers is in `gateway.scrape`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import msgspec
from prometheus_client.multiprocess import mark_process_dead

from gateway.config import ConfigError, Settings
from gateway.reload import RESTART_ONLY, ConfigSource
from gateway.server import EXIT_LISTEN_FAILED, LISTENING, WorkerSpec, run_worker

log = logging.getLogger("gateway.supervisor")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 30.0
"""A worker that served this long before it died is restarted after FIRST_BACKOFF_S again."""
MAX_START_FAILURES = 5
"""Restarts in a row that die before listening, then the supervisor gives up."""
KILL_GRACE_S = 10.0
EXIT_GAVE_UP = 1


class GaveUp(Exception):
    """The workers cannot be kept running; the message says which and why."""


@dataclass
class _Slot:
    """One worker position: its current process and its restart bookkeeping."""

    index: int
    proc: BaseProcess | None = None
    link: Connection | None = None
    listening: bool = False
    started_at: float = 0.0
    starts: int = 0
    crashes: int = 0
    """Unexpected exits in a row (sets the backoff)."""
    start_failures: int = 0
    """Exits before listening in a row."""
    restart_at: float | None = None

    @property
    def pid(self) -> int:
        if self.proc is None or self.proc.pid is None:
            return 0
        return self.proc.pid


class Supervisor:
    """Runs `settings.server.workers` workers until SIGTERM or SIGINT; `run()` gives the
    exit status."""

    def __init__(
        self, settings: Settings, redis_url: str, source: ConfigSource | None = None
    ) -> None:
        self._settings = settings
        self._redis_url = redis_url
        self._source = source
        self._hups: list[int] = []
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i + 1) for i in range(settings.server.workers)]
        self._signals: list[int] = []
        self._metrics_dir = Path()
        self._wakeup: socket.socket | None = None
        self._announced = False

    def run(self) -> int:
        with (
            _multiprocess_dir() as path,
            _signal_wakeup(self._signals, self._hups) as wakeup,
        ):
            self._metrics_dir, self._wakeup = path, wakeup
            try:
                for slot in self._slots:
                    self._start(slot)
                self._supervise()
            except GaveUp as exc:
                log.error("%s; stopping the other workers", exc)
                self._stop(signal.SIGTERM)
                return EXIT_GAVE_UP
            except BaseException:
                self._stop(signal.SIGTERM)  # a defect here never leaves workers behind
                raise
            return self._stop(self._signals[0])

    # --- running -----------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        ours, theirs = self._ctx.Pipe(duplex=True)
        spec = WorkerSpec(
            index=slot.index,
            settings=self._settings,
            redis_url=self._redis_url,
            metrics_dir=str(self._metrics_dir),
            log_level=logging.getLogger().getEffectiveLevel(),
            restarted=slot.starts > 0,
            source=self._source,
        )
        # Not daemonic: a worker starts a child of its own for large webhooks (router.offload).
        proc = self._ctx.Process(
            target=run_worker, args=(spec, theirs), name=f"worker-{slot.index}"
        )
        proc.start()
        theirs.close()
        slot.proc, slot.link, slot.listening = proc, ours, False
        slot.started_at, slot.restart_at = time.monotonic(), None
        slot.starts += 1
        log.info("worker %d started (pid %d)", slot.index, slot.pid)

    def _supervise(self) -> None:
        """Until a stop signal: note listening workers, restart the ones that die."""
        while not self._signals:
            ready = wait(self._waitables(), self._until_restart())
            _drain(self._wakeup)
            if self._signals:
                return  # workers that die now got the signal too (Ctrl-C reaches them all)
            if self._hups:
                self._hups.clear()
                self._reload()
            for obj in ready:
                if isinstance(obj, Connection):
                    self._heard(obj)
            for slot in self._slots:
                if slot.proc is not None and not slot.proc.is_alive():
                    self._exited(slot)
            now = time.monotonic()
            for slot in self._slots:
                if slot.restart_at is not None and slot.restart_at <= now and not self._signals:
                    self._start(slot)

    def _reload(self) -> None:
        """SIGHUP: check the config here first (a bad one is refused once, with its error,
        and no worker is bothered), then have every listening worker read it. Workers started
        later (a crash's restart) get its channel sections too."""
        if self._source is None:
            return
        try:
            new = self._source.load()
        except ConfigError as exc:
            log.error("reload refused, the running config stays: config error: %s", exc)
            return
        kept = {name: getattr(self._settings, name) for name in RESTART_ONLY}
        self._settings = msgspec.structs.replace(new, **kept)
        live = [s for s in self._slots if s.proc is not None and s.listening and s.pid]
        log.info("SIGHUP: %d worker(s) read the config again", len(live))
        for slot in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGHUP)

    def _waitables(self) -> list[Connection | socket.socket | int]:
        found: list[Connection | socket.socket | int] = [self._wakeup] if self._wakeup else []
        for slot in self._slots:
            if slot.proc is not None:
                found.append(slot.proc.sentinel)
                if slot.link is not None and not slot.listening:
                    found.append(slot.link)
        return found

    def _until_restart(self) -> float | None:
        due = [s.restart_at for s in self._slots if s.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _heard(self, link: Connection) -> None:
        slot = next(s for s in self._slots if s.link is link)
        try:
            said = link.recv_bytes()
        except (EOFError, OSError):
            link.close()  # it died before listening; its sentinel tells the rest
            slot.link = None
            return
        if said == LISTENING:
            slot.listening, slot.start_failures = True, 0
            log.info("worker %d (pid %d) listening", slot.index, slot.pid)
            self._announce()

    def _announce(self) -> None:
        if not self._announced and all(s.listening for s in self._slots):
            srv = self._settings.server
            log.info(
                "gateway listening on %s:%s with %d workers", srv.host, srv.port, len(self._slots)
            )
            self._announced = True

    def _exited(self, slot: _Slot) -> None:
        listening, pid = slot.listening, slot.pid
        lived_s = time.monotonic() - slot.started_at
        code = self._reap(slot)
        if not listening:
            slot.start_failures += 1
            if slot.starts == 1 or slot.start_failures >= MAX_START_FAILURES:
                times = (
                    "on its first start"
                    if slot.starts == 1
                    else f"{slot.start_failures} restarts in a row"
                )
                raise GaveUp(
                    f"worker {slot.index} exited with {_describe(code)} before it was "
                    f"listening, {times} (see its log above)"
                )
        stable = listening and lived_s >= STABLE_AFTER_S
        slot.crashes = 1 if stable else slot.crashes + 1
        delay = min(FIRST_BACKOFF_S * 2 ** (slot.crashes - 1), MAX_BACKOFF_S)
        slot.restart_at = time.monotonic() + delay
        log.error(
            "worker %d (pid %d) exited with %s after %.1fs; restarting it in %.1fs",
            slot.index,
            pid,
            _describe(code),
            lived_s,
            delay,
        )

    def _reap(self, slot: _Slot) -> int | None:
        """Forget a dead worker's process: its exit code; its live gauges are dropped."""
        assert slot.proc is not None
        pid, code = slot.pid, slot.proc.exitcode
        slot.proc.join()
        slot.proc.close()
        if slot.link is not None:
            slot.link.close()
        slot.proc, slot.link, slot.listening = None, None, False
        mark_process_dead(pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        return code

    # --- stopping ----------------------------------------------------------------------

    def _stop(self, sig: int) -> int:
        """Forward `sig` (and any later signal) to every worker and wait for them: 0 when
        all drained cleanly."""
        srv = self._settings.server
        live = [s for s in self._slots if s.proc is not None]
        log.info("%s: draining %d worker(s)", signal.Signals(sig).name, len(live))
        for slot in self._slots:
            slot.restart_at = None
        self._forward(sig)
        forwarded = len(self._signals)
        deadline = time.monotonic() + srv.drain_seconds + 2 * srv.shutdown_timeout_seconds
        deadline += KILL_GRACE_S
        clean = True
        while any(s.proc is not None for s in self._slots) and time.monotonic() < deadline:
            sentinels = [s.proc.sentinel for s in self._slots if s.proc is not None]
            wakeup = [self._wakeup] if self._wakeup else []
            if self._wakeup in wait([*sentinels, *wakeup], deadline - time.monotonic()):
                _drain(self._wakeup)
            for later in self._signals[forwarded:]:
                self._forward(later)
            forwarded = len(self._signals)
            for slot in self._slots:
                if slot.proc is not None and not slot.proc.is_alive():
                    clean &= self._stopped(slot, sig)
        for slot in self._slots:
            if slot.proc is not None:
                log.error("worker %d (pid %d) still running: killing it", slot.index, slot.pid)
                slot.proc.kill()
                self._reap(slot)
                clean = False
        log.info("all workers stopped" if clean else "workers stopped, not all cleanly")
        return 0 if clean else EXIT_GAVE_UP

    def _forward(self, sig: int) -> None:
        for slot in self._slots:
            if slot.proc is not None and slot.proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, sig)

    def _stopped(self, slot: _Slot, sig: int) -> bool:
        listening, index, pid = slot.listening, slot.index, slot.pid
        code = self._reap(slot)
        # Killed by the signal itself before it had installed its handler: it had nothing
        # in flight yet, so that is as clean as a drain.
        clean = code == 0 or (not listening and code in (-signal.SIGTERM, -signal.SIGINT))
        if clean:
            log.info("worker %d (pid %d) drained", index, pid)
        else:
            log.error(
                "worker %d (pid %d) exited with %s while draining", index, pid, _describe(code)
            )
        return clean


def _describe(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    if code == EXIT_LISTEN_FAILED:
        return f"status {code} (it could not listen)"
    return f"status {code}"


def _drain(sock: socket.socket | None) -> None:
    """Empty the signal wakeup socket (the handlers already recorded the signals)."""
    with contextlib.suppress(BlockingIOError):
        while sock is not None and sock.recv(256):
            pass


@contextlib.contextmanager
def _multiprocess_dir() -> Iterator[Path]:
    """A fresh, empty PROMETHEUS_MULTIPROC_DIR for this run, in our environment so the
    workers inherit it; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _signal_wakeup(received: list[int], hups: list[int]) -> Iterator[socket.socket]:
    """Record SIGTERM and SIGINT in `received`, SIGHUP in `hups`; the socket yielded becomes
    readable on each, so a `wait()` on it wakes at once."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in (*stops, signal.SIGHUP)}
    for sig in stops:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    signal.signal(signal.SIGHUP, lambda signum, _frame: hups.append(signum))
    try:
        yield reader
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(previous_fd)
        reader.close()
        writer.close()
