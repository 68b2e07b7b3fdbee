"""A real Redis Cluster of three masters on 127.0.0.1, for `pytest --redis-cluster`.

Three redis-server processes (the binary `gateway.embedded` finds) with cluster mode on and
no persistence. redis-cli may not be installed, so the cluster is formed the way
`redis-cli --cluster create` does it, with plain commands: each node gets a distinct
config epoch and a third of the 16384 slots, the first node MEETs the others, and the
cluster is ready once every node reports `cluster_state:ok` and knows all three.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import redis

from gateway.embedded import EmbeddedRedis, free_port

SLOT_RANGES = [(0, 5460), (5461, 10922), (10923, 16383)]
"""Which slots each master owns, as `redis-cli --cluster create` splits them."""
BUS_OFFSET = 10000
"""Each node also listens on port + 10000 for the cluster bus (Redis 6 has no cluster-port)."""


class LocalCluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.nodes: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        """The seed the gateway is given: any one node."""
        return self.nodes[0].url

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        try:
            for _ in SLOT_RANGES:
                port = _port_with_free_bus()
                conf = self.workdir / f"nodes-{port}.conf"
                extra = ["--cluster-enabled", "yes", "--cluster-config-file", str(conf)]
                self.nodes.append(EmbeddedRedis(port, None, extra).start())
            self._form(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _form(self, timeout_s: float) -> None:
        clients = [redis.Redis(port=node.port, socket_timeout=5) for node in self.nodes]
        try:
            for epoch, (client, (first, last)) in enumerate(zip(clients, SLOT_RANGES, strict=True)):
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch + 1)
                client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + timeout_s
            while not all(_ready(client, len(clients)) for client in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the test cluster did not form in {timeout_s}s")
                time.sleep(0.05)
        finally:
            for client in clients:
                client.close()


def _ready(client: redis.Redis, masters: int) -> bool:
    raw = client.execute_command("CLUSTER", "INFO")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    info = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == str(masters)


def _port_with_free_bus() -> int:
    while True:
        port = free_port()
        if port + BUS_OFFSET <= 65535 and _free(port + BUS_OFFSET):
            return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
