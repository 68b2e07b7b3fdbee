"""Memory a process freed goes back to the system (glibc's `malloc_trim(0)`).

CPython hands freed objects back to the C allocator, but glibc keeps the pages: a heap's top
pinned by one live block, or holes between live ones, stay resident. A gateway process that
decoded a 3 MB body, or one request of each odd shape the internet sends (a huge string,
deep nesting, thousands of items), stayed larger than before for good: the fuzzer measured
the large-webhook processes 87 → 117 MiB and a worker 106 → 127 MiB over 100,000 cases
(benchmarks/README.md, "Fuzzing"). `malloc_trim(0)` returns every free page, wherever it is
(madvise), in well under a millisecond at these sizes.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

log = logging.getLogger("gateway.memory")

Release = Callable[[], object]


def release_function() -> Release | None:
    """A call that hands freed memory back (glibc's `malloc_trim(0)`), or None where the C
    library has none (musl, macOS): there the process keeps what its allocator keeps."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return functools.partial(trim, 0)


async def release_every(release: Release, period_s: float) -> None:
    """`release` every `period_s` seconds, until cancelled."""
    while True:
        await asyncio.sleep(period_s)
        release()
