"""The admin listener (`server.admin_port`): /metrics, /readyz and /healthz on an address of
their own, by default 127.0.0.1, away from the port Meta and Telegram reach.

With `admin_port` set, /metrics leaves the public port (404 there: gateway.handlers does not
route it); /readyz and /healthz stay there too, since load balancers probe the port they
send to. Without it, everything is on the public port as CONTRACT §1 lists.

The admin app is a small aiohttp app served by a plain runner (no webhook fast path: no
webhooks here) with the public app's own handlers. It is handed the public app's resources
(its AppKeys: state, Redis, outbox, memory watch) once the public app has started, so both
answer from the same state: a drain shows on both, and one process reports one set of
metrics. With several workers each worker binds the admin port with SO_REUSEPORT, as it
does the public one; any worker's /metrics merges all of them (gateway.metrics).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway import handlers
from gateway.accesslog import RedactedAccessLogger
from gateway.config import ServerSettings
from gateway.listen import start_site

log = logging.getLogger("gateway")


async def start_admin(
    app: web.Application, server: ServerSettings, *, reuse_port: bool
) -> web.AppRunner | None:
    """Serve `app`'s /metrics, /readyz and /healthz on admin_host:admin_port, once `app`
    has started; None when no admin port is configured. ListenError (naming
    `server.admin_port`) if it cannot listen."""
    if server.admin_port is None:
        return None
    runner = web.AppRunner(
        _admin_app(app),
        handle_signals=False,
        access_log=log if server.access_log else None,
        access_log_class=RedactedAccessLogger,
    )
    await runner.setup()
    site = web.TCPSite(
        runner, server.admin_host, server.admin_port, reuse_port=True if reuse_port else None
    )
    await start_site(runner, site, "server.admin_port", server.admin_host, server.admin_port)
    log.info("admin endpoints on %s", ", ".join(_addresses(runner)))
    return runner


def _admin_app(app: web.Application) -> web.Application:
    admin = web.Application()
    for key, value in app.items():
        admin[key] = value
    admin.router.add_get("/healthz", handlers.healthz, expect_handler=handlers.expect_continue)
    admin.router.add_get("/readyz", handlers.readyz, expect_handler=handlers.expect_continue)
    admin.router.add_get("/metrics", handlers.metrics, expect_handler=handlers.expect_continue)
    return admin


def _addresses(runner: web.AppRunner) -> list[str]:
    """host:port of each listening socket (the real port when admin_port is 0)."""
    found = []
    for address in runner.addresses:
        host, port = address[0], address[1]
        found.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return found
