"""Config loading: every mistake stops startup with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import CHANNELS
from adapters.telegram import bot_id_from_token
from gateway.config import (
    DEMO_VALUES,
    ConfigError,
    channel_sections,
    loads,
    read_env_file,
    with_workers,
)

BASE = """
whatsapp:
  app_secret: ${SECRET}
  verify_token: a-verify-token-of-32-characters
  numbers:
    - phone_number_id: "106540352242922"
      display_phone_number: "+15551234567"
      mode: coexistence
      assistant: support
"""
ENV = {"SECRET": "s3cret-s3cret-s3cret"}
LOOPBACK = "server: {host: 127.0.0.1}\n"
"""For the tests of short secrets, which are refused on any other address."""


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        loads(text, ENV if env is None else env)
    return str(info.value)


def test_minimal_config_gets_contract_defaults() -> None:
    settings = loads(BASE, ENV)
    assert settings.server.port == 8080 and settings.server.max_body_bytes == 3145728
    assert settings.redis.url is None
    assert settings.policy.send_wait_max_seconds == 60
    assert settings.policy.human_takeover_seconds == 900
    assert settings.policy.country_block_seconds == 604800
    assert settings.router.dedup_ttl_seconds >= 48 * 3600
    assert settings.whatsapp is not None
    assert settings.whatsapp.app_secret == "s3cret-s3cret-s3cret"
    assert settings.whatsapp.api_base == "https://graph.facebook.com/v21.0"
    assert settings.whatsapp.numbers[0].effective_mps == 20


def test_mps_defaults_by_mode_and_can_be_overridden() -> None:
    text = BASE.replace("mode: coexistence", "mode: cloud_api")
    assert loads(text, ENV).whatsapp.numbers[0].effective_mps == 80  # type: ignore[union-attr]
    text = BASE.replace("mode: coexistence", "mode: cloud_api\n      mps: 250")
    assert loads(text, ENV).whatsapp.numbers[0].effective_mps == 250  # type: ignore[union-attr]


def test_variables_are_substituted_inside_strings_and_typed_after() -> None:
    text = BASE + "server:\n  port: ${PORT}\n  host: 127.0.${OCTET}.1\n"
    settings = loads(text, {**ENV, "PORT": "9090", "OCTET": "0"})
    assert settings.server.port == 9090
    assert settings.server.host == "127.0.0.1"


def test_unset_variable_names_the_variable_and_the_key() -> None:
    message = error_of(BASE, {})
    assert "SECRET" in message and "whatsapp.app_secret" in message


def test_unknown_key_is_named() -> None:
    assert "servr" in error_of(BASE + "servr: {port: 1}\n")
    message = error_of(BASE.replace("mode: coexistence", "mode: coexistence\n      colour: red"))
    assert "colour" in message and "whatsapp.numbers[0]" in message


def test_wrong_type_and_range_name_the_key() -> None:
    assert "server.port" in error_of(BASE + "server: {port: eighty}\n")
    assert "server.port" in error_of(BASE + "server: {port: 70000}\n")
    assert "router.dedup_ttl_seconds" in error_of(BASE + "router: {dedup_ttl_seconds: 60}\n")
    assert "mode" in error_of(BASE.replace("mode: coexistence", "mode: hybrid"))


def test_enabled_channel_without_secret_refuses_to_start() -> None:
    assert "whatsapp.app_secret" in error_of(BASE, {"SECRET": ""})
    empty_token = BASE.replace("verify_token: a-verify-token-of-32-characters", 'verify_token: ""')
    assert "verify_token" in error_of(empty_token)
    bot = (
        LOOPBACK
        + """
telegram:
  bots:
    - {token: "123:abc", secret_token: "", assistant: support}
"""
    )
    assert "telegram.bots[0].secret_token" in error_of(bot)
    assert "secret_token" in error_of(bot.replace('secret_token: ""', 'secret_token: "has space"'))


def test_bad_bot_token_and_duplicates_are_named() -> None:
    bots = (
        LOOPBACK
        + """
telegram:
  bots:
    - {token: "%s", secret_token: abc, assistant: support}
    - {token: "123:def", secret_token: abc, assistant: support}
