"""The one typed configuration of rankserve: defaults here, then RANKSERVE_* env vars, then CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.fuse import BASE_RETRIEVAL_WEIGHT

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUERIES = PROJECT_ROOT.parent / "shared" / "data" / "wands" / "query.csv"
DEFAULT_ARTIFACTS = PROJECT_ROOT / "artifacts"


class _Locations(BaseSettings):
    """Where the demo's inputs and built artifacts live: shared by building and serving."""

    model_config = SettingsConfigDict(env_prefix="RANKSERVE_", extra="ignore")

    queries: Path = DEFAULT_QUERIES
    artifacts_dir: Path = DEFAULT_ARTIFACTS
    catalog_dir: Path | None = None  # default: <artifacts_dir>/catalog
    model_dir: Path | None = None  # default: <artifacts_dir>/model
    # Serve the model's list-fusion head (<model_dir>/list_fusion.json) for relevance after reranking;
    # off (or no head): the retrieval-weight blend. Building fits a missing head when on.
    list_fusion: bool = True

    @model_validator(mode="after")
    def _derive_paths(self) -> Self:
        if self.catalog_dir is None:
            self.catalog_dir = self.artifacts_dir / "catalog"
        if self.model_dir is None:
            self.model_dir = self.artifacts_dir / "model"
        return self

    @property
    def triton_repo(self) -> Path:
        assert self.model_dir is not None
        return self.model_dir / "triton"


class BuildSettings(_Locations):
    """What `rankserve build` (and `serve --demo`) needs to make missing artifacts."""

    seed: int = 0
    products: int = Field(40_000, ge=100)
    # Fine-tuning budget in optimizer steps (training.finetune), never minutes: same inputs, same model.
    # Per fine-tune: the build runs train_soup of them (seeds seed, seed + 1, ...) and serves the average
    # of their weights (training.soup). Two of 200 steps, chosen on val over one of 400 (the same build
    # time) and two of 400: docs/quality.md, session 9.
    train_steps: int = Field(200, ge=1)
    train_soup: int = Field(2, ge=1)
    # WiSE-FT: serve train_wise_alpha * fine-tuned + (1 - alpha) * pretrained weights (training.soup).
    # 1: the fine-tune as it ends. 0.8 was measured and not adopted (docs/quality.md, session 10).
    train_wise_alpha: float = Field(1.0, ge=0.0, le=1.0)
    # Local Hugging Face BERT-family checkpoint to fine-tune; None: the pinned all-MiniLM-L6-v2.
    base_model: Path | None = None
    index_factory: str = "HNSW32,Flat"
    triton_instances: int = Field(1, ge=1)


