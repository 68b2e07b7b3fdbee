"""Signed webhook requests for the load generator.

Design: a body is rendered once per run as a JSON template whose per-message fields (wamid,
sender, update_id, ...) are slots. Request number i fills the slots with values derived from
(nonce, i), so every message of a run, and of every run, has its own id and the gateway's
dedup never short-cuts the work. The body is then signed (WhatsApp: HMAC-SHA256 with the app
secret, like Meta) and prefixed with precomputed headers.

`RequestPool` pre-generates the requests before timing, up to a memory budget; a request past
the pool is built on the fly (same bytes it would have had) and counted in `live_built`.

WhatsApp bodies follow PLATFORM.md §1.3: one `entry` for the WABA, one `changes[]` item per
message (each with its own metadata, contacts and messages, alternating between the configured
numbers), non-ASCII escaped as `\\uXXXX` the way Meta sends it. Messenger and Instagram bodies
(PLATFORM-MORE §1.3, §2) are one `entry` for the Page or account with one `messaging[]` item
per message (each from its own contact, with its own mid), the same text, signed with the
app secret the same way. Twilio bodies (PLATFORM-MORE §5.3) are one inbound WhatsApp text
message each, form-encoded, with Twilio's parameters in Twilio's order, signed HMAC-SHA1 over
the configured public URL and the sorted parameters (§5.1). Telegram bodies are one update
each (Telegram never batches), raw UTF-8.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

WHATSAPP_PATH = "/webhooks/whatsapp"
META_MESSAGING = {"messenger": "page", "instagram": "instagram"}
"""The Meta messaging channels the load generator speaks, and their `object`."""
PAGE_ID = "104400000000001"
IG_ACCOUNT_ID = "17841400000000001"
TWILIO_SENDER = "+14155550100"
TWILIO_ACCOUNT = "AC" + "0123456789abcdef" * 2
TWILIO_PUBLIC_URL = "https://bench.example.com/webhooks/twilio"
"""What the started gateway's `twilio.public_url` says, and so what the load signs over."""
TELEGRAM_PATH = "/webhooks/telegram/{bot_id}"
_SLOT = re.compile(rb"@@([A-Z])(\d+)@@")
_NUMERIC_SLOT = re.compile(r'"@@N([A-Z]\d+)@@"')  # a quoted "@@NU0@@" becomes a bare number
_TELEGRAM_COUNTER_LIMIT = 1 << 24  # update_id = random base (multiple of 2**24) + counter
_QUOTED_WAMID = "wamid.HBgNNTUxMTk4NzY1MDAwMBUCABEYEjM0RkE1QjlCNDZCMUUxMjQ4OQA="

_TEXT = (
    "Olá! Fiz o pedido #48213 na sexta-feira e ainda não recebi o código de rastreio. "
    "Vocês conseguem verificar se já foi enviado? Preciso dele até quarta, é presente de "
    "aniversário da minha mãe. Se não der tempo, prefiro trocar a entrega para retirada na "
    "loja do shopping, que fica perto do meu trabalho. Obrigada pela atenção e desculpe a "
    "insistência 🙏"
)


@dataclass(frozen=True)
class Number:
    """A configured WhatsApp business number."""

    phone_number_id: str
    display_phone_number: str  # E.164 with "+"
    waba_id: str


@dataclass(frozen=True)
class PayloadSpec:
    """What to send and where; picklable so worker processes rebuild the same requests."""

    channel: str  # "whatsapp" | "telegram" | "messenger" | "instagram"
    items: int
    host: str
    port: int
    app_secret: str
    numbers: tuple[Number, ...]
    bot_id: str
    telegram_secret: str
    contacts: int


class Template:
    """JSON text with `@@K<n>@@` slots, split once into byte segments."""

    def __init__(self, text: str) -> None:
        parts = _SLOT.split(_NUMERIC_SLOT.sub(r"@@\1@@", text).encode())
        self.segments: list[bytes] = parts[0::3]
        self.slots: list[tuple[str, int]] = [
            (kind.decode(), int(idx)) for kind, idx in zip(parts[1::3], parts[2::3], strict=True)
        ]

    def render(self, values: dict[str, list[bytes]]) -> bytes:
        """The body with slot K<n> replaced by values[K][n]."""
        out = [self.segments[0]]
        for (kind, idx), segment in zip(self.slots, self.segments[1:], strict=True):
            out.append(values[kind][idx])
            out.append(segment)
        return b"".join(out)


