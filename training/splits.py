"""Fixed query split for reranker training and evaluation.

Rule (applied to any WANDS-style query file; each query's fate depends only on its own class and
text, so adding or reordering rows never moves another query):

1. ``dev`` (~20% of queries; never read by training):
   - every query of a *held-out product class*: ``u("class", query_class) < DEV_CLASS_FRACTION``
     (~10% of classes, so dev measures generalisation to unseen classes), plus
   - every query without a class (five WANDS queries): its own row cannot show that its class is not
     held out, and the one the catalog infers may be ("wand bunk beds" is Kids Beds, a dev class, and
     trained as one until session 13), plus
   - any other query with ``u("dev", query) < DEV_QUERY_FRACTION`` (~12%).
2. ``val`` (~15% of the rest; early stopping and reporting): ``u("val", query) < VAL_FRACTION``.
3. ``train``: everything else.

``u(salt, text)`` maps ``sha1(salt + ":" + normalised text)`` to [0, 1). Normalisation (strip,
lower-case, collapse spaces) keeps duplicate query strings together, so a query can't leak from
train into dev through a spelling variant of its case or spacing.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

DEV_CLASS_FRACTION = 0.10
DEV_QUERY_FRACTION = 0.12
VAL_FRACTION = 0.15
SPLITS = ("train", "val", "dev")


def normalise_query(text: str) -> str:
    """Strip, lower-case and collapse spaces: the form two spellings of one query share."""
    return " ".join(str(text).lower().split())


def unit_hash(salt: str, text: str) -> float:
    """Stable (process- and platform-independent) hash of ``text`` into [0, 1)."""
    digest = hashlib.sha1(f"{salt}:{normalise_query(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(query: str, query_class: str) -> str:
    """The split of one query (``train`` / ``val`` / ``dev``)."""
    query_class = class_name(query_class)
    if (not query_class.strip() or unit_hash("class", query_class) < DEV_CLASS_FRACTION
            or unit_hash("dev", query) < DEV_QUERY_FRACTION):
        return "dev"
    return "val" if unit_hash("val", query) < VAL_FRACTION else "train"


def split_labels(queries: pd.DataFrame) -> np.ndarray:
    """Per-row split name for a frame with ``query`` and ``query_class`` columns."""
    return np.array(
        [assign_split(q, c) for q, c in zip(queries["query"], queries["query_class"], strict=True)],
        dtype=object,
    )


def class_name(query_class: object) -> str:
    """A ``query_class`` as a string; a missing one (NaN, None) is the empty class."""
    return "" if pd.isna(query_class) else str(query_class)


def class_names(queries: pd.DataFrame) -> pd.Series:
    """Each row's ``query_class`` as a string (`class_name`)."""
    return queries["query_class"].map(class_name)


def train_class_mask(queries: pd.DataFrame, fraction: float, salt: str) -> np.ndarray:
    """Train-split rows whose class falls in a ``fraction`` of classes, drawn by a hash of the class name
    with ``salt`` (so a smaller fraction's classes are among a larger one's). Other splits: False."""
    train = split_labels(queries) == "train"
    return train & np.array([unit_hash(salt, c) < fraction for c in class_names(queries)], dtype=bool)


def held_out_class_mask(queries: pd.DataFrame, fraction: float) -> np.ndarray:
    """Train-split rows of a ``fraction`` of classes (own salt): a stand-in for unseen classes that
    selection may read, since dev's unseen classes are spent. Other splits: False."""
    return train_class_mask(queries, fraction, "holdout")


def split_queries(queries: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{"train", "val", "dev"}`` -> the rows of ``queries`` in that split, sorted by query_id."""
    names = split_labels(queries)
    out = {}
    for name in SPLITS:
        part = queries[names == name]
        out[name] = part.sort_values("query_id", kind="stable") if "query_id" in part else part
    return out
