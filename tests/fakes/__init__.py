"""Local stand-ins for the provider APIs the gateway sends to, for tests and benchmarks.

- `graph_api.FakeGraphAPI`: the WhatsApp Cloud API send endpoint
  (`POST /v21.0/<PHONE_NUMBER_ID>/messages`), with Graph's error envelope and statuses
  (`graph_errors` holds the catalog).
- `bot_api.FakeBotAPI`: the Telegram Bot API (`/bot<token>/<method>`), with its
  `{"ok": false, "error_code", "description", "parameters"}` errors.

Both are small aiohttp servers on 127.0.0.1 and a free port, started with `async with`. They
record every request, can be scripted to fail (a code, a raw status, a delay) and can enforce
the providers' rate limits, so a test fails loudly when the gateway goes over them. Each
module's docstring lists what is faithful to the real API and what is simplified.
"""

from tests.fakes.bot_api import BotRequest, FakeBotAPI
from tests.fakes.graph_api import FakeGraphAPI, GraphRequest

__all__ = ["BotRequest", "FakeBotAPI", "FakeGraphAPI", "GraphRequest"]
