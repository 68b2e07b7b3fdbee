"""Access-log lines without query values (`server.access_log`).

Meta's verification GET carries `hub.verify_token` in its query string, and a query may
carry anything else a caller chose to put there, so no log line holds a query value: each
one is written `REDACTED`, its name kept (`/webhooks/whatsapp?hub.mode=REDACTED&...`).
`RedactedAccessLogger` writes aiohttp's default format with the target so redacted; the
webhook fast path (gateway/fasthttp.py) passes its target through `redact_target` too.
"""

from __future__ import annotations

import logging
import time

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

REDACTED = "REDACTED"


MEDIA = "/v1/media/"
"""The media endpoint's path names a conversation, so a contact: not for the access log."""


def redact_target(target: str) -> str:
    """A request target with every query value replaced by REDACTED (names kept), and what
    follows `/v1/media/` in the path (a conversation id and a media id) too."""
    path, sep, query = target.partition("?")
    if path.startswith(MEDIA):
        path = MEDIA + REDACTED
    if not query:
        return path + sep
    names = (part.partition("=")[0] for part in query.split("&"))
    return f"{path}?" + "&".join(f"{name}={REDACTED}" for name in names)


class RedactedAccessLogger(AbstractAccessLogger):
    """aiohttp's default access-log format (`%a %t "%r" %s %b "%{Referer}i"
    "%{User-Agent}i"`), the request line's query values redacted. The Referer is left out
    (`-`): it is a whole URL of the caller's choosing, query included."""

    def log(self, request: BaseRequest, response: StreamResponse, time_s: float) -> None:
        started = time.gmtime(time.time() - time_s)
        version = request.version
        self.logger.info(
            '%s [%s] "%s %s HTTP/%d.%d" %d %d "-" "%s"',
            request.remote or "-",
            time.strftime("%d/%b/%Y:%H:%M:%S +0000", started),
            request.method,
            redact_target(request.raw_path),
            version.major,
            version.minor,
            response.status,
            response.body_length,
            request.headers.get("User-Agent", "-"),
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
