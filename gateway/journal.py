"""The journal: webhooks of providers that never redeliver (Twilio), kept on local disk while
Redis cannot take them, and published from there, in order, once Redis answers again
(CONTRACT §6.1).

Why. Meta and Telegram retry a webhook answered 5xx, so while Redis is down the gateway
answers 503 and waits for the retry. Twilio retries once, on a failed connection only
(PLATFORM-MORE §5.2): a 503 loses the message. So such a webhook, once its signature holds,
is appended here with fsync and answered 200; nothing is answered 200 before it is on disk.

On disk. `server.journal_dir` holds one directory per process, a *slot* named by a number,
owned through an exclusive `flock` on its `lock` file (the kernel lets go of it when the
process dies, kill -9 included). A process takes the slot of its worker index (1 for a
single process), or the next free one, on its first append: a gateway that never needs the
journal leaves nothing on disk. A slot holds segments `<seq>.seg`, appended to in order and
sealed at `SEGMENT_BYTES`; each record is

    "GWJ1" | u32 payload length | u32 CRC-32 of length and payload | payload

all big-endian, the payload a msgpack `Record`: the adapter, the webhook's path key, its
receipt time and its raw body. Directories are 700 and files 600: bodies carry messages.

Appending (`append`). The event loop never waits for the disk: records go to one writing
thread, and records appended while a write is on its way go together in the next one, with
one fdatasync for all of them (group commit). A record's future is done once it is on disk.
A failed write (a full disk) is cut back off the segment, so no torn bytes stay in front of
later records; where even that fails, later records go to a new segment. `max_bytes` bounds
what one process keeps: past it, `JournalFull`.

Replay (`replay`, and `run` in the background: at start, then after each append with
backoff while Redis refuses, and every `SWEEP_S`). Oldest first: the segments of free slots
(their process is gone: a worker that died, the previous run of this one, a gateway that now
runs fewer workers), each taken with its lock and held until it is replayed (if this
process needs a home meanwhile, its preferred slot among them becomes it), then this
process's own, its open segment sealed first so appends go on in a new one. Each record goes
to `publish` (the same parse and publish as a live webhook: `Inbound.replay`), one at a
time, in order; a segment is deleted only once every record of it is published, and a
replay that fails goes on from that record next time. If the process dies in the middle, the
segment is read from its start again: the dedup marks (`router.dedup_ttl_seconds`, at least
48 h) make what was published already a no-op, so each event is published once. (A dead
letter, which has no mark, may be written twice then.)

Seen by operators (`report_to`): the bytes waiting here, this process's own and those of
the slots it took over, reported whenever they change (the gauge `gateway_journal_bytes`);
gateway/receive.py counts the webhooks kept, refused and replayed.

Damage. A record whose header, length or checksum does not hold ends what is read there. A
torn last record (the process or the machine died in the middle of a write) was never
acknowledged and is ignored. Damage with good records after it (the disk's) is skipped to the
next good record, logged, and the segment is kept as `<seq>.seg.damaged` for an operator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import re
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from router.outcome import RouterUnavailable

log = logging.getLogger("gateway.journal")

MAGIC: Final = b"GWJ1"
"""The start of every record; the format's version too."""
HEADER: Final = struct.Struct(">4sII")
"""Magic, payload length, CRC-32 of the length's four bytes and the payload."""
MAX_PAYLOAD_BYTES: Final = 128 * 1024 * 1024
"""Longer than any body the gateway reads (`server.max_body_bytes` is at most 64 MiB): a
length beyond it is damage, never a reason to read that far."""
SEGMENT_BYTES: Final = 4 * 1024 * 1024
"""A segment is sealed once it holds this much: replay reads one segment into memory, and
frees the bound segment by segment."""
LOCK_FILE: Final = "lock"
SEGMENT_SUFFIX: Final = ".seg"
DAMAGED_SUFFIX: Final = ".damaged"
FIRST_RETRY_S: Final = 0.25
"""After a failed replay the next try waits this long, doubling up to `retry_max_s`."""
SWEEP_S: Final = 30.0
"""An idle journal still looks this often for free slots left by processes that died."""
MAX_SLOTS: Final = 4096
"""Slots tried for a home past the preferred one before the journal gives up."""

_SEGMENT_NAME = re.compile(r"(\d{12})\.seg")
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class JournalError(Exception):
    """The journal cannot keep this webhook (its disk failed or is full)."""


class JournalFull(JournalError):
    """Keeping this webhook would take the journal past `server.journal_max_bytes`."""


