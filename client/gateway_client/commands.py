"""Commands an assistant backend writes to its outbox (CONTRACT §2.2), one builder per type.

Each returns a `Command`: the JSON the gateway reads, with a fresh `command_id` unless one
is given (a backend that may resend after a crash should give its own, derived from what it
answers: the gateway sends each `command_id` once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec


class Command(msgspec.Struct, kw_only=True, omit_defaults=True):
    schema: int = 1
    command_id: str
    conversation_id: str
    type: str
    author: str = "assistant"
    text: str | None = None
    template: dict[str, Any] | None = None
    media: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    buttons: list[dict[str, str]] | None = None
    reply_to: str | None = None
    tag: str | None = None
    """`HUMAN_AGENT` (Messenger, Instagram): a human's message up to 7 days after the
    contact's last one."""
    keyboard: dict[str, Any] | None = None
    """Telegram: a reply keyboard (`{"buttons": [[...]], "one_time", "resize"}`) or its
    removal (`{"remove": true}`); other channels refuse it."""
    thread_id: str | None = None
    """Telegram: the forum topic to post in (the answered event's `thread_id`)."""
    menu: dict[str, Any] | None = None
    """`list`: `{"button", "sections": [{"title", "rows": [{"id", "title", "description"}]}],
    "header", "footer"}` (WhatsApp)."""
    contacts: list[dict[str, Any]] | None = None
    """`contacts`: contact cards, Graph's contact objects (WhatsApp); see `contact_card`."""

    def encode(self) -> bytes:
        return msgspec.json.encode(self)


def _new(conversation_id: str, kind: str, command_id: str | None, **fields: Any) -> Command:
    given = {k: v for k, v in fields.items() if v is not None}
    return Command(
        command_id=command_id or f"cmd-{uuid.uuid4().hex}",
        conversation_id=conversation_id,
        type=kind,
        **given,
    )


def text(
    conversation_id: str,
    body: str,
    *,
    reply_to: str | None = None,
    author: str | None = None,
    tag: str | None = None,
    thread_id: str | None = None,
    command_id: str | None = None,
) -> Command:
    """`thread_id` (Telegram): the forum topic to answer in, the event's `thread_id`."""
    return _new(conversation_id, "text", command_id, text=body, reply_to=reply_to,
                author=author, tag=tag, thread_id=thread_id)  # fmt: skip


def template(
    conversation_id: str,
    name: str,
    language: str,
    components: list[dict[str, Any]] | None = None,
    *,
    category: str | None = None,
    command_id: str | None = None,
) -> Command:
    """A WhatsApp template (Meta numbers). For a Twilio number use `content_template`."""
    body: dict[str, Any] = {"name": name, "language": language, "components": components or []}
    if category is not None:
        body["category"] = category
    return _new(conversation_id, "template", command_id, template=body)


def content_template(
    conversation_id: str,
    content_sid: str,
    variables: dict[str, str] | None = None,
    *,
    category: str | None = None,
    command_id: str | None = None,
) -> Command:
    """A template of Twilio's Content API (CONTRACT §6.3)."""
    body: dict[str, Any] = {"content_sid": content_sid, "variables": variables or {}}
    if category is not None:
        body["category"] = category
    return _new(conversation_id, "template", command_id, template=body)


def media(
    conversation_id: str,
    kind: str,
    *,
    url: str | None = None,
    media_id: str | None = None,
    caption: str | None = None,
    filename: str | None = None,
    reply_to: str | None = None,
    thread_id: str | None = None,
    command_id: str | None = None,
) -> Command:
    """`kind`: image, audio, video or document; by `url` or by the provider's `media_id`;
    `thread_id` (Telegram): the forum topic."""
    if kind not in ("image", "audio", "video", "document"):
        raise ValueError(f"not a media type: {kind!r}")
    if (url is None) == (media_id is None):
        raise ValueError("give exactly one of url and media_id")
    body: dict[str, Any] = {"url": url} if url is not None else {"id": media_id}
    if filename is not None:
        body["filename"] = filename
    return _new(conversation_id, kind, command_id, media=body, text=caption, reply_to=reply_to,
                thread_id=thread_id)  # fmt: skip


