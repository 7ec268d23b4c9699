"""Operating-point sweep for the fine-tuned cross-encoder: one prepared input file, many configs.

``prepare`` mines everything a run reads (needs faiss) into one pickle, so ``run`` can go where faiss
is absent (a lent GPU): the train sampler and val lists of the training catalog, plus dev lists and
another catalog's lists to *report*. Configs are ranked by val NDCG@10 and, with ``--holdout-classes``, by
train queries of classes left out of training (a selection stand-in for unseen classes); dev and the
other catalog are printed beside them, never used to choose (training.splits: dev is spent).

    python -m training.sweep prepare --catalog C0 --fresh-catalog C1 --out sweep.pkl
    python -m training.sweep run --inputs sweep.pkl --base MODEL_DIR --grid grid.json --out results.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import lzma
import pickle
import time
from dataclasses import replace
from pathlib import Path

from training.data import RerankData, load_rerank_data
from training.finetune import (
    FinetuneConfig,
    FinetuneInputs,
    finetune,
    finetune_inputs,
    list_ndcg,
    retrieval_ndcg,
)
from training.splits import held_out_class_mask

PREPARED_AUGMENT = 2000  # synthetic queries in the augmented training set `prepare` builds


def add_pseudo(blob: dict, data: RerankData, shares: list[float], exclude: set[str]) -> None:
    """Training sets with pseudo-queries (training.pseudo) beside `prepare`'s plain one, one per share:
    the plain set's lists plus the pseudo ones (no pseudo-query is a text of ``exclude``)."""
    from training.pseudo import with_pseudo_lists

    plain: FinetuneInputs = blob["plain"]
    for share in shares:
        sampler = with_pseudo_lists(plain.sampler, data, share, exclude=exclude, progress=True)
        blob[pseudo_key(share)] = replace(plain, sampler=sampler)


def pseudo_key(share: float) -> str:
    return f"plain_pseudo_{share:g}"


def prepare(catalog: Path, fresh_catalog: Path | None, out: Path, cfg: FinetuneConfig,
            holdout_classes: float = 0.0, pseudo_shares: list[float] | None = None) -> None:
    from training.data import labelled_candidate_lists

    data = load_rerank_data(catalog)
    every_query = set(data.queries["query"].astype(str))  # before the hold-out: no pseudo-query is one
    held: list = []
    if holdout_classes > 0:
        # Train queries of a share of classes leave training and become a selection set
        # (`held_out_classes`): what unseen classes do to a config, without reading dev.
        mask = held_out_class_mask(data.queries, holdout_classes)
        held = labelled_candidate_lists(replace(data, queries=data.queries[mask]), ("train",))["train"]
        data = replace(data, queries=data.queries[~mask])
    # The training sets a grid can pick: with synthetic queries (`augment_queries`) and without, and
    # without them and with every class's negatives (`all_class_negatives`).
    cfg = replace(cfg, pseudo_share=0.0)  # pseudo-query sets are the plain one's lists plus theirs
    inputs = finetune_inputs(data, replace(cfg, augment_queries=PREPARED_AUGMENT), progress=True)
    plain = finetune_inputs(data, replace(cfg, augment_queries=0), progress=True)
    all_neg = finetune_inputs(data, replace(cfg, augment_queries=0, all_class_negatives=True), progress=True)
    # Reported beside val, never used to choose: name -> lists (the `fresh*` ones over `fresh_texts`).
    report = {"dev": labelled_candidate_lists(data, ("dev",))["dev"]}
    blob: dict = {"inputs": inputs, "plain": plain, "plain_all_class_negatives": all_neg, "report": report}
    if held:
        blob["select"] = {"held_out_classes": held}
    # The default config's share always, so a grid that leaves pseudo_share alone runs.
    shares = sorted({*(pseudo_shares or []), FinetuneConfig().pseudo_share} - {0.0})
    add_pseudo(blob, data, shares, every_query)
    if fresh_catalog is not None:
        fresh = load_rerank_data(fresh_catalog)
        # Queries no run ever trains on: val and dev of the other catalog (dev holds unseen classes).
        lists = labelled_candidate_lists(fresh, ("val", "dev"))
        report |= {"fresh": lists["val"] + lists["dev"], "fresh_val": lists["val"],
                   "fresh_unseen": lists["dev"]}
        blob["fresh_texts"] = fresh.texts
    blob["retrieval"] = {k: retrieval_ndcg(v)
                         for k, v in {"val": inputs.val, **blob.get("select", {}), **report}.items()}
    with open(out, "wb") as f:
        pickle.dump(blob, f)
    print(json.dumps(blob["retrieval"], indent=2))