class Record(msgspec.Struct, array_like=True, frozen=True):
    """One webhook as it came in, after its signature held."""

    channel: str
    """The adapter it came in by (`adapters.CHANNELS`)."""
    key: str | None
    """The account segment of its path, for keyed channels."""
    received_at: int
    """Its receipt time, unix seconds: replay publishes it as of then."""
    body: bytes


Publish = Callable[[Record], Awaitable[None]]
"""Publishes one journaled webhook; raises `RouterUnavailable` while Redis cannot take it."""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Record).decode


def frame(record: Record) -> bytes:
    """A record as it is written: header, then payload."""
    payload = _encode(record)
    return HEADER.pack(MAGIC, len(payload), _checksum(len(payload), payload)) + payload


def _checksum(length: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "big")))


# --- reading -------------------------------------------------------------------------------


@dataclass
class Read:
    """What was read from one segment."""

    records: list[tuple[Record, int]]
    """Each good record with the offset just past it."""
    torn: int = 0
    """Bytes of a torn last record, ignored."""
    damaged: int = 0
    """Bytes skipped between good records."""


def read_segment(data: bytes, start: int = 0) -> Read:
    """Every good record of a segment's bytes from `start` on (see "Damage" above)."""
    read = Read([])
    offset = start
    while offset < len(data):
        found = _record_at(data, offset)
        if found is not None:
            read.records.append(found)
            offset = found[1]
            continue
        following = _next_record(data, offset + 1)
        if following is None:
            read.torn = len(data) - offset
            break
        read.damaged += following - offset
        offset = following
    return read


def _record_at(data: bytes, offset: int) -> tuple[Record, int] | None:
    """The record that starts at `offset` and the offset past it, if it is whole and good."""
    if len(data) - offset < HEADER.size:
        return None
    magic, length, checksum = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    end = start + length
    if magic != MAGIC or length > MAX_PAYLOAD_BYTES or end > len(data):
        return None
    payload = memoryview(data)[start:end]
    if _checksum(length, payload) != checksum:
        return None
    try:
        return _decode(payload), end
    except msgspec.DecodeError:
        return None  # a good checksum over something that is no record: damage all the same


def _next_record(data: bytes, offset: int) -> int | None:
    """Where the next good record starts at or after `offset`, if any does."""
    while (offset := data.find(MAGIC, offset)) != -1:
        if _record_at(data, offset) is not None:
            return offset
        offset += 1
    return None


def _segments(slot: Path) -> dict[int, Path]:
    """A slot's segments by sequence number."""
    try:
        names = os.listdir(slot)
    except FileNotFoundError:
        return {}
    return {
        int(match.group(1)): slot / name
        for name in names
        if (match := _SEGMENT_NAME.fullmatch(name)) is not None
    }


def _fsync_dir(path: Path) -> None:
    """Make a file's creation, or its removal, in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _retire(path: Path, read: Read) -> None:
    """A segment every good record of which is published: deleted, or, if it was damaged,
    kept aside for an operator."""
    if read.torn:
        log.warning("journal: ignored a torn last record (%d bytes) in %s", read.torn, path)
    if read.damaged:
        kept = path.with_name(path.name + DAMAGED_SUFFIX)
        log.error(
            "journal: skipped %d damaged bytes in %s; its good records were published and "
            "the file is kept as %s",
            read.damaged,
            path,
            kept,
        )
        path.rename(kept)
    else:
        path.unlink()
    _fsync_dir(path.parent)


# --- slots ---------------------------------------------------------------------------------


class _Slot:
    """One slot directory, its lock held by this process until `release`."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd = lock_fd

    @classmethod
    def take(cls, path: Path) -> _Slot | None:
        """The slot at `path` (made if missing), or None while another process holds it."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the file lets go of its flock
            self._lock_fd = -1


class _Writer:
    """The segment being appended to; used on the journal's one writing thread only."""

    def __init__(self, slot: Path) -> None:
        self._slot = slot
        self._seq = -1
        self._fd = -1

    def write(self, seq: int, offset: int, data: bytes) -> None:
        """Append `data` to segment `seq`, which holds `offset` good bytes, and sync it.
        On failure the segment is cut back to `offset`; `_Torn` if even that failed."""
        if seq != self._seq:
            self._open(seq)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            _datasync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, offset)
            except OSError:
                raise _Torn(str(exc)) from exc
            raise

    def _open(self, seq: int) -> None:
        self.close()
        path = self._slot / f"{seq:012d}{SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._seq = seq
        _fsync_dir(self._slot)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._seq = -1, -1


class _Torn(OSError):
    """A write failed and its bytes could not be cut off: nothing more goes to that segment."""


# --- the journal ---------------------------------------------------------------------------


