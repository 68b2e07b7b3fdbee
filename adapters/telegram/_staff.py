"""A staff chat for escalation notices (`notifications.telegram`): a message to one chat
through one bot, and what the Bot API's answer means for it. The notice's text is written by
adapters/notice.py; this module only knows the Bot API."""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import msgspec

from adapters.account import SECTION_STRUCT
from adapters.telegram._config import bot_id_from_token
from adapters.telegram._outbound import classify

TEXT_MAX: Final = 4096
_CHAT: Final = re.compile(r"-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{3,31}")

StaffVerdict = Literal["delivered", "retry", "failed"]


class StaffChatSettings(msgspec.Struct, **SECTION_STRUCT):
    bot_token: str
    chat_id: str
    """The staff group's or channel's id (e.g. "-1001234567890") or @channel username."""
    api_base: str = "https://api.telegram.org"

    def check(self, where: str) -> None:
        """ValueError naming the key (`where.<field>`) of the first problem."""
        try:
            bot_id_from_token(self.bot_token)
        except ValueError as exc:
            raise ValueError(f"{where}.bot_token: {exc}") from None
        if not _CHAT.fullmatch(self.chat_id):
            raise ValueError(f"{where}.chat_id: a chat id (digits, may start with -) or @name")


def send_message(settings: StaffChatSettings, text: str) -> tuple[str, dict[str, Any]]:
    """`sendMessage` of plain `text` (no parse mode: nothing in it needs escaping) to the
    staff chat: the URL (it holds the token: never log it) and the JSON body."""
    url = f"{settings.api_base.rstrip('/')}/bot{settings.bot_token}/sendMessage"
    chat: int | str = int(settings.chat_id) if settings.chat_id[0] != "@" else settings.chat_id
    body = {
        "chat_id": chat,
        "text": text[:TEXT_MAX],
        "link_preview_options": {"is_disabled": True},
    }
    return url, body


def staff_answer(status: int, body: bytes) -> tuple[StaffVerdict, str, float | None]:
    """The Bot API's answer: delivered; retry (429 with its `retry_after`, 5xx, not an
    answer); failed (a wrong token, chat or right: retrying will not help)."""
    result = classify(status, body)
    detail = f"Bot API {result.provider_code or status}: {result.detail or ''}".rstrip(": ")
    if result.verdict == "sent":
        return "delivered", f"HTTP {status}", None
    if result.verdict in ("retry", "retry_recipient", "retry_account"):
        return "retry", detail, result.retry_after_s
    return "failed", detail, None
