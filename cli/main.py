"""`rankserve` command line: build the catalog, index and model; serve; query."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.model import model_app
from cli.shared import (
    TlsCa,
    TlsClientCert,
    TlsClientKey,
    Token,
    console,
    load_experiments,
    parity_stop,
    settings_from,
)
from server.config import BuildSettings, Settings

app = typer.Typer(help="rankserve: gRPC ranking server for product search.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
catalog_app = typer.Typer(help="Generated WANDS-format catalogs.", no_args_is_help=True)
index_app = typer.Typer(help="Item embeddings and FAISS index.", no_args_is_help=True)
feedback_app = typer.Typer(help="The click and purchase event log.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(index_app, name="index")
app.add_typer(model_app, name="model")
app.add_typer(feedback_app, name="feedback")


def build_settings_from(**overrides: Any) -> BuildSettings:
    return BuildSettings(**{k: v for k, v in overrides.items() if v is not None})


@catalog_app.command("build")
def catalog_build(
    queries: Annotated[Path, typer.Option(help="WANDS-format query file (tab-separated).")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
    seed: Annotated[int | None, typer.Option(
        help="Random seed (same seed, same catalog; default: RANKSERVE_SEED, else 0).")] = None,
    products: Annotated[int | None, typer.Option(
        help="Total products, judged + filler (default: RANKSERVE_PRODUCTS, else 40,000).")] = None,
) -> None:
    """Generate a catalog (product.csv, query.csv, label.csv) from a query file."""
    from catalog.builder import build_catalog
    from catalog.io import load_catalog

    s = build_settings_from(seed=seed, products=products)
    t = time.perf_counter()
    build_catalog(queries, out, seed=s.seed, products=s.products, progress=True)
    cat = load_catalog(out)
    console.print(f"catalog: {len(cat.products):,} products, {len(cat.queries):,} queries, "
                  f"{len(cat.labels):,} labels → {out} ({time.perf_counter() - t:.1f}s)")


@index_app.command("build")
def index_build(
    catalog: Annotated[Path, typer.Option(help="Catalog directory from `catalog build`.")],
    factory: Annotated[str | None, typer.Option(
        help="FAISS index factory string (default: RANKSERVE_INDEX_FACTORY, else HNSW32,Flat).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory (default: the catalog's).")] = None,
) -> None:
    """Embed the items and build the FAISS index."""
    from retrieval.index import build_item_index

    factory = factory or build_settings_from().index_factory
    t = time.perf_counter()
    path = build_item_index(catalog, factory=factory, out=out, progress=True)
    console.print(f"index {factory} → {path} ({time.perf_counter() - t:.1f}s)")


@app.command()
def train(
    catalog: Annotated[Path, typer.Option(help="Catalog directory.")],
    out: Annotated[Path, typer.Option(help="Model output directory.")],
    base_model: Annotated[Path | None, typer.Option(
        help="Local Hugging Face BERT-family checkpoint to fine-tune (default: the pinned "
             "all-MiniLM-L6-v2 from the `pretrained` extra).")] = None,
    steps: Annotated[int | None, typer.Option(
        help="Fine-tuning budget in optimizer steps (default: BuildSettings.train_steps).")] = None,
    layers: Annotated[int, typer.Option(help="Keep the base model's first N layers (0: all).")] = 0,
    soup: Annotated[int | None, typer.Option(
        help="Fine-tunes (seeds seed, seed+1, ...) averaged into the served model "
             "(default: BuildSettings.train_soup).")] = None,
    wise_alpha: Annotated[float | None, typer.Option(
        min=0.0, max=1.0,
        help="WiSE-FT: serve alpha * fine-tuned + (1 - alpha) * pretrained weights; 1 serves the fine-tune "
             "(default: BuildSettings.train_wise_alpha).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: RANKSERVE_SEED, else 0).")] = None,
    instances: Annotated[int | None, typer.Option(
        help="Triton instance count (default: RANKSERVE_TRITON_INSTANCES, else 1).")] = None,
) -> None:
    """Fine-tune the cross-encoder, export ONNX, quantize INT8, check parity, write the Triton repository."""
    from engines.model_dir import write_served_repository
    from training.build import build_reranker, partial_dir
    from training.export import ParityError
    from training.finetune import FinetuneConfig

    defaults = build_settings_from(base_model=base_model, seed=seed, triton_instances=instances)
    cfg = FinetuneConfig(steps=steps or defaults.train_steps, layers=layers, soup=soup or defaults.train_soup,
                         wise_alpha=defaults.train_wise_alpha if wise_alpha is None else wise_alpha)
    try:
        report = build_reranker(catalog, out, base_model=defaults.base_model, seed=defaults.seed,
                                progress=True, cfg=cfg)
    except ParityError as exc:
        parity_stop(exc, partial_dir(out) / "parity.json", "Train longer (--steps) and retry.")
    repo = write_served_repository(out, instances=defaults.triton_instances)
    console.print(report)
    console.print(f"Triton model repository → {repo}")


# Options several commands share: one definition each.
CatalogDir = Annotated[Path | None, typer.Option(
    "--catalog", envvar="RANKSERVE_CATALOG_DIR", help="Catalog directory (default: demo's).")]
ModelDir = Annotated[Path | None, typer.Option("--model", help="Model directory (default: the demo's).")]
QueryFile = Annotated[Path | None, typer.Option("--queries", help="Query file a new catalog is built from.")]
Products = Annotated[int | None, typer.Option("--products", help="Size of a catalog built here.")]
StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help="Feedback log directory (default: <artifacts>/state).")]
TrainSteps = Annotated[int | None, typer.Option("--train-steps", help="Fine-tuning budget, optimizer steps.")]


def build_missing(settings: BuildSettings, *, progress: bool = True) -> None:
    from training.build import ensure_artifacts, partial_dir
    from training.export import ParityError

    t = time.perf_counter()
    try:
        ensure_artifacts(settings, progress=progress, console=console)
    except ParityError as exc:
        parity_stop(exc, partial_dir(Path(settings.model_dir)) / "parity.json",  # type: ignore[arg-type]
                    "Train longer (--train-steps) and retry.")
    console.print(f"artifacts ready in {time.perf_counter() - t:.1f}s")


@app.command()
def build(catalog: CatalogDir = None, model: ModelDir = None, queries: QueryFile = None,
          products: Products = None, train_steps: TrainSteps = None) -> None:
    """Build whatever is missing: catalog, index, reranker (with its list-fusion head), Triton repository."""
    build_missing(build_settings_from(catalog_dir=catalog, model_dir=model, queries=queries,
                                      products=products, train_steps=train_steps))


@app.command()
def serve(
    demo: Annotated[bool, typer.Option(help="Serve the demo default, building what is missing.")] = False,
    catalog: CatalogDir = None,
    model: ModelDir = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    triton_url: Annotated[str | None, typer.Option(help="External Triton HOST:PORT.")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port.")] = None,
    queries: QueryFile = None,
    products: Products = None,
    train_steps: TrainSteps = None,
    state_dir: StateDir = None,
    build: Annotated[bool | None, typer.Option(
        "--build/--no-build", help="Build missing artifacts first (default), or never write into the "
                                   "catalog and model directories and refuse to start without them "
                                   "(RANKSERVE_BUILD_ARTIFACTS).")] = None,
    experiments: Annotated[Path | None, typer.Option(
        help="A/B experiments file (YAML or TOML): arms that set λ, candidates, personal weight.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="PEM CA: mutual TLS, only clients with a certificate it signed connect.")] = None,
    auth_tokens_file: Annotated[Path | None, typer.Option(
        help="Bearer tokens, one per line ('#' comments), reloaded on SIGHUP.")] = None,
) -> None:
    """Serve the Ranker gRPC service (with health and reflection), building what is missing first."""
    from server.app import serve as run

    if not demo and catalog is None:
        raise typer.BadParameter("give --demo or --catalog DIR (or RANKSERVE_CATALOG_DIR)")
    settings = settings_from(catalog_dir=catalog, model_dir=model, host=host, port=port,
                             triton_url=triton_url, metrics_port=metrics_port, state_dir=state_dir,
                             build_artifacts=build, experiments_file=experiments, tls_cert=tls_cert,
                             tls_key=tls_key, tls_client_ca=tls_client_ca, auth_tokens_file=auth_tokens_file)
    _check_security_files(settings)
    if settings.experiments_file is not None:
        load_experiments(settings.experiments_file, settings.max_candidates)
    if settings.build_artifacts:
        if not demo and not (Path(settings.catalog_dir) / "catalog.json").exists():
            raise typer.BadParameter(
                f"no catalog in {settings.catalog_dir}: run `rankserve catalog build` first")
        # Before logging is configured: the quantiser logs every tensor at INFO on root.
        build_missing(build_settings_from(catalog_dir=catalog, model_dir=model, queries=queries,
                                          products=products, train_steps=train_steps))
    else:
        from server.wiring import missing_artifacts

        missing = missing_artifacts(settings)
        if missing:
            names = ", ".join(map(str, missing))
            console.print(f"[bold red]cannot serve without building:[/] missing {names} "
                          "(build them with `rankserve build`)")
            raise typer.Exit(2)
    from catalog.io import ArtifactError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(settings, console=console))
    except ArtifactError as e:  # a damaged file: say which, never a half-started server
        console.print(f"[bold red]cannot serve:[/] {e}")
        raise typer.Exit(2) from e


def _check_security_files(settings: Settings) -> None:
    """Unreadable TLS files or a tokens file without tokens stop the start, naming the file."""
    from server.auth import read_tokens

    try:
        for path in (settings.tls_cert, settings.tls_key, settings.tls_client_ca):
            if path is not None:
                path.read_bytes()
        if settings.auth_tokens_file is not None:
            read_tokens(settings.auth_tokens_file)
    except (OSError, ValueError) as e:
        console.print(f"[bold red]cannot serve:[/] {e}")
        raise typer.Exit(2) from e


@app.command()
def query(
    text: Annotated[str, typer.Argument(help="The search query.")],
    k: Annotated[int | None, typer.Option(help="Items to return.")] = None,
    lam: Annotated[float | None, typer.Option("--lambda", help="MMR relevance weight in [0, 1].")] = None,
    candidates: Annotated[int | None, typer.Option(help="Items sent to the reranker.")] = None,
    category: Annotated[str | None, typer.Option(help="Product class filter.")] = None,
    min_price: Annotated[float | None, typer.Option()] = None,
    max_price: Annotated[float | None, typer.Option()] = None,
    in_stock: Annotated[bool, typer.Option(help="Only items in stock.")] = False,
    target: Annotated[str, typer.Option(help="Server HOST:PORT.")] = "127.0.0.1:50051",
    timeout: Annotated[float, typer.Option(help="Deadline in seconds.")] = 10.0,
    user: Annotated[str | None, typer.Option(help="Rank for this user id (personal when it has history).")
                    ] = None,
    token: Token = None,
    tls_ca: TlsCa = None,
    tls_client_cert: TlsClientCert = None,
    tls_client_key: TlsClientKey = None,
) -> None:
    """Send one Rank request and print the items as they stream in."""
    from protos.ranking.v1 import ranking_pb2
    from server.client import Connection, print_stream

    context = ranking_pb2.UserContext(user_id=user) if user else None
    conn = Connection(target, token=token, tls_ca=tls_ca, client_cert=tls_client_cert,
                      client_key=tls_client_key)
    code = asyncio.run(print_stream(conn, text, k=k, lam=lam, candidates=candidates, category=category,
                                    min_price=min_price, max_price=max_price, in_stock=in_stock,
                                    timeout=timeout, user=context))
    raise typer.Exit(code)


@app.command("eval")
def eval_command(
    catalog: Annotated[Path, typer.Option(help="Catalog directory (its index is built if missing).")],
    queries: Annotated[Path, typer.Option(help="WANDS-format query file whose queries are in the catalog.")],
    model: Annotated[Path | None, typer.Option(help="Model directory (default: the demo model).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the λ sweep plot (PNG) here.")] = None,
    split: Annotated[str, typer.Option(help="Queries to score: all, train, val or dev.")] = "all",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ablation: Annotated[bool, typer.Option(
        help="Also re-rank with parts of the reranker taken out (transformer, priors, blend, head, MMR).")
    ] = False,
) -> None:
    """Ranking quality of bm25, retrieval, cross_encoder, rerank and rerank_mmr (NDCG@10, MRR@10, recall@100,
    diversity)."""
    from benchmarks.quality.evaluate import SPLITS, run_eval

    if split not in SPLITS:
        raise typer.BadParameter(f"--split must be one of {', '.join(SPLITS)}")
    run_eval(catalog, queries, model, split=split, json_out=json_out, plot_out=plot, progress=progress,
             console=console, ablation=ablation)


@app.command("bench")
def bench_command(
    catalog: CatalogDir = None,
    model: ModelDir = None,
    duration: Annotated[float | None, typer.Option(help="Seconds per end-to-end load level.")] = None,
    quick: Annotated[bool, typer.Option(help="CI smoke run: small sizes, short windows.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the plots (PNG) here.")] = None,
    large_items: Annotated[int | None, typer.Option(help="Items of the large synthetic index.")] = None,
    overload: Annotated[float | None, typer.Option(
        help="Open-loop overload at this multiple of the measured saturation rate (default 4; 0: skip).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Measure reranker engines, retrieval and the server end to end (starts and stops what it measures)."""
    import dataclasses

    from benchmarks.bench import BenchConfig, print_summary, run_bench

    settings = settings_from(catalog_dir=catalog, model_dir=model)
    build_missing(build_settings_from(catalog_dir=catalog, model_dir=model), progress=progress)
    cfg = BenchConfig.quick() if quick else BenchConfig()
    overrides = {"duration_s": duration, "large_items": large_items}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if overload is not None:
        cfg = dataclasses.replace(cfg, overload_x=overload or None)
    report = run_bench(Path(settings.catalog_dir), Path(settings.model_dir), config=cfg, json_out=json_out,
                       plot_out=plot, progress=progress, console=console)
    print_summary(report, console)


