"""Training-list sampling: one short graded list per train query, plus the negatives that make it hard.

A list holds 1-2 Exact, 2 Partial and the rest Irrelevant items (optionally one mined hard negative),
either from the builder's judged lists or from the served retriever's candidates (training.mining).
Every draw takes its randomness from the caller's generator, so a seed fixes the whole run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class ListSampler:
    """Samples one fixed-size graded list per train query."""

    lists: dict[int, tuple[str, dict[int, np.ndarray]]]  # qid -> (query, rel -> product ids)
    mined: dict[int, np.ndarray]  # qid -> hard-negative candidates
    list_size: int = 8
    # qid -> rel -> product ids among the served retriever's candidates (training.mining)
    candidates: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    candidate_fraction: float = 0.0  # share of lists drawn from `candidates`

    @classmethod
    def from_judgments(
        cls, judged: pd.DataFrame, product_class: np.ndarray | None, *, list_size: int = 8, mine: bool = True,
        all_class_negatives: bool = False,
    ) -> ListSampler:
        if list_size < 6:
            raise ValueError("list_size must be >= 6 (up to 2 Exact + 2 Partial + 1 mined + 1 Irrelevant)")
        lists: dict[int, tuple[str, dict[int, np.ndarray]]] = {}
        for qid, g in judged.groupby("query_id", sort=True):
            by_rel = {r: g.loc[g["rel"] == r, "product_id"].to_numpy() for r in (0, 1, 2)}
            if len(by_rel[1]) + len(by_rel[2]) > 0:
                lists[int(qid)] = (str(g["query"].iloc[0]), by_rel)
        mined = (mine_hard_negatives(judged, product_class, all_class_negatives=all_class_negatives)
                 if mine else {})
        return cls(lists, mined, list_size)

    def with_candidates(self, mined_lists: pd.DataFrame, fraction: float) -> ListSampler:
        """Also draw ``fraction`` of the lists from retriever candidates (query_id, product_id, rel)."""
        cands: dict[int, dict[int, np.ndarray]] = {}
        for qid, g in mined_lists.groupby("query_id", sort=True):
            by_rel = {r: g.loc[g["rel"] == r, "product_id"].to_numpy(np.int64) for r in (0, 1, 2)}
            # A useful list needs something relevant and something to rank below it.
            if int(qid) in self.lists and len(by_rel[1]) + len(by_rel[2]) > 0 and len(by_rel[0]) > 0:
                cands[int(qid)] = by_rel
        return ListSampler(self.lists, self.mined, self.list_size, cands, fraction if cands else 0.0)

    def sample_candidates(self, qid: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        """Like `sample`, from the retriever's candidates: the negatives are what serving must demote."""
        by_rel = self.candidates[qid]
        k = self.list_size
        n_exact = min(len(by_rel[2]), int(rng.integers(1, 3)))
        n_partial = min(len(by_rel[1]), 2 if n_exact else 3)
        n_irr = k - n_exact - n_partial
        picks = [
            rng.choice(by_rel[2], n_exact, replace=False),
            rng.choice(by_rel[1], n_partial, replace=False),
            rng.choice(by_rel[0], n_irr, replace=len(by_rel[0]) < n_irr),
        ]
        rels = [2] * n_exact + [1] * n_partial + [0] * n_irr
        return self.lists[qid][0], np.concatenate(picks).astype(np.int64), np.asarray(rels, dtype=np.int64)

    def draw(self, qid: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        if qid in self.candidates and rng.random() < self.candidate_fraction:
            return self.sample_candidates(qid, rng)
        return self.sample(qid, rng)

    def sample(self, qid: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        query, by_rel = self.lists[qid]
        k = self.list_size
        n_exact = min(len(by_rel[2]), int(rng.integers(1, 3)))
        n_partial = min(len(by_rel[1]), 2)
        n_mined = 1 if len(self.mined.get(qid, ())) else 0
        picks = [
            rng.choice(by_rel[2], n_exact, replace=False),
            rng.choice(by_rel[1], n_partial, replace=False),
        ]
        rels = [2] * n_exact + [1] * n_partial
        n_irr = k - n_exact - n_partial - n_mined
        pool = by_rel[0] if len(by_rel[0]) else by_rel[1]
        picks.append(rng.choice(pool, n_irr, replace=len(pool) < n_irr))
        rels += [0 if len(by_rel[0]) else 1] * n_irr
        if n_mined:
            picks.append(rng.choice(self.mined[qid], 1))
            rels.append(0)
        return query, np.concatenate(picks).astype(np.int64), np.asarray(rels, dtype=np.int64)

    def batches(self, batch_queries: int, rng: np.random.Generator) -> Iterator[list[int]]:
        """One epoch of shuffled query-id batches."""
        qids = np.array(sorted(self.lists), dtype=np.int64)
        rng.shuffle(qids)
        for i in range(0, len(qids), batch_queries):
            yield qids[i : i + batch_queries].tolist()


def swap_negatives(
    lists: list[tuple[str, np.ndarray, np.ndarray]],
    product_class: np.ndarray | None,
    rng: np.random.Generator,
    n_swap: int = 2,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Replace up to ``n_swap`` Irrelevant slots per list by other lists' Exact items of another class.

    Without these, items of classes that are often relevant score high for *any* query and items of
    never-trained classes score low: on held-out classes the model then ranks below random.
    Relevant-for-someone items as negatives force it to match the query instead of a class prior.
    """
    if product_class is None or len(lists) < 2:
        return lists
    exact = [(pids[rels == 2], product_class[pids[rels == 2]]) for _, pids, rels in lists]
    out = []
    for i, (query, pids, rels) in enumerate(lists):
        own = set(product_class[pids[rels > 0]])
        pool = np.concatenate([p[~np.isin(c, list(own))] for j, (p, c) in enumerate(exact) if j != i])
        slots = np.flatnonzero(rels == 0)[-n_swap:]
        if len(pool) and len(slots):
            pids = pids.copy()
            pids[slots] = rng.choice(pool, len(slots), replace=len(pool) < len(slots))
        out.append((query, pids, rels))
    return out


def mine_hard_negatives(judged: pd.DataFrame, product_class: np.ndarray | None, *,
                        all_class_negatives: bool = False) -> dict[int, np.ndarray]:
    """Products judged for *other* train queries that share a query word but not the query's class.

    Different class makes a false negative unlikely (another query's Exact item may fit this one
    too when the class is the same), while the shared word makes the negative hard. Unless
    ``all_class_negatives``, only classes relevant to some train query (training.data.training_judgments).
    """
    if product_class is None:
        return {}
    qs = judged.drop_duplicates("query_id")[["query_id", "query", "query_class"]]
    words = {
        int(q): set(re.findall(r"[a-z0-9]{3,}", str(t).lower()))
        for q, t in zip(qs.query_id, qs["query"], strict=True)
    }
    by_word: dict[str, set[int]] = {}
    for qid, ws in words.items():
        for w in ws:
            by_word.setdefault(w, set()).add(qid)
    pids_of = judged.groupby("query_id")["product_id"].apply(lambda s: s.to_numpy()).to_dict()
    positive = set(product_class[judged.loc[judged["rel"] > 0, "product_id"].to_numpy()])
    out: dict[int, np.ndarray] = {}
    for qid, qclass in zip(qs.query_id, qs.query_class, strict=True):
        others = {o for w in words[int(qid)] for o in by_word[w]} - {int(qid)}
        if not others:
            continue
        cand = np.unique(np.concatenate([pids_of[o] for o in sorted(others)]))
        cand = cand[product_class[cand] != qclass]
        if not all_class_negatives:
            cand = cand[np.isin(product_class[cand], list(positive))]
        if len(cand):
            out[int(qid)] = cand
    return out
