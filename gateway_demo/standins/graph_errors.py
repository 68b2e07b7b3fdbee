"""The Graph API error catalog the fake answers from: code → HTTP status, title, details.

Faithful:
- the envelope: `{"error": {"message", "type", "code", "error_data": {"messaging_product":
  "whatsapp", "details"}, "fbtrace_id"}}` with `type` "OAuthException" (Graph's routing
  errors use "GraphMethodException"), keys in Meta's order;
- `message` is "(#<code>) <title>" for WhatsApp and most Graph codes, as Meta sends it; the
  core OAuth error 190 is not prefixed ("Invalid OAuth access token - Cannot parse access
  token"), nor is the unknown-object error ("Unsupported post request. Object with ID ...");
- `error_subcode` is left out (deprecated, absent from v16+) except on the 100/33 routing
  error, where Graph still sends it;
- HTTP statuses follow PLATFORM.md §5.3, which follows Meta's current table. Older copies of
  that table said 400 for the throttling codes (4, 80007, 130429, 131048, 131056); pass
  `http_status=` to `FakeGraphAPI.fail` to reproduce them;
- a `WWW-Authenticate: OAuth "Facebook Platform" "<invalid_token|invalid_request>" "<message>"`
  header and an `x-fb-trace-id` header equal to `fbtrace_id`, as Graph sends on errors.

Failed status webhooks (`status_error`): an `errors[]` item as Meta posts it in a `failed`
status, `{"code", "title", "message", "error_data": {"details"}, "href"}`, where `title` and
`message` are both the bare title (no "(#code)" prefix) and `href` Meta's error-codes page,
as in the copies of real failed statuses found (131049, 131047).

Simplified: the `details` strings are paraphrases of Meta's descriptions (exact where copies of
real responses were found: 130429, 131056, 131047, 131049, 134101); `is_transient` is set only
on 1, 2 and 4. 2494100's title is as three public transcriptions of Meta's table give it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OAUTH = "OAuthException"
GRAPH_METHOD = "GraphMethodException"


@dataclass(frozen=True)
class GraphError:
    """One Graph error code as Meta answers it."""

    code: int
    http_status: int
    title: str
    details: str | None = None
    error_type: str = OAUTH
    prefixed: bool = True
    is_transient: bool | None = None

    @property
    def message(self) -> str:
        return f"(#{self.code}) {self.title}" if self.prefixed else self.title


def _e(code: int, status: int, title: str, details: str | None = None, **kw: Any) -> GraphError:
    return GraphError(code, status, title, details, **kw)


_CATALOG = [
    _e(0, 401, "AuthException", "We were unable to authenticate the app user."),
    _e(
        1,
        400,
        "An unknown error occurred",
        "Invalid request or possible server error.",
        is_transient=True,
    ),
    _e(
        2,
        503,
        "Service temporarily unavailable",
        "Temporary due to downtime or due to being overloaded.",
        is_transient=True,
    ),
    _e(
        3,
        500,
        "Application does not have the capability to make this API call",
        "Capability or permissions issue.",
    ),
    _e(4, 429, "Application request limit reached", None, is_transient=True),
    _e(
        10,
        403,
        "Application does not have permission for this action",
        "Permission is either not granted or has been removed.",
    ),
    _e(100, 400, "Invalid parameter", "Invalid parameter"),
    _e(190, 401, "Invalid OAuth access token", None, prefixed=False),
    _e(200, 403, "Permissions error", "Permission is either not granted or has been removed."),
    _e(
        368,
        403,
        "Temporarily blocked for policies violations",
        "The WhatsApp Business Account associated with the app has been restricted or "
        "disabled for violating a platform policy.",
    ),
    _e(
        80007, 429, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."
    ),
    _e(
        130429,
        429,
        "Rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number in a short period of time",
    ),
    _e(
        130472,
        400,
        "User's number is part of an experiment",
        "Message was not sent as part of an experiment.",
    ),
    _e(
        130497,
        403,
        "Business account is restricted from messaging users in this country",
        "The business is restricted from sending messages to users in this country.",
    ),
    _e(131000, 500, "Something went wrong", "Message failed to send due to an unknown error."),
    _e(131005, 403, "Access denied", "Permission is either not granted or has been removed."),
    _e(
        131008, 400, "Required parameter is missing", "The request is missing a required parameter."
    ),
    _e(131009, 400, "Parameter value is not valid", "One or more parameter values are invalid."),
    _e(131016, 500, "Service unavailable", "A service is temporarily unavailable."),
    _e(131021, 400, "Recipient cannot be sender", "Sender and recipient phone number is the same."),
    _e(
        131026,
        400,
        "Message Undeliverable",
        "Unable to deliver message. Reasons can include: the recipient phone number is not a "
        "WhatsApp phone number; the recipient has not accepted the latest Terms of Service; "
        "the recipient is using an old WhatsApp version.",
    ),
    _e(
        131031,
        403,
        "Account has been locked",
        "The WhatsApp Business Account associated with the app has been restricted or "
        "disabled for violating a platform policy, or the data in the request could not be "
        "verified against the data set on the WhatsApp Business Account.",
    ),
    _e(
        131037,
        400,
        "WhatsApp provided number needs display name approval before message can be sent.",
        "The 555 business phone number needs an approved display name.",
    ),
    _e(
        131042,
        400,
        "Business eligibility payment issue",
        "Message failed to send because there were one or more errors related to your payment "
        "method.",
    ),
    _e(
        131045,
        400,
        "Incorrect certificate",
        "Message failed to send due to a phone number registration error.",
    ),
    _e(
        131047,
        400,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number.",
    ),
    _e(
        131048,
        429,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be "
        "sent from this phone number. This may be because too many previous messages were "
        "blocked or flagged as spam.",
    ),
    _e(
        131049,
        400,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    _e(
        131050,
        400,
        "Unable to deliver the message. This recipient has chosen to stop "
        "receiving marketing messages on WhatsApp from your business",
        "The recipient has stopped receiving marketing messages from this business.",
    ),
    _e(131051, 400, "Unsupported message type", "Message type is not currently supported."),
    _e(131052, 400, "Media download error", "Unable to download the media sent by the user."),
    _e(131053, 400, "Media upload error", "Unable to upload the media used in the message."),
    _e(
        131056,
        429,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone "
        "number to the same phone number in a short period of time.",
    ),
    _e(
        131057,
        400,
        "Account in maintenance mode",
        "Business Account is in maintenance mode, for example during a throughput upgrade.",
    ),
    _e(
        132000,
        400,
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the template.",
    ),
    _e(
        132001,
        400,
        "Template name does not exist in the translation",
        "The template does not exist in the specified language or is not approved.",
    ),
    _e(132015, 400, "Template is Paused", "The template is paused due to low quality."),
    _e(132016, 400, "Template is Disabled", "The template has been paused too many times."),
    _e(133004, 503, "Server Temporarily Unavailable", "Server is temporarily unavailable."),
    _e(
        134101,
        400,
        "Your template is still syncing",
        "When you send a message from a template, the template syncing process can take up "
        "to 10 minutes to complete. Wait a few minutes, and then try sending your message "
        "again.",
    ),
    _e(
        2494100,
        503,
        "Account in maintenance mode",
        "The business phone number is in maintenance mode. Try again in a few minutes.",
    ),
    _e(
        133010,
        400,
        "Phone number Not Registered",
        "Phone number is not registered on the WhatsApp Business Platform.",
    ),
    _e(
        135000,
        400,
        "Generic user error",
        "Message failed to send because of an unknown error with your request parameters.",
    ),
]

GRAPH_ERRORS: Mapping[int, GraphError] = {error.code: error for error in _CATALOG}

INVALID_TOKEN = GraphError(
    190, 401, "Invalid OAuth access token - Cannot parse access token", prefixed=False
)
UNKNOWN_PATH = GraphError(2500, 400, "Unknown path components", prefixed=False)


def error_for(code: int) -> GraphError:
    """The catalog entry for `code`, or a plain 400 for codes the catalog does not know."""
    return GRAPH_ERRORS.get(code) or GraphError(code, 400, "Unknown error")


def unknown_object(object_id: str, method: str = "post") -> GraphError:
    """What Graph answers for an ID the token cannot see (or that does not exist); the
    message names the request's method ("Unsupported get request. …")."""
    title = (
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
        "cannot be loaded due to missing permissions, or does not support this operation. "
        "Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
    )
    return GraphError(100, 400, title, error_type=GRAPH_METHOD, prefixed=False)


