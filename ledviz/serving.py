"""A server's model runs for many users: the settings, the shared queue, the memory guard and the
kept results in one object, so an app keeps exactly one per process.

    server = Server(Settings.from_sources())
    job = server.submit_run(owner=session_id, slot="summarize", loaded=loaded, doc=doc, global_mask=mask)
    job.place            # 1, 2, ... while it waits; None once it runs
    job.pieces           # the tokens streamed so far; job.progress: (message, fraction)
    job.wait(); handle = job.outcome()   # a Handle into server.results (or the run's error)
    result = server.results.get(handle)  # None if dropped to free memory (server.results.why_dropped)

Each run is checked twice against the memory guard: when submitted (so a run that can never fit
is refused at once) and when a worker starts it (the memory free right then). No Streamlit here.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import torch

from . import pipeline
from .device import choose_precision
from .errors import InputError
from .memory import Handle, MemoryGuard, ResultStore, RunEstimate, estimate_run, memory_budget, run_nbytes
from .pipeline import Document, LoadedModel
from .runqueue import Job, RunQueue
from .runs import RunJob
from .settings import Settings


class Server:
    """The settings, RunQueue, MemoryGuard and ResultStore of one process (see the module doc)."""

    def __init__(self, settings: Settings | None = None, *, budget: int | None = None):
        self.settings = settings or Settings()
        s = self.settings
        self.guard = MemoryGuard(budget if budget is not None else memory_budget(s.memory_budget_mb), s.workers)
        self.results = ResultStore(self.guard.kept_bytes, per_owner=s.results_per_user)
        self.queue = RunQueue(workers=s.workers, max_waiting=s.queue_size)

    def close(self) -> None:
        self.queue.close()

    # -- input limits -----------------------------------------------------------------------------
    def check_document(self, text: str) -> None:
        """InputError when the text is longer than the server's max_document_chars."""
        limit = self.settings.max_document_chars
        if limit and text is not None and len(text) > limit:
            raise InputError(f"the document has {len(text):,} characters; this server reads at most {limit:,}: "
                             "shorten it, or paste the part you want read")

    def max_tokens(self, loaded: LoadedModel) -> int:
        """The most tokens a document may have here: the model's limit, or the server's if lower."""
        limit = self.settings.max_document_tokens
        return min(loaded.max_tokens, limit) if limit else loaded.max_tokens

    # -- runs -------------------------------------------------------------------------------------
    def submit(self, fn: Callable[[Job], Any], *, owner: Hashable, slot: str, estimate: RunEstimate,
               nbytes: Callable[[Any], int] = run_nbytes, label: str = "", **refusal: Any) -> Job:
        """Queue `fn(job) -> result`, refused at once (MemoryRefused) if `estimate` cannot fit and
        (QueueFull) if the queue is full. The job's outcome is a Handle into `self.results`.
        `refusal`: MemoryGuard.check's can_shrink and offers (what the refusal suggests)."""
        self.guard.check(estimate, **refusal)

        def work(job: Job) -> Handle:
            torch.set_num_threads(self.settings.threads_per_run)  # (process-wide; every run sets the same)
            job.report("checking memory", 0.0)
            self.guard.check(estimate, **refusal)  # with the memory free now
            result = fn(job)
            return self.results.put(owner, slot, result, nbytes(result))

        return self.queue.submit(work, owner=owner, label=label or slot)

    def submit_load(self, load: Callable[[Job], Any], *, owner: Hashable, what: str, nbytes: int) -> Job:
        """Queue loading a model (`load(job) -> LoadedModel`, reporting progress on the job) in the
        same queue as the runs, so loads wait their turn and never run many at once; refused at
        once (MemoryRefused, MemoryGuard.check_load) when its `nbytes` of weights would not fit,
        and checked again when a worker takes it. The job's outcome is the loaded model itself."""
        self.guard.check_load(what, nbytes)

        def work(job: Job) -> Any:
            torch.set_num_threads(self.settings.threads_per_run)
            job.report("checking memory", 0.0)
            self.guard.check_load(what, nbytes)  # with the memory free now
            return load(job)

        return self.queue.submit(work, owner=owner, label=f"load {what}")

    def submit_run(self, *, owner: Hashable, slot: str, loaded: LoadedModel, doc: Document,
                   global_mask: torch.Tensor, settings: dict | None = None, **run_kwargs: Any) -> Job:
        """Queue one `pipeline.run(loaded, doc, global_mask, **run_kwargs)` as a `runs.RunJob` (the
        one place tokens are streamed): `job.run` is that RunJob, its streamed tokens also in
        `job.pieces`, its progress in `job.progress`; a Cancel sets its stop event. `settings` are
        added to the result's settings (with the RunJob's unique run_id)."""
        est = self.estimate(loaded, doc, global_mask, **run_kwargs)
        run = RunJob(loaded, doc, global_mask, settings=settings, **run_kwargs)

        def fn(job: Job) -> pipeline.RunResult:
            run.run(stop=job.stop, report=job.report)
            if run.error is not None:
                raise run.error
            return run.result

        job = self.submit(fn, owner=owner, slot=slot, estimate=est)
        job.run, job.pieces = run, run.pieces
        return job

    def submit_comparison(self, *, owner: Hashable, slot: str, loaded: LoadedModel, doc: Document,
                          settings: list, max_new_tokens: int, generate: bool = True,
                          wrap: Callable[[Any], Any] = lambda comp: comp, **compare_kwargs: Any) -> Job:
        """Queue `compare.compare_settings(loaded, doc, settings, ...)`; the kept value is
        `wrap(comparison)`. Estimated as every setting's run kept at once, one running at a time."""
        from . import compare

        est = self.comparison_estimate(loaded, doc, settings, max_new_tokens=max_new_tokens, generate=generate,
                                       **compare_kwargs)  # bad settings fail here, at once

        def fn(job: Job) -> Any:
            return wrap(compare.compare_settings(loaded, doc, settings, max_new_tokens=max_new_tokens,
                                                 generate=generate, progress=job.report, stop_event=job.stop,
                                                 **compare_kwargs))

        offers = ["compare fewer settings"] + (["compare without generating outputs (encoder only)"] if generate else [])
        return self.submit(fn, owner=owner, slot=slot, estimate=est, nbytes=comparison_nbytes, offers=offers,
                           can_shrink=dict(layers=False, dtype=False, tokens=generate))

    def comparison_estimate(self, loaded: LoadedModel, doc: Document, settings: list, *, max_new_tokens: int,
                            generate: bool = True, **compare_kwargs: Any) -> RunEstimate:
        """A comparison's memory: every setting's run kept together, one running at a time
        (RunEstimate.together); encoder only when not generating."""
        from . import compare

        masks = [compare.Setting.of(s).mask(doc) for s in settings]
        return RunEstimate.together([self.estimate(loaded, doc, m, max_new_tokens=max_new_tokens if generate else 0,
                                                   **compare_kwargs) for m in masks])

    def estimate(self, loaded: LoadedModel, doc: Document, global_mask: torch.Tensor | None, *,
                 max_new_tokens: int = 64, attention_dtype: torch.dtype = torch.float16,
                 attention_layers=None, num_beams: int = 1, precision: str = "float32",
                 min_new_tokens: int | None = None, num_return_sequences: int = 1, **_: Any) -> RunEstimate:
        """estimate_run for a run of `loaded` on `doc` with this mask and these run settings: in the
        precision the run will use here (device.choose_precision), with the model's copy in that
        precision and the decoder's packed weights (fastdecode) when they are still to be made."""
        from .fastdecode import has_pack

        used, _note = choose_precision(precision)
        n_global = int(global_mask.sum()) if global_mask is not None else 1
        has_copy = loaded.has_model_in(used)
        return estimate_run(loaded.config, doc.n_tokens, n_global=n_global, max_new_tokens=max_new_tokens,
                            attention_dtype=attention_dtype, attention_layers=attention_layers,
                            num_beams=num_beams, precision=used, weights_copy=not has_copy,
                            decoder_pack=not (has_copy and has_pack(loaded.model_in(used))),
                            min_new_tokens=min_new_tokens, num_return_sequences=num_return_sequences)


def comparison_nbytes(value: Any) -> int:
    """Bytes a kept comparison holds (each setting's run, or its encoder attention alone); `value`
    may be a (fingerprint, Comparison) pair."""
    comp = value[-1] if isinstance(value, tuple) else value
    total = 0
    for item in comp.results:
        total += run_nbytes(item.run) if item.run is not None else sum(sp.nbytes for sp in item.layers.values())
    return total