@app.command()
def simulate(
    users: Annotated[int, typer.Option(help="Simulated shoppers.")] = 100,
    steps: Annotated[int, typer.Option(help="Searches, each ranked by every arm.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of users, queries and clicks.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the curves (PNG) here.")] = None,
    target: Annotated[str | None, typer.Option(
        help="A running server HOST:PORT (its catalog must be --catalog's); default: start two demo "
             "servers on loopback (bandit off / on) and stop them afterwards.")] = None,
    catalog: CatalogDir = None,
    model: ModelDir = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Simulated shoppers over the real server: CTR, CVR and NDCG against hidden preferences, per arm."""
    from benchmarks.simulation.run import SimConfig
    from benchmarks.simulation.run import simulate as run

    settings = settings_from(catalog_dir=catalog, model_dir=model)
    if target is None:
        build_missing(build_settings_from(catalog_dir=catalog, model_dir=model), progress=progress)
    rep = run(Path(settings.catalog_dir), Path(settings.model_dir),  # type: ignore[arg-type]
              SimConfig(users=users, steps=steps, seed=seed), target=target, json_out=json_out,
              plot_out=plot, progress=progress)
    for name, arm in rep["arms"].items():
        ratio = ""
        if arm.get("ctr_vs_static_ci95"):
            lo, hi = arm["ctr_vs_static_ci95"]
            upper = f"{hi:.2f}" if hi is not None else "inf"
            ratio = f" ({arm['ctr_vs_static_last20']:.2f}x static, 95% CI {lo:.2f}-{upper})"
        console.print(f"{name:>15}: CTR {arm['ctr_last20']:.4f}{ratio}  CVR {arm['cvr_last20']:.4f}  "
                      f"NDCG@10 vs preferences {arm['ndcg_pref_last20']:.4f}  (last 20% of steps)")
    cold = rep["cold_start"]
    console.print(f"cold start: NDCG@10 {cold['ndcg@10']:.4f} vs {cold['baseline_ndcg@10']:.4f} without "
                  "a user (generated catalog and judgments)")


@app.command()
def report(
    experiments: Annotated[Path, typer.Option(help="The experiments file the server runs.")],
    state_dir: StateDir = None,
    dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN of a shared log.")] = None,
    target: Annotated[str | None, typer.Option(
        help="The running server HOST:PORT: adds NDCG@10 per arm on --catalog's judgments, each judged "
             "query ranked as a probe user of every arm.")] = None,
    catalog: CatalogDir = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    token: Token = None,
    tls_ca: TlsCa = None,
    tls_client_cert: TlsClientCert = None,
    tls_client_key: TlsClientKey = None,
) -> None:
    """Per experiment arm: CTR and CVR from the feedback log (and NDCG@10 with --target), 95% intervals,
    tests against control."""
    import json

    from benchmarks.experiment_report import arm_report, merge, ndcg_from_server
    from feedback.store import open_store

    settings = settings_from(state_dir=state_dir, feedback_dsn=dsn, catalog_dir=catalog)
    spec = load_experiments(experiments)
    # Read-only: a mistyped --state-dir is an error, not a new empty log reported as zero events.
    store = open_store(Path(settings.state_dir), dsn=settings.feedback_dsn, read_only=True)  # type: ignore[arg-type]
    try:
        rep = {"experiments": arm_report(spec, store.replay())}
    finally:
        store.close()
    if target is not None:
        from server.client import Connection

        conn = Connection(target, token=token, tls_ca=tls_ca, client_cert=tls_client_cert,
                          client_key=tls_client_key)
        ndcg = ndcg_from_server(spec, conn, Path(settings.catalog_dir))  # type: ignore[arg-type]
        rep = {"experiments": merge(rep["experiments"], ndcg)}
    text = json.dumps(rep, indent=2)
    if json_out is not None:
        json_out.write_text(text + "\n")
    print(text)


@feedback_app.command("stats")
def feedback_stats(
    state_dir: StateDir = None,
    dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN of a shared log (default: "
                                                 "RANKSERVE_FEEDBACK_DSN, else the SQLite log).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Count the committed events: by type, distinct users, and replays counted as duplicates."""
    import json

    from feedback.store import open_store

    settings = settings_from(state_dir=state_dir, feedback_dsn=dsn)
    directory = Path(settings.state_dir)  # type: ignore[arg-type]
    if not settings.feedback_dsn and not (directory / "events.sqlite").exists():
        console.print(f"[bold red]error:[/] no event log in {directory}")
        raise typer.Exit(2)
    store = open_store(directory, dsn=settings.feedback_dsn)
    try:
        stats = store.stats().to_dict()
    finally:
        store.close()
    if as_json:
        print(json.dumps(stats))
    else:
        console.print(stats)


@feedback_app.command("compact")
def feedback_compact(
    state_dir: StateDir = None,
    dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN of a shared log (default: "
                                                 "RANKSERVE_FEEDBACK_DSN, else the SQLite log).")] = None,
    retention_days: Annotated[float | None, typer.Option(
        help="Delete lists wholly older than this (default: RANKSERVE_FEEDBACK_RETENTION_DAYS).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete the lists older than the retention period from the event log, keeping what the bandit and
    the position propensities learnt from them (what a server does every hour; safe beside running
    servers)."""
    import json

    from feedback.events import Compacted
    from feedback.retention import Retention, compact_all
    from feedback.store import open_store

    settings = settings_from(state_dir=state_dir, feedback_dsn=dsn, feedback_retention_days=retention_days)
    directory = Path(settings.state_dir)  # type: ignore[arg-type]
    if not settings.feedback_dsn and not (directory / "events.sqlite").exists():
        console.print(f"[bold red]error:[/] no event log in {directory}")
        raise typer.Exit(2)
    cutoff = Retention(settings.feedback_retention_days).cutoff_ms(int(time.time() * 1e3))
    store = open_store(directory, dsn=settings.feedback_dsn)
    try:
        done = Compacted() if cutoff is None else compact_all(store, cutoff)
    finally:
        store.close()
    report = {"lists": done.lists, "events": done.events, "retention_days": settings.feedback_retention_days}
    print(json.dumps(report) if as_json else f"deleted {done.lists} lists ({done.events} events)")


def main() -> None:
    """The `rankserve` entry point: a user's mistake (a setting out of range, a missing or unreadable
    file, a port in use) ends in one line naming it and exit 2, a call the server refused in one line
    and exit 1; never a traceback. Anything else is a bug and keeps its traceback."""
    import grpc
    from pydantic import ValidationError

    from catalog.io import ArtifactError

    try:
        app()
    except ValidationError as exc:  # Settings/BuildSettings from flags and RANKSERVE_* variables
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        console.print(f"[bold red]bad setting:[/] {fields} (a flag, or its RANKSERVE_* variable)")
        raise SystemExit(2) from None
    except (ArtifactError, OSError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(2) from None
    except grpc.RpcError as exc:  # a client command whose server is down or refused the call
        console.print(f"[bold red]server:[/] {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
