"""Fuzz the gateway's public port: raw-socket HTTP cases and signed, structure-aware bodies.

Starts a throwaway redis-server and `gateway serve` (`--workers N`) on 127.0.0.1 with the
accounts of the test config (those tests/corpus/ names), then plays `--cases` cases, about
`--raw-share` of them raw HTTP (benchmarks/_fuzz_http.py: request lines, headers, framing and
smuggling shapes, chunking, pipelines, slow clients, early close, byte damage) and the rest
signed webhooks for every endpoint mutated from the corpus (benchmarks/_fuzz_bodies.py),
`--concurrency` at a time, in batches. After each batch it checks that the gateway and its
workers are alive and the port answers, and that every signed body answered 200 left its
events in the streams or itself in the dead letters (benchmarks/_fuzz_check.py). First it
posts every corpus seed once, unmutated (made unique), as a calibration of the oracle.

Reports cases, crashes, 5xx answers, events lost, smuggled requests, tracebacks in the
gateway's log, the answer histogram and the gateway's RSS (its processes, workers and their
helper processes, each also on its own) after a warm-up of `--warmup` signed bodies with
large mutations only (the allocators' high-water marks): the median of the first three
checks against that of the last three, flat within 10 %; and the fuzzer's own longest
event-loop stall (a case it answered late says nothing about the gateway then).
Exit 1 when any of those fails. Deterministic by `--seed`: case k is the same bytes in every
run (`--only K` replays one).

`--freeze S` stops every gateway process (SIGSTOP, SIGCONT S seconds later) every
`--freeze-every` seconds while the cases run: a gateway the machine gives no CPU for a while,
past `redis.timeout_seconds` (2 s) with S = 2.5. Redis keeps answering meanwhile, so a 503
then is the gateway taking its own stall for Redis's (router/scriptpipe.py).

    .venv/bin/python benchmarks/fuzz.py --cases 10000 --seed 1
    .venv/bin/python benchmarks/fuzz.py --cases 1000000 --workers 2 --json fuzz.json
    .venv/bin/python benchmarks/fuzz.py --cases 3000 --warmup 300 --freeze 2.5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import uvloop
from _fuzz_bodies import SignedCase, load_seeds, signed_case
from _fuzz_check import Ledger
from _fuzz_http import RawCase, play, raw_case
from _fuzz_stack import HEAD_TIMEOUT_S, Stack, stack

RSS_FLAT = 0.10
SAMPLES = 10
"""Examples kept per kind of failure."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    p.add_argument("--raw-share", type=float, default=0.5, help="share of raw HTTP cases")
    p.add_argument("--concurrency", type=int, default=32, help="cases in flight")
    p.add_argument("--batch", type=int, default=1000, help="cases between checks")
    p.add_argument("--warmup", type=int, default=1000, help="large signed bodies first")
    p.add_argument("--only", type=int, help="play only case K (and report it)")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--keep-log", type=Path, help="copy the gateway's log here at the end")
    p.add_argument("--freeze", type=float, default=0.0, help="stop the gateway S seconds...")
    p.add_argument("--freeze-every", type=float, default=4.0, help="...every S seconds")
    return p.parse_args(argv)


