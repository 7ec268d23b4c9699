"""Which lists should the list-fusion head learn from? In-fold, out-of-fold, or without the transformer.

``score``: fine-tune one model without the train queries of a ``--holdout-classes`` share of classes
(as the build does), then score every list set with it (FP32, in process): ``infold`` (train lists it
trained on), ``heldout`` (train lists of the held-out classes: out of fold), ``val`` and ``dev`` of the
catalog, and ``fval``/``fdev`` of another catalog. Each list keeps the model's score and the weighted
lexical prior's alone, so a head can be fitted without the transformer too. ``compare``: fit heads on
different list sets (seeds are the head's) and print NDCG@10 per set; held-out classes are 2-fold
cross-validated by class where a head trains on them. dev and fdev are printed, never used to choose.

    python -m training.head_study score --catalog C0 --fresh-catalog C1 --out sets.pkl
    python -m training.head_study compare --sets sets.pkl
"""

from __future__ import annotations

import argparse
import json
import pickle
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.fuse import class_code_matrix, list_features
from pipeline.match_features import MatchFeatures
from training.list_fusion import ScoredList, fit_list_fusion
from training.metrics import nanmean, ndcg_at_k

SETS = ("val", "heldout", "fval", "dev", "fdev")  # printed in this order; the last two are reported only
DESIGNS = {  # name -> (train sets, score variant)
    "in-fold (old build)": (("infold",), "full"),
    "held-out only": (("heldout",), "full"),
    "in-fold + held-out (build)": (("infold", "heldout"), "full"),
    "no transformer, in-fold + held-out": (("infold", "heldout"), "prior"),
}


def class_folds(classes: list[str], k: int = 2) -> np.ndarray:
    """A fold per row, by a hash of its class: a class never falls in two folds."""
    return np.array([zlib.crc32(c.encode()) % k for c in classes])


def score_sets(catalog: Path, fresh_catalog: Path, share: float, out: Path, seed: int = 0) -> None:
    import torch

    from training.base_model import default_base_model
    from training.build import holdout_for_head
    from training.data import labelled_candidate_lists, load_rerank_data
    from training.finetune import FinetuneConfig, finetune, finetune_inputs

    d0, d1 = load_rerank_data(catalog), load_rerank_data(fresh_catalog)
    tuned, held_ids = holdout_for_head(d0, share)  # the build's own split
    held = replace(d0, queries=d0.queries[d0.queries.query_id.isin(held_ids)])
    # Already held out above; no pseudo-queries, as the study was measured (session 5).
    cfg = FinetuneConfig(head_holdout_classes=0.0, pseudo_share=0.0)
    model, report = finetune(default_base_model(), finetune_inputs(tuned, cfg, seed=seed), cfg, seed=seed,
                             progress=True)
    model.eval()
    tok = model.pair_tokenizer()
    sets: dict[str, list[dict]] = {}
    for name, data, split in (("infold", tuned, "train"), ("heldout", held, "train"), ("val", d0, "val"),
                              ("dev", d0, "dev"), ("fval", d1, "val"), ("fdev", d1, "dev")):
        codes, match = class_code_matrix(data.product_class.astype(str)), MatchFeatures(list(data.texts))
        qclass = data.queries.set_index("query_id")["query_class"].astype(str)
        rows = []
        for sl in labelled_candidate_lists(data, (split,))[split]:
            ids, attn = (torch.from_numpy(a) for a in tok.encode(sl.query, data.texts[sl.ids].tolist()))
            with torch.no_grad():
                full = model(ids, attn).numpy()
                prior = model.prior_score(ids, attn, model.segments(ids)).numpy()
            rows.append({"qid": sl.query_id, "qclass": str(qclass.get(sl.query_id, "")), "rels": sl.rels,
                         "ideal": sl.ideal_rels, "retrieval": sl.retrieval, "classes": codes[sl.ids],
                         "match": match.features(sl.query, sl.ids), "full": full, "prior": prior})
        sets[name] = rows
        print(name, len(rows), flush=True)
    with open(out, "wb") as f:
        pickle.dump({"sets": sets, "finetune_val": report.val_ndcg10, "share": share}, f)


def _lists(rows: list[dict], variant: str) -> list[ScoredList]:
    return [ScoredList(r["qid"], list_features(r[variant], r["retrieval"], r["classes"], r["match"]),
                       r["rels"], r["ideal"]) for r in rows]


def _ndcg(head_score, lists: list[ScoredList]) -> list[float]:
    return [ndcg_at_k(head_score(sl.features), sl.rels, 10, sl.ideal_rels) for sl in lists]


def compare(sets: dict[str, list[dict]], seeds: tuple[int, ...] = (0, 1, 2)) -> list[dict]:
    results = []
    folds = class_folds([r["qclass"] for r in sets["heldout"]])
    by_variant = {v: {name: _lists(rows, v) for name, rows in sets.items()}
                  for v in {variant for _, variant in DESIGNS.values()}}
    for design, (train_on, variant) in DESIGNS.items():
        lists = by_variant[variant]
        for seed in seeds:
            train = [sl for name in train_on for sl in lists[name]]
            head, _ = fit_list_fusion(train, lists["val"], seed=seed)
            # A head trained on the held-out lists does not score them: the folds below do.
            row = {name: nanmean(_ndcg(head.score, lists[name])) for name in SETS if name not in train_on}
            if "heldout" in train_on:  # held-out classes are then scored by heads that never saw them
                other = [sl for name in train_on if name != "heldout" for sl in lists[name]]
                scores = []
                for fold in (0, 1):
                    keep = [sl for sl, f in zip(lists["heldout"], folds, strict=True) if f != fold]
                    h, _ = fit_list_fusion(other + keep, lists["val"], seed=seed)
                    scores += _ndcg(h.score, [sl for sl, f in zip(lists["heldout"], folds, strict=True)
                                              if f == fold])
                row["heldout"] = nanmean(scores)
            results.append({"design": design, "seed": seed, **row})
            print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--catalog", type=Path, required=True)
    s.add_argument("--fresh-catalog", type=Path, required=True)
    s.add_argument("--holdout-classes", type=float, default=0.3)
    s.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("--sets", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "score":
        score_sets(args.catalog, args.fresh_catalog, args.holdout_classes, args.out)
    else:
        with open(args.sets, "rb") as f:
            compare(pickle.load(f)["sets"])


if __name__ == "__main__":
    main()
