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
