"""The `whatsapp:` section of config.yaml (CONTRACT §4): Meta's app secret and verify token,
the Graph API's base URL, and the numbers; its checks name the key they refuse."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from adapters.account import SECTION_STRUCT, Account, AppIdle, Secret, check_assistant
from adapters.meta_apps import MetaApp, app_named, check_apps, section_apps, token_proof

_DIGITS: Final = re.compile(r"[0-9]{1,32}")
_E164: Final = re.compile(r"\+?[1-9][0-9]{6,14}")
"""E.164; the `+` may be left out, as Meta's own webhooks write it."""
COEXISTENCE_BLOCKED_CODES: Final = {"234": "Nigeria", "27": "South Africa"}
_DAY_S: Final = 86400
_Days = Annotated[float, msgspec.Meta(gt=0, le=365)]


class WhatsAppNumber(msgspec.Struct, **SECTION_STRUCT):
    phone_number_id: str
    display_phone_number: str
    assistant: str
    access_token: str = ""
    waba_id: str | None = None
    mode: Literal["coexistence", "cloud_api"] = "cloud_api"
    mps: Annotated[int, msgspec.Meta(ge=1, le=10000)] | None = None
    enabled: bool = True
    app: str | None = None
    """The Meta app this number's webhooks come from and its token belongs to (`apps`);
    None: the default app (`app_secret`), or the only one."""

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
    verify_token: str
    app_secret: str = ""
    """The default app's secret; optional when `apps` lists the apps."""
    api_base: str = "https://graph.facebook.com/v21.0"
    app_id: str | None = None
    """The Meta app's id: `gateway webhooks show` then checks that this app, not just any, is
    subscribed to each number's WABA."""
    appsecret_proof: bool = False
    """The default app's Graph calls carry `appsecret_proof`."""
    apps: list[MetaApp] = msgspec.field(default_factory=list)
    """More Meta apps (adapters/meta_apps.py); each number names its own (`app`)."""
    numbers: list[WhatsAppNumber] = msgspec.field(default_factory=list)
    app_idle_warn_days: _Days = 10
    """A coexistence number whose Business app has shown no sign of life (an echo, a contact
    sync) for this long gets one `BUSINESS_APP_INACTIVE` account event per stretch."""
    app_idle_cutoff_days: _Days = 14
    """When Meta cuts such a number off (`PRIMARY_INACTIVITY`): about 14 days by Meta's
    wording, 13 by one partner's (PLATFORM §4.1), so a setting."""

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        check_apps("whatsapp", self.app_secret, self.apps)
        if self.app_idle_warn_days >= self.app_idle_cutoff_days:
            raise ValueError(
                f"whatsapp.app_idle_warn_days: {self.app_idle_warn_days:g} is not before "
                f"app_idle_cutoff_days ({self.app_idle_cutoff_days:g}): the warning must come "
                "before the cut-off"
            )
        if not self.verify_token:
            raise ValueError("whatsapp.verify_token: required")
        if self.app_id is not None and not _DIGITS.fullmatch(self.app_id):
            raise ValueError("whatsapp.app_id: must be the numeric id of the Meta app")
        seen: set[str] = set()
        for i, number in enumerate(self.numbers):
            where = f"whatsapp.numbers[{i}]"
            number.check(where)
            app_named(self.meta_apps(), number.app, f"{where}.app")
            if number.phone_number_id in seen:
                raise ValueError(
                    f"{where}.phone_number_id: {number.phone_number_id} is listed twice"
                )
            seen.add(number.phone_number_id)

    def secrets(self) -> list[Secret]:
        found = [Secret("whatsapp.app_secret", self.app_secret, True)] if self.app_secret else []
        found.append(Secret("whatsapp.verify_token", self.verify_token, True))
        for i, app in enumerate(self.apps):
            found.append(Secret(f"whatsapp.apps[{i}].app_secret", app.app_secret, True))
        for i, number in enumerate(self.numbers):
            found.append(Secret(f"whatsapp.numbers[{i}].access_token", number.access_token, False))
        return found

    def accounts(self) -> list[Account]:
        apps = self.meta_apps()
        return [
            Account(
                "whatsapp", n.phone_number_id, n.assistant, n.access_token, n.enabled,
                float(n.effective_mps), n.display_phone_number, n.mode,
                token_proof=token_proof(app_named(apps, n.app, "app"), n.access_token),
                app_idle=self._app_idle if n.mode == "coexistence" else None,
            )
            for n in self.numbers
        ]  # fmt: skip

    @property
    def _app_idle(self) -> AppIdle:
        """A coexistence number's Business app must be opened regularly (PLATFORM §4.1)."""
        return AppIdle(
            round(self.app_idle_warn_days * _DAY_S), round(self.app_idle_cutoff_days * _DAY_S)
        )

    @property
    def listed_apps(self) -> bool:
        return bool(self.apps)

    def meta_apps(self) -> tuple[MetaApp, ...]:
        """The default app (`app_secret`) first, then `apps`."""
        return section_apps(self.app_secret, self.app_id, self.appsecret_proof, self.apps)

    def app_of(self, phone_number_id: str) -> MetaApp:
        """The app a configured number belongs to (the checks made sure it has one)."""
        number = next(n for n in self.numbers if n.phone_number_id == phone_number_id)
        return app_named(self.meta_apps(), number.app, "whatsapp.numbers[].app")

    def owners(self) -> dict[str, frozenset[str]]:
        """Each number's id, and each WABA's, → the apps it belongs to (a WABA: its numbers')."""
        owners: dict[str, frozenset[str]] = {}
        apps = self.meta_apps()
        for n in self.numbers:
            app = frozenset({app_named(apps, n.app, "app").name})
            owners[n.phone_number_id] = app
            if n.waba_id:
                owners[n.waba_id] = owners.get(n.waba_id, frozenset()) | app
        return owners

    def groups(self) -> dict[str, tuple[str, ...]]:
        """WABA id → its numbers, in config order (routes `account_update` events)."""
        wabas: dict[str, tuple[str, ...]] = {}
        for n in self.numbers:
            if n.waba_id:
                wabas[n.waba_id] = (*wabas.get(n.waba_id, ()), n.phone_number_id)
        return wabas
