"""Synthetic training queries from the *train* split's classes, and a training catalog that judges them.

With ~270 train queries the reranker sees each class a handful of times, always as the answer to the
same few queries, so it learns class priors ("Accent Pillows are relevant") instead of query-item
matching, and those priors are wrong on held-out classes. Here every train class gets many queries in
realistic WANDS shapes ("navy velvet sofa", "48 inch oak desk", "marble", a brand name alone), built
from the class's own nouns and synonyms plus the catalog builder's attribute lexicons, and a separate
training catalog (`catalog.build_catalog`) judges them under exactly the evaluation rules. Each
class is then both the answer and a hard negative many times over, with many modifier combinations.

Leakage: only classes and texts of ``training.splits`` *train* rows are read; a synthetic query is kept
only if the split rule itself puts it in ``train`` and its text is no val/dev query's text, so neither
val (early stopping) nor dev (reporting) queries or dev-only classes ever reach the trainer.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from catalog.io import QUERY_COLUMNS, write_tsv
from catalog.vocabulary import ATTRIBUTES, class_info, plural
from training.data import RerankData, load_rerank_data
from training.splits import assign_split, normalise_query, split_queries

# Attribute families a shopper types before a noun, with how often each is drawn.
_FAMILIES = (("color", 0.34), ("material", 0.26), ("style", 0.14), ("feature", 0.1), ("room", 0.08),
             ("size", 0.05), ("pattern", 0.03))
# Query shapes and their weights: (modifier count, noun shown, brand-like word).
_SHAPES = (
    ((1, True, False), 0.32),  # "navy sofa"
    ((2, True, False), 0.2),  # "navy velvet sofa"
    ((1, True, True), 0.08),  # "hillcrest navy sofa"
    ((0, True, True), 0.1),  # "oliver parsons dining chair"
    ((0, False, True), 0.07),  # "guilford" (class from query_class only)
    ((1, False, False), 0.07),  # "marble"
    ((-1, True, False), 0.1),  # "48 inch oak desk" (a dimension, maybe one attribute)
    ((3, True, False), 0.06),  # "mid century walnut leather chair"
)
_DIMENSIONS = ("18", "24", "30", "36", "42", "48", "54", "60", "72", "84", "96")
_DIM_FORMS = ("{n} inch", '{n}"', "{n} in", "{n} inches")
# Syllables for brand-like words: distinct from the builder's product collection names (its name
# generator) so a synthetic brand query is matched by the words the builder puts in titles for it.
_ONSETS = ("b", "br", "c", "d", "f", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "r", "s", "st", "t",
           "v", "w", "z")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ee")
_CODAS = ("", "", "", "n", "r", "l", "s", "x", "m")
_FIRST = ("oliver", "mae", "ember", "tristan", "hazel", "louis", "clara", "felix", "ada", "otto",
          "iris", "milo", "nora", "hugo", "stella", "jasper", "vera", "silas", "ruby", "leon")


@dataclass(frozen=True)
class AugmentReport:
    synthetic: int
    train_queries: int
    classes: int
    dropped_not_train: int  # generated texts the split rule puts in val/dev (never used)


def train_classes(queries: pd.DataFrame) -> list[str]:
    """Classes of the train split's rows (non-empty), sorted: the only classes augmentation uses."""
    train = split_queries(queries)["train"]
    return sorted({c for c in train["query_class"].astype(str) if c.strip()})


def _brand_word(rng: np.random.Generator) -> str:
    syl = lambda: rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)  # noqa: E731
    word = "".join(syl() for _ in range(2 if rng.random() < 0.8 else 3))
    return f"{rng.choice(_FIRST)} {word}" if rng.random() < 0.3 else word


def _surface(family: str, value: str, rng: np.random.Generator) -> str:
    """The canonical value or one of its synonyms (the model must learn navy ~ navy blue)."""
    forms = (value, *ATTRIBUTES[family][value])
    return forms[0] if rng.random() < 0.6 else str(rng.choice(forms))


def _attributes(n: int, rng: np.random.Generator) -> list[str]:
    fams, weights = zip(*_FAMILIES, strict=True)
    p = np.asarray(weights) / sum(weights)
    chosen = rng.choice(len(fams), size=min(n, len(fams)), replace=False, p=p)
    # Shoppers write style/size before colour before material; keep the lexicon's family order.
    order = sorted(chosen, key=lambda i: ("size", "style", "color", "pattern", "material", "room",
                                          "feature").index(fams[i]))
    out = []
    for i in order:
        values = sorted(ATTRIBUTES[fams[i]])
        out.append(_surface(fams[i], str(rng.choice(values)), rng))
    return out


