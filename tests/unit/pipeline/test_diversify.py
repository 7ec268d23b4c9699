from __future__ import annotations

import numpy as np
import pytest

from pipeline.diversify import Z_SPAN, Mmr, mmr, normalise_z


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_lambda_one_is_pure_relevance_order() -> None:
    rng = np.random.default_rng(0)
    rel = rng.normal(size=50).astype(np.float32)
    vecs = _unit(rng.normal(size=(50, 8)))
    picks = [p.index for p in mmr(rel, vecs, 20, 1.0)]
    assert picks == list(np.argsort(-rel, kind="stable")[:20])


def test_low_lambda_skips_near_duplicates() -> None:
    # Items 0 and 1 are the same vector; 2 is different but slightly less relevant.
    vecs = _unit(np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32))
    rel = np.array([1.0, 0.95, 0.9], dtype=np.float32)
    assert [p.index for p in mmr(rel, vecs, 3, 1.0)] == [0, 1, 2]
    picks = list(mmr(rel, vecs, 3, 0.5))
    assert [p.index for p in picks] == [0, 2, 1]
    assert picks[0].redundancy == 0.0
    assert picks[2].redundancy == pytest.approx(1.0, abs=1e-6)


def test_objective_matches_formula() -> None:
    rng = np.random.default_rng(1)
    vecs = _unit(rng.normal(size=(30, 5)))
    rel = rng.normal(size=30).astype(np.float32)
    lam = 0.3
    picks = list(mmr(rel, vecs, 10, lam))
    # Default normalisation, written out: z-score over the candidates, Z_SPAN standard deviations per unit.
    norm = 0.5 + (rel - rel.mean()) / (Z_SPAN * rel.std())
    chosen: list[int] = []
    for p in picks:
        # Brute force the greedy objective in plain Python and compare.
        best, best_i = -np.inf, -1
        for i in range(30):
            if i in chosen:
                continue
            red = max((float(vecs[i] @ vecs[j]) for j in chosen), default=0.0)
            obj = lam * norm[i] - (1 - lam) * red
            if obj > best + 1e-9:
                best, best_i = obj, i
        assert p.index == best_i
        assert p.score == pytest.approx(best, abs=1e-5)
        chosen.append(best_i)
    assert len(set(chosen)) == 10


def test_k_larger_than_n_and_empty() -> None:
    vecs = _unit(np.eye(3, dtype=np.float32))
    assert len(list(mmr(np.array([3.0, 2.0, 1.0]), vecs, 10, 0.7))) == 3
    assert list(mmr(np.zeros(0, dtype=np.float32), np.zeros((0, 3), dtype=np.float32), 5, 0.7)) == []


def test_constant_scores_normalise_without_nan() -> None:
    out = normalise_z(np.full(4, 2.5, dtype=np.float32))
    assert np.all(out == 1.0)


def test_bad_lambda_rejected() -> None:
    with pytest.raises(ValueError):
        list(mmr(np.ones(2), np.eye(2, dtype=np.float32), 1, 1.5))


def test_z_normalisation_is_scale_free() -> None:
    rng = np.random.default_rng(2)
    vecs = _unit(rng.normal(size=(40, 6)))
    rel = rng.normal(size=40).astype(np.float32)
    assert normalise_z(rel).mean() == pytest.approx(0.5, abs=1e-5)
    # Any positive affine change of the reranker's scores leaves the picks unchanged.
    base = [p.index for p in mmr(rel, vecs, 10, 0.6)]
    assert [p.index for p in mmr(3.0 * rel + 7.0, vecs, 10, 0.6)] == base


def test_stage_selects_by_item_id() -> None:
    vecs = _unit(np.eye(4, dtype=np.float32))
    picks = list(Mmr(vecs).select(np.array([1.0, 3.0]), np.array([3, 1]), 2, 1.0))
    assert [p.index for p in picks] == [1, 0]  # positions in the candidate list, best first


def test_tied_float32_scores_are_a_tie() -> None:
    # 0.1 is inexact in float32, and so is the mean of seven of them: the float32 std is ~1e-8, not 0.
    tied = np.full(7, 0.1, np.float32)
    assert normalise_z(tied).tolist() == [1.0] * 7
    assert normalise_z(np.array([2.5, 2.5 + 1e-7], np.float32)).tolist() == [1.0, 1.0]
    assert len(set(normalise_z(np.array([0.1, 0.2, 0.3], np.float32)).tolist())) == 3


def test_objective_ties_go_to_the_more_relevant_item() -> None:
    # Orthogonal items: at λ = 0 every objective is 0 at first, and relevance must still decide.
    rel = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    picks = list(mmr(rel, np.eye(4, dtype=np.float32), 4, 0.0))
    assert [p.index for p in picks] == [3, 2, 1, 0]
    assert [p.index for p in mmr(rel, np.eye(4, dtype=np.float32), 4, 1e-6)] == [3, 2, 1, 0]