@dataclass
class Report:
    cases: int = 0
    raw_cases: int = 0
    signed_cases: int = 0
    calibration_cases: int = 0
    crashes: list[str] = field(default_factory=list)
    port_stopped_answering: int = 0
    answers_5xx: int = 0
    lost: int = 0
    smuggled: int = 0
    log_tracebacks: int = 0
    """Tracebacks in the gateway's log (a handler raised on some input)."""
    unexpected: int = 0
    """Well-formed requests (pipelines, slow clients, valid chunking) answered otherwise."""
    hung: int = 0
    checked_bodies: int = 0
    events_unchecked: int = 0
    published_events: int = 0
    dead_letters: int = 0
    rss_start_bytes: int = 0
    rss_before_bytes: int = 0
    rss_after_bytes: int = 0
    rss_max_bytes: int = 0
    rss_change: float = 0.0
    rss_by_process: dict[str, list[float]] = field(default_factory=dict)
    """MiB of each process (by role) at each check, the first after the warm-up."""
    seconds: float = 0.0
    client_lag_max_s: float = 0.0
    """The fuzzer's own event loop: its longest stall (making a large case is CPU work). A
    case whose answer came late, or never, while it stalled says nothing about the gateway."""
    client_lag_by_batch: list[float] = field(default_factory=list)
    freezes: int = 0
    """Times every gateway process was stopped (`--freeze`) while cases ran."""
    histogram: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    seed: int = 0
    workers: int = 1

    @property
    def rss_flat(self) -> bool:
        return abs(self.rss_change) <= RSS_FLAT

    @property
    def ok(self) -> bool:
        bad = (self.crashes, self.port_stopped_answering, self.answers_5xx, self.lost,
               self.smuggled, self.log_tracebacks)  # fmt: skip
        return not any(bad) and self.rss_flat

    def sample(self, kind: str, text: str) -> None:
        kept = self.samples.setdefault(kind, [])
        if len(kept) < SAMPLES:
            kept.append(text)


class LagWatch:
    """How late this process's event loop wakes up: the fuzzer's own stalls."""

    TICK_S = 0.05

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.TICK_S
            await asyncio.sleep(self.TICK_S)
            self.worst = max(self.worst, loop.time() - due)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def take(self) -> float:
        """The longest stall since the last `take`."""
        worst, self.worst = self.worst, 0.0
        return worst

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def __str__(self) -> str:  # for a sample: how long the fuzzer had stalled by then
        return f"fuzzer stalled {self.worst:.1f} s"


class Freezer:
    """Stops every gateway process (SIGSTOP) for `seconds`, every `every` seconds, until
    stopped; never during a check (`paused`), which would take the stall for a hang."""

    def __init__(self, processes: Callable[[], list[int]], seconds: float, every: float) -> None:
        self.processes = processes
        self.seconds = seconds
        self.every = max(every, seconds)
        self.count = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def _freeze(self) -> None:
        while True:
            await asyncio.sleep(self.every - self.seconds)
            async with self._lock:
                stopped = self._signal(self.processes(), signal.SIGSTOP)
                try:
                    await asyncio.sleep(self.seconds)
                finally:
                    self._signal(stopped, signal.SIGCONT)
                self.count += 1

    @staticmethod
    def _signal(pids: list[int], signum: int) -> list[int]:
        sent = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
                sent.append(pid)
        return sent

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        async with self._lock:
            yield

    def start(self) -> None:
        if self.seconds > 0:
            self._task = asyncio.get_running_loop().create_task(self._freeze())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task  # (its finally resumes the processes)