def location(
    conversation_id: str,
    latitude: float,
    longitude: float,
    *,
    name: str | None = None,
    address: str | None = None,
    command_id: str | None = None,
) -> Command:
    where = {"latitude": latitude, "longitude": longitude, "name": name, "address": address}
    return _new(conversation_id, "location", command_id, location=where)


def buttons(
    conversation_id: str,
    body: str,
    choices: list[tuple[str, str]],
    *,
    links: list[tuple[str, str]] | None = None,
    thread_id: str | None = None,
    command_id: str | None = None,
) -> Command:
    """`interactive` with reply buttons: (id, title) each; then, Telegram only, link buttons
    that open a URL: (title, url) each (http, https or tg)."""
    listed = [{"id": i, "title": t} for i, t in choices]
    listed += [{"title": t, "url": u} for t, u in links or []]
    return _new(conversation_id, "interactive", command_id, text=body, buttons=listed,
                thread_id=thread_id)  # fmt: skip


def keyboard(
    conversation_id: str,
    body: str,
    rows: list[list[str]],
    *,
    one_time: bool = False,
    resize: bool = False,
    thread_id: str | None = None,
    command_id: str | None = None,
) -> Command:
    """Telegram: a text that shows a reply keyboard, rows of button texts (a tap sends the
    text as the contact's message); `one_time` hides it after a tap, `resize` fits it."""
    board: dict[str, Any] = {"buttons": rows}
    if one_time:
        board["one_time"] = True
    if resize:
        board["resize"] = True
    return _new(conversation_id, "text", command_id, text=body, keyboard=board,
                thread_id=thread_id)  # fmt: skip


def remove_keyboard(
    conversation_id: str,
    body: str,
    *,
    thread_id: str | None = None,
    command_id: str | None = None,
) -> Command:
    """Telegram: a text that takes the reply keyboard away again."""
    return _new(conversation_id, "text", command_id, text=body, keyboard={"remove": True},
                thread_id=thread_id)  # fmt: skip


def reaction(
    conversation_id: str, message_id: str, emoji: str, *, command_id: str | None = None
) -> Command:
    """React to `message_id`; an empty `emoji` removes the reaction."""
    return _new(conversation_id, "reaction", command_id, text=emoji, reply_to=message_id)


def typing(conversation_id: str, *, reply_to: str | None = None,
           command_id: str | None = None) -> Command:  # fmt: skip
    return _new(conversation_id, "typing", command_id, reply_to=reply_to)


def read(conversation_id: str, *, reply_to: str | None = None,
         command_id: str | None = None) -> Command:  # fmt: skip
    return _new(conversation_id, "read", command_id, reply_to=reply_to)


def handoff(conversation_id: str, *, command_id: str | None = None) -> Command:
    """A human takes the conversation: the assistant is paused (`ai_paused` on messages)."""
    return _new(conversation_id, "handoff", command_id)


def handback(conversation_id: str, *, command_id: str | None = None) -> Command:
    """The assistant resumes."""
    return _new(conversation_id, "handback", command_id)


def escalate(
    conversation_id: str, *, note: str | None = None, command_id: str | None = None
) -> Command:
    """The assistant gives up and asks for a person: the gateway notifies the staff (its
    `notifications:` targets and `gw:notifications`) with the conversation, the customer's
    last message and `note` (why). It pauses nothing: send `handoff` as well to step back."""
    return _new(conversation_id, "escalate", command_id, text=note)


# --- rich messages (issue #17): WhatsApp's list, CTA URL, location request, contacts, sticker;
# link buttons also on Messenger, Instagram and Telegram. Other channels answer
# rejected/invalid_command with a detail saying why.


def row(row_id: str, title: str, description: str | None = None) -> dict[str, str]:
    """One row of a list: `row_id` (≤ 200) comes back as the tapped reply's `reply.id`;
    `title` ≤ 24, `description` ≤ 72 characters."""
    built = {"id": row_id, "title": title}
    if description is not None:
        built["description"] = description
    return built


def section(title: str | None, rows: Sequence[dict[str, str]]) -> dict[str, Any]:
    """A section of rows; `title` (≤ 24) is required once a list has several sections."""
    built: dict[str, Any] = {"rows": list(rows)}
    if title is not None:
        built["title"] = title
    return built


