"""Cut the too deeply nested parts out of a JSON body, without recursion.

msgspec decodes nested JSON recursively and raises `RecursionError` at about a thousand
levels, even where it only skips a value or keeps it as `msgspec.Raw`. So one deep item makes
the whole body undecodable, and every valid item beside it would be lost. `cut_deep` makes a
copy of the body in which every container that opens deeper than `limit` levels is replaced by
a marker string: the copy decodes, and the walk dead-letters exactly the items that hold a
marker (adapters/whatsapp/_inbound.py). Used only after a decode failed that way, so the
usual body never pays for the scan. `decode_cut` and `cut_outside` are the steps every
JSON-envelope parser (WhatsApp's, Messenger and Instagram's) takes with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, Protocol, TypeVar

import msgspec

from adapters.schema import ParseError

_TOKENS: Final = re.compile(
    rb'"[^"\\]*(?:\\.[^"\\]*)*"'  # a string: brackets inside it do not count
    rb"|[\[{](?:[ \t\n\r]*[\[{])*"  # a run of openers: `[[[[` is one token, not thousands
    rb"|[\]}](?:[ \t\n\r]*[\]}])*",  # a run of closers (JSON whitespace only between)
    re.DOTALL,
)
_OPENERS: Final = frozenset(b"[{")
_MARKER: Final = b"gw:nested-too-deep"


def marker_for(body: bytes) -> bytes:
    """A JSON string that occurs nowhere in `body`, so each occurrence in the copy is a cut."""
    core = _MARKER
    while core in body:
        core += b"~"
    return b'"' + core + b'"'


def cut_deep(body: bytes, limit: int, marker: bytes) -> bytes | None:
    """`body` with each container opening below depth `limit` replaced by `marker`, or None
    when nothing is that deep. A body cut off while too deep keeps its truncated tail out,
    so it stays undecodable."""
    parts: list[bytes] = []
    depth, pos, cut_from = 0, 0, -1
    for match in _TOKENS.finditer(body):
        run = match.group()
        if run[0] == 0x22:  # '"'
            continue
        start, count = match.start(), len(run) - _blanks(run)
        if run[0] in _OPENERS:
            if depth <= limit < depth + count:
                cut_from = start + _offset(run, limit - depth)
            depth += count
            continue
        if depth - count <= limit < depth:
            end = start + _offset(run, depth - limit - 1) + 1
            parts += (body[pos:cut_from], marker)
            pos = end
        depth = max(depth - count, 0)
    if depth > limit:
        parts += (body[pos:cut_from], marker)
        return b"".join(parts)
    if not parts:
        return None
    parts.append(body[pos:])
    return b"".join(parts)


def _blanks(run: bytes) -> int:
    """JSON whitespace inside a run of brackets."""
    return run.count(b" ") + run.count(b"\n") + run.count(b"\r") + run.count(b"\t")


def _offset(run: bytes, n: int) -> int:
    """Offset in `run` of its bracket number `n` (0-based), skipping whitespace."""
    seen = -1
    for i, c in enumerate(run):
        if c not in b" \n\r\t":
            seen += 1
            if seen == n:
                return i
    raise AssertionError("a run holds fewer brackets than it counted")


class _Enveloped(Protocol):
    entry: list[msgspec.Raw]


_E = TypeVar("_E", bound=_Enveloped)


def decode_cut(
    body: bytes,
    limit: int,
    decode: Callable[[bytes], _E],
    what: str,
    errors: tuple[type[Exception], ...],
) -> tuple[_E, bytes]:
    """A body too deep for the decoder, with its too deep parts cut out (`cut_deep`): its
    envelope (`decode`: to `entry` items as `msgspec.Raw`) and the marker of the cuts, so the
    walk dead-letters the items that hold one. Raises `ParseError` ("not a <what>") when even
    the copy cannot be decoded, or holds a cut outside every entry (then the whole body goes)."""
    marker = marker_for(body)
    cut = cut_deep(body, limit, marker)
    too_deep = f"nested deeper than {limit} levels"
    if cut is None:  # the decoder gave up above `limit` levels: too deep all the same
        raise ParseError(f"not a {what}: {too_deep}")
    try:
        envelope = decode(cut)
    except errors as exc:
        raise ParseError(f"not a {what} ({too_deep}): {exc}") from None
    if cut_outside(marker, cut, envelope.entry):
        raise ParseError(f"not a {what}: {too_deep} outside any entry")
    return envelope, marker


def cut_outside(
    marker: bytes | None, raw: bytes | msgspec.Raw, parts: Iterable[msgspec.Raw]
) -> bool:
    """Whether `raw` holds a cut (too deep) part outside `parts`, which are checked on their
    own: the cut then belongs to `raw`'s own keys, and `raw` is what is dead-lettered."""
    if marker is None:
        return False
    total = bytes(raw).count(marker)
    return total > 0 and total > sum(bytes(part).count(marker) for part in parts)