class Run:
    """One fuzzing run against a started stack."""

    def __init__(self, args: argparse.Namespace, stack_: Stack) -> None:
        self.args = args
        self.stack = stack_
        self.seeds = load_seeds()
        self.ledger = Ledger()
        self.report = Report(seed=args.seed, workers=args.workers)
        self.histogram: Counter[str] = Counter()
        self.rss: list[int] = []
        self.lag = LagWatch()
        self.freezer = Freezer(stack_.processes, args.freeze, args.freeze_every)

    def is_raw(self, k: int) -> bool:
        share: float = self.args.raw_share
        return random.Random(f"{self.args.seed}/kind/{k}").random() < share

    async def cases(self, numbers: list[int], phase: str = "run") -> None:
        queue = iter(numbers)
        workers = [self._worker(queue, phase) for _ in range(self.args.concurrency)]
        await asyncio.gather(*workers)

    async def _worker(self, queue: Any, phase: str) -> None:
        poster = Poster(self.stack.port)
        try:
            for k in queue:
                if phase == "calibration":
                    await self._signed(poster, signed_case(self.seeds, self.args.seed, k, 0))
                elif phase == "warmup":
                    case = signed_case(self.seeds, self.args.seed, k, heavy=True)
                    await self._signed(poster, case)
                elif self.is_raw(k):
                    await self._raw(raw_case(self.args.seed, k))
                else:
                    await self._signed(poster, signed_case(self.seeds, self.args.seed, k))
        finally:
            poster.close()

    async def _raw(self, case: RawCase) -> None:
        self.report.raw_cases += 1
        try:
            outcome = await play(self.stack.port, case)
        except OSError as exc:
            self.histogram["raw:connect-failed"] += 1
            self.report.sample("connect", f"k={case.k} {case.family}: {exc}")
            return
        for status in outcome.statuses:
            self._count("raw", status, f"k={case.k} {case.family}")
        if not outcome.statuses:
            self.histogram["raw:no-answer"] += 1
        if outcome.garbage:
            self.histogram["raw:not-http"] += 1
            self.report.sample("not-http", f"k={case.k} {case.family}")
        if outcome.hung:
            self.report.hung += 1
            self.report.sample("hung", f"k={case.k} {case.family} ({self.lag})")
        late = outcome.write_s > HEAD_TIMEOUT_S * 0.9 or outcome.stalled
        if late and case.expected is not None:
            self.histogram["raw:client-stalled"] += 1
        elif case.expected is not None and outcome.statuses[: len(case.expected)] != case.expected:
            self.report.unexpected += 1
            self.report.sample(
                "unexpected",
                f"k={case.k} {case.family}: {outcome.statuses} != {case.expected} ({self.lag})",
            )
        for position, message_id in case.tokens:
            if position < len(outcome.statuses) and outcome.statuses[position] == 200:
                self.ledger.expect_ids(case.k, case.family, frozenset({message_id}))
        if case.forbidden is not None:
            self.ledger.forbid(case.forbidden, case.k)

    async def _signed(self, poster: Poster, case: SignedCase) -> None:
        self.report.signed_cases += 1
        where = f"k={case.k} {case.seed} {'+'.join(case.mutations) or 'seed'}"
        try:
            status = await poster.post(case, self.args.seed)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            # A signed webhook left without an answer (twice, on fresh connections).
            self.histogram["signed:no-answer"] += 1
            self.report.unexpected += 1
            self.report.sample("unexpected", f"{where}: no answer: {exc!r} ({self.lag})")
            return
        self._count("signed", status, where)
        if status != 200 and not (status == 401 and case.cross_path):
            # (A body signed for another Meta channel than its path's and mutated past
            # recognition is rightly a bad signature for the path.)
            self.report.sample(f"signed-{status}", where)
        if status == 200:
            self.ledger.expect(case.k, where, case.channel, case.key, case.body, case.token)

    def _count(self, kind: str, status: int, where: str) -> None:
        self.histogram[f"{kind}:{status}"] += 1
        if status >= 500:
            self.report.answers_5xx += 1
            self.report.sample("5xx", f"{status} {where}")

    async def check(self, client: aioredis.Redis, cases: str = "before the cases") -> None:
        """After a batch (`cases`: which, for the samples): alive, answering, nothing lost
        or smuggled."""
        async with self.freezer.paused():
            await self._check(client, cases)

    async def _check(self, client: aioredis.Redis, cases: str) -> None:
        lag = round(self.lag.take(), 3)
        self.report.client_lag_by_batch.append(lag)
        self.report.client_lag_max_s = max(self.report.client_lag_max_s, lag)
        self.report.crashes = self.stack.crashes()
        tracebacks = self.stack.tracebacks()
        for line in tracebacks[self.report.log_tracebacks : SAMPLES]:
            self.report.sample("traceback", f"{cases}: {line}")
        self.report.log_tracebacks = len(tracebacks)
        if not self.stack.answers():
            self.report.port_stopped_answering += 1
        await self.ledger.verify(client)
        parts = self.stack.rss_by_process()
        rss = sum(parts.values())
        series = self.report.rss_by_process
        for role, size in parts.items():
            series.setdefault(role, [0.0] * (len(self.rss))).append(round(size / 2**20, 1))
        for role, sizes in series.items():
            if role not in parts:
                sizes.append(0.0)
        self.report.rss_max_bytes = max(self.report.rss_max_bytes, rss)
        self.rss.append(rss)
        # Before: the median of the first three checks (after the warm-up: the allocators'
        # high-water marks reached with the largest bodies; and after the first two batches);
        # after: the median of the last three. Medians both: a worker hands freed memory back
        # every server.memory_release_seconds, so one reading lands anywhere in that cycle.
        self.report.rss_before_bytes = int(statistics.median(self.rss[:3]))
        self.report.rss_after_bytes = int(statistics.median(self.rss[-3:]))

    def finish(self, started: float) -> Report:
        report, ledger = self.report, self.ledger
        report.cases = report.raw_cases + report.signed_cases - report.calibration_cases
        report.lost, report.smuggled = len(ledger.lost), len(ledger.smuggled)
        for k, seed, why in ledger.lost[:SAMPLES]:
            report.sample("lost", f"k={k} {seed}: {why}")
        for k in ledger.smuggled[:SAMPLES]:
            report.sample("smuggled", f"k={k}")
        report.checked_bodies, report.events_unchecked = ledger.checked, ledger.events_unchecked
        report.published_events, report.dead_letters = ledger.published, ledger.deadletters
        before = report.rss_before_bytes or 1
        report.rss_change = (report.rss_after_bytes - before) / before
        report.histogram = dict(sorted(self.histogram.items()))
        report.seconds = round(time.monotonic() - started, 1)
        return report


