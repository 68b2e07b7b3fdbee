"""Commands → Twilio Messages API requests, and Twilio's answers → one `SendResult`.

Two pure functions, no I/O (the router owns the HTTP client):

    build_request(account, api_base, command, address, status_callback, last_inbound=None)
        -> HttpRequest; raises only InvalidCommand, naming the rule the command breaks
    classify(status, body, headers=None) -> SendResult
        never raises; the one place where Twilio error codes (PLATFORM-MORE §6.3) become
        verdicts

A message is `POST {api_base}/2010-04-01/Accounts/{AC}/Messages.json`, form-encoded, with
HTTP Basic auth from `Account.token`: `AC...:<auth token>`, or `AC...:SK...:<secret>` with an
API key, whose SID is then the user (the path keeps the account SID). `From` is
`whatsapp:<the sender's E.164>`, `To` is `whatsapp:+<the contact's digits>`, and
`StatusCallback` is `twilio.public_url`, so every status of the message comes back (Twilio
names no command in a status; the router remembers which command a message SID answered).

What each command type becomes, from Twilio's own pages where they say it:

- `text`: `Body`, at most 1600 characters: the Message resource caps `Body` at 1,600
  (errors 21617, 21658), below WhatsApp's own 4096, so a longer text is refused here rather
  than failed by Twilio. Characters are counted as Python counts them; an emoji that Twilio
  counts twice can still meet a 21617, which fails the command like any permanent error.
- `image`, `video`: one `MediaUrl` (a public http(s) URL; Twilio fetches it and checks its
  Content-Type) and the caption as `Body` (at most 1024 characters, WhatsApp's caption cap).
  A media `id` cannot be sent: Twilio takes media by URL only.
- `audio`, `document`: one `MediaUrl` and no text. Twilio's WhatsApp media guide says it does
  not support a caption (or a filename) on documents, and WhatsApp has no caption on audio;
  what Twilio would do with a `Body` beside them is undocumented (other gateways saw it go as
  a second message), so a caption is refused: one command stays one message, and the
  assistant sends the text as a command of its own. `filename` is ignored (Twilio takes the
  name from the URL's `Content-Disposition`).
- `template`: Twilio's Content API, `ContentSid` (HX + 32 hex digits) and `ContentVariables`
  (a JSON string of `variables`, left out when there are none), with no `Body` (Twilio
  refuses `Body` beside `ContentVariables`, 35127). Each value must be a non-empty string of
  at most 1600 characters (21656, 21658). A WhatsApp name/language template is refused:
  Twilio sends templates only by their Content SID.
- `interactive`, `location`: Twilio sends buttons and location pins only as Content API
  templates (`twilio/quick-reply`, `twilio/location`; inside the 24-hour window they need no
  WhatsApp approval), so these are refused with that advice. (twilio-python says the Message
  resource's `PersistentAction` sends WhatsApp locations, but the page it points to documents
  no format for it any more, so it is not used.)
- `reaction`: refused; Twilio documents no way to send a WhatsApp reaction.
- the rich types of issue #17 (`adapters.rich`), refused with the Content API type that does
  the job where there is one: `list` → `twilio/list-picker`, link buttons (`interactive`
  with `url` buttons) → `twilio/call-to-action`; `location_request` and `contacts` have no
  Twilio form (the Message resource has no such parameter and the Content API no such type);
  `sticker`: Twilio documents no sticker send (WebP is listed among WhatsApp image types,
  but what the contact then sees is not documented), so it is refused rather than guessed.
- `typing`: `POST https://messaging.twilio.com/v2/Indicators/Typing.json` with
  `channel=whatsapp` and `messageId` = the contact's message (`reply_to`, else the last
  inbound), an `SM`/`MM` SID. Twilio marks that message read as it shows the indicator. The
  host is `api_base`'s with its leading `api.` label turned into `messaging.`
  (`https://api.twilio.com` → `https://messaging.twilio.com`); any other `api_base` (a local
  stand-in) is used as it is.
- `read`: refused. Twilio has no read receipt of its own: the typing indicator is its only way
  to mark a message read, and it also shows "typing…" to the contact for up to 25 seconds,
  which a read receipt does not promise. An assistant that wants the blue ticks sends
  `typing`.
- `reply_to` on a message: sent unquoted. The Messages API has no parameter that quotes a
  WhatsApp message (inbound quotes arrive as `OriginalRepliedMessageSid`, but nothing goes
  the other way), so the message still goes, without the quote.

The contact must be a phone number (digits): sending to a business-scoped user id through
Twilio (`whatsapp:<BSUID>`) is not documented, so such a command is refused rather than sent
to an address Twilio may take for something else. Fields a type does not use are ignored.

Twilio's answers, by verdict (the codes are PLATFORM-MORE §6.3's; the sets below say why):

    sent            201 with the message's `sid`; 2xx `{"success": true}` (typing)
    retry           20429, 30001, 30003, 30008, 63012; else HTTP 429 and 5xx, JSON or not
                    (`Retry-After` is obeyed when Twilio sends one)
    retry_account   63018: the sender's WhatsApp rate or tier limit holds the whole sender
    opted_out       21610, 63014: the contact refuses
    held            63049: Meta chose not to deliver a marketing message (WhatsApp 131049)
    undeliverable   63003, 63024, 30005, 30006: the contact cannot be reached (131026)
    window_closed   63016: outside the 24-hour window (WhatsApp 131047)
    halt            20003, 20005, 63001, 63007, 63038; else HTTP 401
    failed          the rest: a known permanent code, another 4xx, and a 2xx that names no
                    message (it may have been queued, so it is never sent again)

Most WhatsApp errors come later, in a status callback; the same table classifies them there
(`verdict_for`), so the opt-out, hold or closed window they mean is recorded either way.
"""

