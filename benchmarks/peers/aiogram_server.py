"""aiogram (3.x) as a Telegram webhook receiver: aiohttp `SimpleRequestHandler`, no-op handler.

Run by `benchmarks/peers.py` with the peers virtualenv's Python (aiogram is never a dependency
of the project). It is the setup aiogram documents for webhooks on its aiohttp integration: a
`Dispatcher` with one message handler, `SimpleRequestHandler(dispatcher, bot, secret_token=...)`
registered on the webhook path, `setup_application`, `web.run_app`. With its default
`handle_in_background=True` it checks the `X-Telegram-Bot-Api-Secret-Token` header (401 when
wrong), parses the JSON body, answers 200 `{}` and feeds the update to the dispatcher in a task.

Nothing here talks to the network: the bot token is a well-formed stand-in, no `set_webhook`
is called, the handler sends nothing. The event loop is uvloop when it is installed (it is, with
`uvicorn[standard]`), as the gateway's is.

`GET /_bench/count` answers `{"handled": N, "problems": M}`: messages the no-op handler saw,
and WARNING-or-worse records of aiogram and asyncio (an update that failed validation in its
background task, an error in the handler); the first few are printed to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiogram import Bot, Dispatcher, types
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

_PRINTED_PROBLEMS = 5


class _Counter(logging.Handler):
    """Counts WARNING+ records and prints the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count <= _PRINTED_PROBLEMS:
            print(f"{record.name} {record.levelname}: {self.format(record)}", file=sys.stderr)


def build_app(args: argparse.Namespace) -> web.Application:
    """The aiohttp app with aiogram's webhook handler and the count route."""
    bot = Bot(token=args.token)
    dp = Dispatcher()
    seen = [0]
    problems = _Counter()
    for name in ("aiogram", "asyncio"):
        logging.getLogger(name).addHandler(problems)

    @dp.message()
    async def noop(message: types.Message) -> None:
        seen[0] += 1

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"handled": seen[0], "problems": problems.count})

    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=args.secret_token).register(
        app, path=args.path
    )
    setup_application(app, dp, bot=bot)
    app.router.add_get("/_bench/count", count)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True, help="bot token (a stand-in; never used online)")
    p.add_argument("--secret-token", required=True)
    p.add_argument("--path", required=True)
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
    else:
        loop = uvloop.new_event_loop()
    # no access log, like the gateway's default (server.access_log: false)
    web.run_app(
        build_app(args), host=args.host, port=args.port, access_log=None, print=None, loop=loop
    )


if __name__ == "__main__":
    main()
