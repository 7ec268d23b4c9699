"""Listwise training: a short run improves val NDCG@10 and writes a plain Hugging Face folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from engines.cross_encoder import load_model
from engines.pair_tokenizer import PairTokenizer
from training.data import RerankData
from training.train import TrainReport


def test_training_improves_val_ndcg(trained: tuple[Path, TrainReport]) -> None:
    out, report = trained
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["steps"] > 10 and saved["steps"] == report.steps
    assert saved["val_ndcg10"] >= saved["initial_val_ndcg10"] + 0.1, saved["history"]
    assert saved["train_queries"] + saved["val_queries"] + saved["dev_queries"] == 380


def test_hf_folder_roundtrip(trained: tuple[Path, TrainReport], data: RerankData) -> None:
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
