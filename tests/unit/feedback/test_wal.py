"""A torn or corrupt tail of the SQLite event log's WAL is found, cut back to the last good commit and
logged; what SQLite would recover is kept, and a log another process has open is never touched.

Each case copies a live log's files while its writer still holds them (what a SIGKILL leaves), then
damages the copy's WAL the way a torn write or a bad disk would, and opens it again with real SQLite.
"""

from __future__ import annotations

import logging
import shutil
import struct
from pathlib import Path

import pytest

from feedback.events import Event, EventType
from feedback.sqlite_store import SqliteEventStore
from feedback.wal import FRAME_HEADER, HEADER, MAGIC, checksum, inspect

BATCHES = 3
PER_BATCH = 40


def event(i: int) -> Event:
    return Event(f"e{i}", "r1", "u1", item_id=i % 7, type=EventType.CLICK, position=1, timestamp_ms=i)


def crashed_log(tmp_path: Path) -> Path:
    """A log with BATCHES committed batches, copied as a killed writer leaves it (WAL not checkpointed)."""
    live = SqliteEventStore(tmp_path / "live" / "events.sqlite")
    for b in range(BATCHES):
        live.append([event(b * PER_BATCH + i) for i in range(PER_BATCH)])
    out = tmp_path / "crashed"
    out.mkdir()
    for name in ("events.sqlite", "events.sqlite-wal"):
        shutil.copy(tmp_path / "live" / name, out / name)
    live.close()
    return out / "events.sqlite"


def wal_of(db: Path) -> Path:
    return db.with_name(db.name + "-wal")


def frames(wal: bytes) -> tuple[int, str, int]:
    magic, _, page_size = struct.unpack(">3I", wal[:12])
    return page_size + FRAME_HEADER, MAGIC[magic], (len(wal) - HEADER) // (page_size + FRAME_HEADER)


def reopen_events(db: Path) -> int:
    store = SqliteEventStore(db)
    try:
        return store.stats().events
    finally:
        store.close()


def test_an_intact_crashed_log_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = crashed_log(tmp_path)
    before = wal_of(db).read_bytes()
    assert inspect(before).commits >= BATCHES and not inspect(before).damaged  # + the schema's commits
    with caplog.at_level(logging.WARNING):
        assert reopen_events(db) == BATCHES * PER_BATCH
    assert not [r for r in caplog.records if "cut" in r.getMessage()]


def test_a_torn_partial_frame_is_cut_and_logged_and_every_commit_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = crashed_log(tmp_path)
    good = wal_of(db).read_bytes()
    with open(wal_of(db), "ab") as f:
        f.write(b"\x37\x7f" + bytes(range(256)) * 3)  # a write the disk tore part way
    with caplog.at_level(logging.WARNING, logger="feedback.sqlite_store"):
        store = SqliteEventStore(db)
    try:
        assert wal_of(db).stat().st_size == len(good)  # cut back to the last commit's end
        assert store.stats().events == BATCHES * PER_BATCH
    finally:
        store.close()
    message = " ".join(r.getMessage() for r in caplog.records)
    assert f"cut {2 + 768} bytes" in message and "partial frame" in message


def test_a_corrupt_last_commit_is_cut_back_to_the_commit_before(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = crashed_log(tmp_path)
    wal = bytearray(wal_of(db).read_bytes())
    size, _, count = frames(bytes(wal))
    last_commit_start = HEADER + (count - 1) * size
    wal[last_commit_start + FRAME_HEADER + 100] ^= 0xFF  # one flipped bit-run in the last frame's page
    tail, intact = inspect(bytes(wal)), inspect(wal_of(db).read_bytes())
    assert tail.commits == intact.commits - 1 and "checksum mismatch" in tail.problem
    wal_of(db).write_bytes(bytes(wal))
    with caplog.at_level(logging.WARNING, logger="feedback.sqlite_store"):
        # The damaged commit is what SQLite itself would drop: the batches before it are all there.
        assert reopen_events(db) == (BATCHES - 1) * PER_BATCH
    assert "checksum mismatch" in " ".join(r.getMessage() for r in caplog.records)


def _append_frame(wal: bytes, *, commit: bool, salts: tuple[int, int] | None = None) -> bytes:
    """``wal`` plus a copy of its last frame, re-chained with valid checksums (or foreign salts)."""
    size, order, count = frames(wal)
    last = wal[HEADER + (count - 1) * size:]
    page, db_size, s1, s2, c1, c2 = struct.unpack(">6I", last[:FRAME_HEADER])
    head = struct.pack(">2I", page, db_size if commit else 0)
    sums = checksum(last[FRAME_HEADER:], order, *checksum(head, order, c1, c2))
    s1, s2 = salts or (s1, s2)
    return wal + head + struct.pack(">4I", s1, s2, *sums) + last[FRAME_HEADER:]


def test_uncommitted_frames_of_a_transaction_cut_short_are_cut(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    db = crashed_log(tmp_path)
    wal = _append_frame(wal_of(db).read_bytes(), commit=False)  # valid, but no commit ever followed
    assert "1 uncommitted frames" in inspect(wal).problem
    intact = inspect(wal_of(db).read_bytes()).commits
    assert inspect(_append_frame(wal_of(db).read_bytes(), commit=True)).commits == intact + 1  # control
    wal_of(db).write_bytes(wal)
    with caplog.at_level(logging.WARNING, logger="feedback.sqlite_store"):
        assert reopen_events(db) == BATCHES * PER_BATCH
    assert "uncommitted" in " ".join(r.getMessage() for r in caplog.records)


def test_frames_of_an_earlier_wal_generation_are_not_damage(tmp_path: Path) -> None:
    db = crashed_log(tmp_path)
    wal = _append_frame(wal_of(db).read_bytes(), commit=True, salts=(1, 2))
    tail, intact = inspect(wal), inspect(wal_of(db).read_bytes())
    assert not tail.damaged and tail.good == intact.size < len(wal) and tail.commits == intact.commits


def test_a_log_another_writer_has_open_is_never_cut(tmp_path: Path) -> None:
    live = SqliteEventStore(tmp_path / "events.sqlite")
    live.append([event(i) for i in range(10)])
    with open(wal_of(tmp_path / "events.sqlite"), "ab") as f:
        f.write(b"\0" * 100)  # looks like a torn tail, but the owner may be writing right there
    size = wal_of(tmp_path / "events.sqlite").stat().st_size
    second = SqliteEventStore(tmp_path / "events.sqlite")
    try:
        assert wal_of(tmp_path / "events.sqlite").stat().st_size == size
        assert second.stats().events == 10
    finally:
        second.close()
        live.close()
