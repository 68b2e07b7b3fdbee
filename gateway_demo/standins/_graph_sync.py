"""The Graph stand-in's `POST /{phone_number_id}/smb_app_data`: a coexistence number's
Business app contacts and chat history, asked for once each, within 24 h of onboarding.

    {"messaging_product": "whatsapp", "sync_type": "smb_app_state_sync" | "history"}
    200  {"messaging_product": "whatsapp", "request_id": "<id>"}
    the same `sync_type` again since the onboarding             400, code 2593107
    more than 24 h after the onboarding                         400, code 2593108
    `messaging_product` missing or not "whatsapp", `sync_type` missing or another value
                                                                400, code 100

Faithful: the route, the body, the success shape (as public integrations read it: `request_id`
beside `messaging_product`), the codes and what triggers them (2593107 "sync limit
exceeded", 2593108 "sync request out of allowed time window", as integrations name them),
Graph's error envelope and headers (graph_errors), the token and `appsecret_proof` checks of
the messages route (done by the caller, `FakeGraphAPI`).

Simplified: the error texts are paraphrases (Meta's exact wording was not found); a number's
onboarding is when the fake started unless `onboard` says otherwise; no check that the number
is in coexistence at all; when both rules refuse, 2593107 is answered (Meta's order is not
documented); nothing is sent afterwards as webhooks (a test posts those itself).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Final

from gateway_demo.standins import graph_errors as errors
from gateway_demo.standins._server import Answer

SYNC_TYPES: Final = ("smb_app_state_sync", "history")
WINDOW_S: Final = 24 * 3600
"""How long after its onboarding a number's app data may be asked for."""
SYNC_LIMIT = errors.GraphError(
    2593107, 400, "Sync limit exceeded",
    "This type of sync has already been requested for this phone number since it was onboarded.",
)  # fmt: skip
OUT_OF_WINDOW = errors.GraphError(
    2593108, 400, "Sync request out of allowed time window",
    "Syncs can only be requested within 24 hours of onboarding the phone number.",
)  # fmt: skip


class AppData:
    """Which numbers were onboarded when, and which syncs each has used."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._started = clock()
        self._onboarded: dict[str, float] = {}
        self.requested: dict[str, list[str]] = {}
        """phone number id → the sync types accepted since its onboarding, in order."""
        self._ids = itertools.count(1)

    def onboard(self, phone_number_id: str, at: float | None = None) -> None:
        """The number was onboarded (again) at `at` (default now): a new 24-hour window, and
        each sync may be asked for once more."""
        self._onboarded[phone_number_id] = self._clock() if at is None else at
        self.requested.pop(phone_number_id, None)

    def answer(self, phone_number_id: str, body: Any) -> Answer:
        """Graph's answer to a sync request the token checks let through."""
        refused = _invalid(body)
        if refused is not None:
            return refused
        sync_type = body["sync_type"]
        used = self.requested.setdefault(phone_number_id, [])
        if sync_type in used:
            return _error(SYNC_LIMIT)
        onboarded = self._onboarded.get(phone_number_id, self._started)
        if self._clock() - onboarded > WINDOW_S:
            return _error(OUT_OF_WINDOW)
        used.append(sync_type)
        request_id = f"{next(self._ids):04d}{int(onboarded)}{phone_number_id[-4:]}"
        return Answer.json(200, {"messaging_product": "whatsapp", "request_id": request_id})


def _invalid(body: Any) -> Answer | None:
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return _error(errors.error_for(100), "(#100) The parameter messaging_product is required.")
    if body.get("sync_type") not in SYNC_TYPES:
        message = f"(#100) Param sync_type must be one of {{{', '.join(SYNC_TYPES).upper()}}}"
        return _error(errors.error_for(100), message)
    return None


def _error(error: errors.GraphError, message: str | None = None) -> Answer:
    payload = errors.envelope(error, message=message)
    return Answer.json(error.http_status, payload, errors.error_headers(payload))
