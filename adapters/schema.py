"""The common event schema (CONTRACT.md §2.1), shared by every channel adapter.

Adapters turn provider bytes into these structs; the router adds routing facts (the
assistant, the dedup key) and encodes each one exactly once into a stream entry. Every
key the contract lists is always present (null when absent): backends can index without
`.get`. Keys beyond the contract (`user_id`, `subtype`, `referral`, ...) are extensions.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from adapters.rich import ContactCard, ListMenu

SCHEMA_VERSION = 1

Channel = Literal["whatsapp", "telegram", "messenger", "instagram"]
Kind = Literal["message", "echo", "history", "status", "delivery", "contacts", "account", "member"]
MessageType = Literal[
    "text",
    "image",
    "audio",
    "voice",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "reaction",
    "order",
    "system",
    "unsupported",
]
MESSAGE_TYPES: frozenset[str] = frozenset(MessageType.__args__)  # type: ignore[attr-defined]

STATUS_RANK: dict[str, int] = {"sent": 1, "delivered": 2, "read": 3, "played": 4, "failed": 9}
"""Statuses only move forward (PLATFORM §3); `failed` is final."""


class Reply(msgspec.Struct, frozen=True):
    id: str
    title: str | None = None


class Media(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str | None
    """The provider's media id (WhatsApp media id, Telegram file_id); null where the
    provider gives only a URL (Messenger, Instagram)."""
    mime_type: str | None
    filename: str | None
    url: str | None = None
    """CONTRACT §6.2: the provider's URL of the media (Messenger, Instagram: short-lived CDN
    URLs). Present only where the provider gives one, so WhatsApp and Telegram media keep
    exactly their three keys."""


class Location(msgspec.Struct, frozen=True):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class ProviderError(msgspec.Struct, frozen=True):
    code: int
    title: str


class SharedContact(msgspec.Struct, frozen=True):
    """One entry of a `contacts` message (extension: the contract keeps only the name)."""

    name: str | None
    phones: list[str]
    wa_ids: list[str]


class Event(msgspec.Struct, kw_only=True, tag_field="kind"):
    """Keys every event carries. `event_id` and `assistant_id` are set by the router."""

    schema: int = SCHEMA_VERSION
    event_id: str = ""
    channel: Channel
    account_id: str
    contact_id: str | None
    conversation_id: str | None = None
    assistant_id: str = ""
    timestamp: int
    provider: str | None = None
    """CONTRACT §6.2: "twilio" on every event of a WhatsApp number reached through Twilio;
    null for the others."""
    account_active: bool = True
    """Extension: false while the number or bot is disabled in config (its webhooks are
    still verified and kept; its commands are rejected with `account_inactive`)."""

    def __post_init__(self) -> None:
        if self.conversation_id is None and self.contact_id is not None:
            self.conversation_id = f"{self.channel}:{self.account_id}:{self.contact_id}"


class _MessageFields(Event, kw_only=True):
    message_id: str
    type: MessageType
    text: str | None = None
    reply: Reply | None = None
    media: Media | None = None
    location: Location | None = None
    reply_to: str | None = None
    contact_name: str | None = None
    edited: bool = False
    errors: list[ProviderError] = msgspec.field(default_factory=list)
    # Extensions beyond CONTRACT §2.1.
    user_id: str | None = None
    """WhatsApp business-scoped user id (BSUID) when the provider sent one."""
    subtype: str | None = None
    """Provider detail: interactive kind, system kind, unsupported kind, Telegram update key."""
    original_message_id: str | None = None
    """For an edit or revoke: the message it changes."""
    referral: dict[str, Any] | None = None
    """Click-to-WhatsApp ad referral, as the provider sent it."""
    data: str | None = None
    """Opaque payload: WhatsApp Flow `response_json`, template button payload."""
    contacts: list[SharedContact] | None = None
    order: dict[str, Any] | None = None
    chat_type: str | None = None
    """Telegram chat type (`private`, `group`, `supergroup`, `channel`)."""
    thread_id: str | None = None
    """Telegram forum topic (`message_thread_id`)."""
    attachments: list[Media] | None = None
    """Messenger and Instagram: every attachment of a message that has more than one (the
    first is also `media`); null otherwise."""
    business_connection_id: str | None = None
    """Telegram: the business connection a `business_message` came through. Commands to the
    conversation are then sent through it, on behalf of the business account, until the
    contact next writes to the bot directly."""
    command: str | None = None
    """Telegram: the bot command the text (or caption) starts with, without the slash and
    without `@botname` (`/start@AcmeBot abc` → "start"); null when it starts with none."""
    args: str | None = None
    """Telegram: with `command`, the rest of the text after it, stripped ("" when nothing
    follows); for `/start <payload>` the deep-link payload. Null without `command`."""
    media_group_id: str | None = None
    """Telegram: the album this photo or video belongs to (every item of an album arrives
    as its own event with the same id)."""
    links: list[str] | None = None
    """Telegram: the URLs of the text's (or caption's) `url` entities (as written) and
    `text_link` entities (their target), first appearance order, without repeats; null when
    there are none."""


class MessageEvent(_MessageFields, kw_only=True, tag="message"):
    """A contact wrote (live). Opens the 24-hour window."""

    ai_paused: bool = False


class EchoEvent(_MessageFields, kw_only=True, tag="echo"):
    """The business wrote from the WhatsApp Business app (coexistence)."""


class HistoryEvent(_MessageFields, kw_only=True, tag="history"):
    """A synced past message (coexistence history sync)."""

    from_me: bool = False
    history_status: str | None = None
    phase: int | None = None
    chunk_order: int | None = None


class StatusEvent(Event, kw_only=True, tag="status"):
    message_id: str | None
    """The outbound message; null for a Messenger `read`, which names none (`watermark`)."""
    status: str
    errors: list[ProviderError] = msgspec.field(default_factory=list)
    command_id: str | None = None
    pricing: dict[str, Any] | None = None
    recipient_type: str | None = None
    watermark: int | None = None
    """Messenger `read` (CONTRACT §6.2): every message sent before this time (unix ms) was
    read; null on other statuses."""
    # Extensions (issue #17): what the provider said about a failure, for people and for
    # the provider's support; null where unknown (every status but a failed one).
    provider_title: str | None = None
    """The first error's title (WhatsApp `errors[].title`, else its `message`; Twilio's
    `ChannelStatusMessage`)."""
    provider_detail: str | None = None
    """The first error's longer explanation (WhatsApp `errors[].error_data.details`)."""
    fbtrace_id: str | None = None
    """Meta's trace id of the failure, for Meta support (statuses carry none today)."""
    description: str | None = None
    """Telegram's `description` (Telegram has no statuses: always null here)."""


