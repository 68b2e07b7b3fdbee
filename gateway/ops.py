"""What the operator commands (`gateway inspect`, `gateway deadletters`) share: the Redis
the running gateway uses, ages and ids on the command line, and plain-text tables.

The tools connect to the config's Redis: `redis.url`, or the embedded Redis that `gateway
serve` started (its Unix socket or TCP port in `redis.embedded_dir`, with the password kept
in `redis.pass` there). They never start a Redis of their own: a second embedded server on
the same directory would share, and corrupt, the running one's append-only file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.config import Settings
from gateway.embedded import PASSWORD_FILE, EmbeddedRedis
from router.client import REDIS_ERRORS, RedisClient

OK, NOTHING, USAGE = 0, 1, 2
"""Exit statuses: done; nothing matched (or some replays failed); usage, config or Redis."""


class ToolError(Exception):
    """A usage, config or Redis problem: one line for the operator, exit status 2."""


def redis_url(settings: Settings) -> tuple[str, str]:
    """The URL of the gateway's Redis (it may hold a password: never log it) and where it is,
    for messages. For an embedded Redis, the one `gateway serve` runs; `ToolError` if none."""
    if settings.redis.url is not None:
        return settings.redis.url, _without_password(settings.redis.url)
    data_dir = Path(settings.redis.embedded_dir)
    try:
        password = (data_dir / PASSWORD_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ToolError(
            f"the embedded Redis is not running (no {data_dir / PASSWORD_FILE}): start "
            "`gateway serve` with this config, or set redis.url"
        ) from None
    except OSError as exc:
        raise ToolError(f"cannot read {data_dir / PASSWORD_FILE}: {exc.strerror}") from None
    # Built, never started: only its address and URL are used.
    server = EmbeddedRedis(
        settings.redis.embedded_port,
        data_dir,
        tcp=settings.redis.embedded_tcp,
        password=password or None,
    )
    return server.url, f"the embedded Redis ({server.where})"


def _without_password(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)


async def connect(settings: Settings) -> RedisClient:
    """A client on the gateway's Redis, checked with a PING; `ToolError` if it does not
    answer (for an embedded Redis: the gateway is not running)."""
    url, where = redis_url(settings)
    timeout = settings.redis.timeout_seconds
    client: RedisClient
    try:
        if settings.redis.cluster:
            client = RedisCluster.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        else:
            client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        await client.ping()
    except REDIS_ERRORS as exc:
        hint = " (is `gateway serve` running?)" if settings.redis.url is None else ""
        raise ToolError(f"Redis unreachable at {where}{hint}: {type(exc).__name__}") from None
    return client


async def redis_now_ms(client: RedisClient) -> int:
    """Redis's clock, in ms: stream ids and the limiter are stamped with it."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """Seconds of an age such as `90`, `30s`, `15m`, `2h`, `7d`, `1w`; ValueError if not."""
    found = _AGE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not an age: {text!r} (use e.g. 90s, 15m, 2h, 7d)")
    return float(found.group(1)) * _UNIT[found.group(2)]


def stream_id(text: str, end: bool) -> tuple[int, int]:
    """A stream id (`ms-seq`, or `ms` alone: its first or last sequence) as a sortable pair."""
    ms, sep, seq = text.strip().partition("-")
    if not ms.isdigit() or (sep and not seq.isdigit()):
        raise ValueError(f"not a stream id: {text!r} (use 1700000000000-0 or 1700000000000)")
    if sep:
        return int(ms), int(seq)
    return int(ms), (2**64 - 1 if end else 0)


def id_ranges(specs: Sequence[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """`--id` values (comma-separated ids, or `FIRST..LAST` ranges, either end optional)."""
    ranges = []
    for spec in specs:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            first, dots, last = part.partition("..")
            if not dots:
                ranges.append((stream_id(first, False), stream_id(first, True)))
                continue
            low = stream_id(first, False) if first else (0, 0)
            high = stream_id(last, True) if last else (2**64 - 1, 2**64 - 1)
            ranges.append((low, high))
    return ranges


def duration(seconds: float | None) -> str:
    """`3d4h`, `2h5m`, `4m10s`, `12s`; `-` for None."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    for big, small, a, b in ((86400, 3600, "d", "h"), (3600, 60, "h", "m"), (60, 1, "m", "s")):
        if s >= big:
            return f"{s // big}{a}{(s % big) // small}{b}"
    return f"{s}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, `-` for None; a header line, then one line per row."""
    cells = [[str(h) for h in headers]]
    cells += [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
