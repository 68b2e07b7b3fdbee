"""Settings: one frozen struct decoded from config.yaml (CONTRACT.md §4).

Loading is three steps, each failing with a `ConfigError` that names the key:
1. YAML is read and every `${VAR}` inside a string is replaced from the environment (and,
   below it, an optional env file); an unset variable is an error naming it and the key.
   Sealed values (`enc:v1:...`, gateway/sealed.py), written in the file or held by a
   variable, are decrypted here with the keys of `GATEWAY_SECRET_KEY` and
   `server.secret_key_file`; one that does not open is an error naming the key.
2. The tree is converted into `Settings` with msgspec: unknown keys are errors, numbers and
   booleans written as strings (as `${PORT}` gives) are parsed, ranges are checked.
3. Cross-field checks: each channel's section checks itself (`ChannelSettings.check`: its
   secrets, duplicate ids, E.164 numbers, assistant names safe for stream keys...), then
   the rules across sections (at least one channel, demo or short secrets on a public
   listener, a cluster's URL); credentials that are empty or placeholders
   (adapters/credentials.py) are refused first.

A message never quotes a decrypted value: any that would appear is replaced.

The channels' sections are their packages' structs (`adapters/<name>/_config.py`), composed
here under the channel's name: the one place gateway/ lists the channels.

Nothing else in the project reads the environment.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
import yaml

from adapters import CHANNELS, ChannelSettings, credentials
from adapters.account import Secret
from adapters.media import MediaSettings
from adapters.meta_messaging import InstagramSettings, MessengerSettings
from adapters.notice import NotificationSettings
from adapters.telegram import TelegramSettings
from adapters.twilio import TwilioSettings
from adapters.whatsapp import WhatsAppSettings
from gateway import sealed
from router.settings import (
    OutboundSettings,
    PolicySettings,
    RouterSettings,
)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


Seconds = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
MAX_WORKERS = 256

_STRUCT = {"frozen": True, "forbid_unknown_fields": True, "kw_only": True}


class ServerSettings(msgspec.Struct, **_STRUCT):
    host: str = "0.0.0.0"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 3 * 1024 * 1024
    drain_seconds: Seconds = 3.0
    """After SIGTERM, /readyz answers 503 this long while requests are still served, so the
    load balancer stops sending before the listener closes."""
    shutdown_timeout_seconds: Seconds = 30.0
    """How long in-flight requests may take to finish once the listener is closed."""
    access_log: bool = False
    head_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """A client that has not sent a whole request head this long after it began (or after
    connecting) is disconnected, so trickled bytes cannot hold a connection."""
    body_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """Likewise for a request's body, counted from the end of its head."""
    keepalive_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 75.0
    """An idle keep-alive connection is closed after this long (fast path and aiohttp)."""
    max_connections: PositiveInt = 4096
    """Client connections open at once; a connection beyond them is closed at once."""
    max_buffered_bytes: Annotated[int, msgspec.Meta(ge=1024 * 1024)] = 256 * 1024 * 1024
    """Bytes of unfinished request bodies buffered over all fast-path connections; beyond
    it, a connection whose body is still incomplete is answered 503 (Retry-After) and closed."""
    fast_path: bool = True
    """Plain webhook POSTs are served by gateway/fasthttp.py instead of aiohttp's request
    machinery (about 40 µs less CPU each); false leaves every request to aiohttp."""
    offload_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 256 * 1024
    """Bodies larger than this are decoded and published by a child process (router/offload.py,
    see handlers._start)."""
    memory_release_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """Every this many seconds each worker hands the memory it freed back to the system, and
    the large-webhook process after each body; both pin glibc's mmap threshold (router/
    memory.py; read at start). 0: neither, the processes keep what glibc keeps."""
    workers: Annotated[int, msgspec.Meta(ge=1, le=MAX_WORKERS)] = 1
    """Worker processes sharing host:port through SO_REUSEPORT (gateway.supervisor); 1 runs
    the gateway in this one process. `gateway serve --workers N` overrides it."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line (gateway/logs.py). `--log-format` overrides it."""
    public_url: str | None = None
    """The gateway's public base URL as the platforms reach it (`https://gw.example.com`, a
    path prefix allowed): `gateway webhooks set` registers `<public_url>/webhooks/<channel>`
    with the providers, and `verify` fetches the handshake through it."""
    secret_overlap_seconds: Annotated[float, msgspec.Meta(ge=0)] = 900.0
    """After a reload that changed a channel's webhook secrets, the previous ones still
    verify this long (a rotation at the platform and in the config need not coincide)."""
    pid_file: str | None = None
    """`gateway serve` writes its pid here (the supervisor's, with workers) and removes it on
    exit; `gateway reload` reads it to send SIGHUP."""
    subscription_check_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """Every this many seconds (0: never; at least 60 otherwise) worker 1 asks each provider
    whether each enabled account is still subscribed (`gateway_webhook_subscribed`): Meta
    unsubscribes an app after about an hour of failed deliveries. Needs `public_url`."""
    admin_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    """When set, /metrics, /readyz and /healthz are also served on admin_host:admin_port,
    and /metrics leaves the public port (404 there); see gateway.admin."""
    admin_host: str = "127.0.0.1"
    journal_dir: str = ".gateway-journal"
    """Where webhooks of providers that never redeliver (Twilio) are kept on disk while Redis
    cannot take them, one subdirectory per process (gateway/journal.py); made on first use."""
    journal_max_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 128 * 1024 * 1024
    """Bytes one process may keep in its journal; past them such webhooks are answered 503."""
    journal_retry_max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """While Redis does not answer, the journal's replay is tried again after 0.25 s, doubling
    up to this: the longest a recovered Redis waits for the journaled webhooks."""
    secret_key_file: str | None = None
    """Keys for the config's `enc:v1:` values, one a line (gateway/sealed.py), beside or
    instead of `GATEWAY_SECRET_KEY`; refused unless only its owner can read it (mode 600)."""


