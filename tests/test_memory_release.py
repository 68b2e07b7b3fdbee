"""Freed memory goes back to the system (router/memory.py): a worker pins glibc's mmap
threshold and trims every `server.memory_release_seconds`, the large-webhook process after
each body. Without them a process kept every page its largest requests ever touched, and
the gateway's resident memory crept up over a long fuzzing run (benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router import memory

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(memory.release_function() is None, reason="no glibc allocator here")

_RSS = """
import json, os, sys
from router import memory

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
"""


def _run(program: str, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _RSS + textwrap.dedent(program)],
        cwd=ROOT, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def test_a_trim_hands_back_the_holes_below_a_live_block() -> None:
    # 50,000 blocks of 2 KB (malloc's, not CPython's small-object arenas, like a decoded
    # body's strings), all freed but the last, which keeps the heap's top where it was.
    rss = _run("""
        start = rss_mib()
        blocks = [bytes(2000) + i.to_bytes(4, "little") for i in range(50_000)]
        last = blocks[-1]
        del blocks
        freed = rss_mib()
        memory.release_function()()
        print(json.dumps({"start": start, "freed": freed, "released": rss_mib()}))
    """)
    assert rss["freed"] - rss["start"] > 80  # freed, yet still resident: ~100 MiB kept
    assert rss["released"] - rss["start"] < 20  # handed back


_LARGE_BODIES = """
    pinned = sys.argv[-1] == "pin" and memory.fix_mmap_threshold()
    body = b"{" * (4 << 20)  # one 4 MiB body, freed: glibc raises its mmap threshold to it
    del body
    start = rss_mib()
    bodies, kept = [], []
    for i in range(60):  # 60 bodies of 1 MiB, each followed by something that stays alive
        bodies.append(b"{" * ((1 << 20) + i))  # (written: bytes(n) may leave pages untouched)
        kept.append(b"}" * (1024 + i))
    del bodies
    print(json.dumps({"pinned": pinned, "kept": rss_mib() - start}))
"""


@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "glibc-default"])
def test_large_bodies_freed_leave_no_pages_behind_once_the_threshold_is_pinned(
    pin: bool,
) -> None:
    program = _LARGE_BODIES.replace('sys.argv[-1] == "pin"', repr(pin))
    rss = _run(program, env={"PATH": "/usr/bin:/bin"})
    if pin:
        assert rss["pinned"]
        assert rss["kept"] < 8  # each body had its own pages, returned when freed
    else:
        assert rss["kept"] > 50  # carved from the heap between live blocks: they stay


def test_an_operators_own_glibc_setting_is_left_alone() -> None:
    rss = _run(
        "print(json.dumps({'pinned': memory.fix_mmap_threshold(), 'kept': 0}))",
        env={"PATH": "/usr/bin:/bin", "MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    assert rss["pinned"] is False
