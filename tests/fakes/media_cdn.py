"""A signed-URL file host, mounted on a fake's own server: Meta's attachment CDN
(`scontent-….xx.fbcdn.net`, `lookaside.fbsbx.com`) for `FakeSendAPI`, and the CDN a Twilio
media URL redirects to (`media.twiliocdn.com`, an S3 presigned URL) for `FakeTwilioAPI`.

    url = fake.root_url + fake.cdn.add(b"...", "image/jpeg")   # /cdn/<asset>?oh=<sig>&oe=<exp>
    fake.cdn.expire(url)                                       # the signature is past its time

What it answers: the bytes with their Content-Type and Content-Length; a URL whose signature
expired (or was never issued) → 403 `text/plain` "URL signature expired", as Meta's CDN
answers past a URL's `oe`; with `no_authorization` (S3, behind Twilio's redirect) a request
carrying an `Authorization` header → 400 "Only one auth mechanism allowed", as S3 refuses a
presigned URL sent with credentials. Every request is kept in `requests` (path, the
Authorization header it carried, status).

Simplified: the signature is a random token, not an HMAC of the path; expiry is only by
`expire`, never by the clock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from gateway_demo.standins._server import Answer

EXPIRED = b"URL signature expired"
CHUNK = 16 * 1024
ONE_AUTH = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code><Message>Only '
    b"one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
    b"string parameter or the Authorization header should be specified</Message></Error>"
)


@dataclass
class _Asset:
    data: bytes
    mime_type: str
    signature: str
    chunked: bool = False
    expired: bool = False


class SignedCDN:
    """Files under `prefix`, each reachable by its signed URL only."""

    def __init__(self, prefix: str = "/cdn", *, no_authorization: bool = False) -> None:
        self.prefix = prefix
        self.no_authorization = no_authorization
        self._assets: dict[str, _Asset] = {}
        self.requests: list[tuple[str, str | None, int]] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(f"{self.prefix}/{{asset}}", self._get)

    def add(self, data: bytes, mime_type: str = "image/jpeg", *, chunked: bool = False) -> str:
        """A file; its path and signed query (append it to the server's root URL). `chunked`:
        sent with chunked transfer encoding, no Content-Length (as a CDN streaming from its
        origin does)."""
        asset, signature = secrets.token_hex(8), secrets.token_hex(16)
        self._assets[asset] = _Asset(data, mime_type, signature, chunked)
        return f"{self.prefix}/{asset}?oh={signature}&oe=6A1B2C3D"

    def expire(self, url: str) -> None:
        """The URL's signature is past its time."""
        self._assets[urlsplit(url).path.rsplit("/", 1)[1]].expired = True

    async def _get(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        answer = self._answer(request.match_info["asset"], request.query.get("oh"), auth)
        self.requests.append((request.path, auth, answer.status))
        found = self._assets.get(request.match_info["asset"])
        if answer.status != 200 or found is None or not found.chunked:
            return answer.response()
        response = web.StreamResponse(headers={"Content-Type": found.mime_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(found.data), CHUNK):
            await response.write(found.data[start : start + CHUNK])
        await response.write_eof()
        return response

    def _answer(self, asset: str, signature: str | None, auth: str | None) -> Answer:
        if auth is not None and self.no_authorization:
            return Answer(400, ONE_AUTH, "application/xml")
        found = self._assets.get(asset)
        if found is None or found.expired or signature != found.signature:
            return Answer(403, EXPIRED, "text/plain")
        return Answer(200, found.data, found.mime_type)
