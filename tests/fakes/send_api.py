"""A stand-in for Meta's Send API, Messenger's and Instagram's, on 127.0.0.1.

    async with FakeSendAPI(pages={PAGE_A: "page-token-a"}, accounts={IG_A: "ig-token-a"}) as fake:
        settings = make_settings(redis_url, META_URL=fake.messenger_url, IG_URL=fake.instagram_url)
        fake.fail(551, subcode=1545041)    # the next message: "This person isn't available"
        ...
        assert fake.sent_to(PSID)[0].body["message"]["text"] == "Olá!"

One app serves both hosts, each under its host name as a path prefix, so a request sent to
the wrong host is caught: `POST /graph.facebook.com/v21.0/{page_id}/messages` with a Page
token (Messenger) and `POST /graph.instagram.com/v21.0/{ig_id}/messages` with an Instagram
User token (Instagram API with Instagram Login); `me` stands for the token's own Page or
account. Every request is recorded in `fake.requests` (arrival time, host, account id,
token, decoded body, status answered, decoded answer).

What it checks, in the order Graph does:
1. raw scripted answers (`fail_status`), before anything else: a proxy's 502 page;
2. the token (`Authorization: Bearer`, or `?access_token=`), good on its own host only:
   missing, unknown or the other host's → 190 "Invalid OAuth access token - Cannot parse
   access token"; then, for an account whose app requires the proof (`require_proof`),
   `appsecret_proof` (query or body), the hex HMAC-SHA256 of the token keyed by the app
   secret: missing → 400, code 100, GraphMethodException "API calls from the server require
   an appsecret_proof argument", wrong → "Invalid appsecret_proof provided in the API
   argument" (`graph_errors.proof_error`);
3. the object: a Page or account this token does not own → 100, subcode 33,
   GraphMethodException "Unsupported post request. Object with ID '…' does not exist, …";
4. the body, by the Send API's rules for that host (`_check`): (#100) answers; a recipient
   id that is not a Meta user id → 100/2018001 "No matching user found";
5. scripted failures (`fail`), then the account's call rate (`enforce_rate`) → 613;
6. success: `{"recipient_id", "message_id"}` for a message (Messenger ids `m_…`, Instagram
   ids base64 like Meta's `aWdfZ…`), `{"recipient_id"}` for a sender action.

Attachments (the gateway's media endpoint): `fake.cdn` (`media_cdn.SignedCDN`) serves the
files an event's `payload.url` names, `GET /cdn/<asset>?oh=…&oe=…` with no credentials, as
Meta's CDN does (`fake.root_url + fake.cdn.add(data, mime)`; `expire` → 403 "URL signature
expired").

Webhook subscriptions (`gateway webhooks`): `GET`, `POST` and `DELETE
/{host}/v21.0/{id}/subscribed_apps` with the Page's or account's token (checked as for
messages: 190, then 100/33 naming the method). POST takes `subscribed_fields` (comma-separated
or a JSON list; in the query or the body), required ("(#100) The parameter subscribed_fields
is required"), each one a field the host offers, else "(#100) Param subscribed_fields[<i>]
must be one of {…} - got "<field>"" and the whole call fails; it replaces the fake app's
(`app_id`, `app_name`) fields and answers `{"success": true}`. DELETE unsubscribes it
(`{"success": true}`). GET lists the apps: Messenger `{"data": [{"category", "link", "name",
"id", "subscribed_fields"}]}` (Messenger's webhook setup guide; `subscribed_fields` left out
for an app subscribed to none, as a Page answers then), Instagram `{"data": [{"id",
"subscribed_fields"}]}` (as implementers print Instagram Login's answer: UNCERTAIN whether it
also names the app). `unsubscribe` drops an app as Meta does after about an hour of failed
deliveries; `subscribe_app` sets any app's fields without a call. On Instagram, POST and DELETE
on `me` answer code 100 "Unsupported request - method type: post" (IGApiException), as one
implementer reports (UNCERTAIN); GET on `me` is the token's account.

Faithful: the error envelope `{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}` (the subcode only where Meta sends one), messages "(#<code>) <text>" with
Meta's texts for the codes of the Messenger Platform error page, the `WWW-Authenticate` and
`x-fb-trace-id` headers (`graph_errors.error_headers`), and on business-use-case throttling
(80001, 80002, 80006) the `X-Business-Use-Case-Usage` header carrying
`estimated_time_to_regain_access` in minutes, where Meta puts it. Text limits: Messenger 2000
characters, Instagram 1000 bytes of UTF-8; at most 13 quick replies, payload at most 1000
characters; `metadata` at most 1000 characters; the only tag accepted is HUMAN_AGENT; a
button template (both hosts: Meta's "Button template" pages for Messenger and for Instagram
Login) has text of at most 640 characters and 1-3 buttons (`web_url` with `url`, `postback`
with `payload`, ...) titled at most 20 characters (the texts of these answers are paraphrases).

Simplified:
- HTTP statuses follow `graph_errors` for the codes it shares (190 → 401, 10 and 200 → 403,
  2 → 503, 4 → 429) and Graph's class of the code otherwise (limits 429, 1200 → 500, the
  rest 400); the wording of the structural body checks is a paraphrase;
- no 24-hour window, blocks or app review of its own: script those with `fail()`;
- scripted failures apply to messages, never to sender actions; the rate applies to every
  call that passes the checks, per account, only when asked;
- Meta truncates quick reply titles over 20 characters: the fake accepts them as sent;
- whether Instagram takes `metadata` or `reply_to` is undocumented: the fake accepts both;
- `subscribed_apps`: the Page fields offered are a subset of Meta's list (about 90, the
  messaging ones and a few others), Instagram's the set Meta's own error lists for Instagram
  Login; no permission checks (`pages_manage_metadata`, `pages_messaging`), and fields valid
  but not enabled on the app are not refused;
- any other path answers 400, code 2500 "Unknown path components".
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal
from urllib.parse import parse_qs

from aiohttp import web

from gateway_demo.standins import graph_errors as graph
from gateway_demo.standins._graph_request import decode as _decode
from gateway_demo.standins._graph_request import proof as _proof
from gateway_demo.standins._graph_request import token as _token
from gateway_demo.standins._server import Answer, FakeServer, SlidingWindow
from tests.fakes.media_cdn import SignedCDN

DEFAULT_VERSION = "v21.0"
Platform = Literal["messenger", "instagram"]
HOSTS: dict[Platform, str] = {"messenger": "graph.facebook.com", "instagram": "graph.instagram.com"}
"""Each platform's API host: the path prefix its requests arrive under."""
Kind = Literal["message", "action", "invalid"]

