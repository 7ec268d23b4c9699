"""Small BERT cross-encoder scoring (query, product text) pairs.

`CrossEncoder` wraps `transformers.BertForSequenceClassification` (num_labels=1) so its interface is
exactly what Triton serves: ``forward(input_ids, attention_mask) -> score (B,)``. BERT's segment
ids are derived inside the graph from the ``<s> q </s> d </s>`` layout (everything after the first
``</s>`` is segment 1), so clients never send ``token_type_ids``.

On disk a model is a Hugging Face folder (config.json + model.safetensors + tokenizer.json +
tokenizer_config.json) that `sentence_transformers.CrossEncoder` / `AutoModelForSequenceClassification`
can load; the tokenizer's pair template yields the same segment ids, plus ``rankserve.json`` with
our `CrossEncoderConfig`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from engines.pair_tokenizer import PairTokenizer
from retrieval.wordllama import EMBEDDING_DIM, EOS_ID, PAD_ID, load_token_embeddings, tokenizer_path

# "▁|": the separator between a product text's fields (title | class | features); not a word.
PIPE_ID = 891

CONFIG_FILE = "rankserve.json"
PRIOR_FILE = "rankserve_prior.json"
MATCH_FILE = "rankserve_match.npy"


@dataclass(frozen=True)
class CrossEncoderConfig:
    vocab_size: int = 32000
    hidden_size: int = 256
    num_layers: int = 2  # 2 x 512 FFN: ~3x the training steps of 4 x 1024 per CPU minute, better dev NDCG
    num_heads: int = 4
    intermediate_size: int = 512
    max_position: int = 64
    dropout: float = 0.1
    # Tokenisation limits used with this model (see engines.pair_tokenizer).
    max_length: int = 48
    max_query_tokens: int = 16
    # Residual dense prior: score = BERT logit + scale * cos(mean query token vectors, mean doc token
    # vectors) over the model's own (WordLlama-initialised) word embeddings. At step 0 the model already
    # ranks like the dense retriever; training only has to learn corrections. Without it, a 6-minute CPU
    # budget (~100 steps) left the from-scratch encoder below random on held-out classes.
    dense_prior: bool = True
    prior_init: float = 10.0
    # "maxsim": mean over query words of the best cosine to any doc word (ColBERT's late interaction,
    # on word vectors = mean of their token vectors); zero-shot (lower-cased) val/dev NDCG@10 over
    # the hybrid top 100: 0.820 / 0.716 vs 0.653 / 0.640 for "mean" (the cosine of mean vectors).
    prior: str = "maxsim"
    # Word match signals added to the input embeddings: per token, whether its word occurs in the
    # other segment and its word's best cosine there. "This query word is matched" is learnable for
    # words never seen in training, which held-out classes need.
    match_features: bool = True

    @property
    def compares_word_vectors(self) -> bool:
        """The graph computes `word_matches` (cosines of word vectors): match features or the maxsim prior."""
        return self.match_features or (self.dense_prior and self.prior == "maxsim")

    def pair_tokenizer(self, doc_cache_size: int = 0) -> PairTokenizer:
        """The pair tokenizer with this model's limits."""
        return PairTokenizer(self.max_length, self.max_query_tokens, doc_cache_size=doc_cache_size)

    def bert_config(self) -> BertConfig:
        return BertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position,
            type_vocab_size=2,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            num_labels=1,
            pad_token_id=PAD_ID,
            # Eager attention exports to plain ONNX ops that ORT's BERT fusions recognise.
            attn_implementation="eager",
        )


def segment_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """0 for ``<s> q </s>``, 1 for ``d </s>``; PAD_ID == EOS_ID, so padding is masked out first."""
    sep = (input_ids == EOS_ID).long() * attention_mask.long()
    return ((torch.cumsum(sep, dim=1) - sep) > 0).long() * attention_mask.long()


def dense_prior(
    embeddings: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, segments: torch.Tensor
) -> torch.Tensor:
    """(B,) cosine of the mean word vector of the query's and the doc's content tokens (no specials)."""
    content = (input_ids > EOS_ID) & attention_mask.bool()
    q = (content & (segments == 0)).to(embeddings.dtype).unsqueeze(-1)
    d = (content & (segments == 1)).to(embeddings.dtype).unsqueeze(-1)
    qv = (embeddings * q).sum(dim=1)
    dv = (embeddings * d).sum(dim=1)
    return (qv * dv).sum(dim=-1) / (qv.norm(dim=-1) * dv.norm(dim=-1)).clamp_min(1e-6)


def word_start_table(vocab_size: int) -> torch.Tensor:
    """(vocab,) bool: the token begins a word (its piece starts with the SentencePiece space mark)."""
    from retrieval.wordllama import load_tokenizer

    table = torch.zeros(vocab_size, dtype=torch.bool)
    for piece, idx in load_tokenizer().get_vocab().items():
        if idx < vocab_size and piece.startswith("\u2581"):
            table[idx] = True
    return table


