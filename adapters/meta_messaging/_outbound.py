"""Commands → Send API requests (Messenger and Instagram), and Send API answers → one
`SendResult`.

Two pure functions, no I/O (the channel class adds `api_base` and the bearer token):

    build_request(channel, command, account_id, address, last_inbound) -> ProviderRequest
        raises only InvalidCommand, naming the rule the command breaks
    classify(status, body, headers=None) -> SendResult
        never raises; the one place where Messenger Platform error codes (PLATFORM-MORE §4.5)
        become verdicts

Both channels `POST /{page or account id}/messages` (PLATFORM-MORE §4.1-4.2). Where they differ,
Meta's own pages decide:

- `messaging_type`: Messenger's Send API requires it (`RESPONSE`). Instagram's examples
  (Instagram Login messaging guide) send only `recipient` and `message`, so an Instagram
  message carries it only with a tag (`MESSAGE_TAG` + `HUMAN_AGENT`).
- `message.metadata` = "gw:<command_id>": Messenger echoes it back in `message_echoes`, which
  is how the parser drops echoes of the gateway's own sends. Instagram documents no metadata
  parameter, so none is sent there: its echoes of our sends must be recognised by message id.
- text: Messenger at most 2000 characters, Instagram at most 1000 bytes of UTF-8.
- media: `attachment {type, payload: {url, is_reusable: true} | {attachment_id}}`; Instagram's
  examples show `payload {url}` only, so `is_reusable` goes to Messenger only. The Send API has
  no caption (a message holds text or an attachment, never both), and a media command with
  text is refused rather than split into two messages: one command stays one message, with
  one delivery and one message id; the assistant sends the text as its own command.
- quoting (`reply_to`): Meta's Send API reference lists no such parameter (UNCERTAIN);
  integrations in the field send a top-level `"reply_to": {"mid": ...}` beside `message`, and
  so does Messenger here. Instagram's guide documents nothing like it, so there the quote is
  left out: the message still goes, unquoted, rather than risk Meta refusing it.
- link buttons (an `interactive` whose buttons all have `url`, issue #17): the button
  template, `attachment {type: template, payload: {template_type: button, text, buttons:
  [{type: web_url, url, title}]}}`: 1-3 buttons, titles at most 20 characters, text at most
  640 characters (Messenger's button template page; Instagram's, for Instagram Login, shows
  the same template and names no other limit, so the same are applied there). `list`,
  `location_request`, `contacts` and `sticker` have no Send API form (Messenger's location
  quick reply and list template are retired) and are refused.
- sender actions (`typing_on`, `mark_seen`, `react`/`unreact`) go alone: no message, no
  `messaging_type`, no tag, no metadata. Instagram's guide takes any emoji as a reaction;
  Messenger's pages list none, so the emoji is passed on as given.

Meta marks a whole thread seen and types into it, so `last_inbound` is not needed here.
Fields a type does not use are ignored (a media `filename`: the Send API takes a file's name
from its URL).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from adapters import answers, rich
from adapters.schema import (
    Command,
    InvalidCommand,
    ProviderRequest,
    SendResult,
    Verdict,
    telegram_only,
)

MESSENGER_TEXT_MAX: Final = 2000
"""Characters of a Messenger message's text."""
INSTAGRAM_TEXT_MAX_BYTES: Final = 1000
"""Bytes of UTF-8 of an Instagram message's text (Meta counts bytes, not characters)."""
QUICK_REPLIES_MAX: Final = 13
QUICK_REPLY_TITLE_MAX: Final = 20
QUICK_REPLY_PAYLOAD_MAX: Final = 1000
BUTTON_TEMPLATE_TEXT_MAX: Final = 640
"""Characters of a button template's text."""
LINK_BUTTONS_MAX: Final = 3
LINK_TITLE_MAX: Final = 20
METADATA_MAX: Final = 1000
METADATA_PREFIX: Final = "gw:"
"""`message.metadata` of every Messenger send; the parser drops echoes that carry it."""
DETAIL_MAX: Final = 300

