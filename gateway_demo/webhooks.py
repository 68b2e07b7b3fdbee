"""The webhooks `gateway demo` posts, shaped and signed as the platforms send them: Meta's
WhatsApp Cloud API (`X-Hub-Signature-256` over the raw body, JSON with non-ASCII escaped) and
Telegram's Bot API (`X-Telegram-Bot-Api-Secret-Token`)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from adapters.whatsapp import sign

Posted = tuple[bytes, dict[str, str]]
"""A body and its headers."""


@dataclass(frozen=True)
class WhatsAppNumber:
    """The business number the demo's customers write to, and the secret Meta signs with."""

    phone_number_id: str
    display_phone_number: str
    waba_id: str
    app_secret: str

    def post(self, field: str, value: dict[str, Any]) -> Posted:
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": self.waba_id,
                    "changes": [
                        {
                            "field": field,
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": self.display_phone_number.lstrip("+"),
                                    "phone_number_id": self.phone_number_id,
                                },
                                **value,
                            },
                        }
                    ],
                }
            ],
        }
        body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()
        headers = {
            "X-Hub-Signature-256": sign(body, self.app_secret.encode()),
            "Content-Type": "application/json",
        }
        return body, headers

    def message(self, sender: str, name: str, wamid: str, **content: Any) -> Posted:
        """A customer's message: `content` is `type` and its object (`text`, `image`, ...)."""
        message = {"from": sender, "id": wamid, "timestamp": _now(), **content}
        contacts = [{"profile": {"name": name}, "wa_id": sender}]
        return self.post("messages", {"contacts": contacts, "messages": [message]})

    def status(self, wamid: str, status: str, recipient: str) -> Posted:
        """The status of a message the business sent (sent, delivered, read)."""
        item = {"id": wamid, "status": status, "timestamp": _now(), "recipient_id": recipient}
        return self.post("messages", {"statuses": [item]})

    def echo(self, to: str, wamid: str, text: str) -> Posted:
        """A message the business wrote in the WhatsApp Business app (coexistence)."""
        echo = {
            "from": self.display_phone_number.lstrip("+"),
            "to": to,
            "id": wamid,
            "timestamp": _now(),
            "type": "text",
            "text": {"body": text},
        }
        return self.post("smb_message_echoes", {"message_echoes": [echo]})


@dataclass(frozen=True)
class TelegramBot:
    token: str
    secret_token: str

    @property
    def bot_id(self) -> str:
        return self.token.split(":", 1)[0]

    def message(self, update_id: int, user_id: int, first_name: str, text: str) -> Posted:
        user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        update = {
            "update_id": update_id,
            "message": {
                "message_id": update_id % 100_000,
                "from": user,
                "chat": {"id": user_id, "first_name": first_name, "type": "private"},
                "date": int(time.time()),
                "text": text,
            },
        }
        body = json.dumps(update, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "X-Telegram-Bot-Api-Secret-Token": self.secret_token,
            "Content-Type": "application/json",
        }
        return body, headers


def _now() -> str:
    return str(int(time.time()))
