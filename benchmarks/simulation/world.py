"""The simulated shoppers: hidden tastes over a (generated) catalog, and how they examine, click and buy.

Each user has hidden preferences the server never sees:
- two favourite colours and one favourite material, read from the items' ``color``/``material``
  feature values (an item without them matches neither: real catalogs miss attributes);
- an ideal price (log-normal around the catalog's median); an item's price fit falls off with the log
  ratio, so the taste follows no price band the server might use;
- two home product classes, whose queries the user issues most of the time.

taste(u, i) = 0.4·colour + 0.2·material + 0.4·price fit, in [0, 1].

A list of ten is examined top-down with position bias P(examine rank r) = 1 / r^ETA. An examined item is
clicked with probability rel(q, i) · taste(u, i) + NOISE (rel: the catalog's judgment, Exact 1,
Partial 0.5, else 0): relevance × preference, as the issue specifies, so a relevant item the user has
no taste for is clicked only by noise. A click becomes a purchase with probability BUY · rel · taste.
NDCG@10 against hidden preferences uses gain rel · taste, ideal over the query's judged items. All of
it is the simulator's model, not measured shopper behaviour. (A first version clicked with probability
rel · (0.15 + 0.85 · taste); docs/personalization.md reports both.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from catalog.io import LABEL_GAIN, Catalog, class_parts, parse_features

ETA = 1.0
NOISE = 0.01
BUY = 0.5
HOME_SHARE = 0.8  # queries from the user's home classes


@dataclass(frozen=True)
class User:
    index: int
    colours: frozenset[str]
    material: str
    ideal_price: float
    home: tuple[str, ...]


class World:
    def __init__(self, catalog: Catalog, seed: int) -> None:
        products = catalog.products.sort_index()
        self.n_items = len(products)
        feats = [dict(parse_features(t)) for t in products["product_features"].fillna("")]
        self.colour = np.array([f.get("color", "") for f in feats], dtype=object)
        self.material = np.array([f.get("material", "") for f in feats], dtype=object)
        self.price = products["price"].to_numpy(dtype=np.float64)
        labels = catalog.labels.assign(gain=catalog.labels["label"].map(LABEL_GAIN) / 2.0)
        self.rel: dict[int, dict[int, float]] = {
            int(q): dict(zip(g["product_id"].astype(int), g["gain"], strict=True))
            for q, g in labels.groupby("query_id")}
        queries = catalog.queries[catalog.queries["query_id"].isin(self.rel)]
        self.queries = queries.reset_index(drop=True)
        self.by_class: dict[str, np.ndarray] = {}
        for i, c in enumerate(self.queries["query_class"]):
            for part in class_parts(c) or ("",):
                self.by_class.setdefault(part, []).append(i)  # type: ignore[attr-defined]
        self.by_class = {c: np.array(v) for c, v in self.by_class.items()}
        self.rng = np.random.default_rng(seed)
        self.median_price = float(np.nanmedian(self.price))
        colours = pd.Series(self.colour[self.colour != ""]).value_counts()
        self.colours = colours.index[:40].to_numpy()  # common colours: tastes many items can satisfy
        materials = pd.Series(self.material[self.material != ""]).value_counts()
        self.materials = materials.index[:20].to_numpy()

    def users(self, n: int) -> list[User]:
        classes = sorted(c for c in self.by_class if c)
        rng = self.rng
        return [User(i, frozenset(rng.choice(self.colours, 2, replace=False)),
                     str(rng.choice(self.materials)), self.median_price * math.exp(rng.normal(0, 0.8)),
                     tuple(rng.choice(classes, 2, replace=False)))
                for i in range(n)]

    def query_for(self, user: User, rng: np.random.Generator) -> tuple[int, str]:
        home = [i for c in user.home for i in self.by_class.get(c, ())]
        if home and rng.random() < HOME_SHARE:
            pick = int(rng.choice(home))
        else:
            pick = int(rng.integers(len(self.queries)))
        row = self.queries.iloc[pick]
        return int(row["query_id"]), str(row["query"])

    def taste(self, user: User, items: np.ndarray) -> np.ndarray:
        colour = np.isin(self.colour[items], list(user.colours)).astype(np.float64)
        material = ((self.material[items] == user.material) & (self.material[items] != "")).astype(np.float64)
        price = self.price[items]
        fit = np.where(np.isfinite(price) & (price > 0),
                       np.exp(-np.log(np.maximum(price, 1e-6) / user.ideal_price) ** 2 / (2 * 0.5**2)), 0.0)
        return 0.4 * colour + 0.2 * material + 0.4 * fit

    def relevance(self, query_id: int, items: np.ndarray) -> np.ndarray:
        rel = self.rel.get(query_id, {})
        return np.array([rel.get(int(i), 0.0) for i in items])

    def interact(self, user: User, query_id: int, items: np.ndarray, u: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Clicks and purchases (bool per shown item) from uniforms ``u`` (3, len(items)): the same
        draws for every arm at a step, so arms differ only by what they showed."""
        ranks = np.arange(1, len(items) + 1)
        rel, taste = self.relevance(query_id, items), self.taste(user, items)
        examined = u[0] < 1.0 / ranks**ETA
        clicked = examined & (u[1] < rel * taste + NOISE)
        bought = clicked & (u[2] < BUY * rel * taste)
        return clicked, bought

    def ideal(self, user: User, query_id: int, k: int = 10) -> np.ndarray:
        """The query's judged items best first by rel · taste: what a ranker knowing the hidden taste
        would show (the simulation's ceiling)."""
        judged = np.array(list(self.rel.get(query_id, {})), dtype=np.int64)
        gains = self.relevance(query_id, judged) * self.taste(user, judged)
        return judged[np.argsort(-gains, kind="stable")][:k]

    def ndcg_pref(self, user: User, query_id: int, items: np.ndarray, k: int = 10) -> float:
        """NDCG@k with gain rel · taste, the ideal over the query's judged items."""
        judged = np.array(list(self.rel.get(query_id, {})), dtype=np.int64)
        if judged.size == 0:
            return float("nan")
        ideal = np.sort(self.relevance(query_id, judged) * self.taste(user, judged))[::-1][:k]
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        idcg = float((ideal * disc[: len(ideal)]).sum())
        if idcg <= 0:
            return float("nan")
        shown = items[:k]
        gains = self.relevance(query_id, shown) * self.taste(user, shown)
        return float((gains * disc[: len(gains)]).sum() / idcg)
