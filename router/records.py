"""Small records shared by the inbound and outbound paths: dead letters and event ids."""

from __future__ import annotations

import itertools
import os
import time

import msgspec

_PROCESS = os.urandom(4).hex()
_COUNTER = itertools.count()


_prefix: tuple[int, str] = (-1, "")
"""The latest millisecond and its first 20 characters: made once per ms, not per id."""


def new_event_id() -> str:
    """Time-ordered, unique across processes: 12 hex of ms time, 8 of process, 6 of counter."""
    global _prefix
    ms = time.time_ns() // 1_000_000
    last, prefix = _prefix
    if ms != last:
        prefix = f"{ms:012x}{_PROCESS}"
        _prefix = (ms, prefix)
    return f"{prefix}{next(_COUNTER) & 0xFFFFFF:06x}"


class DeadLetter(msgspec.Struct, omit_defaults=True):
    """CONTRACT §2.4: `body_b64` for webhook bytes, `command` for an outbox entry."""

    schema: int
    reason: str
    channel: str | None
    received_at: int
    detail: str | None
    body_b64: str | None = None
    command: str | None = None
    key: str | None = None
    """Extension: the account the webhook's URL path named (Telegram's bot id), which the body
    alone does not say; `gateway deadletters replay` hands it to the parser again."""
