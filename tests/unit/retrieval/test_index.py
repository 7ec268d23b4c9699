"""Retrieval stage: WordLlama embedder, FAISS item index, in-search filters, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrieval.embed import WordLlamaEmbedder
from retrieval.filters import FilterColumns, FilterError, Filters
from retrieval.index import (
    META_FILE,
    ItemIndex,
    LoadedIndex,
    build_index,
    build_item_index,
    gpu_copy,
    load_index,
    load_item_index,
    save_index,
)

PRODUCTS = 20_000
K = 100


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, shared_queries: Path) -> LoadedIndex:
    """A ~20k-product catalog from the catalog builder, indexed with the default HNSW factory."""
    from catalog.builder import build_catalog

    root = tmp_path_factory.mktemp("retrieval")
    catalog = build_catalog(shared_queries, root / "catalog", seed=0, products=PRODUCTS, progress=False)
    index_dir = build_item_index(catalog, progress=False)
    return load_item_index(index_dir, mmap=True)


@pytest.fixture(scope="module")
def query_vectors(embedder: WordLlamaEmbedder, shared_queries: Path) -> np.ndarray:
    queries = pd.read_csv(shared_queries, sep="\t", dtype=str, keep_default_na=False)["query"]
    return embedder.embed(queries.tolist())


def exact_topk(
    vectors: np.ndarray, queries: np.ndarray, k: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """Ground truth by numpy: ids of the k best allowed items per query (fewer if fewer allowed)."""
    scores = queries @ np.asarray(vectors).T
    if mask is not None:
        scores[:, ~mask] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    allowed = np.take_along_axis(scores, order, axis=1) > -np.inf
    return np.where(allowed, order, -1)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean fraction of b's valid ids that a also returned."""
    fractions = [
        len(set(x[x >= 0]) & set(y[y >= 0])) / max(1, (y >= 0).sum()) for x, y in zip(a, b, strict=True)
    ]
    return float(np.mean(fractions))


def small_products(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    classes = np.array(["Accent Pillows", "Dining Chairs", "End Tables", "Kitchen Faucets"])
    tops = {"Accent Pillows": "Décor & Pillows", "Dining Chairs": "Furniture", "End Tables": "Furniture",
            "Kitchen Faucets": "Home Improvement"}
    cls = classes[rng.integers(0, len(classes), n)]
    return pd.DataFrame({
        "product_id": np.arange(n),
        "product_class": cls,
        "category_hierarchy": [f"{tops[c]} / Sub {i % 3} / {c}" for i, c in enumerate(cls)],
        "price": rng.uniform(1, 500, n).round(2),
        "in_stock": rng.random(n) < 0.7,
    })


# --- embedder ---------------------------------------------------------------------------------------------


def test_embedder_normalised_deterministic(embedder: WordLlamaEmbedder) -> None:
    texts = ["navy velvet sofa", "oliver parsons", "Marble end table, 24 in", "", "   "]
    a = embedder.embed(texts)
    b = WordLlamaEmbedder().embed(texts)
    assert a.shape == (5, embedder.dim) == (5, 256) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[:3], axis=1), 1.0, atol=1e-5)
    # Empty / whitespace-only / all-special-token texts pool to zero, never NaN.
    assert not np.isnan(a).any()
    assert not a[3:].any()
    assert not embedder.embed_query("<unk></s>").any()


def test_embedder_similar_texts_closer(embedder: WordLlamaEmbedder) -> None:
    sofa, couch, faucet = embedder.embed(["navy velvet sofa", "blue velvet couch", "stainless steel faucet"])
    assert sofa @ couch > sofa @ faucet + 0.3
    assert sofa @ couch > couch @ faucet + 0.3


def test_embedder_batch_equals_single(embedder: WordLlamaEmbedder) -> None:
    texts = ["turquoise pillows", "", "modern farmhouse dining chair set of 2", "x" * 300, "marble"]
    batched = embedder.embed(texts, batch_size=2)
    singles = np.stack([embedder.embed_query(t) for t in texts])
    np.testing.assert_allclose(batched, singles, atol=1e-6)


