"""One PNG with the bench's three views: latency vs throughput, stage breakdown, reranker pairs/s."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or CI
import matplotlib.pyplot as plt

ENGINES = (("torch_eager_pairs_s", "PyTorch\neager FP32"), ("st_crossencoder_pairs_s", "ST\nCrossEncoder"),
           ("ort_fp32_pairs_s", "ORT FP32"), ("ort_int8_pairs_s", "ORT INT8"),
           ("ort_int8_tuned_pairs_s", "ORT INT8\nbuckets"),
           ("triton_int8_baseline_pairs_s", "Triton INT8\nbaseline"),
           ("triton_int8_pairs_s", "Triton INT8"))


def write_plots(report: dict, out: Path) -> Path:
    fig, (ax_lat, ax_stage, ax_rr) = plt.subplots(1, 3, figsize=(17, 5))
    closed, opened = report["e2e"], report.get("open_loop", [])
    for rows, style, label in ((closed, "o-", "closed loop"), (opened, "s--", "open loop")):
        if not rows:
            continue
        qps = [r["qps"] for r in rows]
        ax_lat.plot(qps, [r["p50_ms"] for r in rows], style, color="C0", label=f"p50, {label}")
        ax_lat.plot(qps, [r["p99_ms"] for r in rows], style, color="C3", label=f"p99, {label}")
    for r in closed:
        ax_lat.annotate(f"c={r['concurrency']}", (r["qps"], r["p99_ms"]), fontsize=7)
    ax_lat.set(xlabel="throughput (requests/s)", ylabel="latency of the whole stream (ms)", yscale="log",
               title="Latency vs throughput")
    ax_lat.legend(fontsize=8)

    stages = report.get("stages_p50_ms", {})
    order = ("embed", "ann", "tokenize", "triton", "fusion", "mmr", "send", "queue")
    names = [s for s in order if s in stages]
    ax_stage.barh(names, [stages[s] for s in names], color="C2")
    ax_stage.invert_yaxis()
    total = stages.get("total", 0.0)
    ax_stage.set(xlabel="p50 ms at saturation", title=f"Stage breakdown (server total p50 {total:.1f} ms)")

    rr = report["reranker"]
    labels = [label for key, label in ENGINES if rr.get(key)]
    values = [rr[key] for key, _ in ENGINES if rr.get(key)]
    bars = ax_rr.bar(labels, values, color=["C7", "C7", "C1", "C1", "C1", "C0", "C0"][: len(values)])
    ax_rr.bar_label(bars, fmt="%.0f", fontsize=8)
    ax_rr.set(ylabel=f"pairs/s (batch {rr['batch']}, {rr['threads']} threads)", title="Reranker throughput")
    ax_rr.tick_params(axis="x", labelsize=8)
    machine = report["machine"]
    fig.suptitle(f"rankserve bench — {machine.get('cpu', '')}, {machine.get('cores')} cores", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
