"""The `twilio:` section of config.yaml (CONTRACT §6.4): the Twilio account (SID and auth
token, or an API key for sending), the public URL Twilio signs, the API's base URL, and the
WhatsApp senders; the checks name the key they refuse."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

import msgspec

from adapters.account import SECTION_STRUCT, Account, Secret, check_assistant

_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_ACCOUNT_SID: Final = re.compile(r"AC[0-9a-fA-F]{32}")
_KEY_SID: Final = re.compile(r"SK[0-9a-fA-F]{32}")
_SIGNING_KEY_SID: Final = re.compile(r"[A-Za-z0-9]{1,64}")
"""A SharedKey's id: its format is not documented (**UNCERTAIN**), so any short alphanumeric
id is taken, the way the header names it."""
COEXISTENCE_MPS: Final = 20
CLOUD_API_MPS: Final = 80
"""A Twilio WhatsApp sender's default throughput is 80 messages a second (PLATFORM-MORE
§6.2), Meta's Cloud API default; `mode` and `mps` work as for Meta numbers (CONTRACT §3)."""


class TwilioNumber(msgspec.Struct, **SECTION_STRUCT):
    number: str
    """The WhatsApp sender, E.164 (`+15557654321`; a `whatsapp:` prefix is accepted)."""
    assistant: str
    mode: Literal["coexistence", "cloud_api"] = "cloud_api"
    mps: Annotated[int, msgspec.Meta(ge=1, le=10000)] | None = None
    enabled: bool = True

    @property
    def e164(self) -> str:
        return self.number.removeprefix("whatsapp:")

    @property
    def effective_mps(self) -> int:
        if self.mps is not None:
            return self.mps
        return COEXISTENCE_MPS if self.mode == "coexistence" else CLOUD_API_MPS


class TwilioSigningKey(msgspec.Struct, **SECTION_STRUCT):
    """A SharedKey that a Webhook Rule has Twilio sign with instead of the auth token."""

    sid: str
    """The key's id, as the `key=` of `X-Twilio-Webhooks-Signature-Settings` names it."""
    secret: str


class TwilioSettings(msgspec.Struct, **SECTION_STRUCT):
    account_sid: str
    auth_token: str
    public_url: str
    """Exactly the URL set in Twilio for inbound messages and status callbacks: Twilio signs
    the URL it requests, so a proxy's own URL here would fail every signature."""
    api_base: str = "https://api.twilio.com"
    api_key_sid: str | None = None
    """Send with an API key (`SK...`) and its secret instead of the auth token."""
    api_key_secret: str | None = None
    signing_keys: list[TwilioSigningKey] = msgspec.field(default_factory=list)
    """SharedKeys Twilio may sign webhooks with (Webhook Rules, public beta): a request whose
    `X-Twilio-Webhooks-Signature-Settings` names one is checked with its secret and the
    header's algorithm; two during a rotation."""
    numbers: list[TwilioNumber] = msgspec.field(default_factory=list)

    def check(self) -> None:
        """ValueError naming the key of the first problem."""
        if not _ACCOUNT_SID.fullmatch(self.account_sid):
            raise ValueError("twilio.account_sid: must be the account's SID, AC + 32 hex digits")
        if not self.auth_token:
            raise ValueError("twilio.auth_token: required (signatures are never switched off)")
        url = urlsplit(self.public_url)
        if url.scheme not in ("https", "http") or not url.netloc or url.fragment:
            raise ValueError(
                "twilio.public_url: must be the full URL set in Twilio, like "
                "https://gateway.example.com/webhooks/twilio (no #fragment)"
            )
        if (self.api_key_sid is None) != (self.api_key_secret is None):
            raise ValueError("twilio.api_key_secret: api_key_sid and api_key_secret go together")
        if self.api_key_sid is not None and not _KEY_SID.fullmatch(self.api_key_sid):
            raise ValueError("twilio.api_key_sid: must be an API key SID, SK + 32 hex digits")
        sids: set[str] = set()
        for i, key in enumerate(self.signing_keys):
            where = f"twilio.signing_keys[{i}]"
            if not _SIGNING_KEY_SID.fullmatch(key.sid):
                raise ValueError(f"{where}.sid: must be the SharedKey's id (letters and digits)")
            if not key.secret:
                raise ValueError(f"{where}.secret: required")
            if key.sid in sids:
                raise ValueError(f"{where}.sid: {key.sid} is listed twice")
            sids.add(key.sid)
        seen: set[str] = set()
        for i, n in enumerate(self.numbers):
            where = f"twilio.numbers[{i}]"
            if not _E164.fullmatch(n.e164):
                raise ValueError(f"{where}.number: must be E.164, like +15557654321")
            check_assistant(n.assistant, f"{where}.assistant")
            if n.e164 in seen:
                raise ValueError(f"{where}.number: {n.e164} is listed twice")
            seen.add(n.e164)

    def secrets(self) -> list[Secret]:
        found = [Secret("twilio.auth_token", self.auth_token, True)]
        if self.api_key_secret is not None:
            found.append(Secret("twilio.api_key_secret", self.api_key_secret, False))
        for i, key in enumerate(self.signing_keys):
            found.append(Secret(f"twilio.signing_keys[{i}].secret", key.secret, True))
        return found

    @property
    def credentials(self) -> str:
        """What each sender's `Account.token` holds: `AC...:<auth token>`, or with an API key
        `AC...:SK...:<secret>` (the account SID is always in the Messages API's path)."""
        if self.api_key_sid is not None and self.api_key_secret is not None:
            return f"{self.account_sid}:{self.api_key_sid}:{self.api_key_secret}"
        return f"{self.account_sid}:{self.auth_token}"

    def accounts(self) -> list[Account]:
        """Channel whatsapp, account id the number's digits, served by the "twilio" adapter."""
        return [
            Account(
                "whatsapp", n.e164.lstrip("+"), n.assistant, self.credentials, n.enabled,
                float(n.effective_mps), n.e164, n.mode, provider="twilio",
                callback_url=self.public_url,
            )
            for n in self.numbers
        ]  # fmt: skip

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Senders belong to no group."""
        return {}
