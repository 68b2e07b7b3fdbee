"""Rich commands (issue #17, `adapters.rich`) → Bot API calls: stickers, contact cards,
location requests and list menus.

Pure builders used by `_outbound.build_request`; each returns a method and its parameters
(without chat_id) and raises only InvalidCommand, naming the rule the command breaks. What
the Bot API says (core.telegram.org/bots/api, confirmed in tdlib/telegram-bot-api at 01a3679c,
`Client.cpp` `process_send_sticker_query`, `process_send_contact_query`,
`get_keyboard_button_type`; tdlib/td `ReplyMarkup.cpp` `get_keyboard_button`):

- sticker → `sendSticker`: `sticker` is a file_id, or an HTTP URL Telegram fetches a .WEBP
  sticker from ("Video and animated stickers can't be sent via an HTTP URL": a .tgs or .webm
  goes by file_id only). No caption parameter.
- contacts → `sendContact`: `phone_number` and `first_name` required, `last_name`, `vcard`
  ("Additional data about the contact in the form of a vCard, 0-2048 bytes"). One contact a
  message: a command with several cards is refused (one command is one provider call).
  Everything of the card that the three fields cannot hold (more phones, emails, urls,
  addresses, org, birthday, the name's other parts) goes into a vCard 3.0, so nothing is lost.
- location_request → `sendMessage` with a reply keyboard of one `KeyboardButton` with
  `request_location: true` (one_time_keyboard, resize_keyboard); the tap sends the contact's
  location as a normal location message. Telegram offers it "in private chats only" (a group
  answers 400 "location can be requested in private chats only"), so `_outbound` refuses it
  for a group first. The button's text is `keyboard.buttons[0][0]` when the command names it
  (Telegram only), else `LOCATION_BUTTON`.
- list → `sendMessage` with an inline keyboard, one callback button a row: `callback_data` =
  the row's id (1-64 bytes), the button's text = the row's title, then " — " and its
  description when it has one. A tap comes back as an `interactive` event whose `reply.id` is
  the row's id (as a tapped list row on WhatsApp). `menu.header` goes above the body and
  `menu.footer` below it, each after a blank line; section titles and `menu.button` have no
  place (Telegram shows the rows at once, without sections). At most `LIST_ROWS_MAX` rows,
  as many as `interactive` buttons and WhatsApp's list; row ids unique (the tap names only
  the id).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlsplit

from adapters.cards import check_card
from adapters.rich import ContactCard, ContactName, ListMenu, ListRow
from adapters.schema import Command, InvalidCommand

TEXT_MAX: Final = 4096
LIST_ROWS_MAX: Final = 10
CALLBACK_DATA_MAX_BYTES: Final = 64
VCARD_MAX_BYTES: Final = 2048
LOCATION_BUTTON: Final = "Send location"
"""The location button's text when the command names none."""
DESCRIPTION_MARK: Final = " — "
"""Between a list row's title and its description on the button."""

_Call = tuple[str, dict[str, Any]]
_STICKER_BY_ID_ONLY: Final = frozenset({".tgs", ".webm"})
_VCARD_TYPE: Final = re.compile(r"[A-Za-z0-9-]{1,20}")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def utf8_len(text: str) -> int:
    """Bytes of UTF-8; 0 for text Telegram cannot take (a lone surrogate)."""
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        return 0


# --- sticker ---------------------------------------------------------------------------------


def sticker(command: Command) -> _Call:
    """`sendSticker` by file_id (`media.id`) or by the URL of a .webp (`media.url`)."""
    m = command.media
    if m is None or bool(m.url) == bool(m.id):
        raise InvalidCommand(
            "sticker: Telegram sends a sticker by media.id (a file_id) or media.url (a .webp);"
            " give exactly one"
        )
    if command.text and command.text.strip():
        raise InvalidCommand(
            "sticker: a sticker carries no caption; send the text as a command of its own"
        )
    if m.id:
        return "sendSticker", {"sticker": m.id}
    return "sendSticker", {"sticker": _sticker_url(m.url or "")}


