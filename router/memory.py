"""Memory a process freed goes back to the system (glibc's `malloc_trim(0)`).

CPython hands freed objects back to the C allocator, but glibc keeps the pages: a heap's top
pinned by one live block, or holes between live ones, stay resident. A gateway process that
decoded a 3 MB body, or one request of each odd shape the internet sends (a huge string,
deep nesting, thousands of items), stayed larger than before for good: the fuzzer measured
the large-webhook processes 87 → 117 MiB and a worker 106 → 127 MiB over 100,000 cases
(benchmarks/README.md, "Fuzzing"). `malloc_trim(0)` returns every free page, wherever it is
(madvise). It walks the heap holding the allocator's lock: measured 2-3 ms with nothing to
give back on a 160-670 MiB heap, about 20 ms giving back 230 MiB of holes; so a worker calls
it from a thread (ctypes lets go of the GIL), and its event loop only waits if it needs a
large block from the C allocator meanwhile (small objects come from CPython's own arenas).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
from collections.abc import Callable

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
    """`release` every `period_s` seconds in a thread, until cancelled."""
    while True:
        await asyncio.sleep(period_s)
        await asyncio.to_thread(release)
