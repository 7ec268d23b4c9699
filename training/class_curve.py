"""How the cross-encoder's gain on classes it never trained on moves with the number of classes it trains on.

Each point fine-tunes the base model (the build's config, one seed, no soup, FP32) on the train queries of a
share of the train classes, with the build's class hold-out (``--holdout-classes``, 0.3) kept out of every
point, and scores the model alone over the served hybrid top 100 against retrieval's order, NDCG@10, on:

- ``held_out_classes``: train-split queries of the held-out classes (a selection set: no point trains on it);
- ``val``: val queries (seen classes; it picks each fine-tune's checkpoint, as in the build);
- ``fresh_val`` and ``fresh_unseen``: another catalog's val and dev queries, reported only (dev is spent).

Shares are nested (a class kept at 0.25 is kept at 0.5), so the points differ only by the classes added.

    python -m training.class_curve --catalog C0 --fresh-catalog C1 --shares 0.25 0.5 1 --seeds 0 1 \\
        --out curve.jsonl --plot docs/quality_class_curve.png
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from training.splits import class_names, held_out_class_mask, split_labels, train_class_mask


def class_subset(queries: pd.DataFrame, share: float) -> np.ndarray:
    """Rows to keep: every val and dev row, and the train rows of a ``share`` of the classes (by a hash of
    the class name with its own salt, so a smaller share's classes are a subset of a larger one's)."""
    return (split_labels(queries) != "train") | train_class_mask(queries, share, "curve")


def curve_point(catalog: Path, fresh_catalog: Path, share: float, seed: int, *, steps: int = 200,
                holdout: float = 0.3) -> dict:
    from training.base_model import default_base_model
    from training.data import labelled_candidate_lists, load_rerank_data
    from training.finetune import FinetuneConfig, finetune, finetune_inputs, list_ndcg, retrieval_ndcg

    t0 = time.perf_counter()
    # No pseudo-queries: the curve is of judged training classes (as session 12 measured it).
    cfg = FinetuneConfig(steps=steps, head_holdout_classes=0.0, pseudo_share=0.0)
    data = load_rerank_data(catalog)
    held_mask = held_out_class_mask(data.queries, holdout)
    held = labelled_candidate_lists(replace(data, queries=data.queries[held_mask]), ("train",))["train"]
    rest = data.queries[~held_mask]
    kept = rest[class_subset(rest, share)]
    trained = kept[split_labels(kept) == "train"]
    inputs = finetune_inputs(replace(data, queries=kept), cfg, seed=seed)
    fresh = load_rerank_data(fresh_catalog)
    fresh_lists = labelled_candidate_lists(fresh, ("val", "dev"))
    sets = {"val": (inputs.val, data.texts), "held_out_classes": (held, data.texts),
            "fresh_val": (fresh_lists["val"], fresh.texts), "fresh_unseen": (fresh_lists["dev"], fresh.texts)}
    model, report = finetune(default_base_model(), inputs, cfg, seed=seed, progress=False)
    model.eval()
    return {"share": share, "seed": seed, "train_classes": int(class_names(trained).nunique()),
            "train_queries": len(trained), "best_step": report.best_step,
            "retrieval": {k: round(retrieval_ndcg(lists), 4) for k, (lists, _) in sets.items()},
            "model": {k: round(list_ndcg(model, lists, texts), 4) for k, (lists, texts) in sets.items()},
            "seconds": round(time.perf_counter() - t0)}


def plot(rows: list[dict], path: Path) -> dict[str, list[float]]:
    """Model-alone NDCG@10 minus retrieval's per set against the classes trained on: seeds as dots,
    their mean as the line (returned per set, in order of classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = sorted({r["train_classes"] for r in rows})
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    labels = {"held_out_classes": "held-out classes (selection set)", "val": "val, seen classes",
              "fresh_unseen": "other catalog, unseen classes (reported)"}
    means: dict[str, list[float]] = {}
    for color, (key, label) in zip(("C0", "C2", "C1"), labels.items(), strict=True):
        gains = [[r["model"][key] - r["retrieval"][key] for r in rows if r["train_classes"] == x] for x in xs]
        means[key] = [float(np.mean(g)) for g in gains]
        ax.plot(xs, means[key], "-o", color=color, label=label)
        for x, g in zip(xs, gains, strict=True):
            ax.scatter([x] * len(g), g, color=color, s=12, alpha=0.5)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("classes the fine-tune trains on (log scale)")
    ax.set_ylabel("model-alone NDCG@10 − retrieval")
    seeds = sorted({r["seed"] for r in rows})
    ax.set_title(f"Generated catalog: gain over retrieval vs training classes\n(seeds {seeds}; dots = seeds)",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return means


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, required=True, help="catalog the fine-tunes train on")
    ap.add_argument("--fresh-catalog", type=Path, required=True, help="another catalog, reported only")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per point (appended)")
    ap.add_argument("--plot", type=Path)
    args = ap.parse_args()
    for seed in args.seeds:
        for share in args.shares:
            row = curve_point(args.catalog, args.fresh_catalog, share, seed, steps=args.steps)
            print(json.dumps(row), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    if args.plot:
        plot([json.loads(line) for line in args.out.read_text().splitlines()], args.plot)


if __name__ == "__main__":
    main()