_Waiting = list[tuple[bytes, "asyncio.Future[None]"]]


class Journal:
    """This process's journal under `directory`; `slot` is the one it prefers (its worker
    index). Appends and replays run on one event loop."""

    def __init__(self, directory: Path, slot: int, max_bytes: int) -> None:
        self.directory = directory
        self._preferred = slot
        self._max_bytes = max_bytes
        self._home: _Slot | None = None
        self._writer: _Writer | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._seq = 1
        """The segment appends go to; every lower one of the home slot is sealed."""
        self._written: dict[int, int] = {}
        """The home slot's segments: bytes on disk in each."""
        self._bytes = 0
        """What the home slot holds, plus what is on its way there."""
        self._waiting: _Waiting = []
        self._flushing: asyncio.Future[None] | None = None
        self._flushing_seq = 0
        self._adopted: dict[Path, _Slot] = {}
        """Free slots taken over for replay, held until they are replayed."""
        self._replayed: dict[Path, int] = {}
        """Segments partly replayed by this process: the offset reached."""
        self._foreign: dict[Path, int] = {}
        """The segments of the adopted slots, not yet replayed: bytes in each."""
        self._report: Callable[[int], None] | None = None
        self._wake = asyncio.Event()

    @property
    def size(self) -> int:
        """Bytes this process keeps in its journal (its bound counts these)."""
        return self._bytes

    @property
    def waiting(self) -> int:
        """Bytes waiting to be published: this process's own (`size`) and those of the
        slots it took over from processes that are gone."""
        return self._bytes + sum(self._foreign.values())

    def report_to(self, report: Callable[[int], None]) -> None:
        """Call `report(waiting)` now and whenever `waiting` changes (the metrics' gauge)."""
        self._report = report
        report(self.waiting)

    def _changed(self) -> None:
        if self._report is not None:
            self._report(self.waiting)

    # --- appending -----------------------------------------------------------------------

    def append(self, record: Record) -> asyncio.Future[None]:
        """Keep `record`: the future is done once it is on disk (fsync'd), or fails with
        `JournalError`. Raises `JournalFull` past the bound, `JournalError` when the journal's
        directory cannot be used."""
        data = frame(record)
        if self._bytes + len(data) > self._max_bytes:
            raise JournalFull(f"{self._bytes} bytes kept, {self._max_bytes} allowed")
        if self._home is None:
            self._claim()
        future = asyncio.get_running_loop().create_future()
        self._bytes += len(data)
        self._changed()
        self._waiting.append((data, future))
        self._wake.set()
        if self._flushing is None:
            self._flush()
        return future

    def _claim(self) -> None:
        """Take a home slot: the preferred one, or the next free one. What an earlier
        process left in it is sealed, to be replayed before anything appended now."""
        try:
            for index in range(self._preferred, self._preferred + MAX_SLOTS):
                path = self.directory / str(index)
                # A slot this process took over for replay (the previous run of this
                # worker's, while Redis is still down) is as good as a free one.
                home = self._adopted.pop(path, None) or _Slot.take(path)
                if home is not None:
                    break
            else:
                raise JournalError(f"no free slot in {self.directory} from {self._preferred}")
            left = {seq: path.stat().st_size for seq, path in _segments(home.path).items()}
        except OSError as exc:
            raise JournalError(f"cannot use {self.directory}: {exc}") from exc
        self._home, self._writer = home, _Writer(home.path)
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="journal")
        self._written = left
        self._bytes += sum(left.values())
        for path in [p for p in self._foreign if p.parent == home.path]:
            del self._foreign[path]  # an adopted slot became the home: in `_bytes` now
        self._changed()
        self._seq = max(left, default=0) + 1
        log.info("journal: this process keeps webhooks in %s", home.path)

    def _flush(self) -> None:
        """Write what waits, in one write and one sync, on the writing thread."""
        assert self._writer is not None and self._thread is not None
        batch, self._waiting = self._waiting, []
        data = b"".join(data for data, _ in batch)
        if self._written.get(self._seq, 0) >= SEGMENT_BYTES:
            self._seq += 1
        seq, offset = self._seq, self._written.get(self._seq, 0)
        loop = asyncio.get_running_loop()
        self._flushing_seq = seq
        self._flushing = loop.run_in_executor(self._thread, self._writer.write, seq, offset, data)
        self._flushing.add_done_callback(lambda done: self._flushed(batch, seq, len(data), done))

    def _flushed(self, batch: _Waiting, seq: int, size: int, done: asyncio.Future[None]) -> None:
        self._flushing = None
        error = JournalError("write cancelled") if done.cancelled() else done.exception()
        if error is None:
            self._written[seq] = self._written.get(seq, 0) + size
        else:
            self._bytes -= size
            self._changed()
            if isinstance(error, _Torn) and seq == self._seq:
                self._seq += 1
            error = JournalError(f"write failed: {error}")
        for _, future in batch:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        if self._waiting:
            self._flush()

    # --- replaying -----------------------------------------------------------------------

    async def run(self, publish: Publish, retry_max_s: float) -> None:
        """Replay now, then whenever something is appended (and every `SWEEP_S`, for free
        slots), until cancelled; while Redis cannot take the records, try again with backoff."""
        delay = FIRST_RETRY_S
        while True:
            self._wake.clear()
            try:
                replayed = await self.replay(publish)
            except RouterUnavailable as exc:
                if delay == FIRST_RETRY_S:
                    log.warning(
                        "journal: redis does not take its webhooks yet (%s); trying again", exc
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max_s)
                continue
            except Exception:
                if delay == FIRST_RETRY_S:  # once per run of failures, not at every retry
                    log.exception("journal: replay failed; trying again with backoff")
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max_s)
                continue
            if replayed:
                log.info("journal: replayed %d webhooks; %d bytes kept", replayed, self._bytes)
            delay = FIRST_RETRY_S
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SWEEP_S):
                        await self._wake.wait()

    async def replay(self, publish: Publish) -> int:
        """Publish every record kept, oldest first (see the module docstring); the number
        published. Raises what `publish` raises; the next call goes on from that record."""
        count = 0
        self._adopt()
        for path in sorted(self._adopted, key=lambda p: int(p.name)):
            count += await self._replay_slot(path, publish)
            adopted = self._adopted.pop(path, None)  # None: it became this process's home
            if adopted is not None:
                adopted.release()
        while self._home is not None:
            sealed = [p for seq, p in sorted(_segments(self._home.path).items()) if seq < self._seq]
            if not sealed:
                if not self._written.get(self._seq) and self._flushing_now() != self._seq:
                    break
                self._seq += 1  # appends go on in a new segment
                sealed = [self._home.path / f"{self._seq - 1:012d}{SEGMENT_SUFFIX}"]
            await self._written_out()
            for path in sealed:
                count += await self._replay_segment(path, publish)
        return count

    def _flushing_now(self) -> int | None:
        return self._flushing_seq if self._flushing is not None else None

    async def _written_out(self) -> None:
        """Until the write on its way, if any, is done: a sealed segment is read only once
        nothing more goes to it. (`wait` does not cancel it if this task is cancelled.)"""
        if self._flushing is not None:
            await asyncio.wait((self._flushing,))

    def _adopt(self) -> None:
        """Take the free slots that hold segments (their process is gone); each stays
        locked by this process until its last segment is replayed."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        home = self._home.path if self._home is not None else None
        for name in names:
            path = self.directory / name
            if not name.isdigit() or path in (home, *self._adopted) or not _segments(path):
                continue
            slot = _Slot.take(path)
            if slot is not None:
                log.info("journal: replaying %s, which no running process holds", path)
                self._adopted[path] = slot
                for segment in _segments(path).values():
                    with contextlib.suppress(FileNotFoundError):
                        self._foreign[segment] = segment.stat().st_size
                self._changed()

    async def _replay_slot(self, slot: Path, publish: Publish) -> int:
        count = 0
        for _, path in sorted(_segments(slot).items()):
            count += await self._replay_segment(path, publish)
        return count

    async def _replay_segment(self, path: Path, publish: Publish) -> int:
        """Publish a sealed segment's records from where this process got to, then delete
        it (or keep it aside, if it was damaged)."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            if self._foreign.pop(path, None) is not None:
                self._changed()
            return 0  # a write that failed before any byte of it stayed
        read = await asyncio.to_thread(read_segment, data, self._replayed.get(path, 0))
        for record, end in read.records:
            await publish(record)
            self._replayed[path] = end
        await asyncio.to_thread(_retire, path, read)
        self._replayed.pop(path, None)
        self._foreign.pop(path, None)
        if self._home is not None and path.parent == self._home.path:
            self._bytes -= self._written.pop(int(path.name[: -len(SEGMENT_SUFFIX)]), 0)
        self._changed()
        return len(read.records)

    # --- closing -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Finish the writes on their way, then let the home slot go."""
        while self._flushing is not None:
            await asyncio.wait((self._flushing,))
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        if self._writer is not None:
            self._writer.close()
        for slot in [self._home, *self._adopted.values()]:
            if slot is not None:
                slot.release()
