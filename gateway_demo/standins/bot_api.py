"""A stand-in for the Telegram Bot API, on 127.0.0.1.

    async with FakeBotAPI(tokens=["7000000001:AAH..."]) as fake:
        settings.telegram.api_base = fake.base_url   # http://127.0.0.1:PORT
        fake.block(4242)                             # 403 "Forbidden: bot was blocked by the user"
        fake.fail(429, times=1, retry_after=3)       # the next call gets 429, retry_after 3
        fake.webhook(token).pending_update_count = 3 # what getWebhookInfo reports
        fake.forum(-1001234567890, topics=[5102])    # a forum supergroup and its topics
        ...

Route: `/bot<token>/<method>` (POST or GET), parameters as JSON, form (urlencoded or
multipart) or query string, like the real API. Methods: sendMessage, sendPhoto, sendDocument,
sendAudio, sendVoice, sendVideo, sendLocation, sendVenue, sendSticker, sendContact,
sendChatAction, answerCallbackQuery, setMessageReaction, and setWebhook, getWebhookInfo,
deleteWebhook on each bot's webhook state (`webhook(token)`; see `_bot_methods`). Every
request is recorded in `fake.requests`.

Files (the gateway's media endpoint): `getFile` and `GET /file/bot<token>/<file_path>` on
the files of `fake.files` (`_bot_files.BotFiles`: `add`, `forget`; its docstring lists the
answers).

What it answers, in order:
1. raw scripted answers (`fail_status`), before anything else (a 502 page from a proxy);
2. anything but `/bot<id>:<secret>/<method>` → 404 `{"ok":false,"error_code":404,
   "description":"Not Found"}`; a well-formed but unknown token → 401 "Unauthorized"; an
   unknown method → 404 "Not Found";
3. unparsable JSON → 400 "Bad Request: can't parse JSON object"; missing `chat_id` → 400
   "Bad Request: chat_id is empty"; then the method's own checks (400 "Bad Request: …"),
   including a location or phone-number button sent to a group (`check_private_buttons`);
4. the chat's state: `block` → 403 "Forbidden: bot was blocked by the user", `never_started`
   → 403 "Forbidden: bot can't initiate conversation with a user", `chat_not_found` → 400
   "Bad Request: chat not found";
5. scripted failures (`fail`), then the flood limits if `enforce_limits()` was called: 429
   "Too Many Requests: retry after N" with `parameters.retry_after` = N, the seconds until the
   call would fit;
6. success: `{"ok": true, "result": <Message>}`, or `{"ok": true, "result": true}`; the webhook
   methods: `{"ok": true, "result": true, "description": "Webhook was set"}` (or their other
   descriptions, or their 400 refusals), `{"ok": true, "result": <WebhookInfo>}`; with
   `enforce_limits()`, a second setWebhook with a URL within 1 s of the last is 429 "Too Many
   Requests: retry after 1", as Client.cpp `process_set_webhook_query` answers.

Forums (`forum`): a `message_thread_id` (a 32-bit integer; unreadable or negative counts as
none) sent to a forum chat must name one of its topics, and never the General topic (1): else
400 "Bad Request: message thread not found", as Client.cpp `check_message_topic` answers; in
any other chat the server ignores it. A message sent into a topic comes back with
`message_thread_id` and `is_topic_message: true`, and a message with an inline keyboard with
its `reply_markup`, as in real results.

Business connections (`connect_business`): a call carrying a connected
`business_connection_id` goes to the customer's chat with the business account, so the
customer's own chat with the bot (never started, blocked) does not matter; an unknown one is
400 "Bad Request: BUSINESS_CONNECTION_INVALID" (wording approximate). The methods that take no
such parameter (setMessageReaction, answerCallbackQuery) ignore it, as Telegram ignores
unknown parameters.

Faithful: the error body (`ok`, `error_code`, `description`, optional `parameters` with
`retry_after` or `migrate_to_chat_id`), HTTP status equal to `error_code`, the descriptions
listed above, the result shapes.

Simplified: every chat exists and has started the bot unless scripted otherwise; limits
(when enforced) are strict sliding windows, where Telegram lets short bursts through: a private
chat more than 1 message in any 1 s, a group (negative id) more than 20 in any 60 s, the bot
more than 30 in any 1 s. Only the ten send* methods other than sendChatAction count, and
only accepted ones. The JSON-parse description is approximate. The fake never connects to a
webhook URL, so it never delivers updates nor fails to (set `last_error_*` on the state).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import time
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway_demo.standins import _bot_methods as methods
from gateway_demo.standins._bot_files import BotFiles
from gateway_demo.standins._bot_methods import ChatId, parse_chat_id
from gateway_demo.standins._server import Answer, FakeServer, SlidingWindow, peak_in_window

_PATH = re.compile(r"/bot(?P<token>[^/]*)/(?P<method>[^/]+)")
_TOKEN = re.compile(r"(?P<bot_id>[0-9]+):[A-Za-z0-9_-]+")
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
BLOCKED = "Forbidden: bot was blocked by the user"
NOT_STARTED = "Forbidden: bot can't initiate conversation with a user"
MIGRATED = "Bad Request: group chat was upgraded to a supergroup chat"
BAD_JSON = "Bad Request: can't parse JSON object"
BUSINESS_INVALID = "Bad Request: BUSINESS_CONNECTION_INVALID"


@dataclass
class BotRequest:
    """One request the fake received, and what it answered."""

    arrived: float  # time.monotonic() on arrival
    token: str
    method: str  # canonical spelling when known, else as requested
    chat_id: ChatId | None
    params: dict[str, Any] | None  # None when the JSON body could not be parsed
    status: int
    response: Any  # decoded JSON answered, or None for a raw scripted answer

    @property
    def sent(self) -> bool:
        """A message-sending call (send*, not sendChatAction) answered 200."""
        return self.status == 200 and self.method in methods.SENDING_METHODS


@dataclass
class _Failure:
    answer: Answer
    remaining: int
    chat_id: ChatId | None
    method: str | None

    def matches(self, method: str, chat_id: ChatId | None) -> bool:
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id


@dataclass
class _Limits:
    per_chat_per_s: int
    group_per_min: int
    bot_per_s: int


@dataclass(frozen=True)
class _Call:
    """A request once its token and method are known."""

    token: str
    method: str
    params: dict[str, Any]
    chat_id: ChatId | None


class FakeBotAPI(FakeServer[BotRequest]):
    """The Bot API for the bot tokens given (`<bot_id>:<secret>`)."""

    def __init__(self, tokens: Iterable[str], *, port: int = 0) -> None:
        super().__init__(port=port)
        self.tokens = set(tokens)
        self._chat_states: dict[ChatId, tuple[int, str]] = {}
        self._failures: deque[_Failure] = deque()
        self._limits: _Limits | None = None
        self._windows: dict[tuple[str, ChatId | None], SlidingWindow] = {}
        self._message_ids: defaultdict[tuple[str, ChatId], itertools.count[int]] = defaultdict(
            lambda: itertools.count(1)
        )
        self._file_ids = itertools.count(1)
        self._business: set[str] = set()
        self._forums: dict[ChatId, tuple[int, ...]] = {}
        self._webhooks: dict[str, methods.WebhookState] = {}
        self._webhook_set_at: dict[str, float] = {}
        self.files = BotFiles()
        """Files the bots received, for the gateway's media endpoint."""

    @property
    def base_url(self) -> str:
        """What the gateway's `telegram.api_base` should be: `http://127.0.0.1:PORT`."""
        return self.root_url

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._download)
        app.router.add_route("*", "/{path:.*}", self._handle)
        return app

    # -- scripting ---------------------------------------------------------------------------

    def block(self, chat_id: ChatId) -> None:
        """The user blocked the bot: 403 until `unblock`."""
        self._chat_states[_chat_key(chat_id)] = (403, BLOCKED)

    def never_started(self, chat_id: ChatId) -> None:
        """The user never pressed Start: 403 until `unblock`."""
        self._chat_states[_chat_key(chat_id)] = (403, NOT_STARTED)

    def chat_not_found(self, chat_id: ChatId) -> None:
        """The chat does not exist for this bot: 400 until `unblock`."""
        self._chat_states[_chat_key(chat_id)] = (400, methods.CHAT_NOT_FOUND)

    def connect_business(self, connection_id: str) -> None:
        """A business account connected the bot: calls through `connection_id` reach its
        customers' chats with that account."""
        self._business.add(connection_id)

    def forum(self, chat_id: ChatId, topics: Iterable[int]) -> None:
        """The chat is a forum with these topics (their `message_thread_id`s)."""
        self._forums[_chat_key(chat_id)] = tuple(topics)

    def unblock(self, chat_id: ChatId) -> None:
        """The user (re)started the bot."""
        self._chat_states.pop(_chat_key(chat_id), None)

    def webhook(self, token: str) -> methods.WebhookState:
        """The bot's webhook as the fake keeps it: tests read it, and set
        `pending_update_count`, `last_error_date` and `last_error_message` on it."""
        if token not in self.tokens:
            raise KeyError("not a token of this fake")
        return self._webhooks.setdefault(token, methods.WebhookState())

    def fail(
        self,
        error_code: int,
        description: str | None = None,
        *,
        times: int = 1,
        chat_id: ChatId | None = None,
        method: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        """Answer the next `times` matching calls (any method unless `method` is given).

        A 429 always carries `parameters.retry_after` (1 unless given) and, by default, the
        description "Too Many Requests: retry after N"; `migrate_to_chat_id` defaults the
        description to Telegram's "group chat was upgraded to a supergroup chat".
        """
        parameters: dict[str, int] = {}
        if error_code == 429 or retry_after is not None:
            parameters["retry_after"] = retry_after or 1
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        description = description or _default_description(error_code, parameters)
        answer = _error(error_code, description, parameters or None)
        key = None if chat_id is None else _chat_key(chat_id)
        self._failures.append(_Failure(answer, times, key, method))

    def enforce_limits(
        self, *, per_chat_per_s: int = 1, group_per_min: int = 20, bot_per_s: int = 30
    ) -> None:
        """Answer 429 (with a computed retry_after) to sends over Telegram's flood limits."""
        self._limits = _Limits(per_chat_per_s, group_per_min, bot_per_s)
        self._windows.clear()
        self._webhook_set_at.clear()

    def reset(self) -> None:
        """Also forget scripted failures, chat states, webhooks and limit enforcement."""
        super().reset()
        self._failures.clear()
        self._chat_states.clear()
        self._business.clear()
        self._forums.clear()
        self._limits = None
        self._windows.clear()
        self._webhooks.clear()
        self._webhook_set_at.clear()

    # -- inspection --------------------------------------------------------------------------

    def sent_to(self, chat_id: ChatId) -> list[BotRequest]:
        """Accepted message-sending calls to `chat_id`, oldest first."""
        key = _chat_key(chat_id)
        return [r for r in self.requests if r.sent and r.chat_id == key]

    def peak_per_second(self, chat_id: ChatId | None = None, *, token: str | None = None) -> int:
        """Most accepted sends (to one chat, or all) in any 1 s window of arrival."""
        key = None if chat_id is None else _chat_key(chat_id)
        return peak_in_window(
            r.arrived
            for r in self.requests
            if r.sent and key in (None, r.chat_id) and token in (None, r.token)
        )

    # -- handler -----------------------------------------------------------------------------

    async def _download(self, request: web.Request) -> web.Response:
        """A file's bytes, by the path getFile gave (the token in the path, as Telegram's)."""
        answer = self.take_raw() or self.files.download(
            request.match_info["token"], request.match_info["file_path"]
        )
        await self.hold()
        return answer.response()

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        token, method = _route(request.path)
        params = await _params(request)
        chat_id = parse_chat_id(params.get("chat_id")) if params else None
        canonical = methods.METHODS.get(method.lower(), method)
        answer = self.take_raw() or self._answer(token, canonical, params, chat_id, arrived)
        record = BotRequest(
            arrived, token, canonical, chat_id, params, answer.status, answer.payload
        )
        await self.record(record)
        await self.hold()
        return answer.response()

    def _answer(
        self,
        token: str,
        method: str,
        params: dict[str, Any] | None,
        chat_id: ChatId | None,
        now: float,
    ) -> Answer:
        if method.lower() == "getfile" and token in self.tokens and params is not None:
            status, result = self.files.get_file(token, params)
            if status != 200:
                return _error(status, result)
            return Answer.json(200, {"ok": True, "result": result})
        refused = self._check_route(token, method)
        if refused:
            return refused
        if params is None:
            return _error(400, BAD_JSON)
        call = _Call(token, method, params, chat_id)
        return self._check_call(call) or self._scripted(call) or self._deliver(call, now)

    def _check_route(self, token: str, method: str) -> Answer | None:
        if not _TOKEN.fullmatch(token):
            return _error(404, "Not Found")
        if token not in self.tokens:
            return _error(401, "Unauthorized")
        if method not in methods.METHODS.values():
            return _error(404, "Not Found")
        return None

    def _check_call(self, call: _Call) -> Answer | None:
        if call.method not in methods.CHATLESS:
            if call.chat_id is None:
                return _error(400, methods.CHAT_ID_EMPTY)
            if not isinstance(call.chat_id, int):
                return _error(400, methods.CHAT_NOT_FOUND)
        problem = (
            methods.check(call.method, call.params)
            or methods.check_private_buttons(call.params, call.chat_id)
            or self._thread_problem(call)
        )
        if problem:
            return _error(400, problem)
        connection = _business_connection(call)
        if connection is not None:
            # The business account's chat with its customer: the bot's own chat with the
            # customer (blocked, never started) plays no part.
            return None if connection in self._business else _error(400, BUSINESS_INVALID)
        state = self._chat_states.get(call.chat_id) if call.chat_id is not None else None
        return _error(*state) if state else None

    def _thread_problem(self, call: _Call) -> str | None:
        if call.method not in methods.BUSINESS_METHODS or call.chat_id is None:
            return None  # the same methods take message_thread_id
        topic = methods.thread_id(call.params.get("message_thread_id"))
        return methods.check_thread(topic, self._forums.get(call.chat_id))

    def _scripted(self, call: _Call) -> Answer | None:
        for failure in self._failures:
            if failure.matches(call.method, call.chat_id):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure.answer
        return None

    def _deliver(self, call: _Call, now: float) -> Answer:
        if call.method in methods.WEBHOOK_METHODS:
            return self._webhook_call(call, now)
        if call.method not in methods.SENDING_METHODS:
            return Answer.json(200, {"ok": True, "result": True})
        windows = self._windows_for(call)
        wait_s = max((w.wait_s(now) for w in windows), default=0.0)
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            text = f"Too Many Requests: retry after {retry_after}"
            return _error(429, text, {"retry_after": retry_after})
        for window in windows:
            window.add(now)
        return Answer.json(200, {"ok": True, "result": self._message(call)})

    def _webhook_call(self, call: _Call, now: float) -> Answer:
        hook = self.webhook(call.token)
        if call.method == "getWebhookInfo":
            return Answer.json(200, {"ok": True, "result": hook.info()})
        if self._setting_too_soon(call, now):
            return _error(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        status, description = methods.set_webhook(hook, call.method, call.params)
        if status != 200:
            return _error(status, description)
        return Answer.json(200, {"ok": True, "result": True, "description": description})

    def _setting_too_soon(self, call: _Call, now: float) -> bool:
        """The server takes one setWebhook with a URL per second per bot (when enforced)."""
        if self._limits is None or call.method != "setWebhook" or not call.params.get("url"):
            return False
        if now < self._webhook_set_at.get(call.token, -math.inf) + 1.0:
            return True
        self._webhook_set_at[call.token] = now
        return False

    def _windows_for(self, call: _Call) -> list[SlidingWindow]:
        limits = self._limits
        if limits is None or not isinstance(call.chat_id, int):
            return []
        if call.chat_id > 0:
            chat = (call.token, call.chat_id), limits.per_chat_per_s, 1.0
        else:
            chat = (call.token, call.chat_id), limits.group_per_min, 60.0
        bot = (call.token, None), limits.bot_per_s, 1.0
        return [self._window(*spec) for spec in (chat, bot)]

    def _window(self, key: tuple[str, ChatId | None], limit: int, span_s: float) -> SlidingWindow:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow(limit, span_s)
        return window

    def _message(self, call: _Call) -> dict[str, Any]:
        assert isinstance(call.chat_id, int)
        bot_id = int(call.token.partition(":")[0])
        return {
            "message_id": next(self._message_ids[(call.token, call.chat_id)]),
            "from": methods.bot_user(bot_id),
            "chat": methods.chat_object(call.chat_id),
            "date": int(time.time()),
            **methods.content(call.method, call.params, self._file_id()),
            **_business_field(call),
            **self._topic_fields(call),
            **_inline_markup(call),
        }

    def _topic_fields(self, call: _Call) -> dict[str, Any]:
        topic = methods.thread_id(call.params.get("message_thread_id"))
        if topic == 0 or call.chat_id not in self._forums:
            return {}
        return {"message_thread_id": topic, "is_topic_message": True}

    def _file_id(self) -> str:
        raw = f"fake-file-{next(self._file_ids):08d}".encode()
        return "BQACAgIAAxk" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _business_connection(call: _Call) -> str | None:
    """The business connection a call is sent through, for the methods that take one."""
    connection = call.params.get("business_connection_id")
    if call.method not in methods.BUSINESS_METHODS or connection in (None, ""):
        return None
    return str(connection)


def _business_field(call: _Call) -> dict[str, str]:
    connection = _business_connection(call)
    return {} if connection is None else {"business_connection_id": connection}


def _inline_markup(call: _Call) -> dict[str, Any]:
    """A sent message shows its inline keyboard (reply keyboards are not part of it)."""
    markup = methods.reply_markup(call.params.get("reply_markup"))
    if markup is None or not markup.get("inline_keyboard"):
        return {}
    return {"reply_markup": {"inline_keyboard": markup["inline_keyboard"]}}


def _route(path: str) -> tuple[str, str]:
    match = _PATH.fullmatch(path)
    return (match["token"], match["method"]) if match else ("", "")


async def _params(request: web.Request) -> dict[str, Any] | None:
    """Query string, then the body (JSON or form) on top, as the Bot API merges them."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        params.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        params.update({key: _form_value(value) for key, value in form.items()})
    return params


def _form_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return f"attach://{getattr(value, 'filename', 'file')}"


def _chat_key(chat_id: ChatId) -> ChatId:
    parsed = parse_chat_id(chat_id)
    if parsed is None:
        raise ValueError("chat_id must not be empty")
    return parsed


def _default_description(error_code: int, parameters: dict[str, int]) -> str:
    if "retry_after" in parameters and error_code == 429:
        return f"Too Many Requests: retry after {parameters['retry_after']}"
    if "migrate_to_chat_id" in parameters:
        return MIGRATED
    return _DEFAULT_DESCRIPTIONS.get(error_code, "Error")


def _error(code: int, description: str, parameters: dict[str, int] | None = None) -> Answer:
    payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        payload["parameters"] = parameters
    return Answer.json(code, payload)
