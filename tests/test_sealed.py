"""Sealed config values (gateway/sealed.py, `gateway secrets`): they open at start with the
configured keys, a rotation keeps the old key working until every value is sealed again, and
what cannot be opened stops startup naming the key, never quoting a key or a value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import sealed
from gateway.config import ConfigError, loads
from gateway.reload import ConfigSource

ROOT = Path(__file__).parent.parent
OLD = sealed.new_key()
NEW = sealed.new_key()
SECRET = "a-real-app-secret-0123456789"
TOKEN = "EAAG-real-access-token-0123456789"
CONFIG = """
server: {host: 127.0.0.1}
whatsapp:
  app_secret: %s
  verify_token: a-verify-token-of-32-characters
  numbers:
    - phone_number_id: "106540352242922"
      display_phone_number: "+15551234567"
      access_token: ${WA_TOKEN}
      assistant: support
"""


def ring(*keys: str) -> sealed.Keyring:
    found = sealed.keyring(",".join(keys), None)
    assert found is not None
    return found


def config_with(secret: str) -> str:
    return CONFIG % secret


def cli(*argv: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """`gateway ...` as the operator runs it, with only `env` (and PATH) in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *argv],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={"PATH": os.environ["PATH"], **env},
    )  # fmt: skip


# --- sealing and opening -----------------------------------------------------------------------


def test_a_sealed_value_opens_to_what_was_sealed_and_names_its_key() -> None:
    keys = ring(OLD)
    value = keys.seal(SECRET)
    assert value.startswith(f"enc:v1:{keys.current}:") and SECRET not in value
    assert keys.open(value) == SECRET
    assert keys.seal(SECRET) != value  # a fresh nonce each time
    assert sealed.key_id_of(value) == keys.current == sealed.key_id(sealed.parse_key(OLD, "k"))


@given(st.text())
def test_any_text_round_trips(text: str) -> None:
    keys = ring(OLD)
    assert keys.open(keys.seal(text)) == text


def test_a_changed_or_cut_value_does_not_open() -> None:
    keys = ring(OLD)
    value = keys.seal(SECRET)
    flipped = value[:-3] + ("A" if value[-3] != "A" else "B") + value[-2:]
    for bad in (flipped, value[:-6], value.replace(":", ":x", 3), "enc:v1:zz:abc"):
        with pytest.raises(sealed.Unopenable) as info:
            keys.open(bad)
        assert SECRET not in str(info.value)


@given(st.text())
def test_arbitrary_text_never_opens_and_raises_only_seal_errors(text: str) -> None:
    keys = ring(OLD)
    for candidate in (text, f"enc:v1:{keys.current}:{text}", "enc:v1:" + text):
        with pytest.raises(sealed.SealError):  # never a tag that verifies, never another error
            keys.open(candidate)


@given(st.text())
def test_parsing_arbitrary_keys_raises_only_key_errors_that_do_not_quote_them(text: str) -> None:
    try:
        key = sealed.parse_key(text, "GATEWAY_SECRET_KEY")
    except sealed.KeySourceError as exc:
        # Always the same words: the text given is never quoted.
        assert str(exc) == (
            "GATEWAY_SECRET_KEY: not a key (base64 of 32 bytes; make one with "
            "`gateway secrets keygen`)"
        )
    else:
        assert len(key) == sealed.KEY_BYTES


def test_keys_in_url_safe_base64_without_padding_are_the_same_keys() -> None:
    url_safe = OLD.replace("+", "-").replace("/", "_").rstrip("=")
    assert ring(url_safe).open(ring(OLD).seal(SECRET)) == SECRET


# --- in the config -----------------------------------------------------------------------------


def test_sealed_values_in_the_config_and_in_variables_open_at_load() -> None:
    keys = ring(OLD)
    env = {sealed.KEY_ENV: OLD, "WA_TOKEN": keys.seal(TOKEN)}
    settings = loads(config_with(keys.seal(SECRET)), env)
    assert settings.whatsapp is not None
    assert settings.whatsapp.app_secret == SECRET
    assert settings.whatsapp.numbers[0].access_token == TOKEN


