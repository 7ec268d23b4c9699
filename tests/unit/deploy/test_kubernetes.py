"""The rendered Kubernetes manifests (every kustomize overlay) must agree with the code they deploy, and
have the shape docs/deploy.md describes: flags, env vars, ports, health names, the Triton sidecar,
volumes, security contexts, Services, NetworkPolicy, autoscaling."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from cli.main import app
from server.config import Settings
from tests.unit.deploy.manifests import (
    OVERLAYS,
    ROOT,
    Doc,
    all_containers,
    container,
    docs,
    of_kind,
    one,
    pod_spec,
)

RANKER = "ranking.v1.Ranker"
TRITON_PORTS = {8000, 8001, 8002}


def _env(c: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in c.get("env", [])}


def _liveness_name() -> str:
    """The health service name server/app.py sets SERVING as soon as its port is up."""
    found = re.search(r'^LIVENESS = "([^"]+)"', (ROOT / "server" / "app.py").read_text(), re.M)
    assert found, "server/app.py no longer defines LIVENESS"
    return found.group(1)


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _bytes(value: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return float(value[:-2]) * units[value[-2:]] if value[-2:] in units else float(value)


def test_overlays_exist() -> None:
    assert set(OVERLAYS) >= {"dev", "prod"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rankserve_container_matches_cli_and_config(overlay: str) -> None:
    c = container(pod_spec(docs(overlay)), "rankserve")
    args = c["args"]
    assert args[0] == "serve"
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    flags = {opt for param in serve.params for opt in param.opts}
    for flag in (a for a in args if a.startswith("--")):
        assert flag in flags, f"{overlay}: unknown flag {flag}"
    fields = set(Settings.model_fields)
    for name in _env(c):
        assert name.startswith("RANKSERVE_"), f"{overlay}: {name}"
        assert name.removeprefix("RANKSERVE_").lower() in fields, f"{overlay}: unknown setting {name}"
    # Each setting once: a second entry would silently win.
    assert len(_env(c)) == len(c["env"]), f"{overlay}: an env var is set twice"
    port = int(args[args.index("--port") + 1])
    metrics = int(args[args.index("--metrics-port") + 1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"grpc": port, "metrics": metrics}
    assert args[args.index("--host") + 1] == "0.0.0.0"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rankserve_probes_ask_the_right_health_services(overlay: str) -> None:
    c = container(pod_spec(docs(overlay)), "rankserve")
    port = c["ports"][0]["containerPort"]
    # Startup and readiness ask for the Ranker: NOT_SERVING until the index and Triton are ready.
    assert c["startupProbe"]["grpc"] == {"port": port, "service": RANKER}
    assert c["readinessProbe"]["grpc"] == {"port": port, "service": RANKER}
    # Index load and the reranker's first answer may take minutes: the startup budget covers 5.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    # Liveness asks for the name that is SERVING once the port is up, whatever Triton does.
    assert c["livenessProbe"]["grpc"] == {"port": port, "service": _liveness_name()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_termination_leaves_time_to_drain(overlay: str) -> None:
    spec = pod_spec(docs(overlay))
    c = container(spec, "rankserve")
    env = _env(c)
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) >= 3
    grace = float(env.get("RANKSERVE_GRACE_S", Settings.model_fields["grace_s"].default))
    assert spec["terminationGracePeriodSeconds"] > int(sleep[1]) + grace
    # Connections are recycled explicitly, so round_robin clients re-resolve and rebalance.
    assert float(env["RANKSERVE_MAX_CONNECTION_AGE_S"]) > 0
    assert "RANKSERVE_MAX_CONNECTION_AGE_GRACE_S" in env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_servers_never_build_into_the_read_only_artifacts(overlay: str) -> None:
    spec = pod_spec(docs(overlay))
    c = container(spec, "rankserve")
    env = _env(c)
    assert env["RANKSERVE_BUILD_ARTIFACTS"] == "false"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/artifacts"]["readOnly"] is True
    state = mounts[env["RANKSERVE_STATE_DIR"]]
    assert not state.get("readOnly")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[state["name"]]
    args = c["args"]
    for flag in ("--catalog", "--model"):
        assert args[args.index(flag) + 1].startswith("/artifacts/")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_artifacts_come_from_an_init_container_not_a_shared_volume(overlay: str) -> None:
    documents = docs(overlay)
    assert not of_kind(documents, "PersistentVolumeClaim")
    spec = pod_spec(documents)
    for v in spec["volumes"]:
        assert not {"persistentVolumeClaim", "hostPath", "nfs"} & set(v), f"{overlay}: shared volume {v}"
    volumes = {v["name"]: v for v in spec["volumes"]}
    first = spec["initContainers"][0]
    assert first["name"] == "copy-artifacts" and "restartPolicy" not in first
    (target,) = first["volumeMounts"]
    assert "emptyDir" in volumes[target["name"]] and not target.get("readOnly")
    assert first["command"][-1].rstrip("/") == target["mountPath"]
    # Everyone else reads that volume, read-only.
    readers = [m for c in all_containers(spec)[1:] for m in c["volumeMounts"] if m["name"] == target["name"]]
    assert len(readers) == 2 and all(m["readOnly"] is True for m in readers)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_is_a_native_sidecar_on_loopback(overlay: str) -> None:
    spec = pod_spec(docs(overlay))
    names = [c["name"] for c in spec["initContainers"]]
    assert names.index("triton") > names.index("copy-artifacts")  # the model is there before it starts
    triton = container(spec, "triton")
    assert triton["restartPolicy"] == "Always"
    image = triton["image"]
    assert image.startswith("nvcr.io/nvidia/tritonserver:") and not image.endswith(":latest")
    args = triton["args"]
    assert args[0] == "tritonserver"
    for flag in ("--grpc-address=127.0.0.1", "--http-address=127.0.0.1", "--metrics-address=127.0.0.1",
                 "--model-control-mode=explicit"):
        assert flag in args, f"{overlay}: {flag}"
    # No port of it is declared: nothing outside the pod reaches it.
    assert "ports" not in triton
    # Bound to loopback, kubelet cannot probe it from outside: the probes run inside the container.
    startup = triton["startupProbe"]["exec"]["command"]
    assert startup[0] == "curl" and startup[-1].startswith("http://127.0.0.1:8000/v2/")
    assert "exec" in triton["livenessProbe"]
    # The server asks this Triton for the model the sidecar loads.
    rankserve = container(spec, "rankserve")
    model = _env(rankserve)["RANKSERVE_TRITON_MODEL"]
    assert f"--load-model={model}" in args and f"/v2/models/{model}/ready" in startup[-1]
    url = rankserve["args"][rankserve["args"].index("--triton-url") + 1]
    assert url == "127.0.0.1:8001"  # Triton's default gRPC port, bound by --grpc-address above


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for c in all_containers(pod_spec(docs(overlay))):
        resources = c["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), f"{overlay}: {c['name']} {kind}"
        assert _cpu(resources["requests"]["cpu"]) <= _cpu(resources["limits"]["cpu"])
        assert _bytes(resources["requests"]["memory"]) <= _bytes(resources["limits"]["memory"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_restricted(overlay: str) -> None:
    documents = docs(overlay)
    spec = pod_spec(documents)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] >= 10000
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    account = one(documents, "ServiceAccount", spec["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    for c in all_containers(spec):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]
    # A read-only root: each long-running container gets a writable /tmp.
    volumes = {v["name"]: v for v in spec["volumes"]}
    for name in ("rankserve", "triton"):
        tmp = next(m for m in container(spec, name)["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in volumes[tmp["name"]]


def test_prod_renders_the_platform_kinds() -> None:
    documents = docs("prod")
    kinds = {d["kind"] for d in documents}
    assert kinds >= {"Rollout", "AnalysisTemplate", "Service", "PodDisruptionBudget",
                     "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceAccount", "ConfigMap"}
    assert not kinds & {"Deployment", "StatefulSet"}  # one workload: the Rollout
    rollout = one(documents, "Rollout")
    labels = rollout["spec"]["template"]["metadata"]["labels"]
    hpa = one(documents, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                             "name": rollout["metadata"]["name"]}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # The autoscaler owns the replica count: a `replicas` here would reset it on every apply.
    assert "replicas" not in rollout["spec"]
    pdb = one(documents, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")


def test_dev_is_one_small_replica_without_autoscaling() -> None:
    dev, prod = docs("dev"), docs("prod")
    assert one(dev, "Rollout")["spec"]["replicas"] == 1
    assert not of_kind(dev, "HorizontalPodAutoscaler") and not of_kind(dev, "PodDisruptionBudget")
    for name in ("rankserve", "triton"):
        small = container(pod_spec(dev), name)["resources"]["requests"]
        full = container(pod_spec(prod), name)["resources"]["requests"]
        assert _cpu(small["cpu"]) < _cpu(full["cpu"]) and _bytes(small["memory"]) <= _bytes(full["memory"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_canary_steps_and_services(overlay: str) -> None:
    documents = docs(overlay)
    rollout = one(documents, "Rollout")
    canary = rollout["spec"]["strategy"]["canary"]
    weights = [s["setWeight"] for s in canary["steps"] if "setWeight" in s]
    assert weights == sorted(weights) and weights[-1] == 100
    assert any("pause" in s for s in canary["steps"])
    services = {s["metadata"]["name"]: s for s in of_kind(documents, "Service")}
    labels = rollout["spec"]["template"]["metadata"]["labels"]
    grpc_port = container(pod_spec(documents), "rankserve")["ports"][0]
    for name in ("rankserve", canary["canaryService"], canary["stableService"]):
        spec = services[name]["spec"]
        # Headless: gateways balance per request over its pods, not per connection over a virtual IP.
        assert spec["clusterIP"] == "None", name
        assert spec["selector"].items() <= labels.items()
        ports = [(p["targetPort"], p["port"]) for p in spec["ports"]]
        assert ports == [(grpc_port["name"], grpc_port["containerPort"])]
    assert canary["canaryService"] != canary["stableService"]


def test_prod_canary_runs_the_analysis() -> None:
    documents = docs("prod")
    steps = one(documents, "Rollout")["spec"]["strategy"]["canary"]["steps"]
    kinds = [next(iter(s)) for s in steps]
    assert kinds[0] == "setWeight" and steps[0]["setWeight"] <= 10
    first = kinds.index("analysis")
    assert "pause" in kinds[:first] and "setWeight" in kinds[first:]
    template = one(documents, "AnalysisTemplate")["metadata"]["name"]
    for step in (s["analysis"] for s in steps if "analysis" in s):
        assert [t["templateName"] for t in step["templates"]] == [template]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_gateways_and_prometheus_only(overlay: str) -> None:
    documents = docs(overlay)
    spec = pod_spec(documents)
    labels = one(documents, "Rollout")["spec"]["template"]["metadata"]["labels"]
    policy = one(documents, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    named = {p["name"]: p["containerPort"] for p in container(spec, "rankserve")["ports"]}
    admitted = {}
    for rule in policy["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` admits everyone"
        for port in rule["ports"]:
            admitted[named.get(port["port"], port["port"])] = rule["from"]
    assert set(admitted) == {named["grpc"], named["metrics"]}
    assert not TRITON_PORTS & set(admitted)
    for peer in admitted[named["grpc"]]:
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/component": "search-gateway"}
    for peer in admitted[named["metrics"]]:
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_experiments_file_is_mounted_and_valid(overlay: str, tmp_path: Path) -> None:
    from pipeline.experiments import Experiments

    documents = docs(overlay)
    spec = pod_spec(documents)
    c = container(spec, "rankserve")
    path = Path(_env(c)["RANKSERVE_EXPERIMENTS_FILE"])
    mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == path.parent)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    config = one(documents, "ConfigMap", volume["configMap"]["name"])
    local = tmp_path / path.name
    local.write_text(config["data"][path.name])
    Experiments.load(local)  # the server refuses to start on a file this rejects
