"""The `messenger:` and `instagram:` sections of config.yaml (CONTRACT §6.4): each Meta app's
secret and verify token, the Send API's base URL, and the Pages or Instagram professional
accounts; the checks name the key they refuse."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Final

import msgspec

from adapters.account import SECTION_STRUCT, Account, Secret, check_assistant
from adapters.meta_apps import MetaApp, app_named, check_apps, section_apps, token_proof

_DIGITS: Final = re.compile(r"[0-9]{1,32}")
MESSENGER_MPS: Final = 40
"""Default sends per second of a Page. Meta allows 300 Send API calls/s per Page for text
and 10/s for audio and video (PLATFORM-MORE §4.4); 40 keeps a Page well inside both the text
limit and, for bursts of media, what Meta's business-use-case throttling tolerates, while
one conversation still gets an answer at once. Raise `mps` for a busy Page."""
INSTAGRAM_MPS: Final = 40
"""Default sends per second of an Instagram account: the Instagram overview says 100 calls/s
(the rate-limit page 300; PLATFORM-MORE §4.4, UNCERTAIN), so the same 40 as a Page."""
_MAX_MPS: Final = 300
PAGE_INBOX_APP_ID: Final = "263902037430900"
"""The Page Inbox's app id in the handover protocol, where a human answers in Meta Business
Suite (PLATFORM-MORE §1.2; Meta prints it with 14 digits on one page: UNCERTAIN, so it is a
setting, `handover_app_id`)."""


class MessengerPage(msgspec.Struct, **SECTION_STRUCT):
    page_id: str
    assistant: str
    access_token: str = ""
    enabled: bool = True
    mps: Annotated[int, msgspec.Meta(ge=1, le=_MAX_MPS)] = MESSENGER_MPS
    handover: bool = False
    """The Page uses Meta's handover protocol (Conversation Routing): `handoff` passes the
    thread to `handover_app_id` (the Page Inbox) and `handback` takes it back (CONTRACT §6.3)."""
    handover_app_id: str = PAGE_INBOX_APP_ID
    app: str | None = None
    """The Meta app this Page's webhooks come from and its token belongs to (`apps`); None:
    the default app (`app_secret`), or the only one."""


class InstagramAccount(msgspec.Struct, **SECTION_STRUCT):
    account_id: str
    assistant: str
    access_token: str = ""
    enabled: bool = True
    mps: Annotated[int, msgspec.Meta(ge=1, le=_MAX_MPS)] = INSTAGRAM_MPS
    handover: bool = False
    """As for a Page (Instagram accounts linked to a Page can use Conversation Routing)."""
    handover_app_id: str = PAGE_INBOX_APP_ID
    app: str | None = None
    """As for a Page."""


_Entry = MessengerPage | InstagramAccount


def _entry_id(entry: _Entry) -> str:
    return entry.page_id if isinstance(entry, MessengerPage) else entry.account_id


def _check(section: str, key: str, settings: MessengerSettings | InstagramSettings,
           entries: list[_Entry], id_key: str, id_is: str) -> None:  # fmt: skip
    """The checks both sections make, naming the key of the first problem: the app's
    secrets, then each Page or account (`id_key` must be `id_is`)."""
    check_apps(section, settings.app_secret, settings.apps)
    if not settings.verify_token:
        raise ValueError(f"{section}.verify_token: required")
    if settings.app_id is not None and not _DIGITS.fullmatch(settings.app_id):
        raise ValueError(f"{section}.app_id: must be the numeric id of the app")
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where, entry_id = f"{section}.{key}[{i}]", _entry_id(entry)
        if not _DIGITS.fullmatch(entry_id):
            raise ValueError(f"{where}.{id_key}: must be {id_is}")
        check_assistant(entry.assistant, f"{where}.assistant")
        if not _DIGITS.fullmatch(entry.handover_app_id):
            raise ValueError(f"{where}.handover_app_id: must be a numeric app id")
        app_named(settings.meta_apps(), entry.app, f"{where}.app")
        if entry_id in seen:
            raise ValueError(f"{where}.{id_key}: {entry_id} is listed twice")
        seen.add(entry_id)


def _secrets(section: str, key: str, settings: MessengerSettings | InstagramSettings,
             entries: list[_Entry]) -> list[Secret]:  # fmt: skip
    found = [Secret(f"{section}.app_secret", settings.app_secret, True)]
    found = found if settings.app_secret else []
    found.append(Secret(f"{section}.verify_token", settings.verify_token, True))
    for i, app in enumerate(settings.apps):
        found.append(Secret(f"{section}.apps[{i}].app_secret", app.app_secret, True))
    for i, entry in enumerate(entries):
        found.append(Secret(f"{section}.{key}[{i}].access_token", entry.access_token, False))
    return found


def _accounts(channel: str, settings: MessengerSettings | InstagramSettings,
              entries: list[_Entry]) -> list[Account]:  # fmt: skip
    """`Account.mode` holds the app a `handoff` passes threads to (None: no handover)."""
    apps = settings.meta_apps()
    return [
        Account(
            channel, _entry_id(e), e.assistant, e.access_token, e.enabled, float(e.mps),
            mode=e.handover_app_id if e.handover else None,
            token_proof=token_proof(app_named(apps, e.app, "app"), e.access_token),
        )
        for e in entries
    ]  # fmt: skip


class _Apps:
    """What both sections answer about their Meta apps (adapters/meta_apps.py)."""

    app_secret: str
    app_id: str | None
    appsecret_proof: bool
    apps: list[MetaApp]
    _ENTRIES: ClassVar[str]
    """The field that lists the section's Pages or accounts."""

    def _entries(self) -> list[_Entry]:
        entries: list[_Entry] = list(getattr(self, self._ENTRIES))
        return entries

    @property
    def listed_apps(self) -> bool:
        return bool(self.apps)

    def meta_apps(self) -> tuple[MetaApp, ...]:
        """The default app (`app_secret`) first, then `apps`."""
        return section_apps(self.app_secret, self.app_id, self.appsecret_proof, self.apps)

    def app_of(self, account_id: str) -> MetaApp:
        """The app a configured Page or account belongs to (the checks made sure it has one)."""
        entry = next(e for e in self._entries() if _entry_id(e) == account_id)
        return app_named(self.meta_apps(), entry.app, "app")

    def owners(self) -> dict[str, frozenset[str]]:
        """Each Page's or account's id → the app it belongs to."""
        apps = self.meta_apps()
        return {_entry_id(e): frozenset({app_named(apps, e.app, "app").name})
                for e in self._entries()}  # fmt: skip


