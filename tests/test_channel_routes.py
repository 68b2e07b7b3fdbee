"""The receiving side of the channel seam: the gateway serves every registered channel's
webhook from its `Channel.webhook` and `Channel.receiver`, with no per-channel code.

A third channel defined here (path, secret, parse: a few lines) is registered for one test
and receives a signed webhook end to end, through the fast path and through aiohttp, into
its assistant's stream: adding a channel needs no edit of gateway/ (only its config section
in `Settings`, which the test adds by subclassing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from adapters import CHANNELS, Channel, HttpRequest, Pace, channel
from adapters.account import Account, Secret
from adapters.channel import Answer, ChannelDefaults, Webhook
from adapters.schema import Command, MessageEvent, Parsed, ParseError, Routed, SendResult
from gateway.app import api_bases, create_app, directory_from
from gateway.config import Settings, channel_sections
from tests.conftest import stream

FAKE_SECRET = "fake-secret-fake-secret"
FAKE_ACCOUNT = "acct1"
FAKE_HEADER = "x-fake-signature"


class FakeSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The `fake:` section: one account, one webhook secret."""

    secret: str
    assistant: str
    api_base: str = "http://127.0.0.1:9/fake"

    def check(self) -> None:
        if not self.secret:
            raise ValueError("fake.secret: required")

    def secrets(self) -> list[Secret]:
        return [Secret("fake.secret", self.secret, True)]

    def accounts(self) -> list[Account]:
        return [Account("fake", FAKE_ACCOUNT, self.assistant, "fake-token")]

    def groups(self) -> dict[str, tuple[str, ...]]:
        return {}


