"""The journal (gateway/journal.py): Twilio never redelivers, so while Redis cannot take its
webhooks they are kept on disk, answered 200, and published once, in order, when Redis is
back; Meta's keep getting 503. Against real redis-servers of the tests' own (stopped and
started again on one port), the session's (stalled with SIGSTOP), and real gateway
processes killed with -9."""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

import gateway.journal as journal_module
from adapters.twilio import TWIML_OK
from gateway.app import create_app
from gateway.config import Settings
from gateway.embedded import EmbeddedRedis, free_port
from gateway.journal import (
    HEADER,
    Journal,
    JournalError,
    JournalFull,
    Record,
    frame,
    read_segment,
)
from router.outcome import RouterUnavailable
from tests.conftest import (
    NUMBER_A,
    TEST_CONFIG,
    TWILIO_A,
    TWILIO_SID,
    change,
    envelope,
    make_settings,
    stream,
    text_message,
    twilio_post,
    wa_body,
    wa_headers,
)
from tests.stall import redis_stalled
from tests.test_workers import worker_pids

ROOT = Path(__file__).parent.parent
COMMAND = (sys.executable, "-m", "gateway", "serve")
CONTACT = "5511987650000"
INBOX = "gw:inbox:sales"
"""TWILIO_A's assistant's inbox."""


def sid(n: int) -> str:
    return f"SM{n:032x}"


def message(message_sid: str, text: str = "oi") -> list[tuple[str, str]]:
    """An inbound WhatsApp text to TWILIO_A, as Twilio posts it."""
    return [
        ("MessageSid", message_sid),
        ("SmsMessageSid", message_sid),
        ("SmsSid", message_sid),
        ("AccountSid", TWILIO_SID),
        ("From", f"whatsapp:+{CONTACT}"),
        ("To", f"whatsapp:{TWILIO_A}"),
        ("WaId", CONTACT),
        ("ProfileName", "Ana"),
        ("Body", text),
        ("NumMedia", "0"),
        ("MessageType", "text"),
        ("SmsStatus", "received"),
        ("ApiVersion", "2010-04-01"),
    ]


def journaled_settings(redis_url: str, journal_dir: Path, **server: Any) -> Settings:
    """The test config with its journal in `journal_dir`, retried every 0.1 s at most."""
    settings = make_settings(redis_url)
    changed = msgspec.structs.replace(
        settings.server,
        journal_dir=str(journal_dir),
        journal_retry_max_seconds=0.1,
        **server,
    )
    return msgspec.structs.replace(settings, server=changed)


def segments(journal_dir: Path) -> list[Path]:
    return sorted(journal_dir.glob("*/*.seg"))


