"""The cross-encoder: save/load round trips, the dense and maxsim priors, and their ONNX export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.cross_encoder import CrossEncoderConfig, build_model, load_model, save_model
from engines.ort_rerank import ort_scores, ort_session
from engines.pair_tokenizer import PairTokenizer
from retrieval.wordllama import EOS_ID, load_token_embeddings
from training.export import export_onnx

# No prior, no match features: the bare encoder, small enough to build in a test.
TINY_MODEL = CrossEncoderConfig(num_layers=2, intermediate_size=512, dense_prior=False, match_features=False)


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
