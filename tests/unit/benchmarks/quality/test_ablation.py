"""The ablation's stages split the served score exactly: transformer logit + weighted priors."""

from __future__ import annotations

import asyncio

import numpy as np

from benchmarks.quality.ablation import ablation_stages
from tests.conftest import Artifacts
from training.data import load_rerank_data


def test_bert_and_prior_stages_add_up_to_the_model(artifacts: Artifacts) -> None:
    data = load_rerank_data(artifacts.catalog)
    query, docs = str(data.queries["query"].iloc[0]), data.texts[:40].tolist()
    stages = ablation_stages(artifacts.model)
    scores = {name: asyncio.run(stage.rerank(query, docs)).scores for name, stage in stages.items()}
    np.testing.assert_allclose(scores["bert_alone"] + scores["prior_alone"], scores["bert_prior"], atol=1e-4)
    # Each part is a signal of its own, not a constant: it orders the items.
    assert np.ptp(scores["bert_alone"]) > 0 and np.ptp(scores["prior_alone"]) > 0
