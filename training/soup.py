"""A uniform model soup (Wortsman et al., 2022, "Model soups"): the same base fine-tuned with several
seeds, and their weights averaged into the one served model. Inference costs what one model costs; the
build pays one fine-tune per seed. Runs from one pretrained start stay in one basin, so the average is a
model of its own and not a blur of two; here it evens out the seed-to-seed spread that moved every
figure as much as the changes tried (docs/quality.md, session 9, has what it measured on val).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from engines.hf_cross_encoder import HfCrossEncoder
from training.finetune import FinetuneConfig, FinetuneInputs, FinetuneReport, finetune, list_ndcg


def average_weights(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of each floating-point tensor; others (integer buffers such as position
    ids, equal in every run) are the first run's."""
    first = states[0]
    if any(s.keys() != first.keys() for s in states):
        raise ValueError("the runs' models differ in their parameters: only one architecture can be averaged")
    return {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v.clone()
            for k, v in first.items()}


def finetune_soup(base_model: Path, inputs: FinetuneInputs, cfg: FinetuneConfig, *, seed: int = 0,
                  progress: bool = True) -> tuple[HfCrossEncoder, FinetuneReport]:
    """``cfg.soup`` fine-tunes (seeds ``seed``, ``seed + 1``, …), each its best checkpoint by val, averaged;
    the report is the first run's with the soup's val NDCG@10 and each run's in ``runs``. One run when
    ``cfg.soup`` is 1: `finetune` itself."""
    if cfg.soup <= 1:
        return finetune(base_model, inputs, cfg, seed=seed, progress=progress)
    runs = [finetune(base_model, inputs, cfg, seed=seed + i, progress=progress) for i in range(cfg.soup)]
    model = runs[0][0]
    model.load_state_dict(average_weights([m.state_dict() for m, _ in runs]))
    val = list_ndcg(model, inputs.val, inputs.val_texts, batch=cfg.eval_batch)
    each = [{"seed": seed + i, "best_step": r.best_step, "val_ndcg10": r.val_ndcg10}
            for i, (_, r) in enumerate(runs)]
    return model, replace(runs[0][1], val_ndcg10=val, runs=each)