from __future__ import annotations

import base64
import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import msgspec

from adapters import answers, rich
from adapters.account import Account
from adapters.channel import HttpRequest
from adapters.schema import Command, InvalidCommand, SendResult, Verdict, telegram_only

BODY_MAX: Final = 1600
"""Characters of a message's `Body` (the Message resource's cap, errors 21617 and 21658)."""
CAPTION_MAX: Final = 1024
"""Characters of an image's or video's caption (WhatsApp's cap on captions)."""
VARIABLE_MAX: Final = 1600
"""Characters of one Content API variable's value (error 21658)."""
DETAIL_MAX: Final = 300
API_VERSION: Final = "2010-04-01"
TYPING_PATH: Final = "/v2/Indicators/Typing.json"

_CONTENT_SID: Final = re.compile(r"HX[0-9a-fA-F]{32}")
_MESSAGE_SID: Final = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")
_KEY_SID: Final = re.compile(r"SK[0-9a-fA-F]{32}")
_CAPTIONED: Final = frozenset({"image", "video"})
_CONTENT_API: Final = (
    "create a Content API template ({kind}) and send it as a `template` command with its "
    "content_sid (inside the 24-hour window it needs no WhatsApp approval)"
)

# --- build_request ---------------------------------------------------------------------------


def build_request(
    account: Account,
    api_base: str,
    command: Command,
    address: str,
    status_callback: str,
    last_inbound: str | None = None,
) -> HttpRequest:
    """The request for one command from the sender `account` to the contact `address` (its
    number in digits). `status_callback`: where Twilio posts the message's statuses ("" for
    none). `last_inbound`: the contact's last message (its SID, as Twilio posted it), which a
    typing indicator answers when the command's `reply_to` names none."""
    if refused := telegram_only(command):
        raise InvalidCommand(refused)
    account_sid, headers = _auth(account)
    to = _recipient(address)
    if command.type == "typing":
        return _typing(api_base, headers, command, last_inbound)
    build = _MESSAGES.get(command.type)
    if build is None:
        raise InvalidCommand(_unsendable(command.type, command))
    if not account.display_phone_number:
        raise InvalidCommand("the sender has no number to send from")
    form = {"To": to, "From": "whatsapp:" + account.display_phone_number, **build(command)}
    if status_callback:
        form["StatusCallback"] = status_callback
    url = f"{api_base}/{API_VERSION}/Accounts/{account_sid}/Messages.json"
    return HttpRequest(url, headers, form, form=True)


