"""The `rankserve` entry point: a user's mistake ends in one line naming it and exit 2, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def rankserve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m cli.main` runs `main()`, as the installed `rankserve` script does (pyproject)."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "300", **env},
                          cwd=Path(__file__).resolve().parents[3])


@pytest.mark.parametrize(("args", "env", "said"), [
    (["query", "sofa", "--target", "127.0.0.1:9", "--tls-ca", "/nonexistent/ca.pem"], {}, "ca.pem"),
    (["report", "--experiments", "/nonexistent/exp.yaml"], {}, "exp.yaml"),
    (["feedback", "stats", "--state-dir", "/nonexistent/state"], {}, "no event log"),
    (["catalog", "build", "--queries", "/nonexistent/query.csv", "--out", "/tmp/unused"], {},
     "/nonexistent/query.csv"),
    (["feedback", "stats"], {"RANKSERVE_MAX_INFLIGHT": "0"}, "max_inflight"),  # a bad variable
    (["feedback", "compact", "--state-dir", "/nonexistent/state"], {}, "no event log"),
    (["feedback", "compact", "--retention-days", "-1"], {}, "feedback_retention_days"),
])
def test_a_users_mistake_is_one_line_and_exit_2(args: list[str], env: dict[str, str], said: str) -> None:
    out = rankserve(*args, **env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert said in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_serve_takes_its_catalog_from_the_environment() -> None:
    # A pod sets RANKSERVE_CATALOG_DIR rather than a flag: serve must look there, not ask for --catalog.
    out = rankserve("serve", "--no-build", RANKSERVE_CATALOG_DIR="/nonexistent/cat",
                    RANKSERVE_MODEL_DIR="/nonexistent/model")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "/nonexistent/cat" in out.stdout + out.stderr and "--demo" not in out.stdout + out.stderr


def test_the_installed_script_is_main() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[3]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rankserve"] == "cli.main:main"


def test_feedback_compact_deletes_the_old_lists_and_keeps_their_counts(tmp_path: Path) -> None:
    import json
    import sqlite3
    from contextlib import closing

    from feedback.events import Event, EventType
    from feedback.policy import Decision, PolicyCounts
    from feedback.store import open_store

    old, recent = 1_000, 4_000_000_000_000  # event times: 1970, and 2096
    with closing(open_store(tmp_path)) as store:
        store.append([Event("a", "old", "u", 1, EventType.CLICK, 1, old),
                      Event("b", "new", "u", 1, EventType.CLICK, 1, recent)],
                     [Decision("old", "u", 0, 2, 1.0, False)])
    with closing(sqlite3.connect(tmp_path / "events.sqlite")) as db, db:  # decided in 1970 too
        db.execute("UPDATE decisions SET decided_ms = ?", (old,))
    out = rankserve("feedback", "compact", "--state-dir", str(tmp_path), "--retention-days", "30", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"lists": 1, "events": 1, "retention_days": 30.0}
    with closing(open_store(tmp_path)) as store:
        assert [e.event_id for e in store.replay()] == ["b"]
        kept = PolicyCounts.from_json(store.kept() or "")
    assert kept.trials is not None and kept.trials[0][2] == 1 and kept.successes[0][2] == 1