def test_a_sealed_variable_inside_a_longer_string_opens_in_place() -> None:
    keys = ring(OLD)
    text = config_with(SECRET) + 'redis: {url: "redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0"}\n'
    env = {sealed.KEY_ENV: OLD, "WA_TOKEN": TOKEN, "REDIS_PASSWORD": keys.seal("pw-0123456789")}
    assert loads(text, env).redis.url == "redis://:pw-0123456789@127.0.0.1:6379/0"


def test_a_value_under_a_key_not_configured_names_the_config_key_and_the_key_id() -> None:
    value = ring(OLD).seal(SECRET)
    with pytest.raises(ConfigError) as info:
        loads(config_with(value), {sealed.KEY_ENV: NEW, "WA_TOKEN": TOKEN})
    kid = ring(OLD).current
    assert str(info.value) == (
        f"whatsapp.app_secret: cannot decrypt (no key {kid} in GATEWAY_SECRET_KEY)"
    )
    with pytest.raises(ConfigError) as info:
        loads(config_with(SECRET), {sealed.KEY_ENV: NEW, "WA_TOKEN": value})
    assert str(info.value).startswith(
        "whatsapp.numbers[0].access_token (${WA_TOKEN}): cannot decrypt (no key"
    )


def test_a_sealed_value_without_any_key_says_how_to_set_one() -> None:
    with pytest.raises(ConfigError) as info:
        loads(config_with(ring(OLD).seal(SECRET)), {"WA_TOKEN": TOKEN})
    message = str(info.value)
    assert message.startswith("whatsapp.app_secret: is an enc:v1 value, and no key")
    assert "GATEWAY_SECRET_KEY" in message and "server.secret_key_file" in message


def test_a_changed_value_in_the_config_names_its_key() -> None:
    value = ring(OLD).seal(SECRET)
    with pytest.raises(ConfigError) as info:
        loads(config_with(value[:-4] + "AAAA"), {sealed.KEY_ENV: OLD, "WA_TOKEN": TOKEN})
    assert str(info.value).startswith("whatsapp.app_secret: cannot decrypt with key")


def test_a_bad_key_in_the_environment_is_named_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as info:
        loads(config_with(SECRET), {sealed.KEY_ENV: f"{NEW},not-a-key", "WA_TOKEN": TOKEN})
    assert str(info.value).startswith("GATEWAY_SECRET_KEY (key 2 of 2): not a key")
    assert NEW not in str(info.value) and "not-a-key" not in str(info.value)


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_old_values_open_with_new_then_old_and_reencrypt_moves_them(
    tmp_path: Path,
) -> None:
    old_value = ring(OLD).seal(SECRET)
    text = config_with(old_value)
    env = {"WA_TOKEN": TOKEN}
    # During the rotation: the new key first (it seals), the old one still opens.
    both = f"{NEW},{OLD}"
    assert loads(text, {sealed.KEY_ENV: both, **env}).whatsapp.app_secret == SECRET  # type: ignore[union-attr]
    done = cli("secrets", "reencrypt", stdin=text, GATEWAY_SECRET_KEY=both)
    assert done.returncode == 0, done.stderr
    assert old_value not in done.stdout and f"enc:v1:{ring(NEW).current}:" in done.stdout
    assert done.stdout.replace(_sealed_in(done.stdout), "X") == text.replace(old_value, "X")
    assert "sealed again under key" in done.stderr and ": 1;" in done.stderr
    # After it: the new key alone opens the rewritten config.
    assert loads(done.stdout, {sealed.KEY_ENV: NEW, **env}).whatsapp.app_secret == SECRET  # type: ignore[union-attr]
    again = cli("secrets", "reencrypt", stdin=done.stdout, GATEWAY_SECRET_KEY=NEW)
    assert again.stdout == done.stdout  # already under the first key: left as it was


