"""The app as a real local server: `streamlit run app.py` on a free port of 127.0.0.1, for the
browser tests and the benchmarks that drive it (tests/app_driver.py, benchmarks/app.py,
benchmarks/load.py). Needs only the standard library here; the child process needs Streamlit.

    with LocalApp() as app:          # offline (HF_HUB_OFFLINE=1), headless, no file watcher
        page.goto(app.url)

The server runs in its own process group, and stopping signals only that group, so nothing the
app started (a model-run worker, a kaleido probe) is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import IO

from .cli import find_app

DEBIAN_CHROMIUM = "/usr/bin/chromium"


def browser_path() -> str | None:
    """The Chrome/Chromium on this machine: BROWSER_PATH (which kaleido's figure export reads too),
    else Debian's chromium, else one on PATH; None when there is none."""
    for path in (os.environ.get("BROWSER_PATH"), DEBIAN_CHROMIUM, shutil.which("chromium"),
                 shutil.which("google-chrome"), shutil.which("chromium-browser")):
        if path and os.path.exists(path):
            return path
    return None


# the Chromium the browser drivers start (Debian's path when there is none, for the message saying so)
CHROMIUM = browser_path() or DEBIAN_CHROMIUM
# the page's root element once the script has finished a run (what a driver waits for)
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalApp:
    """`streamlit run app.py` on a free local port; `url` once started, `stop()` (or the `with`
    block's end) always stops it. `env` is added to this process's environment; `log` takes the
    server's output (a file, or DEVNULL)."""

    def __init__(self, env: dict[str, str] | None = None, log: IO[bytes] | int = subprocess.DEVNULL,
                 timeout: float = 120):
        self.app = find_app()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(self.app), "--server.headless", "true",
             "--server.port", str(self.port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=self.app.parent, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_healthy(timeout)
        except BaseException:
            LocalApp.stop(self)  # not a subclass's stop: its own state is not set up yet
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_healthy(self, timeout: float) -> None:
        """Poll Streamlit's health endpoint until it answers (or the server exits)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {self.proc.returncode} before serving {self.url}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.url} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self) -> "LocalApp":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["CHROMIUM", "IDLE", "LocalApp", "browser_path", "free_port"]
