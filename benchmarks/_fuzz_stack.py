"""The gateway the fuzzer runs against: a throwaway redis-server and `gateway serve` on
127.0.0.1, configured with the accounts of tests/conftest.py's TEST_CONFIG (those the corpus
names), and the watch for crashes (the process or a worker died, the port stopped answering).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from _fuzz_bodies import REPO_ROOT  # noqa: F401  (puts the repository on sys.path)
from _procs import (
    GATEWAY_COMMAND,
    HOST,
    Service,
    free_port,
    gateway,
    get_request,
    http_status,
    process_tree,
    redis_server,
    redis_socket_url,
    rss_by_process,
    rss_bytes,
    wait_for_log,
)

from tests.conftest import TEST_CONFIG

NOWHERE = "http://127.0.0.1:9"
READY_TIMEOUT_S = 60.0
HEAD_TIMEOUT_S = 5.0
"""`server.head_timeout_seconds` / `body_timeout_seconds` of the fuzzed gateway: shorter than
the defaults so connections a case leaves half-sent are cut within the run."""
_EXITED = re.compile(r"worker \d+ \(pid \d+\) exited with")


@dataclass
class Stack:
    gateway: Service
    redis_url: str
    port: int
    workers: int

    def rss(self) -> int:
        return rss_bytes(self.gateway.pid) or 0

    def rss_by_process(self) -> dict[str, int]:
        """`rss`, by process: main, worker N, worker N child (the large-webhook process)."""
        return rss_by_process(self.gateway.pid, supervisor=self.workers > 1)

    def processes(self) -> list[int]:
        """The gateway's processes: itself, its workers, their helper processes."""
        return process_tree(self.gateway.pid)

    def crashes(self) -> list[str]:
        """What died so far: the gateway process, or workers the supervisor restarted."""
        found = []
        proc = self.gateway.proc
        if proc is not None and proc.poll() is not None:
            found.append(f"gateway exited with code {proc.returncode}")
        found += _EXITED.findall(self.log())
        return found

    def answers(self) -> bool:
        """The port still answers /healthz within 2 s."""
        return http_status(HOST, self.port, get_request(HOST, self.port, "/healthz"), 2.0) == 200

    def tracebacks(self) -> list[str]:
        """The log line before each traceback the gateway logged (a handler that raised)."""
        lines = self.log().splitlines()
        return [lines[i - 1][:200] for i, line in enumerate(lines) if line.startswith("Traceback")]

    def log(self) -> str:
        path = self.gateway.stderr_path
        return path.read_text("utf-8", "replace") if path and path.exists() else ""


def config_files(work: Path, port: int, redis_url: str, workers: int) -> tuple[Path, Path]:
    """config.yaml (TEST_CONFIG with this run's server section) and its env file."""
    config = yaml.safe_load(TEST_CONFIG)
    config["server"] = {"host": HOST, "port": port, "workers": workers,
                        "head_timeout_seconds": HEAD_TIMEOUT_S,
                        "body_timeout_seconds": HEAD_TIMEOUT_S,
                        "journal_dir": str(work / "journal")}  # fmt: skip
    env = {"REDIS_URL": redis_url, "REDIS_CLUSTER": "false", "GRAPH_URL": NOWHERE + "/v21.0",
           "BOT_URL": NOWHERE, "META_URL": NOWHERE, "IG_URL": NOWHERE, "TWILIO_API": NOWHERE,
           "SEND_WAIT_MAX": "60", "CLAIM_IDLE": "30", "OUTBOUND_ENABLED": "true",
           "TAKEOVER": "900"}  # fmt: skip
    config_path, env_path = work / "config.yaml", work / "fuzz.env"
    config_path.write_text(yaml.safe_dump(config))
    env_path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return config_path, env_path


@contextlib.contextmanager
def stack(work: Path, workers: int) -> Iterator[Stack]:
    with contextlib.ExitStack() as stack_:
        redis = stack_.enter_context(redis_server(work))
        redis_url = redis_socket_url(work)
        port = free_port()
        config, env = config_files(work, port, redis_url, workers)
        command = f"{GATEWAY_COMMAND} --env-file {env} --workers {workers}"
        service = stack_.enter_context(gateway(command, config, port, work, READY_TIMEOUT_S))
        if workers > 1:
            wait_for_log(service, f"with {workers} workers", READY_TIMEOUT_S)
        del redis
        yield Stack(service, redis_url, port, workers)
