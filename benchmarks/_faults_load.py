"""Open-loop webhook load for faults.py: WhatsApp and Telegram mixed, some redelivered.

Every webhook carries one message whose text is `fault <token>`, a token unique in the run,
from a contact (WhatsApp wa_id, Telegram chat) used for nothing else, so no per-recipient
pacing ever holds a reply back; the WhatsApp numbers and contacts share the US calling code
(no cross-country rule) and each message opens its own 24-hour window. `redeliver` of the
requests (every tenth by default) repeat the exact bytes of an earlier one, as Meta and
Telegram do.

Open loop: request i is due at `start + i / rate`, whatever happened to the earlier ones; it
takes an idle keep-alive connection or opens one (up to `MAX_CONNECTIONS`, then it waits for
one). Each request's outcome is kept (`Sent`): its token, when it was due, the status (0 when
there was no answer: refused, reset, or none within `ANSWER_TIMEOUT_S`) and when it ended.
Nothing is retried; a request that was not answered 2xx simply does not count as answered.

State: one `Load` owns its connections and records; it runs on the harness's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import secrets
import time
from collections import deque
from dataclasses import dataclass

from _faults_stack import APP_SECRET, WABA_ID, Accounts

MAX_CONNECTIONS = 128
REQUESTS_PER_CONNECTION = 10
"""Then the connection is closed: new ones spread over the workers (SO_REUSEPORT), as the
many connections of a real platform do, so a killed worker has connections to lose."""
ANSWER_TIMEOUT_S = 10.0
_RECENT = 1000  # redeliveries pick one of the last this many bodies


@dataclass
class Sent:
    """One webhook request and its outcome."""

    token: str
    channel: str
    due: float  # time.monotonic()
    redelivery: bool
    status: int = -1  # -1: not finished; 0: no answer
    ended: float = 0.0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Bodies:
    """Signed webhook requests, each with its own token and contact."""

    def __init__(self, host: str, port: int, accounts: Accounts) -> None:
        self.host, self.port, self.accounts = host, port, accounts
        self.nonce = secrets.token_hex(3)
        self.update_base = 10_000_000 + secrets.randbelow(1 << 20) * 1000
        self.secret = APP_SECRET.encode()

    def token(self, seq: int) -> str:
        return f"{self.nonce}{seq:07d}"

    def build(self, seq: int, channel: str) -> bytes:
        """Request `seq` of the run, on `channel` (`whatsapp` or `telegram`)."""
        return self._whatsapp(seq) if channel == "whatsapp" else self._telegram(seq)

    def _whatsapp(self, seq: int) -> bytes:
        pid, display, _token = self.accounts.numbers[seq % len(self.accounts.numbers)]
        contact = f"1415{seq % 10_000_000:07d}"
        message = {
            "from": contact,
            "id": f"wamid.FAULTS{self.token(seq)}",
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": f"fault {self.token(seq)}"},
        }
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": display.lstrip("+"), "phone_number_id": pid},
            "contacts": [{"profile": {"name": "Fault"}, "wa_id": contact}],
            "messages": [message],
        }
        entry = {"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}
        body = json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()
        mac = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return self._request("/webhooks/whatsapp", f"X-Hub-Signature-256: sha256={mac}", body)

    def _telegram(self, seq: int) -> bytes:
        bot_id, _token, secret = self.accounts.bots[seq % len(self.accounts.bots)]
        chat = 200_000_000 + seq
        person = {"first_name": "Fault", "last_name": str(seq)}
        message = {
            "message_id": seq + 1,
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private", **person},
            "from": {"id": chat, "is_bot": False, **person},
            "text": f"fault {self.token(seq)}",
        }
        body = json.dumps({"update_id": self.update_base + seq, "message": message}).encode()
        header = f"X-Telegram-Bot-Api-Secret-Token: {secret}"
        return self._request(f"/webhooks/telegram/{bot_id}", header, body)

    def _request(self, path: str, auth: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used = 0

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """(status, keep the connection) of one request."""
        self.used += 1
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        length = 0
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            length = int(lower[i + 17 : lower.find(b"\r\n", i + 2)])
        await self.reader.readexactly(length)
        keep = b"connection: close" not in lower and self.used < REQUESTS_PER_CONNECTION
        return status, keep

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Load:
    """The open-loop load of one fault run."""

    def __init__(
        self, host: str, port: int, accounts: Accounts, rate: float, redeliver: float, seed: int
    ) -> None:
        self.host, self.port, self.rate = host, port, rate
        self.bodies = Bodies(host, port, accounts)
        self.redeliver = redeliver
        self.random = random.Random(seed)
        self.sent: list[Sent] = []
        self.recent: deque[tuple[Sent, bytes]] = deque(maxlen=_RECENT)
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.tasks: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()
        self.seq = 0

    async def run(self) -> None:
        """Send until `stop` is set, then wait (bounded) for the answers still due."""
        start = time.monotonic()
        i = 0
        while not self.stop.is_set():
            due = start + i / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                continue
            self._dispatch(due)
            i += 1
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=ANSWER_TIMEOUT_S + 5)
        for task in list(self.tasks):
            task.cancel()
        for conn in self.idle:
            conn.close()

    def _dispatch(self, due: float) -> None:
        if self.recent and self.random.random() < self.redeliver:
            earlier, request = self.random.choice(self.recent)
            sent = Sent(earlier.token, earlier.channel, due, redelivery=True)
        else:
            channel = "whatsapp" if self.random.random() < 0.5 else "telegram"
            request = self.bodies.build(self.seq, channel)
            sent = Sent(self.bodies.token(self.seq), channel, due, redelivery=False)
            self.seq += 1
            self.recent.append((sent, request))
        self.sent.append(sent)
        task = asyncio.get_running_loop().create_task(self._send(sent, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, sent: Sent, request: bytes) -> None:
        async with self.slots:
            conn: _Conn | None = None
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    conn = self.idle.pop() if self.idle else await self._connect()
                    sent.status, keep = await conn.exchange(request)
                if keep:
                    self.idle.append(conn)
                    conn = None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError):  # fmt: skip
                sent.status = 0
            finally:
                sent.ended = time.monotonic()
                if conn is not None:
                    conn.close()

    async def _connect(self) -> _Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Conn(reader, writer)