MESSENGER_TEXT_MAX = 2000
INSTAGRAM_TEXT_MAX_BYTES = 1000
QUICK_REPLIES_MAX = 13
QUICK_REPLY_PAYLOAD_MAX = 1000
METADATA_MAX = 1000
BUTTON_TEMPLATE_TEXT_MAX = 640
TEMPLATE_BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_TYPES = frozenset({"web_url", "postback", "phone_number", "account_link"})
SENDER_ACTIONS = frozenset({"typing_on", "typing_off", "mark_seen", "react", "unreact"})
MESSAGING_TYPES = frozenset({"RESPONSE", "UPDATE", "MESSAGE_TAG"})
ATTACHMENT_TYPES: dict[Platform, frozenset[str]] = {
    "messenger": frozenset({"image", "audio", "video", "file", "template"}),
    "instagram": frozenset(
        {"image", "audio", "video", "file", "like_heart", "MEDIA_SHARE", "template"}
    ),
}
DEFAULT_APP_ID = "1234567890123456"
"""The fake's own Meta app: what POST `subscribed_apps` subscribes."""
DEFAULT_APP_NAME = "Gateway Test App"
WEBHOOK_FIELDS: dict[Platform, tuple[str, ...]] = {
    "messenger": (
        "feed", "mention", "name", "picture", "category", "conversations", "standby",
        "messages", "messaging_postbacks", "messaging_optins", "messaging_optouts",
        "message_deliveries", "messaging_referrals", "messaging_account_linking",
        "messaging_checkout_updates", "messaging_pre_checkouts", "messaging_payments",
        "message_reads", "messaging_handovers", "messaging_game_plays", "message_echoes",
        "group_feed", "messaging_customer_information", "messaging_feedback", "inbox_labels",
        "messaging_policy_enforcement", "message_reactions", "message_edits",
    ),
    "instagram": (
        "agent_messages", "messages", "messaging_postbacks", "messaging_seen",
        "messaging_handover", "messaging_referral", "messaging_optins", "message_reactions",
        "message_edit", "standby", "comments", "live_comments", "mentions", "story_insights",
        "creator_marketplace_projects", "creator_marketplace_invited_creator_onboarding",
        "delta", "story_reactions", "onboarding_welcome_message_series", "follow",
        "comment_poll_response", "story_poll_response", "share_to_story",
    ),
}  # fmt: skip
"""The fields `subscribed_apps` accepts per host. Instagram: verbatim the set Meta's error
lists for Instagram Login (quoted by two implementers); Messenger: the Page fields seen in
Meta's answers (its list has about 90)."""
BUC_CODES = {80001: "pages", 80002: "instagram", 80006: "messenger"}
"""Business-use-case throttling codes and the `type` Meta names in the usage header."""


@dataclass(frozen=True)
class SendError:
    """One Messenger Platform error as Meta answers it."""

    code: int
    http_status: int
    text: str
    subcode: int | None = None
    error_type: str = graph.OAUTH
    prefixed: bool = True

    @property
    def message(self) -> str:
        return f"(#{self.code}) {self.text}" if self.prefixed else self.text


