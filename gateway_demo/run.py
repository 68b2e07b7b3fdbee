"""`gateway demo`: the whole loop on this machine, told as it happens.

It starts, in a temporary directory, the stand-ins for the Graph API and the Bot API
(gateway_demo/standins/), the gateway (`gateway serve`, with an embedded Redis) configured to
send to them, and the example assistant (examples/echo_assistant.py) on the gateway's Redis.
Then it posts signed webhooks as Meta and Telegram would, and prints each hop as it sees it:
webhook accepted, event in the inbox, command the assistant wrote, request the stand-in
received, delivery event, status webhook. Every step is checked: a hop that does not happen
within `STEP_TIMEOUT_S` ends the demo with status 1 and says which. It stops everything it
started and removes the directory, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from redis.asyncio import Redis

from gateway.embedded import PASSWORD_FILE, EmbeddedRedis, free_port
from gateway_demo.processes import (
    Child,
    DemoFailed,
    assistant_argv,
    find_example,
    gateway_argv,
    wait_ready,
)
from gateway_demo.standins.bot_api import FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI
from gateway_demo.streams import Entry, Streams
from gateway_demo.webhooks import Posted, TelegramBot, WhatsAppNumber

ASSISTANT = "support"
STEP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 30.0
WHATSAPP = "/webhooks/whatsapp"
CUSTOMER = ("15550001234", "Maria")
"""A customer in the number's own country (+1): no cross-country rule applies."""