class RedisSettings(msgspec.Struct, **_STRUCT):
    url: str | None = None
    """Leave out to start an embedded redis-server (see `embedded_*`)."""
    embedded_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 6379
    embedded_dir: str = ".gateway-redis"
    """Data directory of the embedded server (append-only file, so events survive restarts)."""
    embedded_tcp: bool = False
    """The embedded server also listens on 127.0.0.1:embedded_port (password required); by
    default only on its Unix socket (see gateway.embedded)."""
    embedded_appendfsync: Literal["everysec", "always"] = "everysec"
    """How often the embedded server fsyncs its append-only file: `everysec` (a power cut or
    kernel crash may lose the last second of acknowledged webhooks; a killed process loses
    nothing) or `always` (nothing acknowledged is lost; costs webhooks/s: benchmarks/README.md,
    "Faults")."""
    wait_aof: bool = False
    """Acknowledge nothing before Redis confirms it is on disk: script calls (a webhook's
    publish, a command's state changes) are followed by `WAITAOF 1 0` (one per batch: group
    commit, router/scriptpipe.py), waited for at most half of `timeout_seconds`, else the
    webhook is answered 503 and retried by its platform. Needs Redis or Valkey >= 7.2 with
    `appendonly yes` and `appendfsync always`, one node over redis:// or unix:// (not a
    cluster, not TLS); checked at start. For the embedded Redis, use
    `embedded_appendfsync: always`. Costs webhooks/s (benchmarks/README.md, "Faults")."""
    embedded_maxmemory: int | str = "50%"
    """Its `maxmemory` (noeviction): bytes, `512mb`/`2gb`, or a share of this machine's memory.
    Half leaves the rest to the AOF rewrite's fork and the gateway."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    max_connections: PositiveInt = 64
    cluster: bool = False
    """`url` names any one node of a Redis Cluster (the seed); the client finds the rest."""
    memory_warn_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.9
    """/readyz reports `redis_memory: high` once used memory passes this share of maxmemory
    (it stays ready: only a report)."""
    embedded_acl: bool = False
    """The embedded server starts with the ACL users of gateway/acl.py (one per assistant,
    one for the gateway, which connects as it); the password default user stays, for the
    operator's tools."""
    acl_dir: str | None = None
    """Where `gateway acl` and `embedded_acl` keep the ACL users' passwords (one file each,
    mode 600); default `acl` in `embedded_dir`."""

    def __post_init__(self) -> None:
        if self.embedded_acl and self.url is not None:
            raise ValueError(
                "embedded_acl: only for the embedded Redis, and redis.url is set; "
                "run `gateway acl --apply` on that Redis instead"
            )


