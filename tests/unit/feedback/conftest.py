"""The PostgreSQL server the feedback tests run the shared log against (one per test module), and the
store contract's opener: each test of it runs on SQLite and on that server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from feedback.store import EventStore, open_store
from tests.postgres import fresh_database, pg_bin, postgres_server

Opener = Callable[[], EventStore]


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    if pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs it (apt-get install postgresql)")
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same log again on each call (a fresh database per test); closes them all after."""
    opened: list[EventStore] = []
    if request.param == "sqlite":
        target: dict = {}
    else:
        name = f"t_{abs(hash(request.node.nodeid)) % 10**12}"
        target = {"dsn": fresh_database(request.getfixturevalue("postgres_dsn"), name)}

    def open_again() -> EventStore:
        opened.append(open_store(tmp_path, **target))
        return opened[-1]

    yield open_again
    for store in opened:
        store.close()
