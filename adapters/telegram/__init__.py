"""Telegram Bot API adapter: webhook bytes in, common events (`adapters.schema`) out.

    verify_secret(header, secret)   constant-time check of X-Telegram-Bot-Api-Secret-Token
    parse_update(body, bot_id, t)   one Update -> Parsed with one event or one BadItem;
                                    raises only adapters.schema.ParseError
    build_request(command, chat_id, business_connection_id=None)
                                    one Command -> ProviderRequest (method path and body),
                                    sent through a business connection when one is given;
                                    raises only adapters.schema.InvalidCommand
    classify(status, body)          a Bot API answer -> SendResult; never raises

    TelegramSettings, TelegramBot   the `telegram:` config section; bot_id_from_token
    StaffChatSettings, send_message, staff_answer
                                    a staff chat for escalation notices (adapters/notice.py)
    CHANNEL                         this package as the `Channel` "telegram" (registered)

Telegram payload structs are private to this package; nothing here touches the network,
Redis or the gateway.
"""

from adapters.channel import register
from adapters.telegram._channel import Telegram
from adapters.telegram._config import TelegramBot, TelegramSettings, bot_id_from_token
from adapters.telegram._inbound import parse_update
from adapters.telegram._outbound import build_request, classify
from adapters.telegram._receive import SECRET_HEADER
from adapters.telegram._staff import StaffChatSettings, send_message, staff_answer
from adapters.telegram._verify import verify_secret

__all__ = [
    "CHANNEL",
    "SECRET_HEADER",
    "StaffChatSettings",
    "Telegram",
    "TelegramBot",
    "TelegramSettings",
    "bot_id_from_token",
    "build_request",
    "classify",
    "parse_update",
    "send_message",
    "staff_answer",
    "verify_secret",
]

CHANNEL = register(Telegram())