class Settings(_Locations):
    """Serving: the gRPC server, the pipeline's defaults and limits, and where the reranker runs."""

    # `serve` builds what is missing first (the demo). False: never write into the catalog or model
    # directory (a read-only mount; `rankserve build` runs elsewhere, e.g. an initContainer or a Job),
    # and refuse to start, naming the file, when an artifact is missing.
    build_artifacts: bool = True
    # A/B experiments (pipeline.experiments): a YAML or TOML file of experiments and their arms.
    experiments_file: Path | None = None

    # "hybrid": BM25 and dense lists fused by reciprocal rank (filters inside both); "dense": FAISS only.
    retrieval: Literal["hybrid", "dense"] = "hybrid"
    ef_search: int = Field(128, ge=1)
    # Unfiltered dense searches run exact on the GPUs (faiss-gpu, the `gpu` extra) when the host has any;
    # filtered ones stay on the CPU index (GPU indexes take no ID selectors). Off, or no GPU: CPU only.
    faiss_gpu: bool = False

    # gRPC server.
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    # Reranking is CPU-bound: more requests in flight than cores only stretches each one past the
    # reranker timeout. Waiting in the queue is bounded too; beyond it -> RESOURCE_EXHAUSTED.
    max_inflight: int = Field(2, ge=1)
    max_queued: int = Field(16, ge=0)
    # ...and a newcomer whose expected wait for a slot exceeds this is shed at once (server.admission):
    # at 2 in flight each request already takes about twice its unloaded time on 2 cores, so more
    # queueing than ~one request's worth pushes admitted latency past 3x the unloaded p99 (measured,
    # docs/operations.md: 0.15 s gave 3.31x at 4x saturation, 0.1 s 2.72x, for 16% shed at 1x saturation
    # instead of 8%). None: the queue length alone bounds it.
    max_queue_wait_s: float | None = Field(0.1, gt=0)
    # RESOURCE_EXHAUSTED carries RetryInfo with this delay (google.rpc.RetryInfo): a well-behaved client
    # backs off at least this long before trying again.
    overload_retry_after_s: float = Field(0.2, gt=0)
    grace_s: float = Field(5.0, ge=0)
    # gRPC connections live long and a Service balances per connection: closing each after this age
    # (plus a grace for its in-flight calls) makes clients reconnect and spreads them over new replicas.
    max_connection_age_s: float = Field(300.0, gt=0)
    max_connection_age_grace_s: float = Field(30.0, ge=0)
    metrics_port: int | None = None  # Prometheus /metrics on host:port when set
    # Largest message the server accepts / sends (gRPC's own limits otherwise: 4 MiB / unlimited). A
    # RankRequest or a FeedbackEvent is well under 1 KiB; a Rank response message is one item.
    max_receive_message_bytes: int = Field(1 << 20, ge=1024)
    max_send_message_bytes: int = Field(4 << 20, ge=1024)

    # Security. TLS when a certificate and key are given; with a client CA too, mutual TLS (a client
    # without a certificate that CA signed cannot connect). Bearer tokens from a file (one per line,
    # '#' comments, reloaded on SIGHUP; server.auth); without one, anyone who reaches the port may call,
    # and binding beyond loopback logs a warning. Per-client rate limit (token bucket; 0: none) applies
    # to authenticated clients.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    auth_tokens_file: Path | None = None
    rate_limit_rps: float = Field(0.0, ge=0)
    rate_limit_burst: float = Field(20.0, ge=1)

    # Finished rankings cached by (query, k, λ, candidates, filters, model, index); 0 turns it off.
    ranking_cache_size: int = Field(4096, ge=0)
    ranking_cache_ttl_s: float = Field(60.0, gt=0)
    # Token ids of this many distinct item texts kept for reranking (~0.3 KB each); 0 turns it off.
    doc_token_cache: int = Field(200_000, ge=0)

    # Request defaults and limits.
    default_k: int = Field(10, ge=1)
    max_k: int = Field(200, ge=1)
    default_candidates: int = Field(100, ge=1)
    max_candidates: int = Field(1000, ge=1)
    default_mmr_lambda: float = Field(0.90, ge=0.0, le=1.0)  # chosen on val: docs/quality.md
    # Weight of the (min-max) retrieval score added to the (min-max) reranker score; chosen on val.
    rerank_retrieval_weight: float = Field(BASE_RETRIEVAL_WEIGHT, ge=0.0)
    max_query_chars: int = Field(512, ge=1)

    # Feedback and personalisation. The event log is SQLite under state_dir (default
    # <artifacts_dir>/state); "full" commits survive power loss, "normal" only a process crash.
    feedback: bool = True
    state_dir: Path | None = None
    feedback_sync: Literal["full", "normal"] = "full"
    # A PostgreSQL DSN puts the log in one database that several replicas share (`postgres` extra);
    # unset: the embedded SQLite log under state_dir.
    feedback_dsn: str | None = None
    # With feedback_dsn, every this many seconds learn what other replicas committed to the shared log
    # (feedback.tail): their lists as bandit trials, their clicks as rewards and profile events. 0: only
    # at start (the replay).
    feedback_follow_s: float = Field(1.0, ge=0.0)
    # Lists (a decision with its events) whose newest record is older than this leave the log, what the
    # bandit and the position propensities learnt from them kept as counts (feedback.retention); 0 keeps
    # everything. Checked every feedback_compact_every_s while serving, and first at start.
    feedback_retention_days: float = Field(90.0, ge=0.0)
    feedback_compact_every_s: float = Field(3600.0, gt=0.0)
    # How far the best-matching item's profile score lifts it, in units of normalised relevance
    # (pipeline.personalize), when the bandit is off; 0 turns personalisation off. With the bandit on,
    # Thompson sampling picks the weight per list (feedback.bandit). Interactions halve in weight every
    # half-life. A share of personalised lists serve their top ten shuffled to measure position bias.
    personal_weight: float = Field(1.0, ge=0.0)
    bandit: bool = True
    explore_share: float = Field(0.05, ge=0.0, le=1.0)
    profile_half_life_s: float = Field(7 * 86400.0, gt=0)
    # Users whose profiles stay in memory (least recently used dropped); another is rebuilt from the
    # log when it next searches. A profile is ~10-80 KiB (docs/personalization.md).
    profile_cache_users: int = Field(20_000, ge=1)
    # A profile read back from the log is built from the user's newest this many events: a bot's or a
    # shared account's history costs a read no more than this (at a 7-day half-life older events of such
    # a user weigh little).
    profile_max_events: int = Field(10_000, ge=1)

    # Where the cross-encoder runs: "triton" (INT8 ONNX on Triton, the CPU deployment) or "torch" (the
    # trained model in process with PyTorch, e.g. FP16 on a GPU; engines.torch_rerank).
    reranker_engine: Literal["triton", "torch"] = "triton"
    torch_device: str = "cuda"
    torch_precision: Literal["fp32", "fp16", "bf16"] = "fp16"

    # The reranker version (a Triton version number) a request is scored by when no experiment arm names
    # one; "": the newest version loaded when the server starts. Pinned at start, so loading a new
    # version (`rankserve model load`) changes nothing until an arm names it or the server restarts.
    reranker_version: str = Field("", pattern=r"^[0-9]*$")
    # Triton: an external one (triton_url) or one we start on loopback.
    triton_url: str | None = None
    triton_host: str = "127.0.0.1"
    triton_grpc_port: int = Field(0, ge=0, le=65535)  # 0 = pick a free port
    # "reranker" (Python backend, our CPU Triton) or "reranker_onnx" (the stock Triton image, ORT backend).
    triton_model: str = "reranker"
    triton_timeout_s: float = Field(2.0, gt=0)
    triton_ready_timeout_s: float = Field(300.0, gt=0)
    triton_stop_grace_s: float = Field(15.0, ge=0)
    # After a failed reranker call, serve degraded for this long before trying Triton again.
    reranker_retry_after_s: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _check_limits(self) -> Self:
        if self.default_candidates > self.max_candidates:
            raise ValueError("default_candidates must not exceed max_candidates")
        # Else every request that leaves k unset is refused, naming a field its client never set.
        if self.default_k > self.max_k:
            raise ValueError("default_k must not exceed max_k")
        if self.default_k > self.max_candidates:
            raise ValueError("default_k must not exceed max_candidates")
        if self.state_dir is None:
            self.state_dir = self.artifacts_dir / "state"
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self