def synthetic_query(product_class: str, rng: np.random.Generator) -> str:
    """One query text for a class, in a randomly drawn WANDS-like shape."""
    shapes, weights = zip(*_SHAPES, strict=True)
    n_mod, noun_shown, brand = shapes[int(rng.choice(len(shapes), p=np.asarray(weights) / sum(weights)))]
    info = class_info(product_class)
    noun = str(rng.choice(info.nouns)) if rng.random() < 0.7 else str(rng.choice(info.derived))
    if rng.random() < 0.35:
        noun = " ".join([*noun.split()[:-1], plural(noun.split()[-1])])
    words: list[str] = []
    if brand:
        words.append(_brand_word(rng))
    if n_mod == -1:
        words.append(str(rng.choice(_DIM_FORMS)).format(n=rng.choice(_DIMENSIONS)))
        n_mod = int(rng.integers(0, 2))
    words += _attributes(n_mod, rng)
    if noun_shown:
        words.append(noun)
    return " ".join(words)


def synthetic_queries(queries: pd.DataFrame, n: int, *, seed: int = 0) -> tuple[pd.DataFrame, AugmentReport]:
    """``n`` synthetic rows (query_id, query, query_class) over the train split's classes.

    Ids continue after the largest source id. Every row's text is new (no source query's text, no
    repeat) and `training.splits.assign_split` puts it in ``train``.
    """
    rng = np.random.default_rng(seed)
    classes = train_classes(queries)
    if not classes or n <= 0:
        empty = pd.DataFrame(columns=QUERY_COLUMNS)
        return empty, AugmentReport(0, 0, len(classes), 0)
    seen = {normalise_query(q) for q in queries["query"].astype(str)}
    rows: list[tuple[str, str]] = []
    dropped = 0
    # Round-robin over classes so every train class gets about n / len(classes) queries.
    order = np.concatenate([rng.permutation(len(classes)) for _ in range(n // len(classes) + 2)])
    i = 0
    while len(rows) < n and i < 20 * n:
        cls = classes[order[i % len(order)]]
        i += 1
        text = synthetic_query(cls, rng)
        key = normalise_query(text)
        if key in seen:
            continue
        seen.add(key)
        if assign_split(text, cls) != "train":
            dropped += 1
            continue
        rows.append((text, cls))
    start = int(queries["query_id"].max()) + 1 if len(queries) else 0
    df = pd.DataFrame(
        {"query_id": np.arange(start, start + len(rows), dtype=np.int64),
         "query": [t for t, _ in rows], "query_class": [c for _, c in rows]}
    )
    n_train = len(split_queries(queries)["train"])
    return df, AugmentReport(len(df), n_train, len(classes), dropped)


def training_queries(
    queries: pd.DataFrame, n_synthetic: int, *, seed: int = 0
) -> tuple[pd.DataFrame, AugmentReport]:
    """Train-split source rows plus ``n_synthetic`` synthetic rows: the training catalog's query file."""
    train = split_queries(queries)["train"][QUERY_COLUMNS]
    synth, report = synthetic_queries(queries, n_synthetic, seed=seed)
    return pd.concat([train, synth], ignore_index=True), report


def build_training_catalog(
    queries: pd.DataFrame,
    out: Path,
    *,
    n_synthetic: int,
    seed: int = 0,
    fillers: float = 0.25,
    progress: bool = False,
) -> tuple[Path, AugmentReport]:
    """Build a catalog judging the train rows + synthetic rows of ``queries`` into ``out``.

    ``fillers``: unjudged products as a share of the judged ones, so retriever-mined lists hold
    same-class products that are not relevant (as serving does).
    """
    from catalog.builder import JUDGED_PER_QUERY, build_catalog

    qdf, report = training_queries(queries, n_synthetic, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "query.csv"
        write_tsv(qdf[QUERY_COLUMNS], path)
        products = int(len(qdf) * JUDGED_PER_QUERY * (1.0 + fillers))
        build_catalog(path, out, seed=seed, products=products, progress=progress)
    return out, report


def augmented_data(
    data: RerankData, queries: int, per_query: float, *, seed: int = 0, progress: bool = False
) -> tuple[RerankData, dict]:
    """The data gradient steps read: a training catalog of train + ``min(queries, per_query x train)``
    synthetic queries.

    Returns ``(data, {})`` unchanged when augmentation is off, when ``data`` is not a builder catalog
    (no ``products``: its texts would not match the generated ones) or there is nothing to augment.
    """
    if data.products is None:
        return data, {}
    n = min(queries, int(per_query * len(data.splits()["train"])))
    if n <= 0:
        return data, {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rankserve-train-catalog-") as tmp:
        _, report = build_training_catalog(data.queries, Path(tmp), n_synthetic=n, seed=seed,
                                           progress=progress)
        tdata = load_rerank_data(Path(tmp))
    info = {**asdict(report), "products": len(tdata.texts), "seconds": time.perf_counter() - t0}
    return tdata, info
