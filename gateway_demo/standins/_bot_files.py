"""The files the Bot API stand-in holds (`FakeBotAPI.files`): files users sent a bot, which a
backend downloads through the gateway (PLATFORM §7.2).

    file_id = fake.files.add(BOT_TOKEN, b"...", "documents/file_1.pdf")
    fake.files.forget(file_id)                  # no longer available

`getFile` (`file_id` in the query, JSON or form) answers `{"ok": true, "result": {"file_id",
"file_unique_id", "file_size", "file_path"}}`, and `GET /file/bot<token>/<file_path>` the
bytes. A file_id belongs to the bot that received it, as on Telegram.

Refusals, as the Bot API words them: a file over 20 MB → 400 "Bad Request: file is too big";
a file_id another bot received, or one forgotten → 400 "Bad Request: wrong file_id or the file
is temporarily unavailable"; one never issued (or none given) → 400 "Bad Request: invalid
file_id"; a download of an unknown path, or with another bot's token → 404 `{"ok": false,
"error_code": 404, "description": "Not Found"}`.

Simplified: file paths never expire (Telegram's stay valid for at least an hour), and the
download's Content-Type is the one given to `add` (Telegram's file server picks it from the
extension).
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from typing import Any

from gateway_demo.standins._server import Answer

DOWNLOAD_MAX_BYTES = 20 * 1024 * 1024
TOO_BIG = "Bad Request: file is too big"
WRONG = "Bad Request: wrong file_id or the file is temporarily unavailable"
INVALID = "Bad Request: invalid file_id"


@dataclass
class _File:
    token: str
    data: bytes
    path: str
    mime_type: str
    unique_id: str
    available: bool = True


class BotFiles:
    """file_id → the bot that received it, its bytes and its path."""

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self._ids = itertools.count(1)

    def add(
        self,
        token: str,
        data: bytes,
        path: str | None = None,
        mime_type: str = "application/octet-stream",
    ) -> str:
        """A file the bot of `token` received; its file_id."""
        number = next(self._ids)
        raw = f"fake-received-{number:08d}".encode()
        file_id = "BQACAgIAAxkB" + base64.urlsafe_b64encode(raw).decode().rstrip("=")
        unique = "AgAD" + base64.urlsafe_b64encode(raw[-6:]).decode().rstrip("=")
        self._files[file_id] = _File(
            token, data, path or f"documents/file_{number}.bin", mime_type, unique
        )
        return file_id

    def forget(self, file_id: str) -> None:
        """The file is no longer available."""
        self._files[file_id].available = False

    def get_file(self, token: str, params: dict[str, Any]) -> tuple[int, Any]:
        """getFile: (status, result) or (status, description)."""
        found = self._files.get(str(params.get("file_id") or ""))
        if found is None:
            return 400, INVALID
        if found.token != token or not found.available:
            return 400, WRONG
        if len(found.data) > DOWNLOAD_MAX_BYTES:
            return 400, TOO_BIG
        return 200, {
            "file_id": params["file_id"],
            "file_unique_id": found.unique_id,
            "file_size": len(found.data),
            "file_path": found.path,
        }

    def download(self, token: str, path: str) -> Answer:
        for found in self._files.values():
            if found.token == token and found.path == path and found.available:
                return Answer(200, found.data, found.mime_type)
        return Answer.json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