CHUNKED_SHARE = 0.2


def _chunks(rng: random.Random, body: bytes) -> bytes:
    out, at = [], 0
    while at < len(body):
        size = rng.choice((1, 7, 100, 4096, 65536, len(body)))
        out.append(b"%x\r\n%s\r\n" % (len(body[at : at + size]), body[at : at + size]))
        at += size
    return b"".join(out) + b"0\r\n\r\n"


class Poster:
    """One keep-alive connection posting signed webhooks, opened again when the server
    closes it."""

    TIMEOUT_S = 60.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, case: SignedCase, seed: int) -> int:
        """One signed case; a fifth of them chunked, so aiohttp's side reads them (the fast
        path takes Content-Length bodies only)."""
        rng = random.Random(f"{seed}/framing/{case.k}")
        if rng.random() < CHUNKED_SHARE:
            framing, body = "Transfer-Encoding: chunked", _chunks(rng, case.body)
        else:
            framing, body = f"Content-Length: {len(case.body)}", case.body
        head = f"POST {case.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
            f"{n}: {v}\r\n" for n, v in case.headers.items()
        ) + f"{framing}\r\n\r\n"  # fmt: skip
        for attempt in range(2):
            try:
                return await asyncio.wait_for(self._exchange(head.encode() + body), self.TIMEOUT_S)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
            except TimeoutError:
                self.close()  # its answer may still come: not on a connection used again
                raise
        raise AssertionError("unreachable")

    async def _exchange(self, request: bytes) -> int:
        if self.conn is None:
            self.conn = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.conn
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            close = close or line == b"connection: close"
        await reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            self.conn = None