class Settings(msgspec.Struct, **_STRUCT):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    router: RouterSettings = msgspec.field(default_factory=RouterSettings)
    policy: PolicySettings = msgspec.field(default_factory=PolicySettings)
    outbound: OutboundSettings = msgspec.field(default_factory=OutboundSettings)
    # The channels' sections, each its package's struct, under the channel's name (a field
    # per channel: the one place gateway/ lists them; `channel_sections` reads them by name).
    whatsapp: WhatsAppSettings | None = None
    telegram: TelegramSettings | None = None
    messenger: MessengerSettings | None = None
    instagram: InstagramSettings | None = None
    twilio: TwilioSettings | None = None
    notifications: NotificationSettings | None = None
    """Escalation notices (router/notifications.py); absent: none are written."""
    media: MediaSettings | None = None
    """The media endpoint for backends (gateway/media.py); absent: it answers 404."""


def channel_sections(settings: Settings) -> dict[str, ChannelSettings | None]:
    """Every registered channel's config section by name, None where it is absent, in the
    order `Settings` lists them. A channel `Settings` does not list has no section (None)."""
    fields = [name for name in settings.__struct_fields__ if name in CHANNELS]
    fields += [name for name in CHANNELS if name not in fields]
    return {name: getattr(settings, name, None) for name in fields}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEMO_VALUES = frozenset(
    {
        "demo-app-secret-change-me",
        "demo-verify-token-change-me",
        "demo-access-token",
        "123456789:demo-bot-token-change-me",
        "demo_secret_change_me",
    }
)
"""The values demo.env ships (tests/test_config.py keeps the two in step): known to anyone
who read the README, so refused on a listener other than loopback."""
MIN_SECRET_CHARS = 16
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
MIN_EMBEDDED_MAXMEMORY = 1024 * 1024


def memory_limit(spec: int | str) -> int:
    """Bytes for `redis.embedded_maxmemory`: a number of bytes, a size with Redis's units
    (`1gb` = 1024³, `1g` = 10⁹, likewise k/kb, m/mb), or `N%` of this machine's memory.
    ValueError if it is none of these."""
    if isinstance(spec, int):
        return spec
    text = spec.strip().lower()
    if text.endswith("%"):
        share = float(text[:-1])
        if not 0 < share <= 100:
            raise ValueError("a share of memory must be above 0% and at most 100%")
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * share / 100)
    number = text.rstrip("kmgb")
    unit = text[len(number) :]
    if not number.isdigit() or unit not in _UNITS:
        raise ValueError("expected bytes, a size like 512mb or 2gb, or a share like 50%")
    return int(number) * _UNITS[unit]


_UNITS = {"": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 1024**2, "g": 10**9, "gb": 1024**3}


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, substitute, decode and check a config file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    return loads(text, os.environ if env is None else env)


def loads(text: str, env: Mapping[str, str]) -> Settings:
    tree = _tree(text)
    opened: list[str] = []
    tree = _substitute(tree, env, "", _unsealer(secret_keys(env, tree), opened))
    try:
        try:
            settings = msgspec.convert(tree, Settings, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(_explain(exc)) from None
        try:
            credentials.check(settings, secrets_of(settings), tree)
        except ValueError as exc:  # names the key, never the value
            raise ConfigError(str(exc)) from None
        check(settings)
    except ConfigError as exc:
        raise ConfigError(_scrub(str(exc), opened)) from None
    return settings


def _tree(text: str) -> dict[str, Any]:
    try:
        tree = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # its snippet of the file could quote a secret
        mark = exc.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"config is not valid YAML{at}: {why}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config is not valid YAML: {exc}") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError("config must be a mapping at the top level")
    return tree


