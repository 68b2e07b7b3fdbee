"""The embedded redis-server (gateway/embedded.py): started when config.yaml names no Redis."""

from __future__ import annotations

import stat
from pathlib import Path

import redis

from gateway.embedded import EmbeddedRedis, free_port


def test_with_a_data_dir_the_gateway_talks_over_a_private_unix_socket(tmp_path: Path) -> None:
    server = EmbeddedRedis(free_port(), tmp_path / "data").start()
    try:
        assert server.url == f"unix://{tmp_path.resolve() / 'data' / 'redis.sock'}?db=0"
        socket = tmp_path / "data" / "redis.sock"
        mode = socket.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o700  # the owner's only
        over_socket = redis.Redis.from_url(server.url)
        over_tcp = redis.Redis(port=server.port)  # still open for redis-cli -p and tools
        over_tcp.set("k", "v")
        assert over_socket.get("k") == b"v"  # one server, two ways in
        assert over_socket.connection_pool.connection_kwargs["path"] == str(socket.resolve())
        over_socket.close()
        over_tcp.close()
    finally:
        server.stop()


def test_a_data_dir_too_deep_for_a_socket_path_means_tcp(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)  # a socket path is at most 107 bytes
    server = EmbeddedRedis(free_port(), deep).start()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert not (deep / "redis.sock").exists()
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    finally:
        server.stop()
