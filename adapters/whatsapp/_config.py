"""The `whatsapp:` section of config.yaml (CONTRACT §4): Meta's app secret and verify token,
the Graph API's base URL, and the numbers; its checks name the key they refuse."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from adapters.account import SECTION_STRUCT, Account, Secret, check_assistant

_DIGITS: Final = re.compile(r"[0-9]{1,32}")
_E164: Final = re.compile(r"\+?[1-9][0-9]{6,14}")
"""E.164; the `+` may be left out, as Meta's own webhooks write it."""
COEXISTENCE_BLOCKED_CODES: Final = {"234": "Nigeria", "27": "South Africa"}


class WhatsAppNumber(msgspec.Struct, **SECTION_STRUCT):
    phone_number_id: str
    display_phone_number: str
    assistant: str
    access_token: str = ""
    waba_id: str | None = None
    mode: Literal["coexistence", "cloud_api"] = "cloud_api"
    mps: Annotated[int, msgspec.Meta(ge=1, le=10000)] | None = None
    enabled: bool = True

    @property
    def effective_mps(self) -> int:
        if self.mps is not None:
            return self.mps
        return 20 if self.mode == "coexistence" else 80

    def check(self, where: str) -> None:
        if not _DIGITS.fullmatch(self.phone_number_id):
            raise ValueError(f"{where}.phone_number_id: must be the numeric id Meta assigned")
        if not _E164.fullmatch(self.display_phone_number):
            raise ValueError(f"{where}.display_phone_number: must be E.164, like +15551234567")
        if self.waba_id is not None and not _DIGITS.fullmatch(self.waba_id):
            raise ValueError(f"{where}.waba_id: must be the numeric WABA id")
        check_assistant(self.assistant, f"{where}.assistant")
        if self.mode == "coexistence":
            digits = self.display_phone_number.lstrip("+")
            for code, country in COEXISTENCE_BLOCKED_CODES.items():
                if digits.startswith(code):
                    raise ValueError(
                        f"{where}.mode: {self.display_phone_number} is a {country} (+{code}) "
                        "number, and WhatsApp coexistence is not available there; "
                        "use mode: cloud_api"
                    )


class WhatsAppSettings(msgspec.Struct, **SECTION_STRUCT):
    app_secret: str
    verify_token: str
    api_base: str = "https://graph.facebook.com/v21.0"
    app_id: str | None = None
    """The Meta app's id: `gateway webhooks show` then checks that this app, not just any, is
    subscribed to each number's WABA."""
    numbers: list[WhatsAppNumber] = msgspec.field(default_factory=list)

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        if not self.app_secret:
            raise ValueError("whatsapp.app_secret: required (signatures are never switched off)")
        if not self.verify_token:
            raise ValueError("whatsapp.verify_token: required")
        if self.app_id is not None and not _DIGITS.fullmatch(self.app_id):
            raise ValueError("whatsapp.app_id: must be the numeric id of the Meta app")
        seen: set[str] = set()
        for i, number in enumerate(self.numbers):
            where = f"whatsapp.numbers[{i}]"
            number.check(where)
            if number.phone_number_id in seen:
                raise ValueError(
                    f"{where}.phone_number_id: {number.phone_number_id} is listed twice"
                )
            seen.add(number.phone_number_id)

    def secrets(self) -> list[Secret]:
        found = [
            Secret("whatsapp.app_secret", self.app_secret, True),
            Secret("whatsapp.verify_token", self.verify_token, True),
        ]
        for i, number in enumerate(self.numbers):
            found.append(Secret(f"whatsapp.numbers[{i}].access_token", number.access_token, False))
        return found

    def accounts(self) -> list[Account]:
        return [
            Account(
                "whatsapp", n.phone_number_id, n.assistant, n.access_token, n.enabled,
                float(n.effective_mps), n.display_phone_number, n.mode,
            )
            for n in self.numbers
        ]  # fmt: skip

    def groups(self) -> dict[str, tuple[str, ...]]:
        """WABA id → its numbers, in config order (routes `account_update` events)."""
        wabas: dict[str, tuple[str, ...]] = {}
        for n in self.numbers:
            if n.waba_id:
                wabas[n.waba_id] = (*wabas.get(n.waba_id, ()), n.phone_number_id)
        return wabas
