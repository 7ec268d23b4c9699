"""The request deadline the pipeline owns, and the item table's filter mask."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from pipeline.types import Deadline, DeadlineExceeded, ItemTable
from retrieval.filters import FilterColumns, FilterError, Filters


def test_deadline_caps_and_expires() -> None:
    assert Deadline(None).remaining() is None and Deadline(None).cap(2.0) == 2.0
    soon = Deadline(time.monotonic() + 0.5)
    assert 0 < soon.cap(2.0) <= 0.5
    assert soon.cap(0.1) == 0.1
    with pytest.raises(DeadlineExceeded):
        Deadline(time.monotonic() - 0.01).remaining()


def table(columns: FilterColumns | None) -> ItemTable:
    n = 3
    return ItemTable(np.array(["a", "b", "c"], object), np.array(["Sofas", "Mugs", "Mugs"], object),
                     np.array([10.0, 20.0, 30.0], np.float32), ["a", "b", "c"], np.eye(n, dtype=np.float32),
                     columns)


def test_filter_mask_is_built_once_from_the_columns() -> None:
    products = pd.DataFrame({"product_id": [0, 1, 2], "product_class": ["Sofas", "Mugs", "Mugs"],
                             "category_hierarchy": ["Furniture / Sofas", "Kitchen / Mugs", "Kitchen / Mugs"],
                             "price": [10.0, 20.0, 30.0], "in_stock": [True, True, False]})
    items = table(FilterColumns.from_products(products))
    assert items.filter_mask(None) is None and items.filter_mask(Filters()) is None
    assert items.filter_mask(Filters(category="mugs", max_price=25.0)).tolist() == [False, True, False]
    assert items.filter_mask(Filters(category="Kitchen")).tolist() == [False, True, True]
    with pytest.raises(FilterError) as err:
        items.filter_mask(Filters(category="Spaceships"))
    assert err.value.field == "category"
    with pytest.raises(FilterError):
        table(None).filter_mask(Filters(in_stock_only=True))  # no columns: a filter cannot apply
