"""Retriever-mined training lists: train queries only, labelled as evaluation labels them."""

from __future__ import annotations

from pathlib import Path


def test_mined_lists_train_only_and_labelled(artifacts) -> None:
    from catalog.io import LABEL_GAIN, item_texts, load_catalog
    from training.mining import mine_training_lists
    from training.splits import split_labels

    cat = load_catalog(Path(artifacts.catalog))
    products = cat.products
    train_classes = {"Accent Pillows"} | set(products["product_class"].iloc[:50])
    mined = mine_training_lists(cat.queries, cat.labels, products, list(item_texts(products)), depth=30,
                                allowed_classes=train_classes)
    assert len(mined)
    splits = dict(zip(cat.queries["query_id"], split_labels(cat.queries), strict=True))
    assert {splits[q] for q in mined["query_id"]} == {"train"}  # never a dev or val query
    assert mined.groupby("query_id").size().max() <= 30
    triples = cat.labels[["query_id", "product_id", "label"]].itertuples(index=False)
    labels = {(q, p): LABEL_GAIN[lab] for q, p, lab in triples}
    want = [labels.get((q, p), 0) for q, p in zip(mined["query_id"], mined["product_id"], strict=True)]
    assert mined["rel"].tolist() == want  # unjudged candidates are 0, as evaluation scores them
    neg = mined[mined["rel"] == 0]
    assert set(products["product_class"].to_numpy()[neg["product_id"].to_numpy()]) <= train_classes
    assert (mined["rel"] > 0).any()
