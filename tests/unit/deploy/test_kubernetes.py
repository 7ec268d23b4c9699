"""The Kubernetes manifests must agree with the code they deploy: flags, env vars, ports, health names."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml

from cli.main import app
from server.config import Settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"


def _containers() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    out.append((f"{path.name}:{doc['metadata']['name']}", c))
    return out


RANKSERVE = [(name, c) for name, c in _containers() if c["name"] == "rankserve"]


def test_both_tracks_present_and_selected_by_the_service() -> None:
    docs = [d for p in DEPLOY.glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    tracks = {d["spec"]["template"]["metadata"]["labels"]["track"] for d in docs if d["kind"] == "Deployment"}
    assert tracks == {"stable", "canary"}
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"] == {"app": "rankserve"}


@pytest.mark.parametrize(("name", "container"), RANKSERVE, ids=[n for n, _ in RANKSERVE])
def test_rankserve_container_matches_cli_and_config(name: str, container: dict) -> None:
    args = container["args"]
    assert args[0] == "serve"
    serve = typer.main.get_command(app).commands["serve"]
    flags = {opt for param in serve.params for opt in param.opts}
    for flag in (a for a in args if a.startswith("--")):
        assert flag in flags, f"{name}: unknown flag {flag}"
    fields = set(Settings.model_fields)
    for env in container.get("env", []):
        assert env["name"].startswith("RANKSERVE_")
        setting = env["name"].removeprefix("RANKSERVE_").lower()
        assert setting in fields, f"{name}: unknown setting {env['name']}"
    port = int(args[args.index("--port") + 1])
    assert {p["containerPort"] for p in container["ports"]} >= {port}
    # Readiness asks for the Ranker service by name: NOT_SERVING until index and Triton are ready.
    assert container["readinessProbe"]["grpc"] == {"port": port, "service": "ranking.v1.Ranker"}


def test_servers_never_build_into_the_read_only_volume() -> None:
    for name, c in RANKSERVE:
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["RANKSERVE_BUILD_ARTIFACTS"] == "false", name
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/artifacts"]["readOnly"] is True
        assert env["RANKSERVE_STATE_DIR"] in mounts and not mounts[env["RANKSERVE_STATE_DIR"]].get("readOnly")


def test_triton_sidecar_loads_the_onnx_entry_the_server_asks_for() -> None:
    for name, c in RANKSERVE:
        model = next(e["value"] for e in c["env"] if e["name"] == "RANKSERVE_TRITON_MODEL")
        assert model == "reranker_onnx", name
    for name, c in _containers():
        if c["name"] == "triton":
            assert "--load-model=reranker_onnx" in c["args"], name
            assert "--grpc-address=127.0.0.1" in c["args"], name
