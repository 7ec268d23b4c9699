"""Experiments files: validation naming what is wrong, stable assignment by user, shares respected."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline.experiments import Experiments

YAML = """
experiments:
  - name: diversity
    arms:
      - {name: control, share: 0.7}
      - {name: diverse, share: 0.3, mmr_lambda: 0.5}
  - name: depth
    arms:
      - {name: c100, share: 0.5}
      - {name: c50, share: 0.5, candidates: 50, personal_weight: 2.0}
"""


def load(tmp_path: Path, text: str, suffix: str = ".yaml") -> Experiments:
    path = tmp_path / f"exp{suffix}"
    path.write_text(text)
    return Experiments.load(path)


def test_assignment_is_stable_per_user_and_follows_the_shares(tmp_path: Path) -> None:
    exp = load(tmp_path, YAML)
    a = exp.assign("user-7", "req-1")
    assert a == exp.assign("user-7", "req-2")  # the user, not the request, decides
    assert a.variant.count(";") == 1 and a.variant.startswith("diversity/")
    arms = Counter(exp.assign(f"u{i}", "").variant.split(";")[0] for i in range(4000))
    assert arms["diversity/diverse"] / 4000 == pytest.approx(0.3, abs=0.03)
    # No user: the request id is the unit.
    variants = {exp.assign("", f"r{i}").variant for i in range(50)}
    assert len(variants) == 4
    diverse = next(exp.assign(f"u{i}", "") for i in range(100)
                   if exp.assign(f"u{i}", "").variant.startswith("diversity/diverse"))
    assert diverse.overrides["mmr_lambda"] == 0.5


def test_two_model_versions_split_ten_thousand_users_by_their_shares(tmp_path: Path) -> None:
    exp = load(tmp_path, """
experiments:
  - name: reranker
    arms:
      - {name: stable, share: 0.8, model_version: "1"}
      - {name: canary, share: 0.2, model_version: "2"}
""")
    users = [f"shopper-{i}" for i in range(10_000)]
    first = {u: exp.assign(u, "") for u in users}
    versions = Counter(a.overrides["model_version"] for a in first.values())
    assert versions["1"] / 10_000 == pytest.approx(0.8, abs=0.02)
    assert versions["2"] / 10_000 == pytest.approx(0.2, abs=0.02)
    assert all(exp.assign(u, f"another-request-{i}") == first[u] for i, u in enumerate(users))


def test_toml_reads_the_same(tmp_path: Path) -> None:
    toml = """
[[experiments]]
name = "diversity"
[[experiments.arms]]
name = "control"
share = 0.7
[[experiments.arms]]
name = "diverse"
share = 0.3
mmr_lambda = 0.5
"""
    exp = load(tmp_path, toml, ".toml")
    assert [a.name for a in exp.experiments[0].arms] == ["control", "diverse"]
    assert exp.assign("user-7", "").variant == load(tmp_path, YAML).assign("user-7", "").variant.split(";")[0]


@pytest.mark.parametrize(("text", "message"), [
    ("experiments:\n  - name: x\n    arms: [{name: a, share: 0.6}, {name: b, share: 0.6}]", "add up to 1.2"),
    ("experiments:\n  - name: x\n    arms: [{name: a, share: 1.0, mmr_lambda: 2}]", "mmr_lambda"),
    ("experiments:\n  - name: x\n    arms: [{name: a, share: 1.0, colour: red}]", "colour"),
    ("experiments:\n  - name: x\n    arms: [{name: a, share: 0.5}, {name: a, share: 0.5}]", "repeat"),
    ("experiments:\n  - name: x\n    arms: [{name: a, share: 1, candidates: 5}]\n"
     "  - name: y\n    arms: [{name: b, share: 1, candidates: 9}]", "both set candidates"),
    ("experiments:\n  - name: x\n    arms: [{name: a, share: 1.0}\n", "flow sequence"),  # YAML syntax
])
def test_bad_files_are_refused_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load(tmp_path, text)
    assert "exp.yaml" in str(info.value)


def test_an_arm_asking_for_more_candidates_than_the_server_allows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("experiments:\n  - name: x\n    arms: [{name: wide, share: 1, candidates: 5000}]\n")
    with pytest.raises(ValueError, match="'x', arm 'wide': candidates 5000 exceeds the server's max_cand"):
        Experiments.load(path, max_candidates=1000)
    assert Experiments.load(path, max_candidates=5000).experiments[0].arms[0].candidates == 5000
