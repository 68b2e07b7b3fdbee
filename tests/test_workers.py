"""`gateway serve --workers 2`: one port served by two worker processes under a supervisor,
against the real Redis of the test session.

Which worker answers a connection is the kernel's choice (SO_REUSEPORT), so every request
here goes on a fresh connection, and the access log (each line names its worker) shows that
both workers took part.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from gateway.embedded import free_port
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import (
    NUMBER_A,
    NUMBER_B,
    TEST_CONFIG,
    change,
    envelope,
    gateway_env,
    stream,
    text_message,
    wa_body,
    wa_headers,
)
from tests.test_multiprocess import deliveries, open_window, push

pytestmark = pytest.mark.cluster  # also runs against a Redis Cluster (--redis-cluster)

ROOT = Path(__file__).parent.parent
WORKERS = 2
WEBHOOKS = 40
SCRAPES = 20
DRAIN_S = 2.0
_ACCESS = re.compile(r' (worker-\d+) \S+ \[[^]]+\] "(\w+) (\S+) HTTP/1.1" (\d+)')


class Supervised:
    """The gateway with `--workers`, its stderr (both workers log there) in a file."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        server = (
            f"server: {{host: 127.0.0.1, port: {self.port}, drain_seconds: {DRAIN_S}, "
            "access_log: true}"
        )
        self.config = tmp / "config.yaml"
        self.config.write_text(TEST_CONFIG.replace("server: {host: 127.0.0.1, port: 0}", server))
        self.env = env
        self.log_path = tmp / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        args = ["serve", "--config", str(self.config), "--workers", str(WORKERS), *extra]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", *args],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=log,
            )
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> set[int]:
        assert self.proc is not None
        return worker_pids(self.proc.pid)

    async def listening(self, timeout_s: float = 30) -> None:
        """Until the supervisor says every worker listens."""
        await until(lambda: f"with {WORKERS} workers" in self.log(), timeout_s, self)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in worker_pids(self.proc.pid):
            os.kill(pid, signal.SIGKILL)

    def answered(self, method: str, path: str, status: int) -> Counter[str]:
        """Requests answered per worker, from the access log."""
        found = Counter[str]()
        for worker, m, p, code in _ACCESS.findall(self.log()):
            if (m, p, int(code)) == (method, path, status):
                found[worker] += 1
        return found


def worker_pids(supervisor: int) -> set[int]:
    """Live worker processes of `supervisor` (multiprocessing 'spawn' children)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == supervisor and state != "Z" and b"spawn_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running, or still holding its sockets. A killed process's main thread can show as a
    zombie while its other threads are still exiting; the last of them closes the files
    (the listening socket among them), so a zombie counts as gone once it is alone."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


async def until(
    check: Callable[[], object], timeout_s: float, gateway: Supervised | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if gateway is not None and gateway.proc is not None and gateway.proc.poll() is not None:
            raise AssertionError(f"gateway exited {gateway.proc.returncode}:\n{gateway.log()}")
        assert time.monotonic() < deadline, gateway.log() if gateway else "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraphAPI]:
    async with FakeGraphAPI({NUMBER_A: "token-a", NUMBER_B: "token-b"}) as fake:
        yield fake


@pytest.fixture
def gateway(tmp_path: Path, redis_url: str, graph: FakeGraphAPI) -> Iterator[Supervised]:
    # The metrics directory is a temporary one: here, where pytest cleans up, also when a
    # test kills the supervisor (which then cannot remove it).
    env = gateway_env(redis_url, GRAPH_URL=graph.base_url, TMPDIR=str(tmp_path))
    supervised = Supervised(tmp_path, env)
    yield supervised
    supervised.stop()


def fresh_connections() -> aiohttp.ClientSession:
    """Every request on a new connection, so the kernel picks a worker for each."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def post_webhook(session: aiohttp.ClientSession, url: str, wamid: str) -> int:
    contact, message = text_message(wamid)
    body = wa_body(
        envelope(change(NUMBER_A, "15550001111", contacts=[contact], messages=[message]))
    )
    async with session.post(
        f"{url}/webhooks/whatsapp", data=body, headers=wa_headers(body)
    ) as resp:
        return resp.status


async def post_partner_removed(url: str) -> None:
    body = wa_body(envelope({"field": "account_update", "value": {"event": "PARTNER_REMOVED"}}))
    async with (
        fresh_connections() as session,
        session.post(f"{url}/webhooks/whatsapp", data=body, headers=wa_headers(body)) as resp,
    ):
        assert resp.status == 200


