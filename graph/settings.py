"""Runtime configuration, read once from environment variables and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql+asyncpg://...). Unset: embedded PostgreSQL.",
    )
    database_read_url: str | None = Field(
        default=None,
        description="A read replica of DATABASE_URL (streaming replication): queries read "
        "there; mutations and their payloads use the primary. Unset: everything on the primary.",
    )
    database_listen_url: str | None = Field(
        default=None,
        description="Where the live events' LISTEN connection goes, when DATABASE_URL is a "
        "pooler in transaction mode (PgBouncer): the primary itself. Unset: DATABASE_URL.",
    )
    database_wait_timeout: float = Field(
        default=60.0,
        ge=0,
        description="Seconds that start-up waits for the database to answer, trying again "
        "with a growing delay, before it gives up.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".data",
        description="Where the embedded PostgreSQL and the generated secret key live.",
    )
    pool_size: int = Field(default=10, ge=1, le=1000)
    max_overflow: int = Field(
        default=10,
        ge=0,
        le=1000,
        description="Extra connections for work outside requests (health checks); requests "
        "queue, first come first served, for the pool_size kept connections.",
    )
    pool_timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for a connection.")
    statement_timeout_ms: int = Field(
        default=15_000, ge=0, description="PostgreSQL statement_timeout; 0 disables it."
    )
    statement_cache: bool = Field(
        default=True,
        description="Keep prepared statements on each database connection. False when "
        "DATABASE_URL goes through a pooler in transaction mode (PgBouncer's "
        "pool_mode=transaction): docs/deployment.md.",
    )
    secret_key: str | None = Field(
        default=None,
        min_length=32,
        description="Signs access tokens. Required with DATABASE_URL; generated for embedded.",
    )
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    debug: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The least severe log lines written."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="JSON lines, plain text, or auto: JSON unless on a terminal."
    )
    shutdown_timeout: float = Field(
        default=20.0,
        ge=0,
        description="Seconds that requests in flight get to finish after SIGTERM or SIGINT; "
        "then they are cancelled and the server stops.",
    )
    graphiql: bool | None = Field(
        default=None,
        description="Serve GraphiQL. Unset: on for the embedded database or DEBUG, off with "
        "DATABASE_URL (production).",
    )
    introspection: bool | None = Field(
        default=None,
        description="Answer introspection queries (and suggest names in errors). Unset: as "
        "GRAPHIQL.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    session_cookie_samesite: Literal["strict", "lax"] = Field(
        default="strict",
        description="SameSite of the refresh-token cookie of browser sessions "
        "(graph/browser_sessions.py): Strict, or Lax.",
    )
    trusted_documents: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Manifests of trusted documents (comma-separated paths): Apollo's "
        "persisted query manifest, Relay's persistOutput, GraphQL Codegen's persisted documents.",
    )
    trusted_documents_only: bool = Field(
        default=False, description="Run only the trusted documents' operations."
    )
    csrf_prevention: bool = Field(
        default=True,
        description="Refuse GET requests that a page of another site could send from a "
        "browser (no JSON content type and no preflight header).",
    )

    # Prometheus metrics at /metrics (graph/metrics.py).
    metrics: Literal["off", "open", "token"] | None = Field(
        default=None,
        description="/metrics: off, open, or token (a bearer token, METRICS_TOKEN). Unset: "
        "token when METRICS_TOKEN is set, else open for the embedded database or DEBUG, off "
        "with DATABASE_URL (production).",
    )
    metrics_token: SecretStr | None = Field(
        default=None, min_length=16, description="The bearer token /metrics asks for."
    )
    metrics_operation_names: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="Operation names each worker labels metrics with; later names are counted "
        "as (other).",
    )
    # OpenTelemetry traces (graph/tracing.py): exported over OTLP/HTTP when set.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector, e.g. http://127.0.0.1:4318. Unset: no tracing.",
    )

    # Limits checked before an operation runs (graph/query_limits.py, graph/query_cost.py).
    max_query_chars: int = Field(default=20_000, ge=100, le=1_000_000)
    max_query_tokens: int = Field(default=5_000, ge=10, le=1_000_000)
    # Responses nest two levels per field at most; orjson refuses more than 254.
    max_query_depth: int = Field(default=12, ge=1, le=100)
    max_query_aliases: int = Field(default=30, ge=0, le=10_000)
    max_query_root_fields: int = Field(default=20, ge=1, le=10_000)
    max_query_cost: int = Field(default=1_000, ge=1)

    # Rate limits by query cost (graph/rate_limits.py): a bucket per principal.
    rate_limits: bool = True
    rate_limit_maximum: float = Field(default=2_000.0, gt=0)
    rate_limit_restore_rate: float = Field(default=100.0, gt=0, description="Points per second.")
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by every worker for the rate limits; unset: per worker.",
    )
    # Log-in and sign-up attempts, against password guessing (graph/rate_limits.py).
    login_attempts_per_email: int = Field(default=10, ge=1)
    login_attempts_per_address: int = Field(default=30, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)

    # Live events over WebSockets (graph/subscriptions.py, graph/pubsub.py).
    ws_init_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a WebSocket may take to send connection_init before it is closed.",
    )
    ws_ping_interval: float = Field(
        default=20.0,
        gt=0,
        description="Seconds between WebSocket pings; a client that does not answer within as "
        "long again is disconnected and its subscriptions end.",
    )
    ws_max_message_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Larger WebSocket messages close the connection (1009).",
    )
    max_subscriptions_per_connection: int = Field(default=50, ge=1, le=10_000)
    max_subscriptions_per_principal: int = Field(default=200, ge=1, le=100_000)

    @field_validator("database_url", "database_read_url", "database_listen_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if value.startswith(("postgres://", "postgresql://")):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a PostgreSQL URL, e.g. postgresql://user@host:5432/taskgraph")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("session_cookie_samesite", mode="before")
    @classmethod
    def _lower_samesite(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("secret_key", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("trusted_documents", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _check_redis_url(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a Redis URL, e.g. redis://127.0.0.1:6379/0")
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _lower_metrics(cls, value: object) -> object:
        if value == "":
            return None
        return value.lower() if isinstance(value, str) else value

    @field_validator("metrics_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("otel_exporter_otlp_endpoint", mode="before")
    @classmethod
    def _check_otlp_endpoint(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:4318")
        return value

    @model_validator(mode="after")
    def _metrics_token_fits(self) -> Settings:
        if self.metrics == "token" and self.metrics_token is None:
            raise ValueError("METRICS=token needs METRICS_TOKEN")
        if self.metrics == "open" and self.metrics_token is not None:
            # Whoever set a token expects it to be asked for.
            raise ValueError("METRICS=open would not ask for the METRICS_TOKEN that is set")
        return self

    @model_validator(mode="after")
    def _replica_of_a_primary(self) -> Settings:
        # The embedded PostgreSQL has no replica; one of another server would serve data
        # that the primary does not have.
        if self.database_read_url and not self.database_url:
            raise ValueError("DATABASE_READ_URL needs DATABASE_URL (the primary it replicates)")
        return self

    @model_validator(mode="after")
    def _cost_fits_bucket(self) -> Settings:
        # A query costing more than the bucket holds could never run.
        if self.max_query_cost > self.rate_limit_maximum:
            raise ValueError("MAX_QUERY_COST must not exceed RATE_LIMIT_MAXIMUM")
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def graphiql_enabled(self) -> bool:
        # The zero set-up default is for developers; a server given its own database is
        # taken to be in production unless DEBUG says otherwise.
        return self.graphiql if self.graphiql is not None else self.embedded or self.debug

    @property
    def metrics_access(self) -> Literal["off", "open", "token"]:
        """Who may read /metrics; unset, as GraphiQL: open in development, off in production."""
        if self.metrics is not None:
            return self.metrics
        if self.metrics_token is not None:
            return "token"
        return "open" if self.embedded or self.debug else "off"

    @property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else self.graphiql_enabled


class SettingsError(Exception):
    """A setting is missing or invalid; the message is one line for the operator."""


def load_settings(**overrides: object) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"Invalid settings: {problems}") from None