def grid_points(grid: dict | list[dict]) -> list[dict]:
    """Every combination of a grid ({field: [values]}), or of each grid in a list, in order."""
    out = []
    for g in grid if isinstance(grid, list) else [grid]:
        keys = sorted(g)
        out += [dict(zip(keys, values, strict=True)) for values in itertools.product(*(g[k] for k in keys))]
    return out


def prepared_key(cfg: FinetuneConfig) -> str:
    """Which of `prepare`'s training sets a config reads (an error for one it did not build: `run`
    checks the key is in the file)."""
    if cfg.pseudo_share:
        if cfg.augment_queries or cfg.all_class_negatives:
            raise ValueError("`prepare` builds augment_queries and all_class_negatives without "
                             "pseudo-queries only: add pseudo_share 0 to the grid point")
        return pseudo_key(cfg.pseudo_share)
    if cfg.augment_queries not in (0, PREPARED_AUGMENT):
        raise ValueError(f"augment_queries must be 0 or {PREPARED_AUGMENT} (what `prepare` built)")
    if cfg.augment_queries and cfg.all_class_negatives:
        raise ValueError("`prepare` builds all_class_negatives without augment_queries only")
    if cfg.augment_queries:
        return "inputs"
    return "plain_all_class_negatives" if cfg.all_class_negatives else "plain"


def run(inputs_file: Path, base: Path, grid: dict | list[dict], out: Path, device: str, seed: int
        ) -> list[dict]:
    with (lzma.open if inputs_file.suffix == ".xz" else open)(inputs_file, "rb") as f:
        blob = pickle.load(f)
    report = blob["report"]
    results = []
    for point in grid_points(grid):
        cfg = replace(FinetuneConfig(device=device, evals=3), **point)
        if (key := prepared_key(cfg)) not in blob:
            raise ValueError(f"{inputs_file} has no {key!r} training set (prepare it: --pseudo-shares)")
        inputs: FinetuneInputs = blob[key]
        t0 = time.perf_counter()
        model, rep = finetune(base, inputs, cfg, seed=seed, progress=False)
        model.to(device)
        row = {"config": point, "val": rep.val_ndcg10,
               "best_step": rep.best_step, "seconds": time.perf_counter() - t0}
        for name, lists in {**blob.get("select", {}), **report}.items():
            texts = blob["fresh_texts"] if name.startswith("fresh") else inputs.val_texts
            row[name] = list_ndcg(model, lists, texts, device=device)
        results.append(row)
        print(json.dumps(row), flush=True)
        out.write_text(json.dumps({"retrieval": blob["retrieval"], "runs": results}, indent=2))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--catalog", type=Path, required=True)
    p.add_argument("--fresh-catalog", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--holdout-classes", type=float, default=0.0,
                   help="share of classes whose train queries become a selection set, not training")
    p.add_argument("--pseudo-shares", type=float, nargs="*", default=[],
                   help="also training sets with this many pseudo-query lists per train list")
    a = sub.add_parser("add-pseudo", help="add pseudo-query training sets to a prepared file")
    a.add_argument("--inputs", type=Path, required=True)
    a.add_argument("--catalog", type=Path, required=True, help="the catalog `prepare` read")
    a.add_argument("--shares", type=float, nargs="+", required=True)
    a.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--inputs", type=Path, required=True)
    r.add_argument("--base", type=Path, required=True)
    r.add_argument("--grid", type=Path, required=True, help="JSON: FinetuneConfig field -> list of values")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--device", default="cpu")
    r.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.catalog, args.fresh_catalog, args.out, FinetuneConfig(), args.holdout_classes,
                args.pseudo_shares)
    elif args.cmd == "add-pseudo":
        if min(args.shares) <= 0:
            ap.error("--shares must be positive (0 is the plain set `prepare` built)")
        with open(args.inputs, "rb") as f:
            blob = pickle.load(f)
        data = load_rerank_data(args.catalog)
        add_pseudo(blob, data, args.shares, set(data.queries["query"].astype(str)))
        with open(args.out, "wb") as f:
            pickle.dump(blob, f)
    else:
        run(args.inputs, args.base, json.loads(args.grid.read_text()), args.out, args.device, args.seed)


if __name__ == "__main__":
    main()
