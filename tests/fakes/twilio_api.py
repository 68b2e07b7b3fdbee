"""A stand-in for Twilio's Messages API (WhatsApp senders) and its typing indicator, on
127.0.0.1; it also posts the status callbacks of the messages it accepted, signed as Twilio
signs them.

    async with FakeTwilioAPI(TWILIO_SID, TWILIO_TOKEN, senders=[TWILIO_A]) as fake:
        settings = make_settings(redis_url, TWILIO_API=fake.url)
        fake.fail(63016)                     # the next message: outside the 24-hour window
        ...
        [message] = fake.sent_to("5511987650000")
        await fake.post_status(message.sid, "delivered", to=gateway_url)

Routes (one server plays both of Twilio's hosts, as `adapters.twilio` uses `api_base` as it is
for the typing indicator when its host is not `api.*`):
- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` (api.twilio.com);
- `POST /v2/Indicators/Typing.json` (messaging.twilio.com);
- `GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{MediaSid}`, a received
  media (`add_media`, `delete_media`): with the account's Basic auth (the account enforces
  media auth; without it 401, 20003), 307 to its file on `fake.cdn` (`media_cdn.SignedCDN`,
  playing S3 behind media.twiliocdn.com: a request there carrying credentials is refused 400);
  deleted or unknown → 404, 20404;
- anything else: 404, code 20404.

Every request is recorded in `fake.requests` (arrival time, route, the path's account SID,
the Basic auth user, the form as sent, status answered, decoded answer).

What it checks, in the order Twilio does:
1. raw scripted answers (`fail_status`), before anything else: a proxy's 502 page;
2. HTTP Basic auth: the account SID and its auth token, or an API key SID (`SK...`) and its
   secret (`api_keys`), for the account in the path; missing or wrong → 401, 20003
   "Authenticate";
3. the form, by the Messages API's rules (`_check`): `To` (21604), `From` (21603), a
   `From` that is none of the account's WhatsApp senders (63007), `To` and `From` on different
   channels (21910), `To` not `whatsapp:+E.164` (21211), `ContentVariables` without
   `ContentSid` (21654), a `ContentSid` that is not HX + 32 hex digits (21655),
   `ContentVariables` that are not a JSON object of non-empty strings (21656), `Body` beside
   `ContentVariables` (35127), no `Body`, `MediaUrl` or `ContentSid` (21619), a `Body` over
   1600 characters (21617), a `MediaUrl` that is not an http(s) URL (21620), more than one
   `MediaUrl` (21623: WhatsApp carries one), a `StatusCallback` that is not an http(s) URL
   (21609);
4. scripted failures (`fail`), then the account's REST rate (`enforce_rate`) → 429, 20429;
5. success: 201 with the Message resource as Twilio returns it (`sid` SM + 32 hex digits,
   `status` "queued", `direction` "outbound-api", `date_created` in RFC 2822, `num_media`,
   `error_code` null, `uri`, `subresource_uris`, ...); the typing indicator: 200
   `{"success": true}`.

Faithful: the error body `{"code", "message", "more_info", "status"}` with
`more_info` = https://www.twilio.com/docs/errors/<code>, the HTTP statuses of the codes above
(401, 404, 429, 400), messages in Twilio's words (`MESSAGES`), a `Twilio-Request-Id` header on
every answer; status callbacks carry what Twilio posts for WhatsApp (`MessageSid`,
`MessageStatus`, `SmsSid`, `SmsStatus`, `AccountSid`, `From`, `To`, `ApiVersion`,
`ChannelPrefix`, `ChannelInstallSid`, `ChannelToAddress`, `EventType` on delivered and read,
`ErrorCode` and `ChannelStatusMessage` on failed and undelivered), form-encoded and signed with
the auth token over the message's `StatusCallback` URL (`tests.conftest.twilio_post`): the URL
Twilio requested. They go to `to`, the gateway under test, as through a proxy in front of it.

Simplified:
- the 24-hour window, opt-outs and Meta's own errors (63016, 63018, 63049, ...) are not
  modelled: script them with `fail()` (Twilio mostly reports them later, in an `undelivered`
  status callback: `post_status(..., error_code=...)`);
- `Body` or `MediaUrl` beside a `ContentSid` is refused with 35127 as well (Twilio documents the
  conflict only for `Body` with `ContentVariables`); `Body` is counted in Python characters;
- the typing indicator accepts any well-formed `SM`/`MM` message SID (Twilio also checks that
  it is an inbound message of a live WhatsApp conversation); its refusals (a `channel` other
  than whatsapp, a malformed or missing `messageId`) are 400 with code 20422 "Invalid
  Parameter", a guess at the code;
- every scripted failure is answered at once; messages keep the status the last callback
  posted, and no other status moves by itself.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Final

import aiohttp
from aiohttp import web

from gateway_demo.standins._server import Answer, FakeServer, SlidingWindow, peak_in_window
from tests.conftest import twilio_post
from tests.fakes.media_cdn import SignedCDN

API_VERSION: Final = "2010-04-01"
BODY_MAX: Final = 1600
FORM: Final = "application/x-www-form-urlencoded"
CALLBACK_STATUSES: Final = frozenset(
    {"queued", "sending", "sent", "delivered", "read", "failed", "undelivered"}
)
_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_CONTENT_SID: Final = re.compile(r"HX[0-9a-fA-F]{32}")
_MESSAGE_SID: Final = re.compile(r"(?:SM|MM)[0-9a-fA-F]{32}")

MESSAGES: Final[dict[int, tuple[int, str]]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20422: (400, "Invalid Parameter"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service unavailable"),
    21211: (400, "Invalid 'To' Phone Number: {to}"),
    21408: (
        400,
        "Permission to send an SMS has not been enabled for the region indicated by the "
        "'To' number: {to}",
    ),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21609: (400, "Invalid 'StatusCallback'"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21619: (400, "A text message body or media urls must be specified."),
    21620: (400, "Invalid media URL(s)"),
    21623: (400, "Number of media files exceeds allowed limit"),
    21654: (400, "ContentSid Required"),
    21655: (400, "The ContentSid is Invalid"),
    21656: (400, "The Content Variables parameter is invalid."),
    21910: (400, "Invalid From and To pair. From and To should be of the same channel."),
    30001: (400, "Queue overflow"),
    35127: (400, "'Messages' Body and ContentVariables cannot be provided together"),
    63001: (400, "Channel could not authenticate the request."),
    63003: (400, "Channel could not find To address"),
    63005: (400, "Channel did not accept given content."),
    63007: (400, "Twilio could not find a Channel with the specified From address"),
    63012: (400, "Channel provider returned an internal service error"),
    63013: (400, "Channel policy violation"),
    63014: (400, "Channel message blocked by user action"),
    63016: (
        400,
        "Failed to send freeform message because you are outside the allowed window. If you "
        "are using WhatsApp, please use a Message Template.",
    ),
    63018: (400, "Rate limit exceeded for Channel"),
    63021: (400, "Channel invalid content error"),
    63024: (400, "Invalid message recipient"),
    63027: (400, "Template does not exist for a language and locale"),
    63032: (
        400,
        "We cannot send this message to this user because of a WhatsApp limitation.",
    ),
    63038: (400, "Account exceeded the daily messages limit"),
    63049: (400, "Meta chose not to deliver this WhatsApp marketing message."),
}
"""Twilio's error codes as the fake answers them: HTTP status and message (`{to}`, `{path}`
are filled in). Codes not listed answer 400 "Error <code>" unless given a message."""


@dataclass
class TwilioRequest:
    """One request the fake received, and what it answered."""

    arrived: float  # time.monotonic() on arrival
    route: str  # "messages", "typing" or "unknown"
    account_sid: str | None  # the path's account SID (Messages API)
    user: str | None  # the Basic auth user: an account SID or an API key SID
    form: dict[str, list[str]]  # every parameter as sent, repeated ones kept
    status: int
    response: Any  # decoded JSON answered, or None for a raw scripted answer

    def param(self, name: str) -> str | None:
        """The parameter's (first) value."""
        values = self.form.get(name)
        return values[0] if values else None

    @property
    def params(self) -> dict[str, str]:
        """Every parameter's first value (what a single-valued check wants to compare)."""
        return {k: v[0] for k, v in self.form.items() if v}

    @property
    def to(self) -> str | None:
        return self.param("To")

    @property
    def accepted(self) -> bool:
        """A message the fake queued (201)."""
        return self.route == "messages" and self.status == 201

    @property
    def sid(self) -> str | None:
        """The queued message's SID."""
        if self.accepted and isinstance(self.response, dict):
            sid = self.response.get("sid")
            return sid if isinstance(sid, str) else None
        return None


