"""A stand-in for the WhatsApp Cloud API send endpoint (Graph API), on 127.0.0.1.

    async with FakeGraphAPI(tokens={"100200300400500": "token-a"}) as fake:
        settings.whatsapp.api_base = fake.base_url   # http://127.0.0.1:PORT/v21.0
        fake.fail(131047)                            # the next send gets "Re-engagement message"
        ...
        assert fake.sent_to("+5511987650000")[0].body["text"]["body"] == "hi"

Route: `POST /v21.0/{phone_number_id}/messages`. Every request is recorded in `fake.requests`
(arrival time, phone number ID, token, decoded body, status answered, decoded answer).

Business app data (`gateway accounts sync`): `POST /v21.0/{phone_number_id}/smb_app_data`,
after the same token and proof checks as sends, answered by `_graph_sync.AppData` (`app_data`;
`onboard(number, at)` sets when a number was onboarded): a `request_id`, or 2593107 for a
second request of one kind, 2593108 past 24 h of the onboarding.

Received media (the gateway's media endpoint): `GET /v21.0/{media_id}` and the URL it gives,
held by `fake.media` (`_graph_media.GraphMedia`: `add`, `expire`; its docstring lists the
answers), after the same token and proof checks.

Webhook subscriptions (`gateway webhooks`): `GET`, `POST` and `DELETE
/v21.0/{waba_id}/subscribed_apps` for the WABAs in `wabas` (WABA id → its phone number ids),
with the token of any of its numbers. POST subscribes the fake's own app (`app_id`,
`app_name`) and DELETE unsubscribes it, both answered `{"success": true}`; GET lists the apps
subscribed, `{"data": [{"whatsapp_business_api_data": {"id", "link", "name"}}]}`, the shapes
of Meta's "Manage webhooks" page for solution providers (developers.facebook.com/
documentation/business-messaging/whatsapp/solution-providers/manage-webhooks). A wrong token
is 190 as on sends; a WABA the token's number is not in (or an unknown one) 100/33 naming the
request's method ("Unsupported get request. …"). `unsubscribe` drops the app as Meta does
after about an hour of failed deliveries; `subscribe` adds any app without a call.

What it checks, in the order Graph does:
1. raw scripted answers (`fail_status`), before anything else: a proxy's 502 page;
2. the token (`Authorization: Bearer`, or `?access_token=`): unknown or missing → 401, code
   190 "Invalid OAuth access token - Cannot parse access token"; then, for a number whose
   app requires the proof (`require_proof`), `appsecret_proof` (query or body), the hex
   HMAC-SHA256 of the token keyed by the app secret: missing → 400, code 100,
   GraphMethodException "API calls from the server require an appsecret_proof argument";
   wrong → the same with "Invalid appsecret_proof provided in the API argument" (Meta's
   texts, as its SDKs' users quote them);
3. the object: a phone number ID this token does not own (unknown, or another number's) →
   400, code 100, subcode 33, type GraphMethodException, "Unsupported post request. Object
   with ID '…' does not exist, cannot be loaded due to missing permissions, …";
4. the body (see `_graph_payload`, `_graph_interactive`): 400, code 100 (or 131009 for
   the limits of buttons, lists, CTA URL buttons and contacts);
5. scripted failures (`fail`), then throughput (`enforce_throughput`) → 429, code 130429;
6. success: `{"messaging_product": "whatsapp", "contacts": [{"input": <to as sent>,
   "wa_id": <its digits>}], "messages": [{"id": "wamid.…"}]}` (templates add
   `"message_status": "accepted"`); mark-as-read / typing → `{"success": true}`.

Faithful: paths, status codes, the error envelope and headers (see `graph_errors`), success
shapes, `type` defaulting to "text", message IDs unique per fake.

Simplified:
- one token per phone number ID (a real system-user token may cover every number of a WABA,
  so a cross-number token that the fake refuses could pass at Meta); a missing token is
  answered like an unparsable one;
- `wa_id` is the digits of `to` (Meta prepends the business number's country code when `+`
  is missing and may rewrite Brazilian and Mexican numbers); a BSUID send (`recipient`)
  answers `{"input": <recipient>, "user_id": <recipient>}`, a guess at the new shape;
- no pair-rate (131056), 24-hour-window (131047) or messaging-limit logic of its own: script
  those with `fail()`. Throughput is enforced only when asked, per number, on accepted sends;
- scripted failures and throughput apply to message sends, never to mark-as-read;
- `subscribed_apps`: no `override_callback_uri` (the POST's other parameters are ignored),
  no permission checks beyond the token, and no `paging` in the GET answer;
- any path other than these routes answers 400, code 2500 "Unknown path components".

Status webhooks (`status_item`): the `statuses[]` item Meta posts later about a message the
fake accepted (`id`, `status`, `timestamp`, `recipient_id` or `recipient_user_id`, the send's
`biz_opaque_callback_data`), a `failed` one with `errors` as Meta posts them
(`graph_errors.status_error`: the same code, title and details as the synchronous answer). The
test wraps it in an envelope, signs it with the app secret and posts it to the gateway, as Meta
would. Simplified: no `pricing` or `conversation` on the other statuses.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from gateway_demo.standins import graph_errors as errors
from gateway_demo.standins._graph_interactive import Problem
from gateway_demo.standins._graph_media import ATTACHMENTS_PATH, GraphMedia
from gateway_demo.standins._graph_payload import Kind, kind_of, recipient_of, validate
from gateway_demo.standins._graph_request import decode as _decode
from gateway_demo.standins._graph_request import proof as _proof
from gateway_demo.standins._graph_request import token as _token
from gateway_demo.standins._graph_sync import AppData
from gateway_demo.standins._server import Answer, FakeServer, SlidingWindow, peak_in_window

DEFAULT_VERSION = "v21.0"
DEFAULT_APP_ID = "1234567890123456"
"""The fake's own Meta app: what POST `subscribed_apps` subscribes."""
DEFAULT_APP_NAME = "Gateway Test App"


