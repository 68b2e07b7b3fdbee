"""Raw-socket HTTP cases for the gateway's public port, and the client that plays them.

A case is a list of `Step`s on one fresh connection (bytes to write, optionally a byte at a
time with a pause between bytes, or a close) plus what the oracle knows about it:
`expected` answer codes when every request of the case is well formed (None: anything but a
5xx is fine), and `forbidden`: the message id of a signed webhook hidden inside an ambiguously
framed request (a smuggling shape), which must never be published.

Families (`raw_case` picks one per case, deterministically from (seed, k)):
request lines (methods, targets, versions, separators), header names and values (NUL, bare
CR or LF, obs-fold, huge, many, non-ASCII), framing (conflicting Content-Length and
Transfer-Encoding: CL.TE, TE.CL, TE.TE obfuscations, duplicate or malformed lengths, chunk-size
overflow, chunk extensions, trailers), pipelines of well-formed requests, slow clients
(byte-at-a-time within the deadlines), early close, and random byte damage of a valid request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field

from _fuzz_bodies import APP_SECRET, BOT_SECRETS, sign_meta

WA_NUMBER = "100200300400500"
WA_DISPLAY = "+15550001111"
WABA = "200300400500600"
BOT = "7000000001"
VERIFY_TOKEN = "test-verify-token"
IDLE_S = 0.4
"""After the last byte written, an answer that has not begun for this long is not coming
(the request was incomplete or the server is waiting for more)."""
CASE_S = 8.0
"""No case takes longer: past it the connection is dropped and the case counted `hung`."""


@dataclass
class Step:
    data: bytes = b""
    byte_pause_s: float = 0.0
    close: bool = False


@dataclass
class RawCase:
    k: int
    family: str
    steps: list[Step]
    expected: list[int] | None = None
    forbidden: str | None = None
    tokens: list[tuple[int, str]] = field(default_factory=list)
    """(position among the case's requests, message id) of each signed webhook it sends."""


@dataclass
class Outcome:
    statuses: list[int]
    closed: bool
    hung: bool
    garbage: bool
    """An answer that does not parse as HTTP/1.x."""
    stalled: bool = False
    """This client's own event loop stalled for over a second (a large body being generated
    or decoded beside it): the server may rightly have cut a connection that went quiet."""
    write_s: float = 0.0
    """How long writing the case took (a byte-at-a-time case stretched by a busy client past
    the server's head deadline is cut by the server, rightly)."""


# --- well-formed requests --------------------------------------------------------------------


def head(method: str, target: str, headers: list[tuple[str, str]], version: str = "1.1") -> bytes:
    lines = [
        f"{method} {target} HTTP/{version}",
        "Host: 127.0.0.1",
        *(f"{n}: {v}" for n, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def wa_body(message_id: str) -> bytes:
    message = {"from": "5511987650000", "id": message_id, "timestamp": str(int(time.time())),
               "type": "text", "text": {"body": "fuzz"}}  # fmt: skip
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": WA_DISPLAY, "phone_number_id": WA_NUMBER},
             "contacts": [{"profile": {"name": "F"}, "wa_id": "5511987650000"}],
             "messages": [message]}  # fmt: skip
    change = {"field": "messages", "value": value}
    envelope = {"object": "whatsapp_business_account",
                "entry": [{"id": WABA, "changes": [change]}]}  # fmt: skip
    return json.dumps(envelope, separators=(",", ":")).encode()


def signed_wa(message_id: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    body = wa_body(message_id)
    headers = [("Content-Type", "application/json"),
               ("X-Hub-Signature-256", sign_meta(body, APP_SECRET.encode())),
               ("Content-Length", str(len(body))), *(extra or [])]  # fmt: skip
    return head("POST", "/webhooks/whatsapp", headers) + body


def _tg(rng: random.Random, secret: str | None, bot: str = BOT) -> bytes:
    body = json.dumps({"update_id": rng.randrange(1, 2**31), "message": {
        "message_id": 1, "date": int(time.time()), "chat": {"id": 5, "type": "private"},
        "from": {"id": 5, "is_bot": False, "first_name": "F"}, "text": "hi"}}).encode()  # fmt: skip
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if secret is not None:
        headers.append(("X-Telegram-Bot-Api-Secret-Token", secret))
    return head("POST", f"/webhooks/telegram/{bot}", headers) + body


def well_formed(rng: random.Random, k: int, i: int) -> tuple[bytes, int, str | None]:
    """One valid request: (bytes, expected status, message id if it is a signed webhook)."""
    pick = rng.randrange(10)
    if pick <= 2:
        mid = f"wamid.fzraw{k}x{i}"
        return signed_wa(mid), 200, mid
    if pick == 3:
        unsigned = wa_body("wamid.unsigned")
        return head("POST", "/webhooks/whatsapp",
                    [("Content-Length", str(len(unsigned)))]) + unsigned, 401, None  # fmt: skip
    if pick == 4:
        return _tg(rng, "wrong-secret"), 401, None
    if pick == 5:
        return _tg(rng, BOT_SECRETS[BOT], bot="999"), 404, None
    if pick == 6:
        return head("GET", "/healthz", []), 200, None
    if pick == 7:
        query = f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=c{k}"
        return head("GET", f"/webhooks/whatsapp?{query}", []), 200, None
    if pick == 8:
        return head("GET", "/nowhere", []), 404, None
    return head("GET", "/readyz", []), 200, None


# --- families ----------------------------------------------------------------------------------

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PRI", "post",
           "G ET", "POST\x00", "PÖST", "X" * 300, "", "GET\t", "\r\nPOST")  # fmt: skip
TARGETS = ("/webhooks/whatsapp", "http://127.0.0.1/webhooks/whatsapp", "*", "//webhooks/whatsapp",
           "/webhooks/whatsapp?x=1", "/webhooks/%77hatsapp", "/webhooks/telegram/",
           "/webhooks/telegram/../whatsapp", "/webhooks/telegram/7000000001/x", "/" + "a" * 9000,
           "/webhooks/whatsapp#f", "/\x00", "/webhooks/whats app", "webhooks/whatsapp", "",
           "/webhooks/telegram/%37000000001", "/%", "/webhooks/whatsapp\x7f")  # fmt: skip
VERSIONS = ("HTTP/1.1", "HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/0.9", "", "http/1.1",
            "HTTP/01.1", "HTTP/1.1 ", "HTTP/1", "HTTP/1.1\x00", "HTTP/11", "HTTP/1.10")  # fmt: skip


def _request_line(rng: random.Random, k: int) -> RawCase:
    body = wa_body(f"wamid.fzline{k}")
    sep = rng.choice((" ", " ", "  ", "\t", ""))
    line = f"{rng.choice(METHODS)}{sep}{rng.choice(TARGETS)}{sep}{rng.choice(VERSIONS)}"
    heads = [("Host", "127.0.0.1"), ("Content-Length", str(len(body))),
             ("X-Hub-Signature-256", sign_meta(body, APP_SECRET.encode()))]  # fmt: skip
    data = (line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in heads) + "\r\n").encode(
        "utf-8", "surrogateescape") + body  # fmt: skip
    return RawCase(k, "request-line", [Step(data)])


HEADER_NAMES = ("X-Fuzz", "X\x00Fuzz", "X Fuzz", "", ":", "X-Fuzz ", " X-Fuzz", "Ä", "X\x7fF",
                "Content-Type", "Host", "Connection", "Expect", "Upgrade", "X-Hub-Signature-256",
                "X-Telegram-Bot-Api-Secret-Token", "Content-Encoding")  # fmt: skip
HEADER_VALUES = ("v", "", "\x00", "a\rb", "a\nb", "a\r\nX-Injected: 1", "é", "\xff", " padded ",
                 "close", "keep-alive", "100-continue", "websocket", "gzip", "sha256=",
                 "sha256=" + "0" * 64, "x" * 9000, "\t", "a\x01b")  # fmt: skip


def _headers_family(rng: random.Random, k: int) -> RawCase:
    request, _, _ = well_formed(rng, k, 0)
    cut = request.index(b"\r\n") + 2
    kind = rng.choice(("one", "one", "many", "fold", "bare-lf", "huge", "space-colon"))
    if kind == "many":
        extra = "".join(f"X-H{i}: {i}\r\n" for i in range(rng.choice((60, 127, 129, 300, 2000))))
    elif kind == "fold":
        extra = f"{rng.choice(HEADER_NAMES)}: a\r\n {rng.choice(HEADER_VALUES)}\r\n"
    elif kind == "huge":
        extra = f"X-Huge: {'h' * rng.choice((4000, 8190, 8191, 20_000, 70_000))}\r\n"
    elif kind == "space-colon":
        extra = f"{rng.choice(HEADER_NAMES)} : {rng.choice(HEADER_VALUES)}\r\n"
    else:
        extra = f"{rng.choice(HEADER_NAMES)}: {rng.choice(HEADER_VALUES)}\r\n"
    data = request[:cut] + extra.encode("utf-8", "surrogateescape") + request[cut:]
    if kind == "bare-lf":
        data = data.replace(b"\r\n", b"\n", rng.randint(1, 6))
    return RawCase(k, f"header-{kind}", [Step(data)])


TE_VALUES = ("chunked", "Chunked", " chunked", "chunked ", "\tchunked", "xchunked",
             "chunked, identity", "identity, chunked", "chunked\x00", "chunk", "gzip, chunked",
             "chunked;q=1", "chunked\x0b", "identity", "CHUNKED", "chunked,")  # fmt: skip
TE_NAMES = ("Transfer-Encoding", "transfer-encoding", "Transfer-Encoding ", "Transfer_Encoding",
            "Transfer-Encoding\t", " Transfer-Encoding", "Transfer-Encodin")  # fmt: skip
NOT_TE = ("Transfer_Encoding", "Transfer-Encodin")
"""Other headers altogether: with one of them a TE.CL body is framed by its Content-Length
alone, unambiguously, and the webhook after it is a request of its own."""


def _smuggling(rng: random.Random, k: int) -> RawCase:
    """An outer POST whose framing is ambiguous, with a signed webhook after or inside it."""
    mid = f"wamid.fzsmuggled{k}"
    inner = signed_wa(mid)
    te_name = rng.choice(TE_NAMES)
    te = f"{te_name}: {rng.choice(TE_VALUES)}"
    shape = rng.choice(("CL.TE", "TE.CL", "TE.TE", "CL.CL", "CL-odd", "TE-fold"))
    path = rng.choice(("/webhooks/whatsapp", "/webhooks/telegram/7000000001", "/healthz"))
    sig = "X-Hub-Signature-256: sha256=" + "0" * 64
    if shape in ("CL.TE", "TE.TE", "TE-fold"):
        body = b"0\r\n\r\n" + inner
        extra = [te] if shape != "TE.TE" else [te, f"Transfer-Encoding: {rng.choice(TE_VALUES)}"]
        if shape == "TE-fold":
            extra = ["Transfer-Encoding: identity\r\n chunked"]
        lines = [*extra, f"Content-Length: {len(body)}"]
    elif shape == "TE.CL":
        body = f"{len(inner):x}\r\n".encode() + inner + b"\r\n0\r\n\r\n"
        lines = [f"Content-Length: {len(f'{len(inner):x}') + 2}", te]
    elif shape == "CL.CL":
        prefix = b"{}"
        body = prefix + inner
        first, second = (len(prefix), len(body)) if rng.random() < 0.5 else (len(body), len(prefix))
        lines = [f"Content-Length: {first}", f"Content-Length: {second}"]
    else:
        prefix = b"{}"
        body = prefix + inner
        odd = rng.choice((f"{len(prefix)}, {len(body)}", f"+{len(prefix)}", f"{len(prefix)} x",
                          f"0x{len(prefix):x}", f"{len(prefix)}.0", f"-{len(prefix)}",
                          "9" * 30, f"{len(prefix)}\x00"))  # fmt: skip
        lines = [f"Content-Length: {odd}"]
    rng.shuffle(lines)
    data = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{sig}\r\n" + "\r\n".join(lines)
            + "\r\n\r\n").encode("utf-8", "surrogateescape") + body  # fmt: skip
    unambiguous = shape == "TE.CL" and te_name in NOT_TE
    return RawCase(k, f"smuggle-{shape}", [Step(data)], forbidden=None if unambiguous else mid)