async def eventually(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


class _SamePort(EmbeddedRedis):
    def _check_free(self) -> None:
        """No check: the port is the one the stopped server just left (its connections
        linger in TIME_WAIT, which redis-server's SO_REUSEADDR ignores)."""


class OwnRedis:
    """A redis-server of this test's own on a fixed port, stopped and started again there;
    with `data_dir`, it keeps its data (append-only file) across the restart."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._data_dir = data_dir
        self._server: EmbeddedRedis | None = None

    def start(self) -> OwnRedis:
        self._server = _SamePort(self.port, self._data_dir).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis").start()
    yield server
    server.stop()


async def post_twilio(client: TestClient, params: list[tuple[str, str]]) -> tuple[int, str, str]:
    body, headers = twilio_post(params)
    resp = await client.post("/webhooks/twilio", data=body, headers=headers)
    return resp.status, await resp.text(), resp.content_type


async def post_whatsapp(client: TestClient, wamid: str) -> int:
    contact, msg = text_message(wamid)
    body = wa_body(envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[msg])))
    resp = await client.post("/webhooks/whatsapp", data=body, headers=wa_headers(body))
    return resp.status


def metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def journaled(text: str, outcome: str) -> float:
    """`gateway_journal_webhooks_total` of Twilio's webhooks with this outcome."""
    return metric(text, f'gateway_journal_webhooks_total{{channel="twilio",outcome="{outcome}"}}')


async def scraped(client: TestClient) -> str:
    return await (await client.get("/metrics")).text()


def on_disk(journal_dir: Path) -> int:
    return sum(path.stat().st_size for path in segments(journal_dir))


# --- the journal on its own --------------------------------------------------------------


def _record(n: int) -> Record:
    return Record("twilio", None, 1_790_000_000 + n, f"MessageSid={sid(n)}&Body=m{n}".encode())


async def _kept(directory: Path, records: list[Record], slot: int = 1) -> None:
    """`records` appended (and on disk) by a journal that is then closed, as a process that
    stopped would leave them."""
    journal = Journal(directory, slot, 1 << 20)
    for record in records:
        await journal.append(record)
    await journal.aclose()


class Collect:
    """A `publish` that keeps what it is given; `fail_at`: the record it raises
    RouterUnavailable for (once), as when Redis stops in the middle of a replay."""

    def __init__(self, fail_at: Record | None = None) -> None:
        self.records: list[Record] = []
        self._fail_at = fail_at

    async def __call__(self, record: Record) -> None:
        if record == self._fail_at:
            self._fail_at = None
            raise RouterUnavailable("redis went away")
        self.records.append(record)


async def test_records_come_back_in_order_once_and_are_gone_after_their_replay(
    tmp_path: Path,
) -> None:
    records = [_record(n) for n in range(5)]
    await _kept(tmp_path, records)
    journal = Journal(tmp_path, 1, 1 << 20)
    stopped = Collect(fail_at=records[3])  # Redis stops before the fourth
    with pytest.raises(RouterUnavailable):
        await journal.replay(stopped)
    assert stopped.records == records[:3]
    assert segments(tmp_path)  # nothing dropped before it is all published
    resumed = Collect()
    assert await journal.replay(resumed) == 2
    assert resumed.records == records[3:]  # where it stopped, none of the first three again
    assert segments(tmp_path) == []
    assert await journal.replay(Collect()) == 0
    await journal.aclose()


async def test_appends_during_a_replay_are_replayed_after_it_in_a_new_segment(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path, 1, 1 << 20)
    first = [_record(n) for n in range(3)]
    for record in first:
        await journal.append(record)
    later = [_record(n) for n in range(3, 6)]
    published: list[Record] = []

    async def publish_and_append(record: Record) -> None:
        published.append(record)
        if record == first[0]:  # webhooks keep failing into the journal meanwhile
            await asyncio.gather(*(journal.append(r) for r in later))

    assert await journal.replay(publish_and_append) == 6
    assert published == first + later
    assert segments(tmp_path) == [] and journal.size == 0
    await journal.aclose()


def test_a_torn_last_record_is_ignored_at_every_cut_never_misread() -> None:
    frames = [frame(_record(n)) for n in range(4)]
    whole = b"".join(frames[:3])
    for cut in range(1, len(frames[3])):
        read = read_segment(whole + frames[3][:cut])
        assert [r for r, _ in read.records] == [_record(n) for n in range(3)]
        assert read.torn == cut and read.damaged == 0
    # A last record whole in length but with a byte changed (a sector that never made it).
    last = bytearray(frames[3])
    last[-1] ^= 0xFF
    read = read_segment(whole + bytes(last))
    assert len(read.records) == 3 and read.torn == len(last)


async def test_damage_between_good_records_is_skipped_and_the_segment_kept_aside(
    tmp_path: Path,
) -> None:
    records = [_record(n) for n in range(3)]
    await _kept(tmp_path, records)
    [path] = segments(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(frame(records[0])) + HEADER.size + 3] ^= 0xFF  # inside the second record
    path.write_bytes(bytes(data))
    journal = Journal(tmp_path, 1, 1 << 20)
    published = Collect()
    assert await journal.replay(published) == 2
    assert published.records == [records[0], records[2]]
    assert segments(tmp_path) == []
    assert [p.name for p in (tmp_path / "1").glob("*.damaged")] == [path.name + ".damaged"]
    await journal.aclose()


async def test_a_slot_of_a_running_process_is_left_alone_and_a_free_one_is_taken_over(
    tmp_path: Path,
) -> None:
    running = Journal(tmp_path, 1, 1 << 20)
    theirs = [_record(n) for n in range(2)]
    for record in theirs:
        await running.append(record)  # slot 1: taken, and held
    dead = [_record(n) for n in range(10, 12)]
    await _kept(tmp_path, dead, slot=3)  # slot 3: its process is gone
    ours = Journal(tmp_path, 1, 1 << 20)
    await ours.append(_record(20))  # slot 1 is held: ours is the next free one
    assert sorted({p.parent.name for p in segments(tmp_path)}) == ["1", "2", "3"]
    published = Collect()
    assert await ours.replay(published) == 3
    assert published.records == [*dead, _record(20)]  # the dead slot's first, then its own
    assert [p.parent.name for p in segments(tmp_path)] == ["1"]
    await running.aclose()  # now slot 1 is free too
    assert await ours.replay(published) == 2
    assert published.records[3:] == theirs
    assert segments(tmp_path) == []
    await ours.aclose()


async def test_the_bytes_waiting_are_reported_with_those_of_slots_taken_over(
    tmp_path: Path,
) -> None:
    dead = [_record(n) for n in range(10, 12)]
    await _kept(tmp_path, dead, slot=3)  # a process that is gone left these
    journal = Journal(tmp_path, 1, 1 << 20)
    reported: list[int] = []
    journal.report_to(reported.append)
    assert reported == [0]  # nothing adopted before the first replay
    await journal.append(_record(0))
    assert (
        reported[-1]
        == journal.waiting
        == journal.size
        == on_disk(tmp_path) - sum(len(frame(r)) for r in dead)
    )
    down = Collect(fail_at=dead[0])
    with pytest.raises(RouterUnavailable):
        await journal.replay(down)  # slot 3 taken over, Redis down: its bytes wait here too
    assert reported[-1] == journal.waiting == on_disk(tmp_path)
    assert journal.size < journal.waiting  # the bound counts this process's own only
    assert await journal.replay(Collect()) == 3
    assert reported[-1] == journal.waiting == journal.size == 0
    await journal.aclose()


async def test_a_restarted_worker_keeps_its_slot_while_redis_is_still_down(
    tmp_path: Path,
) -> None:
    before = [_record(n) for n in range(3)]
    await _kept(tmp_path, before)  # the worker's previous run, killed during the outage
    journal = Journal(tmp_path, 1, 1 << 20)
    down = Collect(fail_at=before[0])
    with pytest.raises(RouterUnavailable):
        await journal.replay(down)  # at start: its old slot taken over, Redis still down
    await journal.append(_record(3))  # and the outage goes on
    assert [p.parent.name for p in segments(tmp_path)] == ["1", "1"]  # no second slot
    assert journal.waiting == journal.size == on_disk(tmp_path)  # counted once, as its own
    published = Collect()
    assert await journal.replay(published) == 4
    assert published.records == [*before, _record(3)]
    assert segments(tmp_path) == [] and journal.size == 0
    await journal.aclose()


async def test_a_journal_over_its_bound_or_on_a_failing_disk_refuses_and_stays_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = len(frame(_record(0)))
    journal = Journal(tmp_path, 1, 2 * size)
    await journal.append(_record(0))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_datasync", full)
    with pytest.raises(JournalError, match="No space left"):
        await journal.append(_record(1))
    monkeypatch.undo()
    await journal.append(_record(2))
    with pytest.raises(JournalFull):
        journal.append(_record(3))
    published = Collect()
    assert await journal.replay(published) == 2
    assert published.records == [_record(0), _record(2)]  # the refused ones are not there
    await journal.append(_record(3))  # room again once replayed
    await journal.aclose()


# --- a gateway with a journal ------------------------------------------------------------


async def test_twilio_is_answered_200_while_redis_is_down_meta_503_and_all_published_once(
    aiohttp_client: Any, own_redis: OwnRedis, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    app = create_app(journaled_settings(own_redis.url, journal_dir), own_redis.url)
    client = await aiohttp_client(app)
    assert (await post_twilio(client, message(sid(0))))[0] == 200  # before the outage
    own_redis.stop()
    received = int(time.time())
    answers = [await post_twilio(client, message(sid(n), f"m{n}")) for n in range(1, 6)]
    assert set(answers) == {(200, TWIML_OK, "text/xml")}
    assert await post_twilio(client, message(sid(0))) == (200, TWIML_OK, "text/xml")  # again
    assert await post_whatsapp(client, "wamid.OUTAGE") == 503  # Meta retries: no journal
    answered = int(time.time())
    assert segments(journal_dir)
    text = await scraped(client)
    assert journaled(text, "kept") == 6  # the repeated sid(0) too: Redis could not say
    assert journaled(text, "replayed") == journaled(text, "refused") == 0
    assert metric(text, "gateway_journal_bytes") == on_disk(journal_dir) > 0
    await asyncio.sleep(1.1)  # the replay comes later than the webhooks' receipt
    own_redis.start()  # the same data: the first event and its dedup mark are still there
    redis = Redis.from_url(own_redis.url)
    try:

        async def replayed() -> bool:
            return not segments(journal_dir) and len(await stream(redis, INBOX)) >= 6

        await eventually(replayed)
        await asyncio.sleep(0.3)  # would a second copy of anything follow?
        events = await stream(redis, INBOX)
        assert [e["message_id"] for e in events] == [sid(n) for n in range(6)]
        assert [e["text"] for e in events[1:]] == [f"m{n}" for n in range(1, 6)]
        for event in events[1:]:  # as of their receipt, not of the replay
            assert received <= event["timestamp"] <= answered
        assert await redis.xlen("gw:inbox:support") == 0  # the WhatsApp message: 503, unkept
    finally:
        await redis.aclose()
    text = await (await client.get("/metrics")).text()
    assert metric(text, 'gateway_http_requests_total{channel="twilio",code="200"}') == 7
    assert metric(text, 'gateway_http_requests_total{channel="whatsapp",code="503"}') == 1
    events_total = 'gateway_events_total{channel="twilio",kind="message",type="text"}'
    assert metric(text, events_total) == 6
    assert metric(text, 'gateway_duplicates_total{channel="twilio",kind="message"}') == 1
    assert (journaled(text, "kept"), journaled(text, "replayed")) == (6, 6)
    assert journaled(text, "refused") == 0
    assert metric(text, "gateway_journal_bytes") == 0
    assert 'gateway_journal_webhooks_total{channel="whatsapp"' not in text  # Meta: 503 only


async def test_redis_stalled_past_its_timeout_still_publishes_each_event_once(
    aiohttp_client: Any, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    """A stopped Redis runs the calls it was sent once it resumes, also those the gateway
    gave up on and journaled: the replay finds them published and adds nothing."""
    journal_dir = tmp_path / "journal"
    settings = journaled_settings(redis_url, journal_dir)
    settings = msgspec.structs.replace(
        settings, redis=msgspec.structs.replace(settings.redis, timeout_seconds=0.3)
    )
    client = await aiohttp_client(create_app(settings, redis_url))
    assert (await post_twilio(client, message(sid(0))))[0] == 200  # the connection is open
    async with redis_stalled(redis_url, 1.0):
        answers = await asyncio.gather(*(post_twilio(client, message(sid(n))) for n in (1, 2, 3)))
        assert set(answers) == {(200, TWIML_OK, "text/xml")}
        assert segments(journal_dir)

    async def replayed() -> bool:
        return not segments(journal_dir)

    await eventually(replayed)
    await asyncio.sleep(0.3)
    events = await stream(redis, INBOX)
    assert sorted(e["message_id"] for e in events) == [sid(n) for n in range(4)]


async def test_a_full_journal_is_503_and_logged_and_what_it_kept_is_published(
    aiohttp_client: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = OwnRedis()  # not started yet: nothing listens on its port
    journal_dir = tmp_path / "journal"
    bound = 2 * len(frame(Record("twilio", None, 0, twilio_post(message(sid(1)))[0]))) + 10
    settings = journaled_settings(down.url, journal_dir, journal_max_bytes=bound)
    client = await aiohttp_client(create_app(settings, down.url))
    statuses = [(await post_twilio(client, message(sid(n))))[0] for n in (1, 2, 3)]
    assert statuses == [200, 200, 503]
    assert "the journal cannot keep a twilio webhook" in caplog.text
    assert "it is lost" in caplog.text
    text = await scraped(client)
    assert (journaled(text, "kept"), journaled(text, "refused")) == (2, 1)
    assert metric(text, "gateway_journal_bytes") == on_disk(journal_dir) <= bound
    down.start()
    redis = Redis.from_url(down.url)
    try:

        async def replayed() -> bool:
            return not segments(journal_dir) and await redis.xlen(INBOX) >= 2

        await eventually(replayed)
        assert [e["message_id"] for e in await stream(redis, INBOX)] == [sid(1), sid(2)]
        text = await scraped(client)
        assert (journaled(text, "replayed"), journaled(text, "refused")) == (2, 1)
        assert metric(text, "gateway_journal_bytes") == 0
    finally:
        await redis.aclose()
        down.stop()


async def test_a_disk_that_fails_a_write_is_503_and_the_journal_goes_on(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = OwnRedis()
    journal_dir = tmp_path / "journal"
    client = await aiohttp_client(create_app(journaled_settings(down.url, journal_dir), down.url))
    assert (await post_twilio(client, message(sid(1))))[0] == 200

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module, "_datasync", failing)
    assert (await post_twilio(client, message(sid(2))))[0] == 503
    monkeypatch.undo()
    assert (await post_twilio(client, message(sid(3))))[0] == 200
    text = await scraped(client)
    assert (journaled(text, "kept"), journaled(text, "refused")) == (2, 1)
    assert metric(text, "gateway_journal_bytes") == on_disk(journal_dir)  # the failed one cut
    down.start()
    redis = Redis.from_url(down.url)
    try:

        async def replayed() -> bool:
            return not segments(journal_dir) and await redis.xlen(INBOX) >= 2

        await eventually(replayed)
        assert [e["message_id"] for e in await stream(redis, INBOX)] == [sid(1), sid(3)]
    finally:
        await redis.aclose()
        down.stop()


async def test_a_journaled_body_that_no_longer_parses_is_dead_lettered_at_start(
    aiohttp_client: Any, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    unparsable = Record("twilio", None, 1_790_000_000, b"From=whatsapp%3A%2B1&Body=no+sid")
    good = Record("twilio", None, 1_790_000_001, twilio_post(message(sid(7)))[0])
    await _kept(journal_dir, [unparsable, good])
    client = await aiohttp_client(create_app(journaled_settings(redis_url, journal_dir), redis_url))

    async def replayed() -> bool:
        return not segments(journal_dir)

    await eventually(replayed)
    [letter] = await stream(redis, "gw:deadletter")
    assert (letter["reason"], letter["channel"]) == ("malformed_body", "twilio")
    assert base64.b64decode(letter["body_b64"]) == unparsable.body
    assert letter["received_at"] == unparsable.received_at
    [event] = await stream(redis, INBOX)
    assert (event["message_id"], event["timestamp"]) == (sid(7), good.received_at)
    text = await scraped(client)
    assert journaled(text, "replayed") == 2  # both left the journal, one as a dead letter
    assert journaled(text, "kept") == 0  # journaled by an earlier run
    assert metric(text, "gateway_journal_bytes") == 0


async def test_no_journal_is_made_on_disk_until_one_is_needed(
    aiohttp_client: Any, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    journal_dir = tmp_path / "journal"
    client = await aiohttp_client(create_app(journaled_settings(redis_url, journal_dir), redis_url))
    assert (await post_twilio(client, message(sid(1))))[0] == 200
    assert not journal_dir.exists()


# --- real gateway processes, killed with -9 ------------------------------------------------


class Gateway:
    """`python -m gateway serve` on the test config, with its journal in `journal_dir`."""

    def __init__(self, tmp: Path, redis_url: str) -> None:
        self.port = free_port()
        self.journal_dir = tmp / "journal"
        server = (
            f"server: {{host: 127.0.0.1, port: {self.port}, journal_dir: {self.journal_dir}, "
            "journal_retry_max_seconds: 0.1, drain_seconds: 0}"
        )
        self.config = tmp / "config.yaml"
        config = TEST_CONFIG.replace("server: {host: 127.0.0.1, port: 0}", server)
        assert str(self.journal_dir) in config
        self.config.write_text(config)
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "REDIS_CLUSTER": "false",
            **{name: "http://127.0.0.1:9" for name in ("GRAPH_URL", "BOT_URL", "META_URL")},
            **{name: "http://127.0.0.1:9" for name in ("IG_URL", "TWILIO_API")},
            "SEND_WAIT_MAX": "60",
            "CLAIM_IDLE": "30",
            "OUTBOUND_ENABLED": "false",
            "TAKEOVER": "900",
            "TMPDIR": str(tmp),
        }
        self.log_path = tmp / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, workers: int = 1) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*COMMAND, "--config", str(self.config), "--workers", str(workers)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def listening(self) -> None:
        async def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{self.port}/healthz") as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(up, 30)

    def kill(self) -> None:
        """SIGKILL to every process of it: workers first, then the supervisor."""
        assert self.proc is not None
        for pid in worker_pids(self.proc.pid):
            os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    async def post(self, params: list[tuple[str, str]]) -> tuple[int, str]:
        body, headers = twilio_post(params)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
            session.post(
                f"http://127.0.0.1:{self.port}/webhooks/twilio", data=body, headers=headers
            ) as resp,
        ):
            return resp.status, await resp.text()

    async def metrics(self) -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/metrics") as resp,
        ):
            return await resp.text()


@pytest.fixture
def gateway(tmp_path: Path, own_redis: OwnRedis) -> Iterator[Gateway]:
    process = Gateway(tmp_path, own_redis.url)
    yield process
    process.stop()


@pytest.fixture
async def own_client(own_redis: OwnRedis) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


@pytest.mark.parametrize(
    ("before", "after"), [(1, 1), (2, 1)], ids=["1-worker", "2-workers-then-1"]
)
async def test_redis_stopped_gateway_killed_9_both_restarted_every_event_published_once(
    gateway: Gateway, own_redis: OwnRedis, own_client: Redis, before: int, after: int
) -> None:
    """The issue's test. With two workers each keeps its own journal slot; restarted with
    one, that one takes over the slot no running worker holds."""
    gateway.start(before)
    await gateway.listening()
    assert (await gateway.post(message(sid(0))))[0] == 200
    own_redis.stop()
    answers = [await gateway.post(message(sid(n), f"m{n}")) for n in range(1, 11)]
    answers.append(await gateway.post(message(sid(0))))  # already published before
    assert set(answers) == {(200, TWIML_OK)}
    assert segments(gateway.journal_dir)
    text = await gateway.metrics()  # whichever worker answers: the sum over the workers
    assert journaled(text, "kept") == 11
    assert metric(text, "gateway_journal_bytes") == on_disk(gateway.journal_dir)
    gateway.kill()
    own_redis.start()
    await own_client.ping()
    assert await own_client.xlen(INBOX) == 1  # nothing of the outage reached Redis yet
    gateway.start(after)

    async def replayed() -> bool:
        return not segments(gateway.journal_dir) and await own_client.xlen(INBOX) >= 11

    await eventually(replayed, 30)
    await asyncio.sleep(0.5)
    events = await stream(own_client, INBOX)
    assert sorted(e["message_id"] for e in events) == [sid(n) for n in range(11)]
    if before == 1:  # one journal: in the order the webhooks came (two: each in its order)
        assert [e["text"] for e in events[1:]] == [f"m{n}" for n in range(1, 11)]
    assert "journal: replayed" in gateway.log()
    text = await gateway.metrics()
    assert (journaled(text, "kept"), journaled(text, "replayed")) == (0, 11)
    assert metric(text, "gateway_journal_bytes") == 0
