"""The shared run queue (ledviz.runqueue) with fake jobs: order, places, cancel, bounds, errors."""

from __future__ import annotations

import random
import threading
import time

import pytest

from ledviz.errors import InputError
from ledviz.runqueue import CANCELLED, DONE, FAILED, Cancelled, QueueFull, RunQueue


def blocker():
    """A job that runs until its gate opens (or it is stopped), recording that it started."""
    gate, started = threading.Event(), threading.Event()

    def fn(job):
        started.set()
        while not gate.wait(0.01):
            if job.stop.is_set():
                return "stopped"
        return "opened"

    return fn, gate, started


@pytest.fixture
def queue():
    q = RunQueue(workers=1, max_waiting=5)
    yield q
    q.close()


def test_fifo_order_and_results(queue):
    order = []
    jobs = [queue.submit(lambda job, n=n: order.append(n) or n * n, owner=f"u{n}") for n in range(5)]
    for job in jobs:
        assert job.wait(5)
    assert order == [0, 1, 2, 3, 4]
    assert [j.outcome() for j in jobs] == [0, 1, 4, 9, 16]
    assert all(j.state == DONE for j in jobs)


def test_places_count_down_as_jobs_ahead_finish(queue):
    fn, gate, started = blocker()
    first = queue.submit(fn, owner="a")
    assert started.wait(5)
    gates = []
    waiting = []
    for n in range(3):
        f, g, _ = blocker()
        gates.append(g)
        waiting.append(queue.submit(f, owner=f"w{n}"))
    assert first.place is None and first.running
    assert [j.place for j in waiting] == [1, 2, 3]
    gate.set()
    assert first.wait(5)
    # the first waiting job now runs; the others moved up
    deadline = time.time() + 5
    while waiting[0].place is not None and time.time() < deadline:
        time.sleep(0.01)
    assert waiting[0].place is None and [j.place for j in waiting[1:]] == [1, 2]
    for g in gates:
        g.set()
    for j in waiting:
        assert j.wait(5)
    assert all(j.place is None for j in waiting)


def test_cancel_waiting_removes_it_and_moves_the_rest_up(queue):
    fn, gate, started = blocker()
    queue.submit(fn, owner="a")
    assert started.wait(5)
    ran = []
    b = queue.submit(lambda job: ran.append("b"), owner="b")
    c = queue.submit(lambda job: ran.append("c"), owner="c")
    assert (b.place, c.place) == (1, 2)
    b.cancel()
    assert b.done and b.state == CANCELLED and b.place is None
    assert isinstance(b.error, Cancelled)
    assert c.place == 1 and queue.waiting_count == 1
    gate.set()
    assert c.wait(5)
    assert ran == ["c"]  # the cancelled job never ran


def test_cancel_running_sets_its_stop_event(queue):
    fn, gate, started = blocker()
    job = queue.submit(fn, owner="a")
    assert started.wait(5)
    job.cancel()
    assert job.wait(5)
    assert job.outcome() == "stopped" and job.cancelled


def test_bounded_length_refuses_with_a_message(queue):
    fn, gate, started = blocker()
    queue.submit(fn)
    assert started.wait(5)
    waiting = [queue.submit(lambda job: None) for _ in range(5)]
    with pytest.raises(QueueFull, match="busy.*5 runs are already waiting"):
        queue.submit(lambda job: None)
    waiting[0].cancel()  # room again
    queue.submit(lambda job: None)
    gate.set()


def test_errors_go_to_the_submitter_and_the_worker_lives_on(queue):
    def boom(job):
        raise ValueError("bad input")

    bad = queue.submit(boom)
    good = queue.submit(lambda job: "fine")
    assert bad.wait(5) and good.wait(5)
    assert bad.state == FAILED and isinstance(bad.error, ValueError)
    with pytest.raises(ValueError, match="bad input"):
        bad.outcome()
    assert good.outcome() == "fine"


def test_progress_reports_reach_the_submitter(queue):
    fn, gate, started = blocker()

    def job_fn(job):
        job.report("encoding", 0.5)
        return fn(job)

    job = queue.submit(job_fn)
    assert started.wait(5)
    assert job.progress == ("encoding", 0.5)
    gate.set()
    assert job.wait(5)


def test_one_owner_runs_in_order_with_several_workers():
    q = RunQueue(workers=3, max_waiting=50)
    try:
        log = []
        lock = threading.Lock()

        def step(owner, n):
            def fn(job):
                time.sleep(random.uniform(0, 0.01))
                with lock:
                    log.append((owner, n))
                return n
            return fn

        jobs = [q.submit(step(o, n), owner=o) for n in range(6) for o in ("x", "y", "z")]
        for j in jobs:
            assert j.wait(10)
        for o in ("x", "y", "z"):
            assert [n for who, n in log if who == o] == list(range(6))
    finally:
        q.close()


def test_thirty_concurrent_submitters_all_get_their_results_in_order():
    q = RunQueue(workers=2, max_waiting=64)
    results: dict[int, list] = {}
    errors = []

    def user(u):
        try:
            mine = []
            for k in range(3):
                job = q.submit(lambda job, u=u, k=k: (time.sleep(0.001), (u, k))[1], owner=u)
                assert job.place is None or job.place >= 1
                assert job.wait(30)
                mine.append(job.outcome())
            results[u] = mine
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=user, args=(u,)) for u in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    q.close()
    assert errors == []
    assert results == {u: [(u, k) for k in range(3)] for u in range(30)}
    assert q.completed == 90


def test_bad_sizes_are_refused():
    with pytest.raises(InputError, match="workers"):
        RunQueue(workers=0)
    with pytest.raises(InputError, match="max_waiting"):
        RunQueue(max_waiting=-1)


def test_no_waiting_room_still_runs_on_a_free_worker():
    q = RunQueue(workers=1, max_waiting=0)
    try:
        fn, gate, started = blocker()
        job = q.submit(fn)
        assert started.wait(5)
        with pytest.raises(QueueFull):
            q.submit(lambda job: None)
        gate.set()
        assert job.wait(5)
        assert q.submit(lambda job: "ran").wait(5)
    finally:
        q.close()