def fake_sign(body: bytes, secret: str = FAKE_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class FakeReceiver:
    def __init__(self, settings: FakeSettings | None) -> None:
        self._secret = settings.secret if settings is not None else None

    def refuse(self, key: str | None, headers: Mapping[str, str]) -> Answer | None:
        if self._secret is None:
            return 404, "fake is not configured"
        if key != FAKE_ACCOUNT:
            return 404, "unknown account"
        if not headers.get(FAKE_HEADER):
            return 401, "bad signature"
        return None

    def verify(self, key: str | None, headers: Mapping[str, str], body: bytes) -> bool:
        given = headers.get(FAKE_HEADER, "").encode()
        return self._secret is not None and hmac.compare_digest(
            given, fake_sign(body, self._secret).encode()
        )

    def handshake(self, query: Mapping[str, str]) -> Answer:
        return 200, query.get("echo", "")


class Fake(ChannelDefaults):
    """A channel in a few lines: `{"id", "from", "text"}` bodies at /webhooks/fake/{key}
    (`ChannelDefaults`: no webhook subscription API, no handoff call, no echoes)."""

    name = "fake"
    channel = "fake"
    window = False
    opt_out_ends_all = True
    charges_inbound = False
    redelivers = True
    statuses_name_command = True
    webhook = Webhook("/webhooks/fake", keyed=True, handshake=True, headers=(FAKE_HEADER,))

    def receiver(self, settings: FakeSettings | None) -> FakeReceiver:
        return FakeReceiver(settings)

    def parse(self, body: bytes, path_key: str | None, received_at: int) -> Parsed:
        try:
            data = json.loads(body)
            event = MessageEvent(
                channel="fake",  # type: ignore[arg-type]  # schema's Literal lists the real ones
                account_id=path_key or "",
                contact_id=data["from"],
                timestamp=received_at,
                message_id=data["id"],
                type="text",
                text=data["text"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ParseError(str(exc)) from exc
        return Parsed([Routed(event, f"fake:{data['id']}", live=True)])

    def foreign(self, body: bytes) -> str | None:
        return None

    def human_window(self, command: Command) -> int:
        return 0

    def echo_identity(self, message_id: str) -> str | None:
        return None

    def control(
        self, account: Account, api_base: str, command: Command, address: str
    ) -> HttpRequest | None:
        return None

    def request(
        self,
        account: Account,
        api_base: str,
        command: Command,
        address: str,
        last_inbound: str | None,
        route: str | None,
    ) -> HttpRequest:
        return HttpRequest(f"{api_base}/send", {}, {"to": address})

    def classify(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> SendResult:
        return SendResult(verdict="sent" if status == 200 else "failed")

    def account_pace(self, account: Account, guard_ms: float) -> Pace:
        return Pace(1000)

    def recipient_pace(self, address: str, guard_ms: float) -> Pace:
        return Pace(1000)

    def paces_recipient(self, command_type: str) -> bool:
        return True

    def crosses_border(self, account: Account, address: str) -> bool | None:
        return None


class FakeGatewaySettings(Settings, kw_only=True):
    """`Settings` with the fake channel's section: the one line a new channel adds there."""

    fake: FakeSettings | None = None


@pytest.fixture
def fake_channel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    """The fake channel, registered for this test only."""
    fake = Fake()
    monkeypatch.setitem(channel._REGISTRY, fake.name, fake)  # register() without a way back
    yield fake


def with_fake(settings: Settings, *, fast_path: bool = True) -> FakeGatewaySettings:
    fields = {name: getattr(settings, name) for name in settings.__struct_fields__}
    fields["server"] = msgspec.structs.replace(settings.server, fast_path=fast_path)
    return FakeGatewaySettings(**fields, fake=FakeSettings(secret=FAKE_SECRET, assistant="support"))


def test_the_fake_is_a_channel() -> None:
    assert isinstance(Fake(), Channel)


def test_every_channel_has_a_section_in_settings() -> None:
    """`gateway.config` composes each registered channel's section under its name."""
    assert set(CHANNELS) <= set(Settings.__struct_fields__)


def test_webhook_paths_are_unique(fake_channel: Fake) -> None:
    taken = Fake()
    taken.name = "other"
    with pytest.raises(ValueError, match="webhook path"):
        channel.register(taken)


def _path(hook: Webhook, key: str = "0") -> str:
    return f"{hook.path}/{key}" if hook.keyed else hook.path


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp"])
async def test_every_registered_channel_is_served(
    aiohttp_client: Any, settings: Settings, redis: Redis, redis_url: str, fast_path: bool
) -> None:
    """Each channel's POST route answers with its own refusal (never the router's 404 or
    405), and a handshake channel's GET with its own answer."""
    server = msgspec.structs.replace(settings.server, fast_path=fast_path)
    client: TestClient = await aiohttp_client(
        create_app(msgspec.structs.replace(settings, server=server), redis_url)
    )
    for name, registered in CHANNELS.items():
        hook = registered.webhook
        response = await client.post(_path(hook), data=b"{}")
        assert response.status in (401, 404), name
        assert await response.text() != "404: Not Found", name
        if hook.handshake:
            response = await client.get(_path(hook), params={"hub.mode": "subscribe"})
            assert response.status == 403, name


async def test_an_unconfigured_channel_is_served_and_refuses(
    fake_channel: Fake, client: TestClient
) -> None:
    """The fake is registered, but the conftest settings have no section for it."""
    response = await client.post(f"/webhooks/fake/{FAKE_ACCOUNT}", data=b"{}")
    assert (response.status, await response.text()) == (404, "fake is not configured")


def test_the_gateway_builds_a_new_channel_from_its_section(
    fake_channel: Fake, settings: Settings
) -> None:
    composed = with_fake(settings)
    assert channel_sections(composed)["fake"] == composed.fake
    assert directory_from(composed).assistant("fake", FAKE_ACCOUNT) == "support"
    assert api_bases(composed)["fake"] == "http://127.0.0.1:9/fake"


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "aiohttp"])
async def test_a_new_channel_receives_end_to_end(
    fake_channel: Fake,
    aiohttp_client: Any,
    settings: Settings,
    redis: Redis,
    redis_url: str,
    fast_path: bool,
) -> None:
    client: TestClient = await aiohttp_client(
        create_app(with_fake(settings, fast_path=fast_path), redis_url)
    )
    path = f"/webhooks/fake/{FAKE_ACCOUNT}"
    body = json.dumps({"id": "m1", "from": "c9", "text": "hello"}).encode()

    async def post(url: str, data: bytes, signature: str | None) -> tuple[int, str]:
        headers = {"X-Fake-Signature": signature} if signature is not None else {}
        response = await client.post(url, data=data, headers=headers)
        return response.status, await response.text()

    assert await post(path, body, None) == (401, "bad signature")  # from the head
    assert await post(path, body, fake_sign(b"other")) == (401, "bad signature")  # verify
    assert await post("/webhooks/fake/nobody", body, fake_sign(body)) == (404, "unknown account")
    assert await post(path, body, fake_sign(body)) == (200, "OK")
    assert await post(path, body, fake_sign(body)) == (200, "OK")  # redelivered: once
    [event] = await stream(redis, "gw:inbox:support")
    assert (event["channel"], event["account_id"], event["text"]) == ("fake", FAKE_ACCOUNT, "hello")
    assert event["conversation_id"] == f"fake:{FAKE_ACCOUNT}:c9"
    response = await client.get(path, params={"echo": "ping"})
    assert (response.status, await response.text()) == (200, "ping")
