"""The Triton model's length-bucketed scoring (engines/triton/model.py), run in process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from engines.model_dir import pair_tokenizer_for
from engines.triton.model import score_bucketed, session_options
from tests.conftest import Artifacts
from training.data import load_rerank_data


@pytest.fixture(scope="module")
def batch(artifacts: Artifacts) -> tuple[ort.InferenceSession, np.ndarray, np.ndarray]:
    data = load_rerank_data(artifacts.catalog)
    tok = pair_tokenizer_for(artifacts.model)
    ids, mask = tok.encode(str(data.queries["query"].iloc[0]), data.texts[:150].tolist())
    sess = ort.InferenceSession(str(artifacts.model / "model.onnx"), session_options(1),
                                providers=["CPUExecutionProvider"])
    return sess, ids, mask


def test_parallel_buckets_score_exactly_like_sequential_ones(batch) -> None:
    sess, ids, mask = batch
    sequential = score_bucketed(sess, ids, mask, 16)
    with ThreadPoolExecutor(2) as pool:
        parallel = score_bucketed(sess, ids, mask, 16, pool)
    assert parallel.shape == (len(ids), 1)
    assert np.array_equal(parallel, sequential)  # same buckets, same ORT calls, rows put back in place
    # Against one padded batch: the same model up to dynamic INT8's per-call activation ranges.
    whole = score_bucketed(sess, ids, mask, 0)
    assert np.abs(whole - sequential).max() < 0.05 * (np.abs(whole).max() + 1.0)
    assert np.corrcoef(whole[:, 0], sequential[:, 0])[0, 1] > 0.99


def test_small_requests_run_as_one_call(batch) -> None:
    sess, ids, mask = batch
    small_ids, small_mask = ids[:20], mask[:20]  # under two buckets of 16
    width = int(small_mask.sum(axis=1).max())
    feed = {"input_ids": small_ids[:, :width], "attention_mask": small_mask[:, :width]}
    direct = sess.run(["score"], feed)[0]
    with ThreadPoolExecutor(2) as pool:
        assert np.array_equal(score_bucketed(sess, small_ids, small_mask, 16, pool), direct.reshape(-1, 1))


def test_a_request_scores_the_same_whatever_else_is_in_the_batch(batch, artifacts: Artifacts) -> None:
    sess, ids, mask = batch
    data = load_rerank_data(artifacts.catalog)
    tok = pair_tokenizer_for(artifacts.model)
    # Another request: another query over longer texts, so its activations span another range.
    other_ids, other_mask = tok.encode(str(data.queries["query"].iloc[7]),
                                       [t + " " + t for t in data.texts[300:360].tolist()])
    width = max(ids.shape[1], other_ids.shape[1])

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, width - a.shape[1])))

    mine_ids, mine_mask = ids[:40], mask[:40]
    both_ids = np.concatenate([pad(mine_ids), pad(other_ids)])
    both_mask = np.concatenate([pad(mine_mask), pad(other_mask)])
    alone = score_bucketed(sess, mine_ids, mine_mask, 16)
    with ThreadPoolExecutor(2) as pool:
        grouped = score_bucketed(sess, both_ids, both_mask, 16, pool, groups=[40, len(other_ids)])
    assert np.array_equal(grouped[:40], alone)  # buckets never mix requests: the same calls, the same bits
    assert np.array_equal(grouped[40:], score_bucketed(sess, other_ids, other_mask, 16))
    # Without the groups the two requests share buckets, and dynamic INT8's per-call activation range
    # moves the scores (what made rankings depend on the load).
    mixed = score_bucketed(sess, both_ids, both_mask, 16)
    assert not np.array_equal(mixed[:40], alone)
    with pytest.raises(ValueError, match="groups cover"):
        score_bucketed(sess, both_ids, both_mask, 16, groups=[40])