def typing_url(api_base: str) -> str:
    """The typing indicator's URL: Twilio's Messaging v2 host beside `api_base`'s API host
    (`api.` → `messaging.`, port kept, path dropped); any other `api_base` as it is."""
    try:
        parts = urlsplit(api_base)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return api_base.rstrip("/") + TYPING_PATH  # not a URL this function can rewrite
    if host.startswith("api."):
        netloc = "messaging." + host.removeprefix("api.") + (f":{port}" if port else "")
        return urlunsplit((parts.scheme, netloc, TYPING_PATH, "", ""))
    return api_base.rstrip("/") + TYPING_PATH


def _auth(account: Account) -> tuple[str, dict[str, str]]:
    """The account SID (for the path) and the Basic auth header: the API key's SID and secret
    when the token holds one, else the account SID and auth token."""
    account_sid, _, secret = account.token.partition(":")
    user = account_sid
    key_sid, _, key_secret = secret.partition(":")
    if key_secret and _KEY_SID.fullmatch(key_sid):
        user, secret = key_sid, key_secret
    if not account_sid.startswith("AC") or not secret:
        # The config's checks make this unreachable; never echo the token itself.
        raise InvalidCommand("the sender's Twilio credentials are not AC...:<secret>")
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return account_sid, {"Authorization": f"Basic {basic}", "Accept": "application/json"}


def _recipient(address: str) -> str:
    """`whatsapp:+<digits>`; whether the number exists is Twilio's to say (21211, 63003)."""
    if address.isascii() and address.isdigit() and len(address) <= 15:
        return f"whatsapp:+{address}"
    raise InvalidCommand(
        f"contact_id {address!r} is not a phone number in digits: Twilio sends WhatsApp "
        "messages to whatsapp:+E.164 addresses only"
    )


def _typing(
    api_base: str, headers: dict[str, str], command: Command, last_inbound: str | None
) -> HttpRequest:
    """The indicator answers `reply_to`, which must then be a message SID (an assistant may
    hold a Meta wamid by mistake), else the contact's last message, as Twilio named it."""
    target = command.reply_to
    if target and not _MESSAGE_SID.fullmatch(target):
        raise InvalidCommand(
            f"typing: reply_to {target!r} is not a Twilio message SID (SM... or MM...)"
        )
    target = target or last_inbound
    if not target:
        raise InvalidCommand("typing: no message to answer (the contact has not written)")
    form = {"channel": "whatsapp", "messageId": target}
    return HttpRequest(typing_url(api_base), headers, form, form=True)


def _unsendable(kind: str, command: Command) -> str:
    match kind:
        case "interactive" if any(b.url is not None for b in command.buttons or ()):
            return (
                "interactive: Twilio sends link buttons only in a template; "
                + _CONTENT_API.format(kind="twilio/call-to-action")
            )
        case "interactive":
            return "interactive: Twilio sends buttons only in a template; " + _CONTENT_API.format(
                kind="twilio/quick-reply or twilio/list-picker"
            )
        case "location":
            return "location: Twilio sends a location only in a template; " + _CONTENT_API.format(
                kind="twilio/location"
            )
        case "reaction":
            return "reaction: Twilio has no way to send a WhatsApp reaction"
        case "list":
            return "list: Twilio sends a list only in a template; " + _CONTENT_API.format(
                kind="twilio/list-picker"
            )
        case "read":
            return (
                "read: Twilio has no read receipt of its own; send `typing`, which marks the "
                "contact's message read and shows them a typing indicator"
            )
        case "handoff" | "handback":
            return f"{kind} is a control command: it sends nothing to Twilio"
    return rich.refusal(kind, "WhatsApp through Twilio") or f"unknown command type {kind!r}"


def _text(command: Command) -> dict[str, str]:
    return {"Body": _required_text(command, BODY_MAX)}


def _required_text(command: Command, limit: int) -> str:
    text = command.text
    if text is None or not text.strip():
        raise InvalidCommand(f"{command.type}: text is required and must not be blank")
    if len(text) > limit:
        raise InvalidCommand(
            f"{command.type}: text is {len(text)} characters; Twilio takes at most {limit}"
        )
    return text