class ContactsEvent(Event, kw_only=True, tag="contacts"):
    contact_name: str | None
    action: str


class AccountEvent(Event, kw_only=True, tag="account"):
    event: str
    detail: dict[str, Any] = msgspec.field(default_factory=dict)
    connected: bool | None = None


class MemberEvent(Event, kw_only=True, tag="member"):
    status: str
    chat_type: str | None = None


class DeliveryEvent(Event, kw_only=True, tag="delivery"):
    command_id: str
    outcome: Literal["sent", "rejected", "failed"]
    reason: str | None = None
    provider_code: int | None = None
    message_id: str | None = None
    duplicate: bool = False
    detail: str | None = None
    """Extension: why a `failed` command failed, in words (the provider's error text, a
    network error or a timeout; never a token)."""
    # Extensions (issue #17): the provider's own words about a failed send, kept apart so a
    # person can quote them to the provider's support; null where the provider gave none.
    provider_title: str | None = None
    """WhatsApp and Meta: Graph's `error.message`; Twilio: its error `message`."""
    provider_detail: str | None = None
    """WhatsApp: Graph's `error.error_data.details`."""
    fbtrace_id: str | None = None
    """WhatsApp and Meta: Graph's `error.fbtrace_id`, what Meta support asks for."""
    description: str | None = None
    """Telegram: the Bot API's `description`."""


AnyEvent = (
    MessageEvent
    | EchoEvent
    | HistoryEvent
    | StatusEvent
    | ContactsEvent
    | AccountEvent
    | MemberEvent
    | DeliveryEvent
)

ENCODER = msgspec.json.Encoder()
"""Encodes events once, straight to bytes (UTF-8, no re-escaping)."""

EVENT_DECODER: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)
"""For consumers and tests: decodes a stream entry back into its typed event."""


class ParseError(Exception):
    """The only exception a parser raises: the bytes are not a payload it understands."""

    reason = "malformed_body"
    """The dead letter's reason."""


class ForeignBody(ParseError):
    """A body that is another channel's (CONTRACT §6.1: one Meta app may post WhatsApp,
    Messenger and Instagram bodies to one callback URL): parse it as `channel`'s. `channel`
    is None when the body's `object` is no channel's: then it is an unhandled object."""

    reason = "unhandled_object"

    def __init__(self, channel: str | None, what: str) -> None:
        super().__init__(what)
        self.channel = channel


