"""Local stand-ins for the WhatsApp Cloud API (Graph API) and the Telegram Bot API, on
127.0.0.1: `gateway demo` sends to them, and the test suite and benchmarks drive them
(tests/fakes/). Each module's docstring says what is faithful to the real API and what is
simplified."""
