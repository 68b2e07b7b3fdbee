"""pywa (4.x) as a webhook receiver: FastAPI + uvicorn, signature validation on, no-op handler.

Run by `benchmarks/peers.py` with the peers virtualenv's Python (pywa is never a dependency of
the project). It is the setup pywa documents for an existing server: `WhatsApp(server=<FastAPI
app>, verify_token=..., app_secret=..., validate_updates=True)`, which registers
`GET/POST <webhook_endpoint>` on the app. pywa answers 200 after checking the signature and
hands the body to its update handler as a FastAPI background task (on a thread for the sync
`pywa.WhatsApp`, on the event loop for `pywa_async.WhatsApp`).

Nothing here talks to the network: no token (so no Graph API client), no `callback_url` (so
no webhook registration), no phone_id / waba_id (so no update is filtered out and every
message goes through the handler).

`GET /_bench/count` answers `{"handled": N, "problems": M}`: messages the no-op handler saw,
and WARNING-or-worse records pywa logged (a body it failed to construct an update from, a
rejected signature); the first few are printed to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from typing import Any

import fastapi
import uvicorn

_PRINTED_PROBLEMS = 5


class _Counter(logging.Handler):
    """Counts pywa's WARNING+ records and prints the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if self.count <= _PRINTED_PROBLEMS:
            print(f"pywa {record.levelname}: {self.format(record)}", file=sys.stderr)


def build_app(args: argparse.Namespace) -> fastapi.FastAPI:
    """The FastAPI app with pywa's webhook routes, the no-op handler and the count route."""
    if args.flavor == "async":
        from pywa_async import WhatsApp, types
    else:
        from pywa import WhatsApp, types  # type: ignore[assignment]

    app = fastapi.FastAPI()
    wa = WhatsApp(
        server=app,
        webhook_endpoint=args.path,
        verify_token=args.verify_token,
        app_secret=args.app_secret,
        validate_updates=True,
    )
    handled = itertools.count()  # next() is atomic under the GIL (sync handlers run on threads)
    seen = [0]
    problems = _Counter()
    logging.getLogger("pywa").addHandler(problems)
    logging.getLogger("pywa_async").addHandler(problems)

    if args.flavor == "async":

        @wa.on_message()
        async def noop_async(_: Any, msg: types.Message) -> None:
            seen[0] = next(handled) + 1

    else:

        @wa.on_message()
        def noop(_: Any, msg: types.Message) -> None:
            seen[0] = next(handled) + 1

    @app.get("/_bench/count")
    async def count() -> dict[str, int]:
        return {"handled": seen[0], "problems": problems.count}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--app-secret", required=True)
    p.add_argument("--verify-token", required=True)
    p.add_argument("--path", default="/webhooks/whatsapp")
    p.add_argument("--flavor", choices=["sync", "async"], default="sync")
    args = p.parse_args()
    # One worker; uvloop and httptools when installed (uvicorn[standard]); no access log, like
    # the gateway's default (server.access_log: false).
    uvicorn.run(
        build_app(args),
        host=args.host,
        port=args.port,
        workers=1,
        loop="auto",
        http="auto",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
