"""What the Graph API stand-ins (graph_api.py, tests/fakes/send_api.py) read from a request
the same way: the access token, the `appsecret_proof`, the JSON body."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def token(request: web.Request) -> str | None:
    """`Authorization: Bearer <token>`, else `?access_token=`, as Graph takes it."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("access_token")


def proof(request: web.Request, body: Any) -> str | None:
    """`appsecret_proof` as sent: in the query, or a key of the JSON body."""
    if "appsecret_proof" in request.query:
        return request.query["appsecret_proof"]
    value = body.get("appsecret_proof") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def decode(raw: bytes) -> Any:
    """The JSON body, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return None
