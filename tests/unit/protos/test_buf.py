"""The API's hygiene with buf: STANDARD lint (named exceptions in buf.yaml) and no breaking change
against the last released ranking.v1 (protos/released)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RELEASED = ROOT / "protos" / "released"


def buf(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "buf"  # the buf-bin wheel (dev extra)
    if not exe.exists():
        pytest.fail(f"buf not installed at {exe}: `make install` (dev extra: buf-bin)")
    return subprocess.run([str(exe), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def released_copy(tmp_path: Path) -> Path:
    # Outside the workspace: buf refuses an input that lies inside one of the workspace's modules.
    out = tmp_path / "released"
    shutil.copytree(RELEASED, out)
    return out


def test_lint_standard() -> None:
    out = buf("lint")
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_breaking_change_against_the_last_release(tmp_path: Path) -> None:
    out = buf("breaking", "--against", str(released_copy(tmp_path)))
    assert out.returncode == 0, out.stdout + out.stderr


def test_breaking_check_catches_a_removed_field(tmp_path: Path) -> None:
    """The release had a field the current API lacks: buf must say so."""
    against = released_copy(tmp_path)
    proto = against / "ranking" / "v1" / "ranking.proto"
    text = proto.read_text()
    assert "message InfoRequest {}" in text
    proto.write_text(text.replace("message InfoRequest {}", "message InfoRequest {\n  string shard = 1;\n}"))
    out = buf("breaking", "--against", str(against))
    assert out.returncode != 0 and "shard" in out.stdout + out.stderr