class Story:
    """The demo's world once it is running, and the steps told on it."""

    def __init__(
        self, out: TextIO, base_url: str, number: WhatsAppNumber, bot: TelegramBot
    ) -> None:
        self.out = out
        self.base_url = base_url
        self.number = number
        self.bot = bot
        self.started = time.monotonic()
        self.graph = FakeGraphAPI(
            {number.phone_number_id: _token("EAAG")},
            wabas={number.waba_id: [number.phone_number_id]},
        )
        self.bot_api = FakeBotAPI([bot.token])
        self.assistant = Child("assistant")
        self.gateway = Child("gateway", lambda line: self.say("gateway", line))
        self.http: aiohttp.ClientSession | None = None
        self.streams: Streams | None = None
        self._ids = iter(range(1, 1_000_000))
        self.graph_seen = 0
        self.bot_seen = 0

    def say(self, who: str, what: str) -> None:
        print(
            f"  {time.monotonic() - self.started:6.2f} s  {who:<9}  {what}",
            file=self.out,
            flush=True,
        )

    def step(self, title: str) -> None:
        print(f"\n{title}", file=self.out, flush=True)

    # -- the hops -------------------------------------------------------------------------

    async def post(self, path: str, posted: Posted, what: str) -> None:
        assert self.http is not None
        body, headers = posted
        began = time.monotonic()
        async with self.http.post(f"{self.base_url}{path}", data=body, headers=headers) as answer:
            await answer.read()
        took = (time.monotonic() - began) * 1000
        self.say("webhook", f"POST {path} (signed): {what} → {answer.status} in {took:.1f} ms")
        if answer.status != 200:
            raise DemoFailed(f"the gateway answered {answer.status} to {what}")

    async def inbox(
        self, kind: str, what: str, match: Callable[[Entry], bool] = lambda _e: True
    ) -> Entry:
        assert self.streams is not None
        return await self.streams.next(
            self.streams.inbox, lambda e: e.get("kind") == kind and match(e), what, STEP_TIMEOUT_S
        )

    async def outbox(self) -> Entry:
        assert self.streams is not None
        return await self.streams.next(
            self.streams.outbox, lambda _e: True, "command", STEP_TIMEOUT_S
        )

    async def graph_request(self) -> None:
        """The stand-in Graph API's next request (counted by us: it may be there already)."""
        self.graph_seen += 1
        request = (await self.graph.wait_for(self.graph_seen, STEP_TIMEOUT_S))[-1]
        body: dict[str, Any] = request.body or {}
        kind = body.get("type", "text")
        said = f" {body['text']['body']!r}" if kind == "text" else ""
        answered = (request.response or {}).get("messages", [{}])[0].get("id", request.response)
        path = f"/{self.graph.version}/{request.phone_number_id}/messages"
        to = body.get("to")
        self.say("Graph API", f"POST {path}: {kind} to {to}{said} → {request.status} {answered}")

    async def bot_request(self) -> None:
        """The stand-in Bot API's next request."""
        self.bot_seen += 1
        request = (await self.bot_api.wait_for(self.bot_seen, STEP_TIMEOUT_S))[-1]
        text = (request.params or {}).get("text")
        result = (request.response or {}).get("result")
        sent = f"message {result['message_id']}" if isinstance(result, dict) else result
        chat = f"chat {request.chat_id}"
        self.say("Bot API", f"{request.method} to {chat} {text!r} → {request.status} {sent}")

    async def answered(self, message: Entry, on_provider: Callable[[], Any]) -> Entry:
        """The assistant's answer to `message`, from the outbox to its delivery."""
        command = await self.outbox()
        if command["conversation_id"] != message["conversation_id"]:
            wrong, right = command["conversation_id"], message["conversation_id"]
            raise DemoFailed(f"the assistant answered {wrong}, not {right}")
        await on_provider()
        delivery = await self.inbox(
            "delivery", "delivery", lambda e: e.get("command_id") == command["command_id"]
        )
        if delivery["outcome"] != "sent":
            outcome, detail = delivery["outcome"], delivery.get("detail")
            raise DemoFailed(f"command {command['command_id']} ended {outcome}: {detail}")
        self.say("assistant", await self.assistant.said("answered", STEP_TIMEOUT_S))
        return delivery

    def wamid(self) -> str:
        return f"wamid.DEMO{next(self._ids):04d}{secrets.token_hex(12).upper()}"

    # -- the steps ------------------------------------------------------------------------

    async def whatsapp_text(self) -> Posted:
        self.step(
            "1. A customer writes on WhatsApp; the assistant answers; WhatsApp reports it delivered"
        )
        sender, name = CUSTOMER
        posted = self.number.message(
            sender, name, self.wamid(), type="text", text={"body": "Hi! Where is my order?"}
        )
        await self.post(WHATSAPP, posted, f"text from +{sender}")
        message = await self.inbox("message", "message")
        delivery = await self.answered(message, self.graph_request)
        wamid = delivery["message_id"]
        await self.post(
            WHATSAPP,
            self.number.status(wamid, "delivered", sender),
            f"status delivered of {wamid}",
        )
        await self.inbox("status", "status", lambda e: e.get("message_id") == wamid)
        return posted

    async def whatsapp_image(self) -> None:
        self.step("2. The customer sends a photo with a caption")
        sender, name = CUSTOMER
        image = {
            "caption": "This arrived broken",
            "mime_type": "image/jpeg",
            "sha256": "demo",
            "id": "1029384756205885",
        }
        await self.post(
            WHATSAPP,
            self.number.message(sender, name, self.wamid(), type="image", image=image),
            "image",
        )
        message = await self.inbox("message", "message")
        self.say(
            "",
            f"the event carries the media id {message['media']['id']} for the assistant to fetch",
        )
        await self.answered(message, self.graph_request)

    async def telegram_text(self) -> None:
        self.step("3. Someone writes to the Telegram bot")
        posted = self.bot.message(
            500_000_000 + next(self._ids), 4242, "Lee", "Do you ship to Canada?"
        )
        await self.post(f"/webhooks/telegram/{self.bot.bot_id}", posted, "message from user 4242")
        message = await self.inbox("message", "message")
        await self.answered(message, self.bot_request)

    async def redelivery(self, posted: Posted) -> None:
        self.step("4. WhatsApp delivers the first webhook again (platforms redeliver)")
        assert self.streams is not None
        await self.post(WHATSAPP, posted, "the same text, same wamid")
        # The 200 came after the gateway checked the wamid: anything it published is there now.
        if await self.streams.new(self.streams.inbox):
            raise DemoFailed("the redelivered message was published again")
        self.say("router", "the wamid was seen before: nothing published, nothing answered twice")

    async def echo_pauses(self) -> None:
        self.step("5. A person answers from the WhatsApp Business app: the assistant steps back")
        assert self.streams is not None
        sender, name = CUSTOMER
        echo = self.number.echo(
            sender, self.wamid(), "Hi Maria, it's Sam from the shop, I'll check."
        )
        await self.post(WHATSAPP, echo, "smb_message_echoes (coexistence)")
        await self.inbox("echo", "echo")
        self.say(
            "router", "the conversation is paused for the assistant (policy.human_takeover_seconds)"
        )
        posted = self.number.message(
            sender, name, self.wamid(), type="text", text={"body": "Thanks Sam!"}
        )
        await self.post(WHATSAPP, posted, f"text from +{sender}")
        message = await self.inbox("message", "message")
        if not message.get("ai_paused"):
            raise DemoFailed("the message after the echo is not ai_paused")
        self.say("assistant", await self.assistant.said("not answering", STEP_TIMEOUT_S))
        # The assistant has handled the event: a command it wrote would be in the outbox now.
        if await self.streams.new(self.streams.outbox):
            raise DemoFailed("the assistant answered a paused conversation")
        self.say("outbox", "nothing: the human has the conversation")


