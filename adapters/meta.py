"""What Meta's three channels share on the way in: one app may post WhatsApp, Messenger and
Instagram bodies to one callback URL, and a body's `object` says whose it is (CONTRACT §6.1).

Each Meta channel's `parse` calls `check_object` with its own name, so a body on the wrong
path raises `ForeignBody` naming the right channel (or None: an object no channel handles);
`channel_of` is the cheap look at `object` that `Channel.foreign` makes when a body did not
verify with the path's own secret (it may be signed with the object's channel's).

Several Meta apps (`apps` in a section, `adapters.meta_apps`): each Page, Instagram account
and number belongs to one app (its `app`, else the section's `app_secret`, the default app).
`MetaReceiver.verify` finds the app whose secret signed the body; with more than one app it
then reads the ids the body names (entry ids, WhatsApp's `metadata.phone_number_id`, each
messaging item's sender and recipient: every id the parsers route by) and raises `WrongApp`
when one is a configured account of another app, so the gateway dead-letters the whole body
(`wrong_app`) and publishes none of it. A section that lists `apps` leaves another Meta
channel's bodies posted to its path to that channel's apps (`verify` is false for them, and
the gateway asks the object's channel, `Channel.foreign`); a section with only `app_secret`
still vouches for them, as before `apps` existed (gateway/config.py lets sections list
`apps` only all together, so that never vouches for an account of another app).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import msgspec

from adapters.channel import Answer
from adapters.meta_apps import MetaApp
from adapters.schema import ForeignBody, ParseError

OBJECTS: Final = {
    "whatsapp_business_account": "whatsapp",
    "page": "messenger",
    "instagram": "instagram",
}
"""Meta's `object` → the channel whose bodies carry it."""


class _Object(msgspec.Struct):
    object: str | None = None


_OBJECT = msgspec.json.Decoder(_Object)


def check_object(own: str, obj: str | None) -> None:
    """Raise `ForeignBody` unless a body with this `object` is `own`'s (a missing `object`
    is taken as `own`'s: the path says whose it is)."""
    if obj is None or OBJECTS.get(obj) == own:
        return
    channel = OBJECTS.get(obj)
    what = f"object {obj!r} is {channel}'s" if channel else f"object {obj!r} is no channel's"
    raise ForeignBody(channel, what[:200])


def channel_of(body: bytes) -> str | None:
    """The channel named by the body's `object`, or None (not JSON, no such object)."""
    try:
        obj = _OBJECT.decode(body).object
    except (msgspec.DecodeError, RecursionError):
        return None
    return OBJECTS.get(obj) if obj is not None else None


# --- Meta's webhook signature (PLATFORM.md §1.2): HMAC-SHA256 of the raw body, app secret key.


_PREFIX = "sha256="

_KEYED: dict[bytes, hmac.HMAC] = {}
"""App secret → an HMAC-SHA256 that has absorbed it, never updated itself."""


def _keyed(app_secret: bytes) -> hmac.HMAC:
    """The app secret's HMAC with the key already hashed in: each body is hashed on a
    `.copy()` of it instead of keying a new HMAC (0.2 µs of 2 µs for a 1 KiB body)."""
    keyed = _KEYED.get(app_secret)
    if keyed is None:
        keyed = hmac.new(app_secret, digestmod=hashlib.sha256)
        if len(_KEYED) < 16:  # one secret per gateway; a few more in tests
            _KEYED[app_secret] = keyed
    return keyed


def _hexdigest(body: bytes, app_secret: bytes) -> str:
    mac = _keyed(app_secret).copy()
    mac.update(body)
    return mac.hexdigest()


def verify_signature(body: bytes, header: str | None, app_secret: bytes) -> bool:
    """True when `X-Hub-Signature-256` is `sha256=<hex>` of exactly these bytes.

    Checked on the bytes as received, before any decoding: Meta signs the body with non-ASCII
    escaped as \\uXXXX, and any re-serialisation would change it. Constant-time compare. A
    header that is not even UTF-8 is simply a wrong signature.
    """
    if not header or not header.startswith(_PREFIX):
        return False
    given = header[len(_PREFIX) :].strip().lower().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(_hexdigest(body, app_secret).encode(), given)


def sign(body: bytes, app_secret: bytes) -> str:
    """The header value Meta would send for `body` (for tests, benchmarks and replays)."""
    return _PREFIX + _hexdigest(body, app_secret)


SIGNATURE_HEADER: Final = "x-hub-signature-256"


class WrongApp(ParseError):
    """A body signed by one of the section's apps that names an account of another: kept
    whole in the dead letters, none of it published."""

    reason = "wrong_app"


class MetaSection(Protocol):
    """What `MetaReceiver` reads of a Meta channel's config section."""

    verify_token: str

    @property
    def listed_apps(self) -> bool:
        """The section lists `apps` (not only `app_secret`)."""
        ...

    def meta_apps(self) -> tuple[MetaApp, ...]:
        """Its apps, the default (`app_secret`) first."""
        ...

    def owners(self) -> dict[str, frozenset[str]]:
        """Account id (and, for WhatsApp, WABA id) → the names of the apps that own it."""
        ...


