"""What a message's entities say beyond its text: the bot command it starts with (and its
arguments) and the links it carries.

Telegram measures an entity's `offset` and `length` in UTF-16 code units, not in code points:
an emoji outside the Basic Multilingual Plane (😀) takes two units, so slicing the Python str
by offsets would cut the wrong text after it. The text is therefore encoded to UTF-16 once
and sliced there. An entity that does not fit the text (negative, past its end, or cutting a
surrogate pair in half) is ignored, never an error: the message itself is still good.

Entities are decoded one by one from the raw JSON, so one odd entity (a future type with
other fields, a wrong type) costs only itself.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

import msgspec

_Units = Annotated[int, msgspec.Meta(ge=0, le=2**31)]
_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class _Entity(msgspec.Struct):
    type: str
    offset: _Units
    length: _Units
    url: str | None = None


_ENTITIES = msgspec.json.Decoder(list[msgspec.Raw])
_ENTITY = msgspec.json.Decoder(_Entity)


class BotCommand(NamedTuple):
    name: str
    """Without the slash and without `@botname`."""
    args: str
    """The rest of the text, stripped; "" when nothing follows."""


class Found(NamedTuple):
    command: BotCommand | None = None
    links: list[str] | None = None


def entities(raw: msgspec.Raw) -> list[_Entity]:
    """The well-formed entities of an `entities` / `caption_entities` value, in order
    (an empty Raw: the message has none)."""
    if not raw:
        return []
    try:
        items = _ENTITIES.decode(raw)
    except _DECODE_ERRORS:
        return []
    found: list[_Entity] = []
    for item in items:
        try:
            found.append(_ENTITY.decode(item))
        except _DECODE_ERRORS:
            continue
    return found


def read(text: str | None, raw: msgspec.Raw) -> Found:
    """The bot command at the start of `text` and the links in it, per its entities."""
    if not text:
        return Found()
    listed = entities(raw)
    if not listed:
        return Found()
    units = text.encode("utf-16-le", "surrogatepass")
    return Found(_command(units, listed), _links(units, listed))


def _slice(units: bytes, offset: int, length: int) -> str | None:
    """Code units [offset, offset + length) of the text, or None when they do not fit it."""
    start, end = 2 * offset, 2 * (offset + length)
    if end > len(units):
        return None
    try:
        return units[start:end].decode("utf-16-le")  # strict: a split pair fails
    except UnicodeDecodeError:
        return None


def _command(units: bytes, listed: list[_Entity]) -> BotCommand | None:
    first = next((e for e in listed if e.type == "bot_command" and e.offset == 0), None)
    if first is None:
        return None
    token = _slice(units, 0, first.length)
    rest = _slice(units, first.length, len(units) // 2 - first.length)
    if token is None or rest is None or not token.startswith("/"):
        return None
    name = token[1:].partition("@")[0]
    return BotCommand(name, rest.strip()) if name else None


def _links(units: bytes, listed: list[_Entity]) -> list[str] | None:
    links: dict[str, None] = {}  # ordered, without repeats
    for entity in listed:
        if entity.type == "text_link":
            link = entity.url
        elif entity.type == "url":
            link = _slice(units, entity.offset, entity.length)
        else:
            continue
        if link:
            links[link] = None
    return list(links) or None
