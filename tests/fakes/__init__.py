"""Local stand-ins for the provider APIs the gateway sends to, for tests and benchmarks.

- `gateway_demo.standins.graph_api.FakeGraphAPI`: the WhatsApp Cloud API send endpoint
  (`POST /v21.0/<PHONE_NUMBER_ID>/messages`), with Graph's error envelope and statuses
  (`gateway_demo.standins.graph_errors` holds the catalog).
- `gateway_demo.standins.bot_api.FakeBotAPI`: the Telegram Bot API (`/bot<token>/<method>`),
  with its `{"ok": false, "error_code", "description", "parameters"}` errors.
- `send_api.FakeSendAPI` (Messenger and Instagram) and `twilio_api.FakeTwilioAPI` (the
  Messages API, posting signed status callbacks), here.

The first two ship with the gateway (`gateway_demo/standins/`) because `gateway demo` runs
them; the tests import the same code. All are small aiohttp servers on 127.0.0.1 and a free
port, started with `async with`. They record every request, can be scripted to fail (a code,
a raw status, a delay) and can enforce the providers' rate limits, so a test fails loudly when
the gateway goes over them. Each module's docstring lists what is faithful to the real API
and what is simplified. `test_fakes.py` and `test_twilio_api.py` check them against the
providers' documented answers.
"""

from gateway_demo.standins.bot_api import BotRequest, FakeBotAPI
from gateway_demo.standins.graph_api import FakeGraphAPI, GraphRequest

__all__ = ["BotRequest", "FakeBotAPI", "FakeGraphAPI", "GraphRequest"]
