"""Secrets sealed in config.yaml or an env file: `enc:v1:<key id>:<data>`, opened at start.

A sealed value is AES-256-GCM (authenticated: a changed byte fails to open, it never opens
to something else) under a 32-byte key, with a random 96-bit nonce per value:

    enc:v1:<key id>:<base64url, no padding, of nonce (12 bytes) | ciphertext | tag (16 bytes)>

The key id is the first 8 hex digits of the key's SHA-256: it says which key opens a value
(so a rotation can hold several keys) and reveals nothing of the key.

Keys come from `GATEWAY_SECRET_KEY` (base64 of 32 bytes; during a rotation several,
comma-separated) and/or `server.secret_key_file` (one such key a line, `#` comments; the file
must not be readable by group or others). The first key found seals (`gateway secrets
encrypt`, `reencrypt`); every key opens. `gateway secrets keygen` makes a key.

The associated data is a fixed label, not the config key path the value sits at. Binding the
path would stop a value being moved to another key, but the same value legitimately sits at
several places (an env file's variable used by two keys, a list whose entries are reordered,
a section renamed), and sealing needs no knowledge of where the value will go. Whoever can
move values in the config can as well write their own plain ones, so binding protects little.

Errors, all `SealError` (a ValueError) whose message never holds a key or a plaintext:

    SealError
    ├── KeySourceError   a key in the environment or the key file is unusable
    ├── UnknownKey       no configured key has the value's key id
    └── Unopenable       not a well-formed value, or it does not open (altered, truncated)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX: Final = "enc:v1:"
KEY_ENV: Final = "GATEWAY_SECRET_KEY"
KEY_FILE_KEY: Final = "server.secret_key_file"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
_LABEL: Final = b"gateway-config-secret enc:v1"
"""GCM's associated data: what the value is, so it opens nowhere else (see the docstring)."""
SEALED: Final = re.compile(r"enc:v1:([0-9a-f]{8}):([A-Za-z0-9_-]+)")
"""A whole sealed value; also how `reseal` finds them in a file's text."""
_OTHER_VERSION: Final = re.compile(r"enc:v[0-9]+:")
HOW_TO_SET: Final = (
    f"set {KEY_ENV} (base64 of 32 bytes, from `gateway secrets keygen`) or {KEY_FILE_KEY}"
)


class SealError(ValueError):
    """A value cannot be sealed or opened; the message names no key and no plaintext."""


class KeySourceError(SealError):
    """A key in `GATEWAY_SECRET_KEY` or the key file is unusable."""


class UnknownKey(SealError):
    """No configured key has the value's key id."""


class Unopenable(SealError):
    """The value is malformed, or does not open under the key its id names."""


def new_key() -> str:
    """A fresh random key, as `GATEWAY_SECRET_KEY` and the key file take it."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    """The 8 hex digits a sealed value names its key by."""
    return hashlib.sha256(key).hexdigest()[:8]


def is_sealed(value: str) -> bool:
    """Whether `value` is meant as a sealed value (any version, well-formed or not)."""
    return _OTHER_VERSION.match(value) is not None


def key_id_of(value: str) -> str | None:
    """The key id a well-formed sealed value names; None if it is not one."""
    match = SEALED.fullmatch(value)
    return match.group(1) if match else None


def parse_key(text: str, where: str) -> bytes:
    """A key from base64 (standard or URL-safe, padding optional); KeySourceError naming
    `where`, never quoting the text."""
    raw = text.strip().replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeySourceError(
            f"{where}: not a key (base64 of {KEY_BYTES} bytes; make one with "
            "`gateway secrets keygen`)"
        )
    return key


class Keyring:
    """The configured keys: the first seals, every one opens."""

    __slots__ = ("_keys", "source")

    def __init__(self, keys: Sequence[bytes], source: str) -> None:
        if not keys:
            raise KeySourceError(f"{source}: holds no key; {HOW_TO_SET}")
        self._keys: dict[str, bytes] = {}
        for key in keys:
            kid = key_id(key)
            if self._keys.setdefault(kid, key) != key:
                raise KeySourceError(f"{source}: two different keys share the id {kid}")
        self.source = source
        """Where the keys came from, for messages (`GATEWAY_SECRET_KEY / server....`)."""

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self._keys)}, source={self.source!r})"

    @property
    def current(self) -> str:
        """The id of the key that seals."""
        return next(iter(self._keys))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def seal(self, plaintext: str) -> str:
        """`plaintext` sealed under the first key, with a fresh nonce."""
        kid = self.current
        nonce = os.urandom(NONCE_BYTES)
        data = AESGCM(self._keys[kid]).encrypt(nonce, plaintext.encode("utf-8"), _LABEL)
        encoded = base64.urlsafe_b64encode(nonce + data).rstrip(b"=").decode("ascii")
        return f"{PREFIX}{kid}:{encoded}"

    def open(self, value: str) -> str:
        """The plaintext of a sealed value; UnknownKey or Unopenable otherwise."""
        match = SEALED.fullmatch(value)
        if match is None:
            raise Unopenable(
                "not a well-formed enc:v1 value (enc:v1:<8 hex key id>:<base64url>); "
                "seal it again with `gateway secrets encrypt`"
            )
        kid, data = match.groups()
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKey(f"cannot decrypt (no key {kid} in {self.source})")
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _LABEL)
            return plain.decode("utf-8")
        except (InvalidTag, ValueError):  # binascii.Error and UnicodeDecodeError too
            raise Unopenable(
                f"cannot decrypt with key {kid}: the value was altered or cut short"
            ) from None

    def reseal(self, text: str) -> tuple[str, int, int]:
        """`text` (a config or env file) with every sealed value not under the first key
        sealed again under it; also how many were resealed and how many left as they were.
        UnknownKey or Unopenable, naming the line, for a value that does not open."""
        counts = [0, 0]

        def again(match: re.Match[str]) -> str:
            if match.group(1) == self.current:
                counts[1] += 1
                return match.group(0)
            try:
                plain = self.open(match.group(0))
            except SealError as exc:
                line = text.count("\n", 0, match.start()) + 1
                raise type(exc)(f"line {line}: {exc}") from None
            counts[0] += 1
            return self.seal(plain)

        return SEALED.sub(again, text), counts[0], counts[1]


def keyring(env_value: str | None, key_file: str | None) -> Keyring | None:
    """The keys of `GATEWAY_SECRET_KEY`'s value, then those of the key file; None when
    neither is set. KeySourceError naming the source of a bad key or file."""
    keys: list[bytes] = []
    sources: list[str] = []
    if env_value is not None and env_value.strip():
        sources.append(KEY_ENV)
        parts = env_value.split(",")
        keys += [parse_key(part, f"{KEY_ENV} (key {i} of {len(parts)})")
                 for i, part in enumerate(parts, 1)]  # fmt: skip
    if key_file:
        sources.append(f"{KEY_FILE_KEY} {key_file}")
        keys += read_key_file(key_file)
    return Keyring(keys, " / ".join(sources)) if sources else None


def read_key_file(path: str | Path) -> list[bytes]:
    """The keys of a key file, refused unless only its owner may read it."""
    where = f"{KEY_FILE_KEY}: {path}"
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise KeySourceError(f"{where}: cannot read it: {reason}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeySourceError(
            f"{where}: mode {stat.S_IMODE(mode):03o} lets others read it; "
            f"`chmod 600 {path}` (owner only)"
        )
    return list(_file_keys(text.splitlines(), where))


def _file_keys(lines: Iterable[str], where: str) -> Iterable[bytes]:
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield parse_key(line, f"{where}, line {number}")