"""
    )
    assert "telegram.bots[0].token" in error_of(bots % "not-a-token")
    assert "telegram.bots[1].token" in error_of(bots % "123:abc")


@pytest.mark.parametrize(
    ("number", "country"),
    [("+2348030000000", "Nigeria"), ("+27820000000", "South Africa"), ("2348030000000", "Nigeria")],
)
def test_coexistence_in_nigeria_or_south_africa_stops_startup(number: str, country: str) -> None:
    message = error_of(BASE.replace("+15551234567", number))
    assert "whatsapp.numbers[0].mode" in message and country in message and number in message
    loads(BASE.replace("+15551234567", number).replace("coexistence", "cloud_api"), ENV)


def test_number_fields_are_checked() -> None:
    assert "display_phone_number" in error_of(BASE.replace("+15551234567", "+1555-1234"))
    loads(BASE.replace("+15551234567", "15551234567"), ENV)  # Meta's own spelling, no +
    assert "phone_number_id" in error_of(BASE.replace('"106540352242922"', '"abc"'))
    assert "assistant" in error_of(BASE.replace("assistant: support", "assistant: '{x}'"))
    twice = (
        BASE
        + """    - phone_number_id: "106540352242922"
      display_phone_number: "+15551234568"
      assistant: sales
"""
    )
    assert "numbers[1].phone_number_id" in error_of(twice)


def test_no_channel_at_all_is_refused() -> None:
    assert "whatsapp" in error_of("server: {port: 8080}\n")


def test_env_file_values(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "x.env"
    path.write_text("# comment\nA=1\nexport B='two words'\n\n")
    assert read_env_file(path) == {"A": "1", "B": "two words"}
    path.write_text("no equals sign\n")
    with pytest.raises(ConfigError, match="line 1"):
        read_env_file(path)


def test_shipped_config_is_valid_with_the_demo_env() -> None:
    from pathlib import Path

    root = Path(__file__).parent.parent
    settings = loads((root / "config.yaml").read_text(), read_env_file(root / "demo.env"))
    assert settings.whatsapp is not None and settings.telegram is not None


def test_a_cluster_is_reached_through_the_url_of_any_node() -> None:
    text = BASE + "redis: {url: 'redis://10.0.0.7:7000', cluster: true}\n"
    settings = loads(text, ENV)
    assert settings.redis.cluster is True and settings.redis.url == "redis://10.0.0.7:7000"
    assert loads(BASE, ENV).redis.cluster is False


@pytest.mark.parametrize(
    ("redis", "key", "says"),
    [
        ("{cluster: true}", "redis.cluster", "needs redis.url"),
        ("{url: 'redis://10.0.0.7:7000/2', cluster: true}", "redis.url", "only database 0"),
        ("{url: 'unix:///tmp/redis.sock', cluster: true}", "redis.url", "redis://"),
        ("{cluster: 'maybe'}", "redis.cluster", "Expected `bool`"),
        ("{url: 'redis://10.0.0.7:7000', clustered: true}", "redis", "unknown field `clustered`"),
        (
            "{url: 'redis://10.0.0.7:7000', cluster: true, wait_aof: true}",
            "redis.wait_aof",
            "not with a cluster",
        ),
        ("{url: 'rediss://10.0.0.7:6380', wait_aof: true}", "redis.wait_aof", "not over TLS"),
        ("{wait_aof: 'yes please'}", "redis.wait_aof", "Expected `bool`"),
    ],
)
def test_cluster_mistakes_name_the_key(redis: str, key: str, says: str) -> None:
    message = error_of(BASE + f"redis: {redis}\n")
    assert message.startswith(key) and says in message


def test_workers_default_to_one_and_the_flag_overrides_the_key() -> None:
    assert loads(BASE, ENV).server.workers == 1
    settings = loads(BASE + "server: {workers: 4}\n", ENV)
    assert settings.server.workers == 4
    assert with_workers(settings, 2).server.workers == 2
    assert "server.workers" in error_of(BASE + "server: {workers: 0}\n")
    with pytest.raises(ConfigError, match="--workers"):
        with_workers(settings, 0)


def test_several_workers_need_a_fixed_port() -> None:
    assert "server.port" in error_of(BASE + "server: {workers: 2, port: 0}\n")
    with pytest.raises(ConfigError, match=r"server\.port"):
        with_workers(loads(BASE + "server: {port: 0}\n", ENV), 2)


DEMO_ENV = Path(__file__).parent.parent / "demo.env"


def test_the_demo_values_known_to_the_check_are_demo_envs() -> None:
    assert set(read_env_file(DEMO_ENV).values()) == DEMO_VALUES


def _shipped(host: str) -> str:
    text = (Path(__file__).parent.parent / "config.yaml").read_text()
    assert "  host: 127.0.0.1\n" in text  # the demo binds loopback
    return text.replace("  host: 127.0.0.1\n", f"  host: '{host}'\n")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "gateway.example.com", ""])
def test_demo_secrets_are_refused_off_loopback(host: str) -> None:
    message = error_of(_shipped(host), read_env_file(DEMO_ENV))
    assert message.startswith("whatsapp.app_secret: is a demo value from demo.env")
    assert "demo-app-secret" not in message  # the message names the key, never the value


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_demo_secrets_are_allowed_on_loopback(host: str) -> None:
    loads(_shipped(host), read_env_file(DEMO_ENV))


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("WHATSAPP_VERIFY_TOKEN", "whatsapp.verify_token"),
        ("WHATSAPP_TOKEN", "whatsapp.numbers[0].access_token"),
        ("TELEGRAM_BOT_TOKEN", "telegram.bots[0].token"),
        ("TELEGRAM_SECRET", "telegram.bots[0].secret_token"),
    ],
)
def test_each_demo_value_is_named_by_its_key(name: str, key: str) -> None:
    real = {
        "WHATSAPP_APP_SECRET": "a-real-app-secret-0123456789",
        "WHATSAPP_VERIFY_TOKEN": "a-real-verify-token-0123456789",
        "WHATSAPP_TOKEN": "EAAreal",
        "TELEGRAM_BOT_TOKEN": "123456789:AAHrealtokenrealtokenrealtoken",
        "TELEGRAM_SECRET": "a-real-telegram-secret-0123",
    }
    loads(_shipped("0.0.0.0"), real)
    env = {**real, name: read_env_file(DEMO_ENV)[name]}
    assert error_of(_shipped("0.0.0.0"), env).startswith(f"{key}: is a demo value")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE, "whatsapp.app_secret"),
        (BASE.replace("a-verify-token-of-32-characters", "short-token"), "whatsapp.verify_token"),
        (
            BASE + "telegram:\n  bots: [{token: '1:x', secret_token: tg-secret, assistant: a}]\n",
            "telegram.bots[0].secret_token",
        ),
    ],
)
def test_secrets_under_16_characters_are_refused_off_loopback(text: str, key: str) -> None:
    env = {"SECRET": "fifteen-chars15"} if key == "whatsapp.app_secret" else ENV
    message = error_of(text, env)
    assert message.startswith(f"{key}: shorter than 16 characters")
    loads(LOOPBACK + text, env)  # the same secrets on loopback only are fine


def test_the_embedded_redis_is_socket_only_with_a_memory_limit_by_default() -> None:
    redis = loads(BASE, ENV).redis
    assert redis.embedded_tcp is False and redis.embedded_maxmemory == "50%"
    text = BASE + "redis: {embedded_tcp: true, embedded_maxmemory: 2gb}\n"
    assert loads(text, ENV).redis.embedded_maxmemory == "2gb"
    assert (
        loads(BASE + "redis: {embedded_maxmemory: 1073741824}\n", ENV).redis.embedded_tcp is False
    )
    for bad in ("lots", "0%", "1000"):
        message = error_of(BASE + f"redis: {{embedded_maxmemory: '{bad}'}}\n")
        assert message.startswith("redis.embedded_maxmemory")


def test_admin_port_is_off_by_default_and_checked() -> None:
    server = loads(BASE, ENV).server
    assert server.admin_port is None and server.admin_host == "127.0.0.1"
    settings = loads(BASE + "server: {port: 8080, admin_port: 9090}\n", ENV)
    assert settings.server.admin_port == 9090
    assert "server.admin_port" in error_of(BASE + "server: {port: 8080, admin_port: 8080}\n")
    text = BASE + "server: {port: 8080, admin_port: 0, workers: 2}\n"
    assert error_of(text).startswith("server.admin_port")


def test_bot_id_from_token() -> None:
    assert bot_id_from_token("7000000001:AAHtesttokenaaaaaaaaaaaaaaaaaaaaaaa") == "7000000001"
    assert bot_id_from_token("42:a:b") == "42"


@pytest.mark.parametrize(
    "token", ["", "7000000001", "7000000001:", ":AAHkey", "bot7:AAHkey", "٧:AAHkey", " 7:AAH"]
)
def test_bot_id_from_bad_token(token: str) -> None:
    with pytest.raises(ValueError, match="bot token") as info:
        bot_id_from_token(token)
    assert "AAH" not in str(info.value)  # the secret half never reaches logs


def test_each_registered_channel_has_its_section_by_name() -> None:
    """The sections are the channels' own structs, composed under their names in the order
    `Settings` lists them (which the "at least one channel" message follows)."""
    settings = loads(BASE, ENV)
    sections = channel_sections(settings)
    assert list(sections) == ["whatsapp", "telegram", "messenger", "instagram", "twilio"]
    assert sections["whatsapp"] is settings.whatsapp
    assert [sections[name] for name in ("telegram", "messenger", "instagram", "twilio")] == [
        None
    ] * 4
    assert set(sections) == set(CHANNELS)


META = """
messenger:
  app_secret: ${SECRET}
  verify_token: a-verify-token-of-32-characters
  pages:
    - {page_id: "104729384756102", access_token: EAAPtoken, assistant: support}