async def fuzz(args: argparse.Namespace, stack_: Stack) -> Report:
    started = time.monotonic()
    run = Run(args, stack_)
    client = aioredis.Redis.from_url(stack_.redis_url)
    try:
        run.report.rss_start_bytes = stack_.rss()
        run.lag.start()
        if args.only is not None:
            await run.cases([args.only])
            await run.check(client)
            return run.finish(started)
        calibration = list(range(args.cases, args.cases + len(run.seeds)))
        await run.cases(calibration, "calibration")
        warmup = range(calibration[-1] + 1, calibration[-1] + 1 + args.warmup)
        await run.cases(list(warmup), "warmup")
        run.report.calibration_cases = len(calibration) + len(warmup)
        run.rss.clear()
        run.report.rss_by_process.clear()
        await run.check(client)  # RSS "before"
        run.freezer.start()
        for start in range(0, args.cases, args.batch):
            end = min(start + args.batch, args.cases)
            await run.cases(list(range(start, end)))
            await run.check(client, f"cases {start}-{end - 1}")
            if not args.quiet:
                _progress(run, min(start + args.batch, args.cases), started)
            if run.report.crashes or run.report.port_stopped_answering:
                break
        return run.finish(started)
    finally:
        await run.freezer.stop()
        run.report.freezes = run.freezer.count
        run.lag.stop()
        await client.aclose()


def _progress(run: Run, done: int, started: float) -> None:
    r, ledger = run.report, run.ledger
    mib = r.rss_after_bytes / 2**20
    print(f"{done:>9} cases {time.monotonic() - started:7.1f} s  5xx {r.answers_5xx}  "
          f"lost {len(ledger.lost)}  smuggled {len(ledger.smuggled)}  "
          f"crashes {len(r.crashes)}  rss {mib:.1f} MiB ("
          + " ".join(f"{v[-1]:.0f}" for v in r.rss_by_process.values()) + ")",
          file=sys.stderr, flush=True)  # fmt: skip


def print_report(report: Report) -> None:
    mib = 2**20
    rows = [
        ("cases", f"{report.cases} ({report.raw_cases - 0} raw HTTP, "
                  f"{report.signed_cases - report.calibration_cases} signed bodies; "
                  f"+{report.calibration_cases} calibration and warm-up), seed {report.seed}, "
                  f"{report.workers} worker(s), {report.seconds} s"),
        ("crashes", str(len(report.crashes) + report.port_stopped_answering)),
        ("5xx answers", str(report.answers_5xx)),
        ("events lost", f"{report.lost} (of {report.checked_bodies} bodies checked; "
                        f"{report.published_events} events, {report.dead_letters} dead letters; "
                        f"{report.events_unchecked} events without a fresh message id unchecked)"),
        ("smuggled", str(report.smuggled)),
        ("tracebacks", f"{report.log_tracebacks} in the gateway's log"),
        ("unexpected", f"{report.unexpected} well-formed requests answered otherwise"),
        ("hung", str(report.hung)),
        ("fuzzer lag", f"{report.client_lag_max_s:.2f} s at most (its own event loop's stalls)"),
        ("freezes", f"{report.freezes} (every gateway process stopped for a while, --freeze)"),
        ("RSS", f"{report.rss_before_bytes / mib:.1f} MiB after the warm-up -> "
                f"{report.rss_after_bytes / mib:.1f} MiB in the last ({report.rss_change:+.1%}; "
                f"start {report.rss_start_bytes / mib:.1f}, max {report.rss_max_bytes / mib:.1f})"),
    ]  # fmt: skip
    for role, sizes in report.rss_by_process.items():
        first, last = statistics.median(sizes[:3]), statistics.median(sizes[-3:])
        rows.append((f"  {role}", f"{first:.1f} -> {last:.1f} MiB (max {max(sizes):.1f})"))
    for name, value in rows:
        print(f"{name:<12} {value}")
    print("answers     " + ", ".join(f"{k} {v}" for k, v in report.histogram.items()))
    for kind, texts in report.samples.items():
        for text in texts:
            print(f"  {kind}: {text}")
    print("OK" if report.ok else "FAILED")


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # unwinds: the stack is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    with (
        tempfile.TemporaryDirectory(prefix="gateway-fuzz-") as tmp,
        stack(Path(tmp), args.workers) as stack_,
    ):
        report = uvloop.run(fuzz(args, stack_))
        if args.keep_log is not None and stack_.gateway.stderr_path is not None:
            shutil.copyfile(stack_.gateway.stderr_path, args.keep_log)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
