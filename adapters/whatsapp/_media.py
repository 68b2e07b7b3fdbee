"""A WhatsApp media id → its bytes (PLATFORM §2): `GET {api_base}/{media_id}` with the number's
token and `phone_number_id` (so Graph serves only media of this number, even when one system
user token covers a whole WABA) answers `{"url", "mime_type", "sha256", "file_size", "id"}`;
the `url` (valid 5 minutes) is fetched with the same bearer token.

A media id Graph no longer knows (deleted after 30 days, or another number's) is answered as
any unknown object: code 100, subcode 33, "Unsupported get request. Object with ID '…' does
not exist, cannot be loaded due to missing permissions, or does not support this operation".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from adapters import answers
from adapters.account import Account
from adapters.media import MEDIA_ID, MediaCall, MediaError, MediaRef, download_refused
from adapters.meta_apps import with_proof

GONE_CODES = frozenset({100})
"""Graph's "no such object" (subcode 33) and invalid-parameter answers: for a media id, gone
or never this number's."""
TOKEN_CODES = frozenset({190})


def lookup(account: Account, api_base: str, ref: MediaRef) -> MediaCall:
    """`GET {api_base}/{media_id}?phone_number_id=…` with the number's bearer token."""
    if ref.id is None or not MEDIA_ID.fullmatch(ref.id):
        raise MediaError("invalid", "WhatsApp media are named by the event's media.id")
    url = f"{api_base}/{ref.id}?phone_number_id={quote(account.account_id, safe='')}"
    return MediaCall(with_proof(url, account.token_proof), _bearer(account), lookup=True)


def found(account: Account, status: int, body: bytes) -> MediaCall:
    """Graph's description of the media → the GET of its `url` with the same token."""
    doc = answers.decode(body)
    match doc:
        case {"url": str(url)} if answers.ok(status) and url.startswith(("https:", "http:")):
            return MediaCall(url, _bearer(account), size=_size(doc), mime_type=_mime(doc))
        case {"error": {"code": int(code)}} if answers.is_int(code):
            raise _graph_error(code)
    if status == 404:
        raise MediaError("not_found", "Graph does not know this media id (HTTP 404)")
    raise MediaError("provider", f"Graph answered HTTP {status} without a media URL")


def refused(status: int, body: bytes) -> MediaError:
    """The media URL's answer other than 2xx (an expired URL, a refused token)."""
    doc = answers.decode(body)
    match doc:
        case {"error": {"code": int(code)}} if answers.is_int(code):
            return _graph_error(code)
    return download_refused(status, "the media URL")


def _graph_error(code: int) -> MediaError:
    if code in GONE_CODES:
        return MediaError("not_found", f"Graph: no such media for this number (code {code})")
    if code in TOKEN_CODES:
        return MediaError("provider", f"Graph refused the number's access token (code {code})")
    return MediaError("provider", f"Graph error code {code}")


def _bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.token}"}


def _size(doc: dict[str, Any]) -> int | None:
    """`file_size`, which Graph gives as a string of digits (or a number)."""
    raw = doc.get("file_size")
    if isinstance(raw, int) and answers.is_int(raw):
        return raw
    if isinstance(raw, str) and raw.isdigit() and len(raw) < 19:
        return int(raw)
    return None


def _mime(doc: dict[str, Any]) -> str | None:
    raw = doc.get("mime_type")
    return raw if isinstance(raw, str) and raw and len(raw) <= 255 else None