instagram:
  app_secret: ${SECRET}
  verify_token: a-verify-token-of-32-characters
  accounts:
    - {account_id: "17841400000000001", access_token: IGQtoken, assistant: sales}
"""


def test_the_contract_messenger_and_instagram_sections_load_with_their_defaults() -> None:
    settings = loads(META, ENV)
    assert settings.messenger is not None and settings.instagram is not None
    assert settings.messenger.api_base == "https://graph.facebook.com/v21.0"
    assert settings.instagram.api_base == "https://graph.instagram.com/v21.0"
    [page] = settings.messenger.accounts()
    [account] = settings.instagram.accounts()
    assert (page.channel, page.account_id, page.assistant, page.mps) == (
        "messenger", "104729384756102", "support", 40.0
    )  # fmt: skip
    assert (account.channel, account.account_id, account.assistant, account.mps) == (
        "instagram", "17841400000000001", "sales", 40.0
    )  # fmt: skip
    assert page.mode is None  # no handover unless asked for
    handover = META.replace("assistant: support}", "assistant: support, handover: true}")
    [page] = loads(handover, ENV).messenger.accounts()  # type: ignore[union-attr]
    assert page.mode == "263902037430900"  # the Page Inbox


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("app_secret: ${SECRET}\n  verify_token", 'app_secret: ""\n  verify_token'),
         "messenger.app_secret"),
        (('page_id: "104729384756102"', 'page_id: "my-page"'), "messenger.pages[0].page_id"),
        (('account_id: "17841400000000001"', 'account_id: "@shop"'),
         "instagram.accounts[0].account_id"),
        (("assistant: sales", "assistant: a/b"), "instagram.accounts[0].assistant"),
        (("assistant: support}", "assistant: support, mps: 0}"), "messenger.pages[0].mps"),
        (("assistant: support}", "assistant: support, handover_app_id: inbox}"),
         "messenger.pages[0].handover_app_id"),
        (("assistant: support}", "assistant: support, page_token: x}"), "page_token"),
    ],
)  # fmt: skip
def test_a_bad_messenger_or_instagram_section_names_its_key(
    change: tuple[str, str], key: str
) -> None:
    text = META.replace(*change, 1)
    assert text != META
    assert key in error_of(text)


def test_each_meta_section_may_name_its_app_for_the_subscription_check() -> None:
    """`app_id` lets `gateway webhooks show` look for this gateway's app among those
    subscribed to a WABA, Page or account; it is optional and a numeric id."""
    assert loads(BASE, ENV).whatsapp.app_id is None  # type: ignore[union-attr]
    verify = "verify_token: a-verify-token-of-32-characters"
    named = BASE.replace(verify, f'{verify}\n  app_id: "1234567890123456"')
    assert loads(named, ENV).whatsapp.app_id == "1234567890123456"  # type: ignore[union-attr]
    meta = loads(META.replace(verify, f'{verify}\n  app_id: "5256512345678901"'), ENV)
    assert meta.messenger.app_id == meta.instagram.app_id == "5256512345678901"  # type: ignore[union-attr]
    assert "whatsapp.app_id: must be the numeric id" in error_of(
        BASE.replace(verify, f"{verify}\n  app_id: my-app")
    )
    for section in ("messenger", "instagram"):
        text = META.replace(
            f"{section}:\n  app_secret", f"{section}:\n  app_id: '12a'\n  app_secret"
        )
        assert f"{section}.app_id: must be the numeric id" in error_of(text)


def test_a_page_listed_twice_is_refused() -> None:
    page = '    - {page_id: "104729384756102", access_token: EAAPtoken, assistant: support}\n'
    text = META.replace(page, page + page)
    assert "messenger.pages[1].page_id: 104729384756102 is listed twice" in error_of(text)


TWILIO = """
twilio:
  account_sid: AC0123456789abcdef0123456789abcdef
  auth_token: ${SECRET}
  public_url: https://gateway.example.com/webhooks/twilio
  numbers:
    - {number: "+15557654321", assistant: sales}
