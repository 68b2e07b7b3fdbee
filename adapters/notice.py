"""Escalation notices: what a notification is (`Notice`, the JSON of `gw:notifications`), the
`notifications:` config section, and the targets a notice goes to.

    Notice                    the notification (schema 1, kind `escalation`)
    NotificationSettings      the `notifications:` section: targets, retries, reminder, link
    NoticeTarget              one place a notice goes: `request` (notice -> one HTTP POST) and
                              `classify` (the answer -> delivered / retry / failed)
    SignedWebhook             an HTTPS endpoint, the body signed with HMAC-SHA256 (`sign`,
                              `verify` for a receiver)
    targets(settings)         the configured targets (the staff chat is a channel's helper:
                              adapters/telegram/_staff.py)

Like a channel's request and classify, nothing here touches the network or Redis: the router
sends (router/notifier.py) and decides what a verdict means (retry with backoff, dead-letter).

The webhook signature: headers `X-Gateway-Timestamp: <unix seconds>` and
`X-Gateway-Signature: sha256=<hex>`, where hex = HMAC-SHA256(secret, timestamp + "." + raw
body). A receiver recomputes it over the exact bytes it got, compares in constant time, and
refuses a timestamp far from its clock (a replayed capture); `verify` does all three.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import string
import time
from collections.abc import Mapping
from typing import Annotated, Final, Literal, NamedTuple, Protocol
from urllib.parse import quote, urlsplit

import msgspec

from adapters.account import SECTION_STRUCT, Secret
from adapters.telegram import StaffChatSettings, send_message, staff_answer

NOTICE_SCHEMA: Final = 1
EXCERPT_CHARS: Final = 200
"""The last customer message is kept and sent as at most this many characters."""
SIGNATURE_HEADER: Final = "X-Gateway-Signature"
TIMESTAMP_HEADER: Final = "X-Gateway-Timestamp"
LINK_FIELDS: Final = frozenset(
    {"conversation_id", "channel", "account_id", "contact_id", "assistant_id"}
)
"""The `{placeholders}` a `link_template` may use (values URL-quoted)."""

Reason = Literal["handoff", "echo_takeover", "escalate", "reminder"]
REASONS: Final[tuple[str, ...]] = Reason.__args__  # type: ignore[attr-defined]


class LastMessage(msgspec.Struct, frozen=True):
    """The contact's latest live message: up to `EXCERPT_CHARS` of its text (a placeholder
    like `[image]` for one without text), its provider time (unix s) and id."""

    text: str | None
    time: int | None
    message_id: str | None


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of `gw:notifications` (field `event`). Every key is always present."""

    schema: int = NOTICE_SCHEMA
    kind: Literal["escalation"] = "escalation"
    notification_id: str
    """Unique; the same on every delivery attempt and target, so a receiver can drop a
    repeat (delivery is at least once)."""
    reason: Reason
    conversation_id: str
    channel: str
    account_id: str
    assistant_id: str
    last_customer_message: LastMessage | None
    link: str | None
    created_at: int
    command_id: str | None = None
    """The handoff or escalate command that caused it."""
    note: str | None = None
    """An escalate command's `text`: why the assistant gave up."""
    idle_since: int | None = None
    """A reminder's: the last human activity (the pause, an echo, a human's command)."""


NOTICE_ENCODER: Final = msgspec.json.Encoder()
NOTICE_DECODER: Final = msgspec.json.Decoder(Notice)


def excerpt(text: str | None, kind: str | None) -> str:
    """What is kept of a customer's message: its text cut to `EXCERPT_CHARS`, else
    `[<type>]`."""
    if text:
        return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
    return f"[{kind or 'message'}]"


def link(template: str | None, notice_fields: Mapping[str, str]) -> str | None:
    """`template` with its placeholders filled in, each value URL-quoted."""
    if template is None:
        return None
    return template.format_map({k: quote(v, safe=":@.-_~") for k, v in notice_fields.items()})


# --- targets ------------------------------------------------------------------------------

Verdict = Literal["delivered", "retry", "failed"]


class TargetAnswer(NamedTuple):
    """A target's answer, classified: `retry_after_s` when it said how long to wait."""

    verdict: Verdict
    detail: str
    retry_after_s: float | None = None


class NoticeRequest(NamedTuple):
    """One POST: these exact body bytes (a signature covers them)."""

    url: str
    headers: Mapping[str, str]
    body: bytes


class NoticeTarget(Protocol):
    kind: str
    """The metric label: `webhook`, or the staff chat's channel."""
    label: str
    """For logs and dead letters: never a secret (no token, no query string)."""

    def request(self, notice: Notice, body: bytes, now: int) -> NoticeRequest: ...
    def classify(self, status: int, body: bytes) -> TargetAnswer: ...


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Gateway-Signature` value of `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: int, tolerance_s: int = 300
) -> bool:
    """A receiver's check: the signature over these exact bytes, constant-time, and a
    timestamp within `tolerance_s` of `now`."""
    stamp = headers.get(TIMESTAMP_HEADER, "")
    if not stamp.isdigit() or abs(int(stamp) - now) > tolerance_s:
        return False
    expected = sign(secret, int(stamp), body)
    return hmac.compare_digest(expected, headers.get(SIGNATURE_HEADER, ""))


class WebhookTargetSettings(msgspec.Struct, **SECTION_STRUCT):
    url: str
    secret: str


