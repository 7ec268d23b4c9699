"""`rankserve model import`: an existing Hugging Face cross-encoder into the served form, without training.

The checkpoint (any BERT-family `AutoModelForSequenceClassification` with one label and a fast
tokenizer.json; a checkpoint without a classification head gets a fresh one) is copied into
``<out>/hf``, exported to ONNX, quantised to INT8, held to the parity gate on the catalog's judged pairs,
and written as a Triton repository, exactly as a trained model is (`training.build`).
"""

from __future__ import annotations

import json
from pathlib import Path

from engines.hf_cross_encoder import load_hf_cross_encoder
from engines.model_dir import write_served_repository
from training.data import load_rerank_data
from training.export import package_reranker


def import_cross_encoder(source: Path, out_dir: Path, catalog_dir: Path, *, seed: int = 0,
                         max_length: int = 64, max_query_tokens: int = 16, int8: bool = True) -> dict:
    """Package ``source`` into ``out_dir`` (hf/, model_fp32.onnx, model.onnx, parity.json, triton/);
    returns the export report. Raises `training.export.ParityError` if INT8 fails the gate (a fresh
    random head scores pairs within ~0.03 of each other, so INT8 noise can reorder them: serve such a
    model with ``int8=False``)."""
    source, out_dir = Path(source), Path(out_dir)
    hf = out_dir / "hf"
    model = load_hf_cross_encoder(source, seed=seed, max_length=max_length, max_query_tokens=max_query_tokens)
    model.save(hf)
    # Serve exactly what was written: a fresh head exists only in the saved weights.
    model = load_hf_cross_encoder(hf)
    report = package_reranker(model, load_rerank_data(catalog_dir), out_dir, int8=int8)
    report["source"] = str(source.resolve())
    (out_dir / "export_report.json").write_text(json.dumps(report, indent=2, default=str))
    write_served_repository(out_dir)
    return report
