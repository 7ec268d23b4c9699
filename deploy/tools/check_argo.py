"""Validate the Argo Rollouts resources of rendered manifests offline (run with .venv-deploy's python).

- Each argoproj.io document against its CRD's openAPIV3Schema (deploy/schemas/), strictly: a field the
  schema does not name is an error, as `kubectl apply` (field validation Strict) would make it.
- Each Prometheus query of an AnalysisTemplate parses as PromQL once its {{args.*}} are filled in.

    kubectl kustomize deploy/overlays/prod | .venv-deploy/bin/python deploy/tools/check_argo.py -

Prints one JSON object ({"checked": [...], "errors": [...]}) and exits 1 when there are errors.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import yaml

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "argo-rollouts-v1.9.1.json"
ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def strict(schema: Any) -> Any:
    """The schema with unknown properties forbidden wherever it lists properties (as the API server's
    strict field validation does), except where the CRD preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) if k not in ("properties", "enum", "required") else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def _where(error: jsonschema.ValidationError) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(root)"


def check(docs: list[dict[str, Any]], schemas: dict[str, Any]) -> tuple[list[str], list[str]]:
    checked: list[str] = []
    errors: list[str] = []
    for doc in docs:
        if not str(doc.get("apiVersion", "")).startswith("argoproj.io/"):
            continue
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        checked.append(name)
        schema = schemas.get(doc.get("kind"))
        if schema is None:
            errors.append(f"{name}: no schema for kind {doc.get('kind')!r} in {SCHEMAS.name}")
            continue
        validator = jsonschema.Draft7Validator(strict(schema))
        errors += [f"{name}: {_where(e)}: {e.message}" for e in validator.iter_errors(doc)]
        if doc.get("kind") == "AnalysisTemplate":
            errors += _check_queries(name, doc)
    return checked, errors


def _check_queries(name: str, doc: dict[str, Any]) -> list[str]:
    errors = []
    declared = {a["name"] for a in doc.get("spec", {}).get("args", [])}
    for metric in doc.get("spec", {}).get("metrics", []):
        query = metric.get("provider", {}).get("prometheus", {}).get("query")
        if query is None:
            continue
        where = f"{name}: metric {metric.get('name')}"
        used = set(ARG.findall(json.dumps(metric)))
        errors += [f"{where}: undeclared argument {a!r}" for a in sorted(used - declared)]
        try:
            promql_parser.parse(ARG.sub("x0", query))
        except ValueError as e:
            errors.append(f"{where}: PromQL does not parse: {e}")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+", help="rendered YAML files, or - for stdin")
    parser.add_argument("--schemas", type=Path, default=SCHEMAS)
    args = parser.parse_args(argv)
    schemas = json.loads(args.schemas.read_text())["kinds"]
    docs = []
    for path in args.manifests:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        docs += [d for d in yaml.safe_load_all(text) if d]
    checked, errors = check(docs, schemas)
    json.dump({"checked": checked, "errors": errors}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 1 if errors or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
