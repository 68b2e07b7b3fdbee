"""Cut the too deeply nested parts out of a JSON body, without recursion.

msgspec decodes nested JSON recursively and raises `RecursionError` at about a thousand
levels, even where it only skips a value or keeps it as `msgspec.Raw`. So one deep item makes
the whole body undecodable, and every valid item beside it would be lost. `cut_deep` makes a
copy of the body in which every container that opens deeper than `limit` levels is replaced by
a marker string: the copy decodes, and the walk dead-letters exactly the items that hold a
marker (adapters/whatsapp/_inbound.py). Used only after a decode failed that way, so the
usual body never pays for the scan.
"""

from __future__ import annotations

import re
from typing import Final

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