def _whatsapp_change(number: Number, k: int, now: str) -> dict[str, Any]:
    contact = f"@@C{k}@@"
    message = {
        "from": contact,
        "id": f"@@W{k}@@",
        "timestamp": now,
        "type": "text",
        "text": {"body": _TEXT},
        "context": {"from": number.display_phone_number.lstrip("+"), "id": _QUOTED_WAMID},
    }
    profile = {"name": "Ana Luíza Ferreira", "username": "@analu.ferreira"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": number.display_phone_number.lstrip("+"),
            "phone_number_id": number.phone_number_id,
        },
        "contacts": [{"profile": profile, "wa_id": contact, "user_id": f"BR.{contact}"}],
        "messages": [message],
    }
    return {"field": "messages", "value": value}


def whatsapp_template(numbers: tuple[Number, ...], items: int, first: int) -> Template:
    """Item k of the body belongs to numbers[(first + k) % len(numbers)]."""
    now = str(int(time.time()))
    changes = [_whatsapp_change(numbers[(first + k) % len(numbers)], k, now) for k in range(items)]
    entry = {"id": numbers[first % len(numbers)].waba_id, "changes": changes}
    body = {"object": "whatsapp_business_account", "entry": [entry]}
    return Template(json.dumps(body, ensure_ascii=True, separators=(",", ":")))


def meta_messaging_template(channel: str, items: int) -> Template:
    """Messenger or Instagram: one entry for the Page (account), `items` messaging items,
    each a text message from its own contact quoting an earlier message, as Meta sends them
    (timestamps in milliseconds, non-ASCII escaped)."""
    account = PAGE_ID if channel == "messenger" else IG_ACCOUNT_ID
    now_ms = int(time.time() * 1000)
    messaging = [
        {
            "sender": {"id": f"@@C{k}@@"},
            "recipient": {"id": account},
            "timestamp": now_ms,
            "message": {"mid": f"@@W{k}@@", "text": _TEXT, "reply_to": {"mid": "m_QUOTED0001"}},
        }
        for k in range(items)
    ]
    entry = {"id": account, "time": now_ms, "messaging": messaging}
    body = {"object": META_MESSAGING[channel], "entry": [entry]}
    return Template(json.dumps(body, ensure_ascii=True, separators=(",", ":")))


def twilio_template() -> Template:
    """One inbound WhatsApp text message as Twilio posts it (form-encoded, its parameters)."""
    contact = "whatsapp:+@@C0@@"
    params = [
        ("SmsMessageSid", "@@W0@@"), ("NumMedia", "0"), ("ProfileName", "Ana Luíza Ferreira"),
        ("MessageType", "text"), ("SmsSid", "@@W0@@"), ("WaId", "@@C0@@"),
        ("SmsStatus", "received"), ("Body", _TEXT), ("To", f"whatsapp:{TWILIO_SENDER}"),
        ("MessagingServiceSid", "MG" + "1" * 32), ("NumSegments", "1"),
        ("ReferralNumMedia", "0"), ("MessageSid", "@@W0@@"), ("AccountSid", TWILIO_ACCOUNT),
        ("From", contact), ("ApiVersion", "2010-04-01"),
    ]  # fmt: skip
    return Template(urllib.parse.urlencode(params).replace("%40%40", "@@"))


