"""List-aware relevance: a small learned head over each candidate's scores *and the list it sits in*.

The cross-encoder scores one (query, item) pair at a time. Two signals only the whole candidate list
carries:

- **class intent.** Where the query's strongest matches concentrate by product class: pseudo-relevance
  feedback on the catalog taxonomy, i.e. query classification from the result set. "gold", "oliver
  parsons" or "seat cushions desk" name no product type, and many items of many classes hold every
  query word; the class that most of the best-scored candidates share is the one the shopper means.
- **retrieval order**, which breaks the cross-encoder's ties (the word-MaxSim prior gives every item
  holding all the query's words the same score).

Every feature is a normalised score, a rank or a *share* of the list, never a class's identity, so the
head carries over to classes and queries it never saw (the dev split holds out whole classes). The head
is an MLP of a few hundred weights, fitted per reranker model (`training.list_fusion`) and saved
beside it as JSON; serving is a handful of numpy operations on ≤ 1000 candidates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from catalog.io import class_parts
from pipeline.match_features import MATCH_FEATURES, MatchFeatures

LIST_FEATURES = (
    "rerank",  # the cross-encoder's raw score: "holds every query word" is an absolute level
    "rerank_minmax",
    "retrieval_minmax",
    "retrieval_rank",  # position in the retrieval order / list length
    "class_share",  # share of the list in the item's class
    "class_mass_t5",  # share of softmax(5·base) mass in the item's class
    "class_mass_t20",  # the same, sharper: only the best-scored candidates count
    "class_top20",  # share of the top 20 by base score in the item's class
)
FEATURES = LIST_FEATURES + MATCH_FEATURES
BASE_RETRIEVAL_WEIGHT = 0.25  # base = minmax(rerank) + w·minmax(retrieval): the pre-fusion relevance
TOP = 20
FILE_NAME = "list_fusion.json"
REPORT_FILE = "list_fusion_report.json"  # written by every fit; `kept` says whether the head shipped


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the list; a constant list maps to ones."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return np.ones_like(x) if hi - lo < 1e-12 else (x - lo) / (hi - lo)


def base_relevance(rerank: np.ndarray, retrieval: np.ndarray, weight: float = BASE_RETRIEVAL_WEIGHT
                   ) -> np.ndarray:
    """minmax(rerank) + weight·minmax(retrieval): what the class-intent features are weighted by, and
    the pipeline's relevance when there is no head (with `Settings.rerank_retrieval_weight`)."""
    return minmax(rerank) + weight * minmax(retrieval)


def class_code_matrix(categories: Sequence[str], sep: str = "|") -> np.ndarray:
    """(n, k) int class ids per item, -1 padded: a multi-valued class (``A|B``, as WANDS has) gives
    several, an empty one none (an item of no class carries no class evidence)."""
    names = [class_parts(cat, sep) for cat in categories]
    ids: dict[str, int] = {}
    width = max((len(n) for n in names), default=0) or 1
    out = np.full((len(names), width), -1, dtype=np.int64)
    for i, row in enumerate(names):
        out[i, : len(row)] = [ids.setdefault(c, len(ids)) for c in row]
    return out


