"""What every channel that sends contact cards (WhatsApp's `contacts`, Telegram's
`sendContact`) requires of one, checked before the call."""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from typing import Final

from adapters.rich import ContactCard, ContactName
from adapters.schema import InvalidCommand

_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def check_card(card: ContactCard, where: str) -> ContactName:
    """A formatted name, no blank phone, email or url, a birthday that is a real YYYY-MM-DD
    day; `where` names the card in the refusal (`contacts[0]`). Returns its name."""
    name = card.name
    if name is None or not name.formatted_name.strip():
        raise InvalidCommand(f"contacts: {where}.name.formatted_name is required")
    parts: list[tuple[str, Sequence[str]]] = [
        ("phones", [p.phone for p in card.phones]),
        ("emails", [e.email for e in card.emails]),
        ("urls", [u.url for u in card.urls]),
    ]
    for key, values in parts:
        for i, value in enumerate(values):
            if not value.strip():
                field = key.removesuffix("s")
                raise InvalidCommand(f"contacts: {where}.{key}[{i}].{field} must not be blank")
    if card.birthday is not None and not is_date(card.birthday):
        raise InvalidCommand(
            f"contacts: {where}.birthday {card.birthday!r} is not a date (YYYY-MM-DD)"
        )
    return name


def is_date(text: str) -> bool:
    """YYYY-MM-DD and a real day (`fromisoformat` alone also takes 2024-W01-1 and 20240131)."""
    if not _DATE.fullmatch(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True
