"""Serving without building (`RANKSERVE_BUILD_ARTIFACTS=false`): from a read-only bind mount of the
artifacts for real, and refusing to start, naming the file, when an artifact is missing."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Artifacts, rankserve_bin
from tests.e2e.test_server import rank, start_server, stop_server


@pytest.fixture
def read_only_artifacts(artifacts: Artifacts, tmp_path: Path) -> Iterator[Artifacts]:
    """The session's catalog and model, bind-mounted read-only (root: CI and these machines run as it)."""
    src, mnt = artifacts.catalog.parent, tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(mnt)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
        yield Artifacts(artifacts.queries, mnt / artifacts.catalog.name, mnt / artifacts.model.name)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_serves_from_a_read_only_mount_and_writes_nothing(read_only_artifacts: Artifacts,
                                                          artifacts: Artifacts, tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        (read_only_artifacts.model / "probe").write_text("x")
    assert info.value.errno == errno.EROFS  # the mount really is read-only
    before = snapshot(artifacts.catalog.parent)
    running = start_server(read_only_artifacts, tmp_path, RANKSERVE_BUILD_ARTIFACTS="false")
    try:
        _, items, summary = rank(running.stub, "turquoise pillows", k=10)
        assert len(items) == 10 and not summary.degraded and summary.candidates_reranked > 0
    finally:
        assert stop_server(running) == 0, running.log_tail()
    assert snapshot(artifacts.catalog.parent) == before


def test_a_missing_artifact_stops_the_start_naming_the_file(artifacts: Artifacts, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(artifacts.model, model, symlinks=True)
    gone = model / "triton" / "reranker" / "1" / "model.onnx"
    gone.unlink()
    proc = subprocess.run(
        [rankserve_bin(), "serve", "--catalog", str(artifacts.catalog), "--model", str(model), "--no-build",
         "--port", "0", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert str(gone) in proc.stderr.replace("\n", "")
    assert not gone.exists() and not (tmp_path / "state").exists()  # nothing was built or opened
