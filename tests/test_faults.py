"""The fault-injection harness (benchmarks/faults.py), short version, and its counting.

`test_short_run` runs all five faults shortened (a worker killed, Redis killed and restarted,
Redis frozen 3 s, the providers failing 5 s and then answering 429 in bursts for 4 s, the
gateway stopped and restarted), each on a fresh stack of its own (redis-server with an
append-only file, the stand-ins, `gateway serve --workers 2`), under 200 webhooks/s, and
checks what a customer or an assistant would notice: no webhook answered 2xx and then lost,
none published twice, no command sent twice, none left without its delivery, none answered
by two deliveries. The harness runs in a session of its own under a hard timeout; on expiry
its whole process group (Redis, stand-ins, gateway and its workers) is killed.

Not marked `cluster`: it starts its own single Redis, so it runs once, in the first pass.
The other tests feed the counting made-up runs, so that a lost, duplicated, twice-sent or
undelivered id is seen to be counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _faults_count import Row, count  # noqa: E402
from _faults_load import Sent  # noqa: E402
from _faults_stub import Stub, Written, token_of  # noqa: E402

HARD_TIMEOUT_S = 420.0
FAULTS = {"worker-kill", "redis-kill", "redis-stop", "providers", "gateway-term"}


def _run_harness(out: Path) -> subprocess.CompletedProcess[str]:
    script = str(ROOT / "benchmarks" / "faults.py")
    cmd = [sys.executable, script, "--short", "--rate", "200", "--json", str(out)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, _ = proc.communicate(timeout=HARD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # everything it started is in its group
        stdout, _ = proc.communicate(timeout=30)
        pytest.fail(f"the harness ran over {HARD_TIMEOUT_S:.0f} s:\n{stdout[-5000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, "")


@pytest.mark.once  # starts its own stack and takes a minute and a half: the first pass only
def test_short_run(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    done = _run_harness(out)
    assert out.exists(), done.stdout[-5000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["fault"] for r in rows} == FAULTS, done.stdout
    for r in rows:
        where = f"{r['fault']}: {json.dumps(r)}\n{done.stdout}"
        assert r["answered"] > 500 and r["published"] >= r["answered"], where
        assert r["duplicates"] == 0, where
        assert r["extra"] == 0, where
        if r["fault"] == "redis-kill" and r["fsync"] == "everysec":
            continue  # may lose the last second's writes: measured, not judged
        assert r["lost"] == 0, where
        assert r["twice"] == 0, where
        assert r["missing"] == 0, where
    assert done.returncode == 0, done.stdout


# --- the counting, on made-up runs ----------------------------------------------------------


def _message(token: str) -> dict[str, Any]:
    return {"kind": "message", "text": f"fault {token}", "conversation_id": f"x:1:{token}"}


def _delivery(command_id: str, duplicate: bool = False) -> dict[str, Any]:
    return {"kind": "delivery", "command_id": command_id, "outcome": "sent", "reason": None,
            "duplicate": duplicate}  # fmt: skip


def _stub(*command_ids: str) -> Stub:
    stub = Stub("redis://127.0.0.1:1/0", ("a",))
    for c in command_ids:
        stub.written[c] = Written("x:1:y", 0.0)
    return stub


def test_count_finds_each_kind_of_failure() -> None:
    sent = [
        Sent("t1", "whatsapp", 0.0, False, 200, 0.1),
        Sent("t2", "telegram", 0.1, False, 200, 0.2),
        Sent("t3", "telegram", 0.2, False, 503, 0.3),  # refused: its absence is no loss
        Sent("t1", "whatsapp", 0.3, True, 200, 0.4),  # a redelivery
        Sent("t4", "whatsapp", 0.4, False, 200, 0.5),
    ]
    events = [
        _message("t1"), _message("t2"), _message("t2"),  # t2 twice, t4 never
        _delivery("c-t1"), _delivery("c-t1", duplicate=True),
        _delivery("c-t2"), _delivery("c-t2"),  # two first deliveries
    ]  # fmt: skip
    sends = {"graph": ["c-t1", "c-t1"], "bot": ["c-t2", None]}
    row = count(Row("x", "everysec"), sent, _stub("c-t1", "c-t2", "c-t9"), events, sends)
    assert (row.requests, row.refused, row.answered, row.published) == (5, 1, 3, 2)
    assert (row.lost, row.duplicates, row.twice, row.missing, row.extra) == (1, 1, 1, 1, 1)
    assert row.examples == {
        "lost": ["t4"], "duplicates": ["t2"], "twice": ["c-t1"], "missing": ["c-t9"],
        "extra": ["c-t2"],
    }  # fmt: skip
    assert row.verdict == "FAIL"


def test_clean_run_passes_and_redis_kill_under_everysec_is_measured() -> None:
    sent = [Sent("t1", "whatsapp", 0.0, False, 200, 0.1)]
    events = [_message("t1"), _delivery("c-t1")]
    sends = {"graph": ["c-t1"], "bot": []}
    row = count(Row("worker-kill", "everysec"), sent, _stub("c-t1"), events, sends)
    assert row.verdict == "PASS"
    lossy = count(Row("redis-kill", "everysec"), sent, _stub("c-t1"), [], sends)
    assert lossy.lost == 1 and lossy.verdict == "MEASURED"
    assert count(Row("redis-kill", "always"), sent, _stub("c-t1"), [], sends).verdict == "FAIL"


@given(st.text(alphabet="0123456789abcdef", min_size=1, max_size=20))
def test_token_round_trip(token: str) -> None:
    assert token_of({"text": f"fault {token}"}) == token


@given(st.one_of(st.none(), st.integers(), st.text()))
def test_token_only_from_harness_texts(text: object) -> None:
    found = token_of({"text": text})
    if found is not None:
        assert isinstance(text, str) and text.startswith("fault ")
