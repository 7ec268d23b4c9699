"""The PostgreSQL server the feedback tests run the shared log against (one per test module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import pg_bin, postgres_server


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    if pg_bin() is None:
        pytest.fail("PostgreSQL is not installed: `make test` installs it (apt-get install postgresql)")
    with postgres_server() as dsn:
        yield dsn
