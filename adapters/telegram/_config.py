"""The `telegram:` section of config.yaml (CONTRACT §4): the Bot API's base URL and the bots,
each with its token and webhook secret; its checks name the key they refuse."""

from __future__ import annotations

import re
from typing import Final

import msgspec

from adapters.account import SECTION_STRUCT, Account, Secret, check_assistant

_TG_SECRET: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")
_TG_TOKEN: Final = re.compile(r"([0-9]+):(.+)", re.DOTALL)


def bot_id_from_token(token: str) -> str:
    """The bot id of a `<digits>:<secret>` token, e.g. "7000000001"; ValueError otherwise.
    The message never quotes the token: its secret half must not reach logs."""
    match = _TG_TOKEN.fullmatch(token)
    if match is None:
        raise ValueError("Telegram bot token must look like '<bot id digits>:<secret>'")
    return match.group(1)


class TelegramBot(msgspec.Struct, **SECTION_STRUCT):
    token: str
    secret_token: str
    assistant: str
    enabled: bool = True

    @property
    def bot_id(self) -> str:
        return bot_id_from_token(self.token)


class TelegramSettings(msgspec.Struct, **SECTION_STRUCT):
    api_base: str = "https://api.telegram.org"
    bots: list[TelegramBot] = msgspec.field(default_factory=list)

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        seen: set[str] = set()
        for i, bot in enumerate(self.bots):
            where = f"telegram.bots[{i}]"
            try:
                bot_id = bot.bot_id
            except ValueError as exc:
                raise ValueError(f"{where}.token: {exc}") from None
            if not _TG_SECRET.fullmatch(bot.secret_token):
                raise ValueError(
                    f"{where}.secret_token: required, 1-256 characters of A-Z a-z 0-9 _ -"
                )
            check_assistant(bot.assistant, f"{where}.assistant")
            if bot_id in seen:
                raise ValueError(f"{where}.token: bot {bot_id} is listed twice")
            seen.add(bot_id)

    def secrets(self) -> list[Secret]:
        found: list[Secret] = []
        for i, bot in enumerate(self.bots):
            found.append(Secret(f"telegram.bots[{i}].token", bot.token, False))
            found.append(Secret(f"telegram.bots[{i}].secret_token", bot.secret_token, True))
        return found

    def accounts(self) -> list[Account]:
        return [
            Account("telegram", bot.bot_id, bot.assistant, bot.token, bot.enabled)
            for bot in self.bots
        ]

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Bots belong to no group."""
        return {}
