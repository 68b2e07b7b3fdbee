"""The one interface every channel package implements, and the registry of them.

    Channel                 what `router/` may ask of a channel (and nothing else)
      .parse                webhook bytes -> Parsed (common events); raises only ParseError
      .request              Command + Account -> HttpRequest (full URL, headers, JSON body);
                            raises only InvalidCommand; the token never leaves the adapter
      .control              a handoff/handback command -> the provider call it makes on this
                            channel (Messenger's handover protocol), or None
      .echo_identity        the dedup identity the parser gives the echo of a message the
                            gateway sent, so that echo is never published (or None)
      .classify             provider answer (status, body, headers) -> SendResult; never
                            raises
      .account_pace         spacing of the account's sends (its limiter)
      .recipient_pace       spacing of one recipient's sends (its limiter), and
      .paces_recipient      which command types take a slot of it
      .crosses_border       the cross-country rule, where the channel has one
      window, opt_out_ends_all, charges_inbound
                            the channel's conversation rules, as flags
      .human_window         how long after the contact's last message a command may still go
                            outside the window (Meta's HUMAN_AGENT tag)
      .webhook              the receiving side: its webhook path (with or without an
                            account key segment), its GET handshake, the headers it reads
      .receiver             its config section (or None) -> Receiver: the webhook checks
                            (`refuse` from the head, `verify` on the raw body, `handshake`)
      .foreign              for a body that failed `verify`: the channel it belongs to, if
                            its provider posts other channels' bodies to this path (Meta)
      .subscription_call    the operator's `gateway webhooks`: the provider call that sets,
      .subscription         shows or deletes an account's webhook subscription (or None),
                            and what its answer says (Subscription); never raises
      .handshake_query      the query of the provider's GET verification handshake, for
                            `gateway webhooks verify` (or None)
      .sync_call            the operator's `gateway accounts sync`: the provider call that
      .sync_answer          asks for the account owner's own app data (WhatsApp coexistence:
                            contacts, chat history), or None; what its answer says
      .media                a backend's media download (gateway/media.py): the first GET
      .media_found          (MediaCall), what a lookup's answer says to GET next, and
      .media_refused        what a failed download's answer means (MediaError)
    ChannelSettings         what its config section gives the gateway: checks, secrets,
                            accounts, account groups, api_base
    CHANNELS                name -> Channel; each package registers itself (`register`) when
                            `adapters` is imported

The router and the gateway look a channel up by the name in an account, a conversation id or
a webhook path, and never branch on the name itself: a new channel is a new package (and its
config section in `gateway.config`), and neither `router/` nor the rest of `gateway/` changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, Protocol, runtime_checkable

from adapters.account import Account, Secret
from adapters.media import MediaCall, MediaError, MediaRef, MediaSettings, download_refused
from adapters.schema import Command, Parsed, SendResult


class HttpRequest(NamedTuple):
    """One provider call: `POST url` with these headers and this JSON body (with `form`: the
    body's fields form-encoded, as Twilio's API takes them)."""

    url: str
    headers: Mapping[str, str]
    body: dict[str, Any]
    form: bool = False


Action = Literal["set", "show", "delete"]
"""What `gateway webhooks` does to an account's webhook subscription."""


class ProviderCall(NamedTuple):
    """A provider call of the operator's tools: `method url?params` with these headers, and a
    JSON body when one is given. The URL may hold a token (Telegram's): never log it."""

    method: Literal["GET", "POST", "DELETE"]
    url: str
    headers: Mapping[str, str]
    params: Mapping[str, str] = MappingProxyType({})
    body: dict[str, Any] | None = None


class Subscription(NamedTuple):
    """What the provider said of one account's webhook subscription (`Channel.subscription`)."""

    ok: bool
    """The call did what was asked: set, deleted, or (`show`) read."""
    detail: str
    """One line for the operator: what was done, or the provider's error (its description,
    never a token)."""
    subscribed: bool | None = None
    """`show`: the provider delivers this account's updates to this gateway (Telegram: the
    webhook URL is the gateway's; Meta: the app is subscribed to the WABA, Page or account);
    None when not known (the call failed, or `set`/`delete`)."""
    url: str | None = None
    """Where the provider delivers, when it says per account (Telegram); None for Meta, whose
    callback URL is the app's, not the account's."""
    fields: tuple[str, ...] = ()
    """The update kinds or fields subscribed (Telegram `allowed_updates`, Meta
    `subscribed_fields`), as the provider reports them."""
    pending: int | None = None
    """Updates waiting to be delivered (Telegram `pending_update_count`)."""
    last_error: str | None = None
    """The provider's last delivery error (Telegram `last_error_message`)."""
    last_error_at: int | None = None
    """When it happened, unix seconds (Telegram `last_error_date`)."""
    max_connections: int | None = None
    """Telegram `max_connections`."""


