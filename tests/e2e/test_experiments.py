"""Experiments over the real server: the arm is echoed, its defaults apply (the request's own values
win), per-arm metrics count it, and an arm naming a model version that is not served stops the start."""

from __future__ import annotations

import asyncio
import fcntl
import json
import socket
import subprocess
from pathlib import Path

import pytest

from protos.ranking.v1 import ranking_pb2
from server.app import RankServer
from server.config import Settings
from tests.conftest import Artifacts, rankserve_bin
from tests.e2e.test_feedback import ENGINE
from tests.e2e.test_server import free_port, rank, start_server, stop_server

SPEC = """
experiments:
  - name: diversity
    arms:
      - {name: control, share: 0.5}
      - {name: diverse, share: 0.5, mmr_lambda: 0.3}
"""


def test_arms_are_echoed_applied_and_counted(artifacts: Artifacts, tmp_path: Path) -> None:
    spec = tmp_path / "experiments.yaml"
    spec.write_text(SPEC)
    running = start_server(artifacts, tmp_path, RANKSERVE_EXPERIMENTS_FILE=str(spec), **ENGINE)
    try:
        seen = {}
        for i in range(12):
            user = ranking_pb2.UserContext(user_id=f"user-{i}")
            _, _, summary = rank(running.stub, "velvet sofa", user=user)
            seen[summary.variant] = summary.mmr_lambda
            again = rank(running.stub, "oak desk", user=user)[2]
            assert again.variant == summary.variant  # a user stays in the arm
        assert seen == {"diversity/control": pytest.approx(0.9), "diversity/diverse": pytest.approx(0.3)}
        _, _, explicit = rank(running.stub, "velvet sofa", lam=0.8,
                              user=ranking_pb2.UserContext(user_id="user-0"))
        assert explicit.mmr_lambda == pytest.approx(0.8)  # the request's own λ wins over the arm
        counted = sum(running.metric("rankserve_variant_requests_total", f'code="OK",variant="diversity/{a}"')
                      for a in ("control", "diverse"))
        assert counted == 25
        # Feedback counts toward the arm its user is in: CTR and CVR per arm in PromQL.
        user = "user-3"
        variant = rank(running.stub, "velvet sofa", user=ranking_pb2.UserContext(user_id=user))[2].variant
        events = [ranking_pb2.FeedbackEvent(event_id=f"x{i}", request_id="r", user_id=user, item_id=i,
                                            type=t, position=1)
                  for i, t in enumerate([ranking_pb2.EVENT_TYPE_IMPRESSION] * 4
                                        + [ranking_pb2.EVENT_TYPE_CLICK])]
        assert running.stub.Feedback(iter(events), timeout=30).accepted == 5
        labels = f'type="{{}}",variant="{variant}"'
        assert running.metric("rankserve_variant_feedback_events_total", labels.format("IMPRESSION")) == 4
        assert running.metric("rankserve_variant_feedback_events_total", labels.format("CLICK")) == 1
        # The report reads the same log (while the server writes it) and assigns the same arm.
        out = subprocess.run([rankserve_bin(), "report", "--experiments", str(spec),
                              "--state-dir", str(tmp_path / f"state-{running.port}")],
                             capture_output=True, text=True, timeout=60, check=True)
        arm = json.loads(out.stdout)["experiments"]["diversity"]["arms"][variant.split("/")[1]]
        assert arm["ctr"]["value"] == 0.25 and arm["ctr"]["trials"] == 4
    finally:
        assert stop_server(running) == 0, running.log_tail()


def test_an_arm_naming_an_unserved_model_version_stops_the_start(artifacts: Artifacts, tmp_path: Path
                                                                  ) -> None:
    spec = tmp_path / "experiments.yaml"
    spec.write_text("experiments:\n  - name: m\n    arms: [{name: v2, share: 1.0, model_version: nope}]\n")
    with pytest.raises(AssertionError, match="model_version 'nope' is not served"):
        start_server(artifacts, tmp_path, RANKSERVE_EXPERIMENTS_FILE=str(spec), **ENGINE)


def test_a_start_that_fails_after_loading_closes_what_it_opened(artifacts: Artifacts, tmp_path: Path) -> None:
    spec = tmp_path / "experiments.yaml"
    spec.write_text("experiments:\n  - name: m\n    arms: [{name: v2, share: 1.0, model_version: nope}]\n")
    settings = Settings(catalog_dir=artifacts.catalog, model_dir=artifacts.model,
                        state_dir=tmp_path / "state", experiments_file=spec, port=0, metrics_port=free_port(),
                        reranker_engine="torch", torch_device="cpu", torch_precision="fp32",
                        build_artifacts=False)
    server = RankServer(settings)

    async def start_then_stop() -> None:
        try:
            with pytest.raises(ValueError, match="model_version 'nope' is not served"):
                await server.start()
        finally:
            await server.stop()

    asyncio.run(start_then_stop())
    # The feedback log was opened before the check failed: stop() released it (its lock, in this
    # process too) and the metrics port, so a retry in the same process can take both.
    with open(tmp_path / "state" / "events.sqlite.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError while the log is held open
    with socket.socket() as s:
        s.bind(("127.0.0.1", settings.metrics_port))
