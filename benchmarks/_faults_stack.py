"""The stack one fault runs against, and the faults themselves.

One `Stack` per fault, all on 127.0.0.1 in a temporary directory: a redis-server with
`appendonly yes` (`appendfsync` everysec or always) on a fixed port and data directory, so
that it can be killed and started again on the same data; the provider stand-ins
(`_faults_providers`) in a process of their own; the gateway, `gateway serve --workers 2`,
pointed at that Redis and those stand-ins. Everything it started is stopped by `close()`
(SIGTERM, then SIGKILL after a bounded wait), whatever happened, and a Redis left stopped
(SIGSTOP) is continued first.

Accounts: `WA_NUMBERS` WhatsApp cloud_api numbers (US, `+1555...`, `mps` WA_MPS) and
`BOTS` Telegram bots, all bound to the assistants `ASSISTANTS` in turn, so the harness
reads several inboxes and writes to several own outboxes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml
from _procs import HOST, REPO_ROOT, StartError, free_port, http_status, redis_binary, stop

APP_SECRET = "faults_app_secret_0123456789"
VERIFY_TOKEN = "faults_verify_token_0123456789"
WABA_ID = "300400500600700"
ASSISTANTS = ("alpha", "beta")
WA_NUMBERS = 6
WA_MPS = 200
BOTS = 8
PROVIDERS_MODULE = "benchmarks._faults_providers"
GATEWAY_WORKERS = 2
REQUEST_TIMEOUT_S = 2.0
"""outbound.request_timeout_seconds: short, so the `error` mode's hangs end quickly."""
CLAIM_IDLE_S = 6.0
"""outbound.claim_idle_seconds: a killed worker's commands are taken over after this."""
READY_TIMEOUT_S = 60.0
_POLL_S = 0.05


@dataclass(frozen=True)
class Accounts:
    """The configured accounts: WhatsApp numbers and Telegram bots."""

    numbers: tuple[tuple[str, str, str], ...]  # (phone_number_id, display number, token)
    bots: tuple[tuple[str, str, str], ...]  # (bot id, token, secret_token)

    @classmethod
    def make(cls) -> Accounts:
        numbers = tuple(
            (f"1003004{i:08d}", f"+1555100{i:04d}", f"faults-graph-token-{i:04d}")
            for i in range(WA_NUMBERS)
        )
        bots = tuple(
            (
                f"71000000{i:02d}",
                f"71000000{i:02d}:AAFaultsToken{i:02d}xyzxyzxyzxyz",
                f"faults-bot-secret-{i:02d}-abcdef",
            )
            for i in range(BOTS)
        )
        return cls(numbers, bots)

    def assistant_of(self, index: int) -> str:
        """Accounts are bound to the assistants in turn."""
        return ASSISTANTS[index % len(ASSISTANTS)]


def gateway_config(
    port: int, redis_port: int, graph_port: int, bot_port: int, accounts: Accounts
) -> dict[str, Any]:
    """config.yaml of the gateway under test."""
    numbers = [
        {
            "phone_number_id": pid,
            "display_phone_number": display,
            "waba_id": WABA_ID,
            "access_token": token,
            "mode": "cloud_api",
            "mps": WA_MPS,
            "assistant": accounts.assistant_of(i),
        }
        for i, (pid, display, token) in enumerate(accounts.numbers)
    ]
    bots = [
        {"token": token, "secret_token": secret, "assistant": accounts.assistant_of(i)}
        for i, (_bot_id, token, secret) in enumerate(accounts.bots)
    ]
    return {
        "server": {
            "host": HOST,
            "port": port,
            "workers": GATEWAY_WORKERS,
            "drain_seconds": 1,
            "shutdown_timeout_seconds": 10,
        },
        "redis": {"url": f"redis://{HOST}:{redis_port}/0"},
        "router": {"inbox_maxlen": 10_000_000},
        "outbound": {
            "claim_idle_seconds": CLAIM_IDLE_S,
            "request_timeout_seconds": REQUEST_TIMEOUT_S,
            "retry": {"max_attempts": 10, "base_seconds": 0.5, "max_seconds": 4},
        },
        "whatsapp": {
            "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN,
            "api_base": f"http://{HOST}:{graph_port}/v21.0",
            "numbers": numbers,
        },
        "telegram": {"api_base": f"http://{HOST}:{bot_port}", "bots": bots},
    }


