"""Where a study's documents are run: this process, a small process pool, or a Ray cluster.

Every engine hands batches of (record, pending settings) to an `Evaluator` (which loads the model
once per worker) and gives the rows of each finished batch to `write`, in the order batches
finish. The rows do not depend on the engine: every worker runs the same code, with the same
seed and the same number of torch threads.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence, TextIO

from ..errors import InputError
from .corpus import Record
from .evaluate import Evaluator
from .spec import StudySpec

ENGINES = ("local", "ray")
Task = tuple[Record, list[int]]  # a document and the settings it still needs
Write = Callable[[list[dict[str, Any]]], None]


class Progress:
    """A progress line on stderr: documents done of the total, rate and time left (ETA)."""

    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None, enabled: bool = True,
                 label: str = "study"):
        self.total, self.done, self.start_done = total, done, done
        self.stream = stream or sys.stderr
        self.enabled, self.label = enabled, label
        self.t0 = time.monotonic()
        self.last = 0.0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.show(force=True)

    def line(self) -> str:
        new = self.done - self.start_done
        elapsed = time.monotonic() - self.t0
        rate = new / elapsed if elapsed > 0 and new else 0.0
        left = self.total - self.done
        eta = _duration(left / rate) if rate else "?"
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        return (f"{self.label}: [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} documents, "
                f"{rate:.2f} doc/s, elapsed {_duration(elapsed)}, ETA {eta}")

    def show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and not self.tty and now - self.last < 10 and self.done < self.total:
            return  # a log file gets a line every 10 s, a terminal every update
        self.last = now
        end = "" if self.tty and self.done < self.total else "\n"
        self.stream.write(("\r" if self.tty else "") + self.line() + end)
        self.stream.flush()

    def update(self, docs: int) -> None:
        self.done += docs
        self.show()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def batches(tasks: Sequence[Task], size: int) -> list[list[Task]]:
    return [list(tasks[i: i + size]) for i in range(0, len(tasks), size)]


def _rows_of(evaluator: Evaluator, batch: Sequence[Task]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for record, pending in batch:
        rows.extend(evaluator.rows(record, pending))
    return rows


# ---------------------------------------------------------------------------------------------
# local: this process, or a process pool
# ---------------------------------------------------------------------------------------------

_WORKER: Evaluator | None = None


def _init_worker(spec: dict, weights: str, threads: int | None) -> None:
    global _WORKER
    _WORKER = Evaluator(StudySpec.from_dict(spec), expected_weights=weights, threads=threads)


def _pool_batch(items: list[tuple[str, list[int]]]) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return _rows_of(_WORKER, [(Record.from_json(r), p) for r, p in items])


def run_local(spec: StudySpec, tasks: Sequence[Task], write: Write, progress: Progress, *, weights: str,
              workers: int = 1, batch_size: int = 1, threads: int | None = None, loaded=None) -> None:
    """workers=1: in this process (reusing `loaded`); more: a pool of processes, each loading the model once."""
    if workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        import torch

        before = torch.get_num_threads()  # this process's setting, put back afterwards
        try:
            evaluator = Evaluator(spec, expected_weights=weights, threads=threads, loaded=loaded)
            for batch in batches(tasks, batch_size):
                write(_rows_of(evaluator, batch))
                progress.update(len(batch))
        finally:
            torch.set_num_threads(before)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(spec.to_dict(), weights, threads)) as pool:
        queue = batches(tasks, batch_size)
        running: dict[Any, int] = {}
        try:
            while queue or running:
                while queue and len(running) < 2 * workers:  # a little work ahead, not the whole corpus
                    batch = queue.pop(0)
                    running[pool.submit(_pool_batch, [(r.to_json(), p) for r, p in batch])] = len(batch)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    n = running.pop(fut)
                    write(fut.result())
                    progress.update(n)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise


# ---------------------------------------------------------------------------------------------
# Ray Data: an actor pool, each actor loading the model once
# ---------------------------------------------------------------------------------------------

class RayStudyWorker:
    """The callable class Ray Data runs in each actor: batch of {doc, pending} -> batch of {row} (JSON)."""

    def __init__(self, spec: dict, weights: str, threads: int | None, device: str | None = None):
        self.evaluator = Evaluator(StudySpec.from_dict(spec), expected_weights=weights, threads=threads,
                                   device=device)

    def __call__(self, batch: dict) -> dict:
        tasks = [(Record.from_json(d), json.loads(p)) for d, p in zip(batch["doc"], batch["pending"])]
        return {"row": [json.dumps(r) for r in _rows_of(self.evaluator, tasks)]}


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--engine ray needs Ray Data: pip install 'ray[data]' (or pip install 'ledviz[cluster]')"
                         ) from None
    return ray


def run_ray(spec: StudySpec, tasks: Sequence[Task], write: Write, progress: Progress, *, weights: str,
            workers: int = 2, batch_size: int = 1, threads: int | None = None, address: str | None = None,
            gpus_per_worker: float = 0, cpus_per_worker: float = 1) -> None:
    """Run on Ray Data: `workers` actors (each loads the model once) over batches of documents.

    A Ray already initialized in this process is used as it is; otherwise ray.init(address)
    (None: a local cluster, stopped afterwards). The driver writes each finished batch."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        for name in ("LEDVIZ_MODEL", "HF_HUB_OFFLINE", "HF_HOME"):
            if name in os.environ:
                env[name] = os.environ[name]
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False,
                     logging_level="ERROR", log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - a cluster that cannot be joined is bad input
            raise InputError(f"could not start or join Ray at {address or 'a local cluster'}: {e}") from None
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        items = [{"doc": r.to_json(), "pending": json.dumps(p)} for r, p in tasks]
        ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
        device = "cuda" if gpus_per_worker else None
        ds = ds.map_batches(RayStudyWorker, fn_constructor_kwargs=dict(spec=spec.to_dict(), weights=weights,
                                                                       threads=threads, device=device),
                            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus_per_worker or None,
                            num_cpus=cpus_per_worker, batch_format="default")
        for out in ds.iter_batches(batch_size=None, batch_format="default"):
            rows = [json.loads(s) for s in out["row"]]
            if rows:
                write(rows)
                progress.update(len({r["doc_index"] for r in rows}))
    finally:
        if started:
            ray.shutdown()