@dataclass
class Callback:
    """A status callback the fake posted, and the gateway's answer."""

    url: str  # where it went
    signed_url: str  # the URL it was signed over (the message's StatusCallback)
    params: dict[str, str]
    status: int
    body: str
    content_type: str | None


@dataclass
class _Failure:
    answer: Callable[[str], Answer]  # to → answer
    remaining: int
    to: str | None

    def matches(self, to: str | None) -> bool:
        return self.to is None or _digits(self.to) == _digits(to)


@dataclass
class _Message:
    resource: dict[str, Any]
    status_callback: str | None
    history: list[str] = field(default_factory=list)


class FakeTwilioAPI(FakeServer[TwilioRequest]):
    """Twilio's Messages API for one account and its WhatsApp `senders` (E.164 numbers)."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        senders: Iterable[str],
        api_keys: Mapping[str, str] | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys or {})  # SK... -> secret
        self.senders = {s.removeprefix("whatsapp:") for s in senders}
        self.messages: dict[str, _Message] = {}
        self.callbacks: list[Callback] = []
        self._failures: deque[_Failure] = deque()
        self._rate: SlidingWindow | None = None
        self._install_sid = "XE" + secrets.token_hex(16)  # the account's WhatsApp channel
        self.cdn = SignedCDN(no_authorization=True)
        self._media: dict[str, str | None] = {}  # ME sid -> its CDN path (None: deleted)

    @property
    def url(self) -> str:
        """What the gateway's `twilio.api_base` should be."""
        return self.root_url

    def build_app(self) -> web.Application:
        app = web.Application()
        messages = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"
        app.router.add_post(messages, self._messages)
        app.router.add_post("/v2/Indicators/Typing.json", self._typing)
        media = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages/{{message_sid}}/Media/{{sid}}"
        app.router.add_get(media, self._media_get)
        self.cdn.add_routes(app)
        app.router.add_route("*", "/{path:.*}", self._unknown_path)
        return app

    # -- scripting ---------------------------------------------------------------------------

    def fail(
        self,
        code: int,
        *,
        times: int = 1,
        to: str | None = None,
        http_status: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `times` messages (to `to`, if given: digits, `+E.164` or
        `whatsapp:+E.164`) with Twilio error `code`; status and message from `MESSAGES`
        unless given; `retry_after` adds a `Retry-After` header (seconds). Failures wait in a
        queue; each message takes the first that matches it. Typing indicators never do."""

        def answer(recipient: str) -> Answer:
            return _error(
                code, http_status=http_status, message=message, retry_after=retry_after,
                to=recipient,
            )  # fmt: skip

        self._failures.append(_Failure(answer, times, to))

    def enforce_rate(self, per_second: int | None) -> None:
        """Answer 429 (20429) once the account makes more than `per_second` accepted message
        requests in any 1 s window (None: no limit)."""
        self._rate = None if per_second is None else SlidingWindow(per_second, 1.0)

    def reset(self) -> None:
        """Also forget queued failures, the rate limit, messages and callbacks."""
        super().reset()
        self._failures.clear()
        self._rate = None
        self.messages.clear()
        self.callbacks.clear()

    # -- inspection --------------------------------------------------------------------------

    def sent_to(self, contact: str) -> list[TwilioRequest]:
        """Messages queued for `contact` (digits, `+E.164` or `whatsapp:+E.164`), oldest
        first."""
        return [r for r in self.requests if r.accepted and _digits(r.to) == _digits(contact)]

    def typing(self) -> list[TwilioRequest]:
        """Typing indicators answered 200, oldest first."""
        return [r for r in self.requests if r.route == "typing" and r.status == 200]

    def peak_per_second(self, sender: str | None = None) -> int:
        """Most queued messages (from one sender, or all) in any 1 s window of arrival."""
        return peak_in_window(
            r.arrived
            for r in self.requests
            if r.accepted and (sender is None or _digits(r.param("From")) == _digits(sender))
        )

    # -- status callbacks --------------------------------------------------------------------

    async def post_status(
        self,
        sid: str,
        status: str,
        *,
        to: str,
        error_code: int | None = None,
        channel_message: str | None = None,
    ) -> Callback:
        """Post the status callback Twilio sends when message `sid` becomes `status`
        (`sent`, `delivered`, `read`, `failed`, `undelivered`, ...) to `to` (the gateway's
        webhook URL as the test reaches it), signed over the message's `StatusCallback`.
        `error_code` goes with `failed`/`undelivered` (with `channel_message`, WhatsApp's own
        text)."""
        if status not in CALLBACK_STATUSES:
            raise ValueError(f"not a status Twilio posts for an outbound message: {status}")
        message = self.messages[sid]
        if not message.status_callback:
            raise ValueError(f"message {sid} was sent without a StatusCallback")
        params = self._callback_params(message, status, error_code, channel_message)
        body, headers = twilio_post(params, url=message.status_callback)
        headers["User-Agent"] = "TwilioProxy/1.1"
        async with (
            aiohttp.ClientSession() as session,
            session.post(to, data=body, headers=headers) as resp,
        ):
            answer = Callback(
                to,
                message.status_callback,
                params,
                resp.status,
                await resp.text(),
                resp.headers.get("Content-Type"),
            )
        message.resource["status"] = status
        message.history.append(status)
        self.callbacks.append(answer)
        return answer

    def _callback_params(
        self, message: _Message, status: str, error_code: int | None, channel_message: str | None
    ) -> dict[str, str]:
        r = message.resource
        to = r["to"]
        params = {
            "ChannelPrefix": "whatsapp",
            "ApiVersion": API_VERSION,
            "MessageStatus": status,
            "SmsSid": r["sid"],
            "SmsStatus": status,
            "ChannelInstallSid": self._install_sid,
            "To": to,
            "ChannelToAddress": to.removeprefix("whatsapp:"),
            "From": r["from"],
            "MessageSid": r["sid"],
            "AccountSid": r["account_sid"],
        }
        event = {"delivered": "DELIVERED", "read": "READ", "undelivered": "UNDELIVERED"}
        if status in event:
            params["EventType"] = event[status]
        if status in ("failed", "undelivered") and error_code is not None:
            params["ErrorCode"] = str(error_code)
            text = channel_message or MESSAGES.get(error_code, (400, f"Error {error_code}"))[1]
            params["ChannelStatusMessage"] = text.format(to=to, path="")
        return params

    # -- handlers ----------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        account_sid = request.match_info["account_sid"]
        user, form = _credentials(request)[0], await _form(request)
        answer = self.take_raw() or self._message_answer(request, account_sid, form, arrived)
        record = TwilioRequest(
            arrived, "messages", account_sid, user, form, answer.status, answer.payload
        )
        await self.record(record)
        await self.hold()
        return answer.response()

    async def _typing(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        user, form = _credentials(request)[0], await _form(request)
        answer = self.take_raw() or self._typing_answer(request, form)
        await self.record(
            TwilioRequest(arrived, "typing", None, user, form, answer.status, answer.payload)
        )
        await self.hold()
        return answer.response()

    def add_media(self, data: bytes, content_type: str = "image/jpeg") -> str:
        """A media received with an inbound message: its `MediaUrl0`."""
        message_sid, media_sid = "MM" + secrets.token_hex(16), "ME" + secrets.token_hex(16)
        self._media[media_sid] = self.cdn.add(data, content_type)
        account = f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}"
        return f"{account}/Messages/{message_sid}/Media/{media_sid}"

    def delete_media(self, url: str) -> None:
        """The media resource is deleted (its URL then answers 404, 20404)."""
        self._media[url.rsplit("/", 1)[1]] = None

    async def _media_get(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        user, _ = _credentials(request)
        answer = self.take_raw() or self._media_answer(request)
        await self.record(
            TwilioRequest(arrived, "media", request.match_info["account_sid"], user, {},
                          answer.status, answer.payload)
        )  # fmt: skip
        return answer.response()

    def _media_answer(self, request: web.Request) -> Answer:
        if not self._authenticated(request, request.match_info["account_sid"]):
            return _error(20003)
        path = self._media.get(request.match_info["sid"])
        if path is None:
            return _error(20404, path=request.path)
        headers = {**_request_id(), "Location": f"{self.url}{path}"}
        return Answer(307, b"", "application/xml", headers=headers)

    async def _unknown_path(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        answer = _error(20404, path=request.path)
        form = await _form(request)
        await self.record(
            TwilioRequest(arrived, "unknown", None, None, form, answer.status, answer.payload)
        )
        return answer.response()

    def _message_answer(
        self, request: web.Request, account_sid: str, form: dict[str, list[str]], now: float
    ) -> Answer:
        if not self._authenticated(request, account_sid):
            return _error(20003)
        problem = self._check(form)
        if problem:
            return problem
        to = form["To"][0]
        scripted = self._take_failure(to)
        if scripted:
            return scripted
        if self._rate is not None:
            if self._rate.wait_s(now) > 0:
                return _error(20429)
            self._rate.add(now)
        return Answer.json(201, self._queue(form), _request_id())

    def _typing_answer(self, request: web.Request, form: dict[str, list[str]]) -> Answer:
        if not self._authenticated(request, self.account_sid):
            return _error(20003)
        channel, message_id = _first(form, "channel"), _first(form, "messageId")
        if channel != "whatsapp" or not message_id or not _MESSAGE_SID.fullmatch(message_id):
            return _error(20422)
        return Answer.json(200, {"success": True}, _request_id())

    def _authenticated(self, request: web.Request, account_sid: str) -> bool:
        """Basic auth with the account's SID and auth token, or one of its API keys; and the
        path names that account."""
        user, password = _credentials(request)
        if user is None or password is None or account_sid != self.account_sid:
            return False
        if user == self.account_sid:
            return secrets.compare_digest(password, self.auth_token)
        key_secret = self.api_keys.get(user)
        return key_secret is not None and secrets.compare_digest(password, key_secret)

    def _check(self, form: dict[str, list[str]]) -> Answer | None:
        """None if Twilio would queue the message, else its answer."""
        to, sender = _first(form, "To"), _first(form, "From")
        if not to:
            return _error(21604)
        if not sender:
            return _error(21603)
        if sender.removeprefix("whatsapp:") not in self.senders or not sender.startswith(
            "whatsapp:"
        ):
            return _error(63007)
        if not to.startswith("whatsapp:"):
            return _error(21910)
        if not _E164.fullmatch(to.removeprefix("whatsapp:")):
            return _error(21211, to=to)
        return _check_content(form) or _check_urls(form)

    def _take_failure(self, to: str) -> Answer | None:
        for failure in self._failures:
            if failure.matches(to):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.answer(to)
        return None

    def _queue(self, form: dict[str, list[str]]) -> dict[str, Any]:
        """The Message resource of a message just queued (kept for its status callbacks)."""
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC))  # RFC 2822: "Tue, 11 Aug 2026 09:30:00 +0000"
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": _first(form, "Body") or "",
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form["From"][0],
            "messaging_service_sid": None,
            "num_media": str(len(form.get("MediaUrl", []))),
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": form["To"][0],
            "uri": f"{uri}.json",
        }
        self.messages[sid] = _Message(dict(resource), _first(form, "StatusCallback"))
        return resource


def _check_content(form: dict[str, list[str]]) -> Answer | None:
    body, media = _first(form, "Body"), form.get("MediaUrl", [])
    content_sid, variables = _first(form, "ContentSid"), _first(form, "ContentVariables")
    if variables is not None and content_sid is None:
        return _error(21654)
    if content_sid is not None:
        if not _CONTENT_SID.fullmatch(content_sid):
            return _error(21655)
        if variables is not None and not _valid_variables(variables):
            return _error(21656)
        if body or media:
            return _error(35127)
        return None
    if not body and not media:
        return _error(21619)
    if body and len(body) > BODY_MAX:
        return _error(21617)
    return None


def _valid_variables(raw: str) -> bool:
    """A JSON object whose values are non-empty strings (Twilio refuses null and "")."""
    try:
        variables = json.loads(raw)
    except ValueError:
        return False
    return isinstance(variables, dict) and all(isinstance(v, str) and v for v in variables.values())


def _check_urls(form: dict[str, list[str]]) -> Answer | None:
    media = form.get("MediaUrl", [])
    if len(media) > 1:
        return _error(21623)
    if any(not _http_url(url) for url in media):
        return _error(21620)
    callback = _first(form, "StatusCallback")
    if callback is not None and not _http_url(callback):
        return _error(21609)
    return None


# --- helpers ----------------------------------------------------------------------------------


def inbound_message(
    account_sid: str,
    sender: str,
    contact: str,
    body: str,
    *,
    sid: str | None = None,
    name: str = "Ana",
) -> dict[str, str]:
    """The form Twilio posts for a contact's WhatsApp text to the sender (both E.164 or
    digits), as PLATFORM-MORE §5.3 lists it; `sid` defaults to a fresh SM SID."""
    contact_e164 = "+" + _digits(contact)
    sender_e164 = "+" + _digits(sender)
    sid = sid or "SM" + secrets.token_hex(16)
    return {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": name,
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": _digits(contact),
        "SmsStatus": "received",
        "Body": body,
        "To": f"whatsapp:{sender_e164}",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": f"whatsapp:{contact_e164}",
        "ApiVersion": API_VERSION,
    }


def _error(
    code: int,
    *,
    http_status: int | None = None,
    message: str | None = None,
    retry_after: float | None = None,
    to: str = "",
    path: str = "",
) -> Answer:
    status, text = MESSAGES.get(code, (400, f"Error {code}"))
    status = http_status or status
    payload = {
        "code": code,
        "message": (message or text).format(to=to, path=path),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    headers = _request_id()
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    if code == 20003:
        headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    return Answer.json(status, payload, headers)


def _request_id() -> dict[str, str]:
    return {"Twilio-Request-Id": "RQ" + secrets.token_hex(16)}


def _credentials(request: web.Request) -> tuple[str | None, str | None]:
    """The Basic auth user and password, if the request has them."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None, None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else (None, None)


async def _form(request: web.Request) -> dict[str, list[str]]:
    """The form-encoded body (Twilio takes no JSON here: another body has no parameters)."""
    raw = await request.read()
    if not (request.content_type or "").startswith(FORM):
        return {}
    return urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)


def _first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _http_url(text: str) -> bool:
    try:
        url = urllib.parse.urlsplit(text)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.netloc)


def _digits(address: str | None) -> str:
    return "".join(c for c in address or "" if c.isdigit())
