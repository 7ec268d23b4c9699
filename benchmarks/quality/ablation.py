"""Each part's share of the served ranking: the pipeline re-run with parts of the reranker taken out.

All rows score in process with the model's FP32 PyTorch weights (the served INT8 model is the
`cross_encoder`/`rerank` systems; INT8 vs FP32 is the parity gate's business), through the same
`RankingPipeline`, swapping only the rerank stage and the fuse stage:

    bert_alone        the transformer's logit alone (the learned prior weights set to zero), λ=1
    prior_alone       the learned weighted lexical priors alone (no transformer), λ=1
    bert_prior        the model as trained: logit + weighted priors, λ=1 (= cross_encoder, in FP32)
    bert_prior_blend  + the retrieval blend (`BlendFusion`), λ=1
    served_no_mmr     + the served fuse stage (the list-fusion head when the model ships one), λ=1
    served            + MMR at the default λ: the served pipeline
    no_transformer    the served pipeline with the rerank score replaced by `prior_alone`'s
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmarks.quality.runs import ABLATIONS, CachedRerankStage, Rankings, pipeline_rankings
from engines.hf_cross_encoder import HfCrossEncoder, load_hf_cross_encoder
from engines.model_dir import pair_tokenizer_for
from engines.rerank import InProcessRerankStage, PairEncoder
from pipeline.fuse import BlendFusion
from pipeline.pipeline import RankingPipeline


class PriorOnly(nn.Module):
    """The model's learned weighted lexical priors, without the transformer."""

    def __init__(self, model: HfCrossEncoder) -> None:
        super().__init__()
        if model.prior is None:
            raise ValueError("the model has no learned priors")
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.prior_score(input_ids, attention_mask, self.model.segments(input_ids))


class TorchScoreStage(InProcessRerankStage):
    """Scores with any (input_ids, attention_mask) -> (B,) module, FP32 on the CPU."""

    name = "ablation"

    def __init__(self, module: nn.Module, tokenizer: PairEncoder) -> None:
        super().__init__(tokenizer)
        self.module = module.eval()

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.module(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()


def ablation_stages(model_dir: Path) -> dict[str, TorchScoreStage]:
    """``bert_alone``, ``prior_alone`` and ``bert_prior`` stages of a fine-tuned model with priors."""
    model = load_hf_cross_encoder(Path(model_dir) / "hf")
    tok = pair_tokenizer_for(model_dir, doc_cache_size=100_000)
    bare = copy.deepcopy(model)
    bare.prior = None
    return {"bert_alone": TorchScoreStage(bare, tok), "prior_alone": TorchScoreStage(PriorOnly(model), tok),
            "bert_prior": TorchScoreStage(model, tok)}


async def ablation_rankings(pipeline: RankingPipeline, queries: pd.DataFrame, model_dir: Path, *,
                            default_lambda: float, blend_weight: float, progress: bool = True,
                            rows: Sequence[str] = ABLATIONS) -> dict[str, Rankings]:
    """Rankings of each ablation row (see the module doc); the pipeline's stages are restored after."""
    stages = {k: CachedRerankStage(v) for k, v in ablation_stages(model_dir).items()}
    served_reranker, served_fusion = pipeline.reranker, pipeline.fusion
    plan = {  # row -> (stage, fusion, λ)
        "bert_alone": ("bert_alone", BlendFusion(0.0), 1.0),
        "prior_alone": ("prior_alone", BlendFusion(0.0), 1.0),
        "bert_prior": ("bert_prior", BlendFusion(0.0), 1.0),
        "bert_prior_blend": ("bert_prior", BlendFusion(blend_weight), 1.0),
        "served_no_mmr": ("bert_prior", served_fusion, 1.0),
        "served": ("bert_prior", served_fusion, default_lambda),
        "no_transformer": ("prior_alone", served_fusion, default_lambda),
    }
    out: dict[str, Rankings] = {}
    try:
        for row in rows:
            stage, fusion, lam = plan[row]
            pipeline.reranker, pipeline.fusion = stages[stage], fusion
            out[row] = await pipeline_rankings(pipeline, queries, mmr_lambda=lam, use_reranker=True,
                                               label=f"ablation {row}", progress=progress)
    finally:
        pipeline.reranker, pipeline.fusion = served_reranker, served_fusion
    return out
