"""The gateway's own inbound work per webhook, in one process, without HTTP.

What the webhook handler does between reading the body and answering, for N signed webhooks:
signature check, `parse_webhook`, `InboundRouter.publish` through `ScriptPipe` to a real
throwaway redis-server, `Report.tally()`, and the metrics calls (`timed`, `tallied`,
`answered`). Prints this process's CPU time per webhook (Redis's own CPU is not counted),
so a change to the router, the adapters or the metrics shows without the HTTP stack's noise.

    .venv/bin/python benchmarks/hotpath.py                    # 1-item WhatsApp, 64 in flight
    .venv/bin/python benchmarks/hotpath.py --items 10 --concurrency 1
    .venv/bin/python benchmarks/hotpath.py --channel telegram
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from _payloads import Number, PayloadSpec, RequestFactory
from _procs import HOST, redis_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters import telegram, whatsapp
from adapters.schema import ParseError
from gateway.metrics import Metrics
from router.accounts import Account, Directory
from router.inbound import InboundRouter
from router.offload import parse_webhook
from router.scriptpipe import ScriptPipe
from router.settings import PolicySettings, RouterSettings

NUMBERS = (
    Number("100200300400500", "+15550001111", "200300400500600"),
    Number("100200300400600", "+5511955550000", "200300400500600"),
)
APP_SECRET = "bench_app_secret"
BOT_ID = "7000000001"
TELEGRAM_SECRET = "bench_secret"


def directory() -> Directory:
    return Directory(
        {
            ("whatsapp", NUMBERS[0].phone_number_id): Account(
                "whatsapp", NUMBERS[0].phone_number_id, "support", "t", True, 20.0,
                NUMBERS[0].display_phone_number, "coexistence",
            ),
            ("whatsapp", NUMBERS[1].phone_number_id): Account(
                "whatsapp", NUMBERS[1].phone_number_id, "sales", "t", True, 80.0,
                NUMBERS[1].display_phone_number, "cloud_api",
            ),
            ("telegram", BOT_ID): Account("telegram", BOT_ID, "support", "t", True),
        },
        {NUMBERS[0].waba_id: (NUMBERS[0].phone_number_id, NUMBERS[1].phone_number_id)},
    )  # fmt: skip


def bodies(channel: str, items: int, count: int) -> list[tuple[bytes, str | None]]:
    spec = PayloadSpec(channel, items, HOST, 0, APP_SECRET, NUMBERS, BOT_ID, TELEGRAM_SECRET, 1000)
    factory = RequestFactory(spec)
    out = []
    for i in range(count):
        body = factory.body(i)
        out.append(
            (body, whatsapp.sign(body, APP_SECRET.encode()) if channel == "whatsapp" else None)
        )
    return out


async def handle(
    router: InboundRouter, metrics: Metrics, channel: str, body: bytes, header: str | None
) -> None:
    """What gateway/handlers.py does for one webhook after reading its body."""
    if channel == "whatsapp":
        if not whatsapp.verify_signature(body, header, APP_SECRET.encode()):
            raise AssertionError("bad signature")
    elif not telegram.verify_secret(TELEGRAM_SECRET, TELEGRAM_SECRET):
        raise AssertionError("bad secret")
    now = int(time.time())
    started = time.perf_counter()
    try:
        parsed = parse_webhook(channel, body, now, BOT_ID)
    except ParseError as exc:
        raise AssertionError(exc) from exc
    publish_started = time.perf_counter()
    tally = (await router.publish(channel, parsed, body, now)).tally()
    done = time.perf_counter()
    metrics.timed(channel, done - publish_started, done - started)
    metrics.tallied(channel, tally)
    metrics.answered(channel, 200)


async def run(args: argparse.Namespace, url: str) -> None:
    pipe = ScriptPipe(url, 5.0)
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    router = InboundRouter(redis, directory(), RouterSettings(), PolicySettings(), pipe)
    metrics = Metrics()
    warm = bodies(args.channel, args.items, 2000)
    work = bodies(args.channel, args.items, args.count)

    async def drive(batch: list[tuple[bytes, str | None]]) -> None:
        queue = iter(batch)

        async def worker() -> None:
            for body, header in queue:
                await handle(router, metrics, args.channel, body, header)

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channel", choices=("whatsapp", "telegram"), default="whatsapp")
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
