"""The assistant stub of faults.py: reads the inboxes, answers every message with a command.

For each `message` event whose text is `fault <token>` it writes, once per token, a text
command `c-<token>` to its conversation in `gw:outbox:<assistant>` (the assistant's own
outbox), with `cmd=c-<token>` in the text so the Bot API stand-in can tell which command a
send was. `delivery` events are noted with the time they were read.

It reads with XREAD from the last id it saw (no consumer group: it never needs to
acknowledge) and survives Redis going away: a failed read or write is tried again every
`RETRY_S` until it succeeds or the stub is stopped. A write whose answer was lost (Redis
killed after running it) is written again; the gateway answers the repeat with a
`duplicate: true` delivery and sends nothing, which is part of what the harness checks.

State: one `Stub` owns its Redis client and its two maps (commands written, deliveries
seen); it runs on the harness's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

RETRY_S = 0.2
READ_COUNT = 500
BLOCK_MS = 500


@dataclass
class Written:
    """A command the stub wrote: when the XADD that took it was answered."""

    conversation_id: str
    at: float  # time.monotonic()
    attempts: int = 1


@dataclass
class Stub:
    """The stub assistant for the given assistants' inboxes."""

    url: str
    assistants: tuple[str, ...]
    written: dict[str, Written] = field(default_factory=dict)
    delivered: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    answered_tokens: set[str] = field(default_factory=set)
    errors: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Read and answer until `stop` is set."""
        client = Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=1.0)
        last = {f"gw:inbox:{a}": "0-0" for a in self.assistants}
        try:
            while not self.stop.is_set():
                try:
                    found = await client.xread(last, count=READ_COUNT, block=BLOCK_MS)
                except (RedisError, OSError):
                    self.errors += 1
                    await self._pause()
                    continue
                pending = self._take(found, last)
                if pending:
                    await self._write(client, pending)
        finally:
            await client.aclose()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), RETRY_S)

    def _take(self, found: Any, last: dict[str, str]) -> list[tuple[str, str, str]]:
        """Note deliveries; the (assistant, command_id, conversation_id) to write."""
        out = []
        now = time.monotonic()
        for stream, entries in found or []:
            name = stream.decode()
            for entry_id, fields in entries:
                last[name] = entry_id.decode()
                event = json.loads(fields[b"event"])
                kind = event.get("kind")
                if kind == "delivery":
                    self.delivered[event["command_id"]].append(now)
                    self.last_progress = now
                elif kind == "message":
                    token = token_of(event)
                    if token is not None and token not in self.answered_tokens:
                        self.answered_tokens.add(token)
                        out.append((name.removeprefix("gw:inbox:"), f"c-{token}",
                                    event["conversation_id"]))  # fmt: skip
        return out

    async def _write(self, client: Redis, todo: list[tuple[str, str, str]]) -> None:
        """XADD every command, in one pipeline, again until Redis took them."""
        attempts = 0
        while True:
            attempts += 1
            pipe = client.pipeline(transaction=False)
            for assistant, command_id, conversation in todo:
                command = {
                    "schema": 1,
                    "command_id": command_id,
                    "conversation_id": conversation,
                    "type": "text",
                    "text": f"Thanks, noted. cmd={command_id}",
                }
                pipe.xadd(f"gw:outbox:{assistant}", {"command": json.dumps(command)})
            try:
                await pipe.execute()
                break
            except (RedisError, OSError):
                self.errors += 1
                if self.stop.is_set():
                    return
                await self._pause()
        now = time.monotonic()
        for _assistant, command_id, conversation in todo:
            self.written[command_id] = Written(conversation, now, attempts)

    def undelivered(self) -> int:
        """Commands written and not yet answered by a delivery event."""
        return sum(1 for c in self.written if c not in self.delivered)


def token_of(event: dict[str, Any]) -> str | None:
    """The harness's token in a message event's text, if it carries one."""
    text = event.get("text")
    if isinstance(text, str) and text.startswith("fault "):
        return text[6:].strip()
    return None