def test_embedder_truncates(embedder: WordLlamaEmbedder) -> None:
    long = " ".join(["oak"] * 40 + ["velvet"] * 40)  # "oak" is 2 tokens: "velvet" starts after the cut-off
    assert embedder.embed_query(long) @ embedder.embed_query("oak") > 0.999
    short = WordLlamaEmbedder(max_tokens=128)
    assert short.embed_query(long) @ embedder.embed_query("oak") < 0.99


# --- filters (small synthetic columns: fast and independent of the catalog) ------------------------------


def test_filter_validation_errors() -> None:
    with pytest.raises(FilterError) as e:
        Filters(min_price=50, max_price=10)
    assert e.value.field == "min_price"
    with pytest.raises(FilterError) as e:
        Filters(max_price=-1)
    assert e.value.field == "max_price"
    with pytest.raises(FilterError):
        Filters(min_price=float("nan"))
    columns = FilterColumns.from_products(small_products())
    with pytest.raises(FilterError) as e:
        columns.mask(Filters(category="Spaceships"))
    assert e.value.field == "category"
    with pytest.raises(FilterError):
        columns.mask(Filters(category="Furniture / Sub 9"))
    assert columns.mask(Filters(category="furniture / sub 1")).any()
    assert Filters(category="  ").category is None and Filters(category=" ").empty
    assert columns.mask(None) is None and columns.mask(Filters()) is None


def test_filter_masks_match_columns(tmp_path: Path) -> None:
    products = small_products()
    columns = FilterColumns.from_products(products)
    cls = products["product_class"].to_numpy()
    top = products["category_hierarchy"].str.split(" / ").str[0].to_numpy()
    price, stock = products["price"].to_numpy(), products["in_stock"].to_numpy()
    np.testing.assert_array_equal(columns.mask(Filters(category="dining CHAIRS")), cls == "Dining Chairs")
    # Top-level hierarchy prefix, with free spacing around "/" for deeper prefixes.
    np.testing.assert_array_equal(columns.mask(Filters(category="furniture")), top == "Furniture")
    deeper = products["category_hierarchy"].str.startswith("Furniture / Sub 1 /").to_numpy()
    np.testing.assert_array_equal(columns.mask(Filters(category="Furniture/Sub 1")), deeper)
    combined = Filters(category="End Tables", min_price=20, max_price=200, in_stock_only=True)
    expected = (cls == "End Tables") & (price >= 20) & (price <= 200) & stock
    np.testing.assert_array_equal(columns.mask(combined), expected)
    # A bound equal to a stored price keeps that item.
    p0 = float(price[0])
    assert columns.mask(Filters(min_price=p0, max_price=p0))[0]
    columns.save(tmp_path / "f.npz")
    again = FilterColumns.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(again.mask(combined), expected)
    assert again.class_names == columns.class_names


# --- index ------------------------------------------------------------------------------------------------


def test_build_index_files_and_meta(built: LoadedIndex) -> None:
    meta = built.meta
    assert meta["n"] == built.item_index.n == built.columns.n >= PRODUCTS and meta["dim"] == 256
    assert meta["factory"] == "HNSW32,Flat" and meta["embedder"] == WordLlamaEmbedder().id
    assert len(meta["version"]) == 16 and meta["build_seconds"] > 0
    assert isinstance(built.vectors, np.memmap) and built.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(built.vectors[:100], axis=1), 1.0, atol=1e-5)
    assert (built.path / META_FILE).exists()


def test_ann_recall_vs_flat(built: LoadedIndex, query_vectors: np.ndarray) -> None:
    flat = ItemIndex(build_index(np.asarray(built.vectors), "Flat", progress=False), built.columns)
    truth, _ = flat.search(query_vectors, K)
    ids, scores = built.item_index.search(query_vectors, K)
    assert ids.shape == scores.shape == (len(query_vectors), K) and ids.dtype == np.int64
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    recall = overlap(ids, truth)
    assert recall >= 0.95, f"HNSW recall@{K} vs Flat = {recall:.3f}"