class MessengerSettings(_Apps, msgspec.Struct, **SECTION_STRUCT):
    verify_token: str
    app_secret: str = ""
    """The default app's secret; optional when `apps` lists the apps."""
    api_base: str = "https://graph.facebook.com/v21.0"
    app_id: str | None = None
    """The Meta app's id: `gateway webhooks show` then checks that this app, not just any, is
    subscribed to each Page."""
    appsecret_proof: bool = False
    """The default app's Graph calls carry `appsecret_proof`."""
    apps: list[MetaApp] = msgspec.field(default_factory=list)
    """More Meta apps (adapters/meta_apps.py); each Page names its own (`app`)."""
    pages: list[MessengerPage] = msgspec.field(default_factory=list)
    _ENTRIES: ClassVar[str] = "pages"

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        _check("messenger", "pages", self, list(self.pages), "page_id", "the numeric Page id")

    def secrets(self) -> list[Secret]:
        return _secrets("messenger", "pages", self, list(self.pages))

    def accounts(self) -> list[Account]:
        return _accounts("messenger", self, list(self.pages))

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Pages belong to no group."""
        return {}


class InstagramSettings(_Apps, msgspec.Struct, **SECTION_STRUCT):
    verify_token: str
    app_secret: str = ""
    """The default app's secret; optional when `apps` lists the apps."""
    api_base: str = "https://graph.instagram.com/v21.0"
    app_id: str | None = None
    """The app's id as Instagram's `subscribed_apps` lists it: `gateway webhooks show` then
    checks that this app, not just any, is subscribed to each account. (An Instagram Login
    app has an Instagram app ID beside its Meta app ID; which one the edge lists is not
    documented: compare with `gateway webhooks show`.)"""
    appsecret_proof: bool = False
    """The default app's Graph calls carry `appsecret_proof`."""
    apps: list[MetaApp] = msgspec.field(default_factory=list)
    """More Meta apps (adapters/meta_apps.py); each account names its own (`app`)."""
    accounts_: list[InstagramAccount] = msgspec.field(default_factory=list, name="accounts")
    _ENTRIES: ClassVar[str] = "accounts_"

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        id_is = "the numeric Instagram professional account id"
        _check("instagram", "accounts", self, list(self.accounts_), "account_id", id_is)

    def secrets(self) -> list[Secret]:
        return _secrets("instagram", "accounts", self, list(self.accounts_))

    def accounts(self) -> list[Account]:
        return _accounts("instagram", self, list(self.accounts_))

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Instagram accounts belong to no group."""
        return {}
