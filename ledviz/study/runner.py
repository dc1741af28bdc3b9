"""`run_study`: a corpus x settings grid written into a results folder, resumable."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TextIO

from ..errors import InputError
from ..text import count
from ..pipeline import load_model
from .corpus import read_corpus
from .engines import ENGINES, Progress, run_local, run_ray
from .evaluate import rouge_scorer, weights_hash
from .spec import StudySpec, study_identity
from .store import ResultsFolder, load_average, machine, new_manifest, package_versions


@dataclass
class RunSummary:
    """What one call of run_study did."""

    path: Path
    study_id: str
    documents: int  # in the corpus
    pairs: int  # (document, setting) pairs in the study
    already_done: int  # pairs found in the folder before this run
    written: int  # rows this run wrote
    truncated: int  # rows of documents cut to the model's limit (this run)
    errors: int  # rows of settings that could not run on their document (this run)
    skipped: list[str] = field(default_factory=list)  # corpus lines left out (on_error="skip")
    seconds: float = 0.0

    def text(self) -> str:
        lines = [f"study {self.study_id} in {self.path}: {self.already_done + self.written} of {self.pairs} "
                 f"(document, setting) pairs done ({self.already_done} before this run, {self.written} now), "
                 f"{self.seconds:.1f} s"]
        if self.truncated:
            lines.append(f"documents past the model's limit, cut to fit: {count(self.truncated, 'row')} "
                         "(column truncated_tokens)")
        if self.errors:
            lines.append(f"settings that could not run on their document: {count(self.errors, 'row')} (column error)")
        if self.skipped:
            lines.append(f"corpus lines skipped: {count(len(self.skipped), 'line')}: " + "; ".join(self.skipped[:5])
                         + ("; …" if len(self.skipped) > 5 else ""))
        return "\n".join(lines)


def run_study(
    spec: StudySpec | Mapping[str, Any],
    out: str | os.PathLike,
    *,
    engine: str = "local",
    workers: int = 1,
    batch_size: int = 1,
    threads: int | None = 1,
    address: str | None = None,
    gpus_per_worker: float = 0,
    progress: bool = True,
    stream: TextIO | None = None,
) -> RunSummary:
    """Run (or resume) the study `spec` into the folder `out` and return what was done.

    engine "local": in this process (workers=1) or a pool of `workers` processes; "ray": Ray
    Data with `workers` actors (address joins a running cluster). batch_size: documents per
    task and per part file (a kill loses at most the batches in flight). threads: torch threads
    per worker (default 1: rows are identical across engines and worker counts only with equal threads; None: torch's default). Bad input raises InputError before any document runs.
    """
    t0 = time.perf_counter()
    spec = spec if isinstance(spec, StudySpec) else StudySpec.from_dict(spec)
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}: use local or ray")
    if batch_size < 1 or workers < 1:
        raise InputError("batch_size and workers must be at least 1")
    if gpus_per_worker and engine != "ray":
        raise InputError("--gpus-per-worker is for --engine ray")
    if address and engine != "ray":
        raise InputError("--address joins a Ray cluster: use it with --engine ray")
    corpus = read_corpus(spec.corpus, task=spec.task, text_column=spec.text_column, id_column=spec.id_column,
                         on_error=spec.on_error, limit=spec.limit)
    rouge_scorer()  # a missing package shows now, not in a worker
    loaded = load_model(spec.model)
    weights = weights_hash(loaded)
    identity = study_identity(spec, corpus.fingerprint, weights)
    cfg = loaded.config
    model = dict(name=loaded.name, source=loaded.source, weights_sha256=weights, max_tokens=loaded.max_tokens,
                 encoder_layers=cfg.encoder_layers, heads=cfg.encoder_attention_heads,
                 attention_windows=list(cfg.attention_windows()), d_model=cfg.d_model)
    run_info = dict(engine=engine, workers=workers, batch_size=batch_size, threads=threads, address=address,
                    gpus_per_worker=gpus_per_worker, machine=machine(),
                    packages=package_versions(*(["ray"] if engine == "ray" else [])))
    manifest = new_manifest(spec.to_dict(), identity, model, corpus, run_info)
    counts = dict(written=0, truncated=0, errors=0)
    with ResultsFolder.open(out, manifest, corpus) as folder:
        done = folder.done()
        n_settings = len(spec.settings)
        tasks = []
        for rec in corpus.records:
            pending = [n for n in range(n_settings) if (rec.index, n) not in done]
            if pending:
                tasks.append((rec, pending))
        bar = Progress(len(corpus), len(corpus) - len(tasks), stream=stream, enabled=progress)

        def write(rows: list[dict[str, Any]]) -> None:
            folder.write(rows)
            counts["written"] += len(rows)
            counts["truncated"] += sum(1 for r in rows if r.get("truncated_tokens"))
            counts["errors"] += sum(1 for r in rows if r.get("error"))

        try:
            if tasks and engine == "local":
                run_local(spec, tasks, write, bar, weights=weights, workers=workers, batch_size=batch_size,
                          threads=threads, loaded=loaded)
            elif tasks:
                run_ray(spec, tasks, write, bar, weights=weights, workers=workers, batch_size=batch_size,
                        threads=threads, address=address, gpus_per_worker=gpus_per_worker)
        finally:
            bar.close()
        runs = folder.manifest["runs"]
        runs[-1].update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), rows_written=counts["written"],
                        load_end=load_average())
        folder.update_manifest(runs=runs)
        study_id = folder.manifest["study_id"]
    return RunSummary(Path(out), study_id, len(corpus), len(corpus) * n_settings, len(done), counts["written"],
                      counts["truncated"], counts["errors"], corpus.skipped, time.perf_counter() - t0)

