"""The Business app's data of a coexistence number, for `gateway accounts sync`
(`Channel.sync_call`, `.sync_answer`).

Once a WhatsApp Business app number is onboarded to the Cloud API (coexistence), Meta sends
the app's contacts (`smb_app_state_sync` webhooks) and its chat history of up to 180 days
(`history` webhooks) only when asked, each once per onboarding, within 24 hours of it
(PLATFORM §4.1):

    POST {api_base}/{phone_number_id}/smb_app_data
         {"messaging_product": "whatsapp", "sync_type": "smb_app_state_sync" | "history"}
    200  {"messaging_product": "whatsapp", "request_id": "<id>"}
    any error: Graph's {"error": {"message", "type", "code", "error_data", "fbtrace_id"}}

    2593107  this kind was already asked for since the onboarding (Meta's SYNC_LIMIT_EXCEEDED)
    2593108  the 24 hours after the onboarding are over (SYNC_REQUEST_OUT_OF_ALLOWED_TIME_WINDOW)

The codes' meanings are those public integrations map them to (Meta's error-code page lists
them as synchronization errors); confirmed with the `search` tool. A business that declined
to share its history answers later, in a `history` webhook (2593109, `HISTORY_DECLINED`).
Answers are judged here, never raising; the detail never holds the token.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from adapters.account import Account
from adapters.channel import ProviderCall, SyncAnswer, SyncKind
from adapters.whatsapp._config import WhatsAppSettings

SYNC_TYPES: Final[dict[SyncKind, str]] = {"contacts": "smb_app_state_sync", "history": "history"}
ALREADY_DONE: Final = 2593107
WINDOW_PASSED: Final = 2593108
_COEXISTENCE: Final = "coexistence"
_DETAIL_MAX: Final = 300
_SPACES: Final = re.compile(r"\s+")
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError)


class _GraphError(msgspec.Struct):
    message: str
    code: int
    fbtrace_id: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _GraphError


class _Accepted(msgspec.Struct):
    request_id: str


_ERROR = msgspec.json.Decoder(_ErrorBody)
_ACCEPTED = msgspec.json.Decoder(_Accepted)


def sync_call(
    settings: WhatsAppSettings | None, account: Account, kind: SyncKind
) -> ProviderCall | None:
    """`POST {api_base}/{phone_number_id}/smb_app_data` for a coexistence number, with its
    bearer token (and its app's `appsecret_proof`, when the app asks for it). ValueError
    naming `mode` for a number that is not in coexistence: it has no Business app."""
    if settings is None:
        return None
    if account.mode != _COEXISTENCE:
        raise ValueError(
            f"{_where(settings, account)}.mode is {account.mode}: only a coexistence number "
            "has WhatsApp Business app data to sync"
        )
    params = {"appsecret_proof": account.token_proof} if account.token_proof else {}
    return ProviderCall(
        "POST",
        f"{settings.api_base.rstrip('/')}/{account.account_id}/smb_app_data",
        {"Authorization": f"Bearer {account.token}"},
        params,
        {"messaging_product": "whatsapp", "sync_type": SYNC_TYPES[kind]},
    )


def sync_answer(account: Account, kind: SyncKind, status: int, body: bytes) -> SyncAnswer:
    """Graph's answer to `sync_call`; never raises."""
    error = _graph_error(body)
    if error is not None:
        return _refused(error, kind, account.token)
    if 200 <= status < 300:
        try:
            request_id = _ACCEPTED.decode(body).request_id
        except _DECODE_ERRORS:
            pass
        else:
            detail = f"{kind} sync requested: Meta sends it as webhooks"
            return SyncAnswer("requested", detail, request_id=_one_line(request_id, ""))
    return SyncAnswer("failed", f"HTTP {status}: not a Graph API answer")


def _refused(error: _GraphError, kind: SyncKind, token: str) -> SyncAnswer:
    message = error.message.removeprefix(f"(#{error.code}) ")
    said = f"Graph {error.code}: {_one_line(message, token)}"
    if error.fbtrace_id:
        said += f" (fbtrace_id {_one_line(error.fbtrace_id, token)})"
    if error.code == ALREADY_DONE:
        why = f"already requested since the onboarding (Meta syncs the {kind} once): {said}"
        return SyncAnswer("already_done", why, code=error.code)
    if error.code == WINDOW_PASSED:
        why = (
            f"too late: Meta allows it only within 24 h of the onboarding; onboarding the "
            f"number again opens a new window: {said}"
        )
        return SyncAnswer("window_passed", why, code=error.code)
    return SyncAnswer("failed", said, code=error.code)


def _graph_error(body: bytes) -> _GraphError | None:
    try:
        return _ERROR.decode(body).error
    except _DECODE_ERRORS:
        return None


def _one_line(text: str, token: str) -> str:
    if token:
        text = text.replace(token, "[REDACTED]")
    return _SPACES.sub(" ", text).strip()[:_DETAIL_MAX]


def _where(settings: WhatsAppSettings, account: Account) -> str:
    """The config key of the account's entry: `whatsapp.numbers[<i>]`."""
    index = next(
        (i for i, n in enumerate(settings.numbers) if n.phone_number_id == account.account_id), 0
    )
    return f"whatsapp.numbers[{index}]"
