"""The `messenger:` and `instagram:` sections of config.yaml (CONTRACT §6.4): each Meta app's
secret and verify token, the Send API's base URL, and the Pages or Instagram professional
accounts; the checks name the key they refuse."""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

from adapters.account import SECTION_STRUCT, Account, Secret, check_assistant

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


class InstagramAccount(msgspec.Struct, **SECTION_STRUCT):
    account_id: str
    assistant: str
    access_token: str = ""
    enabled: bool = True
    mps: Annotated[int, msgspec.Meta(ge=1, le=_MAX_MPS)] = INSTAGRAM_MPS
    handover: bool = False
    """As for a Page (Instagram accounts linked to a Page can use Conversation Routing)."""
    handover_app_id: str = PAGE_INBOX_APP_ID


def _check_common(section: str, app_secret: str, verify_token: str) -> None:
    if not app_secret:
        raise ValueError(f"{section}.app_secret: required (signatures are never switched off)")
    if not verify_token:
        raise ValueError(f"{section}.verify_token: required")


class MessengerSettings(msgspec.Struct, **SECTION_STRUCT):
    app_secret: str
    verify_token: str
    api_base: str = "https://graph.facebook.com/v21.0"
    pages: list[MessengerPage] = msgspec.field(default_factory=list)

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        _check_common("messenger", self.app_secret, self.verify_token)
        seen: set[str] = set()
        for i, page in enumerate(self.pages):
            where = f"messenger.pages[{i}]"
            if not _DIGITS.fullmatch(page.page_id):
                raise ValueError(f"{where}.page_id: must be the numeric Page id")
            check_assistant(page.assistant, f"{where}.assistant")
            if not _DIGITS.fullmatch(page.handover_app_id):
                raise ValueError(f"{where}.handover_app_id: must be a numeric app id")
            if page.page_id in seen:
                raise ValueError(f"{where}.page_id: {page.page_id} is listed twice")
            seen.add(page.page_id)

    def secrets(self) -> list[Secret]:
        found = [
            Secret("messenger.app_secret", self.app_secret, True),
            Secret("messenger.verify_token", self.verify_token, True),
        ]
        for i, page in enumerate(self.pages):
            found.append(Secret(f"messenger.pages[{i}].access_token", page.access_token, False))
        return found

    def accounts(self) -> list[Account]:
        """`Account.mode` holds the app a `handoff` passes threads to (None: no handover)."""
        return [
            Account(
                "messenger", p.page_id, p.assistant, p.access_token, p.enabled, float(p.mps),
                mode=p.handover_app_id if p.handover else None,
            )
            for p in self.pages
        ]  # fmt: skip

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Pages belong to no group."""
        return {}


class InstagramSettings(msgspec.Struct, **SECTION_STRUCT):
    app_secret: str
    verify_token: str
    api_base: str = "https://graph.instagram.com/v21.0"
    accounts_: list[InstagramAccount] = msgspec.field(default_factory=list, name="accounts")

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        _check_common("instagram", self.app_secret, self.verify_token)
        seen: set[str] = set()
        for i, account in enumerate(self.accounts_):
            where = f"instagram.accounts[{i}]"
            if not _DIGITS.fullmatch(account.account_id):
                raise ValueError(
                    f"{where}.account_id: must be the numeric Instagram professional account id"
                )
            check_assistant(account.assistant, f"{where}.assistant")
            if not _DIGITS.fullmatch(account.handover_app_id):
                raise ValueError(f"{where}.handover_app_id: must be a numeric app id")
            if account.account_id in seen:
                raise ValueError(f"{where}.account_id: {account.account_id} is listed twice")
            seen.add(account.account_id)

    def secrets(self) -> list[Secret]:
        found = [
            Secret("instagram.app_secret", self.app_secret, True),
            Secret("instagram.verify_token", self.verify_token, True),
        ]
        for i, account in enumerate(self.accounts_):
            found.append(
                Secret(f"instagram.accounts[{i}].access_token", account.access_token, False)
            )
        return found

    def accounts(self) -> list[Account]:
        """`Account.mode` holds the app a `handoff` passes threads to (None: no handover)."""
        return [
            Account(
                "instagram", a.account_id, a.assistant, a.access_token, a.enabled, float(a.mps),
                mode=a.handover_app_id if a.handover else None,
            )
            for a in self.accounts_
        ]  # fmt: skip

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Instagram accounts belong to no group."""
        return {}
