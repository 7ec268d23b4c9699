"""The platform checks, run offline on every rendered overlay and on the Dockerfiles: kubernetes-validate
(strict, core kinds, the Rollout's pod template as a Deployment), the pinned Argo Rollouts CRD schemas
and PromQL syntax, checkov with no failed check, hadolint and yamllint with no finding. Each check is
also shown to fail on a broken input, so a silently passing tool cannot pass these tests."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.unit.deploy.manifests import (
    DEPLOY,
    OVERLAYS,
    ROOT,
    Doc,
    all_containers,
    checkov,
    core_documents,
    docs,
    of_kind,
    render,
    run,
    tool,
    write,
)

# The newest Kubernetes kubernetes-validate knows, and the oldest the manifests target (native sidecars
# are on by default from 1.29).
KUBERNETES_VERSIONS = ("1.37", "1.29")
DOCKERFILES = ("Dockerfile", "Dockerfile.artifacts")


def _kubernetes_validate(path: Path, version: str) -> tuple[int, str]:
    out = run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, str(path)])
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_validate_strictly(overlay: str, version: str, tmp_path: Path) -> None:
    documents = core_documents(docs(overlay))
    assert of_kind(documents, "Deployment"), "the Rollout's pod template is validated as a Deployment"
    code, output = _kubernetes_validate(write(documents, tmp_path / "core.yaml"), version)
    assert code == 0, output


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    documents = core_documents(docs("prod"))
    deployment = of_kind(documents, "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    code, output = _kubernetes_validate(write(documents, tmp_path / "bad.yaml"), KUBERNETES_VERSIONS[0])
    assert code != 0 and "livenessProbes" in output


def _check_argo(text: str) -> tuple[int, dict]:
    out = run([tool("python", on_path=False), str(DEPLOY / "tools" / "check_argo.py"), "-"], stdin=text)
    assert out.stdout.strip(), out.stderr
    return out.returncode, json.loads(out.stdout)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_argo_resources_match_the_pinned_crd_schemas(overlay: str) -> None:
    code, report = _check_argo(render(overlay))
    assert report["errors"] == [] and code == 0
    assert set(report["checked"]) == {"Rollout/rankserve", "AnalysisTemplate/rankserve-canary"}


def test_argo_check_rejects_a_misspelt_step_and_bad_promql() -> None:
    text = render("prod").replace("setWeight: 50", "setWieght: 50", 1).replace("[2m]))", "[2m])", 1)
    code, report = _check_argo(text)
    assert code == 1
    assert any("setWieght" in e for e in report["errors"])
    assert any("PromQL" in e for e in report["errors"])


def _checkov(documents: list[Doc], path: Path) -> Doc:
    return checkov(write(documents, path))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_finds_nothing(overlay: str, tmp_path: Path) -> None:
    report = _checkov(core_documents(docs(overlay)), tmp_path / "rendered.yaml")
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] >= 80  # the pod template's checks ran
    # Every skip is named in the manifests with its reason; none other.
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped <= {"CKV_K8S_43"}


def test_checkov_fails_a_weakened_pod(tmp_path: Path) -> None:
    documents = copy.deepcopy(core_documents(docs("prod")))
    spec = of_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]
    triton = all_containers(spec)[1]
    del triton["securityContext"]
    del triton["resources"]["limits"]
    report = _checkov(documents, tmp_path / "weak.yaml")
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    # allowPrivilegeEscalation, readOnlyRootFilesystem, capabilities, CPU and memory limits
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_37", "CKV_K8S_11", "CKV_K8S_13"} <= failed


def _hadolint(path: Path) -> list[dict]:
    out = run([tool("hadolint"), "--no-color", "-f", "json", "--failure-threshold", "style", str(path)])
    return json.loads(out.stdout or "[]")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    assert _hadolint(DEPLOY / dockerfile) == []


def test_hadolint_flags_an_unpinned_image(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\n")
    assert {f["code"] for f in _hadolint(bad)} >= {"DL3006", "DL3008"}


def test_yamllint_finds_nothing() -> None:
    out = run([tool("yamllint"), "-f", "parsable", "-c", str(DEPLOY / "yamllint.yaml"), "deploy"])
    assert out.returncode == 0, out.stdout + out.stderr


def test_server_image_installs_the_package_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    assert len(stages) >= 2 and all(image.startswith("debian:12") for image, _ in stages)
    assert "download.pytorch.org/whl/cpu" in text and "torch==2.13.0" in text
    # The project itself: a regular install, runtime extras only.
    (project,) = re.findall(r"pip install --no-cache-dir '\.\[([a-z,]*)\]'", text)
    assert not {"dev", "bench", "pretrained"} & set(project.split(","))
    assert not re.search(r"pip install[^\n]*(-e|--editable)\b", text)
    assert re.search(r"^USER 10001", text, re.M)
    # Every path the builder copies is sent by the build context (not excluded by .dockerignore).
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "artifacts", ".git", "**/__pycache__", "tests"} <= ignored
    copies = [line.split()[1:-1] for line in text.splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    assert ["pyproject.toml", "README.md"] in copies
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    copied = {s for sources in copies for s in sources}
    for pattern in packages["include"]:
        assert pattern.rstrip("*") in copied, f"the image would install without package {pattern}"
    for source in (s for sources in copies for s in sources):
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") not in ignored, f"{source} is copied but .dockerignore excludes it"
