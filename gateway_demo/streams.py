"""What `gateway demo` watches in Redis: the assistant's inbox and its own outbox
(`gw:outbox:<assistant>`), read without a consumer group (the demo takes nothing from the
assistant), each entry told in one line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from gateway_demo.processes import DemoFailed

Entry = dict[str, Any]


class Streams:
    """Cursors on the inbox and the outbox; `next` tells every entry it passes."""

    def __init__(
        self, redis: Redis, inbox: str, outbox: str, tell: Callable[[str, str], None]
    ) -> None:
        self.redis = redis
        self.inbox = inbox
        self.outbox = outbox
        self._tell = tell
        self._after = {inbox: "0-0", outbox: "0-0"}

    async def next(
        self, stream: str, want: Callable[[Entry], bool], what: str, timeout_s: float
    ) -> Entry:
        """The next entry of `stream` that `want`s, telling it and any it passed on the way."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            for entry in await self._read(stream, block_ms=max(1, int(left * 1000))):
                if want(entry):
                    return entry
        raise DemoFailed(f"no {what} in {stream} within {timeout_s:g} s")

    async def new(self, stream: str) -> list[Entry]:
        """The entries written since the last read, told; without waiting."""
        return await self._read(stream, block_ms=None)

    async def _read(self, stream: str, block_ms: int | None) -> list[Entry]:
        reply = await self.redis.xread({stream: self._after[stream]}, count=100, block=block_ms)
        out = []
        for _name, entries in reply or []:
            for entry_id, fields in entries:
                self._after[stream] = entry_id.decode()
                (raw,) = fields.values()
                entry: Entry = json.loads(raw)
                self._tell(stream, describe(stream, entry, stream == self.outbox))
                out.append(entry)
        return out


def describe(stream: str, entry: Entry, command: bool) -> str:
    """One entry (`command`: of an outbox) in a line: what a person watching wants to see."""
    if command:
        said = f" {entry['text']!r}" if entry.get("text") else ""
        return (
            f"{stream} ← {entry['type']} {entry['command_id']} for {entry['conversation_id']}{said}"
        )
    kind = entry.get("kind")
    head = f"{stream} ← {kind}"
    if kind == "delivery":
        why = [str(entry[key]) for key in ("reason", "provider_code") if entry.get(key)]
        reason = f" ({', code '.join(why)})" if why else ""
        sent = f": message {entry['message_id']}" if entry.get("message_id") else ""
        return f"{head} {entry['outcome']}{reason} of {entry['command_id']}{sent}"
    if kind == "status":
        of = f" (command {entry['command_id']})" if entry.get("command_id") else ""
        return f"{head} {entry['status']} of {entry.get('message_id')}{of}"
    said = f" {entry['text']!r}" if entry.get("text") else ""
    paused = " ai_paused" if entry.get("ai_paused") else ""
    return f"{head} {entry.get('type', '')} in {entry.get('conversation_id')}{said}{paused}"