def _cmdline(pid: int) -> bytes:
    """A process's command line (empty once it is gone); workers run `spawn_main`, the
    multiprocessing resource tracker does not."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )


@dataclass
class Stack:
    """Redis, the stand-ins and the gateway of one fault, restartable piece by piece."""

    work: Path
    fsync: str
    """`everysec` or `always` (Redis's appendfsync), or `waitaof`: everysec, and the gateway
    waits for WAITAOF before answering (`redis.wait_aof`; Redis >= 7.2), or
    `always+waitaof`: both."""
    binary: str | None = None
    """The redis-server (or valkey-server) to run; None: `redis_binary()`."""
    accounts: Accounts = field(default_factory=Accounts.make)
    redis_port: int = 0
    graph_port: int = 0
    bot_port: int = 0
    port: int = 0
    redis_proc: subprocess.Popen[bytes] | None = None
    providers_proc: subprocess.Popen[bytes] | None = None
    gateway_proc: subprocess.Popen[bytes] | None = None
    redis_stopped: bool = False

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.redis_port}/0"

    # --- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Redis, the stand-ins, then the gateway, each ready before the next."""
        self.redis_port, self.graph_port = free_port(), free_port()
        self.bot_port, self.port = free_port(), free_port()
        (self.work / "redis").mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self._start_providers()
        config = gateway_config(
            self.port, self.redis_port, self.graph_port, self.bot_port, self.accounts
        )
        config["redis"]["wait_aof"] = "waitaof" in self.fsync
        (self.work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.start_gateway()

    def start_redis(self) -> None:
        """redis-server on the stack's port and data directory, with its append-only file."""
        cmd = [
            self.binary or redis_binary(), "--port", str(self.redis_port), "--bind", HOST,
            "--dir", str(self.work / "redis"), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always" if "always" in self.fsync else "everysec",
            "--daemonize", "no",
        ]  # fmt: skip
        self.redis_proc = _spawn(cmd, self.work / "redis.log")
        self._wait(self._redis_ready, "redis-server", self.redis_proc)

    def _redis_ready(self) -> bool:
        client = redis.Redis(host=HOST, port=self.redis_port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def _start_providers(self) -> None:
        accounts = {
            "graph": {pid: token for pid, _display, token in self.accounts.numbers},
            "bots": [token for _bot, token, _secret in self.accounts.bots],
        }
        path = self.work / "accounts.json"
        path.write_text(json.dumps(accounts))
        cmd = [
            sys.executable, "-m", PROVIDERS_MODULE, "--graph-port", str(self.graph_port),
            "--bot-port", str(self.bot_port), "--accounts", str(path),
        ]  # fmt: skip
        self.providers_proc = _spawn(cmd, self.work / "providers.log")
        self._wait(lambda: self._get_ok(self.graph_port, "/_faults/sends"), "stand-ins",
                   self.providers_proc)  # fmt: skip

    def start_gateway(self) -> None:
        """`gateway serve --workers 2`, ready when /readyz answers 200."""
        cmd = [sys.executable, "-m", "gateway", "serve", "--config", str(self.work / "config.yaml")]
        self.gateway_proc = _spawn(cmd, self.work / "gateway.log")
        self._wait(lambda: self._get_ok(self.port, "/readyz"), "gateway", self.gateway_proc)

    def _get_ok(self, port: int, path: str) -> bool:
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
        return http_status(HOST, port, request) == 200

    def _wait(self, ready: Callable[[], bool], name: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartError(f"{name} exited with code {proc.returncode}\n{self.log_tail()}")
            if ready():
                return
            time.sleep(_POLL_S)
        raise StartError(f"{name} not ready within {READY_TIMEOUT_S:.0f} s\n{self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        """The end of the gateway's log, for error messages."""
        path = self.work / "gateway.log"
        return path.read_text("utf-8", "replace")[-size:] if path.exists() else ""

    # --- faults ----------------------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        """The gateway's worker processes (the supervisor's children)."""
        assert self.gateway_proc is not None
        pid = self.gateway_proc.pid
        found: list[int] = []
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found += [int(x) for x in children.read_text().split()]
        return sorted(p for p in found if b"spawn_main" in _cmdline(p))

    def kill_worker(self) -> int:
        """kill -9 of one worker; its pid."""
        pids = self.worker_pids()
        if not pids:
            raise RuntimeError("the gateway has no worker processes to kill")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def wait_workers(self, count: int, timeout_s: float) -> bool:
        """Until `count` workers run again (and the port answers)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.worker_pids()) >= count and self._get_ok(self.port, "/readyz"):
                return True
            time.sleep(_POLL_S)
        return False

    def kill_redis(self) -> None:
        """SIGKILL of redis-server (its AOF stays on disk)."""
        assert self.redis_proc is not None
        self.redis_proc.kill()
        self.redis_proc.wait(timeout=10)

    def freeze_redis(self) -> None:
        """SIGSTOP: Redis reads and answers nothing until `thaw_redis`."""
        assert self.redis_proc is not None
        os.kill(self.redis_proc.pid, signal.SIGSTOP)
        self.redis_stopped = True

    def thaw_redis(self) -> None:
        """SIGCONT."""
        if self.redis_stopped and self.redis_proc is not None:
            os.kill(self.redis_proc.pid, signal.SIGCONT)
        self.redis_stopped = False

    def providers_mode(self, mode: str, seconds: float, hold_s: float, burst_s: float) -> None:
        """Switch the stand-ins into `mode` for `seconds`."""
        body = json.dumps(
            {"mode": mode, "seconds": seconds, "hold_s": hold_s, "burst_s": burst_s}
        ).encode()
        url = f"http://{HOST}:{self.graph_port}/_faults/mode"
        request = urllib.request.Request(url, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as resp:
            resp.read()

    def sends(self) -> dict[str, Any]:
        """The stand-ins' accepted sends by command id (see _faults_providers)."""
        url = f"http://{HOST}:{self.graph_port}/_faults/sends"
        with urllib.request.urlopen(url, timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def term_gateway(self, timeout_s: float) -> int | None:
        """SIGTERM to the supervisor; its exit code (None if it had to be killed)."""
        assert self.gateway_proc is not None
        return stop(self.gateway_proc, timeout_s)

    # --- stopping ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything (gateway first, Redis last), whatever state it is in."""
        self.thaw_redis()
        for proc in (self.gateway_proc, self.providers_proc, self.redis_proc):
            if proc is not None:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    stop(proc, 30.0)
