"""Time-budgeted listwise training of the cross-encoder on the catalog's graded judgments.

Only ``train``-split queries (training.splits) are ever read for gradient steps: `training_judgments`
is the single source of the trainer's data, and hard negatives are mined from it too, so neither
dev nor val queries leak in. Each step samples one short list per query (1-2 Exact, 2 Partial, the
rest Irrelevant plus optionally one mined hard negative) and minimises ListNet softmax
cross-entropy against the graded gains ``2**rel - 1``, which teaches Exact > Partial > Irrelevant
rather than a pointwise threshold. The best checkpoint by validation NDCG@10 is kept.

By default the gradient steps read a separate training catalog of the train queries plus synthetic
train-class queries (`augmented_data`, training.augment), built inside the time budget; validation
always reads the original catalog's val queries.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engines.cross_encoder import CrossEncoder, CrossEncoderConfig, build_model, save_model
from engines.pair_tokenizer import PairTokenizer
from training.metrics import mean_ndcg, ndcg_at_k  # noqa: F401 - re-exported for callers
from training.splits import split_queries

# Graded relevance of WANDS labels (same as catalog.LABEL_GAIN).
LABEL_REL = {"Exact": 2, "Partial": 1, "Irrelevant": 0}


@dataclass
class RerankData:
    """What the reranker needs from a catalog: queries, judgments and the text of every product."""

    queries: pd.DataFrame  # query_id, query, query_class
    labels: pd.DataFrame  # query_id, product_id, label (Exact/Partial/Irrelevant)
    texts: np.ndarray  # object array, texts[product_id] = text the reranker sees
    product_class: np.ndarray | None = None  # product_class by product_id (for hard-negative mining)
    products: pd.DataFrame | None = None  # the catalog's products (retriever-mined lists need them)

    def splits(self) -> dict[str, pd.DataFrame]:
        return split_queries(self.queries)


def load_rerank_data(catalog_dir: Path) -> RerankData:
    from catalog import item_texts, load_catalog

    cat = load_catalog(Path(catalog_dir))
    products = cat.products.sort_index()
    if not np.array_equal(products.index.to_numpy(), np.arange(len(products))):
        raise ValueError("catalog products must be indexed 0..N-1 by product_id")
    return RerankData(
        queries=cat.queries,
        labels=cat.labels,
        texts=np.asarray(item_texts(products), dtype=object),
        product_class=products["product_class"].to_numpy(dtype=object),
        products=products,
    )


def judgments(data: RerankData, split: str) -> pd.DataFrame:
    """query_id, query, query_class, product_id, rel for the queries of one split."""
    qs = data.splits()[split][["query_id", "query", "query_class"]]
    df = data.labels.merge(qs, on="query_id", how="inner")
    df = df.assign(rel=df["label"].map(LABEL_REL).astype(np.int64))
    return df[["query_id", "query", "query_class", "product_id", "rel"]].sort_values(
        ["query_id", "product_id"], kind="stable", ignore_index=True
    )


def training_judgments(data: RerankData) -> pd.DataFrame:
    """Everything the trainer reads for gradient steps (train split only).

    Negatives whose product class is never relevant to any train query are dropped: such classes
    (e.g. the dev split's held-out ones) would only ever be seen as negatives, and the model learns
    "this class is always irrelevant" instead of query-item matching (measured: dev NDCG@10 on
    held-out classes fell below random).
    """
    train = judgments(data, "train")
    if data.product_class is None:
        return train
    cls = data.product_class[train["product_id"].to_numpy()]
    positive = set(cls[train["rel"].to_numpy() > 0])
    keep = (train["rel"].to_numpy() > 0) | np.isin(cls, list(positive))
    return train[keep].reset_index(drop=True)


def training_query_ids(data: RerankData) -> set[int]:
    return set(training_judgments(data)["query_id"].tolist())


def augmented_data(
    data: RerankData, cfg: TrainConfig, *, seed: int = 0, progress: bool = False
) -> tuple[RerankData, dict]:
    """The data gradient steps read: a training catalog of train + synthetic queries (training.augment).

    Returns ``(data, {})`` unchanged when augmentation is off, when ``data`` is not a builder catalog
    (no ``products``: its texts would not match the generated ones) or there is nothing to augment.
    """
    from training.augment import build_training_catalog

    if data.products is None:
        return data, {}
    n_train = len(data.splits()["train"])
    n = min(cfg.augment_queries, int(cfg.augment_per_query * n_train))
    if n <= 0:
        return data, {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rankserve-train-catalog-") as tmp:
        _, report = build_training_catalog(
            data.queries, Path(tmp), n_synthetic=n, seed=seed, progress=progress
        )
        tdata = load_rerank_data(Path(tmp))
    info = {**asdict(report), "products": len(tdata.texts), "seconds": time.perf_counter() - t0}
    return tdata, info


# ----------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class LabelledList:
    """One query's served candidates (hybrid top ``depth``), labelled as `rankserve eval` labels them."""

    query_id: int
    query: str
    ids: np.ndarray  # product ids, best first
    retrieval: np.ndarray  # their fused retrieval scores
    rels: np.ndarray  # graded label per candidate (unjudged = 0)
    ideal_rels: np.ndarray  # the query's full judgments: the NDCG ideal, so missed items count


def labelled_candidate_lists(
    data: RerankData, splits: Sequence[str], depth: int = 100, *, progress: bool = False
) -> dict[str, list[LabelledList]]:
    """Each split's queries with their served candidate lists, from one retrieval pass over all of them.

    Queries whose list comes back empty are left out. Needs the catalog's products.
    """
    from training.mining import hybrid_candidate_lists

    if data.products is None:
        raise ValueError("served candidate lists need the catalog's products (load_rerank_data)")
    judged = {s: judgments(data, s) for s in splits}
    queries = [(s, int(q), str(t)) for s, j in judged.items()
               for q, t in j.drop_duplicates("query_id")[["query_id", "query"]].itertuples(index=False)]
    out: dict[str, list[LabelledList]] = {s: [] for s in splits}
    if not queries:
        return out
    cands = hybrid_candidate_lists(data.products, list(data.texts), [t for _, _, t in queries], depth,
                                   progress=progress)
    rel_of = {(s, int(q), int(p)): int(r)
              for s, j in judged.items() for q, p, r in zip(j.query_id, j.product_id, j.rel, strict=True)}
    ideal = {(s, int(q)): g["rel"].to_numpy() for s, j in judged.items() for q, g in j.groupby("query_id")}
    for (split, qid, text), (ids, retrieval) in zip(queries, cands, strict=True):
        if ids.size:
            rels = np.array([rel_of.get((split, qid, int(p)), 0) for p in ids], dtype=np.int64)
            out[split].append(LabelledList(qid, text, ids, retrieval, rels, ideal[split, qid]))
    return out


def served_val_lists(data: RerankData, depth: int = 100) -> tuple[pd.DataFrame, dict[int, np.ndarray]]:
    """Val queries' served candidate lists (hybrid top ``depth``) labelled as evaluation labels them.

    Returns ``(lists, judged_rels)``: rows query_id, query, product_id, rel (unjudged = 0), and each
    query's rels over *all* its judgments (the NDCG ideal), so a list that misses relevant items scores
    below 1 exactly as in `rankserve eval`. This is what the reranker reorders when serving; the
    builder's judged lists (12 Exact, 18 Partial, 30 hard negatives) are a different distribution, and a
    model chosen on them measured worse on served lists than its untrained prior.
    """
    columns = ["query_id", "query", "product_id", "rel"]
    if data.products is None:
        return pd.DataFrame(columns=columns), {}
    lists = labelled_candidate_lists(data, ("val",), depth)["val"]
    rows = [(sl.query_id, sl.query, int(p), int(r))
            for sl in lists for p, r in zip(sl.ids, sl.rels, strict=True)]
    return pd.DataFrame(rows, columns=columns), {sl.query_id: sl.ideal_rels for sl in lists}


def score_judged(
    model: CrossEncoder, tok: PairTokenizer, data: RerankData, judged: pd.DataFrame, batch: int = 256
) -> np.ndarray:
    ids, mask = tok.encode_pairs(
        judged["query"].tolist(), data.texts[judged["product_id"].to_numpy()].tolist()
    )
    return model.score(ids, mask, batch_size=batch)


# ----------------------------------------------------------------------------------------- sampling


@dataclass
class ListSampler:
    """Samples one fixed-size graded list per train query."""

    lists: dict[int, tuple[str, dict[int, np.ndarray]]]  # qid -> (query, rel -> product ids)
    mined: dict[int, np.ndarray]  # qid -> hard-negative candidates
    list_size: int = 8
    # qid -> rel -> product ids among the served retriever's candidates (training.mining)
    candidates: dict[int, dict[int, np.ndarray]] = field(default_factory=dict)
    candidate_fraction: float = 0.0  # share of lists drawn from `candidates`

    @classmethod
    def from_judgments(
        cls, judged: pd.DataFrame, product_class: np.ndarray | None, *, list_size: int = 8, mine: bool = True
    ) -> ListSampler:
        if list_size < 6:
            raise ValueError("list_size must be >= 6 (up to 2 Exact + 2 Partial + 1 mined + 1 Irrelevant)")
        lists: dict[int, tuple[str, dict[int, np.ndarray]]] = {}
        for qid, g in judged.groupby("query_id", sort=True):
            by_rel = {r: g.loc[g["rel"] == r, "product_id"].to_numpy() for r in (0, 1, 2)}
            if len(by_rel[1]) + len(by_rel[2]) > 0:
                lists[int(qid)] = (str(g["query"].iloc[0]), by_rel)
        mined = mine_hard_negatives(judged, product_class) if mine else {}
        return cls(lists, mined, list_size)

    def with_candidates(self, mined_lists: pd.DataFrame, fraction: float) -> ListSampler:
        """Also draw ``fraction`` of the lists from retriever candidates (query_id, product_id, rel)."""
        cands: dict[int, dict[int, np.ndarray]] = {}
        for qid, g in mined_lists.groupby("query_id", sort=True):
            by_rel = {r: g.loc[g["rel"] == r, "product_id"].to_numpy(np.int64) for r in (0, 1, 2)}
            # A useful list needs something relevant and something to rank below it.
            if int(qid) in self.lists and len(by_rel[1]) + len(by_rel[2]) > 0 and len(by_rel[0]) > 0:
                cands[int(qid)] = by_rel
        return ListSampler(self.lists, self.mined, self.list_size, cands, fraction if cands else 0.0)

    def sample_candidates(self, qid: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        """Like `sample`, from the retriever's candidates: the negatives are what serving must demote."""
        by_rel = self.candidates[qid]
        k = self.list_size
        n_exact = min(len(by_rel[2]), int(rng.integers(1, 3)))
        n_partial = min(len(by_rel[1]), 2 if n_exact else 3)
        n_irr = k - n_exact - n_partial
        picks = [
            rng.choice(by_rel[2], n_exact, replace=False),
            rng.choice(by_rel[1], n_partial, replace=False),
            rng.choice(by_rel[0], n_irr, replace=len(by_rel[0]) < n_irr),
        ]
        rels = [2] * n_exact + [1] * n_partial + [0] * n_irr
        return self.lists[qid][0], np.concatenate(picks).astype(np.int64), np.asarray(rels, dtype=np.int64)

    def draw(self, qid: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        if qid in self.candidates and rng.random() < self.candidate_fraction:
            return self.sample_candidates(qid, rng)
        return self.sample(qid, rng)

    def sample(self, qid: int, rng: np.random.Generator) -> tuple[str, np.ndarray, np.ndarray]:
        query, by_rel = self.lists[qid]
        k = self.list_size
        n_exact = min(len(by_rel[2]), int(rng.integers(1, 3)))
        n_partial = min(len(by_rel[1]), 2)
        n_mined = 1 if len(self.mined.get(qid, ())) else 0
        picks = [
            rng.choice(by_rel[2], n_exact, replace=False),
            rng.choice(by_rel[1], n_partial, replace=False),
        ]
        rels = [2] * n_exact + [1] * n_partial
        n_irr = k - n_exact - n_partial - n_mined
        pool = by_rel[0] if len(by_rel[0]) else by_rel[1]
        picks.append(rng.choice(pool, n_irr, replace=len(pool) < n_irr))
        rels += [0 if len(by_rel[0]) else 1] * n_irr
        if n_mined:
            picks.append(rng.choice(self.mined[qid], 1))
            rels.append(0)
        return query, np.concatenate(picks).astype(np.int64), np.asarray(rels, dtype=np.int64)

    def batches(self, batch_queries: int, rng: np.random.Generator) -> Iterator[list[int]]:
        """One epoch of shuffled query-id batches."""
        qids = np.array(sorted(self.lists), dtype=np.int64)
        rng.shuffle(qids)
        for i in range(0, len(qids), batch_queries):
            yield qids[i : i + batch_queries].tolist()


def swap_negatives(
    lists: list[tuple[str, np.ndarray, np.ndarray]],
    product_class: np.ndarray | None,
    rng: np.random.Generator,
    n_swap: int = 2,
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Replace up to ``n_swap`` Irrelevant slots per list by other lists' Exact items of another class.

    Without these, items of classes that are often relevant score high for *any* query and items of
    never-trained classes score low: on held-out classes the model then ranks below random.
    Relevant-for-someone items as negatives force it to match the query instead of a class prior.
    """
    if product_class is None or len(lists) < 2:
        return lists
    exact = [(pids[rels == 2], product_class[pids[rels == 2]]) for _, pids, rels in lists]
    out = []
    for i, (query, pids, rels) in enumerate(lists):
        own = set(product_class[pids[rels > 0]])
        pool = np.concatenate([p[~np.isin(c, list(own))] for j, (p, c) in enumerate(exact) if j != i])
        slots = np.flatnonzero(rels == 0)[-n_swap:]
        if len(pool) and len(slots):
            pids = pids.copy()
            pids[slots] = rng.choice(pool, len(slots), replace=len(pool) < len(slots))
        out.append((query, pids, rels))
    return out


def mine_hard_negatives(judged: pd.DataFrame, product_class: np.ndarray | None) -> dict[int, np.ndarray]:
    """Products judged for *other* train queries that share a query word but not the query's class.

    Different class makes a false negative unlikely (another query's Exact item may fit this one
    too when the class is the same), while the shared word makes the negative hard.
    """
    if product_class is None:
        return {}
    qs = judged.drop_duplicates("query_id")[["query_id", "query", "query_class"]]
    words = {
        int(q): set(re.findall(r"[a-z0-9]{3,}", str(t).lower()))
        for q, t in zip(qs.query_id, qs["query"], strict=True)
    }
    by_word: dict[str, set[int]] = {}
    for qid, ws in words.items():
        for w in ws:
            by_word.setdefault(w, set()).add(qid)
    pids_of = judged.groupby("query_id")["product_id"].apply(lambda s: s.to_numpy()).to_dict()
    positive = set(product_class[judged.loc[judged["rel"] > 0, "product_id"].to_numpy()])
    out: dict[int, np.ndarray] = {}
    for qid, qclass in zip(qs.query_id, qs.query_class, strict=True):
        others = {o for w in words[int(qid)] for o in by_word[w]} - {int(qid)}
        if not others:
            continue
        cand = np.unique(np.concatenate([pids_of[o] for o in sorted(others)]))
        cand = cand[product_class[cand] != qclass]
        # Only classes that are also positives somewhere (see training_judgments).
        cand = cand[np.isin(product_class[cand], list(positive))]
        if len(cand):
            out[int(qid)] = cand
    return out


# ----------------------------------------------------------------------------------------- training


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


def listnet_loss(scores: torch.Tensor, rels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy between the list's scores and gains 2**rel - 1 (B, K)."""
    gains = torch.exp2(rels.float()) - 1.0
    target = gains / gains.sum(dim=1, keepdim=True).clamp_min(1e-9)
    return -(target * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()


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
    tdata, augment = augmented_data(data, cfg, seed=seed, progress=progress)
    train = training_judgments(tdata)
    val = judgments(data, "val")
    splits = data.splits()
    sampler = ListSampler.from_judgments(
        train, tdata.product_class, list_size=cfg.list_size, mine=cfg.mine_negatives
    )
    if not sampler.lists:
        raise ValueError("no train query has a relevant judged product")
    if cfg.candidate_fraction > 0 and tdata.products is not None:
        from training.mining import mine_training_lists

        pc = tdata.product_class
        allowed = set(pc[train["product_id"].to_numpy()]) if pc is not None else None
        mined_lists = mine_training_lists(
            tdata.queries, tdata.labels, tdata.products, list(tdata.texts), depth=cfg.candidate_depth,
            allowed_classes=allowed, progress=progress,
        )
        sampler = sampler.with_candidates(mined_lists, cfg.candidate_fraction)
    tok = PairTokenizer(cfg.model.max_length, cfg.model.max_query_tokens)
    model = build_model(cfg.model)
    if cfg.freeze_embeddings:
        model.bert.bert.embeddings.word_embeddings.weight.requires_grad_(False)

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in params if p.ndim < 2 or "LayerNorm" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    steps_per_epoch = math.ceil(len(sampler.lists) / cfg.batch_queries)
    max_steps = cfg.max_epochs * steps_per_epoch

    def lr_at(frac: float) -> float:
        # Warmup then linear decay over whichever runs out first: time or the epoch cap.
        if frac < cfg.warmup_frac:
            return cfg.lr * max(frac / cfg.warmup_frac, 0.02)
        return cfg.lr * max(0.0, 1.0 - (frac - cfg.warmup_frac) / (1.0 - cfg.warmup_frac))

    served, served_rels = served_val_lists(data) if cfg.validate_on == "served" else (pd.DataFrame(), {})

    def evaluate() -> float:
        if len(served):
            return mean_ndcg(served, score_judged(model, tok, data, served), judged_rels=served_rels)
        return mean_ndcg(val, score_judged(model, tok, data, val)) if len(val) else float("nan")

    initial = evaluate()
    best, best_step = initial, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    history: list[dict] = [{"step": 0, "seconds": time.perf_counter() - t0, "val_ndcg10": initial}]
    if progress:
        print(f"val ndcg@10 at step 0: {initial:.4f}", flush=True)
    eval_every = max(1.0 / max(cfg.evals, 1), cfg.min_eval_interval_s / budget)
    next_eval = eval_every
    step, epoch, loss_ema = 0, 0, float("nan")
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task("train", total=1.0, step=0, loss=float("nan"), ndcg=initial)
        done = False
        while not done and epoch < cfg.max_epochs:
            for qids in sampler.batches(cfg.batch_queries, rng):
                frac = max((time.perf_counter() - t0) / budget, step / max_steps)
                if frac >= 1.0:
                    done = True
                    break
                for g in opt.param_groups:
                    g["lr"] = lr_at(frac)
                lists = swap_negatives([sampler.draw(q, rng) for q in qids], tdata.product_class, rng)
                queries = [q for q, pids, _ in lists for _ in pids]
                pids = np.concatenate([p for _, p, _ in lists])
                rels = torch.from_numpy(np.stack([r for _, _, r in lists]))
                ids, mask = tok.encode_pairs(queries, tdata.texts[pids].tolist())
                scores = model(torch.from_numpy(ids), torch.from_numpy(mask)).view(len(lists), -1)
                loss = listnet_loss(scores, rels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                value = float(loss.detach())
                loss_ema = value if math.isnan(loss_ema) else 0.95 * loss_ema + 0.05 * value
                if frac >= next_eval:
                    next_eval += eval_every
                    score = evaluate()
                    history.append(
                        {
                            "step": step,
                            "seconds": time.perf_counter() - t0,
                            "loss": loss_ema,
                            "val_ndcg10": score,
                        }
                    )
                    if progress:
                        bar.console.print(f"step {step}: val ndcg@10 {score:.4f}, loss {loss_ema:.4f}")
                    if score > best:
                        best, best_step = score, step
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    bar.update(task, ndcg=score)
                bar.update(task, completed=min(frac, 1.0), step=step, loss=loss_ema)
            else:
                epoch += 1
        # Final evaluation at the end of the schedule (lr has decayed to ~0 here).
        score = evaluate()
        history.append(
            {"step": step, "seconds": time.perf_counter() - t0, "loss": loss_ema, "val_ndcg10": score}
        )
        if score >= best:
            best, best_step = score, step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        bar.update(task, completed=1.0, ndcg=best)

    model.load_state_dict(best_state)
    model.eval()
    config = asdict(cfg)
    report = TrainReport(
        val_ndcg10=best,
        initial_val_ndcg10=initial,
        best_step=best_step,
        steps=step,
        epochs=epoch,
        seconds=time.perf_counter() - t0,
        train_queries=len(splits["train"]),
        val_queries=len(splits["val"]),
        dev_queries=len(splits["dev"]),
        train_judgments=len(train),
        val_pairs=len(val),
        final_loss=loss_ema,
        config=config,
        history=history,
        augment=augment,
    )
    return model, report


def train_reranker(
    catalog_dir: Path,
    out_dir: Path,
    *,
    minutes: float = 6.0,
    seed: int = 0,
    cfg: TrainConfig | None = None,
    progress: bool = True,
) -> TrainReport:
    """Train on ``catalog_dir``; writes ``out_dir/hf`` (best model) and ``out_dir/train_report.json``."""
    return train_to_dir(
        load_rerank_data(catalog_dir), out_dir, minutes=minutes, seed=seed, cfg=cfg, progress=progress
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
