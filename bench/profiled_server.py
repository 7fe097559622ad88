"""The app under cProfile, for `BENCH_LIVE_SERVER=bench/profiled_server.py python -m bench live`:
served as `taskgraph serve` serves it (its settings from the environment), its profile written
to `PROFILE_OUT` when it gets SIGUSR1 (the benchmark sends it at the end of the measurement).
Read it with `python -m pstats FILE`."""

from __future__ import annotations

import cProfile
import os
import signal
import sys

import uvicorn

from graph.app import app_from_env
from graph.cli import websocket_options
from graph.settings import load_settings


def main() -> None:
    profile = cProfile.Profile()
    path = os.environ["PROFILE_OUT"]

    def dump(_signum: int, _frame: object) -> None:
        profile.disable()
        profile.dump_stats(path)

    signal.signal(signal.SIGUSR1, dump)
    app = app_from_env()
    profile.enable()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        log_config=None,
        **websocket_options(load_settings()),
    )


if __name__ == "__main__":
    main()
