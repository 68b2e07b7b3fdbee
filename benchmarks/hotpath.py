"""The gateway's own inbound work per webhook, in one process, without HTTP.

What both server paths do between reading the body and answering, for N signed webhooks:
`Inbound.receive` (gateway/receive.py: signature check, parse, `InboundRouter.start` through
`ScriptPipe` to a real throwaway redis-server) and `settle` (the tally and the metrics). Prints
this process's CPU time per webhook (Redis's own CPU is not counted), so a change to the
router, the adapters or the metrics shows without the HTTP stack's noise.

    .venv/bin/python benchmarks/hotpath.py                    # 1-item WhatsApp, 64 in flight
    .venv/bin/python benchmarks/hotpath.py --items 10 --concurrency 1
    .venv/bin/python benchmarks/hotpath.py --channel telegram
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from _payloads import TWILIO_PUBLIC_URL, PayloadSpec, RequestFactory, twilio_signature
from _procs import HOST, redis_server
from inbound import APP_SECRET, BOT_ID, NUMBERS, TELEGRAM_SECRET, gateway_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters import CHANNELS, whatsapp
from gateway.app import directory_from, journal_of, offload_router
from gateway.config import Settings, channel_sections, loads
from gateway.journal import Journal
from gateway.metrics import Metrics
from gateway.receive import Inbound, Webhook, settle
from router.inbound import InboundRouter
from router.offload import Offload
from router.scriptpipe import ScriptPipe


def inbound(
    settings: Settings, url: str, redis: object, pipe: ScriptPipe, journal: Journal | None
) -> Inbound:
    """The gateway's `Inbound`, as gateway/app.py makes it, on the started Redis."""
    receivers = {
        name: CHANNELS[name].receiver(section)
        for name, section in channel_sections(settings).items()
    }
    router = InboundRouter(
        redis,  # type: ignore[arg-type]
        directory_from(settings),
        settings.router,
        settings.policy,
        pipe,
    )
    offload = Offload(functools.partial(offload_router, settings, url))
    return Inbound(Metrics(), receivers, router, offload, settings.server.offload_bytes, journal)


def bodies(channel: str, items: int, count: int) -> list[tuple[bytes, str | None]]:
    spec = PayloadSpec(
        channel, items, HOST, 0, APP_SECRET, tuple(NUMBERS), BOT_ID, TELEGRAM_SECRET, 1000
    )
    factory = RequestFactory(spec)
    out = []
    for i in range(count):
        body = factory.body(i)
        header: str | None = None
        if channel == "twilio":
            header = twilio_signature(APP_SECRET, TWILIO_PUBLIC_URL, body)
        elif channel != "telegram":
            header = whatsapp.sign(body, APP_SECRET.encode())  # Meta's three channels
        out.append((body, header))
    return out


async def handle(gateway: Inbound, channel: str, body: bytes, header: str | None) -> None:
    """What the server paths do for one webhook after reading its body."""
    if channel == "twilio":
        form = "application/x-www-form-urlencoded"
        webhook = Webhook(channel, None, {"x-twilio-signature": header or "",
                                          "content-type": form}, body)  # fmt: skip
    elif channel != "telegram":
        webhook = Webhook(channel, None, {"x-hub-signature-256": header or ""}, body)
    else:
        webhook = Webhook(channel, BOT_ID, {"x-telegram-bot-api-secret-token": TELEGRAM_SECRET},
                          body)  # fmt: skip
    answer = await settle(gateway.receive(webhook))
    if answer[0] != 200:
        raise AssertionError(answer)


async def run(args: argparse.Namespace, url: str) -> None:
    pipe = ScriptPipe(url, 5.0)
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    config = gateway_config(0, url, APP_SECRET)
    journal_dir = tempfile.TemporaryDirectory()
    config["server"]["journal_dir"] = journal_dir.name
    settings = loads(json.dumps(config), {})
    journal = journal_of(settings)  # as the app has it: Twilio's webhooks may go to it
    gateway = inbound(settings, url, redis, pipe, journal)
    warm = bodies(args.channel, args.items, 2000)
    work = bodies(args.channel, args.items, args.count)

    async def drive(batch: list[tuple[bytes, str | None]]) -> None:
        queue = iter(batch)

        async def worker() -> None:
            for body, header in queue:
                await handle(gateway, args.channel, body, header)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    await drive(warm)
    results = []
    chunk = len(work) // args.rounds
    for r in range(args.rounds):
        part = work[r * chunk : (r + 1) * chunk]
        cpu, wall = time.process_time(), time.perf_counter()
        await drive(part)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        results.append(cpu / len(part) * 1e6)
        print(f"round {r}: {results[-1]:.1f} µs CPU/webhook, {len(part) / wall:,.0f} webhooks/s")
    results.sort()
    print(f"median {results[len(results) // 2]:.1f} µs CPU/webhook (best {results[0]:.1f})")
    await pipe.aclose()
    await redis.aclose()
    if journal is not None:
        await journal.aclose()
    journal_dir.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--channel",
        choices=("whatsapp", "telegram", "messenger", "instagram", "twilio"),
        default="whatsapp",
    )
    p.add_argument("--items", type=int, default=1)
    p.add_argument("--count", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--redis-url", help="use this Redis instead of starting one")
    args = p.parse_args()
    if args.redis_url:
        uvloop.run(run(args, args.redis_url))
        return
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as service:
        uvloop.run(run(args, f"redis://{service.host}:{service.port}/0"))


if __name__ == "__main__":
    main()
