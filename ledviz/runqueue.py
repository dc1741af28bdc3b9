"""One bounded queue of model runs shared by every user of a server.

A model run takes the machine's cores for seconds to minutes; thirty of them at once all finish
together, late, and each holds its memory the whole time. The queue runs at most `workers` jobs
at a time, in the order they came, and keeps at most `max_waiting` waiting: a full queue refuses
a new job at once (`QueueFull`, with a message a user can act on) instead of letting it pile up.

A job is any callable `fn(job) -> result`; it reads `job.stop` (a threading.Event set by
`cancel()`, which `ledviz.pipeline.run` takes as its stop_event) and may report progress with
`job.report(message, fraction)`. A waiting job knows its place (`job.place`: 1 = next to run),
a cancelled waiting job leaves the queue, a cancelled running one has its stop event set and
ends when the callable notices. Whatever the callable raises is kept on the job (`job.error`)
for its submitter; the worker goes on with the next job. Jobs of one owner run one at a time, in
the order they were submitted, so each user's results arrive in order even with several workers.

No Streamlit here: the app keeps one RunQueue per process (st.cache_resource) and polls jobs.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any, Callable

from .errors import InputError

WAITING, RUNNING, DONE, FAILED, CANCELLED = "waiting", "running", "done", "failed", "cancelled"


class QueueFull(InputError):
    """The queue holds its maximum of waiting jobs: the caller should try again later."""


class Cancelled(InputError):
    """The job was cancelled before it started."""


class Stopped(InputError):
    """The job was cancelled while it ran, and stopped with no result (a job whose partial result
    is worth showing, such as a summary cut short, returns it instead)."""


class Job:
    """One submitted callable: its state, place, progress and outcome. Made by RunQueue.submit."""

    def __init__(self, queue: "RunQueue", fn: Callable[["Job"], Any], owner: Any, label: str, number: int):
        self._queue = queue
        self.fn = fn
        self.owner = owner
        self.label = label
        self.number = number  # submission order, process-wide
        self.stop = threading.Event()
        self.state = WAITING
        self.result: Any = None
        self.error: BaseException | None = None
        self.progress: tuple[str, float] = ("waiting", 0.0)
        self.submitted = time.perf_counter()
        self.started: float | None = None
        self.finished: float | None = None
        self._done = threading.Event()

    # -- what the submitter reads ---------------------------------------------------------------
    @property
    def place(self) -> int | None:
        """1-based place among the waiting jobs (1 = the next to run); None once it runs or ended."""
        return self._queue.place(self)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def waiting(self) -> bool:
        return self.state == WAITING

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def cancelled(self) -> bool:
        return self.stop.is_set()

    @property
    def wait_seconds(self) -> float:
        """Time spent waiting for a worker (so far, if still waiting)."""
        return (self.started or time.perf_counter()) - self.submitted

    @property
    def run_seconds(self) -> float:
        """Time spent running (so far, if running; 0 if it never started)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ended; True if it did within `timeout`."""
        return self._done.wait(timeout)

    def outcome(self) -> Any:
        """The result of a finished job, or its error raised again."""
        if not self.done:
            raise RuntimeError("the job has not finished: wait() for it first")
        if self.error is not None:
            raise self.error
        return self.result

    def cancel(self) -> None:
        """Leave the queue (waiting) or ask the callable to stop (running: sets `stop`)."""
        self._queue.cancel(self)

    # -- what the callable uses -----------------------------------------------------------------
    def report(self, message: str, fraction: float) -> None:
        """Progress for the submitter to show (a pipeline.run progress callback fits)."""
        self.progress = (message, fraction)

    def __repr__(self) -> str:
        return f"Job(#{self.number} {self.label!r} owner={self.owner!r} {self.state})"


class RunQueue:
    """A FIFO of jobs run by `workers` threads; at most `max_waiting` jobs wait (see the module doc)."""

    def __init__(self, workers: int = 1, max_waiting: int = 32, name: str = "ledviz-run"):
        if not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be a whole number of at least 1, got {workers!r}")
        if not isinstance(max_waiting, int) or max_waiting < 0:
            raise InputError(f"max_waiting must be a whole number of at least 0, got {max_waiting!r}")
        self.workers = workers
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._counter = itertools.count(1)
        self._closed = False
        self.completed = 0
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)]
        for t in self._threads:
            t.start()

    # -- submitting -------------------------------------------------------------------------------
    def submit(self, fn: Callable[[Job], Any], *, owner: Any = None, label: str = "") -> Job:
        """Queue `fn`; returns its Job at once. QueueFull when `max_waiting` jobs already wait (jobs
        an idle worker is about to take do not count: max_waiting=0 runs a job only on a free worker).
        `owner` (hashable, e.g. a session id): that owner's jobs run one at a time, in order."""
        with self._cond:
            if self._closed:
                raise InputError("the run queue is shut down: restart the app")
            free = max(0, self.workers - len(self._running))  # workers about to take a waiting job
            if len(self._waiting) >= self.max_waiting + free:
                raise QueueFull(
                    f"the server is busy: {len(self._waiting)} runs are already waiting (the most it queues) "
                    f"and {len(self._running)} running. Try again in a minute.")
            job = Job(self, fn, owner, label, next(self._counter))
            self._waiting.append(job)
            self._cond.notify_all()
            return job

    def place(self, job: Job) -> int | None:
        """1-based place of a waiting job in the line (1 = next); None if it is not waiting."""
        with self._cond:
            if job.state != WAITING:
                return None
            ahead = 0
            for other in self._waiting:
                if other is job:
                    return ahead + 1
                ahead += 1
            return None

    def cancel(self, job: Job) -> None:
        """Remove a waiting job (it ends as cancelled) or set a running job's stop event."""
        with self._cond:
            job.stop.set()
            if job.state == WAITING:
                try:
                    self._waiting.remove(job)
                except ValueError:
                    pass
                job.state = CANCELLED
                job.error = Cancelled("the run was cancelled before it started")
                job.finished = time.perf_counter()
                job._done.set()
                self._cond.notify_all()

    # -- looking at it ----------------------------------------------------------------------------
    @property
    def waiting_count(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def running_count(self) -> int:
        with self._cond:
            return len(self._running)

    def waiting_jobs(self) -> list[Job]:
        """The waiting jobs, next first (a copy)."""
        with self._cond:
            return list(self._waiting)

    def snapshot(self) -> dict[str, Any]:
        """Counts for a status line: waiting, running, workers, max_waiting, completed."""
        with self._cond:
            return dict(waiting=len(self._waiting), running=len(self._running), workers=self.workers,
                        max_waiting=self.max_waiting, completed=self.completed)

    def close(self, timeout: float | None = 5.0) -> None:
        """Cancel what waits, ask running jobs to stop, and end the workers."""
        with self._cond:
            self._closed = True
            pending = list(self._waiting)
            running = list(self._running)
        for job in pending:
            self.cancel(job)
        for job in running:
            job.stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    # -- the workers ------------------------------------------------------------------------------
    def _next(self) -> Job | None:
        """The first waiting job whose owner has nothing running (called with the lock held)."""
        busy = {j.owner for j in self._running if j.owner is not None}
        for job in self._waiting:
            if job.owner is None or job.owner not in busy:
                return job
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._closed:
                    job = self._next()
                    if job is not None:
                        break
                    self._cond.wait()
                if job is None:
                    return
                self._waiting.remove(job)
                self._running.append(job)
                job.state = RUNNING
                job.started = time.perf_counter()
                job.progress = ("starting", 0.0)
            try:
                job.result = job.fn(job)
                state = DONE
            except BaseException as err:  # noqa: BLE001 - handed to the submitter; the worker lives on
                job.error = err
                state = FAILED
            with self._cond:
                self._running.remove(job)
                job.state = state
                job.finished = time.perf_counter()
                self.completed += 1
                job._done.set()
                self._cond.notify_all()
