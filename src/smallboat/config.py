"""One settings object for the whole package, read from SMALLBOAT_* environment variables.

Nothing here touches the disk at import time: `Settings()` only computes paths, and
`Settings.ensure_home()` creates the folders when a command actually needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where smallboat keeps its state and how hard it may push the machine."""

    model_config = SettingsConfigDict(env_prefix="SMALLBOAT_", extra="ignore")

    home: Path = Field(
        default=Path(".smallboat"),
        description="Folder holding all state: landing files, warehouse, runs, registry, logs.",
    )
    threads: int = Field(default=2, description="Threads DuckDB and PyTorch may use.")
    memory_limit: str = Field(
        default="3GB",
        description="DuckDB memory limit for large jobs; on the spark dbt target also the Spark "
        "driver's heap (at least 256MB).",
    )
    dbt_target: str = Field(
        default="duckdb",
        description="profiles.yml target used by transform and read by training: duckdb, spark "
        "(a local PySpark; marts as Parquet under the home) or snowflake.",
    )
    load_max_unzipped_bytes: int = Field(
        default=32 << 30,
        description="Most bytes `smallboat data load` unpacks from one zip (the Coveo release "
        "unpacks to about 7.4 GB).",
    )
    mlflow_uri: str | None = Field(
        default=None,
        description="MLflow tracking and registry URI (a tracking server's http(s) address or a "
        "database URI); unset: a SQLite file under the home.",
    )
    write_keys: str = Field(
        default="",
        description="Comma-separated Segment write keys the collector accepts (none: Segment "
        "endpoints answer 401).",
    )
    ga4_api_secrets: str = Field(
        default="",
        description="Comma-separated GA4 Measurement Protocol API secrets the collector accepts "
        "(none: /mp/collect answers 401).",
    )
    collect_host: str = Field(default="127.0.0.1", description="Address the collector binds.")
    collect_port: int = Field(default=8081, description="Port the collector listens on.")
    collect_replica: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})?$",
        description="This collector's replica id (letters, digits, `_.-`): several collectors on "
        "one home each write their own log, `collect/replicas/<id>/log`, all landed by one "
        "compaction; empty: the single log `collect/log`.",
    )
    collect_max_body_bytes: int = Field(
        default=512 * 1024, description="Largest request body (after gzip) the collector reads."
    )
    collect_max_event_age_days: float = Field(
        default=7.0,
        description="Oldest client-given event time the collector accepts, in days before its "
        "clock (raise it to backfill history with `smallboat replay`).",
    )
    collect_segment_bytes: int = Field(
        default=16 << 20, description="The collector's log rolls to a new segment past this size."
    )
    collect_segment_seconds: float = Field(
        default=30.0, description="... or when its oldest record is this old (seconds)."
    )
    collect_compact_seconds: float = Field(
        default=10.0,
        description="How often the running collector compacts closed segments (0: never; use "
        "`smallboat collect compact`).",
    )
    log_min_free_bytes: int = Field(
        default=16 << 20,
        description="Readiness (`/readyz` of the collector and the prediction service) says not "
        "ready while the disk holding the write-ahead log has fewer free bytes than this (room "
        "for one default collector segment); 0: only a failed write counts.",
    )
    collect_cors_origins: str = Field(
        default="",
        description="Comma-separated origins (`https://shop.example`) whose pages may send to the "
        "collector from the browser (CORS), with credentials (cookies); none: no cross-origin "
        "calls. `*` allows any origin, but then without credentials.",
    )
    collect_rejects_max_bytes: int = Field(
        default=32 << 20,
        description="Most bytes the log of refused events (`smallboat collect rejects`) keeps; "
        "the oldest half is dropped past it.",
    )
    collect_max_clients: int = Field(
        default=100_000,
        description="Most clients (UA `cid`s without a session id) the collector tracks "
        "sessions for (about 450 bytes each); past it the least recently seen is forgotten and "
        "its next hit starts a new session.",
    )
    collect_key: str = Field(
        default="",
        description="Key that `POST /collect` JSON events must carry (`Authorization: Bearer "
        "<key>` or `X-Smallboat-Key`); empty: anyone who reaches the collector may post events "
        "for any session, purchases included.",
    )

    http_max_header_bytes: int = Field(
        default=32 * 1024,
        description="Most bytes of a request's head (request line and headers) either server "
        "reads; a longer head is answered 431.",
    )
    http_keep_alive_seconds: int = Field(
        default=5,
        description="Either server closes a connection idle this long (before its first "
        "request or between requests).",
    )
    http_request_timeout_seconds: float = Field(
        default=30.0,
        description="A request not fully received this long after its first byte is answered "
        "408 (head incomplete) or its connection closed (body stalled).",
    )
    http_parser: Literal["auto", "httptools", "h11"] = Field(
        default="auto",
        description="uvicorn's HTTP/1.1 parser (auto: httptools); the limits above hold for both.",
    )
    http_telemetry: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry (request spans, metrics, logs) on both "
        "servers, "
        "for a process whose OpenTelemetry SDK providers are configured. Off: FastAPI skips the "
        "per-request check (about 5 us, ~2% of a pixel hit).",
    )

    serve_host: str = Field(
        default="127.0.0.1", description="Address the prediction service binds."
    )
    serve_port: int = Field(
        default=8080, description="Port the prediction service listens on (SageMaker's is 8080)."
    )
    serve_max_body_bytes: int = Field(
        default=1 << 20, description="Largest request body the prediction service reads."
    )
    serve_workers: int = Field(
        default=1,
        description="Processes of `smallboat serve` sharing its port (one per core is the most "
        "that helps); more than one needs SMALLBOAT_REDIS_URL, so any worker answers any "
        "session.",
    )
    serve_runtime: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="What runs the model in the prediction service: onnx (ONNX Runtime, the "
        "bundle's serving graph, derived from the weights when the bundle has none) or torch "
        "(PyTorch, the fused network).",
    )
    serve_sections: bool = Field(
        default=False,
        description="Time each section of a prediction (parse and validate, collapse, encode, "
        "summary, forward pass, next items, answers, prediction log) and export the totals as "
        "smallboat_serve_section_seconds{section} on /metrics: where a request's CPU goes "
        "(bench/serve.py turns it on; ~1 us per request).",
    )
    serve_threads: int = Field(
        default=1,
        description="PyTorch threads of the prediction service: one forward pass at a time, "
        "concurrent requests batched into it, so one thread leaves a core for the HTTP side.",
    )
    serve_endpoint_name: str = Field(
        default="smallboat-intent",
        description="The endpoint name the SageMaker runtime route answers to "
        "(`POST /endpoints/<name>/invocations`), and the model name of the KServe v1 and v2 "
        "routes (`/v1/models/<name>`, `/v2/models/<name>`).",
    )
    serve_endpoint_names: str = Field(
        default="",
        description="More names those routes answer to, comma-separated; each may be a "
        "shell-style pattern, e.g. `intent-*-endpoint` (the reference project's names).",
    )
    admin_token: str = Field(
        default="",
        description="Bearer token of `POST /admin/reload` (empty: the route is off).",
    )
    serve_replica: str = Field(
        default="",
        description="Name of this serving process in the prediction log (empty: host-port).",
    )
    prediction_log: bool = Field(
        default=True,
        description="Log every prediction (durably, off the request path) for monitoring.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Session store of the prediction service: a Redis URL shared by replicas "
        "(unset: in-process).",
    )
    session_ttl_seconds: float = Field(
        default=1800.0,
        description="A stored session idle this long ends (30 minutes, as in the data).",
    )
    session_max_sessions: int = Field(
        default=100_000,
        description="Most sessions the in-process store holds; the least recently used go first.",
    )
    session_max_events: int = Field(
        default=1_000,
        description="Most raw events kept per stored session; the oldest go first.",
    )
    session_max_session_bytes: int = Field(
        default=1 << 20,
        description="Most bytes one session may hold in the in-process store (its rows' text "
        "plus ~400 bytes a row); the oldest rows go first, and one append larger than this by "
        "itself is answered 413.",
    )
    session_max_bytes: int = Field(
        default=256 << 20,
        description="Most bytes all sessions of the in-process store hold together (estimated "
        "like SMALLBOAT_SESSION_MAX_SESSION_BYTES); the least recently used sessions go first.",
    )

    monitor_window_hours: float = Field(
        default=24.0,
        description="Width of a monitoring window of event time (live quality per window; drift "
        "and alerts watch the latest one).",
    )
    monitor_min_rows: int = Field(
        default=200, description="Fewest predictions in a window for a drift verdict."
    )
    monitor_min_labelled: int = Field(
        default=200, description="Fewest labelled predictions in a window for a quality alert."
    )
    monitor_max_auc_drop: float = Field(
        default=0.05,
        description="Quality alert: live ROC-AUC this far below the version's test ROC-AUC.",
    )
    monitor_drift_share: float = Field(
        default=0.3, description="Drift alert: this share of the features drifted."
    )
    monitor_drift_numerical_threshold: float = Field(
        default=0.1,
        description="A numerical feature drifts past this normed Wasserstein distance.",
    )
    monitor_drift_categorical_threshold: float = Field(
        default=0.1, description="A categorical feature drifts past this Jensen-Shannon distance."
    )
    serve_url: str = Field(
        default="",
        description="Where `smallboat retrain` reaches the prediction service to hot-reload it "
        "(empty: http://<serve_host>:<serve_port>).",
    )

    @field_validator("admin_token", "collect_key")
    @classmethod
    def _strip_secret(cls, value: str) -> str:
        # A token read from a file (`$(cat token)`, a secret mount) often ends in a newline,
        # which no client sends: such a token could never match.
        return value.strip()

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def landing_dir(self) -> Path:
        return self.home_dir / "landing"

    @property
    def rejects_dir(self) -> Path:
        return self.home_dir / "rejects"

    @property
    def warehouse_path(self) -> Path:
        return self.home_dir / "warehouse.duckdb"

    @property
    def quality_dir(self) -> Path:
        """dbt test results of each transform run, kept for cards and audits."""
        return self.home_dir / "quality"

    @property
    def dbt_target_dir(self) -> Path:
        return self.home_dir / "dbt"

    @property
    def mlflow_dir(self) -> Path:
        """The default MLflow store: `mlflow.db` and the run artifacts under `artifacts/`."""
        return self.home_dir / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        """The MLflow URI in effect: SMALLBOAT_MLFLOW_URI, else SQLite under the home."""
        if self.mlflow_uri:
            return self.mlflow_uri
        return f"sqlite:///{(self.mlflow_dir / 'mlflow.db').as_posix()}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Where experiments created by smallboat keep run artifacts, unless a tracking server
        chooses (an http(s) URI): never MLflow's default of `./mlruns` in the current folder."""
        return self.mlflow_dir / "artifacts"

    @property
    def model_cache_dir(self) -> Path:
        """Registered model bundles downloaded for serving and scoring, one folder per version."""
        return self.home_dir / "models"

    @property
    def collect_dir(self) -> Path:
        """The event collector's write-ahead log (`log/`) and compaction state."""
        return self.home_dir / "collect"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.collect_cors_origins.split(",") if o.strip()]

    @property
    def write_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.write_keys.split(",") if k.strip())

    @property
    def ga4_api_secret_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.ga4_api_secrets.split(",") if k.strip())

    def table_landing_dir(self, table: str) -> Path:
        return self.landing_dir / table

    def ensure_home(self) -> Path:
        for folder in (self.home_dir, self.landing_dir, self.rejects_dir, self.quality_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self.home_dir
