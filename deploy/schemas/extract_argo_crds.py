"""Extract the openAPIV3Schema of Argo Rollouts CRDs into one small JSON file (kind -> schema).

Only what validation needs: the served version's schema without `status` (never in a manifest) and
without `description` (most of the size). Run from a checkout of argoproj/argo-rollouts at a tag:

    python deploy/schemas/extract_argo_crds.py --version v1.9.1 \
        manifests/crds/rollout-crd.yaml manifests/crds/analysis-template-crd.yaml \
        > deploy/schemas/argo-rollouts-v1.9.1.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def extract(crd: dict[str, Any], version: str = "v1alpha1") -> tuple[str, dict[str, Any]]:
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = dict(served["schema"]["openAPIV3Schema"])
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k != "status"}
    return crd["spec"]["names"]["kind"], _strip(schema)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="the argo-rollouts tag the CRDs come from")
    parser.add_argument("crds", nargs="+", type=Path)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {
        "source": f"github.com/argoproj/argo-rollouts {args.version} manifests/crds "
                  f"({', '.join(p.name for p in args.crds)}), openAPIV3Schema of v1alpha1, "
                  "without status and descriptions",
        "kinds": dict(extract(yaml.safe_load(p.read_text())) for p in args.crds),
    }
    json.dump(out, sys.stdout, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