class SignedWebhook:
    """POST the notice's JSON, signed. 2xx: delivered; 408, 425, 429, 5xx: retry; any other
    answer is permanent (a wrong URL or secret does not heal by retrying)."""

    kind = "webhook"

    def __init__(self, settings: WebhookTargetSettings) -> None:
        self._url = settings.url
        self._secret = settings.secret
        parts = urlsplit(settings.url)
        port = f":{parts.port}" if parts.port else ""  # never the userinfo: it may hold a secret
        self.label = f"webhook {parts.scheme}://{parts.hostname}{port}{parts.path}"

    def request(self, notice: Notice, body: bytes, now: int) -> NoticeRequest:
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(now),
            SIGNATURE_HEADER: sign(self._secret, now, body),
        }
        return NoticeRequest(self._url, headers, body)

    def classify(self, status: int, body: bytes) -> TargetAnswer:
        if 200 <= status < 300:
            return TargetAnswer("delivered", f"HTTP {status}")
        verdict: Verdict = "retry" if status in (408, 425, 429) or status >= 500 else "failed"
        return TargetAnswer(verdict, f"HTTP {status}")


class StaffChat:
    """A message to the staff chat through the configured bot: the notice as readable text
    (`text`). Its label never holds the token, which is in the URL."""

    kind = "telegram"
    label = "staff chat"

    def __init__(self, settings: StaffChatSettings) -> None:
        self._settings = settings

    def request(self, notice: Notice, body: bytes, now: int) -> NoticeRequest:
        url, payload = send_message(self._settings, text(notice))
        return NoticeRequest(
            url, {"Content-Type": "application/json"}, msgspec.json.encode(payload)
        )

    def classify(self, status: int, body: bytes) -> TargetAnswer:
        return TargetAnswer(*staff_answer(status, body))


_HEADLINES: Final = {
    "handoff": "Handoff: the assistant handed this conversation to a person",
    "echo_takeover": "Takeover: a person answered from the business app",
    "escalate": "Escalation: the assistant asks for a person",
    "reminder": "Reminder: no human reply yet",
}


def text(notice: Notice) -> str:
    """The notice as a staff chat reads it: what happened, where, the customer's last words,
    the link."""
    lines = [
        _HEADLINES[notice.reason],
        f"Conversation: {notice.conversation_id}",
        f"Channel: {notice.channel}, account {notice.account_id}, assistant {notice.assistant_id}",
    ]
    if notice.note:
        lines.append(f"Note: {notice.note[:EXCERPT_CHARS]}")
    if notice.idle_since is not None:
        minutes = max(0, notice.created_at - notice.idle_since) // 60
        lines.append(f"No human activity for {minutes} min")
    last = notice.last_customer_message
    if last is not None and last.text is not None:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last.time)) if last.time else "?"
        lines.append(f"Last customer message ({when}): {last.text}")
    if notice.link:
        lines.append(notice.link)
    return "\n".join(lines)


# --- the section --------------------------------------------------------------------------


class NotificationSettings(msgspec.Struct, **SECTION_STRUCT):
    """The `notifications:` section: absent, nothing is notified (and nothing kept for it)."""

    telegram: StaffChatSettings | None = None
    """A staff chat: `sendMessage` through this bot (`bot_token`, `chat_id`)."""
    webhooks: list[WebhookTargetSettings] = msgspec.field(default_factory=list)
    link_template: str | None = None
    """e.g. `https://crm.example/c/{conversation_id}` (see `LINK_FIELDS`)."""
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    base_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    request_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    reminder_after_seconds: Annotated[int, msgspec.Meta(ge=0)] = 0
    """0: no reminders."""
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    """Notices delivered at once per process (each to all its targets)."""
    maxlen: Annotated[int, msgspec.Meta(ge=100)] = 100_000
    """Approximate cap of gw:notifications (XADD MAXLEN ~)."""

    def check(self) -> None:
        """ValueError naming the key of the first problem (never quoting a secret)."""
        if self.link_template is not None:
            _check_link(self.link_template)
        for i, hook in enumerate(self.webhooks):
            where = f"notifications.webhooks[{i}]"
            _check_url(hook.url, f"{where}.url")
            if not hook.secret:
                raise ValueError(f"{where}.secret: must not be empty")
        if self.telegram is not None:
            self.telegram.check("notifications.telegram")

    def secrets(self) -> list[Secret]:
        found = [
            Secret(f"notifications.webhooks[{i}].secret", hook.secret, True)
            for i, hook in enumerate(self.webhooks)
        ]
        if self.telegram is not None:
            found.append(Secret("notifications.telegram.bot_token", self.telegram.bot_token, False))
        return found


TARGET_KINDS: Final = (SignedWebhook.kind, StaffChat.kind)
"""Every target's `kind`: the label values of the delivery metrics."""


def targets(settings: NotificationSettings) -> list[NoticeTarget]:
    """The configured targets: the staff chat first, then the webhooks in config order."""
    found: list[NoticeTarget] = []
    if settings.telegram is not None:
        found.append(StaffChat(settings.telegram))
    found += [SignedWebhook(hook) for hook in settings.webhooks]
    return found


def _check_link(template: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"notifications.link_template: {exc}") from None
    unknown = sorted(names - LINK_FIELDS)
    if unknown:
        raise ValueError(
            f"notifications.link_template: unknown placeholder {{{unknown[0]}}}; use "
            + ", ".join(f"{{{n}}}" for n in sorted(LINK_FIELDS))
        )


def _check_url(url: str, where: str) -> None:
    """https, or http to a loopback address (a receiver on this machine, tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise ValueError(f"{where}: must be an https:// URL (http:// only to a loopback address)")


def _loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