_OUTSIDE_WINDOW = (
    "This message is sent outside of allowed window. Learn more about the new policy here: "
    "https://developers.facebook.com/docs/messenger-platform/policy-overview"
)
_CATALOG = [
    SendError(1200, 500, "Temporary send message failure. Please try again later."),
    SendError(2, 503, "An unexpected error has occurred. Please retry your request later."),
    SendError(3, 500, "Application does not have the capability to make this API call."),
    SendError(4, 429, "Application request limit reached"),
    SendError(4, 429, "Too many send requests to phone numbers", 2018022),
    SendError(17, 429, "User request limit reached"),
    SendError(32, 429, "Page request limit reached"),
    SendError(613, 429, "Calls to this API have exceeded the rate limit."),
    SendError(
        80001,
        429,
        "There have been too many calls to this Page account. Wait a bit and try again. For "
        "more info, please refer to https://developers.facebook.com/docs/graph-api/overview/"
        "rate-limiting.",
    ),
    SendError(
        80002,
        429,
        "There have been too many calls to this Instagram account. Wait a bit and try again. "
        "For more info, please refer to https://developers.facebook.com/docs/graph-api/"
        "overview/rate-limiting.",
    ),
    SendError(
        80006,
        429,
        "There have been too many messenger api calls to this Page account. Wait a bit and "
        "try again. For more info, please refer to https://developers.facebook.com/docs/"
        "graph-api/overview/rate-limiting.",
    ),
    SendError(10, 403, "Application does not have permission for this action"),
    SendError(10, 400, _OUTSIDE_WINDOW, 2018278),
    SendError(10, 400, "This message is sent outside of allowed window.", 2534022),
    SendError(
        10,
        400,
        "This message is sent outside of allowed window. You need page_messaging_subscriptions "
        "permission to be able to do it.",
        2018065,
    ),
    SendError(
        10,
        400,
        "This Person Cannot Receive Messages: This person isn't receiving messages from you "
        "right now.",
        2018108,
    ),
    SendError(551, 400, "This person isn't available right now.", 1545041),
    SendError(551, 400, "This person isn't available right now."),
    SendError(100, 400, "Invalid parameter"),
    SendError(100, 400, "No matching user found", 2018001),
    SendError(100, 400, "Attachment size exceeds allowable limit", 2018109),
    SendError(190, 401, "Invalid OAuth access token - Cannot parse access token", prefixed=False),
    SendError(
        190,
        401,
        "Error validating access token: The session has been invalidated because the user "
        "changed their password or Facebook has changed the session for security reasons.",
        460,
        prefixed=False,
    ),
    SendError(200, 403, "Permissions error"),
    SendError(
        200,
        403,
        "Cannot message users who are not admins, developers or testers of the app until "
        "pages_messaging permission is reviewed and the app is live.",
        2018028,
    ),
    SendError(
        200,
        403,
        "Message Not Sent: This person isn't receiving messages from you right now.",
        1545041,
    ),
]
SEND_ERRORS: Mapping[tuple[int, int | None], SendError] = {(e.code, e.subcode): e for e in _CATALOG}
INVALID_TOKEN = SEND_ERRORS[(190, None)]


def error_for(code: int, subcode: int | None = None) -> SendError:
    """The catalog entry, or a plain 400 for a code (and subcode) the catalog does not know."""
    known = SEND_ERRORS.get((code, subcode))
    if known is not None:
        return known
    base = SEND_ERRORS.get((code, None))
    if base is not None:
        return SendError(code, base.http_status, base.text, subcode)
    return SendError(code, 400, "An unknown error occurred", subcode)


def envelope(error: SendError, message: str | None = None) -> dict[str, Any]:
    """The `{"error": {...}}` body for `error`, keys in Meta's order."""
    body: dict[str, Any] = {
        "message": message or error.message,
        "type": error.error_type,
        "code": error.code,
    }
    if error.subcode is not None:
        body["error_subcode"] = error.subcode
    body["fbtrace_id"] = graph.fbtrace_id()
    return {"error": body}


@dataclass
class SendRequest:
    """One request the fake received, and what it answered."""

    arrived: float  # time.monotonic() on arrival
    platform: Platform
    account_id: str  # as in the path (`me` resolved when the token is known)
    token: str | None
    body: Any  # decoded JSON, or None when the body was not JSON
    status: int
    response: Any  # decoded JSON answered, or None for a raw scripted answer
    edge: str = "messages"
    """The path's last segment: `messages`, `pass_thread_control`, `take_thread_control`,
    `subscribed_apps`."""
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
        """A message (not a sender action) answered 200."""
        return self.status == 200 and self.kind == "message"


def kind_of(body: Any) -> Kind:
    if not isinstance(body, dict) or ("message" in body) == ("sender_action" in body):
        return "invalid"
    return "message" if "message" in body else "action"


def recipient_of(body: Any) -> str | None:
    match body:
        case {"recipient": {"id": str(recipient)}}:
            return recipient
    return None


