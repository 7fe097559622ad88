"""schema.graphql is exported from the code, checked in, and honours the contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from graph.schema import export_sdl

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_CHECK = ROOT.parent / "shared" / "tools" / "contract_check.py"


def test_checked_in_schema_is_current() -> None:
    assert (ROOT / "schema.graphql").read_text() == export_sdl(), (
        "schema.graphql is stale: run `./dev export-schema`"
    )


def test_schema_honours_the_contract_for_queries() -> None:
    result = subprocess.run(
        [sys.executable, str(CONTRACT_CHECK), str(ROOT / "schema.graphql"), "--roots", "Query"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
