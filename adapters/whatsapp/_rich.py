"""Rich commands → the Graph API's message objects (issue #17, `adapters.rich`): list
messages, CTA URL buttons, location requests, contacts and stickers.

Pure builders used by `_outbound.build_request`; each raises only InvalidCommand, naming the
limit the command breaks, so a message WhatsApp would refuse never costs a throughput slot.
The limits are Meta's, from its pages (Nov 2025 - May 2026 revisions):

- "Interactive list messages": `action.button` ≤ 20 characters; 1-10 `sections`; 1-10 rows
  in all sections together; row `id` ≤ 200, `title` ≤ 24, `description` ≤ 72; body ≤ 4096
  (the page's current figure; older references and pywa say 1024 for every interactive
  body); optional text-only `header` and `footer`, ≤ 60 each. A section title (≤ 24) is
  required once there is more than one section (Meta's current page marks it required
  always: UNCERTAIN, so a single section may go without one). Row ids must be unique: the
  gateway's own rule, since the tapped reply names only the id.
- "Interactive Call-to-Action URL Button Messages": one button, `display_text` ≤ 20, `url`
  (opened in the browser: http or https here), body ≤ 1024.
- "Location request messages": body ≤ 1024, `action {"name": "send_location"}`.
- "Contacts messages": up to 257 contacts, each with `name.formatted_name`.
- "Sticker messages": `id` or `link` of a WebP sticker (static ≤ 100 KB, animated ≤ 500 KB,
  512×512: checked by Meta when it fetches the file; a link whose path names another
  extension is refused here), no caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from adapters.cards import check_card
from adapters.rich import ListMenu, ListSection
from adapters.schema import ButtonSpec, Command, InvalidCommand

LIST_BODY_MAX: Final = 4096
LIST_BUTTON_MAX: Final = 20
LIST_SECTIONS_MAX: Final = 10
LIST_ROWS_MAX: Final = 10
SECTION_TITLE_MAX: Final = 24
ROW_ID_MAX: Final = 200
ROW_TITLE_MAX: Final = 24
ROW_DESCRIPTION_MAX: Final = 72
HEADER_MAX: Final = 60
FOOTER_MAX: Final = 60
CTA_BODY_MAX: Final = 1024
CTA_TEXT_MAX: Final = 20
LOCATION_REQUEST_BODY_MAX: Final = 1024
CONTACTS_MAX: Final = 257

GRAPH_TYPES: Final = {"list": "interactive", "location_request": "interactive"}
"""Command types whose Graph message `type` differs from their own name."""


def body_text(command: Command, limit: int) -> str:
    """The command's `text`: required, not blank, at most `limit` characters."""
    text = command.text
    if text is None or not text.strip():
        raise InvalidCommand(f"{command.type}: text (the body) is required and must not be blank")
    if len(text) > limit:
        raise InvalidCommand(
            f"{command.type}: text is {len(text)} characters; WhatsApp takes at most {limit}"
        )
    return text


def _sized(what: str, value: str | None, limit: int) -> str:
    """`value` if it is 1 to `limit` characters and not blank, else InvalidCommand."""
    if value is None or not value.strip():
        raise InvalidCommand(f"{what} is required and must not be blank")
    if len(value) > limit:
        raise InvalidCommand(f"{what} is {len(value)} characters; WhatsApp takes at most {limit}")
    return value


# --- list ------------------------------------------------------------------------------------


def list_message(command: Command) -> dict[str, Any]:
    """`interactive` of type `list`."""
    body = body_text(command, LIST_BODY_MAX)
    menu = command.menu
    if menu is None:
        raise InvalidCommand("list: menu (its button and sections of rows) is required")
    button = _sized("list: menu.button", menu.button, LIST_BUTTON_MAX)
    count = _section_count(menu)
    _check_rows(menu.sections)
    sections = [_section(menu.sections, i) for i in range(count)]
    out: dict[str, Any] = {"type": "list"}
    if menu.header is not None:
        header = _sized("list: menu.header", menu.header, HEADER_MAX)
        out["header"] = {"type": "text", "text": header}
    out["body"] = {"text": body}
    if menu.footer is not None:
        out["footer"] = {"text": _sized("list: menu.footer", menu.footer, FOOTER_MAX)}
    out["action"] = {"button": button, "sections": sections}
    return out


def _section_count(menu: ListMenu) -> int:
    count = len(menu.sections)
    if not 1 <= count <= LIST_SECTIONS_MAX:
        raise InvalidCommand(
            f"list: needs 1 to {LIST_SECTIONS_MAX} sections in menu.sections, got {count}"
        )
    return count


