"""`gateway demo` as a newcomer runs it: the whole loop on this machine, in under a minute, exit
0, every hop told, and nothing left behind; and a hop that does not happen is said, exit 1."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import gateway_demo.run as demo
from gateway_demo.standins.graph_api import FakeGraphAPI


def _left_running(data: str) -> list[str]:
    """Processes whose command line names the demo's directory (its Redis, its gateway)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        if data in args:
            found.append(args)
    return found


def test_the_demo_runs_the_whole_loop_and_stops_everything() -> None:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "demo"], capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - began
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert took < 60
    assert done.stderr == ""
    lines = out.splitlines()

    def hops(step: str) -> list[str]:
        """The actors of one step's lines, in order."""
        start = next(i for i, line in enumerate(lines) if line.startswith(step))
        found = []
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            found.append(line.split()[2])
        return found

    # WhatsApp: webhook → event → the assistant's command → the Graph API request → delivery
    # → status webhook → status event.
    assert hops("1.") == [
        "webhook",
        "inbox",
        "outbox",
        "Graph",
        "inbox",
        "assistant",
        "webhook",
        "inbox",
    ]
    assert hops("3.") == ["webhook", "inbox", "outbox", "Bot", "inbox", "assistant"]
    assert hops("4.") == ["webhook", "router"]  # the redelivery: nothing published
    assert hops("5.")[-2:] == ["assistant", "outbox"]  # paused: not answered
    assert re.search(
        r"Graph API +POST /v21\.0/\d+/messages: text to \+15550001234 'You said: Hi!", out
    )
    assert re.search(
        r"Bot API +sendMessage to chat 4242 'You said: Do you ship to Canada\?' → 200", out
    )
    assert re.search(r"gw:inbox:support ← delivery sent of cmd-\w+: message wamid\.", out)
    assert re.search(r"gw:inbox:support ← status delivered of wamid\.", out)
    assert re.search(r"'Thanks Sam!' ai_paused", out)
    assert "a human has this conversation, not answering" in out
    assert lines[-1].startswith("gateway demo: done, every step as told; removed /tmp/")
    # Nothing left behind: its directory is gone, and no process (Redis, gateway) names it.
    data = re.search(r"in (/\S+gateway-demo-\w+),", out)
    assert data is not None
    assert not Path(data.group(1)).exists()
    assert _left_running(data.group(1)) == []


class _Refusing(FakeGraphAPI):
    """Graph answering every send with 131047 (outside the 24-hour window)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail(131047, times=100)


def test_a_hop_that_does_not_happen_is_said_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "FakeGraphAPI", _Refusing)
    out = io.StringIO()
    assert demo.main(out) == 1
    text = out.getvalue()
    failed = text.splitlines()[-1]
    assert failed.startswith("gateway demo: FAILED: command cmd-")
    assert "ended failed: (#131047) Re-engagement message" in failed
    # The delivery event's line, and the gateway's one warning, say why.
    assert re.search(r"← delivery failed \(provider_error, code 131047\) of cmd-", text)
    assert re.search(r"gateway +.* WARNING .* failed: provider_error, provider code 131047", text)
    assert "stopping: the assistant, the gateway (and its Redis), the stand-ins" in text
    data = re.search(r"in (/\S+gateway-demo-\w+),", text)
    assert data is not None
    assert not Path(data.group(1)).exists()
    assert _left_running(data.group(1)) == []
