"""A Twilio `MediaUrl` → its bytes (PLATFORM-MORE §5.3): the URL of the event,
`https://api.twilio.com/2010-04-01/Accounts/{AC}/Messages/{MM}/Media/{ME}`, is fetched with the
account's HTTP Basic credentials (needed when the account enforces media auth, harmless
otherwise), and Twilio answers 307 with a short-lived CDN URL, which the gateway follows
without them.

The credentials go only to a media URL of this account on the configured `api_base` (same
scheme, host and port; exactly that path shape, no query): a URL of another host, another
account or another resource is refused before any request, so they can never be sent
elsewhere. A deleted media is 404 with Twilio's body `{"code": 20404, "message": "The
requested resource … was not found", ...}`.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from adapters import answers
from adapters.account import Account
from adapters.media import MediaCall, MediaError, MediaRef, download_refused
from adapters.schema import InvalidCommand
from adapters.twilio._outbound import API_VERSION, _auth

_MEDIA_PATH: Final = re.compile(
    rf"/{API_VERSION}/Accounts/(AC[0-9a-fA-F]{{32}})/Messages/[MS]M[0-9a-fA-F]{{32}}"
    r"/Media/ME[0-9a-fA-F]{32}"
)
NOT_FOUND_CODE: Final = 20404


def download(account: Account, api_base: str, ref: MediaRef) -> MediaCall:
    """GET the event's media URL with the account's Basic credentials, once it is sure to be a
    media URL of this account on `api_base`."""
    if ref.url is None:
        raise MediaError("invalid", "Twilio media are named by the event's media.url")
    try:
        account_sid, headers = _auth(account)
    except InvalidCommand:
        raise MediaError("provider", "the sender's Twilio credentials are not usable") from None
    if not _is_media_url(ref.url, api_base, account_sid):
        raise MediaError(
            "invalid", "not a media URL of this Twilio account (…/Messages/MM…/Media/ME…)"
        )
    return MediaCall(ref.url, {"Authorization": headers["Authorization"]})


def refused(status: int, body: bytes) -> MediaError:
    """Twilio's refusal: 404 (code 20404) for a media deleted or never there."""
    doc = answers.decode(body)
    match doc:
        case {"code": int(code)} if code == NOT_FOUND_CODE:
            return MediaError("not_found", f"Twilio: no such media (code {code})")
        case {"code": int(code)} if answers.is_int(code):
            return MediaError("provider", f"Twilio answered HTTP {status}, code {code}")
    return download_refused(status, "the media URL")


def _is_media_url(url: str, api_base: str, account_sid: str) -> bool:
    try:
        given, base = urlsplit(url), urlsplit(api_base)
        same_origin = (given.scheme, given.hostname, given.port) == (
            base.scheme, base.hostname, base.port,
        )  # fmt: skip
    except ValueError:  # a malformed port
        return False
    if not same_origin or given.username is not None or given.query or given.fragment:
        return False
    prefix = base.path.rstrip("/")
    if not given.path.startswith(prefix):
        return False
    found = _MEDIA_PATH.fullmatch(given.path[len(prefix) :])
    return found is not None and found.group(1) == account_sid
