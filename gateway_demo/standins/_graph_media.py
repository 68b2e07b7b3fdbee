"""The WhatsApp media the Graph API stand-in holds (`FakeGraphAPI.media`): received media a
backend downloads through the gateway (PLATFORM §2).

    media_id = fake.media.add(NUMBER_A, b"...", "image/jpeg")   # as if a contact sent it
    fake.media.expire(media_id)                                 # deleted (after 30 days)

`GET /v21.0/{media_id}` (bearer token, optional `phone_number_id`) answers Meta's shape,
`{"messaging_product": "whatsapp", "url", "mime_type", "sha256", "file_size", "id"}`, with
`file_size` as a string of digits as Meta's samples print it; the `url` points at the stand-in
itself (`/whatsapp_business/attachments/?mid=…&ext=…&hash=…`, the shape of
`lookaside.fbsbx.com`'s) and is fetched with the same bearer token.

Refusals: a token that is not the media's number's → 401, code 190 (after the token check all
Graph calls make); a media id unknown, expired, or of another number than `phone_number_id`
→ 400, code 100, subcode 33, "Unsupported get request. Object with ID '…' does not exist, …".

Simplified (UNCERTAIN at Meta): the media URL's refusals. An expired URL (`url_ttl_s`, Meta's
5 minutes) or an unknown one → 404 with an empty body; a missing or wrong token → 401 with
Graph's 190 envelope.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass

from gateway_demo.standins import graph_errors as errors
from gateway_demo.standins._server import Answer

ATTACHMENTS_PATH = "/whatsapp_business/attachments/"
URL_TTL_S = 300.0
"""Meta: the URL a lookup gives is valid for 5 minutes."""


@dataclass
class _Item:
    phone_number_id: str
    data: bytes
    mime_type: str
    expired: bool = False


class GraphMedia:
    """Media ids → the bytes and the number that received them."""

    def __init__(self, url_ttl_s: float = URL_TTL_S) -> None:
        self.url_ttl_s = url_ttl_s
        self._items: dict[str, _Item] = {}
        self._ids = itertools.count(1)
        self._issued: dict[str, tuple[str, float]] = {}  # hash → media id, when issued
        self.downloads: list[tuple[str, str | None, int]] = []
        """Every download asked: (media id or "", the token it carried, status answered)."""

    def add(self, phone_number_id: str, data: bytes, mime_type: str = "image/jpeg") -> str:
        """A media received by `phone_number_id`; its id (digits, as Meta's)."""
        media_id = f"{1_000_000_000_000_000 + next(self._ids)}"
        self._items[media_id] = _Item(phone_number_id, data, mime_type)
        return media_id

    def expire(self, media_id: str) -> None:
        """The media is gone (Meta deletes received media after 30 days)."""
        self._items[media_id].expired = True

    def lookup(
        self, media_id: str, numbers: set[str], phone_number_id: str | None, root_url: str
    ) -> Answer:
        """GET /{media_id} with a token of `numbers` (already known to be a valid token)."""
        item = self._items.get(media_id)
        usable = item is not None and not item.expired and item.phone_number_id in numbers
        if item is None or not usable or phone_number_id not in (None, item.phone_number_id):
            error = errors.unknown_object(media_id, "get")
            payload = errors.envelope(error, subcode=33)
            return Answer.json(error.http_status, payload, errors.error_headers(payload))
        key = hashlib.sha256(f"{media_id}|{next(self._ids)}".encode()).hexdigest()[:32]
        self._issued[key] = (media_id, time.monotonic())
        url = f"{root_url}{ATTACHMENTS_PATH}?mid={media_id}&ext={int(time.time())}&hash={key}"
        return Answer.json(200, {
            "messaging_product": "whatsapp",
            "url": url,
            "mime_type": item.mime_type,
            "sha256": hashlib.sha256(item.data).hexdigest(),
            "file_size": str(len(item.data)),
            "id": media_id,
        })  # fmt: skip

    def download(self, key: str, token: str | None, numbers: set[str]) -> Answer:
        """GET the URL a lookup gave, with the bearer token of `numbers` (those of `token`)."""
        media_id, issued = self._issued.get(key, ("", 0.0))
        item = self._items.get(media_id)
        if item is None or item.expired or time.monotonic() - issued > self.url_ttl_s:
            answer = Answer(404, b"", "text/plain")
        elif item.phone_number_id not in numbers:
            payload = errors.envelope(errors.INVALID_TOKEN)
            answer = Answer.json(401, payload, errors.error_headers(payload))
        else:
            answer = Answer(200, item.data, item.mime_type)
        self.downloads.append((media_id, token, answer.status))
        return answer
