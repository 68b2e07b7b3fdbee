"""Credentials checked at start (issue #18 item 5): an enabled account's token or a section's
secret that is empty or a placeholder stops startup naming the key (never the value); a
disabled account may keep one; demo.env's values still start the README's loopback demo.
And config errors never quote a decrypted value."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.credentials import problem_of
from gateway import sealed
from gateway.config import ConfigError, load, loads, read_env_file
from tests.conftest import TEST_CONFIG, gateway_env

ROOT = Path(__file__).parent.parent
PLACEHOLDERS = [
    "changeme", "CHANGE_ME", "change-me", "<your access token>", "<TOKEN>", "{{ token }}",
    "$WHATSAPP_TOKEN", "${TOKEN}", "xxx", "XXXX-XXXX-XXXX", "...", "***", "TODO", "tbd",
    "placeholder", "your-token", "YOUR_APP_SECRET", "yourtoken", "your token here",
    "token_here", "paste-your-token", "REPLACE_ME", "replace-with-the-token", "Secret", "token",
]  # fmt: skip
REAL = [
    "EAAGm0PX4ZCpsBAKZC-real-looking-0123", "s3cret-s3cret-s3cret", "token-a", "tg-secret_1",
    "demo-access-token", "demo-app-secret-change-me", "demo_secret_change_me", "abc", "x",
    "123456789:demo-bot-token-change-me", "young-token-0123", "xylophone-secret",
]  # fmt: skip
SECTIONS = """
server: {host: 127.0.0.1}
whatsapp:
  app_secret: "${WA_SECRET}"
  verify_token: "${WA_VERIFY}"
  numbers:
    - {phone_number_id: "106540352242922", display_phone_number: "+15551234567",
       assistant: support, access_token: "${WA_TOKEN}", enabled: "${WA_ENABLED}"}
    - {phone_number_id: "106540352242923", display_phone_number: "+15551234568",
       assistant: support}
telegram:
  bots:
    - {token: "${TG_TOKEN}", secret_token: "${TG_SECRET}", assistant: support,
       enabled: "${TG_ENABLED}"}
messenger:
  app_secret: "${MS_SECRET}"
  verify_token: a-verify-token-of-32-characters
  pages:
    - {page_id: "104400000000001", access_token: "${PAGE_TOKEN}", assistant: support,
       enabled: "${PAGE_ENABLED}"}
instagram:
  app_secret: an-instagram-app-secret-0123
  verify_token: a-verify-token-of-32-characters
  accounts:
    - {account_id: "17841400000000001", access_token: "${IG_TOKEN}", assistant: sales,
       enabled: "${IG_ENABLED}"}
twilio:
  account_sid: AC0123456789abcdef0123456789abcdef
  auth_token: "${TWILIO_TOKEN}"
  public_url: https://gateway.example.com/webhooks/twilio
  signing_keys: [{sid: key1, secret: "${SIGNING_SECRET}"}]
  numbers: [{number: "+14155550100", assistant: sales, enabled: "${TWILIO_ENABLED}"}]
