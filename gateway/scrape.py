"""The scrape, and how metrics combine across worker processes.

Several worker processes (`server.workers` > 1): prometheus_client's multiprocess mode. The
supervisor sets PROMETHEUS_MULTIPROC_DIR before a worker imports prometheus_client, so every
value lives in a per-process file there; `/metrics` in any worker merges all the files
(`MultiProcessCollector`), so counters and histograms are sums over the workers, dead ones
included, whichever worker Prometheus reaches. Gauges cannot simply be summed; each one's
`multiprocess_mode` is one of the constants below, and the comment above them says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# How a gauge's per-worker values combine in multiprocess mode (ignored with one process):
# - gateway_draining, "livemax": 1 while any live worker drains. "live": a worker that drained
#   and exited on its own (someone sent it SIGTERM) is restarted, and its 1 must not outlive it.
# - outbox gauges, "mostrecent": every worker reads the same gw:outbox every
#   claim_idle_seconds / 4 and reports it; the newest reading is the truth. "max" would hold
#   a stale peak until the worker that saw it reads again. The Redis memory gauges likewise
#   (every worker reads the same Redis's INFO memory).
# - gateway_account_connected, "mostrecent": the worker that published the latest account
#   event (or the latest to start, which reads the state from Redis) knows the current state;
#   "max" would show 1 forever after a disconnect seen by one worker while others started
#   with 1. Not "live": the value stays right when the worker that saw the event is gone.
# - gateway_history_sync_progress, "mostrecent": the latest HISTORY_PROGRESS, whoever took it.
# - gateway_account_halted, "max": set to 1 by the worker whose send met the credential error;
#   the halt lasts (in Redis, for every worker) until the gateway restarts, also when that
#   worker dies and is restarted, so its value must outlive it: not "live". The supervisor
#   starts each run with an empty directory, which is the restart that clears it.
# - gateway_journal_bytes, "livesum": each worker's journal holds its own webhooks, so the
#   instance's total is the sum. Not "sum": a worker that died keeps its last value in its
#   file, while its slot is taken over (and its bytes counted) by whichever live worker
#   replays it next (gateway/journal.py), so its own value must go with it.
DRAINING_MODE: Final = "livemax"
OUTBOX_MODE: Final = "mostrecent"
REDIS_MEMORY_MODE: Final = OUTBOX_MODE
CONNECTED_MODE: Final = "mostrecent"
PROGRESS_MODE: Final = "mostrecent"
HALTED_MODE: Final = "max"
SUBSCRIBED_MODE: Final = "mostrecent"
"""Set by worker 1 alone (the scheduled check)."""
JOURNAL_MODE: Final = "livesum"


def exposition(registry: CollectorRegistry, multiprocess_dir: Path | None) -> bytes:
    """The text Prometheus reads: this process's `registry`, or, in a worker, every worker's
    values merged from `multiprocess_dir`."""
    if multiprocess_dir is None:
        return generate_latest(registry)
    # Read afresh on every scrape: the files are the only place other workers' values are.
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return generate_latest(merged)
