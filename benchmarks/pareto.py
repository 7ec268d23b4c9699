"""Served-speed side of the operating-point table: INT8 ONNX Runtime pairs/s per (layers, max length).

Speed does not depend on what the weights learned, so each point is the base checkpoint cut to its first
``layers`` layers (as `training.finetune` cuts a student), with the learned-prior branch, exported and
quantised exactly as a build does, and timed on the same real (query, top-100) batches with the same
threads. The quality side (val NDCG@10 per point) comes from `training.sweep` runs, and, with
``--model``, a built model's val NDCG@10 over the top N candidates for each ``--depths`` N.

    python -m benchmarks.pareto --catalog DIR --base MODEL_DIR [--model BUILT_DIR] --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.reranker_bench import ort_pairs_s, real_pair_batches
from engines.hf_cross_encoder import load_hf_cross_encoder
from training.export import export_and_quantize
from training.finetune import truncate_layers


def operating_points(catalog: Path, base: Path, layers: list[int], lengths: list[int], *,
                     seconds: float = 8.0, threads: int | None = None) -> list[dict]:
    threads = threads or os.cpu_count() or 1
    rows = []
    for n in layers:
        for length in lengths:
            model = load_hf_cross_encoder(base, max_length=length, prior_weights=[0.1, 0.1])
            model = truncate_layers(model, n)
            batches = real_pair_batches(catalog, model.pair_tokenizer(), batch=100, max_batches=32)
            with tempfile.TemporaryDirectory() as tmp:
                _, int8 = export_and_quantize(model, Path(tmp))
                pairs_s = ort_pairs_s(int8, batches, seconds, threads)
            row = {"layers": n, "max_length": length, "int8_pairs_s": pairs_s, "threads": threads,
                   "mean_tokens": batches.mean_length()}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def candidate_depths(catalog: Path, model_dir: Path, depths: list[int]) -> list[dict]:
    """Model-alone val NDCG@10 (FP32) of a built model over the val queries' hybrid top N, per N."""
    from training.data import labelled_candidate_lists, load_rerank_data
    from training.finetune import list_ndcg, retrieval_ndcg

    data = load_rerank_data(catalog)
    model = load_hf_cross_encoder(Path(model_dir) / "hf")
    rows = []
    for depth in depths:
        lists = labelled_candidate_lists(data, ("val",), depth)["val"]
        row = {"candidates": depth, "queries": len(lists),
               "cross_encoder_fp32": list_ndcg(model, lists, data.texts),
               "retrieval": retrieval_ndcg(lists)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--layers", type=int, nargs="+", default=[3, 4, 6])
    ap.add_argument("--lengths", type=int, nargs="+", default=[48, 64, 96])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--model", type=Path, help="A built model: also its val NDCG@10 per candidate depth.")
    ap.add_argument("--depths", type=int, nargs="+", default=[25, 50, 100, 200])
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    speed = operating_points(args.catalog, args.base, args.layers, args.lengths, seconds=args.seconds)
    out: dict[str, list[dict]] = {"speed": speed}
    if args.model is not None:
        out["candidates"] = candidate_depths(args.catalog, args.model, args.depths)
    args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
