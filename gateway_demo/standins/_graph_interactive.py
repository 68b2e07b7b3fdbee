"""Body checks for `interactive` and `contacts` messages, as the Graph API answers them.

Faithful: the limits of Meta's pages ("Interactive list messages", "Interactive
Call-to-Action URL Button Messages", "Location request messages", "Contacts messages"):
1-3 reply buttons with titles ≤ 20; a list's button label ≤ 20, 1-10 sections, 1-10 rows in
all, row id ≤ 200, title ≤ 24, description ≤ 72, a title (≤ 24) on every section when there
are several, text-only header and footer ≤ 60, body ≤ 4096; a CTA's display text ≤ 20 and a
url; a location request's `send_location` action; 1-257 contacts, each with
`name.formatted_name`. Limits are answered as Graph does, `(#131009) Parameter value is not
valid` with `error_data.details`; the texts "Total row count exceed max allowed count: 10"
and "Row title is too long. Max length is 24" are copied from real answers, the others say
the same in that form.

Simplified: missing parts are answered "(#100) The parameter … is required." (Graph's form
for missing parameters; the exact wording per part is a paraphrase); interactive types other
than these four (flow, product, catalog, …) are taken without further checks; duplicate row
ids are not refused (the gateway refuses them itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

BUTTONS_MAX: Final = 3
BUTTON_TITLE_MAX: Final = 20
BODY_MAX: Final = 1024
LIST_BODY_MAX: Final = 4096
LIST_BUTTON_MAX: Final = 20
SECTIONS_MAX: Final = 10
ROWS_MAX: Final = 10
SECTION_TITLE_MAX: Final = 24
ROW_ID_MAX: Final = 200
ROW_TITLE_MAX: Final = 24
ROW_DESCRIPTION_MAX: Final = 72
HEADER_MAX: Final = 60
FOOTER_MAX: Final = 60
CTA_TEXT_MAX: Final = 20
CONTACTS_MAX: Final = 257
INTERACTIVE_TYPES: Final = frozenset(
    {
        "address_message",
        "button",
        "call_permission_request",
        "carousel",
        "catalog_message",
        "cta_url",
        "flow",
        "list",
        "location_request_message",
        "product",
        "product_list",
    }
)
_INVALID: Final = "(#131009) Parameter value is not valid"


@dataclass(frozen=True)
class Problem:
    """Why a body is refused: the Graph code, message and optional `error_data.details`."""

    message: str
    details: str | None = None
    code: int = 100


def _required(name: str) -> Problem:
    return Problem(f"(#100) The parameter {name} is required.")


def _invalid(details: str) -> Problem:
    return Problem(_INVALID, details, code=131009)


def _too_long(what: str, value: str, limit: int) -> Problem | None:
    return _invalid(f"{what} is too long. Max length is {limit}") if len(value) > limit else None


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)


def check_interactive(interactive: dict[str, Any]) -> Problem | None:
    """None if Graph would take this `interactive` object, else its answer."""
    for key in ("type", "action"):
        if key not in interactive:
            return _required(f"interactive['{key}']")
    kind = interactive["type"]
    if kind not in INTERACTIVE_TYPES:
        allowed = ", ".join(sorted(t.upper() for t in INTERACTIVE_TYPES))
        got = f'got "{kind}".'
        return Problem(f"(#100) Param interactive['type'] must be one of {{{allowed}}} - {got}")
    action = interactive["action"]
    if not isinstance(action, dict):
        return Problem("(#100) Param interactive['action'] must be a JSON object.")
    check = _CHECKS.get(kind)
    if check is None:
        return None
    return _check_body(interactive, kind) or _check_frame(interactive) or check(action)


def _check_body(interactive: dict[str, Any], kind: str) -> Problem | None:
    body = interactive.get("body")
    text = body.get("text") if isinstance(body, dict) else None
    if not _text(text):
        return _required("interactive['body']['text']")
    return _too_long("Body text", text, LIST_BODY_MAX if kind == "list" else BODY_MAX)


def _check_frame(interactive: dict[str, Any]) -> Problem | None:
    """The optional header (text only on a list; its text ≤ 60) and footer (≤ 60)."""
    header = interactive.get("header")
    if header is not None:
        if not isinstance(header, dict) or not _text(header.get("type")):
            return _required("interactive['header']['type']")
        if interactive["type"] == "list" and header["type"] != "text":
            return _invalid("Header type must be text for an interactive list message")
        if header["type"] == "text":
            text = header.get("text")
            if not _text(text):
                return _required("interactive['header']['text']")
            if problem := _too_long("Header text", text, HEADER_MAX):
                return problem
    footer = interactive.get("footer")
    if footer is not None:
        text = footer.get("text") if isinstance(footer, dict) else None
        if not _text(text):
            return _required("interactive['footer']['text']")
        return _too_long("Footer text", text, FOOTER_MAX)
    return None


def _check_buttons(action: dict[str, Any]) -> Problem | None:
    buttons = action.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= BUTTONS_MAX:
        count = len(buttons) if isinstance(buttons, list) else 0
        return _invalid(
            f"Invalid buttons count. Min allowed buttons: 1, Max allowed buttons: 3 ({count})"
        )
    for button in buttons:
        title = (button.get("reply") or {}).get("title") if isinstance(button, dict) else None
        if not _text(title) or len(title) > BUTTON_TITLE_MAX:
            return _invalid(
                f"Button title length invalid. Min length: 1, Max length: {BUTTON_TITLE_MAX}"
            )
    return None


def _check_list(action: dict[str, Any]) -> Problem | None:
    button = action.get("button")
    if not _text(button):
        return _required("interactive['action']['button']")
    if problem := _too_long("Button title", button, LIST_BUTTON_MAX):
        return problem
    sections = action.get("sections")
    if not isinstance(sections, list) or not sections:
        return _required("interactive['action']['sections']")
    if len(sections) > SECTIONS_MAX:
        return _invalid(f"Section count exceed max allowed count: {SECTIONS_MAX}")
    rows = 0
    for index, section in enumerate(sections):
        problem = _check_section(section, index, several=len(sections) > 1)
        if problem:
            return problem
        rows += len(section["rows"])
    if rows > ROWS_MAX:
        return _invalid(f"Total row count exceed max allowed count: {ROWS_MAX}")
    return None


def _check_section(section: Any, index: int, *, several: bool) -> Problem | None:
    where = f"interactive['action']['sections'][{index}]"
    if not isinstance(section, dict):
        return Problem(f"(#100) Param {where} must be a JSON object.")
    title = section.get("title")
    if title is not None or several:
        if not _text(title):
            return _required(f"{where}['title']")
        if problem := _too_long("Section title", title, SECTION_TITLE_MAX):
            return problem
    rows = section.get("rows")
    if not isinstance(rows, list) or not rows:
        return _required(f"{where}['rows']")
    for i, row in enumerate(rows):
        if problem := _check_row(row, f"{where}['rows'][{i}]"):
            return problem
    return None


def _check_row(row: Any, where: str) -> Problem | None:
    if not isinstance(row, dict):
        return Problem(f"(#100) Param {where} must be a JSON object.")
    for key in ("id", "title"):
        if not _text(row.get(key)):
            return _required(f"{where}['{key}']")
    description = row.get("description")
    if description is not None and not isinstance(description, str):
        return Problem(f"(#100) Param {where}['description'] must be a string.")
    return (
        _too_long("Row id", row["id"], ROW_ID_MAX)
        or _too_long("Row title", row["title"], ROW_TITLE_MAX)
        or (_too_long("Row description", description, ROW_DESCRIPTION_MAX) if description else None)
    )


def _check_cta(action: dict[str, Any]) -> Problem | None:
    if action.get("name") != "cta_url":
        return _invalid("interactive['action']['name'] must be cta_url")
    parameters = action.get("parameters")
    if not isinstance(parameters, dict):
        return _required("interactive['action']['parameters']")
    text, url = parameters.get("display_text"), parameters.get("url")
    if not _text(text):
        return _required("interactive['action']['parameters']['display_text']")
    if not _text(url):
        return _required("interactive['action']['parameters']['url']")
    return _too_long("Display text", text, CTA_TEXT_MAX)


def _check_location_request(action: dict[str, Any]) -> Problem | None:
    if action.get("name") != "send_location":
        return _invalid("interactive['action']['name'] must be send_location")
    return None


_CHECKS: Final[dict[str, Callable[[dict[str, Any]], Problem | None]]] = {
    "button": _check_buttons,
    "list": _check_list,
    "cta_url": _check_cta,
    "location_request_message": _check_location_request,
}


def check_contacts(contacts: Any) -> Problem | None:
    """None if Graph would take this `contacts` array, else its answer."""
    if not isinstance(contacts, list) or not contacts:
        return _required("contacts")
    if len(contacts) > CONTACTS_MAX:
        return _invalid(f"Contacts count exceed max allowed count: {CONTACTS_MAX}")
    for index, contact in enumerate(contacts):
        name = contact.get("name") if isinstance(contact, dict) else None
        if not isinstance(name, dict) or not _text(name.get("formatted_name")):
            return _required(f"contacts[{index}]['name']['formatted_name']")
    return None
