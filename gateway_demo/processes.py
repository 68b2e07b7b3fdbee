"""The child processes of `gateway demo`: the gateway (`gateway serve`, which starts its own
embedded Redis) and the example assistant (examples/echo_assistant.py). Their output is read
line by line as it comes; secrets go to them in the environment, never in arguments (`ps`
shows those to every user)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp

TAIL = 20
"""Lines of a child's output kept for the message when something goes wrong."""


class DemoFailed(Exception):
    """A step of the story did not happen as it should: one line for the person watching."""


class Child:
    """One child process whose output lines are handed to `on_line` as they come."""

    def __init__(self, name: str, on_line: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.tail: deque[str] = deque(maxlen=TAIL)
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self._on_line = on_line
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self, argv: list[str], env: Mapping[str, str]) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )
        self._pump = asyncio.create_task(self._read(self._proc))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def said(self, words: str, timeout_s: float) -> str:
        """The next output line holding `words` (lines before it are skipped)."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self.lines.get()
                    if words in line:
                        return line
        except TimeoutError:
            raise DemoFailed(
                f"the {self.name} did not say {words!r} within {timeout_s:g} s"
            ) from None

    async def stop(self, timeout_s: float) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit status (None if never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._pump is not None:
            await self._pump
        return proc.returncode

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            self.lines.put_nowait(line)
            if self._on_line is not None:
                self._on_line(line)


def gateway_argv(config: Path) -> list[str]:
    # WARNING: the story tells what happens; the gateway's own lines show only when it warns.
    return [
        sys.executable,
        "-m",
        "gateway",
        "--log-level",
        "WARNING",
        "serve",
        "--config",
        str(config),
    ]


def assistant_argv(example: Path, assistant: str) -> list[str]:
    return [sys.executable, str(example), "--assistant", assistant]


async def wait_ready(gateway: Child, base_url: str, timeout_s: float) -> None:
    """Until `/readyz` answers 200: the listener is open and Redis answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        while loop.time() < deadline:
            if not gateway.running:
                raise DemoFailed("the gateway exited while starting")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{base_url}/readyz") as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise DemoFailed(f"the gateway was not ready within {timeout_s:g} s")


def find_example() -> Path:
    """examples/echo_assistant.py of the checkout the gateway runs from."""
    path = Path(__file__).resolve().parents[1] / "examples" / "echo_assistant.py"
    if not path.is_file():
        raise DemoFailed(
            f"{path} is missing: gateway demo runs the example assistant of a source checkout "
            "(the README's install, pip install -e .)"
        )
    return path
