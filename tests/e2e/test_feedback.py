"""Feedback over the real server: durable acks across SIGKILL, idempotent replays, field-naming errors,
and personal rankings (with explanations that add up) that are never shared through the cache."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import grpc
import pytest

from protos.ranking.v1 import ranking_pb2
from tests.conftest import Artifacts, rankserve_bin
from tests.e2e.test_server import Running, rank, start_server, stop_server

# The torch engine on CPU: these tests are about the feedback path, and skip Triton's start-up.
ENGINE = {"RANKSERVE_RERANKER_ENGINE": "torch", "RANKSERVE_TORCH_DEVICE": "cpu",
          "RANKSERVE_TORCH_PRECISION": "fp32"}
# A fixed personal weight: with the bandit on, a list may draw weight 0 (the bandit's no-personalisation
# arm), and a test asserting a personal ranking would depend on the draw. No exploration either: 5% of
# personalised lists serve their top ten shuffled (by the request id's hash), which would make a test
# asserting the personal order fail one time in twenty.
FIXED = {"RANKSERVE_BANDIT": "false", "RANKSERVE_EXPLORE_SHARE": "0"}


def events(prefix: str, n: int, *, user: str = "u1", items: list[int] | None = None,
           type_: int = ranking_pb2.EVENT_TYPE_CLICK) -> list[ranking_pb2.FeedbackEvent]:
    items = items or [i % 50 for i in range(n)]
    return [ranking_pb2.FeedbackEvent(event_id=f"{prefix}-{i}", request_id="r", user_id=user,
                                      item_id=items[i % len(items)], type=type_, position=i % 10 + 1)
            for i in range(n)]


def stats(state_dir: Path) -> dict:
    out = subprocess.run([rankserve_bin(), "feedback", "stats", "--state-dir", str(state_dir), "--json"],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def serve(artifacts: Artifacts, tmp: Path, state: Path) -> Running:
    return start_server(artifacts, tmp, RANKSERVE_STATE_DIR=str(state), **ENGINE)


def test_acknowledged_events_survive_sigkill_and_a_torn_tail_exactly_once(artifacts: Artifacts,
                                                                         tmp_path: Path) -> None:
    state = tmp_path / "state"
    running = serve(artifacts, tmp_path, state)
    try:
        first = running.stub.Feedback(iter(events("a", 1000)), timeout=60)
        assert (first.accepted, first.duplicates, first.rejected) == (1000, 0, 0)
        second = running.stub.Feedback(
            iter(events("b", 300, user="u2", type_=ranking_pb2.EVENT_TYPE_PURCHASE)), timeout=60)
        assert second.accepted == 300
    finally:
        running.channel.close()
        os.killpg(running.proc.pid, signal.SIGKILL)  # no shutdown path runs: only commits count
        running.proc.wait(10)
    with open(state / "events.sqlite-wal", "ab") as f:
        f.write(b"\x37\x7f\x06\x82" + b"torn" * 300)  # the start of a write the crash tore
    running = serve(artifacts, tmp_path, state)
    try:
        assert "cut 1204 bytes after the last good commit (a partial frame" in running.log_tail()
        replay = running.stub.Feedback(iter(events("a", 1000)), timeout=60)
        assert (replay.accepted, replay.duplicates) == (0, 1000)
        # The restarted server rebuilt u2's profile from the log (the bandit picks its weight, which
        # may be 0, so the version is what shows it) and exported the bandit's posterior: the prior.
        assert running.metric("rankserve_bandit_interaction_rate", 'context="2",weight="1"') == 0.5
        _, _, summary = rank(running.stub, "velvet sofa", user=ranking_pb2.UserContext(user_id="u2"))
        assert summary.profile_version == 300
    finally:
        assert stop_server(running) == 0, running.log_tail()
    assert stats(state) == {"events": 1300, "by_type": {"CLICK": 1000, "PURCHASE": 300}, "users": 2,
                            "duplicates": 1000}


@pytest.fixture(scope="module")
def server(artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("feedback")
    # One profile held: every other user searching is read back from the log.
    running = start_server(artifacts, tmp, RANKSERVE_STATE_DIR=str(tmp / "state"),
                           RANKSERVE_PROFILE_CACHE_USERS="1", **ENGINE, **FIXED)
    yield running
    assert stop_server(running) == 0, running.log_tail()


def test_a_bad_event_names_its_field_and_keeps_what_came_before(server: Running) -> None:
    unknown_item = ranking_pb2.FeedbackEvent(event_id="bad-x", item_id=10**9,
                                             type=ranking_pb2.EVENT_TYPE_CLICK)
    stream = [*events("bad", 5), unknown_item]
    with pytest.raises(grpc.RpcError) as info:
        server.stub.Feedback(iter(stream), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("item_id: unknown item 1000000000 (event 6 of the stream")
    assert "5 new" in info.value.details()
    again = server.stub.Feedback(iter(events("bad", 5)), timeout=30)
    assert (again.accepted, again.duplicates) == (0, 5)  # the five before it were committed
    for bad, field in [({"event_id": ""}, "event_id"), ({"type": 0}, "type")]:
        event = ranking_pb2.FeedbackEvent(event_id="x1", item_id=1, type=ranking_pb2.EVENT_TYPE_CLICK)
        for k, v in bad.items():
            setattr(event, k, v)
        with pytest.raises(grpc.RpcError) as info:
            server.stub.Feedback(iter([event]), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(f"{field}: ")


def test_personal_ranking_follows_clicks_and_is_never_shared(server: Running) -> None:
    query = "sofa"
    _, base_items, base = rank(server.stub, query, k=10)
    assert not base.personalized
    # A user who keeps buying what the anonymous ranking puts last.
    liked = [it.item_id for it in base_items[-3:]]
    ack = server.stub.Feedback(
        iter(events("p", 30, user="fan", items=liked, type_=ranking_pb2.EVENT_TYPE_PURCHASE)), timeout=30)
    assert ack.accepted == 30
    _, items, summary = rank(server.stub, query, k=10, user=ranking_pb2.UserContext(user_id="fan"))
    assert summary.personalized and summary.profile_version == 30 and not summary.cache_hit
    assert not summary.explored

    def mean_rank(its: list) -> float:  # a liked item pushed out of the ten counts as rank 10
        ids = [it.item_id for it in its]
        return sum(ids.index(i) if i in ids else 10 for i in liked) / len(liked)

    assert mean_rank(items) < mean_rank(base_items)
    cli = subprocess.run([rankserve_bin(), "query", query, "--user", "fan",
                          "--target", f"127.0.0.1:{server.port}"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert cli.returncode == 0 and "personalised (profile v30)" in cli.stdout, cli.stdout + cli.stderr
    for it in items:
        parts = {c.name: c.value for c in it.explanation}
        assert set(parts) == {"relevance", "personal", "redundancy"}
        assert sum(parts.values()) == pytest.approx(it.score, abs=1e-4)
    # The anonymous ranking is unchanged and still cached; an unknown user gets it too.
    _, again, summary = rank(server.stub, query, k=10)
    assert summary.cache_hit and [it.item_id for it in again] == [it.item_id for it in base_items]
    _, stranger, summary = rank(server.stub, query, k=10, user=ranking_pb2.UserContext(user_id="nobody"))
    assert not summary.personalized
    assert [it.item_id for it in stranger] == [it.item_id for it in base_items]
    assert all({c.name for c in it.explanation} == {"relevance", "redundancy"} for it in stranger)
    assert server.metric("rankserve_feedback_events_total", 'outcome="accepted",type="PURCHASE"') >= 30
    # CTR by the arm a list was served under: four impressions and one click of an anonymous list.
    shown = [ranking_pb2.FeedbackEvent(event_id=f"anon-{i}", request_id="anon", item_id=i,
                                       type=ranking_pb2.EVENT_TYPE_IMPRESSION, position=i + 1)
             for i in range(4)]
    clicked = ranking_pb2.FeedbackEvent(event_id="anon-c", request_id="anon", item_id=2,
                                        type=ranking_pb2.EVENT_TYPE_CLICK, position=3)
    assert server.stub.Feedback(iter([*shown, clicked]), timeout=30).accepted == 5
    assert server.metric("rankserve_ctr", 'arm="unpersonalised"') == 0.25


def test_a_list_counts_for_the_policy_once_and_only_once_it_is_ranked(server: Running) -> None:
    assert server.stub.Feedback(iter(events("once", 5, user="once")), timeout=30).accepted == 5
    user = ranking_pb2.UserContext(user_id="once")
    with pytest.raises(grpc.RpcError) as info:  # never ranked: no trial, nothing logged
        rank(server.stub, "sofa", user=user, request_id="refused", category="no such category")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(2):  # a client's retry of the same request: served and counted as the first
        assert rank(server.stub, "sofa", user=user, request_id="retried")[2].personalized
    server.stub.Feedback(iter(events("once-flush", 1, user="once")), timeout=30)  # decisions ride a commit
    log = server.log.parent / "state" / "events.sqlite"
    with closing(sqlite3.connect(f"file:{log}?mode=ro", uri=True)) as db:
        decided = db.execute("SELECT request_id FROM decisions WHERE user_id = 'once'").fetchall()
    assert decided == [("retried",)]


def test_profiles_not_held_are_read_back_from_the_log_with_every_event(server: Running) -> None:
    def version(user: str) -> int:
        return rank(server.stub, "sofa", user=ranking_pb2.UserContext(user_id=user))[2].profile_version

    reads = server.metric("rankserve_profile_reads")
    assert server.stub.Feedback(iter(events("lru-a", 20, user="lru-a")), timeout=30).accepted == 20
    assert server.stub.Feedback(iter(events("lru-b", 7, user="lru-b")), timeout=30).accepted == 7
    assert version("lru-a") == 20 and version("lru-b") == 7  # read, then "lru-a" dropped for "lru-b"
    # Events for a user not held are committed, not applied: the log has them for the next read.
    assert server.stub.Feedback(iter(events("lru-a2", 5, user="lru-a")), timeout=30).accepted == 5
    assert version("lru-a") == 25 and version("lru-a") == 25  # read back once, then held
    assert server.metric("rankserve_profile_reads") == reads + 3
    assert server.metric("rankserve_profiles_held") == 1


def test_a_postgres_dsn_puts_the_log_in_a_shared_database(artifacts: Artifacts, tmp_path: Path) -> None:
    from tests.postgres import postgres_server

    with postgres_server() as dsn:
        env = {"RANKSERVE_FEEDBACK_DSN": dsn, "RANKSERVE_FEEDBACK_FOLLOW_S": "0.2", **ENGINE, **FIXED}
        running = start_server(artifacts, tmp_path, **env)
        other = None
        try:
            ack = running.stub.Feedback(iter(events("pg", 120, user="pg-user")), timeout=60)
            assert (ack.accepted, ack.duplicates) == (120, 0)
            user = ranking_pb2.UserContext(user_id="pg-user")
            _, _, summary = rank(running.stub, "sofa", user=user)
            assert summary.personalized and summary.profile_version == 120  # held from now on
            # A second replica on the same log takes the user's next clicks (a round-robin gateway): the
            # first learns them from the log, not only at its next start.
            (tmp_path / "other").mkdir()
            other = start_server(artifacts, tmp_path / "other", **env)
            assert other.stub.Feedback(iter(events("pg-b", 5, user="pg-user")), timeout=60).accepted == 5
            deadline = time.monotonic() + 30
            while (version := rank(running.stub, "sofa", user=user)[2].profile_version) != 125:
                assert version == 120 and time.monotonic() < deadline, version
                time.sleep(0.1)
        finally:
            assert stop_server(running) == 0, running.log_tail()
            if other is not None:
                assert stop_server(other) == 0, other.log_tail()
        out = subprocess.run([rankserve_bin(), "feedback", "stats", "--dsn", dsn, "--json"],
                             capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(out.stdout) == {"events": 125, "by_type": {"CLICK": 125}, "users": 1,
                                          "duplicates": 0}
        assert not (tmp_path / f"state-{running.port}").exists()  # nothing went to the SQLite log


def test_a_full_disk_is_unavailable_without_corruption_and_a_restart_recovers(artifacts: Artifacts,
                                                                               tmp_path: Path) -> None:
    """The state directory on a 4 MiB tmpfs, filled up while events stream in: the stream that cannot
    commit gets UNAVAILABLE, ranking goes on, and once space is freed a restarted server counts exactly
    the acknowledged events (root: CI and these machines run as it)."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)], check=True)
    try:
        running = serve(artifacts, tmp_path, state)
        filler = state / "filler"
        acked, refused = 0, None
        try:
            free = os.statvfs(state).f_bavail * os.statvfs(state).f_frsize
            filler.write_bytes(b"\0" * max(0, free - 300_000))  # leave ~300 KB for the log
            for batch in range(200):
                try:
                    ack = running.stub.Feedback(iter(events(f"d{batch}", 200)), timeout=60)
                    acked += ack.accepted
                except grpc.RpcError as exc:
                    refused = exc
                    break
            assert refused is not None, "the disk never filled"
            assert refused.code() == grpc.StatusCode.UNAVAILABLE and "feedback log" in refused.details()
            assert acked > 0
            assert rank(running.stub, "velvet sofa")[2].items_returned == 10  # ranking goes on
        finally:
            running.channel.close()
            os.killpg(running.proc.pid, signal.SIGKILL)
            running.proc.wait(10)
        filler.unlink()
        running = serve(artifacts, tmp_path, state)
        try:
            ack = running.stub.Feedback(iter(events("after", 50)), timeout=60)
            assert ack.accepted == 50  # space again: it commits again
        finally:
            assert stop_server(running) == 0, running.log_tail()
        assert stats(state)["events"] == acked + 50  # every acknowledged event, nothing half-written
        db = sqlite3.connect(state / "events.sqlite")
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            db.close()
    finally:
        subprocess.run(["umount", str(state)], check=True)


