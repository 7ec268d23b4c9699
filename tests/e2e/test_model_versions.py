"""Reranker versions side by side on Triton: `rankserve model stage` adds one to the repository,
experiment arms name versions, and `rankserve model load` / `unload` change what a running server's
Triton holds without a restart while the requests in flight all succeed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest

from engines.hf_cross_encoder import LIMITS_FILE
from engines.triton.repository import file_sha256, read_model_info, repository_versions
from protos.ranking.v1 import ranking_pb2, ranking_pb2_grpc
from tests.conftest import Artifacts, rankserve_bin
from tests.e2e.test_server import free_port, rank, start_server, stop_server, triton_pid_of

QUERY = "turquoise velvet pillows"
SPEC = """
experiments:
  - name: model
    arms:
      - {name: v1, share: 0.5, model_version: "1"}
      - {name: v2, share: 0.5, model_version: "2"}
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([rankserve_bin(), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def versioned(artifacts: Artifacts, imported: Path, tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """The test model as version 1 and the imported MiniLM (same tokenizer, other weights) as version 2."""
    served = tmp_path_factory.mktemp("versioned") / "model"
    shutil.copytree(artifacts.model, served)
    out = cli("model", "stage", str(imported), "--model", str(served))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "2"
    return Artifacts(queries=artifacts.queries, catalog=artifacts.catalog, model=served)


def test_stage_adds_the_next_version_beside_the_first(versioned: Artifacts, imported: Path) -> None:
    repo = versioned.model / "triton"
    assert repository_versions(repo) == [1, 2] and repository_versions(repo, "reranker_onnx") == [1, 2]
    assert file_sha256(repo / "reranker" / "2" / "model.onnx") == file_sha256(imported / "model.onnx")
    recorded = read_model_info(repo)["versions"]
    assert recorded["2"]["onnx_sha256"] == file_sha256(imported / "model.onnx")
    assert recorded["2"]["onnx_sha256"] != recorded["1"]["onnx_sha256"]
    assert file_sha256(repo / "reranker" / "1" / "model.onnx") == recorded["1"]["onnx_sha256"]  # untouched


def test_stage_refuses_a_model_that_expects_other_token_ids(versioned: Artifacts, imported: Path,
                                                            tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(imported, other)
    limits = other / "hf" / LIMITS_FILE
    options = json.loads(limits.read_text()) if limits.exists() else {}
    limits.write_text(json.dumps({**options, "max_length": 32}))
    out = cli("model", "stage", str(other), "--model", str(versioned.model))
    assert out.returncode != 0 and "tokenizer or pair limits differ" in out.stderr
    assert repository_versions(versioned.model / "triton") == [1, 2]  # nothing was added


def _info_or_none(stub: ranking_pb2_grpc.RankerStub) -> dict[str, tuple[str, bool]] | None:
    try:
        return _info(stub)
    except grpc.RpcError:
        return None


def _info(stub: ranking_pb2_grpc.RankerStub) -> dict[str, tuple[str, bool]]:
    info = stub.Info(ranking_pb2.InfoRequest(), timeout=10)
    return {v.version: (v.state, v.is_default) for v in info.model_versions}


def test_arms_rank_with_their_versions_and_versions_load_without_a_restart(
    versioned: Artifacts, tmp_path: Path
) -> None:
    spec = tmp_path / "experiments.yaml"
    spec.write_text(SPEC)
    triton = f"127.0.0.1:{free_port()}"
    running = start_server(versioned, tmp_path, RANKSERVE_EXPERIMENTS_FILE=str(spec),
                           RANKSERVE_TRITON_GRPC_PORT=triton.split(":")[1])
    try:
        # Triton starts with the newest version; the server pinned it as default and loaded version 1
        # beside it because an arm names it.
        assert _info(running.stub) == {"1": ("READY", False), "2": ("READY", True)}
        users: dict[str, str] = {}
        scores: dict[str, list[float]] = {}
        for i in range(16):
            user = ranking_pb2.UserContext(user_id=f"user-{i}")
            _, items, summary = rank(running.stub, QUERY, user=user)
            assert not summary.degraded, summary.degraded_reason
            assert summary.model_version == summary.variant.removeprefix("model/v")  # the arm's version
            users.setdefault(summary.model_version, user.user_id)
            scores.setdefault(summary.model_version, sorted(it.rerank_score for it in items))
        assert set(users) == {"1", "2"}
        assert scores["1"] != scores["2"]  # other weights, other logits

        errors: list[BaseException] = []
        summaries: list[ranking_pb2.Summary] = []
        stop = threading.Event()

        def traffic() -> None:  # version-1 requests all through the unload and the reload of version 2
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = ranking_pb2_grpc.RankerStub(channel)
                n = 0
                while not stop.is_set():
                    try:
                        summaries.append(rank(stub, f"{QUERY} {n % 7}", bypass_cache=True,
                                              user=ranking_pb2.UserContext(user_id=users["1"]))[2])
                    except grpc.RpcError as exc:
                        errors.append(exc)
                    n += 1

        thread = threading.Thread(target=traffic)
        thread.start()
        try:
            time.sleep(1.0)
            out = cli("model", "unload", "2", "--triton-url", triton)
            assert out.returncode == 0, out.stderr[-3000:]
            # Unloaded on purpose: Triton lists it UNAVAILABLE, and the server leaves it so.
            assert _info(running.stub)["2"] == ("UNAVAILABLE", True)
            assert _info(running.stub)["1"] == ("READY", False)
            # The arm whose version is gone still gets a ranking: degraded and flagged, not an error.
            v2_user = ranking_pb2.UserContext(user_id=users["2"])
            gone = rank(running.stub, QUERY, user=v2_user, bypass_cache=True)[2]
            assert gone.degraded and gone.degraded_reason == "reranker_unavailable"
            out = cli("model", "load", "2", "--triton-url", triton)
            assert out.returncode == 0, out.stderr[-3000:]
            time.sleep(1.0)
        finally:
            stop.set()
            thread.join(60)
        assert not errors, errors[:3]
        assert len(summaries) >= 3 and not any(s.degraded for s in summaries)  # nothing dropped
        assert {s.model_version for s in summaries} == {"1"}
        assert _info(running.stub) == {"1": ("READY", False), "2": ("READY", True)}
        deadline = time.monotonic() + 20  # the version's gate reopens after reranker_retry_after_s
        while (back := rank(running.stub, QUERY, user=v2_user, bypass_cache=True)[2]).degraded:
            assert time.monotonic() < deadline, back.degraded_reason
            time.sleep(0.3)
        assert back.model_version == "2"

        # Triton killed: restarted by the server with its newest version only; the server loads version
        # 1 again (an arm names it) without being asked.
        os.kill(triton_pid_of(running), signal.SIGKILL)
        deadline = time.monotonic() + 90
        while _info_or_none(running.stub) != {"1": ("READY", False), "2": ("READY", True)}:
            assert time.monotonic() < deadline, running.log_tail()
            time.sleep(0.5)
        again = rank(running.stub, QUERY, user=ranking_pb2.UserContext(user_id=users["1"]), bypass_cache=True)
        assert again[2].model_version == "1" and not again[2].degraded, again[2].degraded_reason
    finally:
        assert stop_server(running) == 0, running.log_tail()
