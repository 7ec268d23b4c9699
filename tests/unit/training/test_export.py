"""ONNX export, INT8 packaging and the FP32-vs-INT8 parity gate, on the model `trained` fits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.cross_encoder import build_model, load_model
from engines.ort_rerank import ort_scores, ort_session
from engines.pair_tokenizer import PairTokenizer
from tests.unit.training.conftest import TINY_MODEL
from training.data import RerankData, judgments
from training.export import (
    ParityError,
    _per_query_scores,
    check_parity,
    export_onnx,
    package_reranker,
    quantize_int8,
)
from training.train import TrainReport


def test_onnx_export_matches_pytorch(
    trained: tuple[Path, TrainReport], data: RerankData, tmp_path: Path
) -> None:
    out, _ = trained
    model = load_model(out / "hf")
    path = export_onnx(model, tmp_path / "fp32.onnx")
    sess = ort_session(path, threads=2)
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    tok = PairTokenizer()
    for n, query in [(1, "sofa"), (37, "chair and a half recliner with extra long words")]:
        ids, mask = tok.encode(query, data.texts[:n].tolist())
        got = sess.run(["score"], {"input_ids": ids, "attention_mask": mask})[0]
        assert got.shape == (n, 1) and got.dtype == np.float32
        assert np.abs(got[:, 0] - model.score(ids, mask)).max() < 1e-4


@pytest.fixture(scope="module")
def packaged(trained: tuple[Path, TrainReport], data: RerankData) -> dict:
    out, _ = trained
    return package_reranker(load_model(out / "hf"), data, out)


def test_int8_parity(packaged: dict, trained: tuple[Path, TrainReport]) -> None:
    out, _ = trained
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["pairs"] >= 1000
    assert parity["spearman"] >= 0.99
    assert abs(parity["fp32_ndcg10"] - parity["int8_ndcg10"]) <= parity["ndcg_tolerance"]
    # The bound: 0.005, or two standard errors of the per-query differences where the set is small.
    assert parity["ndcg_tolerance"] == pytest.approx(max(0.005, 2 * parity["ndcg_diff_se"]))
    assert 0 < parity["ndcg_diff_se"] < 0.02
    assert (out / "model.onnx").stat().st_size < 0.5 * (out / "model_fp32.onnx").stat().st_size
    assert packaged["speed_100_pairs"]["batch"] == 100


def test_parity_gate_rejects_wrong_model(
    packaged: dict, trained: tuple[Path, TrainReport], data: RerankData, tmp_path: Path
) -> None:
    out, _ = trained  # `packaged` wrote out / "model.onnx", the real INT8 model
    model = load_model(out / "hf")
    other = build_model(TINY_MODEL).eval()  # untrained weights standing in for a broken quantisation
    int8 = quantize_int8(export_onnx(other, tmp_path / "other.onnx"), tmp_path / "other_int8.onnx")
    val = judgments(data, "val")
    with pytest.raises(ParityError):
        check_parity(model, int8, val, data.texts, report_path=tmp_path / "parity.json")
    assert not json.loads((tmp_path / "parity.json").read_text())["passed"]
    with pytest.raises(ParityError, match="pairs"):
        check_parity(model, out / "model.onnx", val.head(50), data.texts)
    # The real INT8 model scores like the FP32 one on a served-shape batch.
    ids, mask = PairTokenizer().encode("turquoise pillows", data.texts[:100].tolist())
    int8_scores = ort_scores(ort_session(out / "model.onnx"), ids, mask)
    assert np.corrcoef(int8_scores, model.score(ids, mask))[0, 1] > 0.98


def test_parity_gate_scores_int8_as_triton_serves_it(
    packaged: dict, trained: tuple[Path, TrainReport], data: RerankData
) -> None:
    from engines.triton.model import score_bucketed
    from training.metrics import per_query_ndcg

    out, _ = trained
    model = load_model(out / "hf")
    judged = judgments(data, "val")
    rows_per_bucket = 8  # the fixture's lists (30 pairs) are bucketed from 16 rows up
    assert judged.groupby("query_id").size().min() >= 2 * rows_per_bucket
    report = check_parity(model, out / "model.onnx", judged, data.texts, min_pairs=1,
                          bucket_rows=rows_per_bucket)
    sess, tok = ort_session(out / "model.onnx"), model.pair_tokenizer()

    def per_query(score) -> np.ndarray:  # each query's list as one request, as the gate scores it
        return _per_query_scores(score, tok, judged, data.texts)

    served = per_query(lambda i, m: score_bucketed(sess, i, m, rows_per_bucket)[:, 0])
    whole = per_query(lambda i, m: ort_scores(sess, i, m))
    fp32 = per_query(model.score)
    # Lists long enough to be bucketed: the gate's INT8 figures are the served numerics', not one batch's.
    assert np.abs(fp32 - served).max() != np.abs(fp32 - whole).max()
    assert report.max_abs_diff == pytest.approx(float(np.abs(fp32 - served).max()), abs=1e-6)
    assert report.int8_ndcg10 == pytest.approx(float(np.nanmean(per_query_ndcg(judged, served))), abs=1e-9)