class MetaReceiver:
    """A Meta channel's webhook checks (WhatsApp, Messenger, Instagram: the same mechanism,
    PLATFORM §1.2, PLATFORM-MORE §1.1): the GET handshake with the section's verify token,
    and `X-Hub-Signature-256`, the HMAC-SHA256 of the raw body with the secret of one of its
    apps, which must own every account the body names (see the module docstring)."""

    __slots__ = ("_apps", "_name", "_not_configured", "_owners", "_secret", "_verify_token")

    def __init__(self, name: str, section: MetaSection | None) -> None:
        """`section` None: the channel's section is absent (everything is 404)."""
        apps = section.meta_apps() if section is not None else ()
        legacy = section is not None and not section.listed_apps and len(apps) == 1
        self._name = name
        self._secret = apps[0].app_secret.encode() if legacy else None
        """The one secret of a section without `apps`: today's check, and nothing more."""
        self._apps = tuple((app.name, app.app_secret.encode()) for app in apps)
        self._owners = section.owners() if section is not None else {}
        self._verify_token = section.verify_token.encode() if section is not None else b""
        self._not_configured: Answer = (404, f"{name} is not configured")

    def refuse(self, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        """404 when the channel is not configured; 401 when the signature header is missing
        or not `sha256=...` (`verify` would refuse it too, but only after reading the body)."""
        if not self._apps:
            return self._not_configured
        signature = headers.get(SIGNATURE_HEADER)
        if not signature or not signature.startswith("sha256="):
            return _BAD_SIGNATURE
        return None

    def verify(self, key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        """The HMAC-SHA256 of the raw body with an app's secret (constant-time). With apps
        listed: false for another Meta channel's body (its own apps judge it), and
        `WrongApp` when the signing app does not own every account the body names."""
        secret = self._secret
        if secret is not None:
            return verify_signature(body, headers.get(SIGNATURE_HEADER), secret)
        signer = self.signer(headers.get(SIGNATURE_HEADER), body)
        if signer is None:
            return False
        named = named_ids(body)
        if named is None:  # not an envelope: the parser dead-letters it whole
            return True
        obj, ids = named
        if isinstance(obj, str) and OBJECTS.get(obj, self._name) != self._name:
            return False
        wrong = sorted(i for i in ids if signer not in self._owners.get(i, (signer,)))
        if wrong:
            raise WrongApp(self._wrong(signer, wrong))
        return True

    def signer(self, header: str | None, body: bytes) -> str | None:
        """The name of the app whose secret signed `body`, or None."""
        for name, secret in self._apps:
            if verify_signature(body, header, secret):
                return name
        return None

    def _wrong(self, signer: str, wrong: Sequence[str]) -> str:
        owned = ", ".join(f"{i} (app {'/'.join(sorted(self._owners[i]))})" for i in wrong[:10])
        more = f" and {len(wrong) - 10} more" if len(wrong) > 10 else ""
        return f"signed by app {signer!r}, but names {self._name} accounts of another app: " + (
            owned + more
        )

    def handshake(self, query: Mapping[str, str]) -> Answer:
        """Echo `hub.challenge` for `hub.mode=subscribe` and our verify token; else 403."""
        if not self._apps:
            return self._not_configured
        token = query.get("hub.verify_token", "")
        if query.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            token.encode(), self._verify_token
        ):
            return 403, "verification failed"
        return 200, query.get("hub.challenge", "")


# --- The ids a body names, read leniently: every id the parsers route by, and no more strictly
# than they read it (a part this cannot read, the parser cannot publish either).


class _Party(msgspec.Struct):
    id: Any = None


class _Item(msgspec.Struct):
    sender: _Party | None = None
    recipient: _Party | None = None


class _Metadata(msgspec.Struct):
    phone_number_id: Any = None


class _Value(msgspec.Struct):
    metadata: _Metadata | None = None


class _Change(msgspec.Struct):
    value: _Value | None = None


class _Entry(msgspec.Struct):
    id: Any = None
    changes: list[msgspec.Raw] = []
    messaging: list[msgspec.Raw] = []
    standby: list[msgspec.Raw] = []


class _Named(msgspec.Struct):
    object: Any = None
    entry: list[msgspec.Raw] = []


_NAMED = msgspec.json.Decoder(_Named)
_ENTRY = msgspec.json.Decoder(_Entry)
_CHANGE = msgspec.json.Decoder(_Change)
_ITEM = msgspec.json.Decoder(_Item)
_UNREADABLE = (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError)


def named_ids(body: bytes) -> tuple[Any, set[str]] | None:
    """The body's `object` and every account id it names (entry ids, numbers' ids, messaging
    items' senders and recipients, contacts' ids among them); None: not an envelope at all.
    A part that does not decode names nothing: the parser dead-letters it."""
    try:
        named = _NAMED.decode(body)
    except _UNREADABLE:
        return None
    ids: set[str] = set()
    for raw in named.entry:
        entry = _decoded(_ENTRY, raw)
        if entry is not None:
            _add(ids, entry.id)
            ids.update(_change_ids(entry.changes))
            ids.update(_item_ids([*entry.messaging, *entry.standby]))
    return named.object, ids


def _decoded(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw) -> Any:
    try:
        return decoder.decode(raw)
    except _UNREADABLE:
        return None


def _change_ids(changes: Iterable[msgspec.Raw]) -> set[str]:
    ids: set[str] = set()
    for raw in changes:
        change: _Change | None = _decoded(_CHANGE, raw)
        if change is not None and change.value is not None and change.value.metadata is not None:
            _add(ids, change.value.metadata.phone_number_id)
    return ids


def _item_ids(items: Iterable[msgspec.Raw]) -> set[str]:
    ids: set[str] = set()
    for raw in items:
        item: _Item | None = _decoded(_ITEM, raw)
        if item is not None:
            for party in (item.sender, item.recipient):
                if party is not None:
                    _add(ids, party.id)
    return ids


def _add(ids: set[str], value: Any) -> None:
    if isinstance(value, str | int) and not isinstance(value, bool):
        ids.add(str(value))


_BAD_SIGNATURE: Final = (401, "bad signature")
