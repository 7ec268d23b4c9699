"""`pip-audit` over the installed server environment: every known vulnerability is fixed or listed, with
the reason it cannot affect us, in deploy/tools/audit-ignore.txt.

It needs the vulnerability service (PyPI's JSON API). Where only a package index is reachable, as on
these machines, pip-audit finds no package there and audits nothing: the test then skips saying so,
rather than pass on an audit that never happened.
"""

from __future__ import annotations

import json
import sys
import sysconfig

import pytest

from tests.unit.deploy.manifests import DEPLOY, run, tool

IGNORE_FILE = DEPLOY / "tools" / "audit-ignore.txt"


def ignored() -> set[str]:
    return {line.split("#", 1)[0].strip() for line in IGNORE_FILE.read_text().splitlines()} - {""}


def test_the_installed_environment_has_no_unlisted_vulnerability() -> None:
    site = sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.prefix})["purelib"]
    out = run([tool("pip-audit"), "--progress-spinner", "off", "--format", "json", "--path", site],
              timeout=600)
    report = json.loads(out.stdout or "{}")
    deps = report.get("dependencies", [])
    assert deps, out.stderr[-2000:]
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        pytest.skip(f"pip-audit could audit none of {len(deps)} packages (vulnerability service "
                    f"unreachable: {deps[0]['skip_reason']})")
    found = {(d["name"], d["version"], v["id"]) for d in audited for v in d.get("vulns", [])}
    unlisted = sorted(f for f in found if f[2] not in ignored())
    assert not unlisted, f"vulnerable packages, fix or list in {IGNORE_FILE.name}: {unlisted}"
