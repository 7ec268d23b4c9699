"""Training-list sampling: graded lists per train query and the negatives that make them hard."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.sampling import ListSampler, mine_hard_negatives, swap_negatives


def judged_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """Three train queries sharing the word "lamp"; product 6's class (Rugs) is nobody's positive."""
    rows = [
        (1, "desk lamp", "Desk Lamps", 0, 2), (1, "desk lamp", "Desk Lamps", 1, 1),
        (1, "desk lamp", "Desk Lamps", 6, 0),
        (2, "floor lamp", "Floor Lamps", 2, 2), (2, "floor lamp", "Floor Lamps", 3, 0),
        (3, "lamp shade", "Lamp Shades", 4, 2), (3, "lamp shade", "Lamp Shades", 5, 1),
    ]
    judged = pd.DataFrame(rows, columns=["query_id", "query", "query_class", "product_id", "rel"])
    pclass = np.array(["Desk Lamps", "Desk Lamps", "Floor Lamps", "Desk Lamps", "Lamp Shades", "Lamp Shades",
                       "Rugs"], dtype=object)
    return judged, pclass


def test_hard_negatives_share_a_word_not_the_class() -> None:
    judged, pclass = judged_frame()
    mined = mine_hard_negatives(judged, pclass)
    # Query 2 (Floor Lamps) takes the other queries' products of classes someone wants: not 6 (Rugs).
    assert sorted(mined[2].tolist()) == [0, 1, 4, 5]
    # Query 1 (Desk Lamps) never takes its own class: not 3, a Desk Lamp judged for query 2.
    assert sorted(mined[1].tolist()) == [2, 4, 5]
    assert 6 not in mined[3]  # a class no query wants is left out by default ...
    assert 6 in mine_hard_negatives(judged, pclass, all_class_negatives=True)[3]  # ... unless asked
    assert mine_hard_negatives(judged, None) == {}


def test_swap_puts_other_lists_exact_items_of_another_class_in_irrelevant_slots() -> None:
    _, pclass = judged_frame()
    lists = [("desk lamp", np.array([0, 1, 6, 3]), np.array([2, 1, 0, 0])),
             ("lamp shade", np.array([4, 5, 6]), np.array([2, 1, 0]))]
    out = swap_negatives(lists, pclass, np.random.default_rng(0), n_swap=2)
    assert out[0][1].tolist() == [0, 1, 4, 4] and out[0][2].tolist() == [2, 1, 0, 0]
    assert out[1][1].tolist() == [4, 5, 0]  # the other list's only Exact item of another class
    assert lists[0][1].tolist() == [0, 1, 6, 3]  # the caller's arrays are not touched


def test_sampled_lists_have_the_fixed_size_and_their_grades() -> None:
    judged, pclass = judged_frame()
    sampler = ListSampler.from_judgments(judged, pclass, list_size=6)
    rng = np.random.default_rng(0)
    for qid in (1, 2, 3):
        _, pids, rels = sampler.draw(qid, rng)
        assert len(pids) == len(rels) == 6
        rel_of = dict(zip(judged["product_id"], judged["rel"], strict=True))
        own = set(judged.loc[judged["query_id"] == qid, "product_id"])
        for p, r in zip(pids.tolist(), rels.tolist(), strict=True):
            # A judged item keeps its grade; a mined one (another query's product) is a negative.
            assert r == (rel_of[p] if p in own else 0)
