"""The media endpoint: backends download the media their events name, through the gateway,
which alone holds the accounts' tokens.

    GET /v1/media/{conversation_id}/{media_id}    an event's media.id (WhatsApp, Telegram)
    GET /v1/media/{conversation_id}?url=<url>     an event's media.url (Messenger, Instagram,
                                                  Twilio)
    Authorization: Bearer <key>                   a key of `media.api_keys`
    ?filename=<name>                              optional: sent back as Content-Disposition
                                                  (the event's media.filename)

Answers: 200 with the bytes streamed as they come from the provider (its Content-Type, its
Content-Length when it gave one); otherwise JSON `{"error": <outcome>, "detail": <text>}`:
401 `unauthorized` (no key, or not a configured one; `WWW-Authenticate: Bearer`), 403
`forbidden` (the key of another assistant), 404 `unknown_conversation` (not a conversation of
a configured, enabled account) or `not_found` (the provider says the media is gone: an expired
WhatsApp media id, a Telegram file_id it does not know, an expired CDN URL) or
`not_configured` (no `media:` section), 400 `invalid` (a reference this channel cannot fetch:
an id where it takes URLs, a URL on a host it may not go to), 413 `too_large` (over
`media.max_bytes`, or over Telegram's 20 MB), 502 `provider_error`, 504 `timeout`. A body that
grows past `media.max_bytes` while streaming, or a provider that stops halfway, cuts the
connection: the caller sees a short body, never a complete-looking wrong one.

Which media a key may fetch. A key opens the conversations of its assistant, that is of the
accounts bound to it; the media itself is fetched with that account's own credentials, which
reach only that account's media: WhatsApp's lookup names the number (`phone_number_id`, so a
WABA-wide token cannot fetch another number's media), a Telegram file_id is valid for its bot
only, a Twilio media URL must be this account's (`/Accounts/<its SID>/…/Media/ME…`, on its
api_base: the Basic credentials go nowhere else), and a Messenger or Instagram CDN URL is
fetched with no credentials at all, on an allowed host only. The gateway keeps no record of
the media ids it published: that would cost the inbound hot path a Redis write per media
message, and buys nothing the credentials do not already enforce, except tying a media to
one contact of the account, which the assistant owning every conversation of the account
does not need.

Every provider URL may hold a token (Telegram's file URLs do) and is never logged; the key is
read from the Authorization header only (no query), which no log line carries.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from adapters.account import Account
from adapters.channel import Channel, adapter_of
from adapters.media import MediaCall, MediaError, MediaKey, MediaReason, MediaRef, MediaSettings
from gateway.config import channel_sections
from gateway.handlers import expect_continue
from gateway.media_metrics import MediaMetrics, Outcome
from gateway.state import STATE, State
from router.target import route

log = logging.getLogger("gateway.media")

PREFIX: Final = "/v1/media"
MEDIA_HTTP = web.AppKey("media_http", aiohttp.ClientSession)
"""The HTTP client of provider media calls (its own: downloads may be long, and must not take
the reply workers' connections)."""
CHUNK_BYTES: Final = 64 * 1024
LOOKUP_MAX_BYTES: Final = 1024 * 1024
"""A lookup's answer (a small JSON document) is read up to this; more is a provider error."""
ERROR_BODY_BYTES: Final = 64 * 1024
MAX_REDIRECTS: Final = 5
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_STATUS: Final[Mapping[str, int]] = {
    "unauthorized": 401,
    "forbidden": 403,
    "unknown_conversation": 404,
    "not_found": 404,
    "not_configured": 404,
    "invalid": 400,
    "too_large": 413,
    "provider_error": 502,
    "timeout": 504,
}
_OUTCOME: Final[Mapping[MediaReason, Outcome]] = {
    "invalid": "invalid",
    "not_found": "not_found",
    "too_large": "too_large",
    "provider": "provider_error",
}


class Refusal(Exception):
    """An answer other than the media: its outcome (None: the endpoint is not configured,
    which counts in no metric) and one line of detail."""

    def __init__(self, outcome: Outcome | None, detail: str) -> None:
        self.outcome, self.detail = outcome, detail
        self.error = outcome or "not_configured"
        super().__init__(f"{self.error}: {detail}")

    @classmethod
    def of(cls, exc: MediaError) -> Refusal:
        return cls(_OUTCOME[exc.reason], exc.detail)

    def response(self) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="media"'} if self.status == 401 else None
        body = {"error": self.error, "detail": self.detail}
        return web.json_response(body, status=self.status, headers=headers)

    @property
    def status(self) -> int:
        return _STATUS[self.error]


def add_routes(app: web.Application) -> None:
    """The media routes (HEAD is not served: it would download the file for nothing)."""
    for path in (f"{PREFIX}/{{conversation_id}}/{{media_id}}", f"{PREFIX}/{{conversation_id}}"):
        app.router.add_get(path, media_get, allow_head=False, expect_handler=expect_continue)


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    """The provider client: bytes passed on as they come (no decompression), redirects
    followed by hand (credentials never follow one)."""
    async with aiohttp.ClientSession(auto_decompress=False, raise_for_status=False) as session:
        app[MEDIA_HTTP] = session
        yield


async def media_get(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    download = Download(request, state)
    try:
        return await download.run()
    except Refusal as refusal:
        if refusal.outcome is not None:
            state.metrics.media.answered(download.channel, refusal.outcome)
        if refusal.outcome in ("provider_error", "timeout"):
            log.warning("media download failed: %s", refusal, extra=_fields(download))
        return refusal.response()


class Download:
    """One media request: who asks, for which conversation's account, and the provider calls
    that fetch it."""

    def __init__(self, request: web.Request, state: State) -> None:
        self.request = request
        self.state = state
        self.metrics: MediaMetrics = state.metrics.media
        self.channel = ""
        """The `channel` label: the account's adapter, once the conversation is known."""

    async def run(self) -> web.StreamResponse:
        settings = self.state.settings.media
        if settings is None:
            raise Refusal(None, "the gateway has no media: section")
        account = self._authorize(settings)
        adapter = adapter_of(account)
        api_base = self._api_base(account)
        call = _step(lambda: adapter.media(account, api_base, self._ref(), settings))
        fetch = Fetch(self.request.app[MEDIA_HTTP], settings, adapter)
        if call.lookup:
            status, body = await fetch.lookup(call)
            call = _step(lambda: adapter.media_found(account, api_base, status, body))
        return await fetch.stream(self.request, call, self)

    def _authorize(self, settings: MediaSettings) -> Account:
        """401 without a configured key, 404 for no enabled account's conversation, 403 for
        another assistant's."""
        assistant = assistant_of(self.request.headers.get("Authorization"), settings.api_keys)
        if assistant is None:
            raise Refusal("unauthorized", "send Authorization: Bearer <a media.api_keys key>")
        target = route(self.state.directory, self.request.match_info["conversation_id"])
        if target is None or not target.account.enabled:
            raise Refusal("unknown_conversation", "no conversation of a configured account")
        self.channel = target.account.adapter_name
        if target.account.assistant != assistant:
            raise Refusal("forbidden", "this key opens its own assistant's conversations only")
        return target.account

    def _ref(self) -> MediaRef:
        media_id = self.request.match_info.get("media_id")
        url = self.request.query.get("url")
        if (media_id is None) == (url is None):
            raise Refusal("invalid", "name the media by /<media.id> or by ?url=<media.url>")
        return MediaRef(media_id, url)

    def _api_base(self, account: Account) -> str:
        section = channel_sections(self.state.settings).get(account.adapter_name)
        return section.api_base.rstrip("/") if section is not None else ""

    def filename(self) -> str | None:
        return self.request.query.get("filename")


def _step(make: Callable[[], MediaCall]) -> MediaCall:
    """A channel's media step, its `MediaError` as the answer to give."""
    try:
        return make()
    except MediaError as exc:
        raise Refusal.of(exc) from None


def assistant_of(header: str | None, keys: list[MediaKey]) -> str | None:
    """The assistant whose key the `Authorization: Bearer` header carries; every configured
    key is compared (in constant time each), whichever matches."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    given = value.strip().encode()
    found = None
    for entry in keys:
        if hmac.compare_digest(given, entry.key.encode()):
            found = entry.assistant
    return found


class Fetch:
    """The provider calls of one download, and the streaming of its bytes."""

    def __init__(
        self, session: aiohttp.ClientSession, settings: MediaSettings, adapter: Channel
    ) -> None:
        self.session = session
        self.max_bytes = settings.max_bytes
        self.adapter = adapter
        t = settings.timeout_seconds
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=t, connect=t, sock_read=t)

    async def lookup(self, call: MediaCall) -> tuple[int, bytes]:
        """The lookup's status and body (at most LOOKUP_MAX_BYTES)."""
        async with _network():
            response = await self._open(call)
            try:
                body = await _read(response, LOOKUP_MAX_BYTES)
            finally:
                response.release()
        if body is None:
            raise Refusal("provider_error", "the provider's lookup answer is too long")
        return response.status, body

    async def stream(
        self, request: web.Request, call: MediaCall, download: Download
    ) -> web.StreamResponse:
        """The file, from the provider to the caller chunk by chunk."""
        self._check_size(call.size)
        async with _network():
            upstream = await self._open(call)
        try:
            return await self._relay(request, upstream, call, download)
        finally:
            upstream.release()

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        call: MediaCall,
        download: Download,
    ) -> web.StreamResponse:
        if not 200 <= upstream.status < 300:
            async with _network():
                body = await _read(upstream, ERROR_BODY_BYTES) or b""
            raise Refusal.of(self.adapter.media_refused(upstream.status, body))
        self._check_size(upstream.content_length)
        response = web.StreamResponse(headers=_headers(upstream, call, download.filename()))
        response.content_length = upstream.content_length
        await response.prepare(request)
        sent, outcome = await self._pump(upstream, response)
        download.metrics.streamed(download.channel, sent)
        download.metrics.answered(download.channel, outcome)
        if outcome != "ok":
            log.warning("media download cut off: %s", outcome, extra=_fields(download))
            if request.transport is not None:
                request.transport.abort()  # the caller sees a short body, not a whole one
            return response
        await response.write_eof()
        return response

    async def _pump(
        self, upstream: aiohttp.ClientResponse, response: web.StreamResponse
    ) -> tuple[int, Outcome]:
        """Bytes sent, and how it ended: each chunk is written (and drained) before the next
        is read, so memory holds a few chunks whatever the file's size."""
        sent = 0
        try:
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                sent += len(chunk)
                if sent > self.max_bytes:
                    return sent - len(chunk), "too_large"
                await response.write(chunk)
        except TimeoutError:
            return sent, "timeout"
        except (aiohttp.ClientError, ConnectionError):
            return sent, "interrupted"
        return sent, "ok"

    def _check_size(self, size: int | None) -> None:
        if size is not None and size > self.max_bytes:
            raise Refusal("too_large", f"{size} bytes, over media.max_bytes ({self.max_bytes})")

    async def _open(self, call: MediaCall) -> aiohttp.ClientResponse:
        """GET the call's URL; redirects are followed up to MAX_REDIRECTS, without the call's
        headers (its credentials are for its own URL only)."""
        url, headers = URL(call.url, encoded=True), dict(call.headers)
        for _ in range(MAX_REDIRECTS + 1):
            response = await self.session.get(
                url,
                headers={**headers, "Accept-Encoding": "identity"},
                allow_redirects=False,
                timeout=self.timeout,
            )
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                return response
            response.release()
            url = response.url.join(URL(location, encoded=True))
            if url.scheme not in ("http", "https"):
                raise Refusal("provider_error", "the provider redirected to a non-HTTP URL")
            headers = {}
        raise Refusal("provider_error", f"more than {MAX_REDIRECTS} redirects")


@contextlib.asynccontextmanager
async def _network() -> AsyncIterator[None]:
    """Network failures before the first byte is sent, as answers: 504 for a timeout, 502
    for the rest (the exception's text is not quoted: it may hold a URL with a token)."""
    try:
        yield
    except TimeoutError:
        raise Refusal(
            "timeout", "the provider did not answer within media.timeout_seconds"
        ) from None
    except (aiohttp.ClientError, ValueError) as exc:
        detail = f"the provider could not be reached ({type(exc).__name__})"
        raise Refusal("provider_error", detail) from None


async def _read(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The answer's body, or None when it is longer than `limit`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _headers(
    upstream: aiohttp.ClientResponse, call: MediaCall, filename: str | None
) -> dict[str, str]:
    """The provider's content headers, and no caching by anyone between."""
    given = upstream.headers
    headers = {
        "Content-Type": given.get("Content-Type") or call.mime_type or "application/octet-stream",
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    }
    encoding = given.get("Content-Encoding")
    if encoding and encoding.lower() != "identity":
        headers["Content-Encoding"] = encoding
    disposition = _disposition(filename) if filename else given.get("Content-Disposition")
    if disposition:
        headers["Content-Disposition"] = disposition
    return headers


def _disposition(filename: str) -> str | None:
    """`attachment` with the name (RFC 6266: an ASCII fallback and the UTF-8 `filename*`);
    path separators, quotes and control characters are dropped."""
    clean = "".join(c for c in filename if c.isprintable() and c not in '"\\/')[:255].strip()
    if not clean:
        return None
    fallback = "".join(c if c.isascii() else "_" for c in clean)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(clean, safe='')}"


def _fields(download: Download) -> dict[str, str]:
    return {"channel": download.channel}
