"""What a user's profile costs as their history grows, on a built catalog:

- the time of one taste-model fit (`feedback.taste.fit_taste`): a window of impressions over random items,
  the first ``clicks`` of them clicked;
- the memory of a profile (`tracemalloc` over `ProfileBook.apply`): users shown ``lists`` lists of ten
  random items each, the first clicked. Random items are the worst case: a real shopper's lists share
  values, and the per-value counts grow with the variety shown.

    python -m benchmarks.simulation.profile_cost --catalog artifacts/catalog
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.simulation.offline import catalog_items
from feedback.events import Event, EventType
from feedback.profile import SHOWN_WINDOW, ItemColumns, ProfileBook
from feedback.taste import fit_taste


def fit_times(items: ItemColumns, clicks: list[int], seed: int = 0) -> list[dict[str, float]]:
    """One fit per entry of ``clicks`` (each below the window: a window of clicks has no skip to learn
    from): its attribute columns and milliseconds."""
    if any(not 0 < n < SHOWN_WINDOW for n in clicks):
        raise ValueError(f"clicks must be between 1 and {SHOWN_WINDOW - 1}, got {clicks}")
    rng = np.random.default_rng(seed)
    out = []
    for n in clicks:
        ids = rng.integers(len(items), size=SHOWN_WINDOW)
        ranks = np.arange(SHOWN_WINDOW)
        start = time.perf_counter()
        model = fit_taste(items, ids, 1.0 / (1 + ranks % 10), ranks < n)
        ms = (time.perf_counter() - start) * 1e3
        out.append({"clicks": n, "columns": len(model.vocab) if model else 0, "ms": ms})
    return out


def profile_kib(items: ItemColumns, lists: int, users: int = 50, seed: int = 0) -> float:
    """Mean KiB a profile holds after ``lists`` lists of ten random items, the first of each clicked."""
    rng = np.random.default_rng(seed)
    events = []
    for u in range(users):
        for n in range(lists):
            request, ids = f"request-{u}-{n}", rng.integers(len(items), size=10)
            events += [Event(f"{request}-i{r}", request, f"user-{u}", int(i), EventType.IMPRESSION, r + 1, n)
                       for r, i in enumerate(ids)]
            events.append(Event(f"{request}-c", request, f"user-{u}", int(ids[0]), EventType.CLICK, 1, n))
    book = ProfileBook(items)
    tracemalloc.start()
    try:
        book.apply(events)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return held / users / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--clicks", type=int, nargs="+", default=[50, 150, 250, 450])
    ap.add_argument("--lists", type=int, nargs="+", default=[10, 60])
    args = ap.parse_args()
    items = catalog_items(args.catalog)
    for row in fit_times(items, args.clicks):
        print(f"taste fit, {row['clicks']:4d} clicks: {row['columns']:4.0f} columns, {row['ms']:.1f} ms")
    for n in args.lists:
        print(f"profile after {n:4d} lists of 10: {profile_kib(items, n):.1f} KiB")


if __name__ == "__main__":
    main()