def _chunked(rng: random.Random, k: int) -> RawCase:
    """A chunked signed webhook (aiohttp's path), valid or with odd chunking."""
    mid = f"wamid.fzchunk{k}"
    body = wa_body(mid)
    heads = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
             ("X-Hub-Signature-256", sign_meta(body, APP_SECRET.encode()))]  # fmt: skip
    kind = rng.choice(("valid", "valid", "ext", "trailer", "overflow", "lf-only", "zeros",
                       "bad-size", "no-end", "negative", "huge-ext"))  # fmt: skip
    cut = rng.randrange(1, len(body))
    parts = [body[:cut], body[cut:]]
    ext = {"ext": ";a=b", "huge-ext": ";" + "e" * 9000}.get(kind, "")
    size = {"zeros": "000{:x}", "bad-size": "{:x}g", "negative": "-{:x}",
            "overflow": "ffffffffffffffffffff{:x}"}.get(kind, "{:x}")  # fmt: skip
    eol = "\n" if kind == "lf-only" else "\r\n"
    chunks = b"".join(f"{size.format(len(p))}{ext}{eol}".encode() + p + eol.encode() for p in parts)
    end = {"trailer": b"0\r\nX-Trailer: t\r\n\r\n", "no-end": b""}.get(
        kind, f"0{eol}{eol}".encode()
    )
    valid = kind in ("valid", "ext", "trailer", "zeros")
    case = RawCase(
        k, f"chunked-{kind}", [Step(head("POST", "/webhooks/whatsapp", heads) + chunks + end)]
    )
    if valid:
        case.expected, case.tokens = [200], [(0, mid)]
    return case


