"""The stand-in Graph API (gateway_demo/standins/graph_api.py) in a process of its own, for
outbound.py.

    cd <repo root> && python -m benchmarks._outbound_graph --port 8123 --tokens tokens.json

`tokens.json` maps phone_number_id → access token. The fake listens on 127.0.0.1:PORT under
uvloop, so it never shares an event loop with the gateway or the load it measures, and
records every request as the tests' fake does (arrival = `time.monotonic()`, which is the
system-wide CLOCK_MONOTONIC on Linux, comparable with the benchmark's own clock).

`GET /_bench/requests` answers what it recorded so far:

    {"peaks": {phone_number_id: most accepted sends in any 1 s window},
     "requests": [[phone_number_id, arrived, status, accepted, command_id, error_code], ...],
     "lag_ms": [how late each 5 ms tick of a probe task ran, while requests were arriving]}

`command_id` is the body's `biz_opaque_callback_data` (the gateway sets it to the command's
id); `error_code` is Graph's `error.code` for a non-200 answer. SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from gateway_demo.standins.graph_api import FakeGraphAPI, GraphRequest

CONTROL_PATH = "/_bench/requests"
TICK_S = 0.005  # the loop-lag probe's period
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BenchGraphAPI(FakeGraphAPI):
    """The tests' fake plus one read-only control route, answered before its own routing,
    and a probe of its own event loop's lag: `arrived` is taken when the handler runs, so a
    busy stand-in (the machine is shared) records late, bunched arrivals."""

    def __init__(self, tokens: dict[str, str], port: int) -> None:
        super().__init__(tokens, port=port)
        self.lags: list[tuple[float, float]] = []  # (tick time, lateness s)

    async def probe(self, stop: asyncio.Event) -> None:
        """Sleep TICK_S at a time, and record how late each wake-up was."""
        while not stop.is_set():
            due = time.monotonic() + TICK_S
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.lags.append((now, now - due))

    def build_app(self) -> web.Application:
        """The fake's routes behind a middleware that serves CONTROL_PATH."""
        app = super().build_app()
        app.middlewares.append(self._control)
        return app

    @web.middleware
    async def _control(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != CONTROL_PATH:
            return await handler(request)
        return web.json_response(self.dump())

    def dump(self) -> dict[str, Any]:
        """Per-number peaks (the fake's own `peak_per_second`) and every request, compact."""
        numbers = sorted({r.phone_number_id for r in self.requests})
        times = [r.arrived for r in self.requests]
        first, last = (min(times), max(times)) if times else (0.0, -1.0)
        return {
            "peaks": {n: self.peak_per_second(n) for n in numbers},
            "requests": [_row(r) for r in self.requests],
            "lag_ms": [lag * 1e3 for t, lag in self.lags if first <= t <= last + TICK_S],
        }


def _row(r: GraphRequest) -> list[Any]:
    body = r.body if isinstance(r.body, dict) else {}
    answer = r.response if isinstance(r.response, dict) else {}
    error = answer.get("error") if r.status != 200 else None
    code = error.get("code") if isinstance(error, dict) else None
    command_id = body.get("biz_opaque_callback_data")
    return [r.phone_number_id, r.arrived, r.status, r.accepted, command_id, code]


async def serve(port: int, tokens: dict[str, str]) -> None:
    """Run the fake on 127.0.0.1:port until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with BenchGraphAPI(tokens, port=port) as fake:
        await fake.probe(stop)


def main() -> None:
    """Command line: --port, --tokens."""
    parser = argparse.ArgumentParser(description="The stand-in Graph API for outbound.py")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=Path, required=True, help="JSON: number id → token")
    parser.add_argument("--nice", type=int, default=0, help="add this to the process's nice")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)  # negative (a higher priority) needs root or CAP_SYS_NICE
    tokens = json.loads(args.tokens.read_text())
    uvloop.run(serve(args.port, tokens))


if __name__ == "__main__":
    main()
