"""A run whose browser tab closed stops (pages.running.SessionWatch): its Streamlit session is
looked up (Runtime.is_active_session, here a fake) and, inactive for the grace time, the job is
cancelled as the Cancel button does; a network blip (inactive, then active again) keeps it."""

from __future__ import annotations

import threading

import pytest

from ledviz.runqueue import RunQueue


def _spin(job):
    """A run that goes on until it is asked to stop (as pipeline.run does with its stop_event)."""
    while not job.stop.wait(0.01):
        pass
    raise RuntimeError("stopped")


@pytest.fixture
def queue():
    q = RunQueue(workers=1, max_waiting=4)
    yield q
    q.close()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_run_whose_session_ended_is_cancelled_after_the_grace(queue):
    from pages.running import SessionWatch

    active = {"tab": True}
    clock = Clock()
    watch = SessionWatch(lambda sid: active[sid], grace=3.0, clock=clock)
    running, waiting = queue.submit(_spin, owner="tab"), queue.submit(_spin, owner="tab")
    watch.watch(running, "tab", start=False)
    watch.watch(waiting, "tab", start=False)
    assert watch.check() == [] and not running.cancelled
    active["tab"] = False  # the tab closed
    assert watch.check() == []
    clock.now = 2.0
    assert watch.check() == [] and not running.cancelled  # (a reconnect may still come)
    clock.now = 3.5
    assert set(watch.check()) == {running, waiting}
    assert running.wait(5) and waiting.wait(5)
    assert running.cancelled and waiting.cancelled and watch.watched() == []


def test_a_network_blip_keeps_the_run(queue):
    from pages.running import SessionWatch

    active = {"tab": False}
    clock = Clock()
    watch = SessionWatch(lambda sid: active[sid], grace=3.0, clock=clock)
    job = queue.submit(_spin, owner="tab")
    watch.watch(job, "tab", start=False)
    watch.check()
    clock.now = 2.0
    active["tab"] = True  # reconnected to the same session
    watch.check()
    active["tab"] = False
    clock.now = 4.0
    assert watch.check() == []  # the grace counts from the latest drop
    clock.now = 6.9
    assert watch.check() == [] and not job.cancelled
    job.cancel()
    job.wait(5)
    assert watch.check() == [] and watch.watched() == []  # an ended job is forgotten


def test_the_watch_thread_stops_a_run_and_then_ends(queue):
    from pages.running import SessionWatch

    watch = SessionWatch(lambda sid: False, grace=0.1, every=0.05)
    job = queue.submit(_spin, owner="gone")
    watch.watch(job, "gone")
    assert job.wait(5) and job.cancelled
    for _ in range(100):
        if watch._thread is None:
            break
        threading.Event().wait(0.05)
    assert watch._thread is None  # nothing watched: no thread left polling


def test_a_page_run_is_watched_for_its_session(monkeypatch):
    """start_job (every page's Run button) hands its job to the watch, with the session's id."""
    from streamlit.testing.v1 import AppTest

    import pages.running as running

    seen = []
    watch = running.SessionWatch(lambda sid: seen.append(sid) or False, grace=0.1, every=0.05)
    monkeypatch.setattr(running, "_session_check", lambda: (lambda sid: False))
    monkeypatch.setattr(running, "_session_watch", lambda check: watch)
    script = """
import streamlit as st
from ledviz.runqueue import RunQueue
from pages.running import start_job

def spin(job):
    while not job.stop.wait(0.01):
        pass
    raise RuntimeError("stopped")

if "q" not in st.session_state:
    st.session_state.q = RunQueue(workers=1, max_waiting=4)
    start_job("k", lambda: st.session_state.q.submit(spin, owner="me"))
"""
    at = AppTest.from_string(script, default_timeout=30).run()
    assert not at.exception
    job = at.session_state["k.job"]
    assert job.wait(5) and job.cancelled  # its session (here: never active) ended
    assert seen and all(isinstance(s, str) and s for s in seen)
    at.session_state.q.close()


def test_without_the_runtime_api_nothing_is_watched(monkeypatch):
    """A Streamlit without Runtime.is_active_session (or no runtime: bare python): runs go on."""
    import pages.running as running
    from streamlit.runtime import Runtime

    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: False))
    assert running._session_check() is None

    class Old:  # a runtime of a version that lacks the method
        pass

    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: Old()))
    assert running._session_check() is None
