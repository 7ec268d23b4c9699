"""Pseudo-queries from the catalog itself, for every product class, labelled by the catalog's classes.

The judged training queries name ~130 classes; a query of any other class is one the fine-tuned model
never saw, and there it ranks below retrieval's order (docs/quality.md). The catalog holds every class
it serves, whether or not a judged query names it. So each class gets short queries built from its own
products, the way shoppers type them: the class name ("bar stools"), a title word with it ("swivel bar
stools"), a title word with its head noun ("swivel stools"), or a title word alone ("swivel"). Their
candidates are the served retriever's top 100, labelled by the catalog alone: a product of the query's
class holding the query's title word is relevant (2), one of its class without it partly (1), any other
class not (0); the product the query was built from is relevant.

Catalog-agnostic: titles are free text (no word position is assumed), a class may be empty (its products
give no query) or multi-valued (``A|B``: a product belongs to each), and no attribute family is parsed
(the word check is a substring of the item text the model reads: "oak" also matches "soaked"). No
text of the query file (any split) is ever a pseudo-query, so no val or dev query is trained on, even
unlabelled. The label rule — same class, and the query's word — is the usual shape of e-commerce
relevance and also the shape of the generated catalog's Exact rule (docs/catalog.md), so a gain measured
on generated judgments may overstate the gain on a real catalog's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from training.data import RerankData
from training.sampling import ListSampler
from training.splits import normalise_query

PSEUDO_QID = 10_000_000  # pseudo-query ids start here, past any query file's
PSEUDO_SEED = 1_000  # the generator's seed is this plus the build's
_WORD = re.compile(r"[a-z]+")
_STOP = frozenset({"and", "the", "for", "with", "set", "of", "in", "by", "to", "an", "on", "or", "piece",
                   "pieces", "from", "your", "our"})


@dataclass(frozen=True)
class PseudoQuery:
    text: str
    product_class: str
    product_id: int  # the product it was built from
    word: str | None  # the title word it holds (None: the class name alone)


def classes_of(value: object) -> list[str]:
    """A product's classes: ``A|B`` is both, an empty field none."""
    return [c.strip() for c in str(value or "").split("|") if c.strip()]


def _title_words(title: str, product_class: str) -> list[str]:
    inside = set(_WORD.findall(product_class.lower()))
    inside |= {w.rstrip("s") for w in inside}
    return [w for w in dict.fromkeys(_WORD.findall(str(title).lower()))
            if len(w) >= 3 and w not in _STOP and w not in inside and w.rstrip("s") not in inside]


def pseudo_queries(products: pd.DataFrame, n: int, exclude: set[str], rng: np.random.Generator,
                   skip_classes: frozenset[str] = frozenset()) -> list[PseudoQuery]:
    """``n`` queries over the catalog's classes but ``skip_classes``, each class equally likely; none
    whose normalised text is in ``exclude``."""
    members: dict[str, list[int]] = {}
    for pid, value in zip(products["product_id"].tolist(), products["product_class"].tolist(), strict=True):
        for c in classes_of(value):
            if c not in skip_classes:
                members.setdefault(c, []).append(int(pid))
    classes = sorted(members)
    out: list[PseudoQuery] = []
    seen = set(exclude)
    for _ in range(50 * n):
        if len(out) >= n or not classes:
            break
        c = classes[int(rng.integers(len(classes)))]
        pid = int(rng.choice(members[c]))
        words = _title_words(products.at[pid, "product_name"], c)
        name, form = c.lower(), rng.random()
        word = str(rng.choice(words)) if words else None
        if form < 0.25 or word is None:
            text, word = name, None
        elif form < 0.55:
            text = f"{word} {name}"
        elif form < 0.8:
            text = f"{word} {name.split()[-1]}"
        else:
            text = word
        if (key := normalise_query(text)) not in seen:
            seen.add(key)
            out.append(PseudoQuery(text, c, pid, word))
    return out


def pseudo_lists(queries: list[PseudoQuery], candidates: list[np.ndarray], product_class: np.ndarray,
                 texts: np.ndarray) -> dict[int, tuple[str, dict[int, np.ndarray]]]:
    """`training.sampling.ListSampler` lists (qid -> (query, rel -> product ids)) from each query's
    retrieved candidates, labelled by class and word; a list without an irrelevant candidate is left
    out (nothing to rank below its relevant ones)."""
    lists = {}
    for i, (q, ids) in enumerate(zip(queries, candidates, strict=True)):
        ids = np.unique(np.append(np.asarray(ids, np.int64), q.product_id))
        same = np.array([q.product_class in classes_of(product_class[j]) for j in ids])
        holds = np.array([q.word is None or q.word in str(texts[j]).lower() for j in ids])
        rel = np.where(same & holds, 2, np.where(same, 1, 0))
        rel[ids == q.product_id] = 2
        by_rel = {r: ids[rel == r] for r in (0, 1, 2)}
        if len(by_rel[0]):
            lists[PSEUDO_QID + i] = (q.text, by_rel)
    return lists


def with_pseudo_lists(sampler: ListSampler, data: RerankData, share: float, *, seed: int = 0,
                      exclude: set[str] | None = None, skip_classes: frozenset[str] = frozenset(),
                      progress: bool = False) -> ListSampler:
    """``sampler`` plus about ``share`` pseudo-query lists per judged list, from ``data``'s catalog and
    the served retriever; no pseudo-query is a text of ``exclude`` (default: every query of ``data``)."""
    from training.mining import hybrid_candidates

    if data.products is None or data.product_class is None:
        raise ValueError("pseudo-queries need the catalog's products")
    texts = exclude if exclude is not None else set(data.queries["query"].astype(str))
    rng = np.random.default_rng(PSEUDO_SEED + seed)
    queries = pseudo_queries(data.products, round(share * len(sampler.lists)),
                             {normalise_query(t) for t in texts}, rng, skip_classes)
    cands = hybrid_candidates(data.products, list(data.texts), [q.text for q in queries], progress=progress)
    return replace(sampler, lists={**sampler.lists, **pseudo_lists(queries, cands, data.product_class,
                                                                    data.texts)})
