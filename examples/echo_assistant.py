"""An assistant backend in a few dozen lines, on the gateway's client (gateway_client/):
it answers every message by echoing it, stays quiet while a human holds the conversation
(`ai_paused`), and hands the conversation to a human when the customer asks for one.

    .venv/bin/python examples/echo_assistant.py --redis-url redis://127.0.0.1:6379/0 \\
        --assistant support

(or the URL in GATEWAY_REDIS_URL: a URL holding a password is better kept out of `ps`).

It reads `gw:inbox:<assistant>` as the consumer group `echo-assistant` (entries a crashed
run left unacknowledged are taken over after a minute) and prints what it does.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from gateway_client import Backend, Event, Message, commands

HANDOFF_WORDS = ("human", "agent", "atendente", "pessoa")


async def handle(backend: Backend, event: Event) -> list[str]:
    """Answer one event; the types of the commands sent (none for what needs no answer)."""
    if not isinstance(event, Message) or event.conversation_id is None:
        return []
    conversation = event.conversation_id
    if event.ai_paused:
        print(f"{conversation}: a human has this conversation, not answering")
        return []
    said = event.text or f"a {event.type}"
    if any(word in said.lower() for word in HANDOFF_WORDS):
        await backend.send(commands.text(conversation, "A person will answer you shortly."))
        await backend.send(commands.handoff(conversation))
        print(f"{conversation}: handed off to a human ({said!r})")
        return ["text", "handoff"]
    sent = await backend.send(commands.text(conversation, f"You said: {said}",
                                            reply_to=event.message_id))  # fmt: skip
    delivery = await backend.delivery(sent, timeout_s=30)
    print(f"{conversation}: answered {said!r}: {delivery.outcome} {delivery.reason or ''}")
    return ["text"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    url = os.environ.get("GATEWAY_REDIS_URL")
    parser.add_argument(
        "--redis-url",
        default=url,
        required=url is None,
        help="the gateway's Redis ($GATEWAY_REDIS_URL)",
    )
    parser.add_argument("--assistant", required=True, help="whose inbox to answer")
    parser.add_argument("--cluster", action="store_true", help="the Redis is a cluster")
    args = parser.parse_args()
    backend = Backend.from_url(args.redis_url, args.assistant, cluster=args.cluster)
    print(f"answering gw:inbox:{args.assistant} (Ctrl-C to stop)")
    try:
        async for item in backend.inbox(group="echo-assistant"):
            await handle(backend, item.event)
    finally:
        await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())