_HANDOVER_EDGES = ("pass_thread_control", "take_thread_control")


@dataclass
class _Failure:
    answer: Callable[[str], Answer]  # a fresh fbtrace_id each time; gets the account id
    remaining: int
    recipient: str | None
    account_id: str | None

    def matches(self, account_id: str, recipient: str | None) -> bool:
        if self.account_id is not None and self.account_id != account_id:
            return False
        return self.recipient is None or self.recipient == recipient


@dataclass
class _App:
    name: str
    fields: list[str]


@dataclass
class _Route:
    platform: Platform
    tokens: dict[str, str] = field(default_factory=dict)  # account id -> token
    apps: dict[str, dict[str, _App]] = field(default_factory=dict)
    """Account id -> app id -> the app subscribed to it."""
    proofs: dict[str, str] = field(default_factory=dict)
    """Token -> the secret of its app, which requires `appsecret_proof`."""

    def owner(self, token: str) -> str | None:
        return next((a for a, t in self.tokens.items() if t == token), None)


class FakeSendAPI(FakeServer[SendRequest]):
    """The Send API for the Pages in `pages` and the Instagram accounts in `accounts`
    (id → access token)."""

    def __init__(
        self,
        pages: Mapping[str, str] | None = None,
        accounts: Mapping[str, str] | None = None,
        *,
        app_id: str = DEFAULT_APP_ID,
        app_name: str = DEFAULT_APP_NAME,
        version: str = DEFAULT_VERSION,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.version = version
        self.app_id = app_id
        self.app_name = app_name
        self._routes: dict[Platform, _Route] = {
            "messenger": _Route("messenger", dict(pages or {})),
            "instagram": _Route("instagram", dict(accounts or {})),
        }
        self._failures: deque[_Failure] = deque()
        self._rates: dict[str, SlidingWindow] = {}
        self._ids = itertools.count(1)
        self.cdn = SignedCDN()
        """Attachment files, fetched by their signed URL (no token)."""

    @property
    def messenger_url(self) -> str:
        """What `messenger.api_base` is, less its version (`META_URL` of the test config)."""
        return f"{self.root_url}/{HOSTS['messenger']}"

    @property
    def instagram_url(self) -> str:
        """What `instagram.api_base` is, less its version (`IG_URL` of the test config)."""
        return f"{self.root_url}/{HOSTS['instagram']}"

    def build_app(self) -> web.Application:
        app = web.Application()
        for platform, host in HOSTS.items():
            handler = partial(self._messages, self._routes[platform])
            app.router.add_post(f"/{host}/{self.version}/{{account_id}}/messages", handler)
            # The handover protocol (Conversation Routing): pass a thread to another app (the
            # Page Inbox), take it back. Answered `{"success": true}`.
            for edge in _HANDOVER_EDGES:
                control = partial(self._handover, self._routes[platform], edge)
                app.router.add_post(f"/{host}/{self.version}/{{account_id}}/{edge}", control)
            subscriptions = partial(self._subscribed_apps, self._routes[platform])
            for method in ("GET", "POST", "DELETE"):
                path = f"/{host}/{self.version}/{{account_id}}/subscribed_apps"
                app.router.add_route(method, path, subscriptions)
        self.cdn.add_routes(app)
        app.router.add_route("*", "/{path:.*}", self._unknown_path)
        return app

    # -- scripting ---------------------------------------------------------------------------

    def fail(
        self,
        code: int,
        *,
        subcode: int | None = None,
        times: int = 1,
        recipient: str | None = None,
        account_id: str | None = None,
        http_status: int | None = None,
        message: str | None = None,
        regain_minutes: int | None = None,
    ) -> None:
        """Answer the next `times` matching messages with error `code` (and `subcode`).

        The HTTP status and message come from the catalog unless given. A business-use-case
        code (80001, 80002, 80006) carries `X-Business-Use-Case-Usage` with
        `estimated_time_to_regain_access` = `regain_minutes` (default 1). Failures wait in a
        queue; each message takes the first that matches it.
        """
        error = error_for(code, subcode)
        answer = partial(
            _error_answer,
            error,
            status=http_status,
            message=message,
            regain_minutes=1 if regain_minutes is None else regain_minutes,
        )
        self._failures.append(_Failure(answer, times, recipient, account_id))

    def enforce_rate(self, account_id: str, per_second: int | None) -> None:
        """Answer 613 once an account makes more than `per_second` calls in any 1 s window."""
        if per_second is None:
            self._rates.pop(account_id, None)
        else:
            self._rates[account_id] = SlidingWindow(per_second, 1.0)

    def require_proof(self, app_secret: str, *account_ids: str) -> None:
        """The Pages' or accounts' tokens belong to an app with "Require app secret" on: every
        call with them must carry its `appsecret_proof`."""
        for account_id in account_ids:
            route = self._route_of(account_id)
            route.proofs[route.tokens[account_id]] = app_secret

    def reset(self) -> None:
        """Also forget queued failures and rate enforcement."""
        super().reset()
        self._failures.clear()
        self._rates.clear()

    def subscribe_app(
        self, account_id: str, fields: list[str], app_id: str | None = None, name: str = ""
    ) -> None:
        """Subscribe an app (the fake's own by default) to a Page or account with these fields,
        without a call: another app, or a partial subscription."""
        route = self._route_of(account_id)
        app = _App(name or self.app_name, list(fields))
        route.apps.setdefault(account_id, {})[app_id or self.app_id] = app

    def unsubscribe(self, account_id: str, app_id: str | None = None) -> None:
        """Drop an app's subscription (the fake's own by default), as Meta does after about an
        hour of failed deliveries."""
        self._route_of(account_id).apps.get(account_id, {}).pop(app_id or self.app_id, None)

    def subscribed_fields(self, account_id: str, app_id: str | None = None) -> list[str] | None:
        """An app's fields on a Page or account (the fake's own by default); None: none."""
        app = self._route_of(account_id).apps.get(account_id, {}).get(app_id or self.app_id)
        return None if app is None else list(app.fields)

    def _route_of(self, account_id: str) -> _Route:
        route = next((r for r in self._routes.values() if account_id in r.tokens), None)
        if route is None:
            raise KeyError(f"no Page or Instagram account {account_id} in this fake")
        return route

    # -- inspection --------------------------------------------------------------------------

    def sent_to(self, recipient: str) -> list[SendRequest]:
        """Accepted messages to `recipient`, oldest first."""
        return [r for r in self.requests if r.accepted and r.recipient == recipient]

    def actions_for(self, recipient: str) -> list[SendRequest]:
        """Sender actions (typing, mark seen, reactions) answered 200, oldest first."""
        return [
            r
            for r in self.requests
            if r.status == 200 and r.kind == "action" and r.recipient == recipient
        ]

    # -- handlers ----------------------------------------------------------------------------

    async def _messages(self, route: _Route, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        raw = await request.read()
        token = _token(request)
        body = _decode(raw)
        account_id = request.match_info["account_id"]
        if account_id == "me" and token is not None:
            account_id = route.owner(token) or account_id
        await self.hold()
        proof = _proof(request, body)
        answer = self.take_raw() or self._answer(route, account_id, (token, proof), body, arrived)
        await self.record(
            SendRequest(
                arrived,
                route.platform,
                account_id,
                token,
                body,
                answer.status,
                answer.payload,
                proof=proof,
            )
        )
        return answer.response()

    def handovers(self, recipient: str) -> list[SendRequest]:
        """pass_thread_control and take_thread_control calls about `recipient`, oldest first."""
        return [r for r in self.requests if r.edge != "messages" and r.recipient == recipient]

    async def _handover(self, route: _Route, edge: str, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        token = _token(request)
        body = _decode(await request.read())
        account_id = request.match_info["account_id"]
        proof = _proof(request, body)
        answer = self.take_raw() or self._handover_answer(
            route, edge, account_id, (token, proof), body
        )
        sent = SendRequest(
            arrived,
            route.platform,
            account_id,
            token,
            body,
            answer.status,
            answer.payload,
            edge,
            proof=proof,
        )
        await self.record(sent)
        return answer.response()

    def _handover_answer(
        self, route: _Route, edge: str, account_id: str, credentials: _Credentials, body: Any
    ) -> Answer:
        """As Meta answers: the token must be the Page's; `recipient.id` a PSID; passing
        needs `target_app_id` (digits); a queued failure for the recipient answers first."""
        refused = _check_access(route, account_id, credentials)
        if refused:
            return refused
        recipient = recipient_of(body)
        if recipient is None or not (recipient.isascii() and recipient.isdigit()):
            return _problem("(#100) The parameter recipient is required")
        if edge == "pass_thread_control":
            target = body.get("target_app_id")
            if not str(target).isdigit():
                return _problem("(#100) The parameter target_app_id is required")
        scripted = self._take_failure(account_id, recipient)
        if scripted:
            return scripted
        return Answer.json(200, {"success": True})

    async def _subscribed_apps(self, route: _Route, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        raw = await request.read()
        token = _token(request)
        account_id = request.match_info["account_id"]
        method = request.method
        me = account_id == "me"
        if me and token is not None:
            account_id = route.owner(token) or account_id
        proof = _proof(request, _decode(raw))
        answer = self.take_raw()
        if answer is None:
            if me and route.platform == "instagram" and method != "GET":
                answer = _ig_unsupported(method)
            else:
                fields = _fields_param(request, raw)
                answer = self._subscription(route, method, account_id, (token, proof), fields)
        sent = SendRequest(
            arrived, route.platform, account_id, token, _decode(raw), answer.status,
            answer.payload, "subscribed_apps", method, proof,
        )  # fmt: skip
        await self.record(sent)
        await self.hold()
        return answer.response()

    def _subscription(
        self,
        route: _Route,
        method: str,
        account_id: str,
        credentials: _Credentials,
        fields: str | None,
    ) -> Answer:
        refused = _check_access(route, account_id, credentials, method)
        if refused:
            return refused
        apps = route.apps.setdefault(account_id, {})
        if method == "GET":
            rows = [_app_row(route.platform, i, app) for i, app in apps.items()]
            return Answer.json(200, {"data": rows})
        if method == "DELETE":
            apps.pop(self.app_id, None)
            return Answer.json(200, {"success": True})
        wanted = _field_list(fields)
        problem = _check_fields(route.platform, wanted)
        if problem:
            return problem
        apps[self.app_id] = _App(self.app_name, wanted)
        return Answer.json(200, {"success": True})

    async def _unknown_path(self, request: web.Request) -> web.Response:
        error = graph.UNKNOWN_PATH
        payload = graph.envelope(error, message=f"{error.title}: {request.path}")
        payload["error"].pop("error_data", None)
        return Answer.json(error.http_status, payload, graph.error_headers(payload)).response()

    def _answer(
        self, route: _Route, account_id: str, credentials: _Credentials, body: Any, now: float
    ) -> Answer:
        refused = _check_access(route, account_id, credentials)
        if refused:
            return refused
        problem = _check(route.platform, body)
        if problem:
            return problem
        if kind_of(body) == "message":
            scripted = self._take_failure(account_id, recipient_of(body))
            if scripted:
                return scripted
        window = self._rates.get(account_id)
        if window is not None:
            if window.wait_s(now) > 0:
                return _error_answer(error_for(613))
            window.add(now)
        return Answer.json(200, self._accepted(route.platform, account_id, body))

    def _take_failure(self, account_id: str, recipient: str | None) -> Answer | None:
        for failure in self._failures:
            if failure.matches(account_id, recipient):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.answer(account_id)
        return None

    def _accepted(self, platform: Platform, account_id: str, body: dict[str, Any]) -> Any:
        recipient = recipient_of(body)
        if kind_of(body) == "action":
            return {"recipient_id": recipient}
        return {"recipient_id": recipient, "message_id": self._mid(platform, account_id)}

    def _mid(self, platform: Platform, account_id: str) -> str:
        serial = next(self._ids)
        if platform == "messenger":
            raw = f"{account_id}:{serial:016X}".encode()
            return "m_" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        raw = f"ig_message_item:1:IGMessageThread:{account_id}:{serial:019d}".encode()
        return "aWdfZ" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


_Credentials = tuple[str | None, str | None]
"""A request's token and `appsecret_proof`, as sent."""


def _check_access(
    route: _Route, account_id: str, credentials: _Credentials, method: str = "post"
) -> Answer | None:
    token, proof = credentials
    if not token or route.owner(token) is None:
        return _error_answer(INVALID_TOKEN)
    secret = route.proofs.get(token)
    wrong = graph.proof_error(proof, token, secret) if secret is not None else None
    if wrong is not None:
        error = SendError(wrong.code, wrong.http_status, wrong.title, None, wrong.error_type,
                          prefixed=False)  # fmt: skip
        return _error_answer(error)
    if route.tokens.get(account_id) != token:
        unknown = graph.unknown_object(account_id, method)
        error = SendError(100, 400, unknown.title, 33, graph.GRAPH_METHOD, prefixed=False)
        return _error_answer(error)
    return None


# --- subscribed_apps -------------------------------------------------------------------------


def _fields_param(request: web.Request, raw: bytes) -> str | None:
    """`subscribed_fields` as sent: in the query, a JSON body or a form body."""
    if "subscribed_fields" in request.query:
        return request.query["subscribed_fields"]
    body = _decode(raw)
    if isinstance(body, dict):
        value = body.get("subscribed_fields")
        if isinstance(value, list):
            return json.dumps(value)
        return value if isinstance(value, str) else None
    form = parse_qs(raw.decode("utf-8", "replace"))
    return form["subscribed_fields"][0] if "subscribed_fields" in form else None


def _field_list(value: str | None) -> list[str]:
    """Graph takes a list parameter comma-separated or as a JSON array."""
    if value is None:
        return []
    if value.startswith("["):
        decoded = _decode(value.encode())
        if isinstance(decoded, list):
            return [str(item) for item in decoded]
    return [item.strip() for item in value.split(",") if item.strip()]


def _check_fields(platform: Platform, fields: list[str]) -> Answer | None:
    if not fields:
        return _problem("The parameter subscribed_fields is required")
    offered = WEBHOOK_FIELDS[platform]
    for i, name in enumerate(fields):
        if name not in offered:
            allowed = ", ".join(offered)
            return _problem(
                f'Param subscribed_fields[{i}] must be one of {{{allowed}}} - got "{name}"'
            )
    return None


def _app_row(platform: Platform, app_id: str, app: _App) -> dict[str, Any]:
    """One app of a GET `subscribed_apps`, keys in the order of Meta's samples."""
    if platform == "instagram":
        return {"id": app_id, "subscribed_fields": list(app.fields)}
    row: dict[str, Any] = {
        "category": "Business",
        "link": f"https://www.facebook.com/games/?app_id={app_id}",
        "name": app.name,
        "id": app_id,
    }
    if app.fields:
        row["subscribed_fields"] = list(app.fields)
    return row


def _ig_unsupported(method: str) -> Answer:
    """What one implementer saw for POST `me/subscribed_apps` on Instagram Login."""
    error = SendError(
        100, 400, f"Unsupported request - method type: {method.lower()}",
        error_type="IGApiException", prefixed=False,
    )  # fmt: skip
    return _error_answer(error)


# --- body checks ------------------------------------------------------------------------------


def _problem(text: str, subcode: int | None = None, code: int = 100) -> Answer:
    return _error_answer(SendError(code, 400, text, subcode))


def _check(platform: Platform, body: Any) -> Answer | None:
    """None if the Send API would take the body, else its answer."""
    if not isinstance(body, dict) or not isinstance(body.get("recipient"), dict):
        return _problem("The parameter recipient is required")
    recipient = body["recipient"].get("id")
    if not isinstance(recipient, str) or not recipient:
        return _problem("The parameter recipient is required")
    if not (recipient.isascii() and recipient.isdigit()):
        return _error_answer(error_for(100, 2018001))
    has_message, has_action = "message" in body, "sender_action" in body
    if has_message and has_action:
        return _problem("Cannot send both message and state at the same time.")
    if has_action:
        return _check_action(body["sender_action"], body.get("payload"))
    if not has_message:
        return _problem("Must send either message or state")
    return _check_messaging(platform, body) or _check_message(platform, body)


def _check_action(action: Any, payload: Any) -> Answer | None:
    if action not in SENDER_ACTIONS:
        allowed = ", ".join(sorted(a.upper() for a in SENDER_ACTIONS))
        return _problem(f'Param sender_action must be one of {{{allowed}}} - got "{action}".')
    if action not in ("react", "unreact"):
        return None
    if not isinstance(payload, dict) or not _text(payload.get("message_id")):
        return _problem("The parameter payload[message_id] is required")
    if action == "react" and not _text(payload.get("reaction")):
        return _problem("The parameter payload[reaction] is required")
    return None


def _check_messaging(platform: Platform, body: dict[str, Any]) -> Answer | None:
    """`messaging_type` and `tag`: Messenger requires the type, Instagram needs it only with
    a tag; HUMAN_AGENT is the one tag left (the others were retired)."""
    messaging_type = body.get("messaging_type")
    if messaging_type is None:
        if platform == "messenger":
            return _problem("The parameter messaging_type is required")
    elif messaging_type not in MESSAGING_TYPES:
        allowed = ", ".join(sorted(MESSAGING_TYPES))
        return _problem(
            f'Param messaging_type must be one of {{{allowed}}} - got "{messaging_type}".'
        )
    tag = body.get("tag")
    if (messaging_type == "MESSAGE_TAG") != (tag is not None):
        return _problem("A tag is required with messaging_type MESSAGE_TAG, and only with it")
    if tag is not None and tag != "HUMAN_AGENT":
        return _problem(f'Param tag must be one of {{HUMAN_AGENT}} - got "{tag}".')
    reply_to = body.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict) and _text(reply_to.get("mid"))):
        return _problem("Param reply_to must be an object with a mid")
    return None


def _check_message(platform: Platform, body: dict[str, Any]) -> Answer | None:
    message = body["message"]
    if not isinstance(message, dict):
        return _problem("Param message must be a JSON object.")
    has_text, has_attachment = "text" in message, "attachment" in message
    if has_text and has_attachment:
        return _problem("Only one of message[text] and message[attachment] can be set")
    if not has_text and not has_attachment:
        return _problem("Message cannot be empty, must provide valid attachment or text")
    problem = (
        _check_text(platform, message["text"])
        if has_text
        else _check_attachment(platform, message["attachment"])
    )
    return problem or _check_quick_replies(platform, message) or _check_metadata(message)


def _check_text(platform: Platform, text: Any) -> Answer | None:
    if not _text(text):
        return _error_answer(SendError(100, 400, "Message cannot be empty.", 2018034))
    if platform == "messenger" and len(text) > MESSENGER_TEXT_MAX:
        return _problem(
            f"Length of param message[text] must be less than or equal to {MESSENGER_TEXT_MAX}"
        )
    if platform == "instagram" and len(text.encode()) > INSTAGRAM_TEXT_MAX_BYTES:
        return _problem(
            "Length of param message[text] must be less than or equal to "
            f"{INSTAGRAM_TEXT_MAX_BYTES} bytes"
        )
    return None


def _check_attachment(platform: Platform, attachment: Any) -> Answer | None:
    if not isinstance(attachment, dict) or attachment.get("type") not in ATTACHMENT_TYPES[platform]:
        allowed = ", ".join(sorted(ATTACHMENT_TYPES[platform]))
        return _problem(f"Param message[attachment][type] must be one of {{{allowed}}}")
    if attachment["type"] == "template":
        return _check_template(attachment.get("payload"))
    if attachment["type"] in ("like_heart", "MEDIA_SHARE"):
        return None
    payload = attachment.get("payload")
    if not isinstance(payload, dict) or not (
        _text(payload.get("url")) or _text(payload.get("attachment_id"))
    ):
        return _problem("Param message[attachment][payload] needs a url or an attachment_id")
    return None


def _check_template(payload: Any) -> Answer | None:
    """The button template (Messenger's and Instagram's "Button template" pages): text at
    most 640 characters, 1-3 buttons, titles at most 20; other templates pass unchecked."""
    if not isinstance(payload, dict) or not _text(payload.get("template_type")):
        return _problem("The parameter message[attachment][payload][template_type] is required")
    if payload["template_type"] != "button":
        return None
    text = payload.get("text")
    if not isinstance(text, str) or not text:
        return _problem("The parameter message[attachment][payload][text] is required")
    if len(text) > BUTTON_TEMPLATE_TEXT_MAX:
        return _problem(
            "Length of param message[attachment][payload][text] must be less than or equal "
            f"to {BUTTON_TEMPLATE_TEXT_MAX}"
        )
    buttons = payload.get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= TEMPLATE_BUTTONS_MAX:
        return _problem(
            f"Param message[attachment][payload][buttons] must have 1 to {TEMPLATE_BUTTONS_MAX} "
            "items"
        )
    for button in buttons:
        problem = _check_button(button)
        if problem:
            return problem
    return None


def _check_button(button: Any) -> Answer | None:
    if not isinstance(button, dict) or button.get("type") not in BUTTON_TYPES:
        allowed = ", ".join(sorted(BUTTON_TYPES))
        return _problem(f"Param buttons[type] must be one of {{{allowed}}}")
    title = button.get("title")
    if button["type"] != "account_link" and not _text(title):
        return _problem("The parameter buttons[title] is required")
    if isinstance(title, str) and len(title) > BUTTON_TITLE_MAX:
        return _problem(
            f"Length of param buttons[title] must be less than or equal to {BUTTON_TITLE_MAX}"
        )
    needs = {
        "web_url": "url",
        "account_link": "url",
        "postback": "payload",
        "phone_number": "payload",
    }
    if not _text(button.get(needs[button["type"]])):
        return _problem(f"The parameter buttons[{needs[button['type']]}] is required")
    return None


def _check_quick_replies(platform: Platform, message: dict[str, Any]) -> Answer | None:
    replies = message.get("quick_replies")
    if replies is None:
        return None
    if not isinstance(replies, list) or not 1 <= len(replies) <= QUICK_REPLIES_MAX:
        return _problem(f"Param message[quick_replies] must have 1 to {QUICK_REPLIES_MAX} items")
    allowed = {"text"} if platform == "instagram" else {"text", "user_phone_number", "user_email"}
    for reply in replies:
        if not isinstance(reply, dict) or reply.get("content_type") not in allowed:
            return _problem("Param message[quick_replies][content_type] is not valid")
        if reply["content_type"] != "text":
            continue
        if not _text(reply.get("title")) or not _text(reply.get("payload")):
            return _problem("A text quick reply needs a title and a payload")
        if len(reply["payload"]) > QUICK_REPLY_PAYLOAD_MAX:
            return _problem(
                "Length of param message[quick_replies][payload] must be less than or equal "
                f"to {QUICK_REPLY_PAYLOAD_MAX}"
            )
    return None


def _check_metadata(message: dict[str, Any]) -> Answer | None:
    metadata = message.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, str) or len(metadata) > METADATA_MAX:
        return _problem(
            f"Length of param message[metadata] must be less than or equal to {METADATA_MAX}"
        )
    return None


# --- helpers ----------------------------------------------------------------------------------


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _error_answer(
    error: SendError,
    account_id: str = "",
    *,
    status: int | None = None,
    message: str | None = None,
    regain_minutes: int = 1,
) -> Answer:
    payload = envelope(error, message)
    headers = graph.error_headers(payload)
    if error.code in BUC_CODES:
        headers["X-Business-Use-Case-Usage"] = _usage(error.code, account_id or "0", regain_minutes)
    return Answer.json(status or error.http_status, payload, headers)


def _usage(code: int, account_id: str, regain_minutes: int) -> str:
    """The business-use-case usage header of a throttled account, as Meta sends it."""
    usage = {
        "type": BUC_CODES[code],
        "call_count": 100,
        "total_cputime": 25,
        "total_time": 25,
        "estimated_time_to_regain_access": regain_minutes,
    }
    return json.dumps({account_id: [usage]}, separators=(",", ":"))
