"""How long one taste-model fit takes (`feedback.taste.fit_taste`) as a user's history grows: a window of
impressions over random items of the catalog, the first ``clicks`` of them clicked, one fit each.

    python -m benchmarks.simulation.taste_cost --catalog artifacts/catalog
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.simulation.offline import catalog_items
from feedback.profile import SHOWN_WINDOW, Shown
from feedback.taste import fit_taste


def fit_times(catalog: Path, clicks: list[int], seed: int = 0) -> list[dict[str, float]]:
    items = catalog_items(catalog)
    rng = np.random.default_rng(seed)
    out = []
    for n in clicks:
        ids = rng.integers(len(items), size=SHOWN_WINDOW)
        shown = [Shown(int(i), 1.0 / (1 + r % 10), r < n) for r, i in enumerate(ids)]
        start = time.perf_counter()
        model = fit_taste(items, shown)
        ms = (time.perf_counter() - start) * 1e3
        out.append({"clicks": n, "columns": len(model.vocab) if model else 0, "ms": ms})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", type=Path, required=True)
    ap.add_argument("--clicks", type=int, nargs="+", default=[50, 150, 250, 450])
    args = ap.parse_args()
    for row in fit_times(args.catalog, args.clicks):
        print(f"{row['clicks']:4d} clicks: {row['columns']:4.0f} attribute columns, {row['ms']:.1f} ms")


if __name__ == "__main__":
    main()
