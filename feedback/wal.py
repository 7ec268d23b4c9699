"""Find and cut a torn or corrupt tail off the event log's SQLite write-ahead log, before it is opened.

SQLite's own recovery already ignores every WAL frame after the last valid commit, but silently: an
operator never learns that a disk tore a write or that bytes went bad. `cut_torn_tail` reads the WAL as
SQLite's recovery does (https://www.sqlite.org/fileformat.html#the_write_ahead_log: a 32-byte header,
then frames of a 24-byte header and one page; each frame's salts must match the header's and its
cumulative checksum must hold; a frame with a non-zero "database size" commits), truncates the file to
the end of the last valid commit and says what it cut. What it keeps is exactly what SQLite would have
kept, so acknowledged events (committed before their ack) stay.

Frames of an earlier WAL generation (other salts) after the last commit are the normal leftovers of a
WAL that was restarted after a checkpoint, not damage: they are left alone and not reported.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = {0x377F0682: "<", 0x377F0683: ">"}  # the low bit says which byte order the checksums read in
HEADER = 32
FRAME_HEADER = 24
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class WalTail:
    size: int  # the file's length in bytes
    good: int  # where the last valid commit ends: what SQLite recovers
    commits: int  # valid commit frames
    problem: str  # why the bytes after ``good`` are damage; '' when there is none

    @property
    def damaged(self) -> bool:
        return bool(self.problem)


def checksum(data: bytes, order: str, s1: int = 0, s2: int = 0) -> tuple[int, int]:
    """SQLite's WAL checksum (walChecksumBytes): a Fletcher-like sum over pairs of 32-bit words."""
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & _MASK
        s2 = (s2 + words[i + 1] + s1) & _MASK
    return s1, s2


def inspect(data: bytes) -> WalTail:
    """Where the recoverable WAL ``data`` ends, and what (if anything) is wrong after that."""
    size = len(data)
    if size == 0:
        return WalTail(0, 0, 0, "")
    if size < HEADER:
        return WalTail(size, 0, 0, f"a torn header ({size} of {HEADER} bytes)")
    magic, _version, page_size, _ckpt, salt1, salt2, c1, c2 = struct.unpack(">8I", data[:HEADER])
    order = MAGIC.get(magic)
    if order is None or page_size < 512 or page_size & (page_size - 1):
        return WalTail(size, 0, 0, "an unreadable header")
    if checksum(data[:24], order) != (c1, c2):
        return WalTail(size, 0, 0, "a header checksum mismatch")
    frame = FRAME_HEADER + page_size
    sums, off, good, commits, index = (c1, c2), HEADER, HEADER, 0, 0
    while off + frame <= size:
        _page, db_size, fs1, fs2, fc1, fc2 = struct.unpack(">6I", data[off : off + FRAME_HEADER])
        if (fs1, fs2) != (salt1, salt2):
            if off == good:  # an earlier generation's frames: the normal end of a restarted WAL
                return WalTail(size, good, commits, "")
            return WalTail(size, good, commits, f"{index - _frame_index(good, frame)} uncommitted frames")
        sums = checksum(data[off : off + 8], order, *sums)
        sums = checksum(data[off + FRAME_HEADER : off + frame], order, *sums)
        if sums != (fc1, fc2):
            return WalTail(size, good, commits, f"a checksum mismatch in frame {index + 1}")
        off += frame
        index += 1
        if db_size:
            good, commits = off, commits + 1
    if off < size:
        return WalTail(size, good, commits, f"a partial frame of {size - off} bytes")
    if good < size:
        return WalTail(size, good, commits, f"{index - _frame_index(good, frame)} uncommitted frames")
    return WalTail(size, good, commits, "")


def _frame_index(offset: int, frame: int) -> int:
    return (offset - HEADER) // frame


def cut_torn_tail(wal: Path) -> WalTail | None:
    """Truncate ``wal`` to its last valid commit when what follows is damage; None when there is no WAL.
    Only with no other connection on the database (the caller holds the log's exclusive lock)."""
    try:
        data = Path(wal).read_bytes()
    except FileNotFoundError:
        return None
    tail = inspect(data)
    if tail.damaged:
        with open(wal, "r+b") as f:
            f.truncate(tail.good)
            f.flush()
            os.fsync(f.fileno())
    return tail
