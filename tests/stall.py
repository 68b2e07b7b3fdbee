"""Stalling the test's own redis-server: SIGSTOP now, SIGCONT a set time later; and
stalling the test's own event loop (`loop_stall`).

A stopped process is what a busy Redis looks like from outside: it reads nothing and
answers nothing (new connections wait in the kernel's backlog), and once it runs again it
executes everything it was sent meanwhile, even for clients that have hung up since. The
tests had that from the DEBUG command (its SLEEP), which Redis 7 refuses unless started with
enable-debug-command. CLIENT PAUSE would not do: a paused client that hangs up has its
command dropped, not run (tests/test_scriptpipe.py relies on it being run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis


@contextlib.asynccontextmanager
async def redis_stalled(url: str, seconds: float) -> AsyncIterator[None]:
    """The redis-server at `url` stopped for `seconds` from entry, while the block runs:
    calls made in it get no answer within a shorter timeout. A thread of its own resumes
    Redis on time, whatever the block awaits. Leaves once Redis runs again (at once if the
    block raises).

    Only a redis-server this test process started is stopped (the session's, or a test's
    own); against another one (`GATEWAY_TEST_REDIS_URL`) the test is skipped."""
    admin = Redis.from_url(url)
    try:
        pid = int((await admin.info("server"))["process_id"])
    finally:
        await admin.aclose()
    if _stat(pid)[1] != os.getpid():
        pytest.skip(f"stalls Redis with SIGSTOP: needs a redis-server the tests started, not {url}")
    resume = threading.Timer(seconds, os.kill, (pid, signal.SIGCONT))
    try:
        _stop(pid)
        resume.start()
        yield
        await asyncio.to_thread(resume.join)
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)


def _stop(pid: int) -> None:
    """SIGSTOP, then wait until the process is stopped (the signal is delivered
    asynchronously: a few microseconds)."""
    os.kill(pid, signal.SIGSTOP)
    while _stat(pid)[0] != "T":
        time.sleep(0.0001)


def _stat(pid: int) -> tuple[str, int]:
    """A process's state letter and its parent's pid, from /proc/<pid>/stat (proc(5))."""
    text = Path(f"/proc/{pid}/stat").read_text()
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


@contextlib.contextmanager
def loop_stall(seconds: float) -> Iterator[Callable[[], None]]:
    """A trigger: once called, the running event loop's next poll runs an I/O callback that
    holds the loop `seconds` (as a long callback does, or a process the machine gives no
    CPU). Replies that come meanwhile wait unread; uvloop then runs its due timers first."""
    loop = asyncio.get_running_loop()
    stall_in, stall_out = socket.socketpair()
    stall_in.setblocking(False)

    def stall() -> None:
        stall_in.recv(16)
        time.sleep(seconds)

    def trigger() -> None:
        stall_out.send(b"x")

    loop.add_reader(stall_in, stall)
    try:
        yield trigger
    finally:
        loop.remove_reader(stall_in)
        stall_in.close()
        stall_out.close()