def test_the_server_deletes_lists_past_retention_and_keeps_their_counts(artifacts: Artifacts,
                                                                          tmp_path: Path) -> None:
    from feedback.events import Event, EventType
    from feedback.policy import Decision, PolicyCounts
    from feedback.store import open_store

    state, now_ms = tmp_path / "state", int(time.time() * 1e3)
    old_ms = now_ms - 100 * 86_400_000  # 100 days ago: past the default 90
    with closing(open_store(state)) as store:
        store.append([Event(f"old-{i}", f"old-list-{i}", "ret-user", i, EventType.CLICK, 1, old_ms)
                      for i in range(30)] + [Event("new-0", "new-list", "ret-user", 1, EventType.CLICK, 1,
                                                   now_ms)],
                     [Decision(f"old-list-{i}", "ret-user", 0, 2, 1.0, False) for i in range(30)])
    with closing(sqlite3.connect(state / "events.sqlite")) as db, db:  # decided 100 days ago too
        db.execute("UPDATE decisions SET decided_ms = ?", (old_ms,))
    running = serve(artifacts, tmp_path, state)
    try:
        deadline = time.monotonic() + 30
        while running.metric("rankserve_feedback_compacted_lists") < 30 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert running.metric("rankserve_feedback_compacted_lists") == 30
        assert stats(state)["events"] == 1  # the recent list stays
    finally:
        stop_server(running)
    with closing(open_store(state)) as store:
        kept = PolicyCounts.from_json(store.kept() or "")
    assert kept.trials is not None and kept.trials[0][2] == 30 and kept.successes[0][2] == 30
