"""Which rows of a --queries file are scored, against which catalog query, with which graded judgments.

Query matching: a row of --queries is scored against catalog query `query_id` when that id exists in the
catalog's query.csv with the same (case/space-normalised) text; otherwise against the catalog row with the
same normalised text and class. A repeated query_id is scored once (first row), as the catalog judges it.
Rows with no catalog match, or whose catalog query has no Exact/Partial label, are skipped and listed in
the report (`skipped_queries`), never scored 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from training.splits import normalise_query

SPLITS = ("all", "train", "val", "dev")


@dataclass(frozen=True)
class EvalQueries:
    queries: pd.DataFrame  # key, query_id (catalog's), query, query_class, split: the rows that are scored
    qrels: dict[str, dict[str, int]]  # key -> {item id: gain > 0}
    skipped: dict[str, list[int]]  # reason -> query_ids of the --queries file

    @property
    def skipped_count(self) -> int:
        return sum(len(v) for v in self.skipped.values())


def match_queries(file_queries: pd.DataFrame, catalog_queries: pd.DataFrame) -> pd.Series:
    """Per file row, the catalog query_id it is scored against (<NA> when none); see the module docstring."""
    by_id: dict[int, str] = {}
    for qid, text in zip(catalog_queries["query_id"], catalog_queries["query"], strict=True):
        by_id.setdefault(int(qid), normalise_query(text))  # a repeated id is judged from its first row
    by_text: dict[tuple[str, str], int] = {}
    cols = ("query_id", "query", "query_class")
    for qid, text, cls in zip(*(catalog_queries[c] for c in cols), strict=True):
        by_text.setdefault((normalise_query(text), normalise_query(cls)), int(qid))
    out = []
    for qid, text, cls in zip(*(file_queries[c] for c in cols), strict=True):
        if by_id.get(int(qid)) == normalise_query(text):
            out.append(int(qid))
        else:
            out.append(by_text.get((normalise_query(text), normalise_query(cls)), pd.NA))
    return pd.Series(out, index=file_queries.index, dtype="Int64")


def graded_qrels(labels: pd.DataFrame, query_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """query_id -> {product id (str): gain} for Exact (2) and Partial (1); Irrelevant is left out (gain 0)."""
    from catalog.io import LABEL_GAIN
    wanted = labels[labels["query_id"].isin(set(query_ids))]
    gains = wanted["label"].map(LABEL_GAIN).fillna(0).astype(int)
    out: dict[int, dict[str, int]] = {}
    for qid, pid, gain in zip(wanted["query_id"], wanted["product_id"], gains, strict=True):
        if gain > 0:
            docs = out.setdefault(int(qid), {})
            docs[str(int(pid))] = max(int(gain), docs.get(str(int(pid)), 0))
    return out


def select_queries(
    file_queries: pd.DataFrame, catalog_queries: pd.DataFrame, labels: pd.DataFrame, split: str = "all"
) -> EvalQueries:
    """The file's queries in `split` that can be scored, their qrels, and the skipped ones by reason."""
    from training.splits import split_labels

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = file_queries.assign(query_class=file_queries["query_class"].fillna(""))
    skipped: dict[str, list[int]] = {}
    dup = rows["query_id"].duplicated(keep="first")
    if dup.any():
        skipped["duplicate_query_id"] = rows.loc[dup, "query_id"].astype(int).tolist()
    rows = rows[~dup].assign(split=split_labels(rows[~dup]))
    if split != "all":
        rows = rows[rows["split"] == split]
    rows = rows.assign(catalog_id=match_queries(rows, catalog_queries))
    missing = rows["catalog_id"].isna()
    if missing.any():
        skipped["not_in_catalog"] = rows.loc[missing, "query_id"].astype(int).tolist()
    rows = rows[~missing]
    qrels_by_id = graded_qrels(labels, rows["catalog_id"].astype(int).tolist())
    judged = rows["catalog_id"].astype(int).isin(set(qrels_by_id))
    if (~judged).any():
        skipped["no_relevant_labels"] = rows.loc[~judged, "query_id"].astype(int).tolist()
    rows = rows[judged]
    # Keyed by the file's query_id: unique after dropping repeats, and what a reader looks up.
    keys = rows["query_id"].astype(int).astype(str).tolist()
    scored = pd.DataFrame({
        "key": keys,
        "query_id": rows["catalog_id"].astype(int).to_numpy(),
        "query": rows["query"].to_numpy(),
        "query_class": rows["query_class"].to_numpy(),
        "split": rows["split"].to_numpy(),
    })
    qrels = {k: qrels_by_id[int(c)] for k, c in zip(keys, scored["query_id"], strict=True)}
    return EvalQueries(scored, qrels, skipped)
