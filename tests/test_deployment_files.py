"""What the deployment files promise and can be checked without Docker (docs/deployment.md):
the image's final stage runs as a non-root user with no compiler and the locked versions;
compose.yaml gives the servers only settings that exist (a misspelt one would be ignored
without a word), orders the migration job before them, and stops them no sooner than they
drain."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from graph.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPILERS = re.compile(
    r"^(gcc|g\+\+|cpp|clang|build-essential|make|cargo|rustc|.*-dev)(-[0-9.]+)?$"
)
# Read by programs other than Taskgraph's settings.
OTHER_PROGRAMS = {"FORWARDED_ALLOW_IPS"}  # uvicorn's


def _stages() -> list[list[str]]:
    """The Dockerfile's stages, each as its instructions (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text()
    instructions = re.sub(r"\\\n", " ", text).splitlines()
    stages: list[list[str]] = []
    for line in instructions:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def _installed(stage: list[str]) -> set[str]:
    packages: set[str] = set()
    for line in stage:
        if not line.upper().startswith("RUN "):
            continue
        for command in re.split(r"&&|;", line[4:]):
            words = shlex.split(command)
            if "apt-get" in words and "install" in words:
                packages |= {w for w in words[words.index("install") + 1 :] if w[0] != "-"}
    return packages


def test_the_final_stage_runs_as_a_user_without_compilers() -> None:
    build, final = _stages()[0], _stages()[-1]
    assert len(_stages()) >= 2, "the image is built in stages"
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets a user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric and not root"
    installed = _installed(final)
    assert "python3" in installed
    assert not {p for p in installed if COMPILERS.match(p)}, installed
    # It takes only the application from the build stage, not the tools that built it.
    copied = [line for line in final if line.upper().startswith("COPY --FROM=")]
    assert copied and all(line.split()[-2:] == ["/app", "/app"] for line in copied), copied
    syncs = [line for line in build if "uv sync" in line]
    assert syncs and all("--locked" in line and "--no-dev" in line for line in syncs), syncs


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_compose_gives_the_servers_only_settings_that_exist() -> None:
    services = _compose()["services"]
    ours = {name: s for name, s in services.items() if "build" in s}
    assert set(ours) == {"migrate", "server"}
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in ours.items():
        unknown = set(service["environment"]) - fields - OTHER_PROGRAMS
        assert not unknown, f"{name}: {unknown} are not settings (graph/settings.py)"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["server"]["command"][0] == "serve"
    assert services["server"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }


def test_compose_stops_servers_after_they_drain_and_checks_their_health() -> None:
    services = _compose()["services"]
    server = services["server"]
    grace = int(server["stop_grace_period"].removesuffix("s"))
    shutdown = Settings.model_fields["shutdown_timeout"].default
    assert grace > shutdown, "Docker would kill servers still finishing their requests"
    assert "/healthz" in " ".join(server["healthcheck"]["test"])
    # The proxy sends traffic to a replica only while /readyz says it is ready, on the
    # port the servers listen on.
    command = server["command"]
    port = command[command.index("--port") + 1]
    haproxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert "uri /readyz" in haproxy
    assert re.search(rf"server-template \w+ \d+ server:{port}\b", haproxy)
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