@dataclass
class GraphRequest:
    """One request the fake received, and what it answered."""

    arrived: float  # time.monotonic() on arrival
    phone_number_id: str
    token: str | None
    body: Any  # decoded JSON, or None when the body was not JSON
    status: int
    response: Any  # decoded JSON answered, or None for a raw scripted answer
    edge: str = "messages"
    """The path's last segment: `messages`, `smb_app_data`, or `subscribed_apps` (then
    `phone_number_id` holds the WABA id of the path)."""
    method: str = "POST"
    proof: str | None = None
    """The `appsecret_proof` the request carried (query or body), if any."""

    @property
    def kind(self) -> Kind:
        return kind_of(self.body) if self.edge == "messages" else "invalid"

    @property
    def recipient(self) -> str | None:
        return recipient_of(self.body)

    @property
    def accepted(self) -> bool:
        """A message send answered 200."""
        return self.status == 200 and self.kind == "message"


@dataclass
class _Failure:
    answer: Callable[[], Answer]  # a fresh fbtrace_id each time
    remaining: int
    recipient: str | None
    phone_number_id: str | None

    def matches(self, phone_number_id: str, recipient: str | None) -> bool:
        if self.phone_number_id is not None and self.phone_number_id != phone_number_id:
            return False
        return self.recipient is None or _same_recipient(self.recipient, recipient)


