"""A bare aiohttp + uvloop endpoint: the ceiling the gateway is measured against.

One POST route (any path, so WhatsApp and Telegram loads hit it unchanged) that reads the whole
body and answers 200 "ok", access log off: the gateway's HTTP stack with none of its work.

    .venv/bin/python benchmarks/bare_server.py --port 8099
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web

MAX_BODY_BYTES = 3 * 1024 * 1024  # the gateway's default server.max_body_bytes


async def handle(request: web.Request) -> web.Response:
    """Read the body, answer ok."""
    await request.read()
    return web.Response(text="ok")


def build_app() -> web.Application:
    """The one-route application."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/{tail:.*}", handle)
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args(argv)
    web.run_app(
        build_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
