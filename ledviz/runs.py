"""Runs of the model for the app: a run in a worker thread that streams its tokens and can be
cancelled, run fingerprints, and a run's facts in words. Library code: no Streamlit here.

Why a thread: Streamlit runs a page top to bottom and handles a click by rerunning it. If
generation ran in the page itself, a click on Cancel could only take effect after generation
ended. With the work in a `RunJob` kept in the session, the page just polls it (redrawing the
streamed text and the progress); a click on Cancel sets the job's `stop` event, which
`pipeline.run` checks after every token.

A job is made, then started: `job.start()` runs it in its own thread, `job.run()` in the calling
thread (what a worker of a shared run queue would call).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from typing import Any, Callable

import numpy as np
import torch

from . import pipeline
from .pipeline import Document, LoadedModel, RunResult
from .text import count


# ---------------------------------------------------------------------------------------------
# fingerprints: which input a shown result belongs to
# ---------------------------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return str(value)


def fingerprint(*parts: Any) -> str:
    """A hex digest identifying `parts`: strings, bytes, tensors and arrays (values, dtype and shape),
    and anything JSON can write (dicts in any key order, dataclasses by their fields).
    Each part is length-prefixed, so ("ab", "c") and ("a", "bc") differ."""
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().numpy()
        if isinstance(part, np.ndarray):
            tag, data = f"array:{part.dtype}:{part.shape}", np.ascontiguousarray(part).tobytes()
        elif isinstance(part, bytes):
            tag, data = "bytes", part
        elif isinstance(part, str):
            tag, data = "str", part.encode()
        else:
            tag, data = "json", json.dumps(part, sort_keys=True, default=_jsonable).encode()
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()


def run_fingerprint(loaded: LoadedModel, doc: Document | None, settings: Any,
                    global_mask: torch.Tensor | None = None) -> str | None:
    """Identifies a run's input: the model, the document and question, the global-attention mask
    and the settings. None when there is no document (nothing can run)."""
    if doc is None:
        return None
    mask = b"" if global_mask is None else global_mask
    return fingerprint(loaded.key, doc.text, doc.question or "", mask, settings)


# ---------------------------------------------------------------------------------------------
# a run in a worker thread
# ---------------------------------------------------------------------------------------------

class RunJob:
    """`pipeline.run` for one input, with its streamed tokens, progress and outcome: the one place
    a run's tokens are streamed, whether the job runs in its own thread (`start`) or in a worker of
    the server's shared queue (`ledviz.serving.Server.submit_run` calls `run` there).

    `settings` are recorded in the result's settings (with `run_id`, the job's id); the other
    keyword arguments are pipeline.run's (task, max_new_tokens, num_beams, answer_from_document, ...).
    """

    def __init__(self, loaded: LoadedModel, doc: Document, global_mask: torch.Tensor, *,
                 settings: dict | None = None, **run_kwargs: Any):
        for reserved in ("on_token", "stop_event", "progress"):
            if reserved in run_kwargs:
                raise TypeError(f"RunJob sets {reserved} itself: use job.pieces, job.cancel() and job.progress")
        self.id = uuid.uuid4().hex[:12]
        self.stop = threading.Event()
        self.pieces: list[str] = []
        self.progress: tuple[str, float] = ("starting", 0.0)
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self.started: float | None = None
        self.finished: float | None = None
        self.settings = dict(settings or {})
        self.thread: threading.Thread | None = None
        self._args = (loaded, doc, global_mask)
        self._kwargs = run_kwargs
        self._report: Callable[[str, float], None] | None = None

    def start(self) -> "RunJob":
        """Run in a new daemon thread; returns the job."""
        self.thread = threading.Thread(target=self.run, name=f"ledviz-run-{self.id}", daemon=True)
        self.thread.start()
        return self

    def run(self, stop: threading.Event | None = None, report: Callable[[str, float], None] | None = None) -> None:
        """Run in this thread; the outcome lands in `result` or `error` (never raised). A queue's
        worker passes its job's `stop` event (a Cancel sets it) and `report` (its progress)."""
        if stop is not None:
            self.stop = stop
        self._report = report
        self.started = time.perf_counter()
        try:
            result = pipeline.run(*self._args, on_token=self._on_token, stop_event=self.stop,
                                  progress=self._on_progress, **self._kwargs)
            result.settings.update(self.settings, run_id=self.id)
            self.pieces[:] = [result.output_text]  # in place: a server's job shares this list
            self.result = result
        except BaseException as err:  # noqa: BLE001 - handed to the page, which shows it
            self.error = err
        finally:
            self.finished = time.perf_counter()

    def cancel(self) -> None:
        """Ask the run to stop after the current token (the tokens so far are kept)."""
        self.stop.set()

    def _on_token(self, token_id: int, text: str) -> None:
        """pipeline.run streams the text each token adds, in whole characters ("" for special tokens)."""
        if text:
            self.pieces.append(text)

    def _on_progress(self, message: str, fraction: float) -> None:
        self.progress = (message, fraction)
        if self._report is not None:
            self._report(message, fraction)

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def text(self) -> str:
        """The output streamed so far (special tokens left out); once the run is done, its output text."""
        return "".join(self.pieces).strip()

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (0 before), until it finished."""
        if self.started is None:
            return 0.0
        return (self.finished or time.perf_counter()) - self.started


# ---------------------------------------------------------------------------------------------
# a run's facts
# ---------------------------------------------------------------------------------------------

def run_id(result: RunResult) -> str:
    """A stable id of a run for caching its derived views (set by RunJob; made up if missing)."""
    return result.settings.setdefault("run_id", uuid.uuid4().hex[:12])


def size_text(mb: float) -> str:
    """A size given in MB as a reader takes it: two significant digits below 10 MB (a short document's
    kept attention is a few hundredths of a MB, not "0 MB"), whole MB up to 10,000 MB, then GB (up to
    1,024) or TB with one decimal (the model page's estimate for a million tokens read "6,105,011.0 MB").

    The unit is chosen after rounding, so a value shows in the unit its rounded number belongs to:
    1,048,575.99 MB is "1.0 TB" (not "1,024.0 GB"), 9,999.6 MB "9.8 GB" (not "10,000 MB"), 9.996 MB
    "10 MB"; and never in exponent notation (0.000012 MB, not "1.2e-05 MB")."""
    two = float(f"{mb:.2g}")  # two significant digits
    if two < 10:
        if two == 0:
            return "0 MB"
        decimals = max(0, 1 - math.floor(math.log10(two)))
        return f"{two:.{decimals}f}".rstrip("0").rstrip(".") + " MB"
    if round(mb) < 10_000:  # (round and format round alike: to the nearest, ties to even)
        return f"{mb:,.0f} MB"
    gb = mb / 1024
    return f"{gb:,.1f} GB" if round(gb, 1) < 1024 else f"{gb / 1024:,.1f} TB"


_OUTPUT_NAMES = {"qa": "answer", "summarize": "summary"}  # what a task's output is called


def run_facts(result: RunResult) -> list[str]:
    """A run's facts in short phrases: tokens, time per step, memory, likelihood, constraints, and the
    precision when it is not float32."""
    t = result.timings
    n_out = max(0, len(result.output_ids) - 1)
    parts = [f"{result.document.n_tokens:,} input tokens", f"{len(result.global_positions):,} global",
             count(n_out, "output token"), f"encode {t.get('encode_s', 0):.2f} s",
             f"generate {t.get('generate_s', 0):.2f} s",
             f"attention kept {size_text(result.memory.get('attention_mb', 0))}"]
    if result.token_logprobs:
        # the whole output's, said so: the QA page draws one token's log-probability beside it (the decline's weighing)
        ll = result.log_likelihood
        n = len(result.token_logprobs)  # at least one here
        parts.append(f"the whole {_OUTPUT_NAMES.get(result.task, 'output')}'s log-likelihood "
                     f"{0.0 if round(ll, 2) == 0 else ll:.2f} (its {count(n, 'token')} summed)")
    if result.settings.get("answer_from_document"):
        # the decline is the one answer allowed besides a span (pipeline.document_constraint): said so,
        # or a declined answer's facts would say it was kept to a span
        parts.append("answer kept to a span of the document (or declined)")
    if result.settings.get("facts_from_document"):
        parts.append("values kept to spans of the document")
    if result.settings.get("precision", "float32") != "float32":
        parts.append(f"computed in {result.settings['precision']}")
    return parts



def stale_note(button_label: str, ready: bool, results: bool = False) -> str:
    """What a page says above a kept result that is not for its current input or settings: press the
    button to run again where the current input can run (`ready`); where it cannot (no document, an
    invalid question: the button is disabled), it points to the message saying what is missing
    instead of to a button that does nothing. `results`: several (the lab's comparison)."""
    what = "The results below are" if results else "The result below is"
    if ready:
        return f"{what} for an earlier input or settings: press **{button_label}** to run on the current one."
    return (f"{what} for an earlier input or settings. **{button_label}** stays off until the current input can "
            "run: see the message above.")


def cut_note(result: RunResult, setting: str, most: int | None = None) -> str | None:
    """A plain line when the output, or a kept answer's weighed span (even one then declined), ran to
    its token limit without its end token; None when it ended, or was stopped. `setting` names the
    limit's control ("Max answer tokens"), `most` its largest value."""
    answer = result.answer
    unfinished = answer.unfinished if answer is not None else not result.ended
    if not unfinished or result.stopped_early:
        return None
    n = result.settings.get("max_new_tokens") or max(0, len(result.output_ids) - 1)
    fix = f"raise {setting}" if most is None or n < most else f"{setting} is at its most, {most:,}"
    part = (" Its last token holds only the first bytes of a character, left out of the text shown."
            if answer is not None and answer.partial else "")
    if answer is not None and answer.declined:
        return (f"The best span was cut at {count(n, 'token')}: {fix}. It was weighed against the decline as far as "
                f"it was written.{part}")
    what = _OUTPUT_NAMES.get(result.task, "output")
    return f"The {what} was cut at {count(n, 'token')}: {fix}. It did not end; shown is what was written until then.{part}"


def empty_output_note(result: RunResult, setting: str | None = None) -> str | None:
    """Why a run shows no text, in a line for the place of the output; None where it has text.

    LED writes its start marker <s> as its first token, so a run cut at 1 token (Max ... tokens = 1) holds
    that marker alone: it used to read "(empty: the model ended at once)" above a warning that the output
    was cut and "did not end", two statements of the opposite. The line now says which it is: cut at the
    token limit (with the markers written and the fix, `setting` naming the limit's control), cancelled, or
    ended by the model."""
    if result.output_text:
        return None
    written = result.output_tokens[1:]  # (the first is the decoder's start token, not written by the model)
    n = len(written)
    what = _OUTPUT_NAMES.get(result.task, "output")
    markers = ", ".join(written)
    theirs = (f"its only token is the model's marker {markers}, which is not text" if n == 1 else
              f"its {n:,} tokens are the model's markers ({markers}), which are not text")
    if result.stopped_early:
        return ("(no text: cancelled before the model wrote a token)" if not n else
                f"(no text: cancelled before the model wrote a word; {theirs})")
    if not n:
        return "(empty: the model wrote no token)"
    if not result.ended:  # cut at the token limit
        fix = f": raise {setting}" if setting else ""
        return f"(no text yet: the {what} was cut at {count(n, 'token')}, and {theirs}{fix})"
    if n == 1:
        return "(empty: the model ended at once)"
    return f"(no text: {theirs})"


def one_token_note(setting: str) -> str:
    """The line under a token limit set to 1: the output is then one token, and LED's first is its start
    marker <s>, so such a run shows no text (a reader setting 1 to see "the first word" got nothing)."""
    return (f"{setting} = 1: the output is a single token, and this model's first token is usually its start "
            "marker <s>, which shows no text. Set 2 or more to see the first word.")