class FakeGraphAPI(FakeServer[GraphRequest]):
    """The Graph API messages endpoint for the phone number IDs in `tokens`."""

    def __init__(
        self,
        tokens: Mapping[str, str],
        *,
        wabas: Mapping[str, Iterable[str]] | None = None,
        app_id: str = DEFAULT_APP_ID,
        app_name: str = DEFAULT_APP_NAME,
        version: str = DEFAULT_VERSION,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.tokens = dict(tokens)  # phone_number_id -> access token
        self.wabas = {waba: tuple(numbers) for waba, numbers in (wabas or {}).items()}
        self.app_id = app_id
        self.app_name = app_name
        self.version = version
        self._apps: dict[str, dict[str, str]] = {}  # WABA id -> app id -> app name
        self._failures: deque[_Failure] = deque()
        self._throughput: dict[str, SlidingWindow] = {}
        self._proofs: dict[str, str] = {}  # token -> the secret of its app, which needs a proof
        self._ids = itertools.count(1)
        self.media = GraphMedia()
        """Received media, for the gateway's media endpoint."""
        self.app_data = AppData()
        """The numbers' Business app syncs (`smb_app_data`)."""

    @property
    def base_url(self) -> str:
        """What the gateway's `whatsapp.api_base` should be: `http://127.0.0.1:PORT/v21.0`."""
        return f"{self.root_url}/{self.version}"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/{self.version}/{{phone_number_id}}/messages", self._messages)
        app.router.add_post(f"/{self.version}/{{phone_number_id}}/smb_app_data", self._app_data)
        for method in ("GET", "POST", "DELETE"):
            path = f"/{self.version}/{{waba_id}}/subscribed_apps"
            app.router.add_route(method, path, self._subscribed_apps)
        app.router.add_get(f"/{self.version}/{{media_id:[0-9]+}}", self._media_lookup)
        app.router.add_get(ATTACHMENTS_PATH, self._media_download)
        app.router.add_route("*", "/{path:.*}", self._unknown_path)
        return app

    # -- scripting ---------------------------------------------------------------------------

    def fail(
        self,
        code: int,
        *,
        times: int = 1,
        recipient: str | None = None,
        phone_number_id: str | None = None,
        http_status: int | None = None,
        message: str | None = None,
        details: str | None = None,
    ) -> None:
        """Answer the next `times` matching message sends with Graph error `code`.

        The HTTP status, message and details come from `graph_errors.GRAPH_ERRORS` unless
        given. Failures are kept in a queue; each send takes the first one that matches it.
        """
        error = errors.error_for(code)
        status = http_status or error.http_status
        answer = partial(_error_answer, error, status=status, message=message, details=details)
        self._failures.append(_Failure(answer, times, recipient, phone_number_id))

    def enforce_throughput(self, phone_number_id: str, mps: int | None) -> None:
        """Answer 130429 once a number gets more than `mps` accepted sends in any 1 s window."""
        if mps is None:
            self._throughput.pop(phone_number_id, None)
        else:
            self._throughput[phone_number_id] = SlidingWindow(mps, 1.0)

    def require_proof(self, app_secret: str, *phone_number_ids: str) -> None:
        """The numbers' tokens belong to an app with "Require app secret" on: every call with
        them must carry its `appsecret_proof`."""
        for number in phone_number_ids:
            self._proofs[self.tokens[number]] = app_secret

    def reset(self) -> None:
        """Also forget queued failures and throughput enforcement."""
        super().reset()
        self._failures.clear()
        self._throughput.clear()

    def subscribe(self, waba_id: str, app_id: str | None = None, name: str | None = None) -> None:
        """Subscribe an app (the fake's own by default) to a WABA without a call."""
        self._apps.setdefault(waba_id, {})[app_id or self.app_id] = name or self.app_name

    def unsubscribe(self, waba_id: str, app_id: str | None = None) -> None:
        """Drop an app's subscription (the fake's own by default), as Meta does after about an
        hour of failed deliveries."""
        self._apps.get(waba_id, {}).pop(app_id or self.app_id, None)

    def subscribed_apps(self, waba_id: str) -> list[str]:
        """The ids of the apps subscribed to a WABA, in subscription order."""
        return list(self._apps.get(waba_id, {}))

    # -- inspection --------------------------------------------------------------------------

    def sent_to(self, recipient: str) -> list[GraphRequest]:
        """Accepted message sends to `recipient` (a leading `+` is ignored), oldest first."""
        return [r for r in self.requests if r.accepted and _same_recipient(recipient, r.recipient)]

    def status_item(
        self,
        message_id: str,
        status: str = "failed",
        *,
        error_code: int | None = None,
        timestamp: int | None = None,
    ) -> dict[str, Any]:
        """The `statuses[]` item Meta posts when a message this fake accepted becomes
        `status`; `error_code` (with `failed`) gives it that error, as Meta words it."""
        sent = next(r for r in self.requests if r.accepted and _message_id(r) == message_id)
        item: dict[str, Any] = {
            "id": message_id,
            "status": status,
            "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        }
        recipient = sent.recipient or ""
        if "to" in sent.body:
            item["recipient_id"] = "".join(c for c in recipient if c.isdigit())
        else:
            item["recipient_user_id"] = recipient
        if "biz_opaque_callback_data" in sent.body:
            item["biz_opaque_callback_data"] = sent.body["biz_opaque_callback_data"]
        if error_code is not None:
            item["errors"] = [errors.status_error(error_code)]
        return item

    def peak_per_second(self, phone_number_id: str | None = None) -> int:
        """Most accepted message sends (of one number, or all) in any 1 s window of arrival."""
        return peak_in_window(
            r.arrived
            for r in self.requests
            if r.accepted and phone_number_id in (None, r.phone_number_id)
        )

    # -- handlers ----------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        phone_number_id = request.match_info["phone_number_id"]
        token = _token(request)
        body = _decode(await request.read())
        proof = _proof(request, body)
        answer = self.take_raw() or self._answer(phone_number_id, token, proof, body, arrived)
        record = GraphRequest(
            arrived, phone_number_id, token, body, answer.status, answer.payload, proof=proof
        )
        await self.record(record)
        await self.hold()
        return answer.response()

    async def _app_data(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        number = request.match_info["phone_number_id"]
        token = _token(request)
        body = _decode(await request.read())
        proof = _proof(request, body)
        answer = (
            self.take_raw()
            or self._check_access(number, token, proof)
            or self.app_data.answer(number, body)
        )
        record = GraphRequest(
            arrived, number, token, body, answer.status, answer.payload, "smb_app_data",
            proof=proof,
        )  # fmt: skip
        await self.record(record)
        await self.hold()
        return answer.response()

    async def _subscribed_apps(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        waba_id = request.match_info["waba_id"]
        token = _token(request)
        body = _decode(await request.read())
        proof = _proof(request, body)
        answer = self.take_raw() or self._subscription(request.method, waba_id, token, proof)
        record = GraphRequest(
            arrived, waba_id, token, body, answer.status, answer.payload,
            "subscribed_apps", request.method, proof,
        )  # fmt: skip
        await self.record(record)
        await self.hold()
        return answer.response()

    def _subscription(
        self, method: str, waba_id: str, token: str | None, proof: str | None
    ) -> Answer:
        """As Graph answers: the token must be known (with its proof, if its app requires
        one) and belong to a number of the WABA."""
        if not token or token not in self.tokens.values():
            return _error_answer(errors.INVALID_TOKEN)
        refused = self._check_proof(token, proof)
        if refused:
            return refused
        if not any(self.tokens.get(n) == token for n in self.wabas.get(waba_id, ())):
            return _error_answer(errors.unknown_object(waba_id, method), subcode=33)
        if method == "GET":
            apps = self._apps.get(waba_id, {})
            return Answer.json(200, {"data": [_waba_app(i, name) for i, name in apps.items()]})
        if method == "POST":
            self.subscribe(waba_id)
        else:
            self.unsubscribe(waba_id)
        return Answer.json(200, {"success": True})

    async def _media_lookup(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        media_id = request.match_info["media_id"]
        token = _token(request)
        proof = _proof(request, None)
        answer = self.take_raw() or self._media_access(token, proof)
        if answer is None:
            numbers = self._numbers_of(token)
            wanted = request.query.get("phone_number_id")
            answer = self.media.lookup(media_id, numbers, wanted, self.root_url)
        record = GraphRequest(
            arrived, media_id, token, None, answer.status, answer.payload, "media", "GET", proof
        )
        await self.record(record)
        await self.hold()
        return answer.response()

    async def _media_download(self, request: web.Request) -> web.Response:
        token = _token(request)
        answer = self.take_raw() or self.media.download(
            request.query.get("hash", ""), token, self._numbers_of(token)
        )
        await self.hold()
        return answer.response()

    def _media_access(self, token: str | None, proof: str | None) -> Answer | None:
        if not token or token not in self.tokens.values():
            return _error_answer(errors.INVALID_TOKEN)
        return self._check_proof(token, proof)

    def _numbers_of(self, token: str | None) -> set[str]:
        return {number for number, owned in self.tokens.items() if token and owned == token}

    async def _unknown_path(self, request: web.Request) -> web.Response:
        error = errors.UNKNOWN_PATH
        payload = errors.envelope(error, message=f"{error.title}: {request.path}")
        return Answer.json(error.http_status, payload, errors.error_headers(payload)).response()

    def _answer(
        self, phone_number_id: str, token: str | None, proof: str | None, body: Any, now: float
    ) -> Answer:
        refused = self._check_access(phone_number_id, token, proof)
        if refused:
            return refused
        problem = validate(body)
        if problem:
            return _problem_answer(problem)
        if kind_of(body) == "status":
            return Answer.json(200, {"success": True})
        return self._send(phone_number_id, body, now)

    def _check_access(
        self, phone_number_id: str, token: str | None, proof: str | None
    ) -> Answer | None:
        if not token or token not in self.tokens.values():
            return _error_answer(errors.INVALID_TOKEN)
        refused = self._check_proof(token, proof)
        if refused:
            return refused
        if self.tokens.get(phone_number_id) != token:
            return _error_answer(errors.unknown_object(phone_number_id), subcode=33)
        return None

    def _check_proof(self, token: str, proof: str | None) -> Answer | None:
        secret = self._proofs.get(token)
        if secret is None:
            return None
        error = errors.proof_error(proof, token, secret)
        return _error_answer(error) if error is not None else None

    def _send(self, phone_number_id: str, body: dict[str, Any], now: float) -> Answer:
        scripted = self._take_failure(phone_number_id, recipient_of(body))
        if scripted:
            return scripted
        window = self._throughput.get(phone_number_id)
        if window is not None:
            if window.wait_s(now) > 0:
                return _error_answer(errors.GRAPH_ERRORS[130429])
            window.add(now)
        return Answer.json(200, self._accepted(body))

    def _take_failure(self, phone_number_id: str, recipient: str | None) -> Answer | None:
        for failure in self._failures:
            if failure.matches(phone_number_id, recipient):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.answer()
        return None

    def _accepted(self, body: dict[str, Any]) -> dict[str, Any]:
        if "to" in body:
            contact = {"input": body["to"], "wa_id": "".join(c for c in body["to"] if c.isdigit())}
        else:
            contact = {"input": body["recipient"], "user_id": body["recipient"]}
        message: dict[str, Any] = {"id": self._wamid(contact["input"])}
        if body.get("type") == "template":
            message["message_status"] = "accepted"
        return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [message]}

    def _wamid(self, recipient: str) -> str:
        raw = f"{recipient}|{next(self._ids):016X}".encode()
        return "wamid.HBg" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _message_id(request: GraphRequest) -> str | None:
    match request.response:
        case {"messages": [{"id": str(message_id)}, *_]}:
            return message_id
    return None


def _waba_app(app_id: str, name: str) -> dict[str, Any]:
    """One row of a WABA's `subscribed_apps`, keys in the order of Meta's sample."""
    link = f"https://www.facebook.com/games/?app_id={app_id}"
    return {"whatsapp_business_api_data": {"id": app_id, "link": link, "name": name}}


def _same_recipient(a: str, b: str | None) -> bool:
    return b is not None and a.lstrip("+") == b.lstrip("+")


def _error_answer(
    error: errors.GraphError,
    *,
    status: int | None = None,
    message: str | None = None,
    details: str | None = None,
    subcode: int | None = None,
) -> Answer:
    payload = errors.envelope(error, message=message, details=details, subcode=subcode)
    return Answer.json(status or error.http_status, payload, errors.error_headers(payload))


def _problem_answer(problem: Problem) -> Answer:
    error = errors.error_for(problem.code)
    payload = errors.envelope(error, message=problem.message, details=problem.details)
    if problem.details is None:  # Graph's "parameter is required" answers carry no error_data
        payload["error"].pop("error_data", None)
    return Answer.json(error.http_status, payload, errors.error_headers(payload))
