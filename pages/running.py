"""The app's side of a shared server (ledviz.serving): one Server per process (st.cache_resource),
the deployment settings (environment and the [ledviz] table of .streamlit/secrets.toml), who the
current user is, and the waiting / running state of a job drawn on the page.

A job in the queue is drawn as "Waiting: you are number k in the queue" (k counts down as the
jobs ahead finish); once a worker takes it, as a progress bar "Running: <step>… <seconds>".
Streamlit's own running indicator is hidden (toolbarMode = "minimal"), so this is what tells a
user that something is happening.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import streamlit as st

from ledviz.errors import LedvizError
from ledviz.runqueue import Cancelled, Job, Stopped
from ledviz.serving import Server
from ledviz.settings import Settings
from ledviz.text import as_typed


def _secrets_table() -> dict | None:
    """The [ledviz] table of .streamlit/secrets.toml, or None when there is no such file or table."""
    try:
        table = st.secrets.get("ledviz")
    except Exception:  # noqa: BLE001 - no secrets.toml (Streamlit raises its own error type)
        return None
    return None if table is None else dict(table)


def app_settings() -> Settings:
    """The deployment settings; ConfigError (naming the setting) when one is unknown or bad."""
    return Settings.from_sources(secrets=_secrets_table())


@st.cache_resource(show_spinner=False, max_entries=4)
def _server(key: str, _settings: Settings) -> Server:
    return Server(_settings)


def server() -> Server:
    """The process's Server for the current settings (one queue for every session)."""
    settings = app_settings()
    return _server(repr(settings), settings)


def session_owner() -> str:
    """Who is asking: the Streamlit session's id (one per browser tab)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None and getattr(ctx, "session_id", None):
        return ctx.session_id
    return st.session_state.setdefault("running.owner", f"session-{id(st.session_state)}")


def waiting_text(job: Job, srv: Server, cancel: bool = True) -> str:
    """The line a waiting user reads (it changes only when the queue moves); `cancel`: the page
    offers a Cancel button for this job."""
    snap = srv.queue.snapshot()
    return (f"Waiting: you are number {job.place} in the queue ({snap['running']} running, "
            f"{snap['waiting']} waiting)." + (" Cancel leaves the queue." if cancel else ""))


def poll(job: Job, srv: Server, *, status: Any, stream: Any | None = None,
         stream_text: Callable[[Job], str | None] | None = None, cancel: bool = True) -> None:
    """Draw the job's state in `status` (an st.empty) until it ends: its place while it waits, a
    progress bar while it runs, and `stream_text(job)` (if any) in `stream`. A click elsewhere on
    the page interrupts this (Streamlit reruns the script); the next run polls again.

    Redraws only what changed: thirty waiting users polling a server that runs the model on the
    same cores must cost it next to nothing."""
    shown = streamed = None
    while not job.done:
        if job.waiting and job.place is not None:
            text = waiting_text(job, srv, cancel)
            if text != shown:
                status.info(text, icon=":material/hourglass_top:")
                shown = text
            time.sleep(0.5)
            continue
        message, fraction = job.progress
        text = f"Running: {as_typed(message)}… {job.run_seconds:.1f} s"  # (a load names its checkpoint)
        if text != shown:
            status.progress(min(1.0, max(0.0, fraction)), text=text)
            shown = text
        if stream is not None and stream_text is not None:
            piece = stream_text(job)
            if piece and piece != streamed:
                stream.markdown(piece)
                streamed = piece
        time.sleep(0.1)


def finished(job: Job) -> tuple[Any, BaseException | None]:
    """(handle, None) for a job that finished, (None, error) for one that failed or was cancelled."""
    if job.error is not None:
        return None, job.error
    return job.result, None


def show_cancelled_or_error(err: BaseException, show_error: Callable[[BaseException, str], None], what: str) -> None:
    """A run cancelled (before it started, or stopped with nothing to show) is news, not an error."""
    if isinstance(err, Cancelled):
        st.info("Cancelled before it started: the run left the queue.", icon=":material/cancel:")
    elif isinstance(err, Stopped):
        st.info(f"Cancelled while running: {as_typed(str(err))}.", icon=":material/cancel:")  # (Stopped's message is lower-case)
    else:
        show_error(err, what)


# -- a run whose browser tab closed stops ------------------------------------------------------

log = logging.getLogger("ledviz.app")


def _session_check() -> Callable[[str], bool] | None:
    """Streamlit's `Runtime.instance().is_active_session` (safe from any thread): False once the
    session's browser tab closed (its websocket is gone). None where there is no runtime (bare
    `python`, AppTest) or a Streamlit version without that method: then no run is watched and a
    run whose tab closed goes on to its end, as before."""
    try:
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return None
        check = getattr(Runtime.instance(), "is_active_session", None)
    except Exception:  # noqa: BLE001 - another Streamlit version's layout: do without
        return None
    return check if callable(check) else None


class SessionWatch:
    """Cancels (as the Cancel button does) each watched job whose session has been inactive for
    `grace` seconds, looking every `every` seconds on a thread of its own that ends when nothing is
    watched. The grace keeps a run through a network blip: Streamlit reconnects a dropped tab to
    the same session, which is active again."""

    def __init__(self, is_active: Callable[[str], bool], *, grace: float = 3.0, every: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.is_active, self.grace, self.every, self.clock = is_active, grace, every, clock
        self._lock = threading.Lock()
        self._jobs: dict[Job, list] = {}  # job -> [session id, when it was first seen inactive or None]
        self._thread: threading.Thread | None = None

    def watch(self, job: Job, session_id: str, start: bool = True) -> None:
        with self._lock:
            self._jobs[job] = [session_id, None]
            if start and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, name="ledviz-session-watch", daemon=True)
                self._thread.start()

    def watched(self) -> list[Job]:
        with self._lock:
            return list(self._jobs)

    def check(self) -> list[Job]:
        """One look: forget ended jobs, cancel those whose session is gone; returns the cancelled."""
        now, gone = self.clock(), []
        with self._lock:
            for job, seen in list(self._jobs.items()):
                if job.done:
                    del self._jobs[job]
                    continue
                try:
                    active = self.is_active(seen[0])
                except Exception:  # noqa: BLE001 - cannot tell: keep the run
                    active = True
                if active:
                    seen[1] = None
                elif seen[1] is None:
                    seen[1] = now
                elif now - seen[1] >= self.grace:
                    del self._jobs[job]
                    gone.append((job, seen[0]))
        for job, session_id in gone:
            job.cancel()
            log.warning("stopped run #%d (%s): its browser tab closed (session %s ended)",
                        job.number, job.label, session_id)
        return [job for job, _ in gone]

    def _loop(self) -> None:
        while True:
            time.sleep(self.every)
            self.check()
            with self._lock:
                if not self._jobs:
                    self._thread = None
                    return


@st.cache_resource(show_spinner=False)
def _session_watch(_check: Callable[[str], bool]) -> SessionWatch:
    return SessionWatch(_check)


def watch_session(job: Job) -> SessionWatch | None:
    """Stop `job` when the current session ends (its tab closed); None (not watched) where
    Streamlit cannot tell (see _session_check) or the script runs outside a session."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    check = _session_check()
    ctx = get_script_run_ctx()
    session_id = getattr(ctx, "session_id", None) if ctx is not None else None
    if check is None or not session_id:
        return None
    watch = _session_watch(check)
    watch.watch(job, session_id)
    return watch