SyncKind = Literal["contacts", "history"]
"""What `gateway accounts sync` asks a provider for: the contacts of the owner's own app, or
its chat history."""
SYNC_KINDS: tuple[SyncKind, ...] = ("contacts", "history")
"""In the order they are asked: contacts first, so the history's chats arrive named."""
SyncOutcome = Literal["requested", "already_done", "window_passed", "failed"]


class SyncAnswer(NamedTuple):
    """What the provider said to one `sync_call` (`Channel.sync_answer`)."""

    outcome: SyncOutcome
    """`requested`: the sync will come as webhooks; `already_done`: asked before since the
    account was onboarded (the provider allows it once); `window_passed`: too long after the
    onboarding; `failed`: anything else (`detail` says what)."""
    detail: str
    """One line for the operator (the provider's error text, never a token)."""
    request_id: str | None = None
    """The provider's id of the accepted request."""
    code: int | None = None
    """The provider's error code, when it gave one."""


class Pace(NamedTuple):
    """A GCRA limiter's parameters: one send per `interval_us`, with a burst allowance of
    `tolerance_us` (0: no burst)."""

    interval_us: int
    tolerance_us: int = 0


class Webhook(NamedTuple):
    """Where and how a channel's provider delivers webhooks (POST `path`)."""

    path: str
    """`/webhooks/<name>`; with `keyed`, the part before the key segment."""
    keyed: bool = False
    """The path ends with one more segment naming the account (`/webhooks/telegram/{key}`),
    handed to `Receiver.refuse`/`verify` and to `Channel.parse` as `key`/`path_key`."""
    handshake: bool = False
    """GET `path` is the provider's subscription handshake (`Receiver.handshake`)."""
    headers: tuple[str, ...] = ()
    """The request headers `refuse` and `verify` read, lower-case; only these reach them."""
    ok: str = "OK"
    """The body of its 200 answer (Twilio's: an empty TwiML document). A body that is an XML
    document (`<?xml`) is sent as `text/xml`, any other as `text/plain`."""


QUERY = ":query"
"""A pseudo-header: a channel that lists it in `Webhook.headers` gets the request's raw query
string (as sent, percent-encoded, without the `?`) under this name, when there is one
(Twilio signs the URL it requested, query included)."""

Answer = tuple[int, str]
"""An HTTP status and its short plain-text body (no detail: that goes to logs)."""


