"""Driving the Streamlit app in tests: through AppTest (`open_app`, and what a test
reads off a page), and as a real server for a browser (`serve_app`, on ledviz.localserver). Not a
test module: the app tests import it.

The app runs on the embedded demo model (ledviz/demo/model), offline.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path
from typing import IO, Iterator

from ledviz.localserver import LocalApp
from ledviz.text import WORD_JOINER

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TIMEOUT = 120  # seconds per AppTest script run (its default is 3 s: loading and running a model takes longer)
SHORT_DOC = ("Project Bluefinch report. The project lead is Maren Okafor. The site is Velmora. "
             "The budget is 4,312. Each section repeats a few facts, and other names appear too. ") * 6

CHARTS = ".js-plotly-plot, [data-testid='stPlotlyChart']"


# ---------------------------------------------------------------------------------------------
# AppTest
# ---------------------------------------------------------------------------------------------

def open_app(page: str | None = None, timeout: float = TIMEOUT):
    """The app after its first run, switched to `page` (e.g. 'pages/qa.py') when given; each run
    checked with `assert_clean`."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=timeout).run()
    assert_clean(at)
    if page:
        at.switch_page(page).run()
        assert_clean(at)
    return at


def messages(at, kind: str) -> list[str]:
    """The texts of every st.error / st.warning / st.info ... in the main area and the sidebar, as a reader
    reads them (`readable`: the escapes of ledviz.text.as_typed undone); `e.value` for the Markdown sent."""
    return [readable(e.value) for e in getattr(at, kind)] + [readable(e.value) for e in getattr(at.sidebar, kind)]


def readable(markdown: str) -> str:
    """Text put through ledviz.text.as_typed as the browser shows it: CommonMark's backslash escapes of
    ASCII punctuation undone, the word joiners dropped and no-break spaces read as spaces (Markdown
    meant as Markdown, like "**Run**", is left as it is)."""
    text = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)
    return text.replace(WORD_JOINER, "").replace("\u00a0", " ")


def assert_clean(at, errors_ok: bool = False) -> None:
    """No uncaught exception, and unless errors_ok no st.error, in the main area or the sidebar."""
    assert not at.exception, [e.value for e in at.exception]
    if not errors_ok:
        assert not messages(at, "error"), messages(at, "error")


def kept(at, key: str):
    """A page's kept result: session_state holds a handle into the server's ResultStore."""
    from pages.running import server

    return server().results.get(at.session_state[f"{key}.result"])


def charts(at) -> int:
    return len(at.get("plotly_chart"))


def paste(at, text: str = SHORT_DOC) -> None:
    """Paste `text` as the document."""
    at.segmented_control(key="doc.source").set_value("Paste").run()
    at.text_area(key="doc.pasted").set_value(text).run()
    assert_clean(at)


def load_hub_id(at, name: str) -> None:
    """Type `name` as the sidebar's Hub model id and click Load."""
    at.sidebar.radio(key="model.source").set_value("hub").run()
    at.sidebar.text_input(key="model.hub_id").set_value(name).run()
    at.sidebar.button(key="model.load_hub").click().run()


def load_folder(at, folder) -> None:
    """Type `folder` as the sidebar's local checkpoint folder and click Load."""
    at.sidebar.radio(key="model.source").set_value("local").run()
    at.sidebar.text_input(key="model.folder").set_value(str(folder)).run()
    at.sidebar.button(key="model.load_folder").click().run()


def run_lab_encoder_only(at, settings: int = 2) -> None:
    """On the Attention lab: paste the short document, take `settings` settings, turn generation off
    (encoder only: attention, time, memory) and press Compare."""
    paste(at)
    at.number_input(key="lab.count").set_value(settings).run()
    at.checkbox(key="lab.generate").uncheck().run()
    at.button(key="lab.run").click().run()


def waiting_job(srv, label_start: str, timeout: float = 60):
    """The first job waiting in `srv`'s queue whose label starts with `label_start`, once there is
    one (polled from another thread while a page waits in AppTest); None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [j for j in srv.queue.waiting_jobs() if j.label.startswith(label_start)]
        if jobs:
            return jobs[0]
        time.sleep(0.1)
    return None


@contextlib.contextmanager
def when_waiting(srv, label_start: str, action=lambda job: None) -> Iterator[dict]:
    """Another user's job holds `srv`'s only worker; once a job whose label starts with
    `label_start` waits behind it, `action(job)` runs (from another thread, as a click's callback
    would), then the worker is let go. Yields a dict that gets the job's label and place."""
    import threading

    gate, started = threading.Event(), threading.Event()
    srv.queue.submit(lambda job: (started.set(), gate.wait(60)), owner="another user")
    seen: dict = {}

    def watch() -> None:
        job = waiting_job(srv, label_start)
        if job is not None:
            seen.update(label=job.label, place=job.place)
            action(job)
        gate.set()

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        assert started.wait(10)
        watcher.start()
        yield seen
        watcher.join(30)
    finally:
        gate.set()


# ---------------------------------------------------------------------------------------------
# a real server, for a browser
# ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def serve_app(log: IO[bytes] | int = subprocess.DEVNULL) -> Iterator[str]:
    """`streamlit run app.py` on a free local port, offline (ledviz.localserver.LocalApp); yields
    its base URL and always stops it."""
    with LocalApp(log=log) as app:
        yield app.url
