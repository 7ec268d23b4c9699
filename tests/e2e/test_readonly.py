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

from retrieval.index import INDEX_FILE, VECTORS_FILE
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


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    step = max(1, len(data) // 64)
    for i in range(0, len(data), step):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("where", "name", "damage"), [
    ("catalog", INDEX_FILE, _truncate),
    ("catalog", VECTORS_FILE, _garble),
    ("catalog", "product.csv", _truncate),
    ("model", "triton/reranker/1/model.onnx", _truncate),
    ("model", "hf/tokenizer.json", _garble),
])
def test_a_damaged_artifact_stops_the_start_naming_the_file(artifacts: Artifacts, tmp_path: Path, where: str,
                                                           name: str, damage) -> None:
    """Truncated or corrupt index, catalog or model files: a non-zero exit naming the file, never a
    half-started server reporting SERVING."""
    catalog, model = tmp_path / "catalog", tmp_path / "model"
    shutil.copytree(artifacts.catalog, catalog)
    shutil.copytree(artifacts.model, model)
    damage((catalog if where == "catalog" else model) / name)
    proc = subprocess.run(
        [rankserve_bin(), "serve", "--catalog", str(catalog), "--model", str(model), "--no-build",
         "--port", "0", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "400", "RANKSERVE_TRITON_READY_TIMEOUT_S": "60"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert Path(name).name in out, out[-3000:]
    assert "rankserve ready" not in out
