"""The stand-in Twilio API answers like Twilio's Messages API: the Message resource, every
error body it knows, scripted failures in order, its REST rate, the typing indicator, and the
status callbacks it posts, signed as Twilio signs them. Driven over real HTTP with
aiohttp.ClientSession, as the gateway drives it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web

from gateway_demo.standins._server import HOST
from tests.conftest import TWILIO_SID, TWILIO_TOKEN, TWILIO_URL
from tests.fakes.twilio_api import FakeTwilioAPI, inbound_message

SENDER = "+14155550100"
OTHER_SENDER = "+5511955550001"
CONTACT = "+5511987650000"
KEY_SID = "SK" + "fedcba9876543210" * 2
KEY_SECRET = "tWiLiOaPiKeYsEcReT0123456789abcd"
CONTENT = "HX" + "0123456789abcdef" * 2
INBOUND = "SM" + "1234567890abcdef" * 2
MESSAGE_SID = re.compile(r"SM[0-9a-f]{32}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake() -> AsyncIterator[FakeTwilioAPI]:
    senders = [SENDER, f"whatsapp:{OTHER_SENDER}"]
    async with FakeTwilioAPI(
        TWILIO_SID, TWILIO_TOKEN, senders=senders, api_keys={KEY_SID: KEY_SECRET}
    ) as api:
        yield api


def whatsapp(**params: str) -> dict[str, str]:
    return {
        "To": f"whatsapp:{CONTACT}",
        "From": f"whatsapp:{SENDER}",
        "StatusCallback": TWILIO_URL,
        **params,
    }


async def post(
    http: aiohttp.ClientSession,
    fake: FakeTwilioAPI,
    form: Any,
    *,
    auth: tuple[str, str] | None = (TWILIO_SID, TWILIO_TOKEN),
    account: str = TWILIO_SID,
    path: str | None = None,
) -> tuple[int, Any, Any]:
    url = fake.url + (path or f"/2010-04-01/Accounts/{account}/Messages.json")
    headers = {"Authorization": aiohttp.encode_basic_auth(*auth)} if auth else {}
    async with http.post(url, data=form, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


def twilio_error(code: int, status: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


# -- the Messages API: success -----------------------------------------------------------------


async def test_a_message_is_queued_with_twilios_resource(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    status, resource, headers = await post(http, fake, whatsapp(Body="Olá!"))
    assert status == 201
    sid = resource["sid"]
    assert MESSAGE_SID.fullmatch(sid)
    uri = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/{sid}"
    assert resource == {
        "account_sid": TWILIO_SID,
        "api_version": "2010-04-01",
        "body": "Olá!",
        "date_created": resource["date_created"],
        "date_sent": None,
        "date_updated": resource["date_created"],
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": f"whatsapp:{SENDER}",
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": None,
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{uri}/Media.json"},
        "to": f"whatsapp:{CONTACT}",
        "uri": f"{uri}.json",
    }
    assert parsedate_to_datetime(resource["date_created"]).utcoffset() is not None
    assert re.fullmatch(r"RQ[0-9a-f]{32}", headers["Twilio-Request-Id"])
    [record] = fake.requests
    assert (record.route, record.account_sid, record.user, record.status) == (
        "messages",
        TWILIO_SID,
        TWILIO_SID,
        201,
    )
    assert record.params == whatsapp(Body="Olá!") and record.sid == sid
    assert fake.sent_to("5511987650000") == [record] == fake.sent_to(f"whatsapp:{CONTACT}")


async def test_media_and_content_messages_are_queued(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    media = whatsapp(MediaUrl="https://cdn.example.com/a.jpg", Body="legenda")
    status, resource, _ = await post(http, fake, media)
    assert (status, resource["num_media"], resource["body"]) == (201, "1", "legenda")
    content = whatsapp(ContentSid=CONTENT, ContentVariables=json.dumps({"1": "Ana"}))
    assert (await post(http, fake, content))[0] == 201
    assert (await post(http, fake, whatsapp(ContentSid=CONTENT)))[0] == 201
    assert (await post(http, fake, whatsapp(Body="x" * 1600)))[0] == 201


async def test_message_sids_are_unique(http: aiohttp.ClientSession, fake: FakeTwilioAPI) -> None:
    sids = {(await post(http, fake, whatsapp(Body="oi")))[1]["sid"] for _ in range(20)}
    assert len(sids) == 20


async def test_an_api_key_authenticates_for_its_account(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    assert (await post(http, fake, whatsapp(Body="oi"), auth=(KEY_SID, KEY_SECRET)))[0] == 201
    assert fake.requests[0].user == KEY_SID


# -- the Messages API: refusals ----------------------------------------------------------------

AUTHENTICATE = twilio_error(20003, 401, "Authenticate")


@pytest.mark.parametrize(
    ("auth", "account"),
    [
        (None, TWILIO_SID),
        ((TWILIO_SID, "wrong-token"), TWILIO_SID),
        ((KEY_SID, "wrong-secret"), TWILIO_SID),
        (("SK" + "0" * 32, KEY_SECRET), TWILIO_SID),
        ((TWILIO_SID, TWILIO_TOKEN), "AC" + "f" * 32),  # another account's path
    ],
)
async def test_missing_or_wrong_credentials_are_20003(
    http: aiohttp.ClientSession,
    fake: FakeTwilioAPI,
    auth: tuple[str, str] | None,
    account: str,
) -> None:
    status, payload, headers = await post(
        http, fake, whatsapp(Body="oi"), auth=auth, account=account
    )
    assert (status, payload) == (401, AUTHENTICATE)
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert fake.sent_to(CONTACT) == []


def without(name: str) -> dict[str, str]:
    form = whatsapp(Body="oi")
    del form[name]
    return form


REFUSED: dict[str, tuple[Any, int, str]] = {
    "no To": (without("To"), 21604, "A 'To' phone number is required."),
    "no From": (without("From"), 21603, "A 'From' phone number is required."),
    "From not a sender": (
        whatsapp(Body="oi", From="whatsapp:+14155550199"),
        63007,
        "Twilio could not find a Channel with the specified From address",
    ),
    "From without the channel": (
        whatsapp(Body="oi", From=SENDER),
        63007,
        "Twilio could not find a Channel with the specified From address",
    ),
    "To on another channel": (
        whatsapp(Body="oi", To=CONTACT),
        21910,
        "Invalid From and To pair. From and To should be of the same channel.",
    ),
    "To not E.164": (
        whatsapp(Body="oi", To="whatsapp:BR.1234ABCD"),
        21211,
        "Invalid 'To' Phone Number: whatsapp:BR.1234ABCD",
    ),
    "variables without content": (
        whatsapp(ContentVariables='{"1":"Ana"}'),
        21654,
        "ContentSid Required",
    ),
    "content sid malformed": (whatsapp(ContentSid="HX123"), 21655, "The ContentSid is Invalid"),
    "variables not JSON": (
        whatsapp(ContentSid=CONTENT, ContentVariables="{1: Ana}"),
        21656,
        "The Content Variables parameter is invalid.",
    ),
    "variables a list": (
        whatsapp(ContentSid=CONTENT, ContentVariables='["Ana"]'),
        21656,
        "The Content Variables parameter is invalid.",
    ),
    "variable null": (
        whatsapp(ContentSid=CONTENT, ContentVariables='{"1":null}'),
        21656,
        "The Content Variables parameter is invalid.",
    ),
    "variable empty": (
        whatsapp(ContentSid=CONTENT, ContentVariables='{"1":""}'),
        21656,
        "The Content Variables parameter is invalid.",
    ),
    "body with variables": (
        whatsapp(ContentSid=CONTENT, ContentVariables='{"1":"Ana"}', Body="oi"),
        35127,
        "'Messages' Body and ContentVariables cannot be provided together",
    ),
    "no content": (whatsapp(), 21619, "A text message body or media urls must be specified."),
    "empty body": (
        whatsapp(Body=""),
        21619,
        "A text message body or media urls must be specified.",
    ),
    "body over 1600": (
        whatsapp(Body="x" * 1601),
        21617,
        "The concatenated message body exceeds the 1600 character limit.",
    ),
    "media not http": (
        whatsapp(MediaUrl="ftp://cdn.example.com/a.jpg"),
        21620,
        "Invalid media URL(s)",
    ),
    "two media": (
        [
            *whatsapp().items(),
            ("MediaUrl", "https://x.example/a.jpg"),
            ("MediaUrl", "https://x.example/b.jpg"),
        ],
        21623,
        "Number of media files exceeds allowed limit",
    ),
    "status callback not a URL": (
        whatsapp(Body="oi", StatusCallback="gateway.example.com/webhooks/twilio"),
        21609,
        "Invalid 'StatusCallback'",
    ),
}


@pytest.mark.parametrize(("form", "code", "message"), REFUSED.values(), ids=list(REFUSED))
async def test_invalid_messages_get_twilios_code(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI, form: Any, code: int, message: str
) -> None:
    status, payload, _ = await post(http, fake, form)
    assert (status, payload) == (400, twilio_error(code, 400, message))
    assert fake.requests[0].status == 400 and not fake.requests[0].accepted


async def test_a_json_body_has_no_parameters(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    url = f"{fake.url}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    headers = {"Authorization": aiohttp.encode_basic_auth(TWILIO_SID, TWILIO_TOKEN)}
    async with http.post(url, json=whatsapp(Body="oi"), headers=headers) as resp:
        assert (resp.status, (await resp.json())["code"]) == (400, 21604)


async def test_an_unknown_path_is_20404(http: aiohttp.ClientSession, fake: FakeTwilioAPI) -> None:
    path = f"/2010-04-01/Accounts/{TWILIO_SID}/SMS/Messages.json"
    status, payload, _ = await post(http, fake, whatsapp(Body="oi"), path=path)
    assert (status, payload) == (
        404,
        twilio_error(20404, 404, f"The requested resource {path} was not found"),
    )


# -- scripting ---------------------------------------------------------------------------------


async def test_failures_are_consumed_in_order_and_by_recipient(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    other = "+14155550123"
    fake.fail(63016, to="5511987650000", times=2)
    fake.fail(21211)
    assert (await post(http, fake, whatsapp(Body="a", To=f"whatsapp:{other}")))[1]["code"] == 21211
    first = await post(http, fake, whatsapp(Body="b"))
    assert first[:2] == (
        400,
        twilio_error(
            63016,
            400,
            "Failed to send freeform message because you are outside the allowed window. If "
            "you are using WhatsApp, please use a Message Template.",
        ),
    )
    assert (await post(http, fake, whatsapp(Body="c")))[1]["code"] == 63016
    assert (await post(http, fake, whatsapp(Body="d")))[0] == 201


async def test_a_failure_can_override_status_and_message_and_say_when_to_retry(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    fake.fail(20429, retry_after=3)
    status, payload, headers = await post(http, fake, whatsapp(Body="oi"))
    assert (status, payload, headers["Retry-After"]) == (
        429,
        twilio_error(20429, 429, "Too Many Requests"),
        "3",
    )
    fake.fail(63012, http_status=503, message="Channel down")
    assert (await post(http, fake, whatsapp(Body="oi")))[:2] == (
        503,
        twilio_error(63012, 503, "Channel down"),
    )


async def test_validation_comes_before_scripted_failures(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    fake.fail(63016)
    assert (await post(http, fake, without("To")))[1]["code"] == 21604
    assert (await post(http, fake, whatsapp(Body="oi")))[1]["code"] == 63016


async def test_a_raw_answer_comes_before_authentication(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    fake.fail_status(502, b"<html>Bad Gateway</html>")
    url = f"{fake.url}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    async with http.post(url, data=whatsapp(Body="oi")) as resp:
        assert (resp.status, await resp.text()) == (502, "<html>Bad Gateway</html>")
    assert fake.requests[0].response is None


async def test_the_rest_rate_answers_20429_past_the_cap(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    fake.enforce_rate(3)
    statuses = [(await post(http, fake, whatsapp(Body=str(i))))[0] for i in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    assert fake.peak_per_second() == 3 == fake.peak_per_second(SENDER)
    assert fake.peak_per_second(OTHER_SENDER) == 0
    fake.enforce_rate(None)
    assert (await post(http, fake, whatsapp(Body="free")))[0] == 201


# -- the typing indicator ----------------------------------------------------------------------


async def test_the_typing_indicator(http: aiohttp.ClientSession, fake: FakeTwilioAPI) -> None:
    fake.fail(63016)  # scripted failures are for messages only
    path = "/v2/Indicators/Typing.json"
    ok = await post(http, fake, {"channel": "whatsapp", "messageId": INBOUND}, path=path)
    assert ok[:2] == (200, {"success": True})
    invalid = twilio_error(20422, 400, "Invalid Parameter")
    for form in (
        {"channel": "sms", "messageId": INBOUND},
        {"channel": "whatsapp", "messageId": "wamid.HBgN"},
        {"channel": "whatsapp"},
    ):
        assert (await post(http, fake, form, path=path))[:2] == (400, invalid)
    unauthenticated = await post(
        http, fake, {"channel": "whatsapp", "messageId": INBOUND}, path=path, auth=None
    )
    assert unauthenticated[:2] == (401, AUTHENTICATE)
    assert [r.route for r in fake.typing()] == ["typing"]
    assert (await post(http, fake, whatsapp(Body="oi")))[1]["code"] == 63016


# -- status callbacks --------------------------------------------------------------------------


class Gateway:
    """A stand-in for the gateway's webhook: records what it is posted, answers TwiML."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Gateway:
        app = web.Application()
        app.router.add_post("/webhooks/twilio", self._webhook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{HOST}:{port}/webhooks/twilio"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def _webhook(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        return web.Response(text="<Response/>", content_type="text/xml")


def expected_signature(url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's signature, computed here from its definition (PLATFORM-MORE §5.1)."""
    data = url + "".join(name + value for name, value in sorted(params))
    mac = hmac.new(TWILIO_TOKEN.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


async def test_status_callbacks_are_posted_signed_over_the_status_callback_url(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    _, resource, _ = await post(http, fake, whatsapp(Body="oi"))
    sid = resource["sid"]
    async with Gateway() as gateway:
        delivered = await fake.post_status(sid, "delivered", to=gateway.url)
        failed = await fake.post_status(sid, "undelivered", to=gateway.url, error_code=63016)
    assert (delivered.status, delivered.body, delivered.signed_url) == (
        200,
        "<Response/>",
        TWILIO_URL,
    )
    (headers, body), (_, failed_body) = gateway.posts
    params = parse_qsl(body.decode(), keep_blank_values=True)
    assert dict(params) == {
        "ChannelPrefix": "whatsapp",
        "ApiVersion": "2010-04-01",
        "MessageStatus": "delivered",
        "SmsSid": sid,
        "SmsStatus": "delivered",
        "ChannelInstallSid": dict(params)["ChannelInstallSid"],
        "To": f"whatsapp:{CONTACT}",
        "ChannelToAddress": CONTACT,
        "From": f"whatsapp:{SENDER}",
        "MessageSid": sid,
        "AccountSid": TWILIO_SID,
        "EventType": "DELIVERED",
    }
    assert re.fullmatch(r"XE[0-9a-f]{32}", dict(params)["ChannelInstallSid"])
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["X-Twilio-Signature"] == expected_signature(TWILIO_URL, params)
    undelivered = dict(parse_qsl(failed_body.decode()))
    assert (undelivered["MessageStatus"], undelivered["ErrorCode"]) == ("undelivered", "63016")
    assert undelivered["ChannelStatusMessage"].startswith("Failed to send freeform message")
    assert fake.messages[sid].history == ["delivered", "undelivered"]
    assert fake.messages[sid].resource["status"] == "undelivered"
    assert fake.callbacks == [delivered, failed]


async def test_a_status_is_posted_only_for_a_message_with_a_status_callback(
    http: aiohttp.ClientSession, fake: FakeTwilioAPI
) -> None:
    form = whatsapp(Body="oi")
    del form["StatusCallback"]
    _, resource, _ = await post(http, fake, form)
    with pytest.raises(ValueError, match="without a StatusCallback"):
        await fake.post_status(resource["sid"], "sent", to="http://127.0.0.1:9/")
    with pytest.raises(ValueError, match="not a status"):
        await fake.post_status(resource["sid"], "received", to="http://127.0.0.1:9/")


def test_inbound_message_is_a_whatsapp_text_as_twilio_posts_it() -> None:
    form = inbound_message(TWILIO_SID, SENDER, "5511987650000", "Oi", sid=INBOUND)
    assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"] == INBOUND
    assert (form["From"], form["To"], form["WaId"]) == (
        f"whatsapp:{CONTACT}",
        f"whatsapp:{SENDER}",
        "5511987650000",
    )
    assert (form["Body"], form["AccountSid"], form["NumMedia"]) == ("Oi", TWILIO_SID, "0")
