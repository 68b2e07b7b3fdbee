"""The backends' client as the distribution of its own a backend installs (client/): built
with pip, it holds `gateway_client` alone and requires redis and msgspec only; installed with
just those into an empty directory, it sends a command to a real Redis."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from redis import Redis

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.once  # builds and installs a wheel: the first pass only


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A copy: building writes build/ and *.egg-info next to the sources.
    work = tmp_path_factory.mktemp("client-dist")
    shutil.copytree(
        ROOT / "client", work / "client", ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(work / "dist"), str(work / "client")], check=True
    )
    (built,) = (work / "dist").glob("*.whl")
    return built


def test_the_wheel_holds_the_client_and_needs_redis_and_msgspec_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    packages = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert packages == {"gateway_client"}
    assert "gateway_client/py.typed" in names  # typed for the backend's mypy
    requires = sorted(
        line.split(":", 1)[1].split(">")[0].strip()
        for line in lines
        if line.startswith("Requires-Dist:")
    )
    assert requires == ["msgspec", "redis"]


SCRIPT = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from gateway_client import Backend, commands

async def main():
    backend = Backend.from_url(sys.argv[2], "support")
    command = commands.text("telegram:7000000001:42", "hi", command_id="dist-1")
    sent = await backend.send(command)
    await backend.aclose()
    ours = ("aiohttp", "gateway", "router", "adapters", "yaml")
    print(sent.command_id, sorted(m for m in sys.modules if m.split(".")[0] in ours))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Path:
    """The wheel and its dependencies, alone in a directory."""
    target = wheel.parent.parent / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--target", str(target), str(wheel)], check=True)
    return target


def test_installed_alone_it_sends_a_command(installed: Path, redis_url: str) -> None:
    """Run without the site-packages the gateway is installed in (`-S`): it imports, loads
    nothing of the gateway's, and writes a command the gateway reads."""
    out = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT, str(installed), redis_url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["dist-1", "[]"]
    with Redis.from_url(redis_url) as redis:
        ((_id, fields),) = redis.xrange("gw:outbox:support")
    command = json.loads(fields[b"command"])
    assert command["command_id"] == "dist-1"
    assert command["text"] == "hi"
    assert command["conversation_id"] == "telegram:7000000001:42"
