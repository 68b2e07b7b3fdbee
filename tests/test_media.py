"""The media endpoint (gateway/media.py): backends download their conversations' media with a
per-assistant key, streamed from each provider's stand-in with the account's own credentials.

Each channel's media arrives whole with the provider's headers; every refusal answers with its
status and JSON error, and what it refuses never reaches the provider (a foreign URL gets no
credentials, an oversized file no download); a 20 MB file passes through a real `gateway
serve` process without growing its memory by the file's size.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from adapters import CHANNELS
from adapters.account import Account
from adapters.media import MediaError, MediaKey, MediaRef, MediaSettings
from gateway.app import create_app
from gateway.config import ConfigError, Settings, loads
from gateway.media import assistant_of
from gateway.reload import ConfigSource, reload
from gateway.state import STATE
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from tests.conftest import (
    APP_SECRET,
    BOT_1,
    BOT_2,
    IG_A,
    NUMBER_A,
    NUMBER_B,
    NUMBER_C,
    PAGE_A,
    TEST_CONFIG,
    TWILIO_B,
    TWILIO_SID,
    TWILIO_TOKEN,
    VERIFY_TOKEN,
    gateway_env,
    make_settings,
)
from tests.fakes.send_api import FakeSendAPI
from tests.fakes.twilio_api import FakeTwilioAPI

ROOT = Path(__file__).resolve().parent.parent
SUPPORT_KEY = "media-key-support-0123456789abcdef"
SALES_KEY = "media-key-sales-0123456789abcdef"
BOT_1_TOKEN = f"{BOT_1}:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa"
BOT_2_TOKEN = f"{BOT_2}:AAHtesttokenbbbbbbbbbbbbbbbbbbbbbbb"
CONTACT = "5511987650000"
WA = f"whatsapp:{NUMBER_A}:{CONTACT}"
WA_SALES = f"whatsapp:{NUMBER_B}:{CONTACT}"
TG = f"telegram:{BOT_1}:123456789"
FB = f"messenger:{PAGE_A}:6800000000000001"
IG = f"instagram:{IG_A}:6800000000000002"
TW = f"whatsapp:{TWILIO_B.lstrip('+')}:{CONTACT}"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
AUTH = {"Authorization": f"Bearer {SUPPORT_KEY}"}


@dataclass
class Providers:
    graph: FakeGraphAPI
    bot: FakeBotAPI
    meta: FakeSendAPI
    twilio: FakeTwilioAPI


@dataclass
class Media:
    client: TestClient[Any, Any]
    providers: Providers

    async def get(
        self,
        conversation: str,
        media_id: str | None = None,
        headers: dict[str, str] | None = None,
        **query: str,
    ) -> aiohttp.ClientResponse:
        path = f"/v1/media/{conversation}" + (f"/{media_id}" if media_id else "")
        return await self.client.get(path, params=query, headers=headers or AUTH)

    def outcomes(self) -> dict[tuple[str, str], float]:
        """gateway_media_requests_total by (channel, outcome)."""
        assert self.client.app is not None
        registry = self.client.app[STATE].metrics.registry
        return {
            (s.labels["channel"], s.labels["outcome"]): s.value
            for family in registry.collect()
            if family.name == "gateway_media_requests"
            for s in family.samples
            if s.name.endswith("_total")
        }


def media_settings(**changes: Any) -> MediaSettings:
    keys = [
        MediaKey(assistant="support", key=SUPPORT_KEY),
        MediaKey(assistant="sales", key=SALES_KEY),
    ]
    defaults: dict[str, Any] = {
        "api_keys": keys,
        "url_hosts": ["127.0.0.1"],
        "timeout_seconds": 1.0,
    }
    return MediaSettings(**{**defaults, **changes})


def with_media(settings: Settings, media: MediaSettings | None) -> Settings:
    return msgspec.structs.replace(settings, media=media)


@pytest.fixture
async def providers() -> AsyncIterator[Providers]:
    tokens = {NUMBER_A: "token-a", NUMBER_B: "token-b"}
    pages = {PAGE_A: "page-token-a"}
    async with (
        FakeGraphAPI(tokens) as graph,
        FakeBotAPI([BOT_1_TOKEN, BOT_2_TOKEN]) as bot,
        FakeSendAPI(pages, {IG_A: "ig-token-a"}) as meta,
        FakeTwilioAPI(TWILIO_SID, TWILIO_TOKEN, senders=[TWILIO_B]) as twilio,
    ):
        yield Providers(graph, bot, meta, twilio)


def gateway_settings(redis_url: str, p: Providers, media: MediaSettings | None) -> Settings:
    settings = make_settings(
        redis_url,
        GRAPH_URL=p.graph.base_url,
        BOT_URL=p.bot.base_url,
        META_URL=p.meta.messenger_url,
        IG_URL=p.meta.instagram_url,
        TWILIO_API=p.twilio.url,
        OUTBOUND_ENABLED="false",
    )
    return with_media(settings, media)


@pytest.fixture
async def gw(aiohttp_client: Any, redis_url: str, providers: Providers) -> Media:
    app = create_app(gateway_settings(redis_url, providers, media_settings()), redis_url)
    return Media(await aiohttp_client(app), providers)


async def make_gw(
    aiohttp_client: Any, redis_url: str, providers: Providers, media: MediaSettings | None
) -> Media:
    app = create_app(gateway_settings(redis_url, providers, media), redis_url)
    return Media(await aiohttp_client(app), providers)


async def refused(resp: aiohttp.ClientResponse, status: int, error: str) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert body["error"] == error, body
    detail: str = body["detail"]
    return detail


# --- every channel's media, whole, with the provider's headers ---------------------------------


async def test_whatsapp_media_comes_with_its_type_length_and_filename(gw: Media) -> None:
    media_id = gw.providers.graph.media.add(NUMBER_A, JPEG, "image/jpeg")
    resp = await gw.get(WA, media_id, filename="Receipt März.jpg")
    assert resp.status == 200
    assert await resp.read() == JPEG
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert resp.headers["Content-Length"] == str(len(JPEG))
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=\"Receipt M_rz.jpg\"; filename*=UTF-8''Receipt%20M%C3%A4rz.jpg"
    )
    [lookup] = [r for r in gw.providers.graph.requests if r.edge == "media"]
    assert lookup.token == "token-a" and lookup.status == 200
    assert gw.providers.graph.media.downloads == [(media_id, "token-a", 200)]
    assert gw.outcomes()[("whatsapp", "ok")] == 1


async def test_telegram_file_is_fetched_through_getfile(gw: Media) -> None:
    pdf = b"%PDF-1.7\n" + b"x" * 5000
    file_id = gw.providers.bot.files.add(
        BOT_1_TOKEN, pdf, "documents/file_7.pdf", "application/pdf"
    )
    resp = await gw.get(TG, file_id)
    assert resp.status == 200
    assert await resp.read() == pdf
    assert resp.headers["Content-Type"] == "application/pdf"
    assert "Content-Disposition" not in resp.headers  # no filename asked, none given


@pytest.mark.parametrize("conversation", [FB, IG], ids=["messenger", "instagram"])
async def test_meta_cdn_media_is_fetched_without_credentials(
    aiohttp_client: Any, redis_url: str, providers: Providers, conversation: str
) -> None:
    key = SUPPORT_KEY if conversation == FB else SALES_KEY
    gw = await make_gw(aiohttp_client, redis_url, providers, media_settings())
    url = providers.meta.root_url + providers.meta.cdn.add(b"GIF89a" + JPEG, "image/gif")
    resp = await gw.get(conversation, url=url, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    assert await resp.read() == b"GIF89a" + JPEG
    assert resp.headers["Content-Type"] == "image/gif"
    [(_, authorization, status)] = providers.meta.cdn.requests
    assert (authorization, status) == (None, 200)


async def test_twilio_media_uses_basic_auth_and_never_forwards_it(gw: Media) -> None:
    url = gw.providers.twilio.add_media(JPEG, "image/jpeg")
    resp = await gw.get(TW, url=url)
    assert resp.status == 200
    assert await resp.read() == JPEG
    assert resp.headers["Content-Type"] == "image/jpeg"
    [media] = [r for r in gw.providers.twilio.requests if r.route == "media"]
    assert media.status == 307
    # The CDN (S3 behind Twilio) refuses a request carrying credentials: it got none.
    [(_, authorization, status)] = gw.providers.twilio.cdn.requests
    assert (authorization, status) == (None, 200)


# --- who may fetch what --------------------------------------------------------------------------


async def test_no_key_or_an_unknown_key_is_401(gw: Media) -> None:
    media_id = gw.providers.graph.media.add(NUMBER_A, JPEG)
    for headers in (
        {"X-Nothing": "1"},
        {"Authorization": "Bearer not-a-configured-key"},
        {"Authorization": f"Basic {SUPPORT_KEY}"},
        {"Authorization": "Bearer "},
    ):
        resp = await gw.get(WA, media_id, headers=headers)
        await refused(resp, 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="media"'
    assert [r for r in gw.providers.graph.requests if r.edge == "media"] == []
    assert gw.outcomes()[("", "unauthorized")] == 4


async def test_a_key_opens_only_its_own_assistants_conversations(gw: Media) -> None:
    mine = gw.providers.graph.media.add(NUMBER_B, JPEG)
    theirs = gw.providers.graph.media.add(NUMBER_A, JPEG)
    sales = {"Authorization": f"Bearer {SALES_KEY}"}
    assert (await gw.get(WA_SALES, mine, headers=sales)).status == 200
    await refused(await gw.get(WA, theirs, headers=sales), 403, "forbidden")
    # Through its own conversation, another number's media id reaches nothing: the lookup
    # names the number, and Graph serves only that number's media.
    await refused(await gw.get(WA_SALES, theirs, headers=sales), 404, "not_found")
    assert gw.outcomes()[("whatsapp", "forbidden")] == 1


async def test_unknown_and_disabled_conversations_are_404(gw: Media) -> None:
    for conversation in (
        f"whatsapp:999999999999:{CONTACT}",
        f"whatsapp:{NUMBER_C}:{CONTACT}",  # enabled: false
        f"whatsapp:{NUMBER_A}",
        "nochannel:1:2",
    ):
        await refused(await gw.get(conversation, "123"), 404, "unknown_conversation")


async def test_expired_media_is_404_on_every_channel(gw: Media) -> None:
    p = gw.providers
    wa = p.graph.media.add(NUMBER_A, JPEG)
    p.graph.media.expire(wa)
    tg = p.bot.files.add(BOT_1_TOKEN, JPEG)
    p.bot.files.forget(tg)
    other_bot = p.bot.files.add(BOT_2_TOKEN, JPEG)
    fb = p.meta.root_url + p.meta.cdn.add(JPEG)
    p.meta.cdn.expire(fb)
    tw = p.twilio.add_media(JPEG)
    p.twilio.delete_media(tw)
    for conversation, media_id, url in (
        (WA, wa, None),
        (TG, tg, None),
        (TG, other_bot, None),
        (TG, "AgADnever-issued", None),
        (FB, None, fb),
        (TW, None, tw),
    ):
        query = {"url": url} if url else {}
        await refused(await gw.get(conversation, media_id, **query), 404, "not_found")


async def test_a_whatsapp_media_url_that_expired_is_404(
    aiohttp_client: Any, redis_url: str, providers: Providers
) -> None:
    providers.graph.media.url_ttl_s = 0.0  # the lookup's URL is stale by the time it is used
    gw = await make_gw(aiohttp_client, redis_url, providers, media_settings())
    media_id = providers.graph.media.add(NUMBER_A, JPEG)
    await refused(await gw.get(WA, media_id), 404, "not_found")


async def test_references_a_channel_cannot_fetch_are_400_and_reach_no_provider(gw: Media) -> None:
    p = gw.providers
    cases: list[tuple[str, str | None, dict[str, str]]] = [
        (WA, None, {"url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"}),
        (WA, "../../v21.0/me", {}),
        (WA, "a%2F..%2Fme", {}),
        (TG, None, {}),
        (FB, "12345", {}),
        (FB, None, {"url": "http://169.254.169.254/latest/meta-data/"}),
        (FB, None, {"url": "http://user@127.0.0.1.evil.example/cdn/x"}),
        (FB, None, {"url": "file:///etc/passwd"}),
        (TW, None, {"url": "https://evil.example/2010-04-01/Accounts/x/Messages/y/Media/z"}),
        (TW, None, {"url": p.twilio.url + "/2010-04-01/Accounts/" + TWILIO_SID + "/Messages.json"}),
        (TW, None, {"url": p.twilio.add_media(JPEG).replace(TWILIO_SID, "AC" + "f" * 32)}),
        (WA, "123", {"url": "https://x.example/also-a-url"}),
    ]
    for conversation, media_id, query in cases:
        resp = await gw.get(conversation, media_id, **query)
        if media_id == "../../v21.0/me":
            assert resp.status == 404  # never routed: the path has more segments
            continue
        await refused(resp, 400, "invalid")
    assert p.graph.requests == [] and p.bot.requests == [] and p.twilio.requests == []
    assert p.meta.cdn.requests == []


async def test_without_a_media_section_the_endpoint_is_404(
    aiohttp_client: Any, redis_url: str, providers: Providers
) -> None:
    gw = await make_gw(aiohttp_client, redis_url, providers, None)
    media_id = providers.graph.media.add(NUMBER_A, JPEG)
    await refused(await gw.get(WA, media_id), 404, "not_configured")


# --- limits and provider failures ----------------------------------------------------------------


async def test_a_file_over_the_limit_is_413_before_its_download(
    aiohttp_client: Any, redis_url: str, providers: Providers
) -> None:
    gw = await make_gw(aiohttp_client, redis_url, providers, media_settings(max_bytes=1000))
    media_id = providers.graph.media.add(NUMBER_A, JPEG)  # Graph says file_size > 1000
    detail = await refused(await gw.get(WA, media_id), 413, "too_large")
    assert str(len(JPEG)) in detail
    assert providers.graph.media.downloads == []  # the size was known from the lookup
    url = providers.meta.root_url + providers.meta.cdn.add(JPEG)  # from its Content-Length
    await refused(await gw.get(FB, url=url), 413, "too_large")


async def test_a_body_growing_past_the_limit_is_cut_off_mid_stream(
    aiohttp_client: Any, redis_url: str, providers: Providers
) -> None:
    gw = await make_gw(aiohttp_client, redis_url, providers, media_settings(max_bytes=40_000))
    big = providers.meta.root_url + providers.meta.cdn.add(
        b"v" * 200_000, "video/mp4", chunked=True
    )
    resp = await gw.get(FB, url=big)
    assert resp.status == 200  # the head was sent before the size was known
    assert "Content-Length" not in resp.headers
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()  # no complete-looking body: the connection is cut
    small = providers.meta.root_url + providers.meta.cdn.add(
        b"v" * 30_000, "video/mp4", chunked=True
    )
    resp = await gw.get(FB, url=small)
    assert await resp.read() == b"v" * 30_000
    assert gw.outcomes()[("messenger", "too_large")] == 1
    assert gw.outcomes()[("messenger", "ok")] == 1


async def test_telegrams_own_20_mb_limit_is_413(gw: Media) -> None:
    file_id = gw.providers.bot.files.add(BOT_1_TOKEN, b"\0" * (20 * 1024 * 1024 + 1))
    detail = await refused(await gw.get(TG, file_id), 413, "too_large")
    assert "20 MB" in detail


async def test_provider_failures_are_502_and_timeouts_504(gw: Media) -> None:
    graph = gw.providers.graph
    media_id = graph.media.add(NUMBER_A, JPEG)
    graph.fail_status(502, b"<html>Bad Gateway</html>")
    await refused(await gw.get(WA, media_id), 502, "provider_error")
    graph.delay(3.0, times=1)  # media.timeout_seconds is 1
    started = time.monotonic()
    await refused(await gw.get(WA, media_id), 504, "timeout")
    assert time.monotonic() - started < 2.5
    gw.providers.bot.fail_status(401, b'{"ok":false,"error_code":401,"description":"Unauthorized"}')
    tg = gw.providers.bot.files.add(BOT_1_TOKEN, JPEG)
    detail = await refused(await gw.get(TG, tg), 502, "provider_error")
    assert BOT_1_TOKEN not in detail
    assert (await gw.get(WA, media_id)).status == 200  # and the next one goes through


async def test_the_key_and_the_tokens_never_reach_a_log_line(
    aiohttp_client: Any, redis_url: str, providers: Providers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    p = providers
    gw = await make_gw(aiohttp_client, redis_url, p, media_settings(max_bytes=100_000))
    tg = p.bot.files.add(BOT_1_TOKEN, JPEG)
    await (await gw.get(TG, tg)).read()
    p.bot.fail_status(500, b"oops")
    await gw.get(TG, p.bot.files.add(BOT_1_TOKEN, JPEG))
    p.bot.delay(3.0, times=1)
    await gw.get(TG, p.bot.files.add(BOT_1_TOKEN, JPEG))
    await gw.get(WA, "123", headers={"Authorization": f"Bearer {SUPPORT_KEY}x"})
    big = p.meta.root_url + p.meta.cdn.add(b"v" * 200_000, chunked=True)
    with pytest.raises(aiohttp.ClientPayloadError):
        await (await gw.get(FB, url=big)).read()
    text = caplog.text
    assert "media download cut off" in text
    for secret in (SUPPORT_KEY, BOT_1_TOKEN, BOT_1_TOKEN.partition(":")[2], "token-a"):
        assert secret not in text


async def test_a_reload_rotates_the_keys_without_a_restart(
    aiohttp_client: Any, redis_url: str, providers: Providers, tmp_path: Path
) -> None:
    env = gateway_env(redis_url, GRAPH_URL=providers.graph.base_url, OUTBOUND_ENABLED="false")
    (tmp_path / "test.env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    config = tmp_path / "config.yaml"
    config.write_text(
        config_with(f"media: {{api_keys: [{{assistant: support, key: {SUPPORT_KEY}}}]}}\n")
    )
    source = ConfigSource(str(config), str(tmp_path / "test.env"))
    app = create_app(source.load(), redis_url)
    gw = Media(await aiohttp_client(app), providers)
    media_id = providers.graph.media.add(NUMBER_A, JPEG)
    new = {"Authorization": "Bearer media-key-support-rotated-0123"}
    await refused(await gw.get(WA, media_id, headers=new), 401, "unauthorized")
    config.write_text(config_with(
        f"media: {{api_keys: [{{assistant: support, key: {SUPPORT_KEY}}},"
        " {assistant: support, key: media-key-support-rotated-0123}]}\n"
    ))  # fmt: skip
    assert await reload(app, source)
    assert (await gw.get(WA, media_id, headers=new)).status == 200
    assert (await gw.get(WA, media_id)).status == 200  # the old key, until it is removed
    config.write_text(config_with(
        "media: {api_keys: [{assistant: support, key: media-key-support-rotated-0123}]}\n"
    ))  # fmt: skip
    assert await reload(app, source)
    await refused(await gw.get(WA, media_id), 401, "unauthorized")


# --- the channels' media steps, for any answer ----------------------------------------------------

ACCOUNTS = {name: account for name, account in (
    ("whatsapp", Account("whatsapp", NUMBER_A, "support", "token-a")),
    ("telegram", Account("telegram", BOT_1, "support", BOT_1_TOKEN)),
    ("messenger", Account("messenger", PAGE_A, "support", "page-token-a")),
    ("instagram", Account("instagram", IG_A, "sales", "ig-token-a")),
    ("twilio", Account("whatsapp", "5511955550001", "support", f"{TWILIO_SID}:{TWILIO_TOKEN}",
                       provider="twilio")),
)}  # fmt: skip
TWILIO_BASE = "https://api.twilio.com"


@examples(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(sorted(ACCOUNTS)),
    status=st.integers(100, 599),
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "ok",
                            "result",
                            "url",
                            "file_path",
                            "file_size",
                            "error",
                            "code",
                            "description",
                            "mime_type",
                        ]
                    ),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=8,
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
)
def test_any_provider_answer_is_a_call_or_a_media_error(
    name: str, status: int, body: bytes
) -> None:
    channel, account = CHANNELS[name], ACCOUNTS[name]
    try:
        call = channel.media_found(account, "https://api.example", status, body)
    except MediaError as exc:
        assert exc.reason in ("invalid", "not_found", "too_large", "provider")
        assert account.token not in exc.detail
    else:
        assert call.url.startswith(("https:", "http:")) and not call.lookup
        assert ".." not in call.url.split("?")[0].split("/")
    refusal = channel.media_refused(status, body)
    assert isinstance(refusal, MediaError) and account.token not in refusal.detail


_URLS = st.builds(
    lambda scheme, user, host, port, path: f"{scheme}://{user}{host}{port}/{path}",
    st.sampled_from(["https", "http", "ftp", "file", "HTTPS"]),
    st.sampled_from(["", "u@", "u:p@", "api.twilio.com@"]),
    st.sampled_from(["api.twilio.com", "scontent.xx.fbcdn.net", "fbcdn.net", "evil.example",
                     "lookaside.fbsbx.com.evil.example", "127.0.0.1", "[::1]", "xfbcdn.net"]),
    st.sampled_from(["", ":443", ":8443", ":x"]),
    st.text("abcMEMS0123456789/-.?=%#", max_size=80),
)  # fmt: skip


@examples(max_examples=500, deadline=None)
@given(url=_URLS | st.text(max_size=80))
def test_credentials_and_fetches_go_only_where_they_may(url: str) -> None:
    meta = media_settings(url_hosts=None)
    try:
        CHANNELS["messenger"].media(ACCOUNTS["messenger"], "", MediaRef(url=url), meta)
    except MediaError as exc:
        assert exc.reason == "invalid"
    else:
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and "@" not in parts.netloc
        host = parts.hostname or ""
        assert host.endswith((".fbcdn.net", ".fbsbx.com", ".cdninstagram.com"))
    try:
        call = CHANNELS["twilio"].media(ACCOUNTS["twilio"], TWILIO_BASE, MediaRef(url=url), meta)
    except MediaError as exc:
        assert exc.reason == "invalid"
    else:  # Basic credentials only to this account's media, on the configured API host
        parts = urlsplit(call.url)
        assert (parts.scheme, parts.netloc) == ("https", "api.twilio.com")
        assert parts.path.startswith(f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/")
        assert not parts.query and not parts.fragment


@given(
    header=st.text(max_size=60)
    | st.sampled_from([SUPPORT_KEY, SALES_KEY, SUPPORT_KEY[:-1], SALES_KEY + "x"]).flatmap(
        lambda key: st.sampled_from(["Bearer ", "bearer  ", "Basic ", "Bearer", ""]).map(
            lambda scheme: scheme + key
        )
    )
)
def test_only_a_configured_key_names_an_assistant(header: str) -> None:
    scheme, _, value = header.partition(" ")
    by_key = {SUPPORT_KEY: "support", SALES_KEY: "sales"}
    expected = by_key.get(value.strip()) if scheme.lower() == "bearer" else None
    assert assistant_of(header, media_settings().api_keys) == expected


# --- config --------------------------------------------------------------------------------------


def config_with(media: str, host: str = "127.0.0.1") -> str:
    return TEST_CONFIG.replace("host: 127.0.0.1", f"host: {host}") + media


@pytest.mark.parametrize(
    ("media", "message"),
    [
        (
            "media: {api_keys: [{assistant: nobody, key: k-0123456789abcdef}]}\n",
            "media.api_keys[0].assistant: no account is bound to 'nobody'",
        ),
        (
            "media: {api_keys: [{assistant: support, key: k-0123456789abcdef},"
            " {assistant: sales, key: k-0123456789abcdef}]}\n",
            "media.api_keys[1].key: the same key is listed twice",
        ),
        (
            "media: {api_keys: [{assistant: support, key: changeme}]}\n",
            "media.api_keys[0].key: is a placeholder",
        ),
        ("media: {max_bytes: 0}\n", "media.max_bytes"),
        ("media: {url_hosts: ['https://x.example']}\n", "media.url_hosts[0]"),
        ("media: {api_keys: [{assistant: support}]}\n", "key"),
    ],
)
def test_media_config_errors_name_their_key(redis_url: str, media: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        loads(config_with(media), gateway_env(redis_url))
    assert message in str(raised.value)
    assert "k-0123456789abcdef" not in str(raised.value)


def test_a_short_key_is_refused_off_loopback(redis_url: str) -> None:
    def config(host: str, key: str) -> str:
        return (
            f"server: {{host: {host}}}\n"
            f"redis: {{url: '{redis_url}'}}\n"
            "whatsapp: {app_secret: a-long-app-secret-0123456789, verify_token: a-long-verify"
            "-token-0123456789, numbers: [{phone_number_id: '1', display_phone_number: "
            "'+15550001111', assistant: support, access_token: EAAGlongtoken}]}\n"
            f"media: {{api_keys: [{{assistant: support, key: {key}}}]}}\n"
        )

    loads(config("127.0.0.1", "short-key"), {})  # on loopback: fine
    loads(config("0.0.0.0", "a-long-media-key-0123456789"), {})
    with pytest.raises(ConfigError, match=r"media.api_keys\[0\].key: shorter than 16"):
        loads(config("0.0.0.0", "short-key"), {})


# --- a real process: memory stays flat while 20 MB streams through ------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def _until_ready(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.returncode is None, "gateway serve exited"
        try:
            async with session.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("gateway serve never became ready")


async def _download(
    session: aiohttp.ClientSession, url: str, pid: int, pause_s: float
) -> tuple[int, int]:
    """Bytes read, and the gateway's highest RSS seen while they streamed."""
    peak, size = 0, 0
    async with session.get(url, headers=AUTH) as resp:
        assert resp.status == 200
        async for chunk in resp.content.iter_chunked(256 * 1024):
            size += len(chunk)
            peak = max(peak, _rss_bytes(pid))
            await asyncio.sleep(pause_s)
    return size, peak


