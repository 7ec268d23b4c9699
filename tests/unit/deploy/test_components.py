"""Optional kustomize components, enabled the way docs/deploy.md says (listed in an overlay's
`components`), must render, pass the same checks as the overlays, and deploy settings the server has."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from server.config import Settings
from tests.unit.deploy.manifests import (
    DEPLOY,
    Doc,
    checkov,
    container,
    core_documents,
    of_kind,
    run,
    tool,
    write,
)


def _prod_with(component: str, tmp_path: Path) -> list[Doc]:
    tree = tmp_path / "deploy"
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("schemas", "tools", "*.json"))
    kustomization = tree / "overlays" / "prod" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + f"\ncomponents:\n  - ../../components/{component}\n")
    out = run([tool("kubectl"), "kustomize", str(kustomization.parent)])
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_feedback_postgres_shares_one_log(tmp_path: Path) -> None:
    documents = _prod_with("feedback-postgres", tmp_path)
    rollout = of_kind(documents, "Rollout")[0]
    rankserve = container(rollout["spec"]["template"]["spec"], "rankserve")
    dsn = next(e for e in rankserve["env"] if e["name"] == "RANKSERVE_FEEDBACK_DSN")
    assert "feedback_dsn" in Settings.model_fields
    assert dsn["valueFrom"]["secretKeyRef"] == {"name": "rankserve-feedback", "key": "dsn"}
    policies = {p["metadata"]["name"]: p for p in of_kind(documents, "NetworkPolicy")}
    extra = policies["rankserve-feedback-postgres"]
    assert extra["metadata"]["namespace"] == rollout["metadata"]["namespace"]
    assert extra["spec"]["podSelector"] == policies["rankserve"]["spec"]["podSelector"]
    assert [p["port"] for rule in extra["spec"]["egress"] for p in rule["ports"]] == [5432]
    assert "ingress" not in extra["spec"] and extra["spec"]["policyTypes"] == ["Egress"]

    core = write(core_documents(documents), tmp_path / "core.yaml")
    out = run([tool("kubernetes-validate"), "--strict", "--quiet", str(core)])
    assert out.returncode == 0, out.stdout + out.stderr
    report = checkov(core)
    assert report["results"]["failed_checks"] == []
    assert {c["check_id"] for c in report["results"]["skipped_checks"]} == {"CKV_K8S_35", "CKV_K8S_43"}
