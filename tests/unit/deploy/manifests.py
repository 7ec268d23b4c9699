"""The rendered kustomize overlays and the deploy tools, for the tests beside this file.

The tools (kubectl with kustomize, kubernetes-validate, checkov, hadolint, ...) live in .venv-deploy
(`make deploy-tools`). A missing tool skips its tests on a developer's machine and fails them in CI.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
DEPLOY_BIN = ROOT / ".venv-deploy" / "bin"

Doc = dict[str, Any]


def tool(name: str, *, on_path: bool = True) -> str:
    """The path of a deploy tool: .venv-deploy's, else (``on_path``) one on PATH."""
    path = DEPLOY_BIN / name
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(name) if on_path else None
    if found:
        return found
    message = f"{name} is not installed: run `make deploy-tools`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(cmd: list[str], *, stdin: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          check=False)


@cache
def _render(overlay: str, kubectl: str) -> str:
    out = run([kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)])
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return out.stdout


def render(overlay: str) -> str:
    """`kubectl kustomize deploy/overlays/<overlay>`, as YAML text."""
    return _render(overlay, tool("kubectl"))


def docs(overlay: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


def of_kind(documents: list[Doc], kind: str) -> list[Doc]:
    return [d for d in documents if d["kind"] == kind]


def one(documents: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in of_kind(documents, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(documents: list[Doc]) -> Doc:
    return one(documents, "Rollout")["spec"]["template"]["spec"]


def all_containers(spec: Doc) -> list[Doc]:
    """Init containers (the Triton sidecar among them) and containers."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(spec: Doc, name: str) -> Doc:
    found = [c for c in all_containers(spec) if c["name"] == name]
    assert len(found) == 1, f"expected one container {name}, found {len(found)}"
    return found[0]


def as_deployment(rollout: Doc) -> Doc:
    """The Rollout's pod template as an apps/v1 Deployment (metadata, checkov annotations included):
    the kind that kubernetes-validate and checkov know how to check."""
    r = copy.deepcopy(rollout)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": r["metadata"],
            "spec": {"replicas": r["spec"].get("replicas", 3), "selector": r["spec"]["selector"],
                     "template": r["spec"]["template"]}}


def core_documents(documents: list[Doc]) -> list[Doc]:
    """Everything but the argoproj.io kinds, plus each Rollout as a Deployment."""
    out = [d for d in documents if not d["apiVersion"].startswith("argoproj.io/")]
    return out + [as_deployment(d) for d in of_kind(documents, "Rollout")]


def checkov(path: Path) -> Doc:
    """checkov's JSON report on one manifest file (no download of Prisma Cloud's guidelines)."""
    out = run([tool("checkov"), "-f", str(path), "--framework", "kubernetes", "-o", "json",
               "--skip-download"])
    assert out.stdout.strip(), out.stderr
    report = json.loads(out.stdout)
    return report[0] if isinstance(report, list) else report


def write(documents: list[Doc], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path