async def test_20_mb_streams_through_a_gateway_process_with_flat_memory(
    tmp_path: Path, redis_url: str
) -> None:
    port = _free_port()
    async with FakeGraphAPI({NUMBER_A: "token-a"}) as graph:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {port}, drain_seconds: 0}}\n"
            f"redis: {{url: '{redis_url}'}}\n"
            "outbound: {enabled: false}\n"
            f"whatsapp: {{app_secret: {APP_SECRET}, verify_token: {VERIFY_TOKEN},"
            f" api_base: '{graph.base_url}', numbers: [{{phone_number_id: '{NUMBER_A}',"
            " display_phone_number: '+15550001111', assistant: support,"
            " access_token: token-a}]}\n"
            f"media: {{api_keys: [{{assistant: support, key: {SUPPORT_KEY}}}]}}\n"
        )
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "gateway", "serve", "--config", str(config)),
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                await _until_ready(session, base, proc)
                small = graph.media.add(NUMBER_A, os.urandom(2 * 1024 * 1024), "video/mp4")
                for _ in range(3):  # warm up: code paths, buffers, the connection pools
                    await _download(session, f"{base}/v1/media/{WA}/{small}", proc.pid, 0)
                before = _rss_bytes(proc.pid)
                body = os.urandom(20 * 1024 * 1024)
                big = graph.media.add(NUMBER_A, body, "video/mp4")
                size, peak = await _download(
                    session, f"{base}/v1/media/{WA}/{big}", proc.pid, 0.002
                )
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert size == len(body)
    grown = peak - before
    assert grown < 6 * 1024 * 1024, f"RSS {before} → {peak} (+{grown} bytes) for a 20 MB file"
    assert SUPPORT_KEY.encode() not in err
