"""The real process: `gateway check-config`, `python -m gateway serve`, SIGTERM drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from gateway.embedded import free_port

ROOT = Path(__file__).parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_check_config_accepts_the_shipped_config() -> None:
    result = run_cli("check-config", "--config", "config.yaml", "--env-file", "demo.env")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_bad_config_exits_2_naming_the_key_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "whatsapp: {app_secret: x, verify_token: y, numbers: []}\nserver: {port: nope}\n"
    )
    result = run_cli("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "server.port" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("serve", "--config", "config.yaml")
    assert missing.returncode == 2 and "WHATSAPP_APP_SECRET" in missing.stderr


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_for(url: str, want: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if _status(url) == want:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {want}")


def test_serve_with_embedded_redis_then_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    port, redis_port = free_port(), free_port()
    config = (ROOT / "config.yaml").read_text()
    config = config.replace("port: 8080", f"port: {port}").replace(
        "drain_seconds: 3", "drain_seconds: 1"
    )
    config = config.replace("embedded_port: 6379", f"embedded_port: {redis_port}")
    config = config.replace("embedded_dir: .gateway-redis", f"embedded_dir: {tmp_path / 'redis'}")
    path = tmp_path / "config.yaml"
    path.write_text(config)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(path),
            "--env-file",
            str(ROOT / "demo.env"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            _wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.communicate()[1].decode()[-2000:]) from None
        assert _status(f"http://127.0.0.1:{port}/healthz") == 200
        proc.send_signal(signal.SIGTERM)
        _wait_for(f"http://127.0.0.1:{port}/readyz", 503, timeout_s=1)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "redis").is_dir()  # the embedded server kept its append-only file there