def sample(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from the exposition text, None if absent."""
    inside = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{inside}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def scrape(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_counters_add_up_over_workers_whichever_answers_the_scrape(
    gateway: Supervised, redis: Redis
) -> None:
    gateway.start()
    await gateway.listening()
    async with fresh_connections() as session:
        statuses = await asyncio.gather(
            *(post_webhook(session, gateway.url, f"wamid.workers.{i}") for i in range(WEBHOOKS))
        )
        assert statuses == [200] * WEBHOOKS
        await post_partner_removed(gateway.url)
        texts = [await scrape(session, gateway.url) for _ in range(SCRAPES)]
    for text in texts:
        assert sample(text, "gateway_http_requests_total", channel="whatsapp", code="200") == (
            WEBHOOKS + 1
        )
        events = sample(
            text, "gateway_events_total", channel="whatsapp", kind="message", type="text"
        )
        assert events == WEBHOOKS
        assert sample(text, "gateway_webhook_seconds_count", channel="whatsapp") == WEBHOOKS + 1
        # The worker that took the account event knows best, whichever worker answers.
        connected = sample(text, "gateway_account_connected", account=NUMBER_A, channel="whatsapp")
        assert connected == 0
        assert sample(text, "gateway_draining") == 0
    messages = [e for e in await stream(redis, "gw:inbox:support") if e["kind"] == "message"]
    assert len(messages) == WEBHOOKS
    await until(
        lambda: sum(gateway.answered("GET", "/metrics", 200).values()) == SCRAPES, 5, gateway
    )
    # Both workers took webhooks and answered scrapes, so the sums above span processes.
    assert len(gateway.answered("POST", "/webhooks/whatsapp", 200)) == WORKERS
    assert len(gateway.answered("GET", "/metrics", 200)) == WORKERS


async def test_a_large_webhook_is_published_from_a_worker(
    gateway: Supervised, redis: Redis
) -> None:
    gateway.start()
    await gateway.listening()
    pairs = [
        text_message(f"wamid.large.{i}", f"1415555{i:04d}", body="x" * 2000) for i in range(200)
    ]
    value = change(
        NUMBER_A, "15550001111", contacts=[c for c, _ in pairs], messages=[m for _, m in pairs]
    )
    body = wa_body(envelope(value))
    assert len(body) > 262144  # server.offload_bytes: published by the worker's child process
    async with (
        fresh_connections() as session,
        session.post(
            f"{gateway.url}/webhooks/whatsapp", data=body, headers=wa_headers(body)
        ) as resp,
    ):
        assert resp.status == 200
    messages = [e for e in await stream(redis, "gw:inbox:support") if e["kind"] == "message"]
    assert len(messages) == 200


async def test_sigterm_drains_every_worker_and_the_supervisor_exits_0(
    gateway: Supervised, redis: Redis
) -> None:
    proc = gateway.start()
    await gateway.listening()
    workers = gateway.workers()
    assert len(workers) == WORKERS
    proc.send_signal(signal.SIGTERM)
    async with fresh_connections() as session:
        await asyncio.sleep(0.2)
        for _ in range(10):  # every worker is draining: readiness is 503 from all of them
            async with session.get(f"{gateway.url}/readyz") as resp:
                assert resp.status == 503
                assert (await resp.json())["draining"] is True
        text = await scrape(session, gateway.url)
        assert sample(text, "gateway_draining") == 1
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert not any(alive(pid) for pid in workers)
    log = gateway.log()
    assert log.count("drained, exiting") == WORKERS and "all workers stopped" in log
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", gateway.port), timeout=1).close()


async def test_a_killed_worker_is_restarted_and_a_halt_survives_it(
    gateway: Supervised, graph: FakeGraphAPI, redis: Redis
) -> None:
    gateway.start()
    await gateway.listening()
    await open_window(gateway.port)
    graph.fail(190)  # a credential error halts the number until the gateway restarts
    await push(redis, 1, "before")
    [halted] = await deliveries(redis, 1, timeout_s=10)
    assert (halted["outcome"], halted["provider_code"]) == ("failed", 190)

    victim, survivor = sorted(gateway.workers())
    os.kill(victim, signal.SIGKILL)
    await until(lambda: not alive(victim), 5, gateway)
    async with fresh_connections() as session:
        for _ in range(30):  # its socket is gone with it: no connection lands there
            async with session.get(f"{gateway.url}/healthz") as resp:
                assert resp.status == 200
    await until(lambda: len(gateway.workers() - {victim}) == WORKERS, 20, gateway)
    [successor] = gateway.workers() - {survivor}
    assert "exited with signal SIGKILL" in gateway.log()

    # Its reply workers started (and would have cleared the halt by now if they did).
    await until(lambda: re.search(f"as consumer \\S+-{successor}-", gateway.log()), 20, gateway)
    # The restarted worker did not take its start for an operator's "fixed".
    await push(redis, 1, "after")
    found = await deliveries(redis, 2, timeout_s=10)
    after = next(d for d in found if d["command_id"] == "after-0")
    assert (after["outcome"], after["provider_code"]) == ("failed", 190)
    assert len(graph.requests) == 1
    async with fresh_connections() as session:
        for _ in range(6):
            async with session.get(f"{gateway.url}/readyz") as resp:
                assert resp.status == 200
                body = await resp.json()
                assert body["accounts"] == {f"whatsapp:{NUMBER_A}": {"halted": "190"}}
            text = await scrape(session, gateway.url)
            halt = sample(text, "gateway_account_halted", account=NUMBER_A, channel="whatsapp")
            assert halt == 1
            # Counted by whichever worker, the window-opening webhook stays counted.
            requests = sample(text, "gateway_http_requests_total", channel="whatsapp", code="200")
            assert requests == 1


async def test_workers_drain_when_the_supervisor_is_killed(gateway: Supervised) -> None:
    proc = gateway.start()
    await gateway.listening()
    workers = gateway.workers()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    await until(lambda: not any(alive(pid) for pid in workers), 10 + DRAIN_S)
    assert gateway.log().count("the supervisor is gone: draining") == WORKERS


def test_a_port_in_use_stops_startup_with_the_key_named(gateway: Supervised) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", gateway.port))
        taken.listen()
        proc = gateway.start()
        assert proc.wait(timeout=30) == 2
    log = gateway.log()
    assert f"server.port: cannot listen on 127.0.0.1:{gateway.port}" in log
    assert "Traceback" not in log and "worker" not in log