def _sticker_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or not url.isprintable()
        or any(c.isspace() for c in url)
    ):
        raise InvalidCommand(f"sticker: media.url must be an http or https URL: {url!r}")
    name = parts.path.rsplit("/", 1)[-1].lower()
    extension = name[name.rfind(".") :] if "." in name else ""
    if extension in _STICKER_BY_ID_ONLY:
        raise InvalidCommand(
            f"sticker: Telegram fetches only .webp stickers from a URL; send the {extension}"
            " sticker by media.id (its file_id)"
        )
    if extension and extension != ".webp":
        raise InvalidCommand(f"sticker: Telegram stickers by URL are .webp images; {name!r} is not")
    return url


# --- contacts --------------------------------------------------------------------------------


def contact(command: Command) -> _Call:
    """`sendContact` for the command's one card."""
    cards = command.contacts or []
    if len(cards) != 1:
        raise InvalidCommand(
            f"contacts: Telegram sends one contact card a message, got {len(cards)}; send each"
            " card as a `contacts` command of its own"
        )
    [card] = cards
    name = _checked_card(card)
    first = (name.first_name or "").strip() or name.formatted_name
    params: dict[str, Any] = {"phone_number": card.phones[0].phone, "first_name": first}
    if name.first_name and name.first_name.strip() and name.last_name and name.last_name.strip():
        params["last_name"] = name.last_name
    if _beyond_the_fields(card, params):
        card_text = vcard(card)
        size = utf8_len(card_text)
        if size > VCARD_MAX_BYTES:
            raise InvalidCommand(
                f"contacts: the card's vCard is {size} bytes; Telegram takes at most"
                f" {VCARD_MAX_BYTES} (send fewer phones, emails, urls or addresses)"
            )
        params["vcard"] = card_text
    return "sendContact", params


def _checked_card(card: ContactCard) -> ContactName:
    name = check_card(card, "contacts[0]")
    if not card.phones:
        raise InvalidCommand(
            "contacts: Telegram's contact needs a phone number; contacts[0].phones is empty"
        )
    return name


def _beyond_the_fields(card: ContactCard, params: dict[str, Any]) -> bool:
    """Whether the card holds more than phone_number, first_name and last_name say."""
    name = card.name or ContactName()
    shown = " ".join(filter(None, (params["first_name"], params.get("last_name"))))
    return bool(
        len(card.phones) > 1
        or card.phones[0].type
        or card.emails
        or card.urls
        or card.addresses
        or card.org
        or card.birthday
        or name.middle_name
        or name.prefix
        or name.suffix
        or name.formatted_name != shown
    )


def vcard(card: ContactCard) -> str:
    """The card as a vCard 3.0 (RFC 2426), CRLF line ends. WhatsApp's `wa_id` is left out:
    it means nothing on Telegram."""
    name = card.name or ContactName()
    lines = ["BEGIN:VCARD", "VERSION:3.0"]
    n_parts = (name.last_name, name.first_name, name.middle_name, name.prefix, name.suffix)
    lines.append("N:" + ";".join(_escape(p or "") for p in n_parts))
    lines.append("FN:" + _escape(name.formatted_name))
    if card.org is not None:
        org = [card.org.company or ""] + [card.org.department or ""] * bool(card.org.department)
        if any(org):
            lines.append("ORG:" + ";".join(_escape(p) for p in org))
        if card.org.title:
            lines.append("TITLE:" + _escape(card.org.title))
    lines += _typed("TEL", ((p.phone, p.type) for p in card.phones))
    lines += _typed("EMAIL", ((e.email, e.type) for e in card.emails))
    lines += _typed("URL", ((u.url, u.type) for u in card.urls))
    for a in card.addresses:
        parts = ("", "", a.street, a.city, a.state, a.zip, a.country or a.country_code)
        lines.append(_label("ADR", a.type) + ";".join(_escape(p or "") for p in parts))
    if card.birthday:
        lines.append("BDAY:" + card.birthday)
    lines.append("END:VCARD")
    return "\r\n".join(lines)


def _typed(key: str, values: Iterable[tuple[str, str | None]]) -> list[str]:
    return [_label(key, kind) + _escape(value) for value, kind in values]


def _label(key: str, kind: str | None) -> str:
    """`KEY;TYPE=HOME:`; a type that is not a plain word is left out of the parameter."""
    if kind and _VCARD_TYPE.fullmatch(kind):
        return f"{key};TYPE={kind.upper()}:"
    return f"{key}:"