def list_menu(
    conversation_id: str,
    body: str,
    button: str,
    sections: Sequence[dict[str, Any]],
    *,
    header: str | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
    command_id: str | None = None,
) -> Command:
    """WhatsApp's list message: `body`, a `button` (≤ 20) that opens 1-10 `sections` holding
    1-10 rows in all (`section`, `row`); optional `header` and `footer` (≤ 60 each).
    Telegram: `body` between header and footer, a callback button a row (its id 1-64 bytes);
    section titles and `button` are not shown."""
    menu: dict[str, Any] = {"button": button, "sections": list(sections)}
    if header is not None:
        menu["header"] = header
    if footer is not None:
        menu["footer"] = footer
    return _new(conversation_id, "list", command_id, text=body, menu=menu, reply_to=reply_to)


def link_button(
    conversation_id: str,
    body: str,
    title: str,
    url: str,
    *,
    reply_to: str | None = None,
    command_id: str | None = None,
) -> Command:
    """One button that opens `url` (http or https) under `body`: WhatsApp's CTA URL message
    (`title` ≤ 20), a button template on Messenger and Instagram, a link button on Telegram.
    For up to three links (not on WhatsApp) use `buttons(conv, body, [], links=[...])`."""
    return _new(conversation_id, "interactive", command_id, text=body,
                buttons=[{"title": title, "url": url}], reply_to=reply_to)  # fmt: skip


def location_request(
    conversation_id: str,
    body: str,
    *,
    label: str | None = None,
    reply_to: str | None = None,
    command_id: str | None = None,
) -> Command:
    """`body` above a "Send location" button; the answer is a `location` event. Telegram
    (private chats only) shows the button as a one-time reply keyboard; `label`, Telegram
    only (other channels refuse it), is its text there ("Send location" without it)."""
    keyboard = {"buttons": [[label]]} if label is not None else None
    return _new(conversation_id, "location_request", command_id, text=body, reply_to=reply_to,
                keyboard=keyboard)  # fmt: skip


def contact_card(
    formatted_name: str,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    phones: Sequence[str | dict[str, str]] = (),
    emails: Sequence[str | dict[str, str]] = (),
    urls: Sequence[str | dict[str, str]] = (),
    company: str | None = None,
    birthday: str | None = None,
) -> dict[str, Any]:
    """One card of a `contacts` command. A phone, email or url is a string, or a dict with
    Graph's keys (`{"phone", "type", "wa_id"}`, `{"email", "type"}`, `{"url", "type"}`);
    `birthday` is YYYY-MM-DD."""
    name = {"formatted_name": formatted_name, "first_name": first_name, "last_name": last_name}
    card: dict[str, Any] = {"name": {k: v for k, v in name.items() if v is not None}}
    for key, field, values in (("phones", "phone", phones), ("emails", "email", emails),
                               ("urls", "url", urls)):  # fmt: skip
        if values:
            card[key] = [{field: v} if isinstance(v, str) else dict(v) for v in values]
    if company is not None:
        card["org"] = {"company": company}
    if birthday is not None:
        card["birthday"] = birthday
    return card


def contacts(
    conversation_id: str,
    cards: Sequence[dict[str, Any]],
    *,
    reply_to: str | None = None,
    command_id: str | None = None,
) -> Command:
    """Share contact cards (`contact_card`): 1-257 on WhatsApp, exactly one on Telegram (its
    first phone is the contact's number; the rest of the card goes as a vCard)."""
    return _new(conversation_id, "contacts", command_id, contacts=list(cards), reply_to=reply_to)


def sticker(
    conversation_id: str,
    *,
    url: str | None = None,
    media_id: str | None = None,
    reply_to: str | None = None,
    command_id: str | None = None,
) -> Command:
    """A WebP sticker (512x512, static ≤ 100 KB, animated ≤ 500 KB), by `url` or by an
    uploaded `media_id` (on Telegram a file_id, the only way to send a .tgs or .webm sticker);
    no caption."""
    if (url is None) == (media_id is None):
        raise ValueError("give exactly one of url and media_id")
    body = {"url": url} if url is not None else {"id": media_id}
    return _new(conversation_id, "sticker", command_id, media=body, reply_to=reply_to)