_HUMAN_AGENT: Final = "HUMAN_AGENT"  # as `_channel.HUMAN_AGENT`, which imports this module
_ATTACHMENT_TYPES: Final = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "document": "file",
}


class _Rules(NamedTuple):
    """What one channel's Send API takes."""

    name: str
    always_typed: bool  # `messaging_type` on every message, not only tagged ones
    metadata: bool
    reusable: bool
    quotes: bool
    text_limit: Callable[[str], str | None]  # why the text is too long, or None


def _messenger_text(text: str) -> str | None:
    if len(text) <= MESSENGER_TEXT_MAX:
        return None
    return f"Messenger allows at most {MESSENGER_TEXT_MAX} characters (this text has {len(text)})"


def _instagram_text(text: str) -> str | None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size <= INSTAGRAM_TEXT_MAX_BYTES:
        return None
    return (
        f"Instagram allows at most {INSTAGRAM_TEXT_MAX_BYTES} bytes of UTF-8 (this text is "
        f"{size} bytes; accented letters take 2 and emoji 4)"
    )


_RULES: Final = {
    "messenger": _Rules("Messenger", True, True, True, True, _messenger_text),
    "instagram": _Rules("Instagram", False, False, False, False, _instagram_text),
}

# --- build_request ---------------------------------------------------------------------------


def build_request(
    channel: str, command: Command, account_id: str, address: str, last_inbound: str | None
) -> ProviderRequest:
    """The request for one command to the contact `address` (PSID or IGSID) of the Page or
    Instagram account `account_id`."""
    rules = _RULES[channel]
    if refused := telegram_only(command):
        raise InvalidCommand(refused)
    if not (address.isascii() and address.isdigit()):
        raise InvalidCommand(f"contact_id {address!r} is not a {rules.name} user id (digits)")
    typed = _messaging(rules, command)  # a bad tag is refused whatever the type
    path = f"/{account_id}/messages"
    recipient = {"id": address}
    action = _ACTIONS.get(command.type)
    if action is not None:
        # A sender action carries no tag: a human agent's console may tag everything it
        # sends, and its typing indicator still goes (inside the window) without one.
        return ProviderRequest(path, {"recipient": recipient, **action(command)})
    build = _MESSAGES.get(command.type)
    if build is None:
        raise InvalidCommand(_unsendable(command.type, rules.name))
    message = _message(rules, command, build)
    body: dict[str, Any] = {"recipient": recipient, **typed, "message": message}
    if rules.quotes and command.reply_to:
        body["reply_to"] = {"mid": command.reply_to}
    return ProviderRequest(path, body)


def _messaging(rules: _Rules, command: Command) -> dict[str, str]:
    """`messaging_type` (and `tag`) of a message to this channel."""
    if command.tag is None:
        return {"messaging_type": "RESPONSE"} if rules.always_typed else {}
    if command.tag != _HUMAN_AGENT:
        raise InvalidCommand(
            f"tag {command.tag!r} is not accepted: {_HUMAN_AGENT} is the only tag Meta still "
            "takes (the others were retired), for a human agent's message"
        )
    if command.author != "human":
        raise InvalidCommand(
            f"tag {_HUMAN_AGENT} is only for a message a real person wrote: set author to "
            '"human" (Meta forbids it on automated messages)'
        )
    return {"messaging_type": "MESSAGE_TAG", "tag": _HUMAN_AGENT}


def _message(
    rules: _Rules, command: Command, build: Callable[[_Rules, Command], dict[str, Any]]
) -> dict[str, Any]:
    message = build(rules, command)
    if rules.metadata:
        metadata = METADATA_PREFIX + command.command_id
        if len(metadata) > METADATA_MAX:
            limit = METADATA_MAX - len(METADATA_PREFIX)
            raise InvalidCommand(f"command_id is longer than {limit} characters")
        message["metadata"] = metadata
    return message


def _unsendable(kind: str, platform: str) -> str:
    match kind:
        case "template":
            return (
                "template is WhatsApp's; on Messenger and Instagram send text, media or "
                "interactive within 24 hours of the contact's last message, or, for a human "
                f'agent\'s message, tag it {_HUMAN_AGENT} with author "human" (up to 7 days)'
            )
        case "location":
            return "location: the Send API cannot send one; send the address or a map link as text"
        case "handoff" | "handback":
            return f"{kind} is a control command: it sends nothing to Meta"
    return rich.refusal(kind, platform) or f"unknown command type {kind!r}"


