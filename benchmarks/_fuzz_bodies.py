"""Structure-aware signed bodies for every webhook endpoint, mutated from the corpus.

Each seed is one case of tests/corpus/<channel>/*.json (a JSON body, or Twilio's form pairs).
A fuzz case first makes the seed's provider ids its own (`uniquify`: every id-like value gets
the case's token, so no case is a redelivery of another and its events can be found again),
then applies one to three mutations (drop, duplicate or retype a field, a huge string, odd
unicode, deep nesting, numbers out of range, raw JSON quirks, byte-level damage), and signs the
result correctly for its path: a signed body always passes the signature check, so what it
tests is everything after it.

Deterministic: `signed_case(seeds, seed, k)` builds the same bytes for the same (seed, k).
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from adapters.twilio import sign as twilio_sign  # noqa: E402
from adapters.whatsapp import sign as sign_meta  # noqa: E402
from tests.conftest import (  # noqa: E402
    APP_SECRET,
    BOT_SECRETS,
    INSTAGRAM_SECRET,
    MESSENGER_SECRET,
    TWILIO_TOKEN,
    TWILIO_URL,
)

__all__ = ["APP_SECRET", "BOT_SECRETS", "Seed", "SignedCase", "load_seeds", "sign_meta",
           "signed_case"]  # fmt: skip

CORPUS = REPO_ROOT / "tests" / "corpus"
MAX_BODY_BYTES = 3 * 1024 * 1024
"""`server.max_body_bytes` at its default: bodies stay under it (413 is the HTTP side's)."""
ID_KEYS = frozenset(
    {"id", "mid", "mids", "message_id", "update_id", "wamid", "MessageSid", "SmsSid",
     "SmsMessageSid", "OriginalRepliedMessageSid", "ReferralCtwaClid"}
)  # fmt: skip
"""Keys whose values are provider ids: made the case's own (`uniquify`)."""
TOKEN_BASE = 7_000_000_000_000
"""Integer ids become `id + TOKEN_BASE * (k + 1)`: distinct per case and within int64."""

Json = Any


@dataclass(frozen=True)
class Seed:
    """One corpus case: where it is posted and its body as data."""

    name: str
    channel: str
    path: str
    key: str | None
    body: Json
    """A JSON value, or (Twilio) a list of [name, value] pairs."""


@dataclass(frozen=True)
class SignedCase:
    """One signed webhook: its request parts and what the oracle needs."""

    k: int
    seed: str
    channel: str
    """The endpoint's channel (the path's), as the gateway's receive sees it first."""
    key: str | None
    path: str
    headers: dict[str, str]
    body: bytes
    token: str
    mutations: tuple[str, ...]
    cross_path: bool = False
    """A Meta body posted to another Meta channel's path (signed with its own app's secret)."""


class Raw:
    """JSON text inserted as is where a value stood (what json.dumps cannot write)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:  # (a retyped value is its text, not an address: same every run)
        return f"Raw({self.text[:40]!r})"


def load_seeds(corpus: Path = CORPUS) -> list[Seed]:
    """Every corpus case, sorted by name (the order is part of the determinism)."""
    seeds = []
    for path in sorted(corpus.glob("*/*.json")):
        case = json.loads(path.read_text())
        channel = case["channel"]
        key = case.get("bot_id")
        default = f"/webhooks/telegram/{key}" if channel == "telegram" else f"/webhooks/{channel}"
        name = f"{path.parent.name}/{path.stem}"
        seeds.append(Seed(name, channel, case.get("path", default), key, case["body"]))
    return seeds


def token_of(k: int) -> str:
    return f"fz{k}x"


def account_ids() -> frozenset[str]:
    """The configured accounts of tests/conftest.py's TEST_CONFIG: never rewritten."""
    from tests import conftest as c

    return frozenset(
        {c.NUMBER_A, c.NUMBER_B, c.NUMBER_C, c.WABA, c.BOT_1, c.BOT_2, c.PAGE_A, c.PAGE_B, c.IG_A,
         "900800700600500"}
    )  # fmt: skip


ACCOUNTS = account_ids()


def uniquify(body: Json, k: int) -> Json:
    """`body` with every provider id made case `k`'s own, consistently (a reply's reference
    to a message of the same body still names it)."""
    token = token_of(k)
    seen: dict[Any, Any] = {}

    def new(value: Any) -> Any:
        if isinstance(value, bool) or value in ACCOUNTS or str(value) in ACCOUNTS:
            return value
        if value not in seen:
            if isinstance(value, int):
                seen[value] = value + TOKEN_BASE * (k + 1)
            elif isinstance(value, str) and value.isascii() and value.isdigit():
                seen[value] = str(int(value) + TOKEN_BASE * (k + 1))  # a numeric id stays one
            elif isinstance(value, str):
                seen[value] = f"{value}{token}"
            else:
                return value
        return seen[value]

    def walk(node: Json, key: str | None) -> Json:
        if isinstance(node, dict):
            return {name: walk(v, name) for name, v in node.items()}
        if isinstance(node, list):
            if key == "mids":
                return [new(v) for v in node]
            return [walk(v, None) for v in node]
        return new(node) if key in ID_KEYS else node

    if isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
        return [[n, new(v) if n in ID_KEYS else v] for n, v in body]  # Twilio's form pairs
    return walk(body, None)


# --- mutations of JSON trees ---------------------------------------------------------------


def _paths(node: Json) -> list[tuple[Any, ...]]:
    """Every path to a value inside node (dict keys and list indexes), node itself first. A
    container that many-items put in 2,000 places is entered once, at its first place (its
    other places are paths themselves): two many-items in a row made 4 M paths, 19 s of the
    fuzzer's time for one case, during which other cases timed out."""
    out: list[tuple[Any, ...]] = []
    entered: set[int] = set()

    def walk(node: Json, prefix: tuple[Any, ...]) -> None:
        out.append(prefix)
        if not isinstance(node, dict | list) or id(node) in entered:
            return
        entered.add(id(node))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for step, value in items:
            walk(value, (*prefix, step))

    walk(node, ())
    return out


def _get(node: Json, path: tuple[Any, ...]) -> Json:
    for step in path:
        node = node[step]
    return node


def _set(root: Json, path: tuple[Any, ...], value: Json) -> Json:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _huge_string(rng: random.Random) -> str:
    size = rng.choice((1000, 65_536, 300_000, rng.randint(1, 900_000)))
    return rng.choice(("a", "é", "😀", "\\", '"', "\u2028", "x y")) * (size // 2 or 1)


UNICODE = (
    "", " ", "\u0000", "\ud800", "\udfff", "\ud83d\ude00", "\u202e\u0645\u0631\u062d\u0628\u0627",
    "\ufeff", "\uffff", "Ａ\u0301\u0301\u0301", "\u0000abc\u0000", "\r\n", "%00", "\\u0000",
    "null", "true", "1e999", "{}", "[]", "𝕏" * 40, "ا" * 300, "\u200b" * 50,
)  # fmt: skip
NUMBERS = (
    0, -1, 1, 2**31, 2**31 - 1, -(2**31), 2**53 + 1, 2**63, 2**63 - 1, -(2**63) - 1, 2**64,
    10**30, 1.5, -0.0, 1e308, 1e-320, 3.0,
)  # fmt: skip
RAW_NUMBERS = ("1e999", "-1e999", "NaN", "Infinity", "-0", "1" * 5000, "0x10", "01", "1.", ".5",
               "1e", "+1", "9" * 400 + ".5")  # fmt: skip


def _retyped(rng: random.Random, value: Json) -> Json:
    choices: list[Json] = [None, True, False, "", "text", 0, -1, 2**64, 1.5, [], {}, [value],
                           {"value": value}, str(value)[:50]]  # fmt: skip
    if isinstance(value, str) and value.isdigit():
        choices.append(int(value))
    return rng.choice(choices)


def _deep(rng: random.Random, value: Json) -> Raw:
    depth = rng.choice((65, 100, 1000, 10_000, 100_000, rng.randint(1, 200_000)))
    opener, closer = rng.choice((("[", "]"), ('{"a":', "}"), ('{"id":[', "]}")))
    inner = _dump(value) if rng.random() < 0.5 else "1"
    return Raw(opener * depth + inner + closer * depth)


def mutate_json(rng: random.Random, root: Json, heavy: bool = False) -> tuple[Json, str]:
    """One mutation of the tree `root` (changed in place where it can be): (new root, name)."""
    paths = _paths(root)
    path = rng.choice(paths)
    target = _get(root, path)
    name = rng.choice(_HEAVY if heavy else _JSON_MUTATIONS)
    if name == "drop" and path:
        parent = _get(root, path[:-1])
        del parent[path[-1]]
        return root, "drop"
    if name == "duplicate" and isinstance(target, list) and target:
        i = rng.randrange(len(target))
        target.insert(i, copy.deepcopy(target[i]))
        return root, "duplicate-item"
    if name == "duplicate" and isinstance(target, dict) and target:
        # The same key twice in the JSON text, the second with another value.
        victim = rng.choice(list(target))
        other = _retyped(rng, target[victim])
        target[victim] = Raw(f"{_dump(target[victim])},{json.dumps(victim)}:{_dump(other)}")
        return root, "duplicate-key"
    if name == "many_items" and isinstance(target, list):
        item = target[0] if target else {}
        room = MAX_BODY_BYTES // (len(_dump(item)) + 1)
        target.extend([item] * min(rng.choice((10, 200, 2000)), room))
        return root, "many-items"
    if name == "huge":
        return _set(root, path, _huge_string(rng)), "huge-string"
    if name == "unicode":
        value = rng.choice(UNICODE)
        if isinstance(target, str) and rng.random() < 0.5:
            value = target + value
        return _set(root, path, value), "unicode"
    if name == "number":
        num: Json = rng.choice(NUMBERS) if rng.random() < 0.6 else Raw(rng.choice(RAW_NUMBERS))
        return _set(root, path, num), "number"
    if name == "deep":
        return _set(root, path, _deep(rng, target)), "deep-nesting"
    if name == "extra_key" and isinstance(target, dict):
        target[rng.choice(("__proto__", "type", "unknown", "", "id", "\u0000"))] = _retyped(
            rng, None
        )
        return root, "extra-key"
    return _set(root, path, _retyped(rng, target)), "retype"


_HEAVY = ("huge", "deep", "many_items")
_JSON_MUTATIONS = ("drop", "drop", "duplicate", "duplicate", "retype", "retype", "huge",
                   "unicode", "number", "deep", "extra_key", "many_items")  # fmt: skip


class _Full(Exception):
    """The text reached its limit: the rest would be cut off anyway."""


def _dump(node: Json, limit: int = MAX_BODY_BYTES) -> str:
    """JSON as Meta writes it (non-ASCII escaped, compact), with `Raw` fragments as is; lone
    surrogates come out as `\\udXXX` escapes. At most a little over `limit` characters: the
    body is cut to MAX_BODY_BYTES in the end, and a tree can hold one 3 MiB string in
    thousands of places (many-items, then huge-string on the item they all share), which
    in full would be gigabytes (the fuzzer once grew to 14 GiB making one)."""
    out: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        out.append(text)
        size += len(text)
        if size > limit:
            raise _Full

    def walk(node: Json) -> None:
        if isinstance(node, Raw):
            put(node.text)
        elif isinstance(node, dict):
            put("{")
            for i, (name, value) in enumerate(node.items()):
                put(f"{',' if i else ''}{json.dumps(str(name))}:")
                walk(value)
            put("}")
        elif isinstance(node, list):
            put("[")
            for i, value in enumerate(node):
                if i:
                    put(",")
                walk(value)
            put("]")
        else:
            put(json.dumps(node))

    with contextlib.suppress(_Full):
        walk(node)
    return "".join(out)


def _bytes_damage(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    kind = rng.choice(("truncate", "flip", "invalid-utf8", "empty", "not-json", "bom", "nul"))
    if kind == "truncate" and body:
        return body[: rng.randrange(len(body))], kind
    if kind == "flip" and body:
        data = bytearray(body)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), kind
    if kind == "invalid-utf8" and body:
        i = rng.randrange(len(body))
        return body[:i] + rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88")) + body[
            i:
        ], kind
    if kind == "bom":
        return b"\xef\xbb\xbf" + body, kind
    if kind == "nul":
        return body + b"\x00", kind
    if kind == "not-json":
        return rng.choice((b"null", b"[]", b"0", b'""', b"{", b"<xml/>", b"a=b&c=d")), kind
    return b"", "empty"


# --- Twilio form bodies --------------------------------------------------------------------


def mutate_form(
    rng: random.Random, pairs: list[list[str]], heavy: bool = False
) -> tuple[list[list[str]], str]:
    kinds = ("drop", "duplicate", "value", "huge", "unicode", "number", "new", "count")
    name = "huge" if heavy else rng.choice(kinds)
    i = rng.randrange(len(pairs)) if pairs else 0
    if name == "drop" and pairs:
        del pairs[i]
    elif name == "duplicate" and pairs:
        pairs.insert(i, [pairs[i][0], rng.choice((pairs[i][1], "", "other"))])
    elif name == "huge" and pairs:
        pairs[i][1] = _huge_string(rng)
    elif name == "unicode" and pairs:
        pairs[i][1] = rng.choice(UNICODE)
    elif name == "number" and pairs:
        pairs[i][1] = str(rng.choice(NUMBERS + tuple(RAW_NUMBERS)))
    elif name == "count":
        pairs.append([rng.choice(("NumMedia", "NumSegments", "ReferralNumMedia")),
                      rng.choice(("-1", "99", "1e3", "x", "", "4294967296"))])  # fmt: skip
    elif name == "new":
        pairs.append([rng.choice(("MediaUrl0", "MediaUrl9", "ButtonPayload", "Latitude", "")),
                      rng.choice(UNICODE)])  # fmt: skip
    elif pairs:
        pairs[i][1] = rng.choice(("", "whatsapp:", "whatsapp:+", "+1", "x", "None"))
    return pairs, f"form-{name}"


def _form_bytes(rng: random.Random, pairs: list[list[str]]) -> bytes:
    body = urllib.parse.urlencode([(n, v) for n, v in pairs], encoding="utf-8",
                                  errors="surrogatepass").encode()  # fmt: skip
    if rng.random() < 0.1:
        body += rng.choice((b"&%zz=1", b"&a=%", b"&&&", b"&=x", b"&a=%ff%fe", b"&;"))
    return body


# --- the signed case -----------------------------------------------------------------------

SECRETS = {"whatsapp": APP_SECRET, "messenger": MESSENGER_SECRET, "instagram": INSTAGRAM_SECRET}


def _headers(seed: Seed, body: bytes) -> dict[str, str]:
    if seed.channel == "telegram":
        assert seed.key is not None
        return {"X-Telegram-Bot-Api-Secret-Token": BOT_SECRETS[seed.key],
                "Content-Type": "application/json"}  # fmt: skip
    if seed.channel == "twilio":
        return {"X-Twilio-Signature": twilio_sign(TWILIO_TOKEN.encode(), TWILIO_URL, body),
                "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    sig = sign_meta(body, SECRETS[seed.channel].encode())
    return {"X-Hub-Signature-256": sig, "Content-Type": "application/json"}


def signed_case(
    seeds: list[Seed], seed: int, k: int, mutations: int | None = None, heavy: bool = False
) -> SignedCase:
    """Case k of the run `seed`: a corpus seed made unique, mutated, correctly signed.
    `mutations=0` gives the seed itself (made unique): the calibration; `heavy` only the
    mutations that make bodies large (the warm-up before RSS is first measured)."""
    rng = random.Random(f"{seed}/body/{k}")
    chosen = rng.choice(seeds)
    body = uniquify(chosen.body, k)
    count = rng.choice((1, 1, 1, 2, 3)) if mutations is None else mutations
    names: list[str] = []
    data: bytes
    if chosen.channel == "twilio":
        for _ in range(count):
            body, name = mutate_form(rng, body, heavy)
            names.append(name)
        data = _form_bytes(rng, body)
    else:
        for _ in range(count):
            body, name = mutate_json(rng, body, heavy)
            names.append(name)
        data = _dump(body).encode("utf-8", "surrogatepass")
        if count and rng.random() < 0.08:
            data, name = _bytes_damage(rng, data)
            names.append(name)
    if len(data) > MAX_BODY_BYTES:
        data, names = data[:MAX_BODY_BYTES], [*names, "cut-to-limit"]
    endpoint = chosen.path.split("/")[
        2
    ]  # the path's channel: a Meta body may be posted to another's
    return SignedCase(k, chosen.name, endpoint, chosen.key, chosen.path,
                      _headers(chosen, data), data, token_of(k), tuple(names),
                      endpoint != chosen.channel)  # fmt: skip