def _media(command: Command) -> dict[str, str]:
    m = command.media
    if m is None or not (m.url or m.id):
        raise InvalidCommand(f"{command.type}: media.url is required")
    if not m.url:  # an id beside a URL is ignored: the URL is what Twilio takes
        raise InvalidCommand(
            f"{command.type}: Twilio takes media by public URL only (media.url); a media id "
            "cannot be sent"
        )
    if not _is_http_url(m.url):
        raise InvalidCommand(f"{command.type}: media.url must be a public http(s) URL")
    form = {"MediaUrl": m.url}
    caption = command.text
    if caption is not None and caption.strip():
        if command.type not in _CAPTIONED:
            raise InvalidCommand(
                f"{command.type}: WhatsApp through Twilio carries no caption on {command.type}; "
                "send the text as a text command of its own"
            )
        form["Body"] = _required_text(command, CAPTION_MAX)
    return form


def _is_http_url(text: str) -> bool:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        return False
    return url.scheme in ("https", "http") and bool(url.hostname)


def _template(command: Command) -> dict[str, str]:
    t = command.template
    if t is None:
        raise InvalidCommand("template: the template object is required")
    if not t.content_sid:
        raise InvalidCommand(
            "template: Twilio sends templates through its Content API: give content_sid "
            "(HX...) and variables instead of WhatsApp's name and language"
        )
    if not _CONTENT_SID.fullmatch(t.content_sid):
        raise InvalidCommand(
            f"template: content_sid {t.content_sid!r} is not a Content SID (HX + 32 hex digits)"
        )
    form = {"ContentSid": t.content_sid}
    if t.variables:
        form["ContentVariables"] = _variables(t.variables)
    return form


def _variables(variables: Mapping[str, str]) -> str:
    for key, value in variables.items():
        if not value:
            raise InvalidCommand(f"template: variable {key!r} is empty (Twilio refuses it)")
        if len(value) > VARIABLE_MAX:
            raise InvalidCommand(
                f"template: variable {key!r} is longer than {VARIABLE_MAX} characters"
            )
    return msgspec.json.encode(dict(variables)).decode()


_MESSAGES: Final[dict[str, Callable[[Command], dict[str, str]]]] = {
    "text": _text,
    "image": _media,
    "video": _media,
    "audio": _media,
    "document": _media,
    "template": _template,
}

# --- classify --------------------------------------------------------------------------------

_RETRY: Final = frozenset({20429, 30001, 30003, 30008, 63012})
"""Too many concurrent REST requests (never processed, safe to repeat); the sender's queue
overflowed; a carrier's unreachable or unknown error (one more try, PLATFORM-MORE §6.3); the
channel's internal error (the sender's `max_attempts` limits the retries)."""
_RETRY_ACCOUNT: Final = frozenset({63018})
"""The sender's WhatsApp rate or tier limit: the whole sender holds back, not one message."""
_HALT: Final = frozenset({20003, 20005, 63001, 63007, 63038})
"""Authentication failed; the Twilio account is not active; the channel could not
authenticate; no channel for this `From`; the account's daily message limit (PLATFORM-MORE
§6.3 and §9: pause the sender and alert). None of these gets better by sending on: the number
stops until an operator has fixed it (and restarted the gateway)."""
_OPTED_OUT: Final = frozenset({21610, 63014})
"""The contact refuses: unsubscribed with STOP; blocked the sender or withdrew consent."""
_MARKS: Final[dict[int, Verdict]] = {
    63049: "held",  # Meta chose not to deliver a marketing message: wait a day (131049)
    63016: "window_closed",  # outside the 24-hour window: templates only (131047)
    63003: "undeliverable",  # the channel could not find the To address (1006, 1013, 1021)
    63024: "undeliverable",  # invalid message recipient (1002, 1026: 131026's kin)
    30005: "undeliverable",  # unknown destination handset
    30006: "undeliverable",  # landline or unreachable carrier
}
"""Permanent for this message, and a mark on the contact (the same as WhatsApp's codes that
Twilio maps them from): nobody refused anything, so none of them is an opt-out."""
_FAILED: Final = frozenset(
    {
        21211, 21408, 21614, 21654, 21655, 21656, 21617, 21658, 21620, 21623, 35127,
        30004, 30007, 63005, 63013, 63015, 63019, 63021, 63025, 63027, 63028, 63029,
        63030, 63032, 63040,
    }
)  # fmt: skip
"""Permanent for this message only, whatever the HTTP status said: an invalid `To` (21211)
or not a mobile number (21614) is the assistant's address to fix, content and template
errors its payload; 63019 (media download) is its URL to fix; 63032 is a WhatsApp limitation
on this user (an experiment, 130472); 63040 is undocumented (UNCERTAIN): no retry."""
_RETRY_AFTER: Final = "retry-after"
_SECRETS: Final = re.compile(
    r"(?i:basic\s+)[A-Za-z0-9+/=]{8,}|(?<![A-Za-z0-9])[0-9a-fA-F]{32}(?![0-9A-Za-z])"
)
"""A Basic credential, and a bare 32-hex-digit run (an auth token's shape; SIDs keep theirs,
whose hex follows their two-letter prefix): never copied into a detail."""


