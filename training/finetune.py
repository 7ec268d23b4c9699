"""Fine-tune a pretrained BERT-family encoder (default: all-MiniLM-L6-v2) into the served cross-encoder.

The budget is a number of optimizer steps, never wall-clock, so two builds on the same inputs give the
same model whatever the machine's load or speed (to the last digits only on the same CPU kind: float
kernels differ across CPUs, docs/quality.md, session 10). Gradient steps read ``train``-split queries
only: each step draws one short graded list per query from the builder's judgments and the served
retriever's top 100 for that query (training.sampling, training.mining), with other queries' Exact
items of another class swapped in as negatives. ``val`` queries' served top-100 lists pick the
checkpoint. ``dev`` is never read.

The loss is listwise (ListNet over gains ``2**rel - 1``) plus, optionally, a pointwise BCE on the graded
target ``rel / 2`` that keeps logits on one scale across queries (the head and MMR compare them).
A shallower student (`FinetuneConfig.layers`) keeps the teacher's first layers, as DistilBERT does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engines.hf_cross_encoder import HfCrossEncoder, load_hf_cross_encoder
from engines.pair_tokenizer import PairTokenizer
from training.augment import augmented_data
from training.data import (
    LabelledList,
    RerankData,
    labelled_candidate_lists,
    training_judgments,
    training_sampler,
)
from training.metrics import nanmean, ndcg_at_k
from training.pseudo import PSEUDO_QID
from training.sampling import ListSampler, swap_negatives


@dataclass
class FinetuneConfig:
    steps: int = 400
    batch_queries: int = 4  # lists per step; pairs per step = batch_queries * list_size
    list_size: int = 8
    lr: float = 5e-5
    head_lr: float = 1e-3  # the fresh classification head starts from nothing
    # The two prior weights start at zero and must reach the logits' scale (several units) within the
    # budget: at head_lr they moved to 0.035 in 400 steps and the priors did nothing.
    prior_lr: float = 0.02  # val: 0.868 at 0.02 and at 0.1, another catalog's val 0.874 vs 0.845
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    bce_weight: float = 0.0  # 0 = ListNet only
    candidate_fraction: float = 0.5  # share of lists drawn from the served retriever's top 100
    swap_negatives: int = 2
    # Keep negatives of classes no train query finds relevant (training.data.training_judgments). Off:
    # val 0.849 vs 0.842, held-out classes 0.769 vs 0.761, mean of two seeds (docs/quality.md, session 14).
    all_class_negatives: bool = False
    max_length: int = 64
    max_query_tokens: int = 16
    layers: int = 0  # 0 keeps every encoder layer; n keeps the first n (a shallower student)
    prior: bool = True  # add the learned weighted lexical priors (engines.hf_cross_encoder)
    # Synthetic train-class queries judged in a separate training catalog (training.augment); 0 disables.
    # Off by default: on val it measured level with the served catalog's own train queries (0.844 vs
    # 0.847, and 0.854 vs 0.859 on another seed's catalog; docs/quality.md).
    augment_queries: int = 0
    augment_per_query: float = 8.0
    # Pseudo-queries of the catalog's classes labelled by the catalog's classes (training.pseudo), this
    # many per judged train list; 0 disables. 0.5: in one fine-tune it raised both selection sets (val
    # +0.003, held-out classes +0.019, two seeds); the build with it, the head's held-out classes left
    # out of them, raised val's cross-encoder 0.858 -> 0.866 (docs/quality.md, session 15).
    pseudo_share: float = 0.5
    # Share of train classes whose queries the fine-tune never sees: their lists are scored by a model
    # that never trained on them, so the list-fusion head learns how far to trust the model on a class it
    # does not know (out-of-fold stacking). With the head fitted on in-fold lists only it over-trusted the
    # model: val 0.94 vs 0.98, held-out classes 0.84 vs 0.89 (docs/quality.md, session 5). 0 disables.
    head_holdout_classes: float = 0.3
    evals: int = 4  # val passes spread over the steps (plus one at the end)
    # Fine-tunes (one seed each) averaged into the served model: a uniform model soup (training.soup).
    soup: int = 1
    # WiSE-FT (training.soup): the served weights are alpha * fine-tuned + (1 - alpha) * pretrained.
    # 1 serves the fine-tune as it ended.
    wise_alpha: float = 1.0
    eval_batch: int = 256
    device: str = "cpu"
    # Fixed, not the machine's core count: CPU float reductions are split by thread count, so builds with
    # 2 and 16 threads differ in the last digits. 2 is the project machines' cores (`make run` <= 15 min).
    threads: int = 2


@dataclass
class FinetuneReport:
    base_model: str
    val_ndcg10: float
    initial_val_ndcg10: float
    best_step: int
    steps: int
    train_queries: int  # judged train queries drawn from (pseudo-queries apart)
    val_queries: int
    final_loss: float
    config: dict
    history: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)  # a soup's runs: seed, best step, val NDCG@10 each
    finetuned_val_ndcg10: float | None = None  # before WiSE-FT moved the weights back (training.soup)
    pseudo_queries: int = 0  # pseudo-query lists drawn from (training.pseudo)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


@dataclass
class FinetuneInputs:
    """Everything a run reads: the train-list sampler over the training catalog's texts and classes,
    and val's served lists over the served catalog's texts."""

    sampler: ListSampler
    texts: np.ndarray
    product_class: np.ndarray | None
    val: list[LabelledList]
    val_texts: np.ndarray
    augment: dict = field(default_factory=dict)


def finetune_inputs(data: RerankData, cfg: FinetuneConfig, *, seed: int = 0, progress: bool = False,
                    exclude_texts: set[str] | None = None, pseudo_skip: frozenset[str] = frozenset()
                    ) -> FinetuneInputs:
    """The train-list sampler (judged + retriever-mined lists of train queries, and pseudo-queries) and
    val's served lists. ``exclude_texts``: query texts no pseudo-query may be (default: ``data``'s)."""
    tdata, augment = augmented_data(data, cfg.augment_queries, cfg.augment_per_query, seed=seed,
                                    progress=progress)
    rule = cfg.all_class_negatives
    sampler = training_sampler(tdata, training_judgments(tdata, all_class_negatives=rule),
                               list_size=cfg.list_size, candidate_fraction=cfg.candidate_fraction,
                               all_class_negatives=rule, progress=progress)
    if cfg.pseudo_share > 0 and data.products is not None:  # as retriever-mined lists, from the catalog
        from training.pseudo import with_pseudo_lists  # faiss: only where lists are mined

        sampler = with_pseudo_lists(sampler, data, cfg.pseudo_share, seed=seed, exclude=exclude_texts,
                                    skip_classes=pseudo_skip, progress=progress)
    val = labelled_candidate_lists(data, ("val",), progress=progress)["val"]
    return FinetuneInputs(sampler, tdata.texts, tdata.product_class, val, data.texts, augment)


def listnet_loss(scores: torch.Tensor, rels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy between the list's scores and gains 2**rel - 1 (B, K)."""
    gains = torch.exp2(rels.float()) - 1.0
    target = gains / gains.sum(dim=1, keepdim=True).clamp_min(1e-9)
    return -(target * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()


def list_loss(scores: torch.Tensor, rels: torch.Tensor, bce_weight: float) -> torch.Tensor:
    loss = listnet_loss(scores, rels)
    if bce_weight > 0:
        target = rels.float() / 2.0
        loss = loss + bce_weight * torch.nn.functional.binary_cross_entropy_with_logits(scores, target)
    return loss


def truncate_layers(model: HfCrossEncoder, layers: int) -> HfCrossEncoder:
    """Keep the encoder's first ``layers`` layers (the student starts as the teacher's lower half)."""
    encoder = model.model.base_model.encoder
    if 0 < layers < len(encoder.layer):
        encoder.layer = encoder.layer[:layers]
        model.model.config.num_hidden_layers = layers
    return model


def _optimizer(model: HfCrossEncoder, cfg: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW: the encoder at ``lr``, the head at ``head_lr``, the prior weights at ``prior_lr``; no decay
    on biases and LayerNorms."""
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if name == "prior":
            lr = cfg.prior_lr
        elif name.startswith(f"model.{model.model.base_model_prefix}."):
            lr = cfg.lr
        else:
            lr = cfg.head_lr
        decay = p.ndim >= 2 and "LayerNorm" not in name
        groups.setdefault((lr, decay), []).append(p)
    return torch.optim.AdamW([
        {"params": ps, "lr": lr, "base_lr": lr, "weight_decay": cfg.weight_decay if decay else 0.0}
        for (lr, decay), ps in sorted(groups.items(), key=lambda kv: kv[0])
    ])


def lr_scale(frac: float, warmup_frac: float) -> float:
    """Learning-rate factor at ``frac`` of the schedule: linear warmup, then linear decay to zero."""
    if frac < warmup_frac:
        return max(frac / warmup_frac, 0.02)
    return max(0.0, 1.0 - (frac - warmup_frac) / (1.0 - warmup_frac))


def list_ndcg(model: HfCrossEncoder, lists: Sequence[LabelledList], texts: np.ndarray, *,
              batch: int = 256, device: str = "cpu") -> float:
    """Mean NDCG@10 of ``model`` reordering each list by its scores alone (lists without gain skipped)."""
    if not lists:
        return float("nan")
    queries = [sl.query for sl in lists for _ in sl.ids]
    ids, mask = model.pair_tokenizer().encode_pairs(
        queries, texts[np.concatenate([sl.ids for sl in lists])].tolist())
    scores = model.score(ids, mask, batch, device=device, by_length=True)
    bounds = np.cumsum([0] + [len(sl.ids) for sl in lists])
    return nanmean([ndcg_at_k(scores[lo:hi], sl.rels, 10, sl.ideal_rels)
                    for sl, lo, hi in zip(lists, bounds[:-1], bounds[1:], strict=True)])


def retrieval_ndcg(lists: Sequence[LabelledList]) -> float:
    """Mean NDCG@10 of the lists in their retrieval order: the baseline a reranker must beat."""
    return nanmean([ndcg_at_k(sl.retrieval, sl.rels, 10, sl.ideal_rels) for sl in lists])


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads (None: as they are), then put the process's count back."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]fine-tune"), BarColumn(),
        TextColumn("step {task.completed:.0f}/{task.total:.0f}  loss {task.fields[loss]:.4f}"),
        TextColumn("val ndcg@10 {task.fields[ndcg]:.4f}"), TimeElapsedColumn(), disable=not enabled,
    )


def finetune(
    base_model: Path, inputs: FinetuneInputs, cfg: FinetuneConfig | None = None, *, seed: int = 0,
    progress: bool = True, log: Callable[[str], None] | None = None,
) -> tuple[HfCrossEncoder, FinetuneReport]:
    """Fine-tune ``base_model`` for ``cfg.steps`` steps; returns the best checkpoint by val NDCG@10."""
    cfg = cfg or FinetuneConfig()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if cfg.device == "cpu":
        torch.set_num_threads(cfg.threads)
    model = load_hf_cross_encoder(base_model, seed=seed, max_length=cfg.max_length,
                                  max_query_tokens=cfg.max_query_tokens,
                                  prior_weights=[0.0, 0.0] if cfg.prior else None)
    # float(): a checkpoint stored in half precision still trains in FP32.
    model = truncate_layers(model, cfg.layers).float().to(cfg.device)
    tok = model.pair_tokenizer(doc_cache_size=200_000)
    opt = _optimizer(model, cfg)

    def validate() -> float:
        return list_ndcg(model, inputs.val, inputs.val_texts, batch=cfg.eval_batch, device=cfg.device)

    initial = best = validate()
    best_step, best_state = 0, _state(model)
    history: list[dict] = [{"step": 0, "val_ndcg10": initial}]
    eval_at = {round(cfg.steps * (i + 1) / (cfg.evals + 1)) for i in range(cfg.evals)} | {cfg.steps}
    batches = _endless_batches(inputs.sampler, cfg.batch_queries, rng)
    loss_ema = float("nan")
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("fine-tune", total=cfg.steps, loss=float("nan"), ndcg=initial)
        for step in range(1, cfg.steps + 1):
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_scale((step - 1) / cfg.steps, cfg.warmup_frac)
            lists = [inputs.sampler.draw(q, rng) for q in next(batches)]
            if cfg.swap_negatives:
                lists = swap_negatives(lists, inputs.product_class, rng, cfg.swap_negatives)
            value = train_step(model, opt, tok, inputs.texts, lists, device=cfg.device,
                               bce_weight=cfg.bce_weight)
            loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
            if step in eval_at:
                score = validate()
                history.append({"step": step, "loss": loss_ema, "val_ndcg10": score})
                if log:
                    log(f"step {step}: val ndcg@10 {score:.4f}, loss {loss_ema:.4f}")
                # Ties go to the later checkpoint: it has seen more data at the same val score.
                if score >= best:
                    best, best_step, best_state = score, step, _state(model)
                bar.update(task, ndcg=best)
            bar.update(task, completed=step, loss=loss_ema)
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    report = FinetuneReport(
        base_model=str(base_model), val_ndcg10=best, initial_val_ndcg10=initial, best_step=best_step,
        steps=cfg.steps, train_queries=sum(q < PSEUDO_QID for q in inputs.sampler.lists),
        pseudo_queries=sum(q >= PSEUDO_QID for q in inputs.sampler.lists), val_queries=len(inputs.val),
        final_loss=loss_ema, config=asdict(cfg), history=history,
    )
    return model, report


def _endless_batches(sampler: ListSampler, batch_queries: int, rng: np.random.Generator
                     ) -> Iterator[list[int]]:
    while True:
        yield from sampler.batches(batch_queries, rng)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, tok: PairTokenizer, texts: np.ndarray,
               lists: list[tuple[str, np.ndarray, np.ndarray]], *, device: str = "cpu",
               bce_weight: float = 0.0) -> float:
    """One clipped optimizer step on a batch of (query, product ids, rels) lists; returns its loss."""
    queries = [q for q, pids, _ in lists for _ in pids]
    pids = np.concatenate([p for _, p, _ in lists])
    rels = torch.from_numpy(np.stack([r for _, _, r in lists])).to(device)
    ids, mask = tok.encode_pairs(queries, texts[pids].tolist())
    scores = model(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
    loss = list_loss(scores.view(len(lists), -1), rels, bce_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def _state(model: HfCrossEncoder) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
