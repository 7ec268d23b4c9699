"""Shared reranker-test inputs: a synthetic WANDS-shaped judged catalog and one model trained on it.

`trained` is session-scoped so the training (~40 s) runs once for every test file that needs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engines.cross_encoder import CrossEncoderConfig
from training.data import RerankData
from training.train import TrainConfig, TrainReport, train_to_dir

QUERY_FILE = Path("/work/shared/data/wands/query.csv")
# No prior, no match features: these tests check that the bare encoder learns and stays HF-loadable.
TINY_MODEL = CrossEncoderConfig(num_layers=2, intermediate_size=512, dense_prior=False, match_features=False)
COLORS = ["red", "blue", "grey", "white", "black", "green", "walnut", "oak", "brass", "ivory"]
FILLER = ["modern", "classic", "rustic", "compact", "deluxe", "handmade", "premium", "sturdy"]


def load_queries() -> pd.DataFrame:
    return pd.read_csv(QUERY_FILE, sep="\t")


def synthetic_data(queries: pd.DataFrame, *, per_query: int = 30, seed: int = 0) -> RerankData:
    """A small WANDS-shaped judged catalog: Exact items name the query and its class, Partial ones
    only the class, Irrelevant ones share a query word but belong to another class."""
    rng = np.random.default_rng(seed)
    classes = sorted(queries["query_class"].dropna().unique())
    n_exact, n_partial = per_query // 5, per_query * 3 // 10
    texts, pclass, rows = [], [], []
    for qid, query, qclass in queries[["query_id", "query", "query_class"]].itertuples(index=False):
        qclass = qclass if isinstance(qclass, str) else "Misc"
        words = re.findall(r"\w+", query.lower()) or ["item"]
        for i in range(per_query):
            adj = f"{rng.choice(FILLER)} {rng.choice(COLORS)}"
            if i < n_exact:
                text, cls, label = f"{adj} {query} {qclass.lower()}", qclass, "Exact"
            elif i < n_exact + n_partial:
                text, cls, label = f"{adj} {qclass.lower()} {rng.choice(FILLER)}", qclass, "Partial"
            else:
                cls = str(rng.choice(classes))
                text, label = f"{adj} {rng.choice(words)} {cls.lower()}", "Irrelevant"
            rows.append((qid, len(texts), label))
            texts.append(text)
            pclass.append(cls)
    labels = pd.DataFrame(rows, columns=["query_id", "product_id", "label"])
    return RerankData(
        queries=queries.reset_index(drop=True),
        labels=labels,
        texts=np.asarray(texts, dtype=object),
        product_class=np.asarray(pclass, dtype=object),
    )


@pytest.fixture(scope="session")
def data() -> RerankData:
    return synthetic_data(load_queries())


@pytest.fixture(scope="session")
def trained(data: RerankData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainReport]:
    """``train_to_dir`` output (``hf/``, ``train_report.json``) of a short run on `data`, and its report."""
    out = tmp_path_factory.mktemp("reranker")
    cfg = TrainConfig(model=TINY_MODEL, evals=2, min_eval_interval_s=15.0, augment_queries=0)
    report = train_to_dir(data, out, minutes=0.6, seed=0, cfg=cfg, progress=False)
    return out, report
