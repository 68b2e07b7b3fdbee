"""The process's log lines: text (the default) or JSON (`--log-format json`), and never a
configured secret.

JSON is one object per line: `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`,
`process` (the worker's name with `--workers`), `message`, and, where the line is about one
of them, `channel`, `account` (a configured number, Page, account or bot id), `assistant`,
`command_id`, `event_id`, `reason` (passed as `extra=` by the code that logs); a traceback
as `exception`. No field names a contact: conversation ids hold their phone numbers.

Every line, text or JSON, first goes through `Redact`: each configured secret (app secrets,
verify tokens, access tokens, bot tokens and secret tokens, Twilio's auth token and keys,
Redis passwords) that appears in the message or its traceback is replaced by `[REDACTED]`.
The code already keeps them out (adapters scrub provider answers, URLs carrying a token are
not logged); this is the net under it, and tests/test_logs.py checks a whole run's log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Final, Literal
from urllib.parse import urlsplit

from gateway.config import Settings, secrets_of

LogFormat = Literal["text", "json"]
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(message)s"
WORKER_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s"
FIELDS: Final = ("channel", "account", "assistant", "command_id", "event_id", "reason")
"""`extra=` keys a JSON line carries when the logging code passed them."""
REDACTED: Final = "[REDACTED]"
_SHORTEST: Final = 6
"""Shorter values (a test's "x") would blank out ordinary words: not redacted."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class Redact(logging.Filter):
    """Replaces every known secret in a record's message (and traceback) with REDACTED."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: list[str] = []

    def add(self, values: Iterable[str]) -> None:
        """Secrets to take out from now on (longest first, so a secret that contains
        another goes whole)."""
        known = set(self._secrets)
        known.update(v for v in values if len(v) >= _SHORTEST)
        self._secrets = sorted(known, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            self._redact(record)
        except Exception:  # a log call whose arguments do not format
            # Its template alone (code, no values): its arguments could hold anything.
            record.msg, record.args = f"(arguments dropped) {record.msg}", None
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        cleaned = self._clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            # Formatted here, so the traceback can be cleaned too (the formatter then uses it).
            record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


REDACT: Final = Redact()
"""The process's filter: `configure` puts it on the log handler; `gateway.server` adds the
embedded Redis's password once it is known."""


def configure(level: int | str, fmt: LogFormat, *, worker: bool = False) -> None:
    """Log to stderr in `fmt`, through `REDACT`, at `level` (the root logger). Called again,
    it replaces its own handler; like `logging.basicConfig`, it does nothing where something
    else configured the root logger first (a test harness)."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
        _handler = None
    if root.handlers:
        return
    root.setLevel(level)
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(WORKER_TEXT_FORMAT if worker else TEXT_FORMAT))
    handler.addFilter(REDACT)
    root.addHandler(handler)
    _handler = handler


_handler: logging.Handler | None = None
"""The handler `configure` added."""


def secret_values(settings: Settings) -> list[str]:
    """Every secret the config holds, and the Redis URL's password."""
    values = [secret.value for secret in secrets_of(settings)]
    if settings.redis.url:
        values.extend(redis_password(settings.redis.url))
    return values


def redis_password(url: str) -> list[str]:
    """The password in a Redis URL, if any (a `redis://user:pass@host` or `:pass@host`)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password] if password else []
