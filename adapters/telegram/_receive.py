"""The receiving side of the Telegram channel: `/webhooks/telegram/{bot_id}`, authenticated
by the bot's `X-Telegram-Bot-Api-Secret-Token`, bound to the `telegram:` section."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from adapters.channel import Answer, Webhook
from adapters.telegram._config import TelegramSettings
from adapters.telegram._verify import verify_secret

SECRET_HEADER: Final = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
WEBHOOK: Final = Webhook("/webhooks/telegram", keyed=True, headers=(SECRET_HEADER,))
_UNKNOWN_BOT: Final = (404, "unknown bot")
_BAD_SECRET: Final = (401, "bad secret token")


class TelegramReceiver:
    """Each bot's webhook: the key segment of the path is its bot id."""

    __slots__ = ("_secrets",)

    def __init__(self, settings: TelegramSettings | None) -> None:
        bots = settings.bots if settings is not None else []
        self._secrets = {bot.bot_id: bot.secret_token for bot in bots}
        """Bot id → its secret token (disabled bots too: their updates are still taken)."""

    def refuse(self, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        """404 for a bot we do not serve, 401 for a wrong secret token. The secret is the
        whole proof, and it is in the head: nothing is left for `verify` to learn."""
        secret = self._secrets.get(key) if key is not None else None
        if secret is None:
            return _UNKNOWN_BOT
        if not verify_secret(headers.get(SECRET_HEADER), secret):
            return _BAD_SECRET
        return None

    def verify(self, key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        return self.refuse(key, headers) is None

    def handshake(self, query: Mapping[str, str]) -> Answer:
        """Telegram has none (`WEBHOOK.handshake` is false: no GET route is served)."""
        return 404, "Not Found"