def secret_keys(
    env: Mapping[str, str], tree: Mapping[str, Any] | None = None
) -> sealed.Keyring | None:
    """The keys of `GATEWAY_SECRET_KEY` and the config's `server.secret_key_file` (read now,
    so a bad key or key file stops startup even if no value needs it); None when neither is
    set. `tree` is the config as parsed, before substitution."""
    server = (tree or {}).get("server")
    path = server.get("secret_key_file") if isinstance(server, dict) else None
    if isinstance(path, str):
        path = _VAR.sub(lambda m: _lookup(m.group(1), env, sealed.KEY_FILE_KEY), path)
    try:
        return sealed.keyring(env.get(sealed.KEY_ENV), path if isinstance(path, str) else None)
    except sealed.SealError as exc:
        raise ConfigError(str(exc)) from None


def secret_keys_of_config(text: str, env: Mapping[str, str]) -> sealed.Keyring | None:
    """`secret_keys` for a config file's text (the `gateway secrets` commands)."""
    return secret_keys(env, _tree(text))


def sealed_values(text: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every sealed value a config holds after substitution, with the key it sits at (and
    the variable that held it): `(where, value)`, none opened."""
    found: list[tuple[str, str]] = []

    def record(value: str, where: str) -> str:
        found.append((where, value))
        return ""

    _substitute(_tree(text), env, "", record)
    return found


Unseal = Callable[[str, str], str]
"""Opens one sealed value found at a key (value, where) → plaintext."""


def _unsealer(keyring: sealed.Keyring | None, opened: list[str]) -> Unseal:
    """Opens sealed values with `keyring`, keeping each plaintext in `opened` (so that no
    later message quotes it); ConfigError naming the key of one that does not open."""

    def unseal(value: str, where: str) -> str:
        if keyring is None:
            raise ConfigError(
                f"{where}: is an enc:v1 value, and no key is configured: {sealed.HOW_TO_SET}"
            )
        try:
            plain = keyring.open(value)
        except sealed.SealError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        opened.append(plain)
        return plain

    return unseal


def _scrub(message: str, opened: list[str]) -> str:
    for plain in sorted(opened, key=len, reverse=True):
        if len(plain) >= 3:
            message = message.replace(plain, "[REDACTED]")
    return message


def read_env_file(path: str | Path) -> dict[str, str]:
    """`KEY=value` lines (# comments, optional quotes); the process environment wins over it."""
    out: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not _VAR.fullmatch("${" + key.strip() + "}"):
            raise ConfigError(f"env file {path}, line {number}: expected KEY=value")
        out[key.strip()] = value.strip().strip("'\"")
    return out


def _substitute(node: Any, env: Mapping[str, str], where: str, unseal: Unseal) -> Any:
    if isinstance(node, str):
        if sealed.is_sealed(node):  # written in the file (its alphabet has no `${`)
            return unseal(node, where)
        return _VAR.sub(lambda m: _lookup(m.group(1), env, where, unseal), node)
    if isinstance(node, dict):
        return {k: _substitute(v, env, _join(where, str(k)), unseal) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env, f"{where}[{i}]", unseal) for i, v in enumerate(node)]
    return node


def _lookup(name: str, env: Mapping[str, str], where: str, unseal: Unseal | None = None) -> str:
    if name not in env:
        raise ConfigError(f"{where}: environment variable {name} is not set")
    value = env[name]
    if unseal is not None and sealed.is_sealed(value):
        return unseal(value, f"{where} (${{{name}}})")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _explain(exc: msgspec.ValidationError) -> str:
    """msgspec says `... - at `$.server.port``; lead with the key, as operators read it."""
    message = str(exc)
    head, sep, at = message.rpartition(" - at `$")
    if not sep:
        return f"config: {message}"
    return f"{at.rstrip('`').lstrip('.')}: {head}"


def with_workers(settings: Settings, workers: int) -> Settings:
    """`settings` with `server.workers` replaced (the `--workers` flag), checked again."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: must be 1-{MAX_WORKERS}, got {workers}")
    server = msgspec.structs.replace(settings.server, workers=workers)
    changed = msgspec.structs.replace(settings, server=server)
    check(changed)
    return changed


def with_log_format(settings: Settings, log_format: str) -> Settings:
    """`settings` with `server.log_format` replaced (the `--log-format` flag)."""
    if log_format not in ("text", "json"):
        raise ConfigError(f"--log-format: must be text or json, got {log_format!r}")
    server = msgspec.structs.replace(settings.server, log_format=log_format)
    return msgspec.structs.replace(settings, server=server)


def check(settings: Settings) -> None:
    """Cross-field rules that a type cannot say."""
    _check_channels(settings)
    if settings.server.workers > 1 and settings.server.port == 0:
        raise ConfigError(
            "server.port: 0 (any free port) cannot be shared by several workers; "
            "set a port, or server.workers: 1"
        )
    out = settings.outbound
    if out.claim_idle_seconds <= out.request_timeout_seconds * 2:
        raise ConfigError(
            "outbound.claim_idle_seconds: must exceed twice outbound.request_timeout_seconds, "
            "or live workers' sends would be taken over"
        )
    if settings.redis.cluster:
        _check_cluster(settings.redis)
    _check_embedded(settings.redis)
    _check_wait_aof(settings.redis)
    _check_admin(settings.server)
    _check_public_url(settings.server)
    if settings.notifications is not None:
        try:
            settings.notifications.check()
        except ValueError as exc:  # names the key, never the value
            raise ConfigError(str(exc)) from None
    if settings.media is not None:
        _check_media(settings, settings.media)
    _check_exposed_secrets(settings)


def _check_media(settings: Settings, media: MediaSettings) -> None:
    """The section's own rules, then: each key names an assistant some account is bound to
    (a misspelt name would make a key that opens nothing)."""
    try:
        media.check()
    except ValueError as exc:  # names the key, never the value
        raise ConfigError(str(exc)) from None
    assistants = {
        account.assistant
        for section in channel_sections(settings).values()
        if section is not None
        for account in section.accounts()
    }
    for i, entry in enumerate(media.api_keys):
        if entry.assistant not in assistants:
            raise ConfigError(
                f"media.api_keys[{i}].assistant: no account is bound to {entry.assistant!r}"
            )


def _check_public_url(server: ServerSettings) -> None:
    if server.public_url is not None:
        url = urlsplit(server.public_url)
        if url.scheme not in ("https", "http") or not url.netloc or url.query or url.fragment:
            raise ConfigError(
                "server.public_url: must be the gateway's public base URL, like "
                "https://gateway.example.com (no query, no #fragment)"
            )
    seconds = server.subscription_check_seconds
    if seconds:
        if seconds < 60:
            raise ConfigError(
                "server.subscription_check_seconds: 0 (off) or at least 60: each check calls "
                "every provider once per account"
            )
        if server.public_url is None:
            raise ConfigError(
                "server.subscription_check_seconds: needs server.public_url (what the "
                "subscriptions must point at)"
            )


def _check_channels(settings: Settings) -> None:
    sections = channel_sections(settings)
    if all(section is None for section in sections.values()):
        raise ConfigError(f"{', '.join(sections)}: configure at least one channel")
    for section in sections.values():
        if section is None:
            continue
        try:
            section.check()
        except ValueError as exc:  # the section's own message, which names the key
            raise ConfigError(str(exc)) from None
    _check_one_provider(sections)
    _check_meta_apps(settings)


def _check_meta_apps(settings: Settings) -> None:
    """Meta sections list `apps` all together or not at all: a section with only
    `app_secret` vouches for the other Meta channels' bodies posted to its path (as before
    `apps`), which would let its app speak for an account of another app."""
    meta = {"whatsapp": settings.whatsapp, "messenger": settings.messenger,
            "instagram": settings.instagram}  # fmt: skip
    listing = [name for name, section in meta.items() if section is not None and section.apps]
    for name, section in meta.items():
        if listing and section is not None and not section.apps:
            raise ConfigError(
                f"{name}.apps: required once {listing[0]}.apps is set: list this section's "
                f"app(s) too (one entry will do), so that a body is checked against the apps "
                "of the channel it names"
            )


def _check_one_provider(sections: Mapping[str, ChannelSettings | None]) -> None:
    """A number is on exactly one provider (PLATFORM-MORE §5.5: a WhatsApp number is held by
    one provider at a time), and no two sections configure the same account of a channel."""
    seen: dict[tuple[str, str], str] = {}
    phones: dict[str, str] = {}
    for name, section in sections.items():
        if section is None:
            continue
        for account in section.accounts():
            where = f"{name} ({account.channel} {account.account_id})"
            first = seen.setdefault((account.channel, account.account_id), where)
            if first != where:
                raise ConfigError(f"{name}: {account.account_id} is configured twice: {first}")
            phone = account.display_phone_number
            if phone and account.channel == "whatsapp":
                owner = phones.setdefault(phone.lstrip("+"), name)
                if owner != name:
                    raise ConfigError(
                        f"{name}: {phone} is also configured in {owner}: a WhatsApp number is "
                        "on exactly one provider"
                    )


def _check_cluster(redis: RedisSettings) -> None:
    if redis.url is None:
        raise ConfigError(
            "redis.cluster: needs redis.url (the address of any one cluster node); "
            "the embedded Redis is a single node"
        )
    url = urlsplit(redis.url)
    if url.scheme not in ("redis", "rediss"):
        raise ConfigError("redis.url: a cluster is reached over TCP: redis:// or rediss://")
    if url.path.strip("/") not in ("", "0"):
        raise ConfigError("redis.url: a cluster has only database 0")


def _check_wait_aof(redis: RedisSettings) -> None:
    if redis.wait_aof and redis.cluster:
        raise ConfigError(
            "redis.wait_aof: not with a cluster (WAITAOF covers one connection to one node); "
            "set `appendfsync always` on the cluster's nodes instead"
        )
    if redis.wait_aof and (redis.url or "").startswith("rediss://"):
        raise ConfigError(
            "redis.wait_aof: not over TLS (rediss://); set `appendfsync always` on that "
            "Redis instead"
        )


def _check_embedded(redis: RedisSettings) -> None:
    try:
        limit = memory_limit(redis.embedded_maxmemory)
    except ValueError as exc:
        raise ConfigError(f"redis.embedded_maxmemory: {exc}") from None
    if limit < MIN_EMBEDDED_MAXMEMORY:
        raise ConfigError("redis.embedded_maxmemory: at least 1mb (Redis itself needs about that)")


def _check_admin(server: ServerSettings) -> None:
    if server.admin_port is None:
        return
    if server.admin_port != 0 and server.admin_port == server.port:
        raise ConfigError("server.admin_port: must differ from server.port")
    if server.workers > 1 and server.admin_port == 0:
        raise ConfigError(
            "server.admin_port: 0 (any free port) cannot be shared by several workers; set a port"
        )


def is_loopback(host: str) -> bool:
    """Whether a listener on `host` takes connections from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


def _check_exposed_secrets(settings: Settings) -> None:
    """Anyone who can reach the port can forge webhooks signed with a published or guessable
    secret, so such secrets are only allowed on a loopback-only listener (the demo)."""
    host = settings.server.host
    if is_loopback(host):
        return
    for key, value, checked_length in secrets_of(settings):
        if value in DEMO_VALUES:
            raise ConfigError(
                f"{key}: is a demo value from demo.env, and server.host {host} is not loopback; "
                "set a real secret, or listen on 127.0.0.1"
            )
        if checked_length and len(value) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"{key}: shorter than {MIN_SECRET_CHARS} characters, and server.host {host} is "
                "not loopback; use a long random secret, or listen on 127.0.0.1"
            )


def secrets_of(settings: Settings) -> list[Secret]:
    """Every credential in the config, channel by channel, then the notifications' and the
    media endpoint's API keys."""
    return (
        [
            secret
            for section in channel_sections(settings).values()
            if section is not None
            for secret in section.secrets()
        ]
        + (settings.notifications.secrets() if settings.notifications is not None else [])
        + (settings.media.secrets() if settings.media is not None else [])
    )
