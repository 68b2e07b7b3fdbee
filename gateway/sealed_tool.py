"""`gateway secrets keygen | encrypt | decrypt-check | reencrypt`: sealed config values
(gateway/sealed.py).

  keygen          print a new random key (base64 of 32 bytes) for GATEWAY_SECRET_KEY or a
                  key file
  encrypt         read one value from stdin (a terminal: asked for without echo; a pipe: all
                  of it, one trailing newline dropped) and print it sealed under the first
                  key, `enc:v1:<key id>:...`, to paste into config.yaml or an env file. The
                  value is never taken from the command line (shell history, `ps`)
  decrypt-check   open every enc:v1 value of --config (and of --env-file's variables it
                  uses) and list each one's key path, key id and whether it opens; never a
                  value. Exit 1 when one does not open
  reencrypt       read a config or env file on stdin and write it to stdout with every
                  enc:v1 value sealed again under the first key (all else unchanged): the
                  rotation step between adding the new key and removing the old one

Keys: GATEWAY_SECRET_KEY from the environment (or --env-file; several comma-separated, the
first seals), then the keys of --config's server.secret_key_file. Exit 2 on a usage or
config error, or when no key is configured.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from gateway import sealed
from gateway.config import (
    ConfigError,
    read_env_file,
    sealed_values,
    secret_keys,
    secret_keys_of_config,
)
from gateway.ops import NOTHING, OK, USAGE


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`gateway secrets ...` under the CLI's subcommands."""
    text = "make keys, seal values for the config, check and rotate them"
    cmd = sub.add_parser(
        "secrets",
        help=text,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cmd.add_subparsers(dest="action", required=True)
    actions.add_parser("keygen", help="print a new random key")
    for name, about, config_required in (
        ("encrypt", "seal one value read from stdin; print the enc:v1 value", False),
        ("decrypt-check", "check that every enc:v1 value of a config opens", True),
        ("reencrypt", "stdin to stdout, every enc:v1 value sealed again under the first key",
         False),
    ):  # fmt: skip
        act = actions.add_parser(name, help=about, description=about)
        act.add_argument(
            "--config",
            required=config_required,
            help="config.yaml: its server.secret_key_file supplies keys"
            + ("" if config_required else " (optional)"),
        )
        act.add_argument("--env-file", help="KEY=value lines for ${VAR}s; the environment wins")
        if name == "encrypt":
            # Caught to refuse it without echoing it back (argparse would quote it).
            act.add_argument("value", nargs="*", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """One `gateway secrets` command; its exit status."""
    try:
        if args.action == "keygen":
            key = sealed.new_key()
            print(key)
            print(f"key id {sealed.key_id(sealed.parse_key(key, 'new key'))}", file=sys.stderr)
            return OK
        if args.action == "encrypt" and args.value:
            return _refuse_argv()
        env = _env(args.env_file)
        if args.action == "decrypt-check":
            return _decrypt_check(args.config, env)
        keyring = _keyring(args.config, env)
        if args.action == "encrypt":
            print(keyring.seal(_value_from_stdin()))
            return OK
        return _reencrypt(keyring)
    except (ConfigError, sealed.SealError) as exc:
        print(f"gateway: secrets {args.action}: {exc}", file=sys.stderr)
        return USAGE


def _refuse_argv() -> int:
    print(
        "gateway: secrets encrypt: the value is read from stdin, never from the command line "
        "(it would stay in the shell's history and show in ps); nothing was sealed",
        file=sys.stderr,
    )
    return USAGE


def _env(env_file: str | None) -> dict[str, str]:
    env = dict(os.environ)
    return {**read_env_file(env_file), **env} if env_file else env


def _keyring(config: str | None, env: Mapping[str, str]) -> sealed.Keyring:
    found = secret_keys(env) if config is None else secret_keys_of_config(_read(config), env)
    if found is None:
        raise ConfigError(f"no key is configured: {sealed.HOW_TO_SET}")
    return found


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None


def _value_from_stdin() -> str:
    """The value to seal: typed without echo at a terminal; else all of stdin, less one
    trailing newline (what `echo` or a file's last line adds)."""
    if sys.stdin.isatty():
        value = getpass.getpass("value to seal (not echoed): ")
    else:
        try:
            value = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("stdin is not UTF-8 text") from None
        value = value.removesuffix("\n").removesuffix("\r")
    if not value.strip():
        raise ConfigError("stdin held no value to seal")
    return value


def _decrypt_check(config: str, env: Mapping[str, str]) -> int:
    text = _read(config)
    found = sealed_values(text, env)
    if not found:
        print(f"{config}: no enc:v1 values")
        return OK
    keyring = secret_keys_of_config(text, env)
    failed = 0
    for where, value in found:
        kid = sealed.key_id_of(value) or "?"
        try:
            if keyring is None:
                raise sealed.UnknownKey(f"no key is configured: {sealed.HOW_TO_SET}")
            keyring.open(value)
            status = "ok"
        except sealed.SealError as exc:
            failed += 1
            status = str(exc)
        print(f"{where}  key {kid}  {status}")
    print(f"{len(found) - failed} of {len(found)} values open", file=sys.stderr)
    return NOTHING if failed else OK


def _reencrypt(keyring: sealed.Keyring) -> int:
    try:
        text = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("stdin is not UTF-8 text") from None
    out, resealed, kept = keyring.reseal(text)
    sys.stdout.write(out)
    print(
        f"sealed again under key {keyring.current}: {resealed}; already under it: {kept}",
        file=sys.stderr,
    )
    return OK
