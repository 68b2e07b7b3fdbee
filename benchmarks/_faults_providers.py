"""The provider stand-ins for faults.py: the Graph API and the Bot API in one process of
their own, with a control route that switches them into a failure mode for a while.

    cd <repo root> && python -m benchmarks._faults_providers --graph-port 8123 \
        --bot-port 8124 --accounts accounts.json

`accounts.json`: `{"graph": {phone_number_id: token}, "bots": [bot token, ...]}`. Both fakes
(gateway_demo/standins) listen on 127.0.0.1 under uvloop, so they never share an event loop
with the gateway or the harness.

Control, on the Graph port:

- `POST /_faults/mode` `{"mode": M, "seconds": S, "hold_s": H, "burst_s": B}` puts both fakes
  in mode M for S seconds, then back to `ok`:
  - `ok`: the fakes answer as they always do;
  - `error`: every message send is refused before the fake sees it, alternately with a 500
    (Graph: code 1 "An unknown error occurred"; Bot API: `error_code` 500) and with no answer
    for H seconds (longer than the gateway's request timeout) and then a 504. Neither is an
    accepted send: a request the provider never took (a load balancer that timed out);
  - `429`: bursts: for B seconds every send gets Graph's 130429 (HTTP 429) or the Bot API's
    429 with `retry_after` 1, then B seconds of normal answers, and so on.
- `GET /_faults/sends`: every accepted message send so far, as `{"graph": [command_id, ...],
  "bot": [command_id, ...], "refused": {mode: count}}`. Graph sends carry the command id in
  `biz_opaque_callback_data`; the harness puts it in Bot API texts as `cmd=<id>`.

SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

from gateway_demo.standins import graph_errors as errors
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI

MODE_PATH = "/_faults/mode"
SENDS_PATH = "/_faults/sends"
MODES = ("ok", "error", "429")
_COMMAND_IN_TEXT = re.compile(r"cmd=(\S+)")
_SEND_PATH = re.compile(r"/(v[0-9.]+/[0-9]+/messages|bot[^/]+/send[A-Za-z]*)$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Mode:
    """The failure mode both fakes are in, and until when."""

    def __init__(self) -> None:
        self.name = "ok"
        self.since = 0.0
        self.until = 0.0
        self.hold_s = 3.0
        self.burst_s = 2.0
        self.calls = 0
        self.refused: Counter[str] = Counter()

    def set(self, name: str, seconds: float, hold_s: float, burst_s: float) -> None:
        """Switch to `name` for `seconds` from now."""
        if name not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.name, self.hold_s, self.burst_s = name, hold_s, burst_s
        self.since = time.monotonic()
        self.until = self.since + seconds

    def current(self) -> str:
        """The mode in force now (`ok` once its time is over)."""
        now = time.monotonic()
        if self.name == "ok" or now >= self.until:
            return "ok"
        if self.name == "429" and int((now - self.since) / self.burst_s) % 2:
            return "ok"  # the quiet half of a burst period
        return self.name


def _graph_error(code: int, status: int) -> web.Response:
    payload = errors.envelope(errors.error_for(code))
    headers = errors.error_headers(payload)
    return web.json_response(payload, status=status, headers=headers)


def _bot_error(code: int, description: str, retry_after: int | None = None) -> web.Response:
    payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        payload["parameters"] = {"retry_after": retry_after}
    return web.json_response(payload, status=code)


async def _refuse(mode: Mode, name: str, graph: bool) -> web.Response:
    """The answer of a refused send in mode `name`."""
    mode.refused[name] += 1
    if name == "429":
        if graph:
            return _graph_error(130429, 429)
        return _bot_error(429, "Too Many Requests: retry after 1", retry_after=1)
    mode.calls += 1
    if mode.calls % 2:
        return _graph_error(1, 500) if graph else _bot_error(500, "Internal Server Error")
    await asyncio.sleep(mode.hold_s)  # the gateway has given up by now
    return web.Response(status=504, text="upstream timed out")


def fault_middleware(mode: Mode, graph: bool) -> Any:
    """Refuse message sends while a failure mode is in force."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name = mode.current()
        if name != "ok" and _SEND_PATH.search(request.path):
            return await _refuse(mode, name, graph)
        return await handler(request)

    return middleware


class Control:
    """The control routes, answered before the Graph fake's own routing."""

    def __init__(self, mode: Mode, graph: FakeGraphAPI, bot: FakeBotAPI) -> None:
        self.mode, self.graph, self.bot = mode, graph, bot

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == MODE_PATH and request.method == "POST":
            spec = await request.json()
            try:
                self.mode.set(
                    str(spec["mode"]),
                    float(spec.get("seconds", 0)),
                    float(spec.get("hold_s", 3.0)),
                    float(spec.get("burst_s", 2.0)),
                )
            except (KeyError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response({"mode": self.mode.name})
        if request.path == SENDS_PATH:
            return web.json_response(self.sends())
        return await handler(request)

    def sends(self) -> dict[str, Any]:
        """Accepted sends by command id, and the refusals by mode."""
        graph = [
            r.body.get("biz_opaque_callback_data")
            for r in self.graph.requests
            if r.accepted and isinstance(r.body, dict)
        ]
        bot = []
        for r in self.bot.requests:
            text = (r.params or {}).get("text")
            if r.sent and isinstance(text, str):
                found = _COMMAND_IN_TEXT.search(text)
                bot.append(found.group(1) if found else None)
        return {
            "graph": graph,
            "bot": bot,
            "refused": dict(self.mode.refused),
        }


class _Graph(FakeGraphAPI):
    def __init__(self, tokens: dict[str, str], port: int, mode: Mode) -> None:
        super().__init__(tokens, port=port)
        self.mode = mode
        self.control: Control | None = None

    def build_app(self) -> web.Application:
        app = super().build_app()
        assert self.control is not None
        app.middlewares.append(self.control.middleware)
        app.middlewares.append(fault_middleware(self.mode, graph=True))
        return app


class _Bot(FakeBotAPI):
    def __init__(self, tokens: list[str], port: int, mode: Mode) -> None:
        super().__init__(tokens, port=port)
        self.mode = mode

    def build_app(self) -> web.Application:
        app = super().build_app()
        app.middlewares.append(fault_middleware(self.mode, graph=False))
        return app


async def serve(graph_port: int, bot_port: int, accounts: dict[str, Any]) -> None:
    """Run both fakes until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    mode = Mode()
    graph = _Graph(dict(accounts["graph"]), graph_port, mode)
    bot = _Bot(list(accounts["bots"]), bot_port, mode)
    graph.control = Control(mode, graph, bot)
    async with bot, graph:
        await stop.wait()


def main() -> None:
    """Command line: --graph-port, --bot-port, --accounts."""
    parser = argparse.ArgumentParser(description="The provider stand-ins for faults.py")
    parser.add_argument("--graph-port", type=int, required=True)
    parser.add_argument("--bot-port", type=int, required=True)
    parser.add_argument("--accounts", type=Path, required=True)
    args = parser.parse_args()
    accounts = json.loads(args.accounts.read_text())
    uvloop.run(serve(args.graph_port, args.bot_port, accounts))


if __name__ == "__main__":
    main()