def _class_totals(classes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per item, the largest total of ``weights`` over the list's items sharing one of its classes."""
    valid = classes >= 0
    rows = np.nonzero(valid)[0]
    _, inv = np.unique(classes[valid], return_inverse=True)
    totals = np.bincount(inv, weights=weights[rows])
    per = np.zeros(classes.shape)
    per[valid] = totals[inv]
    return per.max(axis=1)


def list_features(
    rerank: np.ndarray, retrieval: np.ndarray, classes: np.ndarray, match: np.ndarray
) -> np.ndarray:
    """(n, len(FEATURES)) float32 features of one candidate list, in retrieval order.

    ``rerank``/``retrieval``: the two stages' scores per candidate; ``classes``: (n,) or (n, k) integer
    class ids per candidate (`class_code_matrix`; -1 pads, only equality is used); ``match``: the
    candidates' `MatchFeatures.features` rows, appended as they are.
    """
    rerank = np.asarray(rerank, dtype=np.float64).reshape(-1)
    retrieval = np.asarray(retrieval, dtype=np.float64).reshape(-1)
    match = np.asarray(match, dtype=np.float32).reshape(-1, len(MATCH_FEATURES))
    classes = np.asarray(classes)
    classes = classes[:, None] if classes.ndim == 1 else classes
    n = rerank.size
    if not (retrieval.size == n == len(classes) == len(match)):
        raise ValueError(f"list_features: {n} rerank, {retrieval.size} retrieval, "
                         f"{len(classes)} class, {len(match)} match rows")
    out = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return out
    base = base_relevance(rerank, retrieval)
    share = _class_totals(classes, np.ones(n)) / n
    cols = [rerank, minmax(rerank), minmax(retrieval), np.arange(n) / n, share]
    for tau in (5.0, 20.0):
        w = np.exp(tau * (base - base.max()))
        cols.append(_class_totals(classes, w) / w.sum())
    top = np.zeros(n)
    top[np.argsort(-base, kind="stable")[:TOP]] = 1.0 / min(TOP, n)
    cols.append(_class_totals(classes, top))
    out[:, : len(LIST_FEATURES)] = np.stack(cols, axis=1)
    out[:, len(LIST_FEATURES) :] = match
    return out


@dataclass(frozen=True, eq=False)
class ListFusion:
    """relevance = relu(((x - mean) / scale) @ w1 + b1) @ w2 + b2 over `list_features` rows."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    w1: np.ndarray  # (F, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H,)
    b2: float
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        if self.features != FEATURES:
            raise ValueError(f"list fusion was fitted on features {self.features}, this build has {FEATURES}")
        f, h = self.w1.shape
        shapes = (self.mean.shape, self.scale.shape, self.b1.shape, self.w2.shape)
        if shapes != ((f,), (f,), (h,), (h,)):
            raise ValueError("list fusion weights have inconsistent shapes")
        if f != len(FEATURES):
            raise ValueError(f"list fusion expects {f} features, list_features gives {len(FEATURES)}")

    def score(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, dtype=np.float32) - self.mean) / self.scale
        return (np.maximum(x @ self.w1 + self.b1, 0.0) @ self.w2 + self.b2).astype(np.float32)

    def to_json(self) -> dict:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(), "scale": self.scale.tolist(),
            "w1": self.w1.tolist(), "b1": self.b1.tolist(), "w2": self.w2.tolist(), "b2": float(self.b2),
        }

    @classmethod
    def from_json(cls, obj: dict) -> ListFusion:
        def arr(key: str) -> np.ndarray:
            return np.asarray(obj[key], dtype=np.float32)

        return cls(arr("mean"), arr("scale"), arr("w1"), arr("b1"), arr("w2"), float(obj["b2"]),
                   tuple(obj["features"]))

    def save(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_json()))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> ListFusion:
        return cls.from_json(json.loads(Path(path).read_text()))


def head_is_current(path: Path) -> bool:
    """Whether ``path`` holds a head fitted on this build's features (else it must be refitted)."""
    try:
        ListFusion.load(path)
    except (OSError, ValueError, KeyError):
        return False
    return True


def head_is_decided(model_dir: Path) -> bool:
    """Whether a head was fitted for ``model_dir`` on this build's features: shipped (current) or
    declined because it did not beat the blend on val (then serving blends, and nothing is refitted)."""
    model_dir = Path(model_dir)
    if head_is_current(model_dir / FILE_NAME):
        return True
    try:
        report = json.loads((model_dir / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return False
    return report.get("kept") is False and report.get("features") == list(FEATURES)


class Fuser(Protocol):
    """The fuse stage: relevance (higher is better) of the reranked candidates, from both stages' scores."""

    def relevance(self, query: str, item_ids: np.ndarray, rerank: np.ndarray, retrieval: np.ndarray
                  ) -> np.ndarray: ...


@dataclass(frozen=True)
class BlendFusion:
    """No head: minmax(rerank) + weight·minmax(retrieval) (`base_relevance`); weight 0 keeps the reranker's
    scores as they are. The retrieval score orders items the reranker ties (the word-MaxSim prior gives
    every item that holds all the query's words the same score) and gives MMR graded relevance."""

    weight: float = BASE_RETRIEVAL_WEIGHT

    def relevance(self, query: str, item_ids: np.ndarray, rerank: np.ndarray, retrieval: np.ndarray
                  ) -> np.ndarray:
        return rerank if self.weight <= 0 else base_relevance(rerank, retrieval, self.weight)


class FusionStage:
    """The fused relevance of a fitted list-fusion head, plus the catalog-side inputs its features need."""

    def __init__(self, head: ListFusion, texts: Sequence[str], categories: Sequence[str]) -> None:
        self.head = head
        self.match = MatchFeatures(texts)
        self.class_codes = class_code_matrix(categories)

    def relevance(self, query: str, item_ids: np.ndarray, rerank: np.ndarray, retrieval: np.ndarray
                  ) -> np.ndarray:
        """Relevance (higher is better) of the candidates ``item_ids``, given both stages' scores."""
        match = self.match.features(query, item_ids)
        return self.head.score(list_features(rerank, retrieval, self.class_codes[item_ids], match))


def select_fusion(model_dir: Path, texts: Sequence[str], categories: Sequence[str], *, use_head: bool,
                  weight: float) -> Fuser:
    """The model's list-fusion head when it ships one (and `use_head`), else the blend at `weight`."""
    path = Path(model_dir) / FILE_NAME
    if use_head and path.exists():
        return FusionStage(ListFusion.load(path), texts, categories)
    return BlendFusion(weight)