def word_matches(
    embeddings: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    segments: torch.Tensor,
    word_start: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Word-level matching between the query and the doc, inside the graph.

    A word is a run of content tokens starting at a word-start piece; its vector is the mean of its
    token vectors (sub-word pieces alone match too loosely: "rugs" is "r"+"ugs"). Returns, per token
    (B, L): 1.0 if its word occurs in the other segment, and its word's best cosine to the other
    segment's words; and per row (B,): the mean over query words of that best cosine (MaxSim).
    """
    content = (input_ids > EOS_ID) & (input_ids != PIPE_ID) & attention_mask.bool()
    starts = word_start[input_ids] & content
    # Word index of each content token; a doc never continues a query word (the doc starts a word).
    widx = torch.cumsum(starts.long(), dim=1) - 1
    slots = torch.arange(input_ids.shape[1], device=input_ids.device)
    member = ((widx.unsqueeze(2) == slots.view(1, 1, -1)) & content.unsqueeze(2)).to(embeddings.dtype)
    count = member.sum(dim=1)  # (B, W)
    valid = count > 0
    vec = torch.matmul(member.transpose(1, 2), embeddings) / count.clamp_min(1.0).unsqueeze(-1)
    unit = vec / vec.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    wseg = torch.matmul(member.transpose(1, 2), segments.unsqueeze(-1).to(embeddings.dtype)).squeeze(-1)
    is_doc = wseg > 0.5 * count
    cross = valid.unsqueeze(2) & valid.unsqueeze(1) & (is_doc.unsqueeze(2) != is_doc.unsqueeze(1))
    sim = torch.matmul(unit, unit.transpose(1, 2)).masked_fill(~cross, -1.0)
    best = sim.amax(dim=-1)
    best = torch.where(cross.any(dim=-1), best, torch.zeros_like(best))  # (B, W)
    exact = (best > 0.999).to(embeddings.dtype)
    # Back to tokens: each token carries its word's values.
    soft_tok = torch.matmul(member, best.unsqueeze(-1)).squeeze(-1)
    exact_tok = torch.matmul(member, exact.unsqueeze(-1)).squeeze(-1)
    qwords = (valid & ~is_doc).to(embeddings.dtype)
    maxsim = (best * qwords).sum(dim=1) / qwords.sum(dim=1).clamp_min(1.0)
    return exact_tok, soft_tok, maxsim


class CrossEncoder(nn.Module):
    def __init__(self, bert: BertForSequenceClassification, cfg: CrossEncoderConfig) -> None:
        super().__init__()
        self.bert = bert
        self.cfg = cfg
        self.prior_scale = nn.Parameter(torch.tensor(float(cfg.prior_init))) if cfg.dense_prior else None
        # Rows: exact-match direction, soft-match direction (scaled by the token's best cosine).
        self.match_embeddings = nn.Parameter(torch.zeros(2, cfg.hidden_size)) if cfg.match_features else None
        self.register_buffer("word_start", word_start_table(cfg.vocab_size), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        segments = segment_ids(input_ids, attention_mask)
        emb = self.bert.bert.embeddings.word_embeddings(input_ids)
        if self.cfg.compares_word_vectors:
            exact, soft, maxsim = word_matches(emb, input_ids, attention_mask, segments, self.word_start)
        if self.match_embeddings is not None:
            match = (
                exact.unsqueeze(-1) * self.match_embeddings[0] + soft.unsqueeze(-1) * self.match_embeddings[1]
            )
            out = self.bert(inputs_embeds=emb + match, attention_mask=attention_mask, token_type_ids=segments)
        else:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=segments)
        score = out.logits[:, 0]
        if self.prior_scale is not None:
            if self.cfg.prior == "maxsim":
                prior = maxsim
            else:
                prior = dense_prior(emb, input_ids, attention_mask, segments)
            score = score + self.prior_scale * prior
        return score

    def score(self, input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return score_numpy(self, input_ids, attention_mask, batch_size)

    def pair_tokenizer(self, doc_cache_size: int = 0) -> PairTokenizer:
        return self.cfg.pair_tokenizer(doc_cache_size)

    @property
    def int8_embeddings(self) -> bool:
        """INT8 word vectors moved the prior's cosines enough to fail the parity gate: keep them FP32."""
        return not self.cfg.compares_word_vectors


@torch.inference_mode()
def score_numpy(model: nn.Module, input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int = 256,
                *, device: str = "cpu", by_length: bool = False) -> np.ndarray:
    """Eval-mode float32 scores of a served-graph module for numpy inputs (restores its train/eval mode).

    ``by_length`` batches rows of similar length and crops each batch's padding: for many pairs padded
    to one width (a whole evaluation set), not for a request, which the tokenizer already pads tightly.
    """
    order = np.argsort(attention_mask.sum(axis=1), kind="stable") if by_length else np.arange(len(input_ids))
    out = np.zeros(len(input_ids), np.float32)
    was_training = model.training
    model.eval()
    for i in range(0, len(order), batch_size):
        rows = order[i : i + batch_size]
        width = int(attention_mask[rows].sum(axis=1).max()) if by_length else input_ids.shape[1]
        scores = model(torch.from_numpy(input_ids[rows, :width]).to(device),
                       torch.from_numpy(attention_mask[rows, :width]).to(device))
        out[rows] = scores.float().cpu().numpy().reshape(-1)
    model.train(was_training)
    return out


def build_model(cfg: CrossEncoderConfig | None = None, *, pretrained_embeddings: bool = True) -> CrossEncoder:
    """A fresh model; word embeddings start from the WordLlama table when the sizes match."""
    cfg = cfg or CrossEncoderConfig()
    bert = BertForSequenceClassification(cfg.bert_config())
    if pretrained_embeddings and cfg.hidden_size == EMBEDDING_DIM:
        table = torch.from_numpy(np.array(load_token_embeddings()[: cfg.vocab_size]))
        emb = bert.bert.embeddings
        with torch.no_grad():
            emb.word_embeddings.weight.copy_(table)
            # The table's scale (std ~0.9) dwarfs BERT's 0.02 init; scale position/segment embeddings
            # up so the embedding LayerNorm doesn't wash out order and query/doc information.
            std = 0.25 * float(table.std())
            emb.position_embeddings.weight.normal_(0.0, std)
            emb.token_type_embeddings.weight.normal_(0.0, std)
    model = CrossEncoder(bert, cfg)
    if model.prior_scale is not None:
        # Residual start: step 0 ranks exactly like the prior; training learns corrections to it.
        with torch.no_grad():
            bert.classifier.weight.zero_()
            bert.classifier.bias.zero_()
    if model.match_embeddings is not None:
        std = 0.25 * float(model.bert.bert.embeddings.word_embeddings.weight.detach().std())
        with torch.no_grad():
            model.match_embeddings.normal_(0.0, std)
    return model


def _tokenizer_json(cfg: CrossEncoderConfig) -> dict:
    """WordLlama tokenizer.json with the pair template/segments/truncation this model expects."""
    tok = json.loads(Path(tokenizer_path()).read_text())
    specials = {
        "<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
        "</s>": {"id": "</s>", "ids": [EOS_ID], "tokens": ["</s>"]},
    }
    tok["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "</s>", "type_id": 0}},
        ],
        "pair": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "</s>", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
            {"SpecialToken": {"id": "</s>", "type_id": 1}},
        ],
        "special_tokens": specials,
    }
    tok["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, tok["normalizer"]]}
    tok["truncation"] = None
    tok["padding"] = None
    return tok


def save_model(model: CrossEncoder, path: Path) -> Path:
    """Write a Hugging Face folder (+ rankserve.json) loadable by `load_model` and sentence-transformers."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.bert.save_pretrained(path, safe_serialization=True)
    (path / CONFIG_FILE).write_text(json.dumps(asdict(model.cfg), indent=2))
    if model.prior_scale is not None:
        # Not part of the HF BERT: a plain HF / sentence-transformers load scores without the prior.
        (path / PRIOR_FILE).write_text(json.dumps({"prior_scale": float(model.prior_scale.detach())}))
    if model.match_embeddings is not None:
        np.save(path / MATCH_FILE, model.match_embeddings.detach().numpy())
    (path / "tokenizer.json").write_text(json.dumps(_tokenizer_json(model.cfg)))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "model_max_length": model.cfg.max_length,
        "truncation_side": "right",
        "padding_side": "right",
        # Without this the fast tokenizer drops the template's segment ids and BERT sees all zeros.
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
    return path


def read_config(path: Path) -> CrossEncoderConfig:
    """The `CrossEncoderConfig` of a folder written by `save_model`."""
    raw = json.loads((Path(path) / CONFIG_FILE).read_text())
    # Models saved before these options existed.
    raw.setdefault("dense_prior", False)
    raw.setdefault("prior", "mean")
    raw.setdefault("match_features", False)
    return CrossEncoderConfig(**raw)


def load_model(path: Path) -> CrossEncoder:
    """Load a folder written by `save_model` (eval mode, CPU)."""
    path = Path(path)
    cfg = read_config(path)
    bert = BertForSequenceClassification.from_pretrained(path, attn_implementation="eager")
    model = CrossEncoder(bert, cfg)
    if model.prior_scale is not None:
        scale = json.loads((path / PRIOR_FILE).read_text())["prior_scale"]
        with torch.no_grad():
            model.prior_scale.fill_(float(scale))
    if model.match_embeddings is not None:
        with torch.no_grad():
            model.match_embeddings.copy_(torch.from_numpy(np.load(path / MATCH_FILE)))
    model.eval()
    return model
