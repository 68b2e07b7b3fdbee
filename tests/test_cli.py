"""The real process: `gateway check-config`, `python -m gateway serve`, SIGTERM drain."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from adapters.whatsapp import sign
from gateway.config import read_env_file
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


def _embedded_config(tmp_path: Path, drain_s: int) -> tuple[Path, int]:
    """The shipped config.yaml on free ports, with its embedded Redis under tmp_path."""
    port, redis_port = free_port(), free_port()
    config = (ROOT / "config.yaml").read_text()
    config = config.replace("port: 8080", f"port: {port}").replace(
        "drain_seconds: 3", f"drain_seconds: {drain_s}"
    )
    config = config.replace("embedded_port: 6379", f"embedded_port: {redis_port}")
    config = config.replace("embedded_dir: .gateway-redis", f"embedded_dir: {tmp_path / 'redis'}")
    path = tmp_path / "config.yaml"
    path.write_text(config)
    return path, port


def test_serve_with_embedded_redis_then_sigterm_drains_and_exits_0(tmp_path: Path) -> None:
    path, port = _embedded_config(tmp_path, drain_s=1)
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


def _signed_webhook(port: int) -> int:
    """POST one message for the shipped config's number, signed with demo.env's secret."""
    body = json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": "15551234567",
                                    "phone_number_id": "106540352242922",
                                },
                                "messages": [
                                    {
                                        "from": "5511987650001",
                                        "id": f"wamid.cli.{time.time_ns()}",
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": "hi"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/whatsapp",
        data=body,
        headers={
            "X-Hub-Signature-256": sign(body, b"demo-app-secret-change-me"),
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_ctrl_c_drains_with_the_embedded_redis_still_up(tmp_path: Path) -> None:
    """Ctrl-C signals the whole foreground process group; the embedded Redis is in its own
    session, so webhooks taken during the drain are still published, not answered 503."""
    path, port = _embedded_config(tmp_path, drain_s=2)
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(path)]
    proc = subprocess.Popen(
        [*command, "--env-file", str(ROOT / "demo.env")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group of its own, like a terminal's job
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        assert _signed_webhook(port) == 200
        os.killpg(proc.pid, signal.SIGINT)
        _wait_for(f"http://127.0.0.1:{port}/readyz", 503, timeout_s=1)
        time.sleep(0.5)  # a Redis that got the SIGINT too has exited by now (drain is 2 s)
        assert _signed_webhook(port) == 200  # draining, and Redis still takes the events
        assert proc.wait(timeout=20) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_demo_secrets_on_a_public_address_exit_2_naming_the_key(tmp_path: Path) -> None:
    public = tmp_path / "public.yaml"
    public.write_text(
        (ROOT / "config.yaml").read_text().replace("host: 127.0.0.1", "host: 0.0.0.0")
    )
    result = run_cli("serve", "--config", str(public), "--env-file", "demo.env")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "whatsapp.app_secret: is a demo value from demo.env" in result.stderr


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_the_embedded_redis_password_is_in_no_log_and_no_command_line(tmp_path: Path) -> None:
    """With TCP opted in: the port asks for the password, which only its 600 file holds."""
    path, port = _embedded_config(tmp_path, drain_s=0)
    config = path.read_text().replace("embedded_tcp: false", "embedded_tcp: true")
    path.write_text(config)
    redis_port = int(config.split("embedded_port: ")[1].split()[0])
    command = [sys.executable, "-m", "gateway", "--log-level", "DEBUG", "serve"]
    proc = subprocess.Popen(
        [*command, "--config", str(path), "--env-file", str(ROOT / "demo.env")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        password_file = tmp_path / "redis" / "redis.pass"
        password = password_file.read_text().strip()
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        for pid in [proc.pid, *_children(proc.pid)]:
            assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        with socket.create_connection(("127.0.0.1", redis_port), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            assert conn.recv(64).startswith(b"-NOAUTH")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert b"started embedded redis-server at unix://" in stderr
    assert password.encode() not in stderr


def test_by_default_the_embedded_redis_takes_no_tcp(tmp_path: Path) -> None:
    path, port = _embedded_config(tmp_path, drain_s=0)
    redis_port = int(path.read_text().split("embedded_port: ")[1].split()[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
        cwd=ROOT,
        env={**os.environ, **read_env_file(ROOT / "demo.env")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/readyz", 200)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", redis_port), timeout=2).close()
        assert stat.S_IMODE((tmp_path / "redis").stat().st_mode) == 0o700
    finally:
        proc.terminate()
        proc.wait(timeout=20)
