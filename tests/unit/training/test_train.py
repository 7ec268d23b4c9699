"""Reranker: pair tokenisation, query splits, listwise training, ONNX export and the INT8 parity gate."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engines.cross_encoder import CrossEncoderConfig, build_model, load_model, save_model
from engines.pair_tokenizer import PairTokenizer
from retrieval.wordllama import BOS_ID, EOS_ID, PAD_ID, load_token_embeddings
from training.export import (
    ParityError,
    check_parity,
    export_onnx,
    ort_scores,
    ort_session,
    package_reranker,
    quantize_int8,
)
from training.splits import split_queries
from training.train import (
    RerankData,
    TrainConfig,
    judgments,
    ndcg_at_k,
    train_to_dir,
    training_judgments,
)

QUERY_FILE = Path("/work/shared/data/wands/query.csv")
# No prior, no match features: these tests check that the bare encoder learns and stays HF-loadable.
TINY_MODEL = CrossEncoderConfig(num_layers=2, intermediate_size=512, dense_prior=False, match_features=False)
COLORS = ["red", "blue", "grey", "white", "black", "green", "walnut", "oak", "brass", "ivory"]
FILLER = ["modern", "classic", "rustic", "compact", "deluxe", "handmade", "premium", "sturdy"]


def load_queries() -> pd.DataFrame:
    return pd.read_csv(QUERY_FILE, sep="\t")


def synthetic_data(queries: pd.DataFrame, *, per_query: int = 30, seed: int = 0) -> RerankData:
    """A small WANDS-shaped judged catalog: Exact items name the query and its class, Partial ones
    only the class, Irrelevant ones share a query word but belong to another class."""
    rng = np.random.default_rng(seed)
    classes = sorted(queries["query_class"].dropna().unique())
    n_exact, n_partial = per_query // 5, per_query * 3 // 10
    texts, pclass, rows = [], [], []
    for qid, query, qclass in queries[["query_id", "query", "query_class"]].itertuples(index=False):
        qclass = qclass if isinstance(qclass, str) else "Misc"
        words = re.findall(r"\w+", query.lower()) or ["item"]
        for i in range(per_query):
            adj = f"{rng.choice(FILLER)} {rng.choice(COLORS)}"
            if i < n_exact:
                text, cls, label = f"{adj} {query} {qclass.lower()}", qclass, "Exact"
            elif i < n_exact + n_partial:
                text, cls, label = f"{adj} {qclass.lower()} {rng.choice(FILLER)}", qclass, "Partial"
            else:
                cls = str(rng.choice(classes))
                text, label = f"{adj} {rng.choice(words)} {cls.lower()}", "Irrelevant"
            rows.append((qid, len(texts), label))
            texts.append(text)
            pclass.append(cls)
    labels = pd.DataFrame(rows, columns=["query_id", "product_id", "label"])
    return RerankData(
        queries=queries.reset_index(drop=True),
        labels=labels,
        texts=np.asarray(texts, dtype=object),
        product_class=np.asarray(pclass, dtype=object),
    )


# ----------------------------------------------------------------------------------------- tokenizer


def test_pair_layout_exact_ids() -> None:
    tok = PairTokenizer(max_length=48)
    ids, mask = tok.encode("turquoise pillows", ["blue pillow", "turquoise pillows"])
    q = [7013, 339, 29877, 895, 22549, 1242]
    first = [BOS_ID, *q, EOS_ID, 7254, 22549, 340, EOS_ID]
    second = [BOS_ID, *q, EOS_ID, *q, EOS_ID]
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.shape == mask.shape == (2, len(second))  # L = the longest pair
    assert ids[1].tolist() == second
    assert ids[0].tolist() == first + [PAD_ID] * (len(second) - len(first))
    assert mask[0].tolist() == [1] * len(first) + [0] * (len(second) - len(first))
    assert mask[1].sum() == len(second)


def test_pair_truncation_query_capped_then_doc() -> None:
    tok = PairTokenizer(max_length=20, max_query_tokens=4)
    long_doc = "solid wood dining table with six upholstered chairs and a matching bench " * 3
    ids, mask = tok.encode("turquoise pillows", [long_doc, "x"])
    assert ids.shape == (2, 20)
    # Query capped at 4 tokens, then </s>; the doc fills the rest and ends with </s>.
    assert ids[0, :6].tolist() == [BOS_ID, 7013, 339, 29877, 895, EOS_ID]
    assert ids[0, -1] == EOS_ID and mask[0].all()
    assert (ids[0, 6:-1] != EOS_ID).all()
    assert mask[1].sum() < 20 and (ids[1, mask[1] == 0] == PAD_ID).all()
    # A short doc never loses query tokens to truncation; a long query never exceeds its cap.
    pairs_ids, _ = tok.encode_pairs(["turquoise pillows", "a"], [long_doc, "x"])
    np.testing.assert_array_equal(pairs_ids[0], ids[0])
    assert pairs_ids[1, :3].tolist() == [BOS_ID, 263, EOS_ID]
    assert tok.encode("q", [])[0].shape[0] == 0


def test_doc_cache_gives_identical_pairs_and_stays_bounded() -> None:
    plain = PairTokenizer(max_length=20, max_query_tokens=4)
    cached = PairTokenizer(max_length=20, max_query_tokens=4, doc_cache_size=3)
    long_doc = "solid wood dining table with six upholstered chairs " * 3
    batches = [
        ("turquoise pillows", ["blue pillow", long_doc, "blue pillow"]),
        ("oak desk", [long_doc, "oak writing desk", "x", "brass lamp"]),  # hits, misses, evictions
        ("a", ["brass lamp", "blue pillow"]),
        ("q", []),
    ]
    for query, docs in batches:
        for got, want in zip(cached.encode(query, docs), plain.encode(query, docs), strict=True):
            np.testing.assert_array_equal(got, want)
        assert len(cached._doc_ids) <= 3
    assert set(cached._doc_ids) == {"x", "brass lamp", "blue pillow"}  # oldest evicted first
    with pytest.raises(ValueError):
        PairTokenizer(doc_cache_size=-1)


# ----------------------------------------------------------------------------------------- splits


def test_splits_deterministic_disjoint_order_free() -> None:
    queries = load_queries()
    a = split_queries(queries)
    b = split_queries(queries.sample(frac=1.0, random_state=7))
    ids = {k: set(v["query_id"]) for k, v in a.items()}
    assert all(ids[k] == set(b[k]["query_id"]) for k in ids)
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["dev"]
    assert not ids["val"] & ids["dev"]
    assert set().union(*ids.values()) == set(queries["query_id"])
    n = len(queries)
    assert 0.15 * n <= len(ids["dev"]) <= 0.25 * n
    assert 0.08 * n <= len(ids["val"]) <= 0.18 * n
    # Whole classes are held out: some dev classes have no train or val query at all.
    unseen = set(a["dev"]["query_class"]) - set(a["train"]["query_class"]) - set(a["val"]["query_class"])
    assert len(unseen) >= 5


def test_dev_never_read_by_training() -> None:
    queries = load_queries()
    data = synthetic_data(queries, per_query=5)
    splits = split_queries(queries)
    read = training_judgments(data)
    assert set(read["query_id"]) == set(splits["train"]["query_id"])
    assert not set(read["query"]) & set(splits["dev"]["query"])
    assert not set(read["query_id"]) & (set(splits["dev"]["query_id"]) | set(splits["val"]["query_id"]))


def test_ndcg_graded() -> None:
    rels = np.array([0, 1, 2])
    assert ndcg_at_k(np.array([0.0, 1.0, 2.0]), rels) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([2.0, 1.0, 0.0]), rels) < ndcg_at_k(np.array([1.0, 2.0, 0.0]), rels) < 1.0
    assert np.isnan(ndcg_at_k(np.array([1.0, 2.0]), np.array([0, 0])))


# ----------------------------------------------------------------------------------------- model


@pytest.fixture(scope="module")
def data() -> RerankData:
    return synthetic_data(load_queries())


@pytest.fixture(scope="module")
def trained(data: RerankData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("reranker")
    cfg = TrainConfig(model=TINY_MODEL, evals=2, min_eval_interval_s=15.0, augment_queries=0)
    report = train_to_dir(data, out, minutes=0.6, seed=0, cfg=cfg, progress=False)
    return out, report


def test_training_improves_val_ndcg(trained: tuple[Path, object]) -> None:
    out, report = trained
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["steps"] > 10 and saved["steps"] == report.steps
    assert saved["val_ndcg10"] >= saved["initial_val_ndcg10"] + 0.1, saved["history"]
    assert saved["train_queries"] + saved["val_queries"] + saved["dev_queries"] == 380


def test_hf_folder_roundtrip(trained: tuple[Path, object], data: RerankData) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = trained
    model = load_model(out / "hf")
    tok = PairTokenizer(model.cfg.max_length, model.cfg.max_query_tokens)
    docs = data.texts[:5].tolist()
    ids, mask = tok.encode("turquoise pillows", docs)
    # Plain Hugging Face loading (what sentence-transformers CrossEncoder does) gives the same scores.
    hf_tok = AutoTokenizer.from_pretrained(out / "hf")
    enc = hf_tok(["turquoise pillows"] * 5, docs, padding=True, return_tensors="pt")
    np.testing.assert_array_equal(enc["input_ids"].numpy(), ids)
    hf = AutoModelForSequenceClassification.from_pretrained(out / "hf").eval()
    with torch.inference_mode():
        hf_scores = hf(**enc).logits[:, 0].numpy()
    np.testing.assert_allclose(hf_scores, model.score(ids, mask), atol=1e-4)


def test_onnx_export_matches_pytorch(trained: tuple[Path, object], data: RerankData, tmp_path: Path) -> None:
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
def packaged(trained: tuple[Path, object], data: RerankData) -> dict:
    out, _ = trained
    return package_reranker(load_model(out / "hf"), data, out)


def test_int8_parity(packaged: dict, trained: tuple[Path, object]) -> None:
    out, _ = trained
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["pairs"] >= 1000
    assert parity["spearman"] >= 0.99
    assert abs(parity["fp32_ndcg10"] - parity["int8_ndcg10"]) <= 0.01
    assert (out / "model.onnx").stat().st_size < 0.5 * (out / "model_fp32.onnx").stat().st_size
    assert packaged["speed_100_pairs"]["batch"] == 100


def test_parity_gate_rejects_wrong_model(
    trained: tuple[Path, object], data: RerankData, tmp_path: Path
) -> None:
    out, _ = trained
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


def test_save_model_roundtrip_untrained(tmp_path: Path) -> None:
    model = build_model(TINY_MODEL).eval()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.cfg == TINY_MODEL
    ids, mask = PairTokenizer().encode("lamp", ["brass floor lamp", "oak table"])
    np.testing.assert_allclose(again.score(ids, mask), model.score(ids, mask), atol=1e-6)


def test_dense_prior_is_mean_vector_cosine_and_roundtrips(tmp_path: Path) -> None:
    from engines.cross_encoder import dense_prior, segment_ids

    model = build_model(dataclasses.replace(TINY_MODEL, dense_prior=True)).eval()
    assert model.prior_scale is not None
    with torch.no_grad():
        model.prior_scale.fill_(3.5)
    ids, mask = PairTokenizer().encode("navy sofa", ["navy velvet sofa", "oak dining table"])
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    emb = model.bert.bert.embeddings.word_embeddings(t_ids)
    got = dense_prior(emb, t_ids, t_mask, segment_ids(t_ids, t_mask)).detach().numpy()
    # Reference: numpy cosine of the mean WordLlama vectors of the query's and each doc's content tokens.
    table = np.asarray(load_token_embeddings())
    tok = PairTokenizer()._tok
    q = table[tok.encode("navy sofa", add_special_tokens=False).ids].sum(0)
    for doc, value in zip(["navy velvet sofa", "oak dining table"], got, strict=True):
        d = table[tok.encode(doc, add_special_tokens=False).ids].sum(0)
        assert value == pytest.approx(float(q @ d / np.linalg.norm(q) / np.linalg.norm(d)), abs=1e-4)
    assert got[0] > got[1]  # the prior already prefers the matching doc before any training
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert float(again.prior_scale.detach()) == pytest.approx(3.5)
    np.testing.assert_allclose(again.score(ids, mask), model.score(ids, mask), atol=1e-6)


def _words(tok, text: str) -> list[list[int]]:
    """Reference word split: token runs starting at a word-start piece, " | " (id 891) dropped."""
    out: list[list[int]] = []
    enc = tok.encode(text, add_special_tokens=False)
    for tid, piece in zip(enc.ids, enc.tokens, strict=True):
        if tid == 891:
            out.append([])  # field separator
        elif piece.startswith("\u2581") or not out:
            out.append([tid])
        else:
            out[-1].append(tid)
    return out


def test_word_matches_maxsim_prior_and_export(tmp_path: Path) -> None:
    from engines.cross_encoder import segment_ids, word_matches, word_start_table

    query, doc = "Navy Sofa", "Hillsby Navy Velvet Sofa | Sofas | navy velvet"
    pt = PairTokenizer()
    ids, mask = pt.encode(query, [doc, "oak dining table | Dining Tables | oak"])
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    table = np.array(load_token_embeddings()[:32000], dtype=np.float32)
    exact, soft, maxsim = word_matches(
        torch.from_numpy(table)[t_ids], t_ids, t_mask, segment_ids(t_ids, t_mask), word_start_table(32000)
    )
    # Reference in numpy: word vectors are the mean of their token vectors; fields split at " | ".
    unit = lambda w: (v := table[w].mean(0)) / np.linalg.norm(v)  # noqa: E731
    q_words = [unit(w) for w in _words(pt._tok, query)]
    fields: list[list[np.ndarray]] = [[]]
    for w in _words(pt._tok, doc):
        if w:
            fields[-1].append(unit(w))
        else:
            fields.append([])
    assert len(q_words) == 2 and len(fields) == 3
    doc_words = [v for f in fields for v in f]
    want_maxsim = np.mean([max(float(q @ d) for d in doc_words) for q in q_words])
    assert float(maxsim[0]) == pytest.approx(want_maxsim, abs=1e-5) and float(maxsim[0]) == pytest.approx(1.0)
    assert float(maxsim[1]) < 0.6
    # "sofas" (the class) is not "sofa": a soft match below 1, unlike the exact title word.
    assert max(float(q_words[1] @ d) for d in fields[1]) < 0.999
    # Every query token's word is in the doc; specials and padding never match.
    q_tokens = (segment_ids(t_ids, t_mask)[0] == 0) & (t_ids[0] > EOS_ID)
    assert bool((exact[0][q_tokens] == 1).all()) and bool((soft[0][~t_mask[0].bool()] == 0).all())

    model = build_model(CrossEncoderConfig()).eval()  # served defaults: maxsim prior, match features
    assert model.match_embeddings is not None and model.cfg.prior == "maxsim"
    untrained = model.score(ids, mask)
    # Residual start: the untrained model scores exactly its prior.
    np.testing.assert_allclose(untrained, model.prior_scale.item() * maxsim.numpy(), rtol=1e-5)
    with torch.no_grad():
        model.bert.classifier.weight.normal_()
    scores = model.score(ids, mask)
    assert not np.allclose(scores, untrained)
    save_model(model, tmp_path / "m")
    np.testing.assert_allclose(load_model(tmp_path / "m").score(ids, mask), scores, atol=1e-6)
    sess = ort_session(export_onnx(model, tmp_path / "m.onnx"))
    np.testing.assert_allclose(ort_scores(sess, ids, mask), scores, atol=1e-4)


def test_served_ndcg_uses_full_judgment_ideal() -> None:
    from training.train import mean_ndcg

    # Query 1 retrieved an Exact and an Irrelevant item, but has a second Exact the list missed.
    lists = pd.DataFrame(
        {"query_id": [1, 1, 2, 2], "query": ["a", "a", "b", "b"], "product_id": [10, 11, 20, 21],
         "rel": [0, 2, 1, 0]}
    )
    ideal_1 = 3.0 + 3.0 / np.log2(3)  # two Exact items (gain 3) at ranks 1 and 2
    judged = {1: np.array([2, 2, 0]), 2: np.array([1, 0])}  # query 1's second Exact was not retrieved
    good = np.array([0.0, 1.0, 1.0, 0.0])  # relevant first in both lists
    bad = -good
    assert mean_ndcg(lists, good, judged_rels=judged) == pytest.approx((3.0 / ideal_1 + 1.0) / 2)
    assert mean_ndcg(lists, bad, judged_rels=judged) == pytest.approx(
        (3.0 / np.log2(3) / ideal_1 + 1.0 / np.log2(3)) / 2
    )
    # A query with nothing relevant judged is skipped, not scored 0.
    nothing = {1: judged[1], 2: np.array([0, 0])}
    assert mean_ndcg(lists, good, judged_rels=nothing) == pytest.approx(3.0 / ideal_1)