def _required_text(rules: _Rules, command: Command) -> str:
    text = command.text
    if text is None or not text.strip():
        raise InvalidCommand(f"{command.type}: text is required and must not be blank")
    too_long = rules.text_limit(text)
    if too_long:
        raise InvalidCommand(f"{command.type}: text is too long: {too_long}")
    return text


def _text(rules: _Rules, command: Command) -> dict[str, Any]:
    return {"text": _required_text(rules, command)}


def _media(rules: _Rules, command: Command) -> dict[str, Any]:
    m = command.media
    if m is None or bool(m.url) == bool(m.id):
        raise InvalidCommand(f"{command.type}: media needs exactly one of url or id")
    if command.text and command.text.strip():
        raise InvalidCommand(
            f"{command.type}: {rules.name} media carries no caption; send the text as a "
            "text command of its own"
        )
    payload: dict[str, Any] = {"url": m.url} if m.url else {"attachment_id": m.id}
    if m.url and rules.reusable:
        payload["is_reusable"] = True
    return {"attachment": {"type": _ATTACHMENT_TYPES[command.type], "payload": payload}}


def _interactive(rules: _Rules, command: Command) -> dict[str, Any]:
    buttons = command.buttons or []
    if buttons and all(b.url is not None for b in buttons):
        return _button_template(rules, command)
    text = _required_text(rules, command)
    if not 1 <= len(buttons) <= QUICK_REPLIES_MAX:
        raise InvalidCommand(
            f"interactive: needs 1 to {QUICK_REPLIES_MAX} buttons (quick replies), "
            f"got {len(buttons)}"
        )
    for b in buttons:
        if not 1 <= len(b.title) <= QUICK_REPLY_TITLE_MAX:
            raise InvalidCommand(
                f"interactive: button title {b.title!r} must be 1-{QUICK_REPLY_TITLE_MAX} "
                "characters"
            )
        if not 1 <= len(b.id) <= QUICK_REPLY_PAYLOAD_MAX:
            raise InvalidCommand(
                f"interactive: button id must be 1-{QUICK_REPLY_PAYLOAD_MAX} characters "
                f"(the one titled {b.title!r} has {len(b.id)})"
            )
    replies = [{"content_type": "text", "title": b.title, "payload": b.id} for b in buttons]
    return {"text": text, "quick_replies": replies}


def _button_template(rules: _Rules, command: Command) -> dict[str, Any]:
    """Link buttons alone: the button template with `web_url` buttons."""
    text = command.text
    if text is None or not text.strip():
        raise InvalidCommand("interactive: text is required and must not be blank")
    if len(text) > BUTTON_TEMPLATE_TEXT_MAX:
        raise InvalidCommand(
            f"interactive: text is {len(text)} characters; {rules.name}'s button template "
            f"takes at most {BUTTON_TEMPLATE_TEXT_MAX}"
        )
    buttons = command.buttons or []
    if len(buttons) > LINK_BUTTONS_MAX:
        raise InvalidCommand(
            f"interactive: {rules.name} takes 1 to {LINK_BUTTONS_MAX} link buttons, "
            f"got {len(buttons)}"
        )
    links = [_link_button(b.id, b.title, b.url or "") for b in buttons]
    payload = {"template_type": "button", "text": text, "buttons": links}
    return {"attachment": {"type": "template", "payload": payload}}


def _link_button(button_id: str, title: str, url: str) -> dict[str, str]:
    if button_id:
        raise InvalidCommand("interactive: a link button has a url and no id")
    if not title.strip() or len(title) > LINK_TITLE_MAX:
        raise InvalidCommand(
            f"interactive: link button title {title!r} must be 1-{LINK_TITLE_MAX} characters"
        )
    if not _is_web_url(url):
        raise InvalidCommand(f"interactive: link {url!r} is not an http or https URL with a host")
    return {"type": "web_url", "url": url, "title": title}


