"""Memory a process freed goes back to the system (glibc's allocator, on Linux).

CPython hands freed objects back to the C allocator, but glibc keeps pages for two reasons,
and a gateway process that served large or odd requests (a 3 MB history body, a huge string,
deep nesting, thousands of items) stayed larger than before for good: the fuzzer measured
the large-webhook processes 87 → 117 MiB and a worker 106 → 127 MiB over 100,000 cases
(benchmarks/README.md, "Fuzzing").

- **The mmap threshold moves.** A block of 128 KiB or more (a request body, a decode buffer)
  gets its own pages from the system, returned when it is freed; but glibc then raises the
  threshold to that block's size (up to 32 MiB), so the next large bodies are carved from
  the heap and stay there. `fix_mmap_threshold` pins it at 128 KiB: with it, one worker
  under the fuzzer stayed at 63-68 MiB; without, 67-112 MiB.
- **Holes in the heap.** Freed blocks below a live one are kept. `malloc_trim(0)` gives back
  every free page wherever it is (madvise). It walks the heap holding the allocator's lock:
  measured 2-3 ms with nothing to give back on a 160-670 MiB heap, about 20 ms giving back
  230 MiB of holes; so a worker calls it from a thread (ctypes lets go of the GIL), and its
  event loop waits only if it needs a block from the C allocator meanwhile (small objects
  come from CPython's own arenas).

Both are off where the C library is not glibc (musl, macOS): there a process keeps what its
allocator keeps. An environment that sets glibc's threshold itself (`MALLOC_MMAP_THRESHOLD_`,
`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...`) is left alone.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable

Release = Callable[[], object]

MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's own starting value: blocks this large or larger are mapped on their own."""
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None


def release_function() -> Release | None:
    """A call that hands freed memory back (glibc's `malloc_trim(0)`), or None where the C
    library has none."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return functools.partial(trim, 0)


def fix_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold at `MMAP_THRESHOLD_BYTES` for this process (which also
    stops glibc moving its trim threshold). False when not done: no glibc, or the
    environment sets it."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "malloc.mmap_threshold" in tunables:
        return False
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


async def release_every(release: Release, period_s: float) -> None:
    """`release` every `period_s` seconds in a thread, until cancelled."""
    while True:
        await asyncio.sleep(period_s)
        await asyncio.to_thread(release)
