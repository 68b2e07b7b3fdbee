"""Serving from one process in the foreground, and draining it on SIGTERM (CONTRACT §5).

Shutdown order: SIGTERM (or SIGINT) → `/readyz` answers 503 while requests are still served
for `server.drain_seconds` (the load balancer takes us out) → the listener closes and
in-flight requests finish (up to `server.shutdown_timeout_seconds`) → cleanup contexts close
Redis → an embedded Redis is stopped → exit 0.

With `server.workers` > 1 `gateway serve` (gateway.cli) runs the supervisor
(`gateway.supervisor`) instead, and each worker process runs `run_worker`: the same serving
path, listening with SO_REUSEPORT, its metrics in the shared multiprocess directory, and
draining also when the supervisor disappears. The supervisor imports this module, never the
reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import logs
from gateway.admin import start_admin
from gateway.app import create_app
from gateway.config import Settings
from gateway.embedded import embedded_redis
from gateway.fasthttp import GatewayRunner
from gateway.listen import ListenError, start_site
from gateway.metrics import Metrics
from gateway.reload import ConfigSource, reload
from gateway.state import STATE
from router.memory import fix_mmap_threshold

log = logging.getLogger("gateway")

EXIT_LISTEN_FAILED = 3
"""A worker process's exit status when it could not open its listening socket."""
LISTENING = b"listening"
"""What a worker sends the supervisor once its socket is open."""


def run_process(settings: Settings, redis_url: str, source: ConfigSource | None = None) -> None:
    """Serve from this process alone until SIGTERM or SIGINT, then drain; SIGHUP reloads the
    config from `source` (gateway/reload.py)."""
    _run(_serve(settings, redis_url, source=source))


@contextlib.contextmanager
def running_redis(settings: Settings) -> Iterator[str]:
    """The configured Redis URL, or an embedded redis-server's, stopped on the way out."""
    if settings.redis.url is not None:
        yield settings.redis.url
        return
    data_dir = Path(settings.redis.embedded_dir)
    embedded = embedded_redis(settings).start()
    logs.REDACT.add(logs.redis_password(embedded.url))
    # `where`, not `url`: the URL holds the password.
    log.info("started embedded redis-server at %s (data in %s)", embedded.where, data_dir)
    try:
        yield embedded.url
    finally:
        embedded.stop()


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(main)
        return
    uvloop.run(main)


FD_HEADROOM = 256
"""File descriptors beyond `server.max_connections` for Redis, the HTTP client, logs."""


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft NOFILE limit towards `wanted` (up to the hard limit), so
    `server.max_connections` is what caps connections, not a default soft limit of 1024:
    at that one, accept() fails and asyncio stops accepting anyone for a second. Returns
    the soft limit now; warns when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.warning("cannot raise the open-files limit to %d: %s", target, exc)
    if soft < wanted:
        log.warning("open-files limit %d is below server.max_connections + %d = %d",
                    soft, FD_HEADROOM, wanted)  # fmt: skip
    return soft


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs from the supervisor (pickled to it at spawn)."""

    index: int
    settings: Settings
    redis_url: str
    metrics_dir: str
    log_level: int
    restarted: bool
    """Started again after the previous process of this index died (see Outbox forget_halts)."""
    source: ConfigSource | None = None
    """Where to read the config again on SIGHUP (the supervisor checked it first)."""


def run_worker(spec: WorkerSpec, link: Connection) -> None:
    """A worker process's main. `link` is its end of a socket pair with the supervisor: the
    worker says LISTENING on it, and drains if it reads end-of-file (the supervisor died)."""
    logs.configure(spec.log_level, spec.settings.server.log_format, worker=True)
    logs.REDACT.add([*logs.secret_values(spec.settings), *logs.redis_password(spec.redis_url)])
    worker = _Worker(Metrics(Path(spec.metrics_dir)), link, spec.restarted)
    try:
        _run(_serve(spec.settings, spec.redis_url, worker, spec.source))
    except ListenError as exc:
        log.error("%s", exc)
        sys.exit(EXIT_LISTEN_FAILED)


def _reloader(app: web.Application, source: ConfigSource) -> Callable[[], None]:
    """SIGHUP's handler: one reload at a time, in order (a task each; kept until done)."""
    lock = asyncio.Lock()
    running: set[asyncio.Task[None]] = set()

    async def one() -> None:
        async with lock:
            try:
                await reload(app, source)
            except Exception:
                log.exception("reload failed; the running config stays where it was not applied")

    def hup() -> None:
        log.info("SIGHUP: reading the config again")
        task = asyncio.get_running_loop().create_task(one(), name="reload")
        running.add(task)
        task.add_done_callback(running.discard)

    return hup


@dataclass(frozen=True)
class _Worker:
    metrics: Metrics
    link: Connection
    restarted: bool

    def listening(self, stop: asyncio.Event) -> None:
        self.link.send_bytes(LISTENING)
        loop = asyncio.get_running_loop()
        fd = self.link.fileno()

        def orphaned() -> None:
            loop.remove_reader(fd)
            log.warning("the supervisor is gone: draining")
            stop.set()

        # The supervisor never writes after spawning us: readable means end-of-file.
        loop.add_reader(fd, orphaned)


async def _serve(
    settings: Settings,
    redis_url: str,
    worker: _Worker | None = None,
    source: ConfigSource | None = None,
) -> None:
    # Helper threads (the large-webhook pool's feeder and result threads, the HTTP client's
    # resolver) hold the GIL at most 1 ms at a time instead of 5 ms before the event loop
    # (live webhooks) gets it back.
    sys.setswitchinterval(0.001)
    if settings.server.memory_release_seconds:
        fix_mmap_threshold()  # (and _memory_ctx trims; router/memory.py)
    raise_fd_limit(settings.server.max_connections + FD_HEADROOM)
    if worker is None:
        app = create_app(settings, redis_url)
    else:
        app = create_app(settings, redis_url, worker.metrics, restarted=worker.restarted)
    srv = settings.server
    runner = GatewayRunner(
        app,
        handle_signals=False,
        access_log=log if srv.access_log else None,
        shutdown_timeout=srv.shutdown_timeout_seconds,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        srv.host,
        srv.port,
        shutdown_timeout=srv.shutdown_timeout_seconds,
        reuse_port=True if worker is not None else None,
    )
    await start_site(runner, site, "server.port", srv.host, srv.port)
    try:
        admin = await start_admin(app, srv, reuse_port=worker is not None)
    except ListenError:
        await runner.cleanup()
        raise
    # What exists now (modules, the app, its clients) lives as long as the process: moved out
    # of the collector's generations, the full collections that webhook garbage triggers
    # stop walking it again and again (benchmarks/hotpath.py: about 1 µs of 34 per webhook).
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if source is not None:
        loop.add_signal_handler(signal.SIGHUP, _reloader(app, source))
    if worker is not None:
        worker.listening(stop)
    log.info("gateway listening on %s:%s", srv.host, srv.port)
    await stop.wait()
    app[STATE].draining = True
    app[STATE].metrics.draining.set(1)
    log.info("draining: /readyz is 503 for %.1fs, then the listener closes", srv.drain_seconds)
    await asyncio.sleep(srv.drain_seconds)
    if admin is not None:
        await admin.cleanup()  # before the public app's cleanup closes Redis under /readyz
    await runner.cleanup()
    log.info("drained, exiting")