def _escape(value: str) -> str:
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


# --- location request ------------------------------------------------------------------------


def location_request(command: Command) -> _Call:
    """`sendMessage` with a one-button reply keyboard asking for the contact's location."""
    text = _body(command)
    button = {"text": _location_button(command), "request_location": True}
    markup = {"keyboard": [[button]], "one_time_keyboard": True, "resize_keyboard": True}
    return "sendMessage", {"text": text, "reply_markup": markup}


def _location_button(command: Command) -> str:
    keyboard = command.keyboard
    if keyboard is None:
        return LOCATION_BUTTON
    rows = keyboard.buttons or []
    if keyboard.remove or len(rows) != 1 or len(rows[0]) != 1:
        raise InvalidCommand(
            "location_request: its keyboard is the location button; `keyboard` may only name"
            ' it (one button: {"buttons": [["Share my location"]]})'
        )
    label = rows[0][0]
    if not label.strip():
        raise InvalidCommand("location_request: the location button's text must not be blank")
    return label


def _body(command: Command) -> str:
    text = command.text
    if text is None or not text.strip():  # Telegram trims, then refuses an empty message
        raise InvalidCommand(f"{command.type}: text is required and must not be blank")
    if len(text) > TEXT_MAX:
        raise InvalidCommand(f"{command.type}: text is longer than {TEXT_MAX} characters")
    return text


# --- list ------------------------------------------------------------------------------------


def list_menu(command: Command) -> _Call:
    """`sendMessage` with the body (between header and footer) and a button a row."""
    menu = command.menu
    if menu is None:
        raise InvalidCommand("list: menu (its sections of rows) is required")
    keyboard = [
        [{"text": _row_text(row, where), "callback_data": _row_id(row, where)}]
        for where, row in _rows(menu)
    ]
    text = _list_text(command, menu)
    return "sendMessage", {"text": text, "reply_markup": {"inline_keyboard": keyboard}}


def _rows(menu: ListMenu) -> list[tuple[str, ListRow]]:
    if not menu.sections:
        raise InvalidCommand("list: needs at least one section in menu.sections")
    rows: list[tuple[str, ListRow]] = []
    for i, section in enumerate(menu.sections):
        if not section.rows:
            raise InvalidCommand(f"list: menu.sections[{i}] has no rows")
        rows += [(f"menu.sections[{i}].rows[{j}]", row) for j, row in enumerate(section.rows)]
    if len(rows) > LIST_ROWS_MAX:
        raise InvalidCommand(
            f"list: {len(rows)} rows in all sections together; Telegram gets at most"
            f" {LIST_ROWS_MAX} (one button a row, as for `interactive`)"
        )
    ids = [row.id for _, row in rows]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InvalidCommand(f"list: row ids must be unique (repeated: {repeated[0]!r})")
    return rows


def _row_id(row: ListRow, where: str) -> str:
    if not 1 <= utf8_len(row.id) <= CALLBACK_DATA_MAX_BYTES:
        raise InvalidCommand(
            f"list: {where}.id must be 1-{CALLBACK_DATA_MAX_BYTES} bytes of UTF-8"
            " (Telegram's callback_data)"
        )
    return row.id


def _row_text(row: ListRow, where: str) -> str:
    if not row.title.strip():
        raise InvalidCommand(f"list: {where}.title must not be blank")
    if row.description and row.description.strip():
        return row.title + DESCRIPTION_MARK + row.description
    return row.title


def _list_text(command: Command, menu: ListMenu) -> str:
    parts = [_body(command)]
    for key, value in (("header", menu.header), ("footer", menu.footer)):
        if value is not None and not value.strip():
            raise InvalidCommand(f"list: menu.{key} must not be blank (leave it out instead)")
    if menu.header is not None:
        parts.insert(0, menu.header)
    if menu.footer is not None:
        parts.append(menu.footer)
    text = "\n\n".join(parts)
    if len(text) > TEXT_MAX:
        raise InvalidCommand(
            f"list: menu.header, text and menu.footer together are {len(text)} characters;"
            f" Telegram takes at most {TEXT_MAX}"
        )
    return text
