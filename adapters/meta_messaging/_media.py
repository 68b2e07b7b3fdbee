"""A Messenger or Instagram attachment URL → its bytes: the event's `media.url` is a CDN URL
(`payload.url`: `lookaside.fbsbx.com`, `scontent-….xx.fbcdn.net`, Instagram's
`*.cdninstagram.com`) signed in its query, fetched with no credentials at all. So the only
check is where it points: an http(s) URL on one of the allowed hosts (`media.url_hosts`, by
default `adapters.media.META_CDN_HOSTS`), never anything the gateway's network could reach
besides (PLATFORM-MORE §2: allow-list the CDN hosts before fetching, against SSRF).

The CDN refuses a URL whose signature expired with 403 "URL signature expired" (and a removed
asset with 404): both mean the media is gone. Story URLs die after 24 h.
"""

from __future__ import annotations

from adapters.media import (
    META_CDN_HOSTS,
    MediaCall,
    MediaError,
    MediaRef,
    MediaSettings,
    download_refused,
    host_allowed,
)

GONE_STATUSES = frozenset({403, 404, 410})
"""What the CDN answers for an expired signature (403) or a removed asset."""


def download(ref: MediaRef, settings: MediaSettings) -> MediaCall:
    """GET the event's CDN URL, without credentials, once its host is an allowed one."""
    if ref.url is None:
        raise MediaError("invalid", "this channel's media are named by the event's media.url")
    hosts = settings.url_hosts if settings.url_hosts is not None else META_CDN_HOSTS
    if not host_allowed(ref.url, hosts):
        raise MediaError("invalid", "the URL's host is not one of media.url_hosts")
    return MediaCall(ref.url)


def refused(status: int, body: bytes) -> MediaError:
    if status in GONE_STATUSES:
        return MediaError("not_found", f"the CDN URL expired or the media was removed ({status})")
    return download_refused(status, "the CDN URL")
