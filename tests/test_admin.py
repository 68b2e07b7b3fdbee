"""`server.admin_port` (gateway/admin.py) and query values kept out of the access log
(gateway/accesslog.py), on the real process: `python -m gateway serve`, one process and two
workers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.accesslog import redact_target
from gateway.embedded import free_port
from tests.conftest import APP_SECRET, VERIFY_TOKEN, cluster_mode

ROOT = Path(__file__).parent.parent
SECRET_IN_QUERY = "SECRET-in-the-query-7f3a9c"

pytestmark = pytest.mark.skipif(cluster_mode(), reason="single Redis only")


def _status(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_for(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _status(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered 200")


class Gateway:
    """A `gateway serve` process on the test Redis; its stderr once stopped."""

    def __init__(self, tmp_path: Path, redis_url: str, server: str) -> None:
        self.port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            f"server: {{host: 127.0.0.1, port: {self.port}, drain_seconds: 0, {server}}}\n"
            f"redis: {{url: '{redis_url}'}}\n"
            "outbound: {enabled: false}\n"
            f"whatsapp: {{app_secret: {APP_SECRET}, verify_token: {VERIFY_TOKEN}, numbers: []}}\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def url(self, path: str, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port}{path}"

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        finally:
            self.proc.kill()
        return err.decode(errors="replace")


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    count: int = request.param
    return count


@pytest.fixture
def admin_gateway(tmp_path: Path, redis_url: str, workers: int) -> Iterator[tuple[Gateway, int]]:
    admin_port = free_port()
    gateway = Gateway(tmp_path, redis_url, f"admin_port: {admin_port}, workers: {workers}")
    try:
        _wait_for(gateway.url("/healthz", admin_port))
        _wait_for(gateway.url("/readyz"))
        yield gateway, admin_port
    finally:
        gateway.stop()


def test_metrics_move_to_the_admin_port_and_probes_answer_on_both(
    admin_gateway: tuple[Gateway, int],
) -> None:
    gateway, admin_port = admin_gateway
    assert _status(gateway.url("/metrics"))[0] == 404  # not on the public port
    status, body = _status(gateway.url("/metrics", admin_port))
    assert status == 200 and b"gateway_draining" in body
    for path in ("/readyz", "/healthz"):  # load balancers probe the port they send to
        assert _status(gateway.url(path))[0] == 200
        assert _status(gateway.url(path, admin_port))[0] == 200
    # No webhooks on the admin port.
    assert _status(gateway.url("/webhooks/whatsapp", admin_port))[0] == 404
    posted = _status(gateway.url("/webhooks/whatsapp", admin_port), "POST", b"{}")
    assert posted[0] == 404


def test_without_an_admin_port_everything_stays_on_the_public_port(
    tmp_path: Path, redis_url: str
) -> None:
    gateway = Gateway(tmp_path, redis_url, "workers: 1")
    try:
        _wait_for(gateway.url("/readyz"))
        assert _status(gateway.url("/metrics"))[0] == 200
    finally:
        gateway.stop()


def test_a_taken_admin_port_exits_2_naming_it(tmp_path: Path, redis_url: str, workers: int) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin_port = taken.getsockname()[1]
        gateway = Gateway(tmp_path, redis_url, f"admin_port: {admin_port}, workers: {workers}")
        code = gateway.proc.wait(timeout=30)
        err = gateway.stop()
    assert code == 2 or (workers > 1 and code == 1)
    assert "server.admin_port: cannot listen on" in err and "Traceback" not in err


@pytest.mark.parametrize("fast_path", [True, False])
def test_query_values_never_reach_the_access_log(
    tmp_path: Path, redis_url: str, fast_path: bool
) -> None:
    server = f"access_log: true, fast_path: {str(fast_path).lower()}"
    gateway = Gateway(tmp_path, redis_url, server)
    try:
        _wait_for(gateway.url("/readyz"))
        query = f"hub.mode=subscribe&hub.verify_token={SECRET_IN_QUERY}&hub.challenge=42"
        assert _status(gateway.url(f"/webhooks/whatsapp?{query}"))[0] == 403
        query = f"hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=42"
        assert _status(gateway.url(f"/webhooks/whatsapp?{query}")) == (200, b"42")
        # A webhook POST with a query string (the fast path's own access-log line).
        posted = _status(gateway.url(f"/webhooks/whatsapp?t={SECRET_IN_QUERY}"), "POST", b"{}")
        assert posted[0] == 401
    finally:
        err = gateway.stop()
    assert "GET /webhooks/whatsapp?hub.mode=REDACTED&hub.verify_token=REDACTED" in err
    assert "POST /webhooks/whatsapp?t=REDACTED" in err
    assert SECRET_IN_QUERY not in err and VERIFY_TOKEN not in err


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/webhooks/whatsapp", "/webhooks/whatsapp"),
        ("/readyz?", "/readyz?"),
        (
            "/w?hub.verify_token=abc&hub.challenge=1",
            "/w?hub.verify_token=REDACTED&hub.challenge=REDACTED",
        ),
        ("/w?flag&x=a=b", "/w?flag=REDACTED&x=REDACTED"),
        # the media endpoint's path names a contact (its conversation id)
        ("/v1/media/whatsapp:1065:5511987650000/9988", "/v1/media/REDACTED"),
        ("/v1/media/telegram:7:42/AgAC?url=https://x", "/v1/media/REDACTED?url=REDACTED"),
    ],
)
def test_targets_keep_query_names_and_lose_values(target: str, logged: str) -> None:
    assert redact_target(target) == logged