PROOF_MISSING = GraphError(
    100, 400, "API calls from the server require an appsecret_proof argument",
    error_type=GRAPH_METHOD, prefixed=False,
)  # fmt: skip
PROOF_INVALID = GraphError(
    100, 400, "Invalid appsecret_proof provided in the API argument", error_type=GRAPH_METHOD,
    prefixed=False,
)  # fmt: skip


def proof_error(proof: str | None, token: str, app_secret: str) -> GraphError | None:
    """What Graph answers a call whose app requires `appsecret_proof` (the hex HMAC-SHA256
    of the access token keyed by the app secret): None when `proof` is right."""
    if not proof:
        return PROOF_MISSING
    expected = hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(proof.encode(), expected.encode()) else PROOF_INVALID


STATUS_HREF = "/documentation/business-messaging/whatsapp/support/error-codes"


def status_error(code: int) -> dict[str, Any]:
    """One `errors[]` item of a failed status webhook for `code`, as Meta posts it."""
    error = error_for(code)
    item: dict[str, Any] = {"code": code, "title": error.title, "message": error.title}
    if error.details is not None:
        item["error_data"] = {"details": error.details}
    item["href"] = STATUS_HREF
    return item


def fbtrace_id() -> str:
    """An opaque trace id shaped like Meta's (`A` and 22 url-safe characters)."""
    return "A" + secrets.token_urlsafe(17)[:22]


def envelope(
    error: GraphError,
    *,
    message: str | None = None,
    details: str | None = None,
    subcode: int | None = None,
) -> dict[str, Any]:
    """The `{"error": {...}}` body for `error`; `message`/`details` override the catalog's."""
    body: dict[str, Any] = {
        "message": message or error.message,
        "type": error.error_type,
        "code": error.code,
    }
    details = details or error.details
    if details is not None:
        body["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        body["error_subcode"] = subcode
    if error.is_transient is not None:
        body["is_transient"] = error.is_transient
    body["fbtrace_id"] = fbtrace_id()
    return {"error": body}


def error_headers(payload: Mapping[str, Any]) -> dict[str, str]:
    """The headers Graph sends with an error body."""
    error = payload["error"]
    kind = "invalid_token" if error["code"] == 190 else "invalid_request"
    message = "".join(c if " " <= c <= "~" else "?" for c in error["message"]).replace('"', "'")
    auth = f'OAuth "Facebook Platform" "{kind}" "{message}"'
    return {"WWW-Authenticate": auth, "x-fb-trace-id": error["fbtrace_id"]}