class Routed(msgspec.Struct):
    """A parsed event plus what the router needs to publish it exactly once.

    `dedup` is the provider identity of the event, unique within its channel and account
    (None: no redelivery identity, always published); `rank` orders statuses of one message
    (`dedup` is then the message id, and a status is published only if it outranks every
    earlier one); `live` marks a message the contact just wrote: its provider time opens the
    WhatsApp 24-hour window, it clears an opt-out, and it carries the AI-pause flag.
    """

    event: AnyEvent
    dedup: str | None
    rank: int = 0
    live: bool = False
    waba: str | None = None
    renamed_to: str | None = None
    """Set on a WhatsApp `user_changed_number` system message: the contact's new wa_id. The
    router keeps the conversation: later messages from the new number carry the old
    `conversation_id`, and commands for it are sent to the new number."""
    """Set on WhatsApp `account_update`: the router publishes one copy per configured number
    of this WABA, each with that number as `account_id`."""
    authored: bool = True
    """False for a live event the contact did not write itself (a Telegram chat boost, a
    deleted business message, the business owner's own message in a business chat): it
    carries the AI-pause flag like any live message, but leaves the conversation alone (no
    window, no latest message, no business route) and does not clear an opt-out, which
    only the contact's own action may end (CONTRACT §3). On a `member` event, `live` with
    `authored` marks the contact unblocking the bot: that clears a Telegram opt-out."""
    alive: bool = False
    """A sign of life of the business owner's own app on the account (a WhatsApp coexistence
    echo or contact sync, or the onboarding itself): the router records its time in the
    account's state (`seen`), from which it warns before the provider cuts an idle app off
    (`Account.app_idle`)."""
    verdict: Verdict | None = None
    """On a failed `status` event: its error classified by the adapter's own table, the way
    `classify` classifies the same code in a provider's answer (issue #17). The router
    leaves the same mark a synchronous answer would (an opt-out, a hold, a closed window, a
    country block, a halted account; `EFFECT_VERDICTS`), atomically with publishing the
    status; None: nothing to record."""


class BadItem(msgspec.Struct):
    """One item of a batch that could not be understood: it goes to the dead-letter stream."""

    reason: str
    raw: bytes
    detail: str


class Parsed(msgspec.Struct):
    """What a parser returns for one webhook body."""

    events: list[Routed] = msgspec.field(default_factory=list)
    bad: list[BadItem] = msgspec.field(default_factory=list)


# --- Outbound: commands from assistant backends (CONTRACT §2.2) and send results. ---

CommandType = Literal[
    "text",
    "template",
    "image",
    "audio",
    "video",
    "document",
    "location",
    "interactive",
    "reaction",
    "typing",
    "read",
    "handoff",
    "handback",
    "escalate",
    # Extensions (issue #17, adapters/rich.py): sent where the platform has them.
    "list",
    "location_request",
    "contacts",
    "sticker",
]
COMMAND_TYPES: frozenset[str] = frozenset(CommandType.__args__)  # type: ignore[attr-defined]
CONTROL_TYPES: frozenset[str] = frozenset({"handoff", "handback", "escalate"})
"""Commands that change gateway state and send nothing to the contact. `escalate` (an
extension: the assistant gives up and asks for a person, `text` saying why) pauses nothing:
it notifies the staff (`notifications:`, router/notifications.py)."""
FREE_FORM_EXEMPT: frozenset[str] = frozenset({"template"})
"""WhatsApp: the only type allowed outside the 24-hour window."""


class Template(msgspec.Struct, frozen=True):
    """WhatsApp's template (`name`, `language`, `components`), or Twilio's Content API template
    (`content_sid` "HX...", `variables`, CONTRACT §6.3); each channel checks the keys it needs."""

    name: str = ""
    language: str = ""
    components: list[dict[str, Any]] = msgspec.field(default_factory=list)
    category: str | None = None
    content_sid: str | None = None
    variables: dict[str, str] | None = None


class MediaRef(msgspec.Struct, frozen=True):
    url: str | None = None
    id: str | None = None
    filename: str | None = None
    voice: bool = False
    """Extension: an `audio` command with `voice: true` is a voice note (Telegram sendVoice)."""


class ButtonSpec(msgspec.Struct, frozen=True):
    """An `interactive` button: a reply/callback button (`id`), or, Telegram only, a link
    button (`url` instead of `id`: http, https or tg)."""

    id: str = ""
    title: str = ""
    url: str | None = None