def class_counts(built: LoadedIndex) -> np.ndarray:
    return np.bincount(built.columns.class_codes, minlength=len(built.columns.class_names))


def largest_class(built: LoadedIndex) -> str:
    return built.columns.class_names[int(np.argmax(class_counts(built)))]


@pytest.mark.parametrize("case", ["category", "top_level", "price", "in_stock", "combined"])
def test_filtered_search_returns_only_matching(
    built: LoadedIndex, query_vectors: np.ndarray, case: str
) -> None:
    top = built.columns.hierarchy_names[0].split("/")[0].strip()
    filters = {
        "category": lambda: Filters(category=largest_class(built).upper()),
        "top_level": lambda: Filters(category=top),
        "price": lambda: Filters(min_price=20, max_price=150),
        "in_stock": lambda: Filters(in_stock_only=True),  # most items: the HNSW + selector path
        "combined": lambda: Filters(category=top, max_price=300, in_stock_only=True),
    }[case]()
    mask = built.columns.mask(filters)
    assert mask is not None
    k = min(K, int(mask.sum()))
    assert k >= 20, f"filter {filters} keeps too few items for this test"
    ids, scores = built.item_index.search(query_vectors, k, filters)
    assert (ids >= 0).all(), "k results expected whenever >= k items match"
    assert mask[ids].all()
    assert np.isfinite(scores).all()
    assert overlap(ids, exact_topk(built.vectors, query_vectors, k, mask)) >= 0.95


def test_hnsw_filter_path_keeps_k_results(built: LoadedIndex, query_vectors: np.ndarray) -> None:
    """Force the in-graph selector path with a selective filter: still k allowed results per query."""
    hnsw_only = ItemIndex(built.item_index.index, built.columns, exact_fraction=0.0)
    filters = Filters(category=largest_class(built))
    mask = built.columns.mask(filters)
    k = int(mask.sum()) // 2 - 1  # just above the 2k brute-force cut-off
    assert k >= 20
    ids, _ = hnsw_only.search(query_vectors, k, filters)
    assert (ids >= 0).all() and mask[ids].all()
    assert overlap(ids, exact_topk(built.vectors, query_vectors, k, mask)) >= 0.9


def test_selective_filter_brute_force_path(built: LoadedIndex, query_vectors: np.ndarray) -> None:
    counts = class_counts(built)
    small = int(np.flatnonzero((counts >= 5) & (counts < K))[0])
    filters = Filters(category=built.columns.class_names[small])
    mask = built.columns.mask(filters)
    selected = int(mask.sum())
    ids, scores = built.item_index.search(query_vectors, K, filters)
    # Exactly the matching items, in exact order, then -1 padding with -inf scores.
    assert (ids[:, :selected] >= 0).all() and (ids[:, selected:] == -1).all()
    assert np.isneginf(scores[:, selected:]).all()
    all_matching = np.tile(np.flatnonzero(mask), (len(ids), 1))
    np.testing.assert_array_equal(np.sort(ids[:, :selected], axis=1), all_matching)
    truth = exact_topk(built.vectors, query_vectors, K, mask)
    assert overlap(ids[:, :10], truth[:, :10]) >= 0.99
    # Nothing matches: all padding, no error.
    none = Filters(min_price=1e9)
    ids, scores = built.item_index.search(query_vectors[:3], 5, none)
    assert (ids == -1).all() and np.isneginf(scores).all()


def test_unknown_category_raises_from_search(built: LoadedIndex, query_vectors: np.ndarray) -> None:
    with pytest.raises(FilterError):
        built.item_index.search(query_vectors[:1], 10, Filters(category="definitely not a category"))