def _token(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _config(
    base_url_port: int, data: Path, graph: str, bot_api: str, number: WhatsAppNumber
) -> str:
    return f"""\
server: {{host: 127.0.0.1, port: {base_url_port}, drain_seconds: 0}}
redis: {{embedded_dir: {data / "redis"}}}
whatsapp:
  app_secret: ${{DEMO_WHATSAPP_APP_SECRET}}
  verify_token: ${{DEMO_WHATSAPP_VERIFY_TOKEN}}
  api_base: {graph}
  numbers:
    - phone_number_id: "{number.phone_number_id}"
      display_phone_number: "{number.display_phone_number}"
      waba_id: "{number.waba_id}"
      access_token: ${{DEMO_WHATSAPP_TOKEN}}
      mode: coexistence
      assistant: {ASSISTANT}
telegram:
  api_base: {bot_api}
  bots:
    - token: ${{DEMO_TELEGRAM_BOT_TOKEN}}
      secret_token: ${{DEMO_TELEGRAM_SECRET}}
      assistant: {ASSISTANT}
"""


async def _run(out: TextIO, data: Path) -> None:
    number = WhatsAppNumber("106540352242922", "+15551234567", "102290129340398", _token(""))
    bot = TelegramBot(
        f"7{secrets.randbelow(10**9):09d}:{secrets.token_urlsafe(26)}", secrets.token_urlsafe(24)
    )
    port = free_port()
    story = Story(out, f"http://127.0.0.1:{port}", number, bot)
    example = find_example()
    async with story.graph, story.bot_api, aiohttp.ClientSession() as http:
        story.http = http
        config = data / "config.yaml"
        config.write_text(_config(port, data, story.graph.base_url, story.bot_api.base_url, number))
        (wa_token,) = story.graph.tokens.values()
        env = {
            "DEMO_WHATSAPP_APP_SECRET": number.app_secret,
            "DEMO_WHATSAPP_VERIFY_TOKEN": _token(""),
            "DEMO_WHATSAPP_TOKEN": wa_token,
            "DEMO_TELEGRAM_BOT_TOKEN": bot.token,
            "DEMO_TELEGRAM_SECRET": bot.secret_token,
        }
        print(
            f"gateway demo: everything runs on this machine, in {data}, and stops at the end",
            file=out,
        )
        story.say(
            "stand-in", f"Graph API on {story.graph.base_url}, Bot API on {story.bot_api.base_url}"
        )
        redis: Redis | None = None
        try:
            await story.gateway.start(gateway_argv(config), env)
            await wait_ready(story.gateway, story.base_url, START_TIMEOUT_S)
            story.say(
                "gateway",
                f"ready on {story.base_url} (config {config}, embedded Redis in {data / 'redis'})",
            )
            url = _embedded_url(data / "redis")
            redis = Redis.from_url(url)
            inbox, outbox = f"gw:inbox:{ASSISTANT}", f"gw:outbox:{ASSISTANT}"
            story.streams = Streams(
                redis,
                inbox,
                outbox,
                lambda stream, line: story.say("inbox" if stream == inbox else "outbox", line),
            )
            await story.assistant.start(
                assistant_argv(example, ASSISTANT), {"GATEWAY_REDIS_URL": url}
            )
            story.say("assistant", await story.assistant.said("answering", START_TIMEOUT_S))
            first = await story.whatsapp_text()
            await story.whatsapp_image()
            await story.telegram_text()
            await story.redelivery(first)
            await story.echo_pauses()
        except DemoFailed:
            for child in (story.gateway, story.assistant):
                if child.tail:
                    print(f"\nthe {child.name}'s last lines:", *child.tail, sep="\n  ", file=out)
            raise
        finally:
            print(
                "\nstopping: the assistant, the gateway (and its Redis), the stand-ins",
                file=out,
                flush=True,
            )
            await story.assistant.stop(5)
            status = await story.gateway.stop(20)
            if redis is not None:
                if status != 0:  # killed: its Redis was not stopped for it
                    with contextlib.suppress(Exception):
                        await redis.shutdown(nosave=True)
                await redis.aclose()


def _embedded_url(data_dir: Path) -> str:
    password = (data_dir / PASSWORD_FILE).read_text(encoding="ascii").strip()
    return EmbeddedRedis(0, data_dir, tcp=False, password=password).url


def main(out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when every step happened as told, 1 when one did not."""
    data = Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    try:
        asyncio.run(_run(out, data))
    except DemoFailed as exc:
        print(f"\ngateway demo: FAILED: {exc}", file=out)
        return 1
    except KeyboardInterrupt:
        print("\ngateway demo: interrupted", file=out)
        return 130
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print(f"\ngateway demo: done, every step as told; removed {data}", file=out)
    return 0