"""


def test_the_contract_twilio_section_loads_as_whatsapp_numbers_on_twilio() -> None:
    settings = loads(TWILIO, ENV)
    assert settings.twilio is not None
    assert settings.twilio.api_base == "https://api.twilio.com"
    [account] = settings.twilio.accounts()
    assert (account.channel, account.account_id, account.provider, account.mps) == (
        "whatsapp", "15557654321", "twilio", 80.0
    )  # fmt: skip
    assert account.callback_url == "https://gateway.example.com/webhooks/twilio"
    assert "s3cret" not in repr(account)  # the auth token is in the token, kept out of logs


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("AC0123456789abcdef0123456789abcdef", "AC123"), "twilio.account_sid"),
        (("auth_token: ${SECRET}", 'auth_token: ""'), "twilio.auth_token"),
        (("https://gateway.example.com/webhooks/twilio", "gateway.example.com"),
         "twilio.public_url"),
        (('"+15557654321"', '"15557654321"'), "twilio.numbers[0].number"),
        (("assistant: sales}", "assistant: sales, mode: coexistence, mps: 0}"),
         "twilio.numbers[0].mps"),
        (("auth_token: ${SECRET}", "auth_token: ${SECRET}\n  api_key_sid: SK1"),
         "twilio.api_key_secret"),
        (("auth_token: ${SECRET}",
          "auth_token: ${SECRET}\n  signing_keys: [{sid: KS-1, secret: x}]"),
         "twilio.signing_keys[0].sid"),
        (("auth_token: ${SECRET}",
          'auth_token: ${SECRET}\n  signing_keys: [{sid: KS1, secret: ""}]'),
         "twilio.signing_keys[0].secret"),
        (("auth_token: ${SECRET}",
          "auth_token: ${SECRET}\n  signing_keys: [{sid: KS1, secret: a}, {sid: KS1, secret: b}]"),
         "twilio.signing_keys[1].sid"),
    ],
)  # fmt: skip
def test_a_bad_twilio_section_names_its_key(change: tuple[str, str], key: str) -> None:
    text = TWILIO.replace(*change, 1)
    assert text != TWILIO
    assert key in error_of(text)


def test_twilio_signing_keys_load_and_count_as_webhook_secrets() -> None:
    text = TWILIO.replace(
        "auth_token: ${SECRET}",
        "auth_token: ${SECRET}\n  signing_keys:\n    - sid: KS1a\n      secret: ${SECRET}",
        1,
    )
    settings = loads(text, ENV)
    assert settings.twilio is not None
    [key] = settings.twilio.signing_keys
    assert key.sid == "KS1a"
    assert [s.key for s in settings.twilio.secrets()] == [
        "twilio.auth_token", "twilio.signing_keys[0].secret"
    ]  # fmt: skip


def test_a_whatsapp_number_is_on_one_provider_only() -> None:
    text = BASE + TWILIO.replace("+15557654321", "+15551234567")  # BASE's Meta number
    message = error_of(text)
    assert "+15551234567" in message and "exactly one provider" in message
