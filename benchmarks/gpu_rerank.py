"""The GPU reranker (engines.torch_rerank) on a CUDA host: parity and throughput, one run.

Two steps, because the GPU host has PyTorch but not this project's retrieval stack:

1. here (CPU): ``python -m benchmarks.gpu_rerank prepare --catalog DIR --model DIR --out pairs.npz``
   tokenizes serving-shaped requests (each of the first ``--queries`` catalog queries with its hybrid
   top-100 candidates, exactly what the server reranks) and stores the FP32 ONNX model's scores as the
   reference;
2. on the GPU host: ``python -m benchmarks.gpu_rerank run --pairs pairs.npz --model DIR --json out.json``
   scores them with `TorchReranker` in FP32, FP16 and BF16 autocast and reports, per precision: parity
   with the reference (max |Δ|, mean per-request Spearman, top-10 overlap), pairs/s for 100-pair requests
   one at a time (the serving shape) and for all pairs in large batches; and the same host's CPU (PyTorch
   eager FP32, all cores) as the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def prepare(catalog: Path, model: Path, out: Path, queries: int = 64, depth: int = 100) -> Path:
    from engines.model_dir import pair_tokenizer_for
    from engines.ort_rerank import ort_scores, ort_session
    from training.data import load_rerank_data
    from training.mining import hybrid_candidates

    data = load_rerank_data(catalog)
    texts = data.queries["query"].astype(str).drop_duplicates().head(queries).tolist()
    cands = hybrid_candidates(data.products, list(data.texts), texts, depth)
    tok = pair_tokenizer_for(model)
    pad = tok.layout.pad_id
    encoded = [tok.encode(q, data.texts[ids].tolist()) for q, ids in zip(texts, cands, strict=True)]
    width = max(ids.shape[1] for ids, _ in encoded)
    n = min(len(ids) for ids, _ in encoded)
    ids = np.stack([np.pad(i[:n], ((0, 0), (0, width - i.shape[1])), constant_values=pad)
                    for i, _ in encoded])
    mask = np.stack([np.pad(m[:n], ((0, 0), (0, width - m.shape[1]))) for _, m in encoded])
    sess = ort_session(model / "model_fp32.onnx")
    ref = np.stack([ort_scores(sess, i, m) for i, m in zip(ids, mask, strict=True)]).astype(np.float32)
    np.savez_compressed(out, input_ids=ids, attention_mask=mask, reference=ref, queries=np.array(texts))
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _pairs_per_s(fn, requests: list[tuple[np.ndarray, np.ndarray]], seconds: float) -> float:
    for ids, mask in requests[:3]:  # warm-up: kernels, autotuning, allocator
        fn(ids, mask)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for ids, mask in requests:
            fn(ids, mask)  # returns host numpy: the device work is finished when it returns
            done += len(ids)
    return done / (time.perf_counter() - t0)


def run(pairs: Path, model_dir: Path, seconds: float = 3.0, *, device: str = "cuda",
        precisions: tuple[str, ...] = ("fp32", "fp16", "bf16")) -> dict:
    import torch

    from engines.model_dir import load_served_model
    from engines.torch_rerank import TorchReranker

    z = np.load(pairs)
    ids, mask, ref = z["input_ids"], z["attention_mask"], z["reference"]
    requests = list(zip(ids, mask, strict=True))
    flat_ids, flat_mask = ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, mask.shape[-1])
    report: dict = {
        "requests": len(requests), "pairs_per_request": int(ids.shape[1]),
        "mean_length": float(mask.sum(-1).mean()), "padded_length": int(ids.shape[-1]),
        "device": device,
        "machine": {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                    "python": platform.python_version()},
        "precisions": {},
    }
    model = load_served_model(model_dir)
    cpu = TorchReranker(model, device="cpu", precision="fp32")
    report["cpu_eager_fp32_pairs_s"] = _pairs_per_s(cpu.score, requests[:8], seconds)
    for precision in precisions:
        gpu = TorchReranker(load_served_model(model_dir), device=device, precision=precision, max_batch=8192)
        got = np.stack([gpu.score(i, m) for i, m in requests])
        top = [len(set(np.argsort(-g)[:10]) & set(np.argsort(-r)[:10])) / 10
               for g, r in zip(got, ref, strict=True)]
        entry = {
            "max_abs_diff": float(np.abs(got - ref).max()),
            "spearman_mean": float(np.mean([_spearman(g, r) for g, r in zip(got, ref, strict=True)])),
            "top10_overlap_mean": float(np.mean(top)),
            "request_pairs_s": _pairs_per_s(gpu.score, requests, seconds),
        }
        for batch in (1000, 6400):
            chunks = [(flat_ids[s : s + batch], flat_mask[s : s + batch])
                      for s in range(0, len(flat_ids), batch)]
            entry[f"batch{batch}_pairs_s"] = _pairs_per_s(gpu.score, chunks, seconds)
        # On the requests the CPU baseline ran (the first 8 of 64: eager CPU is slow), not all of them.
        entry["request_vs_cpu_eager"] = _pairs_per_s(gpu.score, requests[:8], seconds) / report[
            "cpu_eager_fp32_pairs_s"]
        report["precisions"][precision] = entry
        print(precision, json.dumps(entry), flush=True)
        del gpu
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--catalog", type=Path, required=True)
    a.add_argument("--model", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--queries", type=int, default=64)
    b = sub.add_parser("run")
    b.add_argument("--pairs", type=Path, required=True)
    b.add_argument("--model", type=Path, required=True)
    b.add_argument("--json", type=Path, required=True)
    b.add_argument("--seconds", type=float, default=3.0)
    b.add_argument("--device", default="cuda")
    args = p.parse_args()
    if args.cmd == "prepare":
        print(prepare(args.catalog, args.model, args.out, args.queries))
    else:
        report = run(args.pairs, args.model, args.seconds, device=args.device)
        args.json.write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
