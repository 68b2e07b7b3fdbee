"""The dead letters the inbound router writes to `gw:deadletter`, for an operator to read
and replay: what a webhook could not publish, and bodies the gateway could not understand."""

from __future__ import annotations

import base64

import msgspec

from adapters.schema import BadItem, Routed
from router.outcome import KINDS
from router.records import DeadLetter

UNENCODABLE = (RecursionError, msgspec.EncodeError, OverflowError)
"""An event nested too deep to encode here (its decode, a few frames up the stack, just
managed) or holding a value JSON cannot carry: that one event is dead-lettered."""

LISTED_PER_LETTER = 10
"""Unknown accounts and bad items a dead letter names one by one; the rest are counted."""
_LISTED_CHARS = 160


def unencodable(item: Routed, exc: BaseException) -> BadItem:
    """The bad item that stands for an event `UNENCODABLE` kept out."""
    event = item.event
    what = f"{KINDS[type(event)]} {getattr(event, 'message_id', '')}".rstrip()
    return BadItem("malformed_item", b"", f"{what}: cannot be encoded: {type(exc).__name__}")


def letter(
    reason: str,
    channel: str | None,
    received_at: int,
    detail: str | None,
    body: bytes | None,
    command: str | None,
    key: str | None = None,
) -> DeadLetter:
    """A dead letter of something the gateway could not understand; the body, if any, once
    (`key`: the account its webhook's path named)."""
    encoded = _b64(body) if body is not None else None
    return DeadLetter(1, reason, channel, received_at, detail, encoded, command, key)


def body_letter(
    channel: str,
    bad: list[BadItem],
    unknown: dict[str, int],
    body: bytes,
    received_at: int,
    key: str | None = None,
) -> DeadLetter:
    """One dead letter per webhook, whatever it could not publish: the body once, and in
    `detail` the unknown accounts and the bad items (position and why), each list bounded.
    Its reason: `unknown_account` when any (fixing the config and replaying the body is the
    operator's one action), else the items' reason when they share one, else `malformed_item`."""
    reasons = {b.reason for b in bad}
    if unknown:
        reason = "unknown_account"
    else:
        reason = reasons.pop() if len(reasons) == 1 else "malformed_item"
    parts = []
    if unknown:
        accounts = [f"{_clip(a)} ({n} events)" for a, n in unknown.items()]
        parts.append(_listed("accounts not configured", accounts))
    if bad:
        parts.append(_listed("items not published", [f"{b.reason} {_clip(b.detail)}" for b in bad]))
    detail = "; ".join(parts)
    return DeadLetter(1, reason, channel, received_at, detail, _b64(body), None, key)


def _listed(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:LISTED_PER_LETTER])
    more = len(items) - LISTED_PER_LETTER
    return f"{len(items)} {title}: {shown}" + (f", and {more} more" if more > 0 else "")


def _clip(text: str) -> str:
    """Provider text in a detail is bounded (an account id or error may be any length)."""
    return text if len(text) <= _LISTED_CHARS else text[: _LISTED_CHARS - 3] + "..."


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
