"""Pseudo-queries from a catalog: built from free-text titles and the class field (empty or multi-valued
as in real WANDS rows), never a query file's text, and labelled by class and word."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.pseudo import PSEUDO_QID, PseudoQuery, classes_of, pseudo_lists, pseudo_queries
from training.splits import normalise_query

PRODUCTS = pd.DataFrame({
    "product_id": range(6),
    "product_name": ["Swivel Bar Stool in Oak", "Harlow counter stool, velvet", "Tufted velvet sofa",
                     "Oak side table with drawer", "Mystery item", "Velvet Bar Stool and Ottoman"],
    "product_class": ["Bar Stools", "Bar Stools", "Sofas", "End Tables", "", "Bar Stools|Ottomans"],
})
TEXTS = np.array([f"{n} | {c}" for n, c in zip(PRODUCTS["product_name"], PRODUCTS["product_class"],
                                                strict=True)], dtype=object)
CLASSES = PRODUCTS["product_class"].to_numpy(dtype=object)


def test_queries_come_from_every_class_but_never_from_an_empty_one_nor_the_query_file() -> None:
    rng = np.random.default_rng(0)
    exclude = {normalise_query("Bar Stools"), normalise_query("velvet sofas")}
    qs = pseudo_queries(PRODUCTS, 60, exclude, rng)
    texts = [normalise_query(q.text) for q in qs]
    assert len(set(texts)) == len(texts) and not exclude & set(texts)
    assert {q.product_class for q in qs} == {"Bar Stools", "Sofas", "End Tables", "Ottomans"}
    assert all(q.product_id != 4 for q in qs)  # its class is empty: it makes no query
    skipped = pseudo_queries(PRODUCTS, 30, set(), np.random.default_rng(1), frozenset({"Bar Stools"}))
    assert skipped and "Bar Stools" not in {q.product_class for q in skipped}  # the head's held-out
    for q in qs:
        assert q.product_class in classes_of(CLASSES[q.product_id])
        if q.word is not None:  # a title word of its own product, not a word of the class name
            assert q.word in TEXTS[q.product_id].lower() and q.word in q.text
            assert q.word not in q.product_class.lower()
    # The same generator and seed give the same queries: a build is reproducible.
    again = pseudo_queries(PRODUCTS, 60, exclude, np.random.default_rng(0))
    assert [q.text for q in again] == [q.text for q in qs]


def test_labels_are_the_querys_class_holding_its_word() -> None:
    q = PseudoQuery("velvet stools", "Bar Stools", 1, "velvet")
    lists = pseudo_lists([q], [np.array([0, 2, 3, 5])], CLASSES, TEXTS)
    text, by_rel = lists[PSEUDO_QID]
    assert text == "velvet stools"
    assert sorted(by_rel[2].tolist()) == [1, 5]  # its own product (added), and a multi-valued member
    assert by_rel[1].tolist() == [0]  # a bar stool without the word
    assert sorted(by_rel[0].tolist()) == [2, 3]  # velvet, but a sofa; another class
    # A class name alone: every member is relevant; a list with nothing to rank below is left out.
    whole = PseudoQuery("bar stools", "Bar Stools", 0, None)
    lists = pseudo_lists([whole, whole], [np.array([1, 2]), np.array([1, 5])], CLASSES, TEXTS)
    assert list(lists) == [PSEUDO_QID]
    assert sorted(lists[PSEUDO_QID][1][2].tolist()) == [0, 1]


def test_a_sampler_gains_pseudo_lists_over_the_served_retrievers_candidates(artifacts) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from training.data import load_rerank_data, training_judgments
    from training.pseudo import with_pseudo_lists
    from training.sampling import ListSampler

    data = load_rerank_data(Path(artifacts.catalog))
    sampler = ListSampler.from_judgments(training_judgments(data), data.product_class, list_size=8)
    out = with_pseudo_lists(sampler, data, 0.5, seed=3)
    added = {q: v for q, v in out.lists.items() if q >= PSEUDO_QID}
    assert added and set(out.lists) - set(added) == set(sampler.lists)  # the judged lists stay
    assert len(added) <= round(0.5 * len(sampler.lists))
    every_query = {normalise_query(t) for t in data.queries["query"]}
    for text, by_rel in added.values():
        assert normalise_query(text) not in every_query  # no text of the query file, of any split
        assert len(by_rel[2]) and len(by_rel[0])
    drawn = out.draw(next(iter(added)), np.random.default_rng(0))
    assert len(drawn[1]) == 8 and drawn[2].max() == 2