def _is_web_url(text: str) -> bool:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        return False
    return url.scheme in ("https", "http") and bool(url.hostname) and text.strip() == text


_MESSAGES: Final[dict[str, Callable[[_Rules, Command], dict[str, Any]]]] = {
    "text": _text,
    "image": _media,
    "audio": _media,
    "video": _media,
    "document": _media,
    "interactive": _interactive,
}


def _typing(command: Command) -> dict[str, Any]:
    return {"sender_action": "typing_on"}


def _read(command: Command) -> dict[str, Any]:
    return {"sender_action": "mark_seen"}


def _reaction(command: Command) -> dict[str, Any]:
    """`react` with the emoji, or `unreact` (the payload names the message only) when the text
    is empty, as on WhatsApp."""
    if not command.reply_to:
        raise InvalidCommand("reaction: reply_to (the message to react to) is required")
    emoji = command.text or ""
    if not emoji:
        return {"sender_action": "unreact", "payload": {"message_id": command.reply_to}}
    if not emoji.strip():
        raise InvalidCommand('reaction: text must be an emoji, or "" to remove the reaction')
    payload = {"message_id": command.reply_to, "reaction": emoji}
    return {"sender_action": "react", "payload": payload}


_ACTIONS: Final[dict[str, Callable[[Command], dict[str, Any]]]] = {
    "typing": _typing,
    "read": _read,
    "reaction": _reaction,
}

# --- classify --------------------------------------------------------------------------------

_RETRY: Final = frozenset({1200, 2})
"""Temporary send failure; unexpected error (the sender stops after its max attempts, since
Meta notes 2 can also mean the person blocked the business)."""
_RATE_LIMITS: Final = frozenset({4, 17, 32, 613, 80001, 80002, 80006})
_RECIPIENT_CODES: Final = frozenset({551, 2534014, 2534001})
_RECIPIENT_SUBCODES: Final = frozenset({2018108, 1545041, 2018001, 2534014, 2534001})
"""Not receiving messages right now, unavailable (blocked, deactivated), no matching user,
Instagram user or thread gone: recipient-permanent until the contact writes again. Checked
before the code, since Meta sends 1545041 under 200 too, which would otherwise halt the Page."""
_WINDOW_SUBCODES: Final = frozenset({2018278, 2534022, 2018065})
"""Outside the allowed window: permanent for this message only."""
_FAILED: Final = frozenset({2534025, 2534013, 9010})
"""Instagram: a private reply already used, the private-reply limit (field observations,
UNCERTAIN); "No matching Instagram user" (Meta's App Review bot): permanent for this
message, the recipient stays reachable."""
_REGAIN_HEADER: Final = "x-business-use-case-usage"
_TOKENS: Final = re.compile(
    r"(?:\b(?:EAA|IGAA|IGQV)[A-Za-z0-9_-]{16,})|(?<=access_token=)[^&\s\"']+"
)
"""Page tokens (`EAA...`), Instagram User tokens (`IGAA...`, older `IGQV...`) and any
`access_token=` value: never copied into a detail."""