def _sealed_in(text: str) -> str:
    match = sealed.SEALED.search(text)
    assert match is not None
    return match.group(0)


def test_reencrypt_of_a_value_no_key_opens_names_its_line_and_writes_nothing() -> None:
    text = f"# env file\nA=1\nWA_TOKEN={ring(OLD).seal(TOKEN)}\n"
    done = cli("secrets", "reencrypt", stdin=text, GATEWAY_SECRET_KEY=NEW)
    assert done.returncode == 2 and done.stdout == ""
    assert "line 3: cannot decrypt (no key" in done.stderr


def test_a_reload_opens_values_with_the_key_file_as_it_is_then(tmp_path: Path) -> None:
    """`gateway reload` (SIGHUP) reads the config through `ConfigSource.load`: the env file's
    sealed values and a key file rotated in the meantime are read again."""
    key_file = tmp_path / "keys"
    key_file.write_text(f"# current key first\n{OLD}\n")
    key_file.chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(
        config_with(SECRET).replace("server: {", f"server: {{secret_key_file: {key_file}, ")
    )
    env_file = tmp_path / "gateway.env"
    env_file.write_text(f"WA_TOKEN={ring(OLD).seal(TOKEN)}\n")
    source = ConfigSource(str(config), str(env_file))
    assert source.load().whatsapp.numbers[0].access_token == TOKEN  # type: ignore[union-attr]
    key_file.write_text(f"{NEW}\n{OLD}\n")
    env_file.write_text(f"WA_TOKEN={ring(NEW).seal('EAAG-rotated-token-0123456789')}\n")
    rotated = source.load().whatsapp.numbers[0].access_token  # type: ignore[union-attr]
    assert rotated == "EAAG-rotated-token-0123456789"


# --- the key file ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused_naming_it(tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"{OLD}\n")
    key_file.chmod(mode)
    text = config_with(ring(OLD).seal(SECRET)).replace(
        "server: {", f"server: {{secret_key_file: {key_file}, "
    )
    with pytest.raises(ConfigError) as info:
        loads(text, {"WA_TOKEN": TOKEN})
    assert str(info.value).startswith(f"server.secret_key_file: {key_file}: mode {mode:03o}")
    assert "chmod 600" in str(info.value)
    key_file.chmod(0o400)  # read-only for its owner is stricter still: fine
    assert loads(text, {"WA_TOKEN": TOKEN}).whatsapp.app_secret == SECRET  # type: ignore[union-attr]


def test_a_missing_or_bad_key_file_is_named(tmp_path: Path) -> None:
    text = config_with(SECRET).replace("server: {", 'server: {secret_key_file: "${KEYS}", ')
    with pytest.raises(ConfigError) as info:
        loads(text, {"WA_TOKEN": TOKEN, "KEYS": str(tmp_path / "absent")})
    assert str(info.value).startswith("server.secret_key_file: ") and "cannot read" in str(
        info.value
    )
    bad = tmp_path / "keys"
    bad.write_text(f"{OLD}\n\nnot a key\n")
    bad.chmod(0o600)
    with pytest.raises(ConfigError) as info:
        loads(text, {"WA_TOKEN": TOKEN, "KEYS": str(bad)})
    assert ", line 3: not a key" in str(info.value) and OLD not in str(info.value)


def test_keys_of_the_environment_and_the_file_all_open_and_the_environment_seals(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"{OLD}\n")
    key_file.chmod(0o600)
    keys = sealed.keyring(NEW, str(key_file))
    assert keys is not None and keys.current == ring(NEW).current
    assert keys.open(ring(OLD).seal(SECRET)) == SECRET
    assert "GATEWAY_SECRET_KEY / server.secret_key_file" in keys.source


# --- the commands ------------------------------------------------------------------------------


