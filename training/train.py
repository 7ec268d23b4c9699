"""Time-budgeted listwise training of the cross-encoder on the catalog's graded judgments.

Only ``train``-split queries (training.splits) are ever read for gradient steps: `training_judgments`
(training.data) is the single source of the trainer's data, and hard negatives are mined from it too,
so neither dev nor val queries leak in. Each step samples one short list per query (training.sampling)
and minimises ListNet softmax cross-entropy against the graded gains ``2**rel - 1``, which teaches
Exact > Partial > Irrelevant rather than a pointwise threshold. The best checkpoint by validation
NDCG@10 is kept.

By default the gradient steps read a separate training catalog of the train queries plus synthetic
train-class queries (`augmented_data`, training.augment), built inside the time budget; validation
always reads the original catalog's val queries.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engines.cross_encoder import CrossEncoder, CrossEncoderConfig, build_model, save_model
from engines.pair_tokenizer import PairTokenizer
from training.augment import augmented_data
from training.data import (
    RerankData,
    judgments,
    score_judged,
    served_val_lists,
    training_judgments,
    training_sampler,
)
from training.finetune import lr_scale, train_step
from training.metrics import mean_ndcg
from training.sampling import ListSampler, swap_negatives


@dataclass
class TrainConfig:
    batch_queries: int = 16
    list_size: int = 8
    lr: float = 1e-3  # ~from-scratch encoder (only embeddings pretrained): 3e-4 idled for ~20 steps
    weight_decay: float = 0.01
    warmup_frac: float = 0.06
    max_epochs: int = 200
    evals: int = 5  # validation passes spread over the budget (plus one at the start and the end)
    min_eval_interval_s: float = 45.0  # short budgets skip mid-run evals: they'd eat the training time
    mine_negatives: bool = True
    # Share of training lists drawn from the served retriever's top 100 (training.mining); 0 disables.
    candidate_fraction: float = 0.5
    candidate_depth: int = 100
    # Synthetic train-class queries judged in a separate training catalog (training.augment); 0 disables.
    # Capped at `augment_per_query` x the train queries so small (test) catalogs stay fast.
    augment_queries: int = 2000
    augment_per_query: float = 8.0
    # What early stopping measures: "served" = val queries' hybrid top-100 lists (what serving
    # reorders; falls back to judged lists without catalog products), "judged" = the builder's lists.
    validate_on: str = "served"
    # Keep the pretrained word vectors fixed: the maxsim prior and the match features are computed
    # from them, and Adam at 1e-3 moves a 0.9-std table far within a few hundred steps.
    freeze_embeddings: bool = True
    threads: int | None = None
    model: CrossEncoderConfig = field(default_factory=CrossEncoderConfig)


@dataclass
class TrainReport:
    val_ndcg10: float
    initial_val_ndcg10: float
    best_step: int
    steps: int
    epochs: int
    seconds: float
    train_queries: int
    val_queries: int
    dev_queries: int
    train_judgments: int
    val_pairs: int
    final_loss: float
    config: dict
    history: list[dict] = field(default_factory=list)
    augment: dict = field(default_factory=dict)  # training.augment report; empty when not augmenting

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%  step {task.fields[step]}  loss {task.fields[loss]:.4f}"),
        TextColumn("val ndcg@10 {task.fields[ndcg]:.4f}"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def _sampler(tdata: RerankData, train: pd.DataFrame, cfg: TrainConfig, progress: bool) -> ListSampler:
    return training_sampler(tdata, train, list_size=cfg.list_size, mine_negatives=cfg.mine_negatives,
                            candidate_fraction=cfg.candidate_fraction, depth=cfg.candidate_depth,
                            progress=progress)


def _new_model(cfg: TrainConfig) -> CrossEncoder:
    model = build_model(cfg.model)
    if cfg.freeze_embeddings:
        model.bert.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    return model


def _optimizer(model: CrossEncoder, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and LayerNorm weights get no weight decay."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in params if p.ndim < 2 or "LayerNorm" in n]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )


def _evaluator(
    model: CrossEncoder, tok: PairTokenizer, data: RerankData, val: pd.DataFrame, cfg: TrainConfig
) -> Callable[[], float]:
    """Val NDCG@10 of ``model`` as it is when called, on the lists ``cfg.validate_on`` names."""
    served, served_rels = served_val_lists(data) if cfg.validate_on == "served" else (pd.DataFrame(), {})

    def evaluate() -> float:
        if len(served):
            return mean_ndcg(served, score_judged(model, tok, data, served), judged_rels=served_rels)
        return mean_ndcg(val, score_judged(model, tok, data, val)) if len(val) else float("nan")

    return evaluate


def _state(model: CrossEncoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class _Selection:
    """Validation history and the best weights so far (model selection by val NDCG@10)."""

    model: CrossEncoder
    evaluate: Callable[[], float]
    t0: float  # perf_counter at the start of the run: history seconds count from it
    initial: float
    best: float
    best_step: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @classmethod
    def start(cls, model: CrossEncoder, evaluate: Callable[[], float], t0: float) -> _Selection:
        """Validate the untrained model: it is the checkpoint to beat."""
        initial = evaluate()
        history = [{"step": 0, "seconds": time.perf_counter() - t0, "val_ndcg10": initial}]
        return cls(model, evaluate, t0, initial, initial, 0, _state(model), history)

    def validate(self, step: int, loss: float, *, keep_ties: bool = False) -> float:
        """Record val NDCG@10 at ``step``; keep the weights if they beat (or, with keep_ties, match)
        the best so far."""
        score = self.evaluate()
        self.history.append(
            {"step": step, "seconds": time.perf_counter() - self.t0, "loss": loss, "val_ndcg10": score}
        )
        if score > self.best or (keep_ties and score >= self.best):
            self.best, self.best_step = score, step
            self.best_state = _state(self.model)
        return score


def fit(
    data: RerankData,
    *,
    minutes: float = 6.0,
    seed: int = 0,
    cfg: TrainConfig | None = None,
    progress: bool = True,
) -> tuple[CrossEncoder, TrainReport]:
    """Train a fresh model within ``minutes`` of wall time; returns the best model by val NDCG@10."""
    cfg = cfg or TrainConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    budget = minutes * 60.0
    t0 = time.perf_counter()

    # Gradient steps read `tdata` (train rows, plus synthetic ones when augmenting); val stays on `data`.
    tdata, augment = augmented_data(data, cfg.augment_queries, cfg.augment_per_query, seed=seed,
                                    progress=progress)
    train = training_judgments(tdata)
    val = judgments(data, "val")
    sampler = _sampler(tdata, train, cfg, progress)
    tok = PairTokenizer(cfg.model.max_length, cfg.model.max_query_tokens)
    model = _new_model(cfg)
    opt = _optimizer(model, cfg)
    max_steps = cfg.max_epochs * math.ceil(len(sampler.lists) / cfg.batch_queries)

    sel = _Selection.start(model, _evaluator(model, tok, data, val, cfg), t0)
    if progress:
        print(f"val ndcg@10 at step 0: {sel.initial:.4f}", flush=True)
    eval_every = max(1.0 / max(cfg.evals, 1), cfg.min_eval_interval_s / budget)
    next_eval = eval_every
    step, epoch, loss_ema = 0, 0, float("nan")
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("train", total=1.0, step=0, loss=float("nan"), ndcg=sel.initial)
        done = False
        while not done and epoch < cfg.max_epochs:
            for qids in sampler.batches(cfg.batch_queries, rng):
                frac = max((time.perf_counter() - t0) / budget, step / max_steps)
                if frac >= 1.0:
                    done = True
                    break
                for g in opt.param_groups:
                    # Over whichever runs out first: time or the epoch cap.
                    g["lr"] = cfg.lr * lr_scale(frac, cfg.warmup_frac)
                lists = swap_negatives([sampler.draw(q, rng) for q in qids], tdata.product_class, rng)
                value = train_step(model, opt, tok, tdata.texts, lists)
                step += 1
                loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
                if frac >= next_eval:
                    next_eval += eval_every
                    score = sel.validate(step, loss_ema)
                    if progress:
                        bar.console.print(f"step {step}: val ndcg@10 {score:.4f}, loss {loss_ema:.4f}")
                    bar.update(task, ndcg=score)
                bar.update(task, completed=min(frac, 1.0), step=step, loss=loss_ema)
            else:
                epoch += 1
        # Final evaluation at the end of the schedule (lr has decayed to ~0 here); ties go to it.
        sel.validate(step, loss_ema, keep_ties=True)
        bar.update(task, completed=1.0, ndcg=sel.best)

    model.load_state_dict(sel.best_state)
    model.eval()
    return model, _report(data, cfg, sel, train=train, val=val, step=step, epoch=epoch, loss=loss_ema,
                          augment=augment)


def _report(
    data: RerankData, cfg: TrainConfig, sel: _Selection, *, train: pd.DataFrame, val: pd.DataFrame,
    step: int, epoch: int, loss: float, augment: dict,
) -> TrainReport:
    splits = data.splits()
    return TrainReport(
        val_ndcg10=sel.best,
        initial_val_ndcg10=sel.initial,
        best_step=sel.best_step,
        steps=step,
        epochs=epoch,
        seconds=time.perf_counter() - sel.t0,
        train_queries=len(splits["train"]),
        val_queries=len(splits["val"]),
        dev_queries=len(splits["dev"]),
        train_judgments=len(train),
        val_pairs=len(val),
        final_loss=loss,
        config=asdict(cfg),
        history=sel.history,
        augment=augment,
    )


def train_to_dir(
    data: RerankData,
    out_dir: Path,
    *,
    minutes: float = 6.0,
    seed: int = 0,
    cfg: TrainConfig | None = None,
    progress: bool = True,
) -> TrainReport:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, report = fit(data, minutes=minutes, seed=seed, cfg=cfg, progress=progress)
    save_model(model, out_dir / "hf")
    (out_dir / "train_report.json").write_text(report.to_json())
    return report