def classify(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> SendResult:
    """Turn one Twilio answer into a verdict. Never raises.

    Many WhatsApp errors (63016 outside the window, 63003, 63049, ...) come later, in a
    status callback, after Twilio queued the message (201); they are mapped here all the
    same, for the ones Twilio answers at once. `headers` may carry `Retry-After`."""
    doc = answers.decode(body, answers.NOT_JSON)
    match doc:
        case {"code": int(code)} if answers.is_int(code) and not answers.ok(status):
            return _error(status, code, doc, headers)
        case {"sid": str(sid)} if answers.ok(status) and sid:
            return SendResult(verdict="sent", message_id=sid)
        case {"success": True} if answers.ok(status):
            return SendResult(verdict="sent")  # the typing indicator: no message, no SID
    verdict = _by_status(status)
    wait = _retry_after(headers) if verdict == "retry" else None
    why = "the answer is not JSON" if doc is answers.NOT_JSON else "not a Twilio answer"
    if answers.ok(status):
        # The message may have been queued: never risk sending it twice.
        why += "; the message may have gone, so it is not retried"
    return SendResult(verdict=verdict, retry_after_s=wait, detail=f"HTTP {status}: {why}")


def _error(
    status: int, code: int, error: dict[str, Any], headers: Mapping[str, str] | None
) -> SendResult:
    verdict = verdict_for(code) or _by_status(status)
    wait = _retry_after(headers) if verdict in ("retry", "retry_account") else None
    message = error.get("message")
    title = _SECRETS.sub("[redacted]", message)[:DETAIL_MAX] if isinstance(message, str) else None
    return SendResult(
        verdict=verdict,
        provider_code=code,
        retry_after_s=wait,
        detail=_detail(code, error),
        provider_title=title or None,
    )


def verdict_for(code: int) -> Verdict | None:
    """The verdict of a Twilio error code (PLATFORM-MORE §6.3); None: unknown here, decided
    by the HTTP status."""
    if code in _RETRY:
        return "retry"
    if code in _RETRY_ACCOUNT:
        return "retry_account"
    if code in _HALT:
        return "halt"
    if code in _OPTED_OUT:
        return "opted_out"
    if code in _FAILED:
        return "failed"
    return _MARKS.get(code)


def _by_status(status: int) -> Verdict:
    if status == 429 or 500 <= status < 600:
        return "retry"
    if status == 401:
        return "halt"  # Twilio's answer to credentials it does not accept
    # Anything else, a 2xx without a message SID included: the request may have been taken.
    return "failed"


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """`Retry-After` in seconds (a number of seconds, or an HTTP date), when Twilio sends it."""
    raw = _header(headers, _RETRY_AFTER) if headers is not None else None
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """`name`'s value whatever its case (aiohttp's headers ignore case; a dict does not)."""
    value = headers.get(name)
    if value is not None:
        return value
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _detail(code: int, error: dict[str, Any]) -> str:
    """`code: message`, credentials blanked out, cut to DETAIL_MAX."""
    message = error.get("message")
    text = f"{code}: {message}" if isinstance(message, str) and message else str(code)
    return _SECRETS.sub("[redacted]", text)[:DETAIL_MAX]
