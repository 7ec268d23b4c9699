"""A/B experiments: named experiments, each splitting traffic over arms that override request defaults.

An experiments file (YAML or TOML) lists experiments and their arms:

    experiments:
      - name: diversity
        arms:
          - {name: control, share: 0.5}
          - {name: more-diverse, share: 0.5, mmr_lambda: 0.7}

An arm may set ``mmr_lambda``, ``candidates``, ``personal_weight`` and ``model_version`` (a reranker
version in the Triton repository, e.g. "2" after `rankserve model stage`; the server loads it beside
the default at start, and refuses to start when it cannot). A request is in one arm of every
experiment: the arm of ``hash(experiment name, unit)``, where the unit is the user id, or the request
id when there is no user, so a user stays in one arm. Several experiments are independent layers (their
own hash), so no two may override the same field. What the request sets explicitly wins over its
arm: an arm changes defaults, never a client's stated wish.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

OVERRIDES = ("mmr_lambda", "candidates", "personal_weight", "model_version")


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    share: float = Field(gt=0, le=1)
    mmr_lambda: float | None = Field(None, ge=0, le=1)
    candidates: int | None = Field(None, ge=1)
    personal_weight: float | None = Field(None, ge=0)
    model_version: str | None = None

    def overrides(self) -> dict[str, object]:
        return {k: v for k in OVERRIDES if (v := getattr(self, k)) is not None}


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    arms: list[Arm] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        total = sum(a.share for a in self.arms)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"experiment {self.name!r}: arm shares add up to {total:g}, not 1")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name!r}: arm names repeat")
        return self

    def assign(self, unit: str) -> Arm:
        """The arm of ``unit`` (user id, or request id): a stable hash into the cumulative shares."""
        digest = hashlib.sha1(f"{self.name}\0{unit}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        edge = 0.0
        for arm in self.arms:
            edge += arm.share
            if u < edge:
                return arm
        return self.arms[-1]  # shares summing to 1 within rounding


class ExperimentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiments: list[Experiment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError("experiment names repeat")
        owner: dict[str, str] = {}
        for e in self.experiments:
            for field in {k for a in e.arms for k in a.overrides()}:
                if field in owner:
                    raise ValueError(f"experiments {owner[field]!r} and {e.name!r} both set {field}: "
                                     "independent layers must not override the same field")
                owner[field] = e.name
        return self


@dataclass(frozen=True)
class Assignment:
    """A request's arms: the overrides they set, and the label echoed in `Summary.variant`."""

    overrides: dict[str, object]
    variant: str  # "experiment/arm" per experiment, joined by ";" ("" without experiments)


class Experiments:
    def __init__(self, spec: ExperimentsFile) -> None:
        self.spec = spec

    @classmethod
    def load(cls, path: Path, *, max_candidates: int | None = None) -> Experiments:
        """Read a YAML (.yaml/.yml) or TOML (.toml) experiments file; ValueError names what is wrong.

        ``max_candidates``: the server's limit. An arm asking for more would be served the limit under
        its own name, so two arms could serve the same setting: refused.
        """
        path = Path(path)
        text = path.read_text()
        try:
            data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
            spec = ExperimentsFile.model_validate(data or {})
        except (ValueError, yaml.YAMLError) as e:  # TOMLDecodeError is a ValueError; YAMLError is not
            raise ValueError(f"{path}: {e}") from None
        for e in spec.experiments:
            for a in e.arms:
                if max_candidates is not None and a.candidates is not None and a.candidates > max_candidates:
                    raise ValueError(f"{path}: experiment {e.name!r}, arm {a.name!r}: candidates "
                                     f"{a.candidates} exceeds the server's max_candidates {max_candidates}")
        return cls(spec)

    @property
    def experiments(self) -> list[Experiment]:
        return self.spec.experiments

    def assign(self, user_id: str, request_id: str) -> Assignment:
        unit = user_id or request_id
        overrides: dict[str, object] = {}
        labels = []
        for e in self.experiments:
            arm = e.assign(unit)
            overrides |= arm.overrides()
            labels.append(f"{e.name}/{arm.name}")
        return Assignment(overrides, ";".join(labels))
