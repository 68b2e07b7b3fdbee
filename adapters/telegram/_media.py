"""A Telegram file_id → its bytes (PLATFORM §7.2): `getFile?file_id=` answers a File with a
`file_path` (valid at least an hour), downloaded from `{api_base}/file/bot<token>/<file_path>`.
Bots download files of up to 20 MB: a larger one is refused by getFile itself, 400 "Bad
Request: file is too big". A file_id is the bot's own (another bot's is not valid for it);
an unknown or malformed one is 400 "Bad Request: invalid file_id" or "Bad Request: wrong
file_id or the file is temporarily unavailable".

Both URLs hold the bot token: they never reach a log line (the gateway logs no media URL).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from adapters import answers
from adapters.account import Account
from adapters.media import MEDIA_ID, MediaCall, MediaError, MediaRef, download_refused

DOWNLOAD_MAX_BYTES: Final = 20 * 1024 * 1024
"""What the Bot API lets a bot download (getFile's limit)."""
_TOO_BIG: Final = "file is too big"
_GONE: Final = ("invalid file_id", "wrong file_id", "file is temporarily unavailable")


def lookup(account: Account, api_base: str, ref: MediaRef) -> MediaCall:
    """`GET {api_base}/bot<token>/getFile?file_id=…`."""
    if ref.id is None or not MEDIA_ID.fullmatch(ref.id):
        raise MediaError("invalid", "Telegram media are named by the event's media.id (file_id)")
    return MediaCall(f"{api_base}/bot{account.token}/getFile?file_id={ref.id}", lookup=True)


def found(account: Account, api_base: str, status: int, body: bytes) -> MediaCall:
    """getFile's File → the download URL of its `file_path`."""
    doc = answers.decode(body)
    match doc:
        case {"ok": True, "result": {"file_path": str(path)} as file} if path:
            if path.startswith("/") or ".." in path.split("/"):
                raise MediaError("provider", "getFile answered a file_path outside the bot's files")
            url = f"{api_base}/file/bot{account.token}/{quote(path, safe='/')}"
            return MediaCall(url, size=_size(file))
        case {"ok": True, "result": dict()}:
            raise MediaError("not_found", "getFile gave no file_path: the file cannot be fetched")
        case {"ok": False, "description": str(text)}:
            raise _refusal(status, text)
    raise MediaError("provider", f"getFile answered HTTP {status}, not a Bot API answer")


def refused(status: int, body: bytes) -> MediaError:
    """The file URL's answer other than 2xx (404: the file_path expired)."""
    return download_refused(status, "the file URL")


def _refusal(status: int, text: str) -> MediaError:
    lowered = text.lower()
    if _TOO_BIG in lowered:
        return MediaError("too_large", "Telegram lets bots download files of up to 20 MB")
    if any(words in lowered for words in _GONE):
        return MediaError("not_found", "Telegram does not know this file_id for this bot")
    if status == 401:
        return MediaError("provider", "the Bot API refused the bot's token (401)")
    return MediaError("provider", f"getFile answered {status}: {text[:200]}")


def _size(file: dict[str, Any]) -> int | None:
    raw = file.get("file_size")
    return raw if isinstance(raw, int) and answers.is_int(raw) and raw >= 0 else None
