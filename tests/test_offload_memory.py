"""Freed memory goes back to the system (router/memory.py): the large-webhook process after
each body, each worker every `server.memory_release_seconds`. Without it a process kept
every page its largest request ever touched, and the gateway's resident memory crept up
over a long fuzzing run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router import memory

ROOT = Path(__file__).resolve().parent.parent

# 50,000 blocks of 2 KB (malloc's, not Python's small-object arenas, like a decoded body's
# large strings), all freed but the last, which keeps the heap's top where it was.
_PROGRAM = textwrap.dedent(
    """
    import json, sys
    from router.memory import release_function

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    start = rss_mib()
    blocks = [bytes(2000) + i.to_bytes(4, "little") for i in range(50_000)]
    last = blocks[-1]
    del blocks
    freed = rss_mib()
    release_function()()
    print(json.dumps({"start": start, "freed": freed, "released": rss_mib()}))
    """
)


@pytest.mark.skipif(memory.release_function() is None, reason="no glibc malloc_trim here")
def test_freed_memory_goes_back_to_the_system() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], cwd=ROOT, capture_output=True, text=True, check=True
    )
    rss = json.loads(out.stdout)
    assert rss["freed"] - rss["start"] > 80  # freed, yet still resident: ~100 MiB kept
    assert rss["released"] - rss["start"] < 20  # handed back
