"""Runtime configuration, read once from environment variables and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
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

    @field_validator("database_url")
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