def _section(sections: Sequence[ListSection], index: int) -> dict[str, Any]:
    section = sections[index]
    where = f"list: menu.sections[{index}]"
    if not section.rows:
        raise InvalidCommand(f"{where} has no rows")
    out: dict[str, Any] = {}
    if section.title is not None or len(sections) > 1:
        out["title"] = _sized(
            f"{where}.title (required when there are several sections)",
            section.title,
            SECTION_TITLE_MAX,
        )
    out["rows"] = [_row(row.id, row.title, row.description, f"{where}.rows[{i}]")
                   for i, row in enumerate(section.rows)]  # fmt: skip
    return out


def _row(row_id: str, title: str, description: str | None, where: str) -> dict[str, str]:
    out = {
        "id": _sized(f"{where}.id", row_id, ROW_ID_MAX),
        "title": _sized(f"{where}.title", title, ROW_TITLE_MAX),
    }
    if description is not None:
        if len(description) > ROW_DESCRIPTION_MAX:
            raise InvalidCommand(
                f"{where}.description is {len(description)} characters; WhatsApp takes at "
                f"most {ROW_DESCRIPTION_MAX}"
            )
        out["description"] = description
    return out


def _check_rows(sections: Sequence[ListSection]) -> None:
    ids = [row.id for section in sections for row in section.rows]
    if len(ids) > LIST_ROWS_MAX:
        raise InvalidCommand(
            f"list: {len(ids)} rows in all sections together; WhatsApp takes at most "
            f"{LIST_ROWS_MAX}"
        )
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InvalidCommand(f"list: row ids must be unique (repeated: {repeated[0]!r})")


# --- CTA URL, location request ---------------------------------------------------------------


def cta_url(command: Command, buttons: Sequence[ButtonSpec]) -> dict[str, Any]:
    """`interactive` of type `cta_url`: an `interactive` command whose only button is a link."""
    if len(buttons) != 1:
        raise InvalidCommand(
            f"interactive: WhatsApp sends one link button a message (a CTA URL message), "
            f"got {len(buttons)}"
        )
    [button] = buttons
    body = body_text(command, CTA_BODY_MAX)
    if button.id:
        raise InvalidCommand("interactive: a link button has a url and no id")
    title = _sized("interactive: the link button's title", button.title, CTA_TEXT_MAX)
    url = button.url or ""
    if not _is_web_url(url):
        raise InvalidCommand(f"interactive: link {url!r} is not an http or https URL with a host")
    parameters = {"display_text": title, "url": url}
    return {
        "type": "cta_url",
        "body": {"text": body},
        "action": {"name": "cta_url", "parameters": parameters},
    }


def _is_web_url(text: str) -> bool:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        return False
    return url.scheme in ("https", "http") and bool(url.hostname) and text.strip() == text


def location_request(command: Command) -> dict[str, Any]:
    """`interactive` of type `location_request_message`."""
    body = body_text(command, LOCATION_REQUEST_BODY_MAX)
    return {
        "type": "location_request_message",
        "body": {"text": body},
        "action": {"name": "send_location"},
    }


# --- contacts, sticker -----------------------------------------------------------------------


def contacts(command: Command) -> list[dict[str, Any]]:
    """The `contacts` array: each card as Graph's contact object."""
    cards = command.contacts or []
    if not 1 <= len(cards) <= CONTACTS_MAX:
        raise InvalidCommand(
            f"contacts: needs 1 to {CONTACTS_MAX} contact cards in contacts, got {len(cards)}"
        )
    for index, card in enumerate(cards):
        check_card(card, f"contacts[{index}]")
    built: list[dict[str, Any]] = msgspec.to_builtins(cards)
    return built


def sticker(command: Command) -> dict[str, Any]:
    """The `sticker` object: `{"id"}` or `{"link"}`."""
    m = command.media
    if m is None or bool(m.url) == bool(m.id):
        raise InvalidCommand("sticker: media needs exactly one of url or id")
    if command.text and command.text.strip():
        raise InvalidCommand(
            "sticker: a sticker carries no caption; send the text as a command of its own"
        )
    if not m.url:
        return {"id": m.id}
    if not _is_web_url(m.url):
        raise InvalidCommand("sticker: media.url must be an http or https URL")
    name = urlsplit(m.url).path.rsplit("/", 1)[-1]
    if "." in name and not name.lower().endswith(".webp"):
        raise InvalidCommand(
            f"sticker: WhatsApp stickers are WebP images (512x512); {name!r} is not a .webp"
        )
    return {"link": m.url}
