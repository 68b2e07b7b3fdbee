"""Commands an assistant backend writes to its outbox (CONTRACT §2.2), one builder per type.

Each returns a `Command`: the JSON the gateway reads, with a fresh `command_id` unless one
is given (a backend that may resend after a crash should give its own, derived from what it
answers: the gateway sends each `command_id` once).
"""

from __future__ import annotations

import uuid
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