def _pipeline(rng: random.Random, k: int) -> RawCase:
    requests = [well_formed(rng, k, i) for i in range(rng.randint(2, 12))]
    data = b"".join(r for r, _, _ in requests)
    steps = [Step(data)]
    if rng.random() < 0.5:  # cut into random writes
        cuts = sorted(rng.sample(range(1, len(data)), min(6, len(data) - 1)))
        steps = [Step(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    tokens = [(i, mid) for i, (_, _, mid) in enumerate(requests) if mid]
    return RawCase(k, "pipeline", steps, [s for _, s, _ in requests], tokens=tokens)


def _slow(rng: random.Random, k: int) -> RawCase:
    request, status, mid = well_formed(rng, k, 0)
    pause = rng.choice((0.0005, 0.001, 0.002))
    tokens = [(0, mid)] if mid else []
    return RawCase(k, "slow", [Step(request, byte_pause_s=pause)], [status], tokens=tokens)


def _early_close(rng: random.Random, k: int) -> RawCase:
    request, _, _ = well_formed(rng, k, 0)
    cut = rng.randrange(0, len(request))
    return RawCase(k, "early-close", [Step(request[:cut]), Step(close=True)])


def _damage(rng: random.Random, k: int) -> RawCase:
    request, _, _ = well_formed(rng, k, 0)
    data = bytearray(request)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(data))
        op = rng.randrange(3)
        if op == 0:
            data[i] = rng.randrange(256)
        elif op == 1:
            del data[i]
        else:
            data.insert(i, rng.choice(b"\r\n\x00 :\t\x80"))
    return RawCase(k, "damage", [Step(bytes(data))])


FAMILIES = ((_request_line, 2), (_headers_family, 3), (_smuggling, 3), (_chunked, 2),
            (_pipeline, 2), (_slow, 1), (_early_close, 1), (_damage, 3))  # fmt: skip


def raw_case(seed: int, k: int) -> RawCase:
    rng = random.Random(f"{seed}/raw/{k}")
    family = rng.choices([f for f, _ in FAMILIES], [w for _, w in FAMILIES])[0]
    return family(rng, k)


# --- the client --------------------------------------------------------------------------------


async def play(port: int, case: RawCase) -> Outcome:
    """Run the case on a fresh connection; every answer the server gives, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses: list[int] = []
    outcome = Outcome(statuses, closed=False, hung=False, garbage=False)
    reading = asyncio.create_task(_read_answers(reader, outcome))
    started = time.monotonic()
    try:
        try:
            await asyncio.wait_for(_write(writer, case.steps), CASE_S)
        finally:
            outcome.write_s = time.monotonic() - started
        await _settle(reading, outcome, case)
    except (ConnectionError, TimeoutError):
        outcome.closed = True
    finally:
        reading.cancel()
        with contextlib.suppress(BaseException):
            await reading
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    return outcome


async def _write(writer: asyncio.StreamWriter, steps: list[Step]) -> None:
    """Write the steps until done or the server closed the connection (uvloop refuses a
    write on a closed transport with RuntimeError)."""
    for step in steps:
        if step.close:
            writer.close()
            return
        if step.byte_pause_s:
            for i in range(len(step.data)):
                if writer.is_closing():
                    return
                writer.write(step.data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(step.byte_pause_s)
        elif not writer.is_closing():
            writer.write(step.data)
            await writer.drain()


async def _settle(reading: asyncio.Task[None], outcome: Outcome, case: RawCase) -> None:
    """Wait until the server closed, or the expected answers are in, or it went quiet."""
    deadline = time.monotonic() + CASE_S
    want = len(case.expected) if case.expected is not None else None
    last = (-1, time.monotonic())
    tick = time.monotonic()
    while not reading.done():
        outcome.stalled = outcome.stalled or time.monotonic() - tick > 1.0
        tick = time.monotonic()
        count = len(outcome.statuses)
        if want is not None and count >= want:
            await asyncio.sleep(0.05)  # an extra answer (a smuggled request) shows up here
            return
        now = time.monotonic()
        if count != last[0]:
            last = (count, now)
        if now - last[1] > IDLE_S and (want is None or now > deadline):
            return
        if now > deadline:
            outcome.hung = True
            return
        await asyncio.sleep(0.01)


async def _read_answers(reader: asyncio.StreamReader, outcome: Outcome) -> None:
    buf = bytearray()
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                outcome.closed = True
                return
            buf += data
            while (answer := _one_answer(buf)) is not None:
                status, end = answer
                if status < 0:
                    outcome.garbage = True
                    return
                outcome.statuses.append(status)
                del buf[:end]
    except ConnectionError:
        outcome.closed = True


def _one_answer(buf: bytearray) -> tuple[int, int] | None:
    """(status, bytes used) of the first whole answer in buf; status -1: not HTTP."""
    if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
        return -1, len(buf)
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head_text = bytes(buf[:head_end]).lower()
    if not head_text[9:12].isdigit():
        return -1, len(buf)
    status = int(head_text[9:12])
    length = 0
    for line in head_text.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            value = line.split(b":", 1)[1].strip()
            if not value.isdigit():
                return -1, len(buf)
            length = int(value)
    end = head_end + 4 + length
    return (status, end) if len(buf) >= end else None
