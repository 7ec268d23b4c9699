"""Field-aware word-match features on hand-made item texts with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.match_features import MATCH_FEATURES, MatchFeatures, WordVectors, fold_plural, split_fields

M = {name: i for i, name in enumerate(MATCH_FEATURES)}
TEXTS = [
    "Hillsby Navy Velvet Sofa | Sofas | navy velvet",  # the query's product
    "Marwick Gold Lamp | Table Lamps | gold",  # nothing in common
    "Ardo Sofa Table | Console Tables | navy oak",  # 'sofa' as a type word of another class
    "Solo | Sofas | ",  # empty value field
]


@pytest.fixture(scope="module")
def feats() -> MatchFeatures:
    return MatchFeatures(TEXTS)


def test_helpers() -> None:
    assert split_fields("a b | c | d | e") == ("a b", "c", "d e")
    assert split_fields("only") == ("only", "", "")
    assert [fold_plural(w) for w in ("sofas", "glass", "gas", "tables")] == ["sofa", "glass", "gas", "table"]
    v = WordVectors()
    out = v(["navy", "navy", "sofa"])
    assert out.shape == (3, v.dim) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert out[0] @ out[1] == pytest.approx(1.0, abs=1e-5)


def test_known_values(feats: MatchFeatures) -> None:
    x = feats.features("navy sofa", np.arange(4))
    assert x.shape == (4, len(MATCH_FEATURES)) and x.dtype == np.float32
    sofa, lamp, table, bare = x
    # Every query word verbatim in the sofa's title; in its class only 'sofa' (from 'Sofas').
    assert sofa[M["exact_title"]] == 1.0 and sofa[M["exact_all"]] == 1.0 and sofa[M["exact_class"]] == 0.5
    assert sofa[M["title_sim"]] == pytest.approx(1.0, abs=1e-5)
    assert sofa[M["min_word_sim"]] == pytest.approx(1.0, abs=1e-5)
    assert sofa[M["title_words"]] == 4 and bare[M["title_words"]] == 1
    # The lamp shares no word; the sofa table has both words, but not in its class, and its title holds
    # 'table', which the query lacks: less of its title is covered.
    assert lamp[M["exact_all"]] == 0.0 and lamp[M["title_sim"]] < 0.5
    assert table[M["exact_all"]] == 1.0 and table[M["exact_class"]] == 0.0
    assert table[M["title_coverage"]] < sofa[M["title_coverage"]]
    assert sofa[M["class_coverage"]] > table[M["class_coverage"]]
    # An empty field matches nothing (0, never -inf or NaN); the bare item's class ('Sofas') still does.
    assert np.isfinite(x).all() and bare[M["values_sim"]] == 0.0
    assert bare[M["class_sim"]] > lamp[M["class_sim"]] + 0.1 and bare[M["exact_class"]] == 0.5


def test_order_and_edges(feats: MatchFeatures) -> None:
    x = feats.features("navy sofa", np.arange(4))
    assert np.array_equal(feats.features("navy sofa", np.array([2, 0])), x[[2, 0]])
    assert not feats.features("!!!", np.arange(4)).any()  # no words: all zeros
    assert feats.features("navy sofa", np.zeros(0, int)).shape == (0, len(MATCH_FEATURES))
    unseen = feats.features("zorblax", np.arange(4))  # a word no item has
    assert np.isfinite(unseen).all() and unseen[:, M["exact_all"]].sum() == 0