def twilio_signature(auth_token: str, url: str, body: bytes) -> str:
    """`X-Twilio-Signature` of a form body: base64 HMAC-SHA1 of the URL and every parameter,
    sorted by name, as name and value (PLATFORM-MORE §5.1)."""
    pairs = sorted(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    data = url + "".join(name + value for name, value in pairs)
    mac = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def telegram_template() -> Template:
    """One private-chat text update (PLATFORM.md §7.2)."""
    person = {"first_name": "Ana", "last_name": "Ferreira", "username": "anaferreira"}
    message = {
        "message_id": "@@NM0@@",
        "date": int(time.time()),
        "chat": {"id": "@@NC0@@", "type": "private", **person},
        "from": {"id": "@@NC0@@", "is_bot": False, **person, "language_code": "pt-br"},
        "text": _TEXT,
    }
    body = {"update_id": "@@NU0@@", "message": message}
    return Template(json.dumps(body, ensure_ascii=False, separators=(",", ":")))


class RequestFactory:
    """Builds request number i as complete HTTP/1.1 bytes; deterministic for one instance."""

    def __init__(self, spec: PayloadSpec) -> None:
        self.spec = spec
        self.nonce = secrets.token_hex(4).upper()
        self.update_base = secrets.randbits(28) << 24
        if spec.channel == "whatsapp":
            count = len(spec.numbers)
            self.templates = [whatsapp_template(spec.numbers, spec.items, j) for j in range(count)]
        elif spec.channel in META_MESSAGING:
            self.templates = [meta_messaging_template(spec.channel, spec.items)]
        elif spec.channel == "twilio":
            self.templates = [twilio_template()]
        else:
            self.templates = [telegram_template()]
        self.head = self._head()
        self.mac = hmac.new(spec.app_secret.encode(), digestmod=hashlib.sha256)  # copied per body

    def _head(self) -> bytes:
        spec = self.spec
        if spec.channel == "whatsapp" or spec.channel in META_MESSAGING:
            path = f"/webhooks/{spec.channel}"
            extra = "User-Agent: facebookexternalua\r\nAccept: */*\r\n"
        elif spec.channel == "twilio":
            path, extra = "/webhooks/twilio", "User-Agent: TwilioProxy/1.1\r\nAccept: */*\r\n"
            return (
                f"POST {path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n{extra}"
                "Content-Type: application/x-www-form-urlencoded\r\n"
            ).encode()
        else:
            path = TELEGRAM_PATH.format(bot_id=spec.bot_id)
            extra = f"X-Telegram-Bot-Api-Secret-Token: {spec.telegram_secret}\r\n"
        return (
            f"POST {path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n{extra}"
            "Content-Type: application/json\r\n"
        ).encode()

    def body(self, i: int) -> bytes:
        """Body of request i."""
        template = self.templates[i % len(self.templates)]
        if self.spec.channel == "whatsapp":
            return template.render(self._whatsapp_values(i))
        if self.spec.channel in META_MESSAGING:
            return template.render(self._meta_values(i))
        if self.spec.channel == "twilio":
            return template.render(self._twilio_values(i))
        return template.render(self._telegram_values(i))

    def _twilio_values(self, i: int) -> dict[str, list[bytes]]:
        return {
            "W": [f"SM{self.nonce}{i:024x}".encode()],
            "C": [f"55119{i % self.spec.contacts:08d}".encode()],
        }

    def _meta_values(self, i: int) -> dict[str, list[bytes]]:
        first = i * self.spec.items
        seq = range(first, first + self.spec.items)
        return {
            "W": [f"m_{self.nonce}{g:012X}QkFBQUFBQUFBQUFB".encode() for g in seq],
            "C": [f"7010{g % self.spec.contacts:012d}".encode() for g in seq],
        }

    def _whatsapp_values(self, i: int) -> dict[str, list[bytes]]:
        first = i * self.spec.items
        seq = range(first, first + self.spec.items)
        return {
            "W": [
                f"wamid.HBgN{self.nonce}{g:012X}FQIAEhggM0VCMEM3NkE0RDZEOTRCRjRD".encode()
                for g in seq
            ],
            "C": [f"55119{g % self.spec.contacts:08d}".encode() for g in seq],
        }

    def _telegram_values(self, i: int) -> dict[str, list[bytes]]:
        if i >= _TELEGRAM_COUNTER_LIMIT:
            raise ValueError("more than 2**24 Telegram updates in one run")
        return {
            "U": [str(self.update_base + i).encode()],
            "M": [str(1000 + i).encode()],
            "C": [str(100_000_000 + i % self.spec.contacts).encode()],
        }

    def build(self, i: int) -> bytes:
        """Request i: headers (with signature and Content-Length) and body."""
        body = self.body(i)
        sign = b""
        if self.spec.channel == "twilio":
            signature = twilio_signature(self.spec.app_secret, TWILIO_PUBLIC_URL, body)
            sign = b"X-Twilio-Signature: " + signature.encode() + b"\r\n"
        elif self.spec.channel != "telegram":  # Meta's three channels
            mac = self.mac.copy()
            mac.update(body)
            sign = b"X-Hub-Signature-256: sha256=" + mac.hexdigest().encode() + b"\r\n"
        length = b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        return b"".join((self.head, sign, length, body))


class RequestPool:
    """Pre-generated requests handed out in order. Past the pool, a request is built on the fly
    (`unique`: every message id stays new) or the pool starts over (a server that ignores the
    content, like bare_server.py, sees the same bytes either way)."""

    def __init__(
        self, factory: RequestFactory, budget_bytes: int, max_count: int, unique: bool
    ) -> None:
        self.factory = factory
        self.unique = unique
        self.request_bytes = len(factory.build(0))
        count = max(1, min(max_count, budget_bytes // self.request_bytes))
        self.pool = [factory.build(i) for i in range(count)]
        self.index = 0
        self.live_built = 0

    def next(self) -> bytes:
        """The next request of the run."""
        i = self.index
        self.index = i + 1
        if i < len(self.pool):
            return self.pool[i]
        if not self.unique:
            return self.pool[i % len(self.pool)]
        self.live_built += 1
        return self.factory.build(i)


# --- coexistence history sync (history_flood.py) -------------------------------------------

_HISTORY_TEXTS = (
    "Oi, tudo bem?",
    "Obrigada! 😊",
    "Pode me mandar o boleto atualizado, por favor?",
    "Sim, confirmado para amanhã às 14h. Até lá!",
    "Bom dia! O pedido chegou certinho, mas a caixa veio amassada. Dá para trocar a "
    "embalagem de presente na loja?",
    _TEXT,
)
_HISTORY_STATUSES = ("READ", "DELIVERED", "SENT", "PLAYED", "READ", "ERROR")
_HISTORY_DAY_S = 86400


@dataclass(frozen=True)
class HistoryShape:
    """A coexistence `history` webhook (PLATFORM.md §4.3) of about `target_bytes` of body:
    one `history[]` item (phase 1) whose threads hold `thread_messages` text messages each,
    alternating between the contact and the business, like tests/test_coexistence.py builds
    them. Picklable, and a request factory when called (WorkerSpec.factory)."""

    target_bytes: int
    thread_messages: int

    def __call__(self, spec: PayloadSpec) -> HistoryFactory:
        return HistoryFactory(spec, self)


def history_template(number: Number, shape: HistoryShape) -> tuple[Template, int]:
    """(template, messages per webhook). Slot R0 (per webhook, in every wamid) keeps every
    wamid of every webhook unique; K0 is `chunk_order`, P0 `progress`."""
    business = number.display_phone_number.lstrip("+")
    oldest = int(time.time()) - 90 * _HISTORY_DAY_S  # phase 1 covers day 1 to 90
    slot_growth = 8 + 6 - len("@@R0@@")  # nonce (8 hex) + webhook index (6 hex) per wamid
    envelope = 600  # bytes of the body around the messages, generously
    threads: list[dict[str, Any]] = []
    size = envelope
    k = 0
    while size < shape.target_bytes:
        contact = f"55219{len(threads):08d}"
        size += len(f'{{"id":"{contact}","messages":[]}},')
        messages: list[dict[str, Any]] = []
        for j in range(shape.thread_messages):
            message = {
                "from": contact if j % 2 else business,
                "id": f"wamid.HBgN@@R0@@{k:06X}FQIAERgSQTdEQjE1RjE2RTc5QjRDRkQ0AA==",
                "timestamp": str(oldest + k * 37),
                "type": "text",
                "text": {"body": _HISTORY_TEXTS[k % len(_HISTORY_TEXTS)]},
                "history_context": {"status": _HISTORY_STATUSES[k % len(_HISTORY_STATUSES)]},
            }
            grown = size + len(json.dumps(message, ensure_ascii=True, separators=(",", ":")))
            grown += slot_growth + 1  # the slot filled, a comma
            if grown > shape.target_bytes and k:
                break
            messages.append(message)
            size, k = grown, k + 1
        threads.append({"id": contact, "messages": messages})
        if len(messages) < shape.thread_messages:
            break
    metadata = {"phase": 1, "chunk_order": "@@NK0@@", "progress": "@@NP0@@"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": business, "phone_number_id": number.phone_number_id},
        "history": [{"metadata": metadata, "threads": threads}],
    }
    entry = {"id": number.waba_id, "changes": [{"field": "history", "value": value}]}
    body = {"object": "whatsapp_business_account", "entry": [entry]}
    text = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    return Template(text), k


class HistoryFactory(RequestFactory):
    """Signed history webhooks for the first configured number (a coexistence one): request
    i is chunk i + 1 of one long sync, its wamids new in every request and every run."""

    def __init__(self, spec: PayloadSpec, shape: HistoryShape) -> None:
        super().__init__(spec)
        self.history, self.messages = history_template(spec.numbers[0], shape)

    def body(self, i: int) -> bytes:
        """Body of history webhook i."""
        return self.history.render(
            {
                "R": [f"{self.nonce}{i:06X}".encode()],
                "K": [str(i + 1).encode()],
                "P": [str(min(99, i)).encode()],
            }
        )
