"""Headless Chromium (Debian's `chromium`) for the browser tests, driven through the DevTools
protocol over its pipe (`--remote-debugging-pipe`, JSON messages separated by NUL bytes): no
driver, no extra package, no port to pick. Every host name but the loopback ones resolves to
nothing (`--host-resolver-rules`). A test fails, not skips, when Chromium is missing (`.ci/run`
installs it).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

WINDOW = (1400, 860)


class Chromium:
    """Headless Chromium and one page, over the DevTools protocol's pipe."""

    def __init__(self, executable: str, profile: Path, allowed_hosts: Sequence[str]) -> None:
        # Every other host name resolves to nothing: a file fetched from a CDN fails to load.
        excluded = "".join(f" , EXCLUDE {host}" for host in allowed_hosts)
        flags = [
            "--headless",
            "--no-sandbox",  # the tests run as root in CI
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--host-resolver-rules=MAP * ~NOTFOUND{excluded}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            # The protocol's pipe is file descriptors 3 (commands in) and 4 (messages out):
            # here the process's stdin and stdout, moved there by the shell before it execs.
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", 'exec "$0" "$@" 3<&0 4>&1 1>&2', executable, *flags],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self.session = ""
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
            self.session = attached["sessionId"]
        except BaseException:
            self.close()
            raise

    def _receive(self, deadline: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        out = self.process.stdout.fileno()
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(out, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium exited:\n{self.log.read_text(errors='replace')}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            command["sessionId"] = self.session
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\0")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str, *, awaited: bool = False) -> Any:
        """The value of `expression` in the page (with `awaited`, of the promise it gives)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=awaited
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """The first truthy value of `expression`, polled; fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"still false after {timeout} s: {expression}\n{self.problems()}")
            time.sleep(0.1)

    def drain(self) -> None:
        """Take in the events sent so far (a no-op round trip)."""
        self.evaluate("0")

    def click(self, selector: str) -> None:
        """A real mouse click on the centre of the element."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def problems(self) -> str:
        errors = [
            event["params"]
            for event in self.events
            if event["method"] == "Runtime.exceptionThrown"
            or (
                event["method"] == "Log.entryAdded" and event["params"]["entry"]["level"] == "error"
            )
        ]
        return f"page errors: {json.dumps(errors)[:3000]}"

    def close(self) -> None:
        """Browser.close, which ends Chromium's helper processes too; the process group is
        killed when it does not come."""
        try:
            self.session = ""
            self.call("Browser.close", timeout=5)
            self.process.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        "`chromium` is not on PATH: the browser tests need Debian's chromium package "
        "(`apt-get install chromium`; .ci/run installs it)",
        pytrace=False,
    )


@pytest.fixture
def chromium(chromium_path: str, tmp_path: Path) -> Iterator[Chromium]:
    """Headless Chromium with a fresh profile, reaching the loopback host names only."""
    profile = tmp_path / "chromium"
    profile.mkdir()
    browser = Chromium(chromium_path, profile, ("127.0.0.1", "localhost"))
    try:
        yield browser
    finally:
        browser.close()
