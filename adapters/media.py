"""Media for backends: what a channel says about downloading one media item, and the
`media:` config section of the gateway's media endpoint (gateway/media.py).

    MediaRef         what the backend names: the event's `media.id` or `media.url`
    MediaCall        one GET the gateway makes: the full URL, its headers, and whether its
                     answer is the file itself or the provider's description of it (`lookup`)
    MediaError       why a download cannot be done, with a reason from a closed set:
                       invalid     the reference is not one this channel can fetch
                       not_found   the provider says the media is gone (expired, deleted)
                       too_large   the provider refuses it for its size (Telegram's 20 MB)
                       provider    any other provider answer (a refused token, a 5xx)
    MediaSettings    `media:` — the per-assistant API keys, the size limit, the timeout, and
                     the hosts a media URL may name when it is fetched without credentials

A channel's steps (`Channel.media`, `media_found`, `media_refused`) build requests and read
answers; like `request` and `classify` they do no I/O: the gateway makes the calls, streams
the bytes and decides the HTTP answer. Every URL here may hold a token (Telegram's file URLs
do): never log one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Final, Literal, NamedTuple
from urllib.parse import urlsplit

import msgspec

from adapters.account import SECTION_STRUCT, Secret, check_assistant

MediaReason = Literal["invalid", "not_found", "too_large", "provider"]

DEFAULT_MAX_BYTES: Final = 100 * 1024 * 1024
MEDIA_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,256}")
"""A media id or Telegram file_id as it may go into a URL path or query: nothing that could
step out of it (`/`, `..`, `?`)."""
_HOST: Final = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?")


class MediaError(Exception):
    """A media download that cannot be done: `reason` (closed set) and one line of detail
    for the caller (never a token or a URL)."""

    def __init__(self, reason: MediaReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: MediaReason = reason
        self.detail = detail


class MediaRef(NamedTuple):
    """The media a backend asks for: an event's `media.id` (WhatsApp media id, Telegram
    file_id) or `media.url` (Messenger, Instagram, Twilio)."""

    id: str | None = None
    url: str | None = None


class MediaCall(NamedTuple):
    """One GET of a media download. `lookup`: its answer describes the file (JSON) and goes
    to `Channel.media_found`, which gives the download's call; else its answer is the file.
    `size` and `mime_type`: what a lookup said of the file, when it did."""

    url: str
    headers: Mapping[str, str] = MappingProxyType({})
    lookup: bool = False
    size: int | None = None
    mime_type: str | None = None


class MediaKey(msgspec.Struct, **SECTION_STRUCT):
    """One API key: it opens the conversations of `assistant` (and of no other)."""

    assistant: str
    key: str


class MediaSettings(msgspec.Struct, **SECTION_STRUCT):
    """The `media:` section: absent, the media endpoint answers 404 to every request."""

    api_keys: list[MediaKey] = msgspec.field(default_factory=list)
    """Several keys may name one assistant (a rotation: the new key beside the old)."""
    max_bytes: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_BYTES
    """A file larger than this is refused 413: from the provider's declared size before a
    byte is sent, and cut off while streaming when the provider sends more."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Per provider call: connecting, the answer's head, and each wait for more bytes (not
    the whole download, which may be long)."""
    url_hosts: list[str] | None = None
    """Hosts a media URL fetched without credentials (Messenger's and Instagram's CDN URLs)
    may name, `*.` for any subdomain; None: Meta's CDNs (`META_CDN_HOSTS`)."""

    def check(self) -> None:
        """ValueError naming the key of the first problem (never quoting a key)."""
        seen: set[str] = set()
        for i, entry in enumerate(self.api_keys):
            where = f"media.api_keys[{i}]"
            check_assistant(entry.assistant, f"{where}.assistant")
            if entry.key in seen:
                raise ValueError(f"{where}.key: the same key is listed twice")
            seen.add(entry.key)
        for i, host in enumerate(self.url_hosts or ()):
            if not _HOST.fullmatch(host):
                raise ValueError(
                    f"media.url_hosts[{i}]: a lower-case host name, or *. and one "
                    "(like *.fbcdn.net)"
                )

    def secrets(self) -> list[Secret]:
        """Each API key: it authenticates callers, so it must be long off loopback."""
        return [
            Secret(f"media.api_keys[{i}].key", entry.key, True)
            for i, entry in enumerate(self.api_keys)
        ]


META_CDN_HOSTS: Final = ("*.fbcdn.net", "*.fbsbx.com", "*.cdninstagram.com")
"""Where Messenger's and Instagram's attachment URLs point (PLATFORM-MORE §2: allow-list
`lookaside.fbsbx.com` and `*.fbcdn.net` before fetching; Instagram also serves from
`*.cdninstagram.com`). `media.url_hosts` replaces it."""


def host_allowed(url: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether `url` is http(s) on one of `patterns` (`host` or `*.domain`), with no user
    info (a URL that could smuggle another host past a naive parser)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("https", "http") or not host or "@" in parts.netloc:
        return False
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def download_refused(status: int, what: str) -> MediaError:
    """The usual reading of a failed file download: 404 and 410 say the file is gone; any
    other status is the provider's failure."""
    if status in (404, 410):
        return MediaError("not_found", f"{what} is gone (HTTP {status})")
    return MediaError("provider", f"{what} answered HTTP {status}")