class Keyboard(msgspec.Struct, frozen=True, kw_only=True):
    """Extension, Telegram only: a reply keyboard shown instead of the contact's keyboard
    (`buttons`: rows of button texts; a tap sends that text), or `remove: true` to take it
    away again. It rides on a message (text, media, location)."""

    buttons: list[list[str]] | None = None
    one_time: bool = False
    """Hide it once a button was tapped."""
    resize: bool = False
    """Fit its height to the buttons."""
    remove: bool = False


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of `gw:outbox`. Unknown keys are ignored, so backends may add their own."""

    schema: int = SCHEMA_VERSION
    command_id: str
    conversation_id: str
    type: CommandType
    author: Literal["assistant", "human"] = "assistant"
    text: str | None = None
    template: Template | None = None
    media: MediaRef | None = None
    location: Location | None = None
    buttons: list[ButtonSpec] | None = None
    reply_to: str | None = None
    tag: str | None = None
    """CONTRACT §6.3: `HUMAN_AGENT` lets a human agent's message (`author: human`) go to a
    Messenger or Instagram contact up to 7 days after their last message."""
    keyboard: Keyboard | None = None
    """Extension, Telegram only: a reply keyboard, or its removal (`Keyboard`)."""
    thread_id: str | None = None
    """Extension, Telegram only: the forum topic to post in (an event's `thread_id`)."""
    menu: ListMenu | None = None
    """Extension: a `list` command's button and sections of rows (`adapters.rich`)."""
    contacts: list[ContactCard] | None = None
    """Extension: a `contacts` command's cards, Graph's contact objects (`adapters.rich`)."""


COMMAND_DECODER: msgspec.json.Decoder[Command] = msgspec.json.Decoder(Command)


class InvalidCommand(Exception):
    """The command cannot become a provider request (missing text, too many buttons, ...)."""


def telegram_only(command: Command) -> str | None:
    """Why a channel without Telegram's keyboards and topics must refuse `command` (its
    `keyboard`, `thread_id`, or link buttons mixed with reply buttons), or None: such fields
    are never dropped. Link buttons alone are a call-to-action message, which each channel
    sends or refuses itself (`adapters.rich`)."""
    if command.keyboard is not None:
        return "keyboard (a reply keyboard) is Telegram only"
    if command.thread_id is not None:
        return "thread_id (a forum topic) is Telegram only"
    links = [b.url is not None for b in command.buttons or ()]
    if any(links) and not all(links):
        return (
            "link buttons (url) beside reply buttons are Telegram only; elsewhere send the "
            "link buttons alone, as an interactive command of their own"
        )
    return None


class ProviderRequest(msgspec.Struct, frozen=True):
    """What to send: `POST {api_base}{path}` with this JSON body."""

    path: str
    body: dict[str, Any]


Verdict = Literal[
    "sent",  # accepted by the provider
    "retry",  # temporary: throughput, server, network; back off and try again
    "retry_recipient",  # temporary for this recipient only (WhatsApp 131056 pair rate)
    "retry_account",  # temporary for the whole account (Meta's Page/app rate limits): hold it
    "failed",  # permanent for this message (131047, 131026, 400 ...)
    "opted_out",  # the contact refuses (131050 marketing opt-out, Telegram 403)
    "country_blocked",  # WhatsApp 130497: this (number, country) pair is blocked
    "halt",  # credentials or account (0, 190, 368, 131031, Telegram 401)
    # Permanent for this message, and they leave a mark on the contact (issue #17):
    "held",  # marketing held back for a while (WhatsApp 131049, Twilio 63049)
    "undeliverable",  # the contact cannot be reached for now (WhatsApp 131026)
    "window_closed",  # the provider says the 24-hour window is closed (WhatsApp 131047)
]
EFFECT_VERDICTS: frozenset[str] = frozenset(
    {"opted_out", "country_blocked", "halt", "held", "undeliverable", "window_closed"}
)
"""Verdicts that leave state behind (an opt-out, a block, a hold, a closed window, a halted
account), whether they come in a provider's answer or in a failed status webhook."""


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """The provider's answer, classified by exactly one function per adapter."""

    verdict: Verdict
    provider_code: int | None = None
    message_id: str | None = None
    retry_after_s: float | None = None
    """Provider-given wait (Telegram `retry_after`, Meta's `estimated_time_to_regain_access`),
    if any."""
    detail: str | None = None
    """The provider's error text, for logs; never contains tokens."""
    migrate_to_chat_id: str | None = None
    """Telegram: the group became a supergroup with this id."""
    provider_title: str | None = None
    """The provider's error title or message (Graph `error.message`, Twilio `message`)."""
    provider_detail: str | None = None
    """The provider's longer explanation (Graph `error.error_data.details`)."""
    fbtrace_id: str | None = None
    """Graph's `error.fbtrace_id`."""
    description: str | None = None
    """Telegram's `description`."""
