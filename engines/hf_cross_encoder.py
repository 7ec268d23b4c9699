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

# Tokenizer files other libraries (sentence-transformers, AutoTokenizer) read beside tokenizer.json.
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
LIMITS_FILE = "rankserve_pairs.json"  # serving options: pair limits, learned prior weights


def lexical_priors(input_ids: torch.Tensor, attention_mask: torch.Tensor, segments: torch.Tensor,
                   specials: torch.Tensor, word_embeddings: nn.Embedding) -> torch.Tensor:
    """(B, 2) priors from the pair's own word pieces, defined on any catalog's text.

    - coverage: share of the query's pieces that occur verbatim in the item text;
    - maxsim: mean over the query's pieces of the best cosine to an item piece, over the encoder's
      own input embeddings (so "pillows" still meets "pillow").
    """
    # (isin has no ONNX export: compare against each special id instead.)
    plain = attention_mask.bool() & (input_ids[:, :, None] != specials).all(dim=2)
    q = (plain & (segments == 0)).float()
    d = plain & (segments == 1)
    n_q = q.sum(dim=1).clamp_min(1.0)
    same = (input_ids[:, :, None] == input_ids[:, None, :]) & d[:, None, :]
    coverage = (same.float().amax(dim=2) * q).sum(dim=1) / n_q
    e = nn.functional.normalize(word_embeddings(input_ids), dim=-1)
    sim = (e @ e.transpose(1, 2)).masked_fill(~d[:, None, :], -1.0)
    maxsim = (sim.amax(dim=2) * q).sum(dim=1) / n_q
    return torch.stack([coverage, maxsim], dim=1)


class HfCrossEncoder(nn.Module):
    """``prior_weights``: None serves the logit alone; a pair of floats adds the learned weighted
    `lexical_priors` to it (a fine-tune learns them from zero, `training.finetune`)."""

    def __init__(self, model: PreTrainedModel, tokenizer_file: Path, *, max_length: int = 64,
                 max_query_tokens: int = 16, prior_weights: list[float] | None = None) -> None:
        super().__init__()
        self.model = model
        self.tokenizer_file = Path(tokenizer_file)
        self.max_length = max_length
        self.max_query_tokens = max_query_tokens
        layout = self.pair_tokenizer().layout
        self.sep_id = layout.sep_id
        self.register_buffer("specials", torch.tensor([layout.cls_id, layout.sep_id, layout.pad_id]),
                             persistent=False)
        self.prior = None if prior_weights is None else nn.Parameter(torch.tensor(prior_weights).float())

    def segments(self, input_ids: torch.Tensor) -> torch.Tensor:
        sep = (input_ids == self.sep_id).long()
        return ((sep.cumsum(dim=1) - sep) > 0).long()  # the first [SEP] closes segment 0

    def prior_score(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, segments: torch.Tensor
                    ) -> torch.Tensor:
        """(B,) the learned weighted `lexical_priors` (the model must have prior weights)."""
        assert self.prior is not None
        priors = lexical_priors(input_ids, attention_mask, segments, self.specials,
                                self.model.get_input_embeddings())
        # A weighted sum, not a MatMul: INT8 quantisation must leave this 2-weight product alone.
        return (priors * self.prior).sum(dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        segments = self.segments(input_ids)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=segments)
        logit = out.logits[:, 0]
        if self.prior is None:
            return logit
        return logit + self.prior_score(input_ids, attention_mask, segments)

    def score(self, input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int = 256, *,
              device: str = "cpu", by_length: bool = False) -> np.ndarray:
        return score_numpy(self, input_ids, attention_mask, batch_size, device=device, by_length=by_length)

    def pair_tokenizer(self, doc_cache_size: int = 0) -> PairTokenizer:
        return PairTokenizer.from_file(self.tokenizer_file, self.max_length, self.max_query_tokens,
                                       doc_cache_size=doc_cache_size)

    @property
    def int8_embeddings(self) -> bool:
        # The maxsim prior compares embedding rows: INT8 rows move its cosines (as they did the in-house
        # model's). Without priors the table only feeds the encoder; the parity gate checks the cost.
        return self.prior is None

    def save(self, path: Path) -> Path:
        """An HF folder (weights, config, tokenizer) plus the pair limits it is served with."""
        path = Path(path)
        self.model.save_pretrained(path, safe_serialization=True)
        if self.tokenizer_file.resolve() != (path / "tokenizer.json").resolve():
            (path / "tokenizer.json").write_bytes(self.tokenizer_file.read_bytes())
            for name in TOKENIZER_FILES:
                if (self.tokenizer_file.parent / name).exists():
                    (path / name).write_bytes((self.tokenizer_file.parent / name).read_bytes())
        limits: dict = {"max_length": self.max_length, "max_query_tokens": self.max_query_tokens}
        if self.prior is not None:
            limits["prior_weights"] = [float(w) for w in self.prior.detach().cpu()]
        (path / LIMITS_FILE).write_text(json.dumps(limits, indent=2))
        return path


def serving_options(path: Path) -> dict:
    """What the folder is served with beyond its HF files: pair limits and, if learned, prior weights."""
    file = Path(path) / LIMITS_FILE
    return json.loads(file.read_text()) if file.exists() else {}


def pair_limits(path: Path) -> dict[str, int]:
    return {k: v for k, v in serving_options(path).items() if k in ("max_length", "max_query_tokens")}


def load_hf_cross_encoder(path: Path, *, seed: int = 0, **options: object) -> HfCrossEncoder:
    """Load a checkpoint folder (with its tokenizer.json); a missing classification head starts fresh
    from ``seed``. ``options`` override the folder's saved max_length / max_query_tokens /
    prior_weights."""
    path = Path(path)
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"{path / 'tokenizer.json'}: a fast tokenizer file is needed")
    torch.manual_seed(seed)
    # Eager attention: the exported ONNX graph must not depend on an SDPA kernel.
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1,
                                                               attn_implementation="eager")
    return HfCrossEncoder(model, path / "tokenizer.json", **{**serving_options(path), **options}).eval()
