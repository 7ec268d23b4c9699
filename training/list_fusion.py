"""Fit the list-fusion head (`pipeline.fuse`) for one served reranker model.

The lists are what serving reorders: each query's hybrid top 100 (`hybrid_candidate_lists`), scored by
the served INT8 ONNX model in process, labelled as `rankserve eval` labels them (Exact 2, Partial 1,
anything else 0). Gradient steps read ``train``-split queries only; ``val`` picks the epoch and is
reported; ``dev`` is never read (training.splits).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from engines.model_dir import pair_tokenizer_for
from pipeline.fuse import (
    FEATURES,
    FILE_NAME,
    REPORT_FILE,
    ListFusion,
    base_relevance,
    class_code_matrix,
    list_features,
)
from pipeline.match_features import MatchFeatures
from training.data import RerankData, labelled_candidate_lists
from training.metrics import nanmean, ndcg_at_k

ScoreFn = Callable[[str, list[str]], np.ndarray]  # (query, item texts) -> reranker scores


@dataclass(frozen=True)
class ScoredList:
    query_id: int
    features: np.ndarray  # (n, len(FEATURES)), rows in retrieval order
    rels: np.ndarray  # (n,) graded label of each candidate (unjudged = 0)
    ideal_rels: np.ndarray  # the query's full judgments: the NDCG ideal, so missed items count


def scored_lists(
    data: RerankData, splits: Sequence[str], score: ScoreFn, *, depth: int = 100, progress: bool = False
) -> dict[str, list[ScoredList]]:
    """Feature lists per split, from one retrieval pass over all the splits' queries."""
    lists = labelled_candidate_lists(data, splits, depth, progress=progress)
    class_codes = class_code_matrix(data.product_class.astype(str))
    match = MatchFeatures(list(data.texts))
    out: dict[str, list[ScoredList]] = {s: [] for s in splits}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("scoring candidate lists", total=sum(map(len, lists.values())))
        for split, split_lists in lists.items():
            for sl in split_lists:
                bar.advance(task)
                rerank = np.asarray(score(sl.query, data.texts[sl.ids].tolist()), dtype=np.float32)
                match_rows = match.features(sl.query, sl.ids)
                feats = list_features(rerank.reshape(-1), sl.retrieval, class_codes[sl.ids], match_rows)
                out[split].append(ScoredList(sl.query_id, feats, sl.rels, sl.ideal_rels))
    return out


def mean_list_ndcg(lists: Sequence[ScoredList], score: Callable[[np.ndarray], np.ndarray]) -> float:
    return nanmean([ndcg_at_k(score(sl.features), sl.rels, 10, sl.ideal_rels) for sl in lists])


def base_score(features: np.ndarray) -> np.ndarray:
    """The no-head relevance (`base_relevance`) from a feature matrix: the baseline to beat."""
    i, j = FEATURES.index("rerank_minmax"), FEATURES.index("retrieval_minmax")
    return base_relevance(features[:, i], features[:, j])


def fit_list_fusion(
    train: Sequence[ScoredList],
    val: Sequence[ScoredList],
    *,
    hidden: int = 32,
    epochs: int = 20,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> tuple[ListFusion, dict]:
    """ListNet (softmax over each list against gains 2**rel - 1), one list per step; the epoch with the
    best val NDCG@10 is kept (train NDCG when there is no val list)."""
    import torch

    from training.finetune import listnet_loss

    lists = [sl for sl in train if sl.rels.any()]
    if not lists:
        raise ValueError("list fusion: no train list holds a relevant candidate")
    stacked = np.concatenate([sl.features for sl in lists])
    mean = stacked.mean(0).astype(np.float32)
    scale = (stacked.std(0) + 1e-6).astype(np.float32)
    torch.manual_seed(seed)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(len(FEATURES), hidden), nn.ReLU(), nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    xs = [torch.from_numpy((sl.features - mean) / scale) for sl in lists]
    ys = [torch.from_numpy(sl.rels)[None, :] for sl in lists]
    select_on = list(val) or lists

    def snapshot() -> ListFusion:
        w1, b1 = net[0].weight.detach().numpy(), net[0].bias.detach().numpy()
        w2, b2 = net[2].weight.detach().numpy(), net[2].bias.detach().numpy()
        return ListFusion(mean, scale, w1.T.copy(), b1.copy(), w2[0].copy(), float(b2[0]))

    rng = np.random.default_rng(seed)
    history, best, best_ndcg = [], snapshot(), -1.0
    for epoch in range(epochs):
        for i in rng.permutation(len(lists)):
            loss = listnet_loss(net(xs[i]).reshape(1, -1), ys[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head = snapshot()
        ndcg = mean_list_ndcg(select_on, head.score)
        history.append({"epoch": epoch + 1, "val_ndcg@10": ndcg})
        if ndcg > best_ndcg:
            best, best_ndcg = head, ndcg
    report = {
        "features": list(FEATURES),
        "hidden": hidden,
        "epochs": epochs,
        "best_epoch": int(np.argmax([h["val_ndcg@10"] for h in history])) + 1,
        "train_lists": len(lists),
        "val_lists": len(val),
        "train_ndcg@10": mean_list_ndcg(lists, best.score),
        "train_ndcg@10_base": mean_list_ndcg(lists, base_score),
        "val_ndcg@10": mean_list_ndcg(val, best.score) if val else None,
        "val_ndcg@10_base": mean_list_ndcg(val, base_score) if val else None,
        "history": history,
    }
    return best, report


def ort_score_fn(model_path: Path) -> ScoreFn:
    """Scores from the served ONNX model in process, shaped like the Triton model's batches."""
    from engines.ort_rerank import ort_session
    from engines.triton.model import score_bucketed

    sess = ort_session(Path(model_path))
    tok = pair_tokenizer_for(Path(model_path).parent)

    def score(query: str, docs: list[str]) -> np.ndarray:
        ids, mask = tok.encode(query, docs)
        return score_bucketed(sess, ids, mask).reshape(-1)

    return score


def build_list_fusion(model_path: Path, data: RerankData, out_dir: Path, *, progress: bool = False,
                      seed: int = 0) -> dict:
    """Fit the head for the ONNX model at ``model_path`` and keep it only if it beats the no-head blend
    on val: writes ``out_dir/list_fusion.json`` then (else removes it) and always
    ``out_dir/list_fusion_report.json`` (``kept`` says which); returns the report."""
    t0 = time.perf_counter()
    lists = scored_lists(data, ("train", "val"), ort_score_fn(model_path), progress=progress)
    head, report = fit_list_fusion(lists["train"], lists["val"], seed=seed)
    out_dir = Path(out_dir)
    # Without val lists there is nothing to judge the head by: keep it, as before val existed.
    gain = (report["val_ndcg@10"] - report["val_ndcg@10_base"]) if lists["val"] else None
    report["kept"] = gain is None or gain > 0
    report["val_gain_over_blend"] = gain
    if report["kept"]:
        head.save(out_dir / FILE_NAME)
    else:
        (out_dir / FILE_NAME).unlink(missing_ok=True)
    report["seconds"] = time.perf_counter() - t0
    report["train_query_ids"] = sorted({sl.query_id for sl in lists["train"]})
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report