# -- a page's job: session_state[f"{key}.job"] (running), f"{key}.result" (a handle), f"{key}.error" --

def start_job(key: str, submit: Callable[[], Job]) -> None:
    """A button's on_click: cancel the page's earlier job, then queue `submit()`'s; a refusal (full
    queue, no memory, bad input) is kept as the page's error."""
    ss = st.session_state
    old = ss.get(f"{key}.job")
    if old is not None:
        old.cancel()
    ss.pop(f"{key}.error", None)
    ss[f"{key}.job"] = None
    try:
        ss[f"{key}.job"] = job = submit()
    except LedvizError as err:
        ss[f"{key}.error"] = err
        return
    watch_session(job)  # closing the tab stops the run: it would burn the server's cores for nobody


def cancel_job(key: str) -> None:
    """A Cancel button's on_click: the page's job leaves the queue, or is asked to stop."""
    job = st.session_state.get(f"{key}.job")
    if job is not None:
        job.cancel()


def job_running(key: str) -> bool:
    job = st.session_state.get(f"{key}.job")
    return job is not None and not job.done


def follow_job(key: str, stream_text: Callable[[Job], str | None] | None = None) -> None:
    """Where the page's job is: poll it (place, progress, `stream_text`) until it ends, keep its
    handle or error, and rerun the page (buttons enabled again, the result's views drawn)."""
    ss = st.session_state
    job = ss.get(f"{key}.job")
    if job is None:
        return
    poll(job, server(), status=st.empty(), stream=st.empty() if stream_text else None, stream_text=stream_text)
    ss[f"{key}.job"] = None
    handle, err = finished(job)
    if err is not None:
        ss[f"{key}.error"] = err
    else:
        ss[f"{key}.result"] = handle
    st.rerun()


def kept(key: str, srv: Server | None = None) -> Any:
    """The page's kept result (session_state[f"{key}.result"] holds a handle into the server's
    ResultStore); None when there is none. When the server dropped it to free memory, says so."""
    handle = st.session_state.get(f"{key}.result")
    if handle is None:
        return None
    srv = srv or server()
    value = srv.results.get(handle)
    if value is None:
        why = srv.results.why_dropped(handle) or "the server was restarted"
        st.info(f"Your earlier result is no longer kept ({why}): run again to see it.", icon=":material/history:")
    return value
