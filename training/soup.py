"""Weight-space averages of fine-tunes, two of them (Wortsman et al., 2022):

- a uniform model soup ("Model soups"): the same base fine-tuned with several seeds, their weights
  averaged into the one served model. Runs from one pretrained start stay in one basin, so the average is
  a model of its own and not a blur of two; it evens out the seed-to-seed spread (docs/quality.md, session 9);
- WiSE-FT ("Robust fine-tuning of zero-shot models"): the fine-tuned weights moved back toward the
  pretrained ones, ``alpha * tuned + (1 - alpha) * pretrained``. Fine-tuning on ~130 classes pulls the
  encoder away from what pretraining knew about words it never saw ranked; the interpolation keeps part
  of it. Measured in docs/quality.md (session 10): better on the selection sets for the model alone in
  FP32, but the served INT8 model lost a little and the transformer's share of the served pipeline went
  to zero, so the build keeps the fine-tune as it ends (alpha 1); ``rankserve train --wise-alpha``.

Inference costs what one model costs either way; the build pays one fine-tune per seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from engines.hf_cross_encoder import HfCrossEncoder
from training.finetune import FinetuneConfig, FinetuneInputs, FinetuneReport, finetune, list_ndcg


def average_weights(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None
                    ) -> dict[str, torch.Tensor]:
    """The (weighted) element-wise mean of each floating-point tensor; others (integer buffers such as
    position ids, equal in every run) are the first run's. ``weights`` default to uniform."""
    first = states[0]
    if any(s.keys() != first.keys() for s in states):
        raise ValueError("the runs' models differ in their parameters: only one architecture can be averaged")
    w = torch.tensor(weights if weights is not None else [1.0] * len(states), dtype=torch.float64)
    if len(w) != len(states) or w.sum() <= 0:
        raise ValueError(f"need one positive-sum weight per state, got {list(w)} for {len(states)}")
    w = w / w.sum()
    return {k: sum(float(wi) * s[k] for wi, s in zip(w, states, strict=True)).to(v.dtype)
            if v.is_floating_point() else v.clone() for k, v in first.items()}


def pretrained_state(base_model: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's own tensors under the cross-encoder's names (``model.…``), without what loading
    it as a one-label classifier added fresh (a bi-encoder's classification head)."""
    model, info = AutoModelForSequenceClassification.from_pretrained(
        base_model, num_labels=1, output_loading_info=True)
    fresh = set(info["missing_keys"])
    return {f"model.{k}": v for k, v in model.state_dict().items() if k not in fresh}


def wise_ft(tuned: Mapping[str, torch.Tensor], pretrained: Mapping[str, torch.Tensor], alpha: float
            ) -> dict[str, torch.Tensor]:
    """``alpha * tuned + (1 - alpha) * pretrained`` for every floating tensor the checkpoint had; what the
    fine-tune started fresh (the head, the prior weights) has no pretrained value and stays as tuned."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = dict(tuned)
    for k, v in tuned.items():
        if k in pretrained and v.is_floating_point():
            if pretrained[k].shape != v.shape:
                raise ValueError(f"{k}: the base checkpoint's {tuple(pretrained[k].shape)} is not the "
                                 f"fine-tune's {tuple(v.shape)}: not the model it started from")
            out[k] = average_weights([{k: v}, {k: pretrained[k].to(v.dtype)}], [alpha, 1.0 - alpha])[k]
    return out


def finetune_soup(base_model: Path, inputs: FinetuneInputs, cfg: FinetuneConfig, *, seed: int = 0,
                  progress: bool = True) -> tuple[HfCrossEncoder, FinetuneReport]:
    """``cfg.soup`` fine-tunes (seeds ``seed``, ``seed + 1``, …), each its best checkpoint by val, averaged,
    then moved ``1 - cfg.wise_alpha`` of the way back to the pretrained weights. The report is the first
    run's with the served model's val NDCG@10, the average's before WiSE-FT (``finetuned_val_ndcg10``)
    and each run's (``runs``). One run and ``wise_alpha`` 1 is `finetune` itself."""
    if cfg.soup <= 1 and cfg.wise_alpha >= 1.0:
        return finetune(base_model, inputs, cfg, seed=seed, progress=progress)
    runs = [finetune(base_model, inputs, cfg, seed=seed + i, progress=progress)
            for i in range(max(cfg.soup, 1))]
    model, report = runs[0]
    if len(runs) > 1:
        model.load_state_dict(average_weights([m.state_dict() for m, _ in runs]))
    # One run's best checkpoint was scored on val already; an average must be scored anew.
    tuned_val = val = (report.val_ndcg10 if len(runs) == 1
                       else list_ndcg(model, inputs.val, inputs.val_texts, batch=cfg.eval_batch))
    if cfg.wise_alpha < 1.0:
        model.load_state_dict(wise_ft(model.state_dict(), pretrained_state(base_model), cfg.wise_alpha))
        val = list_ndcg(model, inputs.val, inputs.val_texts, batch=cfg.eval_batch)
    each = [{"seed": seed + i, "best_step": r.best_step, "val_ndcg10": r.val_ndcg10}
            for i, (_, r) in enumerate(runs)]
    return model, replace(report, val_ndcg10=val, finetuned_val_ndcg10=tuned_val, runs=each)
