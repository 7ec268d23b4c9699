"""Any Hugging Face BERT-family cross-encoder (`AutoModelForSequenceClassification`, one label) as the
served graph: ``forward(input_ids, attention_mask) -> score (B,)``, the raw relevance logit.

Segment ids are derived inside the graph from the ``[CLS] q [SEP] d [SEP]`` layout (everything after the
first ``[SEP]`` is segment 1, as the tokenizer's pair template makes them), so Triton and every client
send the same two inputs for every model. A checkpoint without a classification head (a bi-encoder such
as all-MiniLM-L6-v2) gets a fresh one, seeded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from engines.cross_encoder import score_numpy
from engines.pair_tokenizer import PairTokenizer

LIMITS_FILE = "rankserve_pairs.json"  # max_length / max_query_tokens the model is served with


class HfCrossEncoder(nn.Module):
    def __init__(self, model: PreTrainedModel, tokenizer_file: Path, *, max_length: int = 64,
                 max_query_tokens: int = 16) -> None:
        super().__init__()
        self.model = model
        self.tokenizer_file = Path(tokenizer_file)
        self.max_length = max_length
        self.max_query_tokens = max_query_tokens
        self.sep_id = self.pair_tokenizer().layout.sep_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        sep = (input_ids == self.sep_id).long()
        segments = ((sep.cumsum(dim=1) - sep) > 0).long()  # the first [SEP] closes segment 0
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=segments)
        return out.logits[:, 0]

    def score(self, input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return score_numpy(self, input_ids, attention_mask, batch_size)

    def pair_tokenizer(self, doc_cache_size: int = 0) -> PairTokenizer:
        return PairTokenizer.from_file(self.tokenizer_file, self.max_length, self.max_query_tokens,
                                       doc_cache_size=doc_cache_size)

    @property
    def int8_embeddings(self) -> bool:
        return True  # the parity gate checks it costs no ranking quality

    def save(self, path: Path) -> Path:
        """An HF folder (weights, config, tokenizer) plus the pair limits it is served with."""
        path = Path(path)
        self.model.save_pretrained(path, safe_serialization=True)
        if self.tokenizer_file.resolve() != (path / "tokenizer.json").resolve():
            (path / "tokenizer.json").write_bytes(self.tokenizer_file.read_bytes())
        (path / LIMITS_FILE).write_text(json.dumps(
            {"max_length": self.max_length, "max_query_tokens": self.max_query_tokens}, indent=2))
        return path


def pair_limits(path: Path) -> dict[str, int]:
    file = Path(path) / LIMITS_FILE
    return json.loads(file.read_text()) if file.exists() else {}


def load_hf_cross_encoder(path: Path, *, seed: int = 0, **limits: int) -> HfCrossEncoder:
    """Load a checkpoint folder (with its tokenizer.json); a missing classification head starts fresh
    from ``seed``. ``limits`` override the folder's saved max_length / max_query_tokens."""
    path = Path(path)
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"{path / 'tokenizer.json'}: a fast tokenizer file is needed")
    torch.manual_seed(seed)
    # Eager attention: the exported ONNX graph must not depend on an SDPA kernel.
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1,
                                                               attn_implementation="eager")
    return HfCrossEncoder(model, path / "tokenizer.json", **{**pair_limits(path), **limits}).eval()