def test_save_load_round_trip(built: LoadedIndex, query_vectors: np.ndarray, tmp_path: Path) -> None:
    filters = Filters(min_price=10, max_price=400)
    expected = built.item_index.search(query_vectors, K), built.item_index.search(query_vectors, K, filters)
    plain = load_item_index(built.path, mmap=False)
    for loaded in (plain, load_item_index(built.path, mmap=True)):
        for (ids, scores), f in zip(expected, (None, filters), strict=True):
            got_ids, got_scores = loaded.item_index.search(query_vectors, K, f)
            np.testing.assert_array_equal(got_ids, ids)
            np.testing.assert_array_equal(got_scores, scores)
        assert loaded.version == built.version
    # Bare index save/load too (mmap where supported).
    save_index(plain.item_index.index, tmp_path / "copy.faiss")
    again = load_index(tmp_path / "copy.faiss", mmap=True)
    _, i0 = plain.item_index.index.search(query_vectors[:20], 10)
    _, i1 = again.search(query_vectors[:20], 10)
    np.testing.assert_array_equal(i0, i1)
    with pytest.raises(ValueError, match="embedder"):
        load_item_index(built.path, embedder_id="some-other-embedder")


def test_single_vector_query_and_bad_args(built: LoadedIndex, query_vectors: np.ndarray) -> None:
    ids, _ = built.item_index.search(query_vectors[0], 7)
    assert ids.shape == (1, 7)
    with pytest.raises(ValueError):
        built.item_index.search(query_vectors[:1], 0)
    with pytest.raises(ValueError):
        built.item_index.search(np.zeros((1, 8), dtype=np.float32), 5)


def test_ivf_factory_filters(query_vectors: np.ndarray) -> None:
    """Another factory through the same stage: IVF gets SearchParametersIVF with the selector."""
    rng = np.random.default_rng(1)
    n = 3_000
    vectors = rng.standard_normal((n, 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    products = small_products(n)
    columns = FilterColumns.from_products(products)
    ivf = ItemIndex(build_index(vectors, "IVF16,Flat", progress=False), columns, nprobe=16)
    filters = Filters(category="Furniture", in_stock_only=True)
    mask = columns.mask(filters)
    ids, _ = ivf.search(query_vectors[:20], 50, filters)
    assert (ids >= 0).all() and mask[ids].all()
    # nprobe = nlist: exhaustive, so exact.
    assert overlap(ids, exact_topk(vectors, query_vectors[:20], 50, mask)) == 1.0
    # Brute-force path without stored vectors reconstructs from the IVF index.
    few = columns.mask(Filters(category="Kitchen Faucets", max_price=20))
    ids, _ = ivf.search(query_vectors[:5], 50, Filters(category="Kitchen Faucets", max_price=20))
    assert set(ids[0][ids[0] >= 0]) == set(np.flatnonzero(few))


def test_gpu_option_serves_the_same_results(built: LoadedIndex, query_vectors: np.ndarray) -> None:
    """With faiss-gpu and a GPU, unfiltered searches run exact there; without, the CPU index serves them."""
    idx = built.item_index
    on_gpu = ItemIndex(idx.index, idx.columns, vectors=idx.vectors, gpu=True)
    if gpu_copy(idx.index) is None:
        assert on_gpu._gpu is None
        np.testing.assert_array_equal(on_gpu.search(query_vectors, K)[0], idx.search(query_vectors, K)[0])
    else:  # a GPU host: exact search, so at least the HNSW index's recall against Flat
        flat = ItemIndex(build_index(idx.vectors, "Flat", progress=False), idx.columns)
        truth, _ = flat.search(query_vectors, K)
        assert overlap(on_gpu.search(query_vectors, K)[0], truth) >= 0.999
    filters = Filters(category=largest_class(built))  # filtered searches stay on the CPU index
    np.testing.assert_array_equal(on_gpu.search(query_vectors, K, filters)[0],
                                  idx.search(query_vectors, K, filters)[0])
