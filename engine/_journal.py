"""A process's crash journal for the ledger: records appended to a memory-mapped file, so an append is a
memory copy (no system call on the request path), and what was copied survives the process being killed:
the pages belong to the file, in the OS page cache. Not fsynced: a power loss can lose what the kernel had
not written back yet.

Layout: ``<dir>/<owner>.<generation>.jrn`` segments, each a sequence of ``[u32 little-endian length]
[payload]`` records ended by a zero length. An append copies the payload, then a zero length after it, then its own
length, so a record cut short by a kill reads as the end. Two segments take turns (the writer drains one
while requests fill the other), so appends land on pages already mapped in: a fresh page costs a fault,
tens of microseconds on some VMs. ``<owner>.lock`` is flock-held while the owner lives: a journal whose
lock can be taken belongs to a dead process.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import mmap
import os
from pathlib import Path

SEGMENT_BYTES = 8 << 20  # sparse: only the pages written take memory or disk
_LEN = 4
_ZERO = bytes(_LEN)


class Segment:
    """One mapped journal file."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)  # the mapping keeps the file
        self.size, self.pos = size, 0

    def append(self, payload: bytes) -> bool:
        """Copy one record in; False when it does not fit."""
        end = self.pos + _LEN + len(payload)
        if end + _LEN > self.size:  # keep room for the zero length that ends the segment
            return False
        mm = self.mm
        mm[self.pos + _LEN:end] = payload
        mm[end:end + _LEN] = _ZERO  # the end mark, before this record's length makes it visible
        mm[self.pos:self.pos + _LEN] = len(payload).to_bytes(_LEN, "little")
        self.pos = end
        return True

    def reset(self) -> None:
        """Empty it for reuse, once its records have landed (older records behind the new end mark are
        never read: replay stops at the first zero length)."""
        self.mm[0:_LEN] = _ZERO
        self.pos = 0

    def drop(self) -> None:
        """Unmap and delete: every record in it has landed in SQLite."""
        self.mm.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        self.mm.close()


class Journal:
    """The live journal of one owner. ``append`` runs under the ledger's lock; ``prepare`` (off that lock)
    and ``swap`` (under it) let the writer start a new segment without the request path creating files."""

    def __init__(self, directory: Path, owner: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.owner = directory, owner
        self._lock_fd = os.open(directory / f"{owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._gen = itertools.count()
        self.current = self.prepare()
        self._spare: Segment | None = None  # the writer's: the segment drained last, emptied

    def prepare(self, size: int = SEGMENT_BYTES) -> Segment:
        return Segment(self.dir / f"{self.owner}.{next(self._gen):012d}.jrn", size)

    def append(self, payload: bytes) -> Segment | None:
        """Append a record; the segment it filled up, when it had to start another (rare: the writer
        starts a fresh one at every flush)."""
        if self.current.append(payload):
            return None
        full, self.current = self.current, self.prepare(max(SEGMENT_BYTES, 2 * (len(payload) + 2 * _LEN)))
        self.current.append(payload)
        return full

    def swap(self, fresh: Segment) -> Segment:
        old, self.current = self.current, fresh
        return old

    def next_segment(self) -> Segment:
        """The writer's: the spare segment, else a new one (off the request path's lock)."""
        seg, self._spare = self._spare, None
        return seg if seg is not None else self.prepare()

    def recycle(self, seg: Segment) -> None:
        """The writer's: ``seg``'s records are in SQLite; keep it as the spare, or delete it."""
        if self._spare is None and seg.size == SEGMENT_BYTES:
            seg.reset()
            self._spare = seg
        else:
            seg.drop()

    def close(self, *, drop: bool) -> None:
        """Release the owner's lock; with ``drop`` the current segment goes too (all its rows landed)."""
        if self._spare is not None:
            self._spare.drop()
        if drop:
            self.current.drop()
        else:
            self.current.close()
        with contextlib.suppress(FileNotFoundError):
            if drop:
                os.unlink(self.dir / f"{self.owner}.lock")
        os.close(self._lock_fd)


def read_records(path: Path) -> list[bytes]:
    """The complete records of one segment file (nothing when it is gone already)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out, pos = [], 0
    while pos + _LEN <= len(data):
        n = int.from_bytes(data[pos:pos + _LEN], "little")
        if n == 0 or pos + _LEN + n > len(data):
            break
        out.append(data[pos + _LEN:pos + _LEN + n])
        pos += _LEN + n
    return out


def dead_owners(directory: Path) -> list[tuple[str, list[Path], int]]:
    """(owner, its segments in order, the fd holding its lock) for every owner that is not alive; the
    caller replays the segments, then calls :func:`release`."""
    if not directory.is_dir():
        return []
    segments: dict[str, list[Path]] = {}
    for p in directory.glob("*.jrn"):
        segments.setdefault(p.name.split(".", 1)[0], []).append(p)
    out = []
    for owner in set(segments) | {p.stem for p in directory.glob("*.lock")}:
        try:
            fd = os.open(directory / f"{owner}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # alive: its own writer lands its rows
            continue
        out.append((owner, sorted(segments.get(owner, [])), fd))
    return out


def release(directory: Path, owner: str, segments: list[Path], fd: int) -> None:
    """After a dead owner's rows were replayed: delete its segments and lock."""
    for p in segments:
        p.unlink(missing_ok=True)
    (directory / f"{owner}.lock").unlink(missing_ok=True)
    os.close(fd)