def test_keygen_prints_a_new_key_each_time() -> None:
    first, second = cli("secrets", "keygen"), cli("secrets", "keygen")
    assert first.returncode == second.returncode == 0
    keys = [sealed.parse_key(r.stdout, "stdout") for r in (first, second)]
    assert keys[0] != keys[1]
    assert f"key id {sealed.key_id(keys[0])}" in first.stderr


def test_encrypt_seals_stdin_less_one_newline_and_refuses_a_value_on_the_command_line() -> None:
    done = cli("secrets", "encrypt", stdin=f"{SECRET}\n", GATEWAY_SECRET_KEY=OLD)
    assert done.returncode == 0, done.stderr
    assert ring(OLD).open(done.stdout.strip()) == SECRET
    kept = cli("secrets", "encrypt", stdin=f"{SECRET}\n\n", GATEWAY_SECRET_KEY=OLD)
    assert ring(OLD).open(kept.stdout.strip()) == SECRET + "\n"  # only one newline dropped
    refused = cli("secrets", "encrypt", SECRET, stdin="", GATEWAY_SECRET_KEY=OLD)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "read from stdin, never from the command line" in refused.stderr
    assert SECRET not in refused.stderr
    empty = cli("secrets", "encrypt", stdin="\n", GATEWAY_SECRET_KEY=OLD)
    assert empty.returncode == 2 and "no value" in empty.stderr


def test_encrypt_without_a_key_says_how_to_set_one_and_with_a_config_uses_its_key_file(
    tmp_path: Path,
) -> None:
    done = cli("secrets", "encrypt", stdin=SECRET)
    assert done.returncode == 2 and "GATEWAY_SECRET_KEY" in done.stderr
    key_file = tmp_path / "keys"
    key_file.write_text(f"{OLD}\n")
    key_file.chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(f"server: {{secret_key_file: {key_file}}}\n")
    done = cli("secrets", "encrypt", "--config", str(config), stdin=SECRET)
    assert done.returncode == 0 and ring(OLD).open(done.stdout.strip()) == SECRET


def test_decrypt_check_lists_key_paths_and_key_ids_never_values(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_with(ring(OLD).seal(SECRET)))
    env_file = tmp_path / "x.env"
    env_file.write_text(f"WA_TOKEN={ring(NEW).seal(TOKEN)}\n")
    args = ("secrets", "decrypt-check", "--config", str(config), "--env-file", str(env_file))
    done = cli(*args, GATEWAY_SECRET_KEY=f"{NEW},{OLD}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"whatsapp.app_secret  key {ring(OLD).current}  ok",
        f"whatsapp.numbers[0].access_token (${{WA_TOKEN}})  key {ring(NEW).current}  ok",
    ]
    half = cli(*args, GATEWAY_SECRET_KEY=NEW)
    assert half.returncode == 1
    assert f"whatsapp.app_secret  key {ring(OLD).current}  cannot decrypt (no key" in half.stdout
    for result in (done, half):
        assert SECRET not in result.stdout + result.stderr
        assert TOKEN not in result.stdout + result.stderr


def test_check_config_with_sealed_values_in_the_env_file(tmp_path: Path) -> None:
    """The README's run command, with demo.env's values sealed."""
    demo = (ROOT / "demo.env").read_text()
    keys = ring(OLD)
    lines = [
        f"{name}={keys.seal(value)}" if "=" in line and not line.startswith("#") else line
        for line in demo.splitlines()
        for name, _, value in [line.partition("=")]
    ]
    env_file = tmp_path / "demo.env"
    env_file.write_text("\n".join(lines) + "\n")
    args = ("check-config", "--config", str(ROOT / "config.yaml"), "--env-file", str(env_file))
    assert cli(*args, GATEWAY_SECRET_KEY=OLD).returncode == 0
    wrong = cli(*args, GATEWAY_SECRET_KEY=NEW)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert wrong.stderr.startswith("gateway: config error: whatsapp.app_secret (${")
