"""The canary analysis (deploy/base/analysis-template.yaml): what it measures must exist in the server's
metrics (server/metrics.py), its conditions must pass, fail and stay inconclusive when they should, and
the Rollout must hand it both tracks' pod-template hashes."""

from __future__ import annotations

import math
import re

import grpc
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from feedback.events import AppendResult, Event, EventType
from server.metrics import Metrics
from tests.unit.deploy.manifests import Doc, docs, one

ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
# Labels Prometheus adds when it scrapes a pod (docs/deploy.md), not the server.
SCRAPE_LABELS = {"namespace", "rollouts_pod_template_hash"}
# Server-side failures; a client's own mistakes or cancellations must not fail a canary.
CLIENT_CODES = {"OK", "CANCELLED", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
                "UNAUTHENTICATED", "FAILED_PRECONDITION", "OUT_OF_RANGE"}
REQUIRED = ("error-rate", "p99-latency", "degraded-rate", "ctr")


def _template() -> Doc:
    return one(docs("prod"), "AnalysisTemplate")


def _metrics() -> dict[str, Doc]:
    return {m["name"]: m for m in _template()["spec"]["metrics"]}


def _selectors(query: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Every `name{matchers}` selector of a query, its {{args.*}} filled in."""
    filled = ARG.sub("x", query)
    return [(name, MATCHER.findall(body)) for name, body in SELECTOR.findall(filled)]


def _exposition() -> list[tuple[str, dict[str, str]]]:
    """The samples a server exposes after a little of everything the analysis reads."""
    m = Metrics()
    for code in (grpc.StatusCode.OK, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        m.requests.labels(code.name).inc()
    m.latency.observe(0.02)
    m.degraded.labels("reranker_unavailable").inc()
    events = tuple(Event(f"e{t}", "r1", "u1", 7, t, 1, 0) for t in (EventType.IMPRESSION, EventType.CLICK))
    m.committed(AppendResult(new=events, duplicates=0), 0.001)
    families = text_string_to_metric_families(generate_latest(m.registry).decode())
    return [(s.name, s.labels) for f in families for s in f.samples]


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        if name in SCRAPE_LABELS:
            continue
        have = labels.get(name, "")
        ok = {"=": have == value, "!=": have != value, "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


def _evaluate(condition: str, result: list[float]) -> bool:
    """An Argo Rollouts condition (github.com/expr-lang/expr syntax, as used here) in Python."""
    py = condition.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py).replace("isNaN(", "isnan(")
    return bool(eval(py, {"__builtins__": {}}, {"result": result, "len": len, "isnan": math.isnan}))


def _phase(metric: Doc, result: list[float]) -> str:
    success = _evaluate(metric["successCondition"], result) if "successCondition" in metric else None
    failure = _evaluate(metric["failureCondition"], result) if "failureCondition" in metric else None
    if success is None:
        success = not failure
    if failure is None:
        failure = not success
    return "Failed" if failure else ("Successful" if success else "Inconclusive")


def test_the_analysis_covers_errors_latency_degradation_and_ctr() -> None:
    metrics = _metrics()
    assert set(REQUIRED) <= set(metrics)
    for name in REQUIRED:
        m = metrics[name]
        assert "failureCondition" in m or "successCondition" in m, name
        assert int(m["failureLimit"]) <= 2 and int(m["count"]) >= 3, name
        assert m["provider"]["prometheus"]["query"].strip(), name


@pytest.mark.parametrize("name", REQUIRED)
def test_every_query_compares_canary_with_stable_on_real_series(name: str) -> None:
    query = _metrics()[name]["provider"]["prometheus"]["query"]
    assert "{{args.canary-hash}}" in query and "{{args.stable-hash}}" in query
    samples = _exposition()
    for metric, matchers in _selectors(query):
        labels = {label for label, _, _ in matchers}
        assert {"namespace", "rollouts_pod_template_hash"} <= labels, f"{metric}: not per track"
        found = [s for s, lab in samples if s == metric and _matches(lab, matchers)]
        assert found, f"{name}: no series of the server matches {metric}{{{matchers}}}"


def test_error_codes_are_grpc_server_failures() -> None:
    query = _metrics()["error-rate"]["provider"]["prometheus"]["query"]
    codes = {v for _, matchers in _selectors(query) for label, op, v in matchers if label == "code"}
    assert codes, "the error rate selects no status codes"
    names = {c.name for c in grpc.StatusCode}
    for regex in codes:
        listed = set(regex.split("|"))
        assert listed <= names, f"not gRPC status names: {listed - names}"
        assert not listed & CLIENT_CODES
        assert {"INTERNAL", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"} <= listed


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("error-rate", 0.0, 0.2), ("p99-latency", 1.0, 3.0), ("degraded-rate", 0.0, 0.5), ("ctr", 1.0, 0.5)])
def test_conditions_pass_fail_and_wait(name: str, good: float, bad: float) -> None:
    m = _metrics()[name]
    assert _phase(m, [good]) == "Successful"
    assert _phase(m, [bad]) == "Failed"
    # Too little canary traffic (no sample) or 0/0: errors, latency and degradation wait for a person;
    # CTR does not hold a rollout up for want of feedback.
    expected = "Successful" if name == "ctr" else "Inconclusive"
    assert _phase(m, []) == expected
    assert _phase(m, [math.nan]) == expected
    # One threshold: no measured value is both a success and a failure.
    for x in (i / 200 for i in range(1001)):
        assert not (_evaluate(m["successCondition"], [x]) and _evaluate(m["failureCondition"], [x])), x


def test_rollout_hands_the_analysis_every_argument() -> None:
    documents = docs("prod")
    template = one(documents, "AnalysisTemplate")
    needed = {a["name"] for a in template["spec"]["args"] if "value" not in a}
    declared = {a["name"] for a in template["spec"]["args"]}
    for metric in template["spec"]["metrics"]:
        used = set(ARG.findall(str(metric)))
        assert used <= declared, f"{metric['name']}: undeclared {used - declared}"
    steps = one(documents, "Rollout")["spec"]["strategy"]["canary"]["steps"]
    analyses = [s["analysis"] for s in steps if "analysis" in s]
    assert analyses
    for step in analyses:
        passed = {a["name"]: a.get("valueFrom", {}) for a in step["args"]}
        assert needed <= set(passed)
        assert passed["stable-hash"] == {"podTemplateHashValue": "Stable"}
        assert passed["canary-hash"] == {"podTemplateHashValue": "Latest"}
        assert passed["namespace"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