class Receiver(Protocol):
    """A channel's webhook checks, bound to its config section once per process. Each
    compares secrets in constant time; `headers` holds the `Webhook.headers` present."""

    def refuse(self, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        """What the head alone refuses, before the body is read: 404 (channel not configured,
        unknown account), 401 (credential missing or wrong; counted as a signature failure).
        None: read the body."""
        ...

    def verify(self, key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the webhook is authentic, judged on the body's bytes as received (never
        re-serialised). Complete on its own: it does not rely on `refuse` having run. Raises
        `ParseError` (its `reason`) for a body that is authentic but must not be published
        (Meta: signed by an app that does not own every account it names): the gateway
        dead-letters it whole and answers 200."""
        ...

    def handshake(self, query: Mapping[str, str]) -> Answer:
        """The answer to GET `Webhook.path` with this query (channels with `handshake`)."""
        ...


class ChannelSettings(Protocol):
    """A channel's config section (a frozen msgspec struct in its package): what the gateway
    composes under the channel's name in `Settings`, and builds its accounts from."""

    @property
    def api_base(self) -> str:
        """The provider API's base URL (`Channel.request` gets it, trailing `/` removed)."""
        ...

    def check(self) -> None:
        """The rules a type cannot say; ValueError whose message starts with the key."""
        ...

    def secrets(self) -> list[Secret]:
        """Every credential in the section, for the check against demo and short secrets."""
        ...

    def accounts(self) -> list[Account]:
        """The section's accounts, in config order."""
        ...

    def groups(self) -> dict[str, tuple[str, ...]]:
        """A parent account's id → its accounts' ids (WhatsApp: WABA → numbers); {} if none."""
        ...


@runtime_checkable
class Channel(Protocol):
    """A channel as the router and the gateway see it. Implementations are stateless and
    shared."""

    name: str
    """The adapter's key in `CHANNELS`: its config section's name and its webhook's
    `/webhooks/<name>`; the channel's name in accounts, conversation ids, keys and metric
    labels too, unless it is a provider of another channel (`channel`)."""
    channel: str
    """The channel its accounts, events and conversation ids carry: `name`, but for a provider
    of another channel's numbers (Twilio: "whatsapp", CONTRACT §6.2)."""
    window: bool
    """Free-form messages only within 24 h of the contact's last message; outside it, only
    templates."""
    opt_out_ends_all: bool
    """A contact's opt-out refuses every command (true), or only marketing templates."""
    charges_inbound: bool
    """The provider counts the contact's messages against the account's throughput, so the
    inbound path takes a slot of the account's limiter for each."""
    statuses_name_command: bool
    """Its statuses carry the command they are about (WhatsApp's `biz_opaque_callback_data`),
    or there are none (Telegram); false (Twilio, Messenger, Instagram): the ledger keeps each
    sent message id's command_id and publish.lua fills it into the message's statuses."""
    redelivers: bool
    """The provider retries a webhook answered 5xx (Meta, Telegram), so while Redis is down
    the gateway answers 503; false (Twilio): it never does, so the gateway journals the
    webhook on disk and answers 200 (CONTRACT §6.1)."""
    webhook: Webhook
    """The route its webhooks come in by (unique among channels)."""

    def receiver(self, settings: Any) -> Receiver:
        """The webhook checks of this channel's config section (`ChannelSettings`), or of
        None when the section is absent (which then refuses everything, 404)."""
        ...

    def parse(self, body: bytes, path_key: str | None, received_at: int) -> Parsed:
        """One webhook body into events. `path_key`: the account named in the webhook's URL
        path, for channels that have one (None otherwise). Raises only `ParseError`; its
        subclass `ForeignBody` when the body is another channel's (or no channel's)."""
        ...

    def foreign(self, body: bytes) -> str | None:
        """The channel a body received on this channel's path belongs to when it is another's
        (Meta: one app may post every product's bodies to one callback URL), judged cheaply
        before its signature is known; None otherwise. Asked only when `verify` failed, so
        the other channel's secret may be tried."""
        ...

    def request(
        self,
        account: Account,
        api_base: str,
        command: Command,
        address: str,
        last_inbound: str | None,
        route: str | None,
    ) -> HttpRequest:
        """The provider call for `command` to `address`. `last_inbound`: the contact's last
        message (what typing/read refer to); `route`: the conversation's route as the last
        inbound message set it (`business_connection_id`). Raises only `InvalidCommand`."""
        ...

    def control(
        self, account: Account, api_base: str, command: Command, address: str
    ) -> HttpRequest | None:
        """The provider call a `handoff` or `handback` makes on this channel besides pausing or
        resuming the assistant (Messenger and Instagram with the handover protocol: pass the
        thread to the Page Inbox, take it back); None: the command calls nothing."""
        ...

    def classify(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> SendResult:
        """The provider's answer to a `request` or `control` (status, raw body, response
        headers), classified; never raises."""
        ...

    def echo_identity(self, message_id: str) -> str | None:
        """For a provider that echoes the business's own sends back as webhooks (Messenger,
        Instagram): the dedup identity `parse` gives the echo of the message sent with this
        id. The ledger marks it when the send succeeds, so the echo is taken for a redelivery:
        never published, and it does not pause the assistant. None: no such echoes."""
        ...

    def account_pace(self, account: Account, guard_ms: float) -> Pace:
        """The limiter of everything the account sends."""
        ...

    def recipient_pace(self, address: str, guard_ms: float) -> Pace:
        """The limiter of what the account sends to one recipient (or chat)."""
        ...

    def paces_recipient(self, command_type: str) -> bool:
        """Whether a command of this type takes a slot of the recipient's limiter."""
        ...

    def human_window(self, command: Command) -> int:
        """Seconds after the contact's last message within which `command` may still be sent
        once the 24-hour window is closed (Messenger and Instagram: 7 days for a human
        agent's message tagged `HUMAN_AGENT`, CONTRACT §6.3); 0: not at all."""
        ...

    def crosses_border(self, account: Account, address: str) -> bool | None:
        """None: the channel has no cross-country rule. Otherwise whether a business-initiated
        message from the account to `address` crosses a restricted border (known from the
        numbers alone; the provider's own blocks are learnt from its answers)."""
        ...

    def subscription_call(
        self, settings: Any, account: Account, action: Action, public_url: str, drop_pending: bool
    ) -> ProviderCall | None:
        """The provider call that sets, shows or deletes `account`'s webhook subscription
        (`settings`: this channel's config section; `public_url`: the gateway's public base
        URL, `server.public_url`, to which the channel's `webhook.path` is appended;
        `drop_pending`: `set` drops the updates waiting, where the provider keeps them). None:
        the provider has no such API for this channel (the README says where to set it).
        ValueError, naming the config key, when the config lacks what the call needs."""
        ...

    def subscription(
        self, settings: Any, account: Account, action: Action, public_url: str, status: int,
        body: bytes,
    ) -> Subscription:  # fmt: skip
        """The provider's answer (status, raw body) to `subscription_call`; never raises."""
        ...

    def handshake_query(self, settings: Any, challenge: str) -> dict[str, str] | None:
        """The query of the provider's GET verification handshake to this channel's webhook
        path, asking it to echo `challenge` (`gateway webhooks verify` sends it through the
        public URL); None: the channel has no handshake."""
        ...

    def sync_call(self, settings: Any, account: Account, kind: SyncKind) -> ProviderCall | None:
        """The provider call asking for the data of the account owner's own app (`kind`), sent
        by the provider as webhooks (WhatsApp coexistence: `smb_app_data`, each kind once per
        onboarding, within 24 h of it). None: the channel has no such data. ValueError,
        naming the config key, when this account has none (a number not in coexistence)."""
        ...

    def sync_answer(
        self, settings: Any, account: Account, kind: SyncKind, status: int, body: bytes
    ) -> SyncAnswer:
        """The provider's answer (status, raw body) to `sync_call`; never raises."""
        ...

    def media(
        self, account: Account, api_base: str, ref: MediaRef, settings: MediaSettings
    ) -> MediaCall:
        """The first GET of downloading `ref` with the account's credentials: a lookup
        (WhatsApp's media id, Telegram's getFile) or the file itself (a URL the event
        carried, checked to be one this account's credentials may go to). Raises only
        `MediaError` (`invalid`: not a reference this channel fetches)."""
        ...

    def media_found(self, account: Account, api_base: str, status: int, body: bytes) -> MediaCall:
        """The lookup's answer (status, raw body) → the download's GET; raises only
        `MediaError` (`not_found` for media the provider says is gone)."""
        ...

    def media_refused(self, status: int, body: bytes) -> MediaError:
        """What a download answered with a status other than 2xx means; never raises."""
        ...


NO_SYNC: Final = SyncAnswer("failed", "the provider has no app data to sync for this account")
"""`sync_answer` of a channel without `sync_call`."""


class ChannelDefaults:
    """The answer most channels give to the members only some need: a base class a channel
    may take, and override what it does differently. No other channel's bodies on its path
    (`foreign`), no provider call for handoff/handback (`control`), no echoes of its own sends
    (`echo_identity`), nothing outside the 24-hour window but templates (`human_window`), no
    webhook subscription API (`subscription_call`), no GET handshake (`handshake_query`), no
    app data to sync (`sync_call`) and no media downloads (`media`)."""

    def foreign(self, body: bytes) -> str | None:
        return None

    def control(
        self, account: Account, api_base: str, command: Command, address: str
    ) -> HttpRequest | None:
        return None

    def echo_identity(self, message_id: str) -> str | None:
        return None

    def human_window(self, command: Command) -> int:
        return 0

    def subscription_call(
        self, settings: Any, account: Account, action: Action, public_url: str, drop_pending: bool
    ) -> ProviderCall | None:
        return None

    def subscription(
        self, settings: Any, account: Account, action: Action, public_url: str, status: int,
        body: bytes,
    ) -> Subscription:  # fmt: skip
        return Subscription(False, "the provider has no webhook subscription API")

    def handshake_query(self, settings: Any, challenge: str) -> dict[str, str] | None:
        return None

    def sync_call(self, settings: Any, account: Account, kind: SyncKind) -> ProviderCall | None:
        return None

    def sync_answer(
        self, settings: Any, account: Account, kind: SyncKind, status: int, body: bytes
    ) -> SyncAnswer:
        return NO_SYNC

    def media(
        self, account: Account, api_base: str, ref: MediaRef, settings: MediaSettings
    ) -> MediaCall:
        raise MediaError("invalid", "this channel has no media downloads")

    def media_found(self, account: Account, api_base: str, status: int, body: bytes) -> MediaCall:
        raise MediaError("provider", "this channel has no media lookups")

    def media_refused(self, status: int, body: bytes) -> MediaError:
        return download_refused(status, "the media")


_REGISTRY: dict[str, Channel] = {}
CHANNELS: Mapping[str, Channel] = MappingProxyType(_REGISTRY)
"""Every registered channel, by name (read-only: channels join through `register`)."""


def adapter_of(account: Account) -> Channel:
    """The adapter that serves an account: its provider's, else its channel's."""
    return _REGISTRY[account.adapter_name]


def register(channel: Channel) -> Channel:
    """Add a channel to `CHANNELS` (once per name); returns it."""
    if channel.name in _REGISTRY:
        raise ValueError(f"channel {channel.name!r} is registered twice")
    if any(other.webhook.path == channel.webhook.path for other in _REGISTRY.values()):
        raise ValueError(f"webhook path {channel.webhook.path!r} is registered twice")
    _REGISTRY[channel.name] = channel
    return channel
