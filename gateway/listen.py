"""Listening sockets: the one error when a port cannot be opened, and the probe that a port
is still free before workers share it.

Below `gateway.admin`, `gateway.server` and `gateway.supervisor`, which all raise or probe,
so none of them imports another for it.
"""

from __future__ import annotations

import socket

from aiohttp import web

from gateway.config import ServerSettings


class ListenError(Exception):
    """The listening socket cannot be opened (port taken, address not local, no permission);
    the message names `server.port` or `server.host`."""


async def start_site(
    runner: web.AppRunner, site: web.TCPSite, key: str, host: str, port: int
) -> None:
    """Start listening on host:port, or clean the runner up and raise ListenError naming
    `key` (the public port and the admin port alike)."""
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"{key}: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def check_ports_free(server: ServerSettings) -> None:
    """ListenError unless the public port, and the admin port if there is one, are free."""
    check_port_free(server.host, server.port)
    if server.admin_port is not None:
        check_port_free(server.admin_host, server.admin_port, "server.admin_port")


def check_port_free(host: str, port: int, key: str = "server.port") -> None:
    """ListenError unless host:port can be bound: nothing listens there yet. Workers bind
    with SO_REUSEPORT, which would share the port with another gateway instead of failing.
    `key` names the setting in the message."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"server.host: cannot resolve {host}: {exc.strerror}") from exc
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ListenError(
                    f"{key}: cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from exc
