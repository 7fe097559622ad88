"""The GraphQL-over-HTTP spec's reference audits (the npm package graphql-http) against a live
server: `taskgraph serve` on a free loopback port, on a committed test database.

The package is installed once with npm into `.cache/` (git ignores it) and reused; Node and
npm must be on the machine, and the test fails, not skips, when they are missing. Every MUST
and SHOULD audit has to pass; MAY audits are reported but free to fail. `KNOWN_FAILING` holds
the audits the server does not pass yet and is checked exactly: an audit listed there that
passes fails the test too, so the list shrinks as the view is fixed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.graph.live_server import Server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("http_audit.mjs")

GRAPHQL_HTTP_VERSION = "1.23.1"
# graphql-http's peer dependency (its handler imports it; the audits do not use it): pinned so
# that every machine installs the same tree.
GRAPHQL_JS_VERSION = "16.15.0"
PACKAGES = (f"graphql-http@{GRAPHQL_HTTP_VERSION}", f"graphql@{GRAPHQL_JS_VERSION}")
CACHE = ROOT / ".cache" / f"graphql-http-{GRAPHQL_HTTP_VERSION}"

# Audit ids (graphql-http's) of MUST/SHOULD audits the server is known to fail, each with the
# reason. Kept exact: a listed audit that passes fails the test. None today.
KNOWN_FAILING: list[str] = []

# graphql-http 1.23.1 has 61 server audits; fewer results means the run itself went wrong.
MIN_AUDITS = 61


@dataclass(frozen=True)
class Audit:
    id: str
    name: str
    status: str  # ok; or, failed: error (a MUST), warn (a SHOULD), notice (a MAY)
    reason: str | None
    response: dict[str, Any] | None

    @property
    def required(self) -> bool:
        return self.name.startswith(("MUST", "SHOULD"))

    def describe(self) -> str:
        line = f"{self.id} {self.name}: {self.reason}"
        if self.response is not None:
            line += (
                f"\n      answered {self.response['status']}"
                f" ({self.response['contentType']}): {self.response['body']}"
            )
        return line


def _installed(folder: Path) -> bool:
    for package in PACKAGES:
        name, version = package.rsplit("@", 1)
        manifest = folder / "node_modules" / name / "package.json"
        try:
            if json.loads(manifest.read_text())["version"] != version:
                return False
        except (OSError, ValueError, KeyError):
            return False
    return True


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the GraphQL-over-HTTP audit needs Node.js 18+ and npm "
            "(e.g. `apt-get install nodejs npm`)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def graphql_http() -> Path:
    """The folder whose node_modules hold the pinned graphql-http, installed on first use."""
    _require_tool("node")
    npm = _require_tool("npm")
    if _installed(CACHE):
        return CACHE
    # Installed beside the cache and renamed into place, so an interrupted install is never
    # taken for a finished one.
    staging = CACHE.with_name(f"{CACHE.name}.{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir(parents=True)
    try:
        install = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund"]
        done = subprocess.run(
            [*install, "--save-exact", "--loglevel=error", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "npm_config_update_notifier": "false"},
        )
        if done.returncode != 0 or not _installed(staging):
            pytest.fail(
                f"npm install {' '.join(PACKAGES)} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}",
                pytrace=False,
            )
        shutil.rmtree(CACHE, ignore_errors=True)
        try:
            staging.rename(CACHE)
        except OSError:
            # Another run put its copy there first.
            if not _installed(CACHE):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CACHE


def _audit(folder: Path, url: str, server: Server) -> list[Audit]:
    node = _require_tool("node")
    done = subprocess.run(
        [node, str(SCRIPT), str(folder), url], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        pytest.fail(
            f"the audit script failed ({done.returncode}):\n{done.stderr}\n"
            f"server log:\n{server.output()}",
            pytrace=False,
        )
    return [Audit(**result) for result in json.loads(done.stdout)]


async def test_the_server_passes_the_graphql_over_http_audits(
    graphql_http: Path, live_server: Server
) -> None:
    audits = await asyncio.to_thread(_audit, graphql_http, live_server.url, live_server)
    # Every audit's outcome, shown by pytest when the test fails.
    for audit in audits:
        print(f"{audit.status:6} {audit.id} {audit.name}")
    assert len(audits) >= MIN_AUDITS, [audit.id for audit in audits]
    ids = {audit.id for audit in audits}
    failing = [audit for audit in audits if audit.status != "ok" and audit.required]
    failing_ids = {audit.id for audit in failing}
    known = set(KNOWN_FAILING)
    assert len(known) == len(KNOWN_FAILING), "KNOWN_FAILING lists an audit twice"

    problems: list[str] = []
    new = [audit for audit in failing if audit.id not in known]
    if new:
        problems.append("MUST/SHOULD audits that fail:")
        problems += [f"  {audit.describe()}" for audit in new]
    fixed = [audit for audit in audits if audit.id in known and audit.id not in failing_ids]
    if fixed:
        problems.append("audits in KNOWN_FAILING that pass now (take them off the list):")
        problems += [f"  {audit.id} {audit.name}" for audit in fixed]
    unknown = sorted(known - ids)
    if unknown:
        problems.append(f"KNOWN_FAILING ids that graphql-http {GRAPHQL_HTTP_VERSION} lacks:")
        problems += [f"  {audit_id}" for audit_id in unknown]
    if problems:
        optional = [audit for audit in audits if audit.status != "ok" and not audit.required]
        if optional:
            problems.append("MAY audits that fail (allowed):")
            problems += [f"  {audit.id} {audit.name}: {audit.reason}" for audit in optional]
        pytest.fail("\n".join(problems), pytrace=False)