"""
GOOD = {
    "WA_SECRET": "a-real-app-secret-0123456789", "WA_VERIFY": "a-real-verify-token-0123",
    "WA_TOKEN": "EAAG-real-token-0123456789", "TG_TOKEN": "7000000001:AAHrealtokenrealtoken",
    "TG_SECRET": "a-real-tg-secret-0123", "MS_SECRET": "a-real-messenger-secret-0123",
    "PAGE_TOKEN": "EAAG-page-token-0123456789", "IG_TOKEN": "IGQ-real-token-0123456789",
    "TWILIO_TOKEN": "a-real-twilio-auth-token-0123", "SIGNING_SECRET": "a-real-signing-key-0123",
    "WA_ENABLED": "true", "TG_ENABLED": "true", "PAGE_ENABLED": "true", "IG_ENABLED": "true",
    "TWILIO_ENABLED": "true",
}  # fmt: skip
ACCOUNT_TOKENS = [
    ("WA_TOKEN", "WA_ENABLED", "whatsapp.numbers[0].access_token"),
    ("TG_TOKEN", "TG_ENABLED", "telegram.bots[0].token"),
    ("TG_SECRET", "TG_ENABLED", "telegram.bots[0].secret_token"),
    ("PAGE_TOKEN", "PAGE_ENABLED", "messenger.pages[0].access_token"),
    ("IG_TOKEN", "IG_ENABLED", "instagram.accounts[0].access_token"),
]
SECTION_SECRETS = [
    ("WA_SECRET", "whatsapp.app_secret"),
    ("WA_VERIFY", "whatsapp.verify_token"),
    ("MS_SECRET", "messenger.app_secret"),
    ("TWILIO_TOKEN", "twilio.auth_token"),
    ("SIGNING_SECRET", "twilio.signing_keys[0].secret"),
]


def error_of(**env: str) -> str:
    with pytest.raises(ConfigError) as info:
        loads(SECTIONS, {**GOOD, **env})
    return str(info.value)


def placeholder_for(name: str, value: str) -> str:
    """A Telegram bot token keeps its `<id>:` (else its format check speaks first), unless
    the whole token is empty."""
    return f"7000000001:{value}" if name == "TG_TOKEN" and value.strip() else value


def test_the_real_looking_config_loads() -> None:
    settings = loads(SECTIONS, GOOD)
    assert settings.twilio is not None and settings.twilio.auth_token == GOOD["TWILIO_TOKEN"]


@pytest.mark.parametrize(("name", "switch", "key"), ACCOUNT_TOKENS)
@pytest.mark.parametrize("value", ["changeme", "<token>", "xxxxxxxx", "", "   "])
def test_an_enabled_accounts_placeholder_or_empty_token_stops_startup_naming_the_key(
    name: str, switch: str, key: str, value: str
) -> None:
    message = error_of(**{name: placeholder_for(name, value)})
    assert message.startswith(f"{key}: is ")
    assert "enabled: false" in message  # the other way out
    if value.strip():
        assert value not in message


@pytest.mark.parametrize(("name", "switch", "key"), ACCOUNT_TOKENS)
def test_a_disabled_account_may_keep_a_placeholder(name: str, switch: str, key: str) -> None:
    loads(SECTIONS, {**GOOD, name: placeholder_for(name, "changeme"), switch: "false"})


@pytest.mark.parametrize(("name", "key"), SECTION_SECRETS)
def test_a_sections_placeholder_secret_stops_startup_even_with_its_accounts_disabled(
    name: str, key: str
) -> None:
    disabled = {switch: "false" for _, switch, _ in ACCOUNT_TOKENS} | {"TWILIO_ENABLED": "false"}
    message = error_of(**{name: "your-secret-here"}, **disabled)
    assert message.startswith(f"{key}: is a placeholder")
    assert "your-secret-here" not in message and "enabled: false" not in message


def test_a_token_left_out_is_not_a_placeholder_but_one_written_empty_is() -> None:
    settings = loads(SECTIONS, GOOD)  # numbers[1] has no access_token: it only receives
    assert settings.whatsapp is not None and settings.whatsapp.numbers[1].access_token == ""
    written = SECTIONS.replace("assistant: support}\ntelegram", 'assistant: support,\n'
                               '       access_token: ""}\ntelegram')  # fmt: skip
    with pytest.raises(ConfigError) as info:
        loads(written, GOOD)
    assert str(info.value).startswith("whatsapp.numbers[1].access_token: is empty")


def test_the_readme_demo_still_starts_on_loopback_with_demo_env() -> None:
    settings = load(ROOT / "config.yaml", read_env_file(ROOT / "demo.env"))
    assert settings.server.host == "127.0.0.1"


def test_the_test_suites_config_loads(redis_url: str) -> None:
    settings = loads(TEST_CONFIG, gateway_env(redis_url))
    assert settings.whatsapp is not None and not settings.whatsapp.numbers[2].enabled


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_placeholders_are_recognised(value: str) -> None:
    assert problem_of(value) == "is a placeholder, not a credential"
    assert problem_of(f"7000000001:{value}") is not None  # a bot token's secret half


@pytest.mark.parametrize("value", REAL)
def test_real_and_demo_values_are_not_placeholders(value: str) -> None:
    assert problem_of(value) is None


@given(st.text())
def test_any_text_gets_an_answer_and_surrounding_text_makes_it_no_placeholder(text: str) -> None:
    answer = problem_of(text)
    assert answer in (None, "is empty", "is a placeholder, not a credential")
    assert (answer == "is empty") == (not text.strip())
    assert problem_of(f"k7{text}Q9z") is None or ":" in text  # whole values only


# --- no decrypted value in a message -----------------------------------------------------------


def test_a_sealed_placeholder_is_refused_without_being_quoted() -> None:
    key = sealed.new_key()
    keys = sealed.keyring(key, None)
    assert keys is not None
    message = error_of(WA_TOKEN=keys.seal("changeme-please"), **{sealed.KEY_ENV: key})
    assert message.startswith("whatsapp.numbers[0].access_token: is a placeholder")
    assert "changeme-please" not in message


def test_a_decrypted_value_in_a_typed_field_is_not_quoted_by_the_error() -> None:
    key = sealed.new_key()
    keys = sealed.keyring(key, None)
    assert keys is not None
    text = SECTIONS.replace("server: {host: 127.0.0.1}", "server: {host: 127.0.0.1, "
                            f"log_format: {keys.seal('plaintext-secret-9')}}}")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        loads(text, {**GOOD, sealed.KEY_ENV: key})
    message = str(info.value)
    assert message.startswith("server.log_format: ") and "plaintext-secret-9" not in message


def test_a_yaml_error_does_not_quote_the_line() -> None:
    text = "whatsapp:\n  app_secret: a-plain-secret-0123: [\n"
    with pytest.raises(ConfigError) as info:
        loads(text, {})
    message = str(info.value)
    assert (
        message.startswith("config is not valid YAML at line 2") and "a-plain-secret" not in message
    )