def classify(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> SendResult:
    """Turn one Send API answer into a verdict. Never raises.

    `headers`, when given, may carry `X-Business-Use-Case-Usage`, where Meta puts the minutes
    until a throttled Page or account may call again (`estimated_time_to_regain_access`)."""
    doc = answers.decode(body, answers.NOT_JSON)
    match doc:
        case {"error": {"code": int(code)} as error} if answers.is_int(code):
            return _error(status, code, error, headers)
        case {"message_id": str(message_id)} if answers.ok(status) and message_id:
            return SendResult(verdict="sent", message_id=message_id)
        case {"recipient_id": str()} if answers.ok(status):
            return SendResult(verdict="sent")  # a sender action: no message, no id
        case {"success": True} if answers.ok(status):
            return SendResult(verdict="sent")  # pass_thread_control, take_thread_control
        case {"error": dict(error)}:
            return SendResult(verdict=_by_status(status), detail=_detail(None, None, error))
    if doc is answers.NOT_JSON:
        # A proxy's or load balancer's page, or a cut-off answer: say nothing about the send.
        return SendResult(verdict="retry", detail=f"HTTP {status}: the answer is not JSON")
    return SendResult(verdict=_by_status(status), detail=f"HTTP {status}: not a Send API answer")


def _error(
    status: int, code: int, error: dict[str, Any], headers: Mapping[str, str] | None
) -> SendResult:
    raw_subcode = error.get("error_subcode")
    subcode = raw_subcode if answers.is_int(raw_subcode) else None
    verdict = _verdict_for(code, subcode) or _by_status(status)
    wait = _regain_s(error, headers) if code in _RATE_LIMITS else None
    message, trace = error.get("message"), error.get("fbtrace_id")
    return SendResult(
        verdict=verdict,
        provider_code=code,
        retry_after_s=wait,
        detail=_detail(code, subcode, error),
        provider_title=_said(
            _TOKENS.sub("[redacted]", message) if isinstance(message, str) else ""
        ),
        fbtrace_id=_said(trace if isinstance(trace, str) else "", 100),
    )


def _said(text: str, limit: int = DETAIL_MAX) -> str | None:
    """What the delivery quotes of Meta's answer (`provider_title`, `fbtrace_id`)."""
    return text[:limit] or None


def _verdict_for(code: int, subcode: int | None) -> Verdict | None:
    """The verdict of a Messenger Platform error (PLATFORM-MORE §4.5); None: unknown code,
    decided by the HTTP status."""
    if subcode in _RECIPIENT_SUBCODES or code in _RECIPIENT_CODES:
        return "opted_out"
    if code in _RATE_LIMITS:
        return "retry_account"  # the Page's (or app's) limit: calling on lengthens the block
    if code in _RETRY:
        return "retry"
    if subcode in _WINDOW_SUBCODES:
        return "failed"
    if code == 190 or code == 3 or 200 <= code < 300:
        return "halt"  # token gone, or a permission or app problem: stop the account
    if code == 10:
        # Without a subcode: the app lacks the permission (stop the account). A subcode names
        # a problem of this message; one not known here fails it without stopping the Page.
        return "halt" if subcode is None else "failed"
    if code == 100 or code in _FAILED:
        return "failed"  # invalid parameter (a retired tag, an attachment too large, ...)
    return None


def _regain_s(error: dict[str, Any], headers: Mapping[str, str] | None) -> float | None:
    """Seconds until Meta lets the account call again: `estimated_time_to_regain_access`
    (minutes) from the business-use-case header, or from the error's `error_data`."""
    minutes = [_minutes(error.get("error_data"))]
    header = _header(headers, _REGAIN_HEADER) if headers is not None else None
    if header is not None:
        match answers.decode(header.encode("utf-8", "surrogatepass"), answers.NOT_JSON):
            case dict(usage):
                for entries in usage.values():
                    if isinstance(entries, list):
                        minutes += [_minutes(entry) for entry in entries]
    found = [m for m in minutes if m is not None and m > 0]
    return max(found) * 60.0 if found else None


def _minutes(entry: object) -> float | None:
    if not isinstance(entry, dict):
        return None
    match entry.get("estimated_time_to_regain_access"):
        case bool():
            return None
        case int() as value if 0 <= value < answers.INT64:
            return float(value)
        case float() as value if math.isfinite(value) and value >= 0:
            return value
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """`name`'s value whatever its case (aiohttp's headers ignore case; a dict does not)."""
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _by_status(status: int) -> Verdict:
    if status == 429 or 500 <= status < 600:
        return "retry"
    return "failed"


def _detail(code: int | None, subcode: int | None, error: dict[str, Any]) -> str | None:
    """`code/subcode: message`, tokens blanked out, cut to DETAIL_MAX."""
    where = "" if code is None else str(code) if subcode is None else f"{code}/{subcode}"
    message = error.get("message")
    text = message if isinstance(message, str) else ""
    text = f"{where}: {text}" if where and text else where or text
    return _TOKENS.sub("[redacted]", text)[:DETAIL_MAX] or None
